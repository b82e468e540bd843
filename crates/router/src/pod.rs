//! What routing knows about a pod and a request at one instant.

/// One ready pod serving the requested model (or adapter).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Pod {
    /// Pod name, reported in the `target-pod` header.
    pub name: String,
    /// `ip:port` the gateway proxies to; also the session-affinity identity.
    pub address: String,
    /// Requests this gateway has in flight on the pod: exact, the primary load signal.
    pub in_flight: u32,
    /// What the pod's `/metrics` said at the last scrape; any field may be missing.
    pub metrics: EngineMetrics,
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
}
