//! Autoscaling policies (metric windows, HPA, KPA, APA and Brix's SLO-capacity policy); pure:
//! no I/O, no clock, no threads.
//!
//! One [`Autoscaler`] per PodAutoscaler document. A driver feeds it what it measured, with the
//! time it measured it ([`Autoscaler::observe`] per metric source, about once a second;
//! [`Autoscaler::observe_load`] for the gateway's view of the model, which also feeds the
//! gateway sources (`external` without an `endpoint`, [`SourceKind::Gateway`]);
//! [`Autoscaler::observe_startup`] when a replica became ready), and asks
//! [`Autoscaler::decide`] for the replica count, given the fleet as it is ([`FleetState`]),
//! whenever `now` reaches [`Autoscaler::next_decision_at`] (every [`Policy::sync_s`]: HPA
//! 15 s, KPA 2 s, APA 10 s, SLO 5 s). Each [`Decision`] carries its inputs, the raw
//! recommendation and what limited it. `brix up` (tokio timers, HTTP scrapes, the platform
//! trait) and `brix bench sim` (the event heap) are the two drivers; nothing here is copied
//! into either.
//!
//! A decision: the strategy's recommendation (the largest over the sources that have one);
//! then, for every strategy, missing metrics hold the count (all sources missing, or some
//! missing and the rest asking for fewer: never a scale-down, never to zero); stabilization
//! with Kubernetes semantics (the lowest recommendation in the scale-up window, the highest in
//! the scale-down window); HPA's rate policies; the bounds (or an active UTC schedule's, see
//! [`Autoscaler::with_schedules`]); zero only after [`Policy::scale_to_zero_grace_s`] of zero;
//! and one replica when requests are held for a model with none (activation).
//!
//! Time is `f64` seconds on the driver's clock (virtual or since start), as in
//! `brix_router::fleet`.

mod apa;
mod capacity;
mod decision;
mod hpa;
mod kpa;
mod policy;
mod scaler;
mod schedule;
mod slo;
mod sources;
mod stabilize;
mod victims;
pub mod window;

#[cfg(test)]
mod tests;

pub use capacity::{
    Bound, Capacity, DEFAULT_ENGINE_START_S, DEFAULT_STORAGE_GBPS, ReplicaProfile, SloTarget,
    Steady, capacity, startup_estimate, steady_state,
};
pub use decision::{Decision, Limit};
pub use policy::{Policy, PolicyError, Source, SourceKind, Strategy};
pub use scaler::Autoscaler;
pub use schedule::Schedules;
pub use victims::{Phase, ReplicaView, scale_down_victims};

/// One reading of one metric source at one moment.
#[derive(Clone, Debug, PartialEq)]
pub enum Reading {
    /// Per-pod values of the model's ready pods; `None` where that pod's scrape failed or the
    /// metric was absent (missing, never read as zero).
    Pods(Vec<Option<f64>>),
    /// One value for the whole target (an external endpoint, a Prometheus query, the
    /// gateway's own count); used as a total, not divided by pods.
    Total(f64),
    /// The source could not be read at all; the text says why (kept for the decision's reason).
    Failed(String),
}

/// The target's replicas as the driver sees them when it asks for a decision.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FleetState {
    /// The replica count the platform is converging to (the last one set).
    pub desired: u32,
    /// Replicas ready and taking traffic.
    pub ready: u32,
    /// Replicas requested and not ready yet (capacity on its way).
    pub starting: u32,
    /// Requests the gateway holds because the model has no ready replica (scale from zero).
    pub held: u32,
}

/// The model's load as the gateway sees it: counters since the driver started (monotonic) and
/// gauges now. The SLO-capacity policy reads rates from the counters' windows.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Load {
    /// Requests that arrived for the model.
    pub requests: u64,
    /// Prompt tokens of the requests that arrived (the gateway's count at arrival).
    pub prompt_tokens: u64,
    /// Requests that finished.
    pub completed: u64,
    /// Output tokens of the requests that finished.
    pub output_tokens: u64,
    /// Sum of measured time to first token over finished requests, seconds.
    pub ttft_sum_s: f64,
    /// Finished requests with a measured time to first token.
    pub ttft_count: u64,
    /// Sum of measured time per output token over finished requests, seconds.
    pub tpot_sum_s: f64,
    /// Finished requests with a measured time per output token.
    pub tpot_count: u64,
    /// Requests in flight at the gateway now.
    pub in_flight: u32,
    /// Sum over ready pods of `vllm:num_requests_waiting`, if scraped.
    pub waiting: Option<f64>,
    /// Mean over ready pods of `vllm:kv_cache_usage_perc` (0–1), if scraped.
    pub kv_usage: Option<f64>,
}

/// The names a metric may carry on an engine's `/metrics`: AIBrix documents write them without
/// the `vllm:` prefix and with names vLLM has since renamed (`gpu_cache_usage_perc` is
/// `vllm:kv_cache_usage_perc` since vLLM 0.10). Both drivers look a `targetMetric` up by these.
pub fn metric_aliases(target_metric: &str) -> Vec<String> {
    let bare = target_metric.strip_prefix("vllm:").unwrap_or(target_metric);
    let mut out = vec![target_metric.to_string()];
    let mut push = |s: String| {
        if !out.contains(&s) {
            out.push(s);
        }
    };
    push(format!("vllm:{bare}"));
    push(bare.to_string());
    match bare {
        "gpu_cache_usage_perc" => push("vllm:kv_cache_usage_perc".into()),
        "kv_cache_usage_perc" => push("vllm:gpu_cache_usage_perc".into()),
        _ => {}
    }
    out
}
