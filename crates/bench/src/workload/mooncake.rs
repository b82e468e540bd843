//! Mooncake JSONL traces (`{"timestamp": ms, "input_length", "output_length", "hash_ids"}`)
//! turned into requests. Pure: the caller reads the file.
//!
//! The trace has no text; each hash id stands for one 512-token block, and equal ids are
//! reusable prefix blocks. So each id expands to 512 words drawn from a stream seeded by
//! (seed, id), and a prompt is its ids' blocks in order, the last one cut to
//! `input_length − 512·(n−1)` words. A cut block is the first words of the same stream, so
//! it is a prefix of that id's full block. Full blocks are copied from the first prompt that
//! holds them rather than drawn again, so a 12,000-request trace loads in well under a second
//! in release, with no memory beyond the prompts themselves.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use serde::Deserialize;

use super::error::{FieldCheck, FileError, LineError, is_u32, json_error, numbered_lines};
use super::seed::{Stream, push_words, rng};
use super::{WorkRequest, Workload, sort_by_arrival};

/// Tokens per hash id in Mooncake traces.
pub const BLOCK_TOKENS: usize = 512;

#[derive(Deserialize)]
struct Record {
    timestamp: f64,
    input_length: u64,
    output_length: u32,
    hash_ids: Vec<u64>,
}

/// The fields, for naming the one with a wrong kind of value.
const FIELDS: &[FieldCheck] = &[
    ("timestamp", serde_json::Value::is_number, "milliseconds"),
    ("input_length", serde_json::Value::is_u64, "a token count"),
    ("output_length", is_u32, "a token count"),
    ("hash_ids", is_ids, "an array of block ids"),
];

fn is_ids(value: &serde_json::Value) -> bool {
    value
        .as_array()
        .is_some_and(|ids| ids.iter().all(serde_json::Value::is_u64))
}

/// Where a full block was first written: (request index, offset in its prompt).
type Blocks = HashMap<u64, (usize, usize)>;

/// The requests of a Mooncake trace, `at_s` = `timestamp` / 1000, in timestamp order.
pub(super) fn parse(text: &str, seed: u64) -> Result<Workload, FileError> {
    let mut requests: Vec<WorkRequest> = Vec::new();
    let mut blocks = Blocks::new();
    for (number, line) in numbered_lines(text) {
        let at = |kind| FileError::at(number, kind);
        let record: Record = serde_json::from_str(line)
            .map_err(|error| at(json_error("Mooncake", line, error, FIELDS)))?;
        check(&record).map_err(at)?;
        let prompt = expand(&record, seed, &requests, &mut blocks);
        requests.push(WorkRequest {
            id: requests.len() as u64,
            at_s: record.timestamp / 1000.0,
            session: None,
            prompt,
            output_tokens: record.output_length,
        });
    }
    if requests.is_empty() {
        return Err(FileError::Empty);
    }
    sort_by_arrival(&mut requests);
    Ok(Workload { requests })
}

/// The record's values fit the format: a time, a prompt, and blocks that cover it exactly.
fn check(record: &Record) -> Result<(), LineError> {
    if !(record.timestamp.is_finite() && record.timestamp >= 0.0) {
        return Err(LineError::Invalid {
            field: "timestamp",
            value: record.timestamp.to_string(),
            expected: "milliseconds ≥ 0",
        });
    }
    let n = record.hash_ids.len() as u64;
    let block = BLOCK_TOKENS as u64;
    if n == 0 || record.input_length <= block * (n - 1) || record.input_length > block * n {
        return Err(LineError::Blocks {
            input_length: record.input_length,
            blocks: record.hash_ids.len(),
        });
    }
    Ok(())
}

/// The prompt for a checked record: its blocks in order, the last one possibly cut.
fn expand(record: &Record, seed: u64, done: &[WorkRequest], blocks: &mut Blocks) -> Vec<u32> {
    let total = record.input_length as usize;
    let mut prompt = Vec::with_capacity(total);
    for &id in &record.hash_ids {
        let take = (total - prompt.len()).min(BLOCK_TOKENS);
        let start = prompt.len();
        match blocks.entry(id) {
            Entry::Occupied(seen) => {
                let (request, offset) = *seen.get();
                match done.get(request) {
                    Some(earlier) => {
                        prompt.extend_from_slice(&earlier.prompt[offset..offset + take]);
                    }
                    // The id came earlier in this same prompt.
                    None => prompt.extend_from_within(offset..offset + take),
                }
            }
            Entry::Vacant(slot) => {
                push_words(&mut rng(seed, Stream::Block, &[id]), take, &mut prompt);
                if take == BLOCK_TOKENS {
                    slot.insert((done.len(), start));
                }
            }
        }
    }
    prompt
}
