//! What one replica can serve at the SLO, from the engine's roofline profile (the model of the
//! Brix SLO-capacity policy).
//!
//! Steady state of one vLLM replica at arrival rate λ (req/s), mean prompt `I` and output `O`
//! tokens (a mean-field model of chunked prefill; the roofline's `max` is convex, so prefill
//! steps and decode steps are costed apart, never averaged inside one step):
//! - decodes in the batch (Little's law on the decode phase): `n = max(1, λ·O·T)`, at context
//!   `I + O/2`;
//! - a prompt is prefilled in `c = ⌈I / (B − n)⌉` chunks (`B` = `max_num_batched_tokens`), each
//!   a step with the `n` decodes: `T_p = step_time(I/c prefill + n decodes)`, `S = c·T_p`;
//!   prefill keeps the engine busy a fraction `ρ = λ·S` of the time;
//! - the other steps are pure decode steps, `T_d = step_time(n decodes)`; every step gives each
//!   decode a token, so the mean time per output token is
//!   `T = 1 / (λ·c + (1 − ρ) / T_d)`, solved by fixed-point iteration from below;
//! - `TTFT = T + S + ρ·S / (2(1 − ρ))`: one step of queueing, the prompt's own chunks, and the
//!   M/D/1 wait behind other prompts' prefills.
//!
//! λ_max is the largest λ (binary search) with `T ≤ tpot`, `TTFT ≤ ttft`, `ρ < 1`,
//! `n < B`, and the running requests `λ·(O·T + TTFT)` within `max_num_seqs` and, at `I + O`
//! tokens each, within the KV cache.

use brix_api::ScalingKnobs;
use brix_sim::{BatchItem, ConfigError, EngineConfig, GpuProfile, ModelProfile, StepCost};

/// Storage bandwidth weights load at when the driver does not say (GB/s): a fast network
/// volume or local NVMe through the page cache.
pub const DEFAULT_STORAGE_GBPS: f64 = 2.0;
/// Seconds an engine takes to start besides loading weights (CUDA graphs, profiling run,
/// server start); AIBrix reports 2–3 min before a new pod is useful, most of it image pull and
/// start-up.
pub const DEFAULT_ENGINE_START_S: f64 = brix_sim::DEFAULT_ENGINE_INIT_S;

/// When no load meets the SLO, the latency to plan for instead, as a multiple of an idle
/// replica's.
const RELAX: f64 = 1.5;

/// Longest prompt or output the model considers (tokens); beyond it nothing fits anyway, and
/// the cap keeps every product finite.
const MAX_TOKENS: f64 = 1e8;

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
        Self::from_knobs(&ScalingKnobs::default())
    }
}

