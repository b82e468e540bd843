//! What one replica can serve at the SLO, from the engine's roofline profile.

use brix_sim::{GpuProfile, ModelProfile, StepCost};

/// The latency a replica must keep while serving its share.
#[derive(Clone, Debug, PartialEq)]
pub struct SloTarget {
    /// Time to first token, seconds.
    pub ttft_s: f64,
    /// Time per output token, seconds.
    pub tpot_s: f64,
    /// Fraction of the capacity at the SLO to plan for (headroom for bursts inside a window).
    pub utilization: f64,
}

impl Default for SloTarget {
    fn default() -> Self {
        Self {
            ttft_s: 1.0,
            tpot_s: 0.1,
            utilization: 0.8,
        }
    }
}

/// One replica of the target model: its step cost, batch limits and start-up time.
#[derive(Clone, Debug)]
pub struct ReplicaProfile {
    /// The engine's step-time model.
    pub cost: StepCost,
    /// vLLM's `max_num_batched_tokens`.
    pub max_num_batched_tokens: u32,
    /// vLLM's `max_num_seqs`.
    pub max_num_seqs: u32,
    /// Tokens the KV cache holds.
    pub kv_tokens: u64,
    /// Seconds from asking for a replica to its first request served (weights load plus
    /// engine start).
    pub startup_s: f64,
    /// GPU price per replica-hour, USD.
    pub price_per_hour: f64,
}

impl PartialEq for ReplicaProfile {
    fn eq(&self, other: &Self) -> bool {
        self.max_num_batched_tokens == other.max_num_batched_tokens
            && self.max_num_seqs == other.max_num_seqs
            && self.kv_tokens == other.kv_tokens
            && self.startup_s == other.startup_s
            && self.price_per_hour == other.price_per_hour
    }
}

impl ReplicaProfile {
    /// `model` on `gpu` with vLLM's limits; `startup_s` as the driver knows it.
    pub fn new(
        model: &ModelProfile,
        gpu: &GpuProfile,
        max_num_batched_tokens: u32,
        max_num_seqs: u32,
        kv_tokens: u64,
        startup_s: f64,
    ) -> Self {
        Self {
            cost: StepCost::new(model, gpu),
            max_num_batched_tokens,
            max_num_seqs,
            kv_tokens,
            startup_s,
            price_per_hour: gpu.price_per_hour * f64::from(model.tensor_parallel_size),
        }
    }
}
