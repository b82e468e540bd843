//! What an autoscaled run adds to a [`SimConfig`](super::SimConfig): the policy
//! (`brix_autoscaler::Policy`, built from a PodAutoscaler document) and the driver's knobs. The
//! decisions are the policy crate's; this driver only feeds it readings and applies its counts.

use brix_autoscaler::{Autoscaler, Decision, FleetState, Load, Policy, Reading};

/// The autoscaler of a run and how the driver runs it.
#[derive(Clone, Debug, PartialEq)]
pub struct ScaleConfig {
    /// The policy (its `sync_s` is the decision period; tests shorten its windows).
    pub policy: Policy,
    /// Seconds from asking for an engine to its first good probe
    /// (`brix_autoscaler::startup_estimate`).
    pub startup_s: f64,
    /// Seconds between metric readings (1, as `brix up` scrapes).
    pub observe_s: f64,
    /// Requests the activator holds while no engine is ready; more are refused with a 503.
    pub hold_limit: usize,
    /// A held request still waiting after this many seconds ends with a 503.
    pub hold_timeout_s: f64,
}

impl ScaleConfig {
    /// `policy` with engines that take `startup_s` to start and the driver's defaults.
    pub fn new(policy: Policy, startup_s: f64) -> Self {
        Self {
            policy,
            startup_s,
            observe_s: 1.0,
            hold_limit: 10_000,
            hold_timeout_s: 120.0,
        }
    }
}

/// The policy as the event loop drives it: `brix_autoscaler::Autoscaler`, or in tests a
/// scripted one whose decisions are known in advance.
pub(crate) trait Decide {
    fn observe(&mut self, source: usize, reading: Reading, now: f64);
    fn observe_load(&mut self, load: &Load, now: f64);
    fn observe_startup(&mut self, seconds: f64);
    fn decide(&mut self, fleet: &FleetState, now: f64) -> Decision;
}

impl Decide for Autoscaler {
    fn observe(&mut self, source: usize, reading: Reading, now: f64) {
        Autoscaler::observe(self, source, reading, now);
    }
    fn observe_load(&mut self, load: &Load, now: f64) {
        Autoscaler::observe_load(self, load, now);
    }
    fn observe_startup(&mut self, seconds: f64) {
        Autoscaler::observe_startup(self, seconds);
    }
    fn decide(&mut self, fleet: &FleetState, now: f64) -> Decision {
        Autoscaler::decide(self, fleet, now)
    }
}

/// The engine gauges and rates a per-pod source can name (as vLLM exports them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PodMetric {
    Running,
    Waiting,
    KvUsage,
    PromptThroughput,
    GenerationThroughput,
}

impl PodMetric {
    /// The metric a `targetMetric` names, looked up by `brix_autoscaler::metric_aliases`;
    /// `None`: the simulated engine does not export it.
    pub(crate) fn of(target_metric: &str) -> Option<Self> {
        brix_autoscaler::metric_aliases(target_metric)
            .iter()
            .find_map(|name| match name.as_str() {
                "vllm:num_requests_running" => Some(Self::Running),
                "vllm:num_requests_waiting" => Some(Self::Waiting),
                "vllm:kv_cache_usage_perc" | "vllm:gpu_cache_usage_perc" => Some(Self::KvUsage),
                "vllm:avg_prompt_throughput_toks_per_s" => Some(Self::PromptThroughput),
                "vllm:avg_generation_throughput_toks_per_s" => Some(Self::GenerationThroughput),
                _ => None,
            })
    }
}
