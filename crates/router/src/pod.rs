//! What routing knows about a pod and a request at one instant.

use std::sync::Arc;

/// One ready pod serving the requested model (or adapter).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Pod {
    /// Pod name, reported in the `target-pod` header; `vtc-basic` orders pods by it.
    pub name: String,
    /// `ip:port` the gateway proxies to; also the session-affinity identity.
    pub address: String,
    /// Requests this gateway has in flight on the pod: exact, the primary load signal.
    pub in_flight: u32,
    /// Prefill tokens routed here and not yet answered with a first token: each request's
    /// uncached prompt tokens as estimated when it was routed (booked at the decision, so a
    /// burst is charged before any response returns).
    pub pending_prefill: f64,
    /// Requests routed here that produced their first token and have not ended (decoding).
    pub decoding: u32,
    /// Σ prompt tokens of the decoding requests: the context their decode steps read.
    pub decode_context: f64,
    /// What the pod's `/metrics` said at the last scrape; any field may be missing.
    pub metrics: EngineMetrics,
    /// What this gateway measured on the pod's recent responses (throughput, latency).
    pub observed: Observed,
    /// The engine's LoRA batch state (`vllm:lora_requests_info`) while its scrape is not stale;
    /// None for engines without LoRA. Shared, so a snapshot costs no copy of the names.
    pub lora: Option<Arc<LoraState>>,
    /// Prompt tokens of THIS request the pod holds in cache, exact, from its engine's KV
    /// events ([`crate::KvIndex`]); None when the pod publishes none or the request has no
    /// token ids (strategies then use the approximate prefix index).
    pub cached_tokens: Option<u32>,
}

/// vLLM's LoRA batch state of one engine, from the newest `vllm:lora_requests_info` sample:
/// what `lora-affinity` weighs (an adapter in the running batch costs no GPU-slot wait).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoraState {
    /// `max_lora`: GPU slots, the most adapters one batch may mix (`--max-loras`).
    pub max_lora: u32,
    /// `running_lora_adapters`: adapters of the requests in the running batch.
    pub running: Vec<String>,
    /// `waiting_lora_adapters`: adapters of the requests waiting to be scheduled.
    pub waiting: Vec<String>,
}

/// Engine signals scraped from `/metrics` (vLLM names); None when the engine does not export it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EngineMetrics {
    /// `vllm:num_requests_running`.
    pub running: Option<f64>,
    /// `vllm:num_requests_waiting`.
    pub waiting: Option<f64>,
    /// `vllm:kv_cache_usage_perc` (or the deprecated `gpu_cache_usage_perc`), 0..1.
    pub kv_usage: Option<f64>,
}

/// What this gateway measured on a pod's recent responses, so `throughput` and
/// `least-latency` need no Prometheus (AIBrix's PromQL versions silently turn random without it).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Observed {
    /// Prompt tokens per second sent to the pod over a recent window (0 when idle).
    pub prompt_tps: f64,
    /// Output tokens per second received from the pod over a recent window (0 when idle).
    pub output_tps: f64,
    /// Smoothed mean time to first token, seconds; None before any sample.
    pub ttft_s: Option<f64>,
    /// Smoothed mean time per output token after the first, seconds; None before any sample.
    pub tpot_s: Option<f64>,
    /// Smoothed measured TTFT over the TTFT predicted when each request was routed (the
    /// `ttft` strategy's online correction, unclamped); None before any sample.
    pub ttft_ratio: Option<f64>,
    /// Smoothed prompt units (the index's bytes or tokens) per prompt token the engine
    /// reported; None before any sample.
    pub units_per_token: Option<f64>,
}

/// One user's standing in the `vtc-basic` token window (see [`crate::TokenWindow`]).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct VtcView {
    /// The user's weighted tokens (input × 1 + output × 2) in the window.
    pub user_tokens: f64,
    /// Smallest positive total among users in the window (1,000 when there is none).
    pub min_tokens: f64,
    /// Largest total among users in the window (8,000 when there is none).
    pub max_tokens: f64,
}

/// The parts of a request routing looks at.
#[derive(Clone, Copy, Debug, Default)]
pub struct RouteRequest<'a> {
    /// `user` header: who is asking (fairness, limits).
    pub user: Option<&'a str>,
    /// `x-session-id` from an earlier response: the pod address the session is pinned to.
    pub session_pod: Option<&'a str>,
    /// `x-aibrix-session-key`: a key hashed onto a pod when no pin exists.
    pub session_key: Option<&'a str>,
    /// Chained hashes of the prompt's full blocks, in order (whole conversation).
    pub blocks: &'a [u64],
    /// Prompt length in the unit blocks are cut in (bytes or tokens).
    pub prompt_units: u32,
    /// The request's `max_tokens` (or `max_completion_tokens`): `least-latency`'s output guess.
    pub max_tokens: Option<u32>,
    /// The output will be exactly `max_tokens` long (`ignore_eos`, or `min_tokens` ≥
    /// `max_tokens`): plan routing then uses that output bucket instead of a bound.
    pub output_exact: bool,
    /// The user's standing in the token window, for `vtc-basic`; None without a user.
    pub vtc: Option<VtcView>,
    /// The LoRA adapter the request names (its `model` is an adapter), for `lora-affinity`
    /// and for [`crate::fleet::Fleet`] to route only to pods holding it; None for a base model.
    pub adapter: Option<&'a str>,
    /// The prompt's token ids as the engine will see them (chat template applied), for the
    /// exact KV index; None when the driver does not tokenize.
    pub tokens: Option<&'a [u32]>,
    /// The prompt's length in tokens, when known: turns `cached_tokens` into a share of
    /// `prompt_units` (defaults to the length of `tokens`).
    pub prompt_tokens: Option<u32>,
}

impl RouteRequest<'_> {
    /// What the request says of its output length, for plan routing.
    pub fn output_hint(&self) -> crate::OutputHint {
        match self.max_tokens {
            Some(m) if self.output_exact => crate::OutputHint::Exactly(m),
            m => m.into(),
        }
    }

    /// The prompt's length in tokens: `prompt_tokens`, else the length of `tokens`.
    pub fn prompt_token_count(&self) -> Option<u32> {
        self.prompt_tokens.or_else(|| {
            self.tokens
                .map(|t| u32::try_from(t.len()).unwrap_or(u32::MAX))
        })
    }
}