impl SloTarget {
    /// The targets a PodAutoscaler's `autoscaling.brix.dev/*` annotations set (defaults:
    /// TTFT 1 s, TPOT 100 ms, utilization 0.8).
    pub fn from_knobs(knobs: &ScalingKnobs) -> Self {
        Self {
            ttft_s: knobs.ttft_slo.as_secs_f64(),
            tpot_s: knobs.tpot_slo.as_secs_f64(),
            utilization: knobs.target_utilization,
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

    /// The replica a simulated engine with `config` is: its batch limits, and KV tokens =
    /// the blocks vLLM would allocate × block size (fails as the engine would).
    pub fn from_engine(
        model: &ModelProfile,
        gpu: &GpuProfile,
        config: &EngineConfig,
        startup_s: f64,
    ) -> Result<Self, ConfigError> {
        let blocks = config.validate(model, gpu)?;
        Ok(Self::new(
            model,
            gpu,
            config.max_num_batched_tokens,
            config.max_num_seqs,
            u64::from(blocks) * u64::from(config.block_size),
            startup_s,
        ))
    }
}

/// Seconds from asking for a replica of `model` to its first request:
/// `weight_bytes_per_gpu / (storage_gbps·1e9) + engine_start_s` (every GPU of a
/// tensor-parallel group loads its shard in parallel). Defaults: [`DEFAULT_STORAGE_GBPS`],
/// [`DEFAULT_ENGINE_START_S`]; a non-positive bandwidth counts as the default.
pub fn startup_estimate(model: &ModelProfile, storage_gbps: f64, engine_start_s: f64) -> f64 {
    let gbps = if storage_gbps.is_finite() && storage_gbps > 0.0 {
        storage_gbps
    } else {
        DEFAULT_STORAGE_GBPS
    };
    let start = if engine_start_s.is_finite() {
        engine_start_s.max(0.0)
    } else {
        DEFAULT_ENGINE_START_S
    };
    model.cold_start_s(gbps, start)
}

/// One replica's steady state at one arrival rate.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Steady {
    /// Mean step time, seconds (≈ time per output token).
    pub step_s: f64,
    /// Estimated time to first token, seconds.
    pub ttft_s: f64,
    /// Requests running (decoding or prefilling).
    pub batch: f64,
}

/// What bounds a replica's capacity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bound {
    /// The step time reaches the TPOT target.
    Tpot,
    /// The estimated TTFT reaches its target.
    Ttft,
    /// `max_num_seqs`, the KV cache or the token budget runs out first (throughput-bound).
    Engine,
    /// Not even a trickle of load meets the SLO (a single prompt's prefill exceeds the TTFT
    /// target, say): the capacity is the load that keeps latencies within 1.5× an idle
    /// replica's instead.
    Unattainable,
}

/// Requests per second one replica serves at the SLO (before the utilization factor).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Capacity {
    /// The largest arrival rate that keeps the SLO, req/s.
    pub lambda_max: f64,
    /// What stops it growing.
    pub bound: Bound,
}

/// Clamps a token count into `[1, MAX_TOKENS]`; NaN counts as 1.
fn tokens(x: f64) -> f64 {
    if x.is_nan() {
        1.0
    } else {
        x.clamp(1.0, MAX_TOKENS)
    }
}

/// A count as a `u32` for [`BatchItem`] (saturating).
fn as_u32(x: f64) -> u32 {
    x.clamp(0.0, f64::from(u32::MAX)).round() as u32
}

/// Step time of `prefill` chunked-prefill tokens (prompt length `prompt`) and `decodes`
/// decode items at context `ctx`.
fn step(profile: &ReplicaProfile, prefill: f64, prompt: f64, decodes: f64, ctx: f64) -> f64 {
    let d = BatchItem {
        new_tokens: 1,
        context: as_u32(ctx),
    };
    // The request whose TPOT is measured is itself in the batch: at least one decode.
    let n = decodes.ceil().max(1.0) as usize;
    let p = prefill.ceil();
    let chunk = (p >= 1.0).then(|| BatchItem {
        new_tokens: as_u32(p),
        context: as_u32(((prompt - p) / 2.0).max(0.0)),
    });
    profile
        .cost
        .step_time(std::iter::repeat_n(d, n).chain(chunk), 0.0)
}

