//! What the engine hands back: finished requests with their timings, the tokens and costs of
//! a step, running statistics, a snapshot of its gauges, and why a request was refused.

use crate::request::RequestId;

/// Why a request ended; the `finished_reason` label of `vllm:request_success_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FinishReason {
    /// The simulated model emitted EOS.
    Stop,
    /// `max_tokens` (or `max_model_len`) reached.
    Length,
    /// The client went away or the caller aborted it.
    Abort,
}

impl FinishReason {
    /// vLLM's label value and OpenAI's `finish_reason`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stop => "stop",
            Self::Length => "length",
            Self::Abort => "abort",
        }
    }
}

/// A request that left the engine, with the timestamps vLLM's histograms are made of.
#[derive(Clone, Debug, PartialEq)]
pub struct Finished {
    /// Its id.
    pub id: RequestId,
    /// Why it ended.
    pub reason: FinishReason,
    /// Prompt length in tokens.
    pub prompt_tokens: u32,
    /// Tokens generated.
    pub output_tokens: u32,
    /// Prompt tokens served from the prefix cache or loaded from the KV tier when first
    /// scheduled (vLLM's `num_cached_tokens`: local + external).
    pub cached_tokens: u32,
    /// The KV tier's share of `cached_tokens` (`external_kv_transfer`).
    pub external_tokens: u32,
    /// The effective `max_tokens`.
    pub max_tokens: u32,
    /// When it arrived.
    pub arrival: f64,
    /// When it was first scheduled (None if it never ran).
    pub first_scheduled: Option<f64>,
    /// When its first token was emitted.
    pub first_token: Option<f64>,
    /// When it ended.
    pub end: f64,
    /// Times it was preempted.
    pub num_preemptions: u32,
}

impl Finished {
    /// Arrival to first token.
    pub fn ttft(&self) -> Option<f64> {
        self.first_token.map(|t| t - self.arrival)
    }
    /// Arrival to first scheduling.
    pub fn queue_time(&self) -> Option<f64> {
        self.first_scheduled.map(|t| t - self.arrival)
    }
    /// Arrival to end.
    pub fn e2e(&self) -> f64 {
        self.end - self.arrival
    }
    /// First scheduling to first token.
    pub fn prefill_time(&self) -> Option<f64> {
        Some(self.first_token? - self.first_scheduled?)
    }
    /// First token to end.
    pub fn decode_time(&self) -> Option<f64> {
        self.first_token.map(|t| self.end - t)
    }
    /// First scheduling to end.
    pub fn inference_time(&self) -> Option<f64> {
        self.first_scheduled.map(|t| self.end - t)
    }
}

/// One token emitted at the end of a step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TokenOut {
    /// Whose token.
    pub id: RequestId,
    /// The token id.
    pub token: u32,
    /// True for a request's first token.
    pub first: bool,
    /// Time to first token for the first, inter-token latency after.
    pub latency: f64,
}

/// What one step did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StepOutput {
    /// When the step started.
    pub start: f64,
    /// When it ended; its tokens are visible from then.
    pub end: f64,
    /// Tokens computed (prefill chunks + decodes): `vllm:iteration_tokens_total`.
    pub num_tokens: u32,
    /// Tokens emitted.
    pub tokens: Vec<TokenOut>,
    /// Requests that completed in this step.
    pub finished: Vec<Finished>,
    /// Requests preempted while scheduling this step.
    pub preemptions: u32,
}

/// Cumulative counters, as vLLM's `_total` metrics count them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EngineStats {
    /// Steps run.
    pub steps: u64,
    /// Prompt tokens of requests that produced their first token.
    pub prompt_tokens: u64,
    /// Generated tokens.
    pub generation_tokens: u64,
    /// Prefix-cache lookups, in tokens.
    pub prefix_queries: u64,
    /// Prefix-cache hits, in tokens.
    pub prefix_hits: u64,
    /// Preemptions.
    pub preemptions: u64,
    /// Seconds spent in steps.
    pub busy_time: f64,
    /// KV-tier lookups, in tokens: prompt tokens beyond the local hit of requests never
    /// preempted (`vllm:external_prefix_cache_queries`).
    pub external_queries: u64,
    /// KV-tier hits, in tokens loaded for those requests (`vllm:external_prefix_cache_hits`).
    pub external_hits: u64,
    /// Bytes loaded from the KV tier (whole chunks), preempted requests' reloads included.
    pub external_loaded_bytes: u64,
    /// Bytes offered to the KV tier by write-through.
    pub external_stored_bytes: u64,
    /// Seconds steps spent waiting for KV-tier loads.
    pub external_load_time: f64,
    /// Seconds steps spent copying chunks out for the KV tier.
    pub external_store_time: f64,
}

/// The engine's gauges at one instant.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EngineSnapshot {
    /// Requests in the batch.
    pub num_running: usize,
    /// Requests queued, preempted ones included.
    pub num_waiting: usize,
    /// Fraction of KV blocks in use (0..1).
    pub kv_usage: f64,
    /// KV blocks in total.
    pub num_gpu_blocks: u32,
    /// Adapters of running requests.
    pub running_loras: Vec<String>,
    /// Adapters of waiting requests.
    pub waiting_loras: Vec<String>,
}

/// Why a request was refused at the door; messages follow vLLM's.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AddError {
    /// Another live request has this id.
    #[error("request id {0} is already in use")]
    DuplicateId(RequestId),
    /// No prompt tokens.
    #[error("The prompt cannot be empty")]
    EmptyPrompt,
    /// `max_tokens` of 0.
    #[error("max_tokens must be at least 1, got 0.")]
    ZeroMaxTokens,
    /// `min_tokens` above `max_tokens`.
    #[error("min_tokens must be less than or equal to max_tokens={max_tokens}, got {min_tokens}.")]
    MinAboveMax {
        /// Requested minimum.
        min_tokens: u32,
        /// Requested maximum.
        max_tokens: u32,
    },
    /// Prompt plus requested output exceeds the context window.
    #[error(
        "This model's maximum context length is {max_model_len} tokens. However, you requested {} tokens ({prompt} in the messages, {max_tokens} in the completion). Please reduce the length of the messages or completion.", prompt + max_tokens
    )]
    TooLong {
        /// Prompt tokens.
        prompt: u32,
        /// Requested output tokens.
        max_tokens: u32,
        /// The engine's limit.
        max_model_len: u32,
    },
    /// The prompt alone fills the context window.
    #[error(
        "This model's maximum context length is {max_model_len} tokens. However, your request has {prompt} input tokens. Please reduce the length of the input messages."
    )]
    PromptTooLong {
        /// Prompt tokens.
        prompt: u32,
        /// The engine's limit.
        max_model_len: u32,
    },
    /// The adapter named is not loaded.
    #[error("The model `{0}` does not exist.")]
    UnknownLora(String),
}
