//! Workloads shared by the live and the virtual-time modes: what each request sends (prompt
//! words, output length) and when (open-loop arrival, or a session's think time).
//!
//! Prompts are sequences of words from [`vocab::VOCAB`], each a single cl100k token with its
//! leading space, so a prompt of N words is N tokens to `brix sim` and to any cl100k engine,
//! and equal word runs are equal token blocks. The live mode sends the text; the virtual mode
//! hands the engine model the word ids as token ids.
//!
//! A workload comes from [`load`]: a generator spec ([`GeneratorSpec`], e.g.
//! `shared-prefix:groups=8,prefix=1024,suffix=64,output=128,requests=400`,
//! `multi-turn:sessions=40,turns=5,system=512,user=64,output=64,think=1.0`,
//! `synthetic:requests=1000,prompt=1024,prompt_std=696,output=43,output_std=34`, `sharegpt:PATH`)
//! or a file told apart by its content ([`detect`]): Brix's own JSONL ([`save`] writes it, and
//! it replays exactly), a Mooncake JSONL trace (prompts synthesised from `hash_ids`: equal ids
//! are equal 512-token blocks), an Azure LLM CSV trace, or a ShareGPT JSON array. [`schedule`]
//! then sets when each request is sent ([`Arrival`]: `poisson:RATE`, `constant:RATE`,
//! `sine:MEAN,AMPLITUDE,PERIOD_S`, `onoff:PEAK,BASE,ON_S,OFF_S`, `trace:SCALE`, `closed:USERS`) and trims by duration and request cap. Everything is seeded:
//! the same spec, arrival and seeds give the same workload. Only [`load`] and [`save`] touch
//! files; the rest is pure.

/// One request, fully determined before the run.
#[derive(Clone, Debug, PartialEq)]
pub struct WorkRequest {
    /// Position in the workload.
    pub id: u64,
    /// Open loop: seconds after the start when it is sent. A session's later turn: ignored
    /// (it is sent `think_s` after the previous turn ends).
    pub at_s: f64,
    /// Set for multi-turn sessions.
    pub session: Option<Turn>,
    /// Prompt as word ids into the vocabulary (one token each).
    pub prompt: Vec<u32>,
    /// Tokens to generate (sent as `max_tokens` with `ignore_eos`).
    pub output_tokens: u32,
}

/// A request's place in a multi-turn session.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Turn {
    /// Session id.
    pub session: u64,
    /// 0 for the first turn.
    pub turn: u32,
    /// Seconds between the previous turn's end and this one's start (0 for turn 0).
    pub think_s: f64,
}

/// An ordered list of requests; first turns and single requests sorted by `at_s`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Workload {
    /// The requests.
    pub requests: Vec<WorkRequest>,
}

pub mod vocab;

mod arrival;
mod azure;
mod error;
mod format;
mod generate;
mod mooncake;
mod seed;
mod sharegpt;
mod source;
mod spec;
#[cfg(test)]
mod tests;

pub use arrival::{Arrival, ArrivalError, ArrivalSpec, is_closed_loop, schedule};
pub use error::{FileError, JsonError, LineError, SpecError, WorkloadError};
pub use format::{FORMAT_NAME, FORMAT_VERSION, write_jsonl};
pub use generate::{MultiTurn, SharedPrefix, Synthetic};
pub use mooncake::BLOCK_TOKENS;
pub use sharegpt::ShareGpt;
pub use source::{Format, detect, load, parse, save};
pub use spec::{GENERATORS, GeneratorSpec};

/// Sorts requests by `at_s` (stable, so equal times keep file order) and renumbers `id` to
/// positions, for trace files whose rows are not in time order.
fn sort_by_arrival(requests: &mut [WorkRequest]) {
    if !requests.is_sorted_by(|a, b| a.at_s <= b.at_s) {
        requests.sort_by(|a, b| a.at_s.total_cmp(&b.at_s));
        for (position, request) in requests.iter_mut().enumerate() {
            request.id = position as u64;
        }
    }
}
