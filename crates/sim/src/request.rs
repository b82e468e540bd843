//! A request as the caller hands it in, and as the engine tracks it.

use brix_kvcache::BlockKey;

use crate::hash::{BlockHash, Digest};

/// Caller-chosen request identity (unique among live requests of one engine).
pub type RequestId = u64;

/// What a client asked for, already tokenized.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NewRequest {
    /// Identity for outputs and aborts.
    pub id: RequestId,
    /// Prompt token ids.
    pub prompt: Vec<u32>,
    /// Cap on generated tokens; None means "up to `max_model_len`", as in vLLM.
    pub max_tokens: Option<u32>,
    /// Generate at least this many tokens before EOS may end the answer.
    pub min_tokens: u32,
    /// Never stop at EOS: generate exactly `max_tokens`.
    pub ignore_eos: bool,
    /// Adapter name, when the request targets a LoRA.
    pub lora: Option<String>,
    /// The client's `seed`: when set, the answer's length and text depend only on it (not on
    /// the engine seed or the request id), so equal seeds give equal answers, as in vLLM.
    pub seed: Option<u64>,
}

/// Where a request is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Status {
    Waiting,
    Running,
}

/// Engine-side state of one live request.
#[derive(Clone, Debug)]
pub(crate) struct Request {
    pub(crate) id: RequestId,
    pub(crate) tokens: Vec<u32>,
    pub(crate) prompt_len: u32,
    pub(crate) target_output: u32,
    pub(crate) max_tokens: u32,
    pub(crate) lora: Option<u32>,
    pub(crate) status: Status,
    pub(crate) num_computed: u32,
    pub(crate) blocks: Vec<u32>,
    pub(crate) hashes: Vec<BlockHash>,
    /// Full digest of the last hashed block: what the next block's hash chains from.
    pub(crate) last_digest: Option<Digest>,
    /// Full blocks already registered in the prefix cache.
    pub(crate) num_cached_blocks: usize,
    /// Prompt tokens served from the prefix cache or the KV tier the first time it was
    /// scheduled.
    pub(crate) cached_tokens: u32,
    /// The KV tier's share of `cached_tokens` (loaded, not computed).
    pub(crate) external_tokens: u32,
    /// Pool keys of the prompt's full chunks (computed at admission when a tier is set).
    pub(crate) pool_keys: Vec<BlockKey>,
    /// Leading chunks offered to (or found in) the tier: write-through starts after them.
    pub(crate) pool_offered: usize,
    pub(crate) filler_offset: usize,
    pub(crate) arrival: f64,
    /// When the API server has handed it to the scheduler (arrival + queued intake).
    pub(crate) ready: f64,
    pub(crate) first_scheduled: Option<f64>,
    pub(crate) first_token: Option<f64>,
    pub(crate) last_token: f64,
    pub(crate) num_preemptions: u32,
}

impl Request {
    pub(crate) fn num_tokens(&self) -> u32 {
        self.tokens.len() as u32
    }

    pub(crate) fn output_len(&self) -> u32 {
        self.num_tokens() - self.prompt_len
    }
}