/// The steady state of one replica at `lambda` req/s, or `None` when the engine cannot keep
/// up (the batch, the KV cache or the token budget overflows, or the fixed point diverges).
pub fn steady_state(
    profile: &ReplicaProfile,
    lambda: f64,
    mean_in: f64,
    mean_out: f64,
) -> Option<Steady> {
    let (i, o) = (tokens(mean_in), tokens(mean_out));
    let lambda = if lambda.is_nan() {
        0.0
    } else {
        lambda.max(0.0)
    };
    let ctx = i + o / 2.0;
    let budget = f64::from(profile.max_num_batched_tokens.max(1));
    let seqs = f64::from(profile.max_num_seqs.max(1));
    let kv = profile.kv_tokens as f64;
    if i + o > kv {
        return None;
    }
    let at = |t: f64| -> Option<Steady> {
        let n = (lambda * o * t).max(1.0);
        let room = budget - n.ceil();
        if room < 1.0 || n > seqs {
            return None;
        }
        let chunks = (i / room).ceil();
        let chunk = i / chunks;
        let decode_s = step(profile, 0.0, i, n, ctx);
        let prefill_s = chunks * step(profile, chunk, i, n, ctx);
        let rho = lambda * prefill_s;
        if rho >= 1.0 {
            return None;
        }
        let step_s = 1.0 / (lambda * chunks + (1.0 - rho) / decode_s);
        let ttft_s = step_s + prefill_s + rho * prefill_s / (2.0 * (1.0 - rho));
        let batch = lambda * (o * step_s + ttft_s);
        (batch <= seqs && batch * (i + o) <= kv).then_some(Steady {
            step_s,
            ttft_s,
            batch,
        })
    };
    // T = f(T) with f increasing: iterate from below to the least fixed point.
    let mut t = 0.0;
    for _ in 0..200 {
        let s = at(t)?;
        if (s.step_s - t).abs() <= 1e-9 + 1e-6 * t {
            return Some(s);
        }
        if s.step_s > 3600.0 {
            return None;
        }
        t = s.step_s;
    }
    // Not converged in 200 rounds: the load sits at the edge of divergence; call it overload.
    None
}

/// Whether `s` keeps `slo`.
fn meets(s: &Steady, slo: &SloTarget) -> bool {
    s.step_s <= slo.tpot_s && s.ttft_s <= slo.ttft_s
}

/// The largest λ for which `ok(steady_state(λ))` holds, by doubling then bisection (relative
/// precision 1e-4); 0 when even a trickle fails.
fn largest(profile: &ReplicaProfile, i: f64, o: f64, ok: impl Fn(Option<Steady>) -> bool) -> f64 {
    let feasible = |l: f64| ok(steady_state(profile, l, i, o));
    let mut lo = 0.0;
    let mut hi = 1e-3;
    while feasible(hi) {
        lo = hi;
        hi *= 2.0;
        if hi > 1e9 {
            return lo;
        }
    }
    if lo == 0.0 && !feasible(1e-9) {
        return 0.0;
    }
    for _ in 0..60 {
        if hi - lo <= 1e-4 * hi {
            break;
        }
        let mid = 0.5 * (lo + hi);
        if feasible(mid) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    lo
}

/// λ_max of one replica at `slo` for prompts of `mean_in` and outputs of `mean_out` tokens
/// (the utilization factor is not applied).
pub fn capacity(
    profile: &ReplicaProfile,
    slo: &SloTarget,
    mean_in: f64,
    mean_out: f64,
) -> Capacity {
    let (i, o) = (tokens(mean_in), tokens(mean_out));
    let at_slo = largest(profile, i, o, |s| s.is_some_and(|s| meets(&s, slo)));
    if at_slo <= 0.0 {
        // Not even an idle replica meets it: plan for latencies within RELAX × the idle
        // replica's instead (or the engine's limit, if even one request does not fit).
        let idle = steady_state(profile, 0.0, i, o);
        let lambda_max = match idle {
            Some(idle) => {
                let relaxed = SloTarget {
                    ttft_s: slo.ttft_s.max(RELAX * idle.ttft_s),
                    tpot_s: slo.tpot_s.max(RELAX * idle.step_s),
                    utilization: slo.utilization,
                };
                largest(profile, i, o, |s| s.is_some_and(|s| meets(&s, &relaxed)))
            }
            None => 0.0,
        };
        return Capacity {
            lambda_max,
            bound: Bound::Unattainable,
        };
    }
    // What stopped it: look just past the edge.
    let bound = match steady_state(profile, at_slo * 1.001 + 1e-9, i, o) {
        None => Bound::Engine,
        Some(s) if s.step_s > slo.tpot_s => Bound::Tpot,
        Some(_) => Bound::Ttft,
    };
    Capacity {
        lambda_max: at_slo,
        bound,
    }
}

#[cfg(test)]
#[path = "capacity_tests.rs"]
pub(crate) mod tests;
