//! The analytic measurer: the roofline alone, no simulation (the paper's open question: can
//! it replace profiling?).
//!
//! At `rate` r of shape (I, O), one vLLM engine in steady state runs two kinds of step: decodes
//! only (`t_d = step(b decodes at context I + O/2)`) and decodes plus prompt tokens
//! (`t_p = step(b decodes + c prompt tokens)`). With mean step time t̄: `b = r·O·t̄` requests
//! decode at once (Little's law), a prompt takes `s = ⌈I / (budget − b)⌉` steps, a share
//! `π = 1 − e^(−r·t̄·s)` of steps carry prompt tokens, `c = r·I·t̄ / π` of them, and
//! `t̄ = π·t_p + (1 − π)·t_d` (solved by fixed-point iteration). The rate is sustainable if the
//! fixed point fits the engine: `b ≤ max_num_seqs`, `b·(I + O/2) ≤` KV tokens,
//! `c ≤ budget − b`. TPOT at the SLO's percentile q: of a request's O − 1 decode steps, the
//! q-quantile of those carrying prompts (prompts arrive as a Poisson stream, s steps each)
//! cost t_p, the rest t_d. TTFT = API intake + s·t_p + an M/M/1 wait at the share u of the
//! free budget prompts use (`s·t_p/(1−u) · ln(u/(1−q))`, 0 when u ≤ 1−q); e2e = TTFT +
//! (O − 1)·t̄. Attainment is 1 when every bound holds, else 0.

use brix_optimizer::Slo;
use brix_sim::{BatchItem, EngineConfig, GpuProfile, ModelProfile, StepCost};

use super::{Measurement, Measurer, ProfilingError, Shape};

/// Judges a rate from the roofline's steady state (module docs).
#[derive(Clone, Debug)]
pub struct AnalyticMeasurer {
    cost: StepCost,
    kv_tokens: f64,
    max_seqs: f64,
    budget: f64,
    intake_s: f64,
    max_model_len: u32,
}

/// The steady state at one rate, when it exists.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SteadyState {
    /// Mean step time, s.
    pub step_s: f64,
    /// Time per output token at the percentile, s.
    pub tpot_s: f64,
    /// Requests decoding at once.
    pub batch: f64,
    /// Prompt tokens in a step that carries any.
    pub prefill_tokens: f64,
    /// Time to first token at the SLO's percentile, s.
    pub ttft_s: f64,
}

impl AnalyticMeasurer {
    /// vLLM's default settings for `model` on `gpu`.
    pub fn new(model: &ModelProfile, gpu: &GpuProfile) -> Result<Self, ProfilingError> {
        Self::with_engine(model, gpu, &EngineConfig::vllm_defaults(model, gpu))
    }

    /// Explicit engine settings (their KV capacity and limits bound the batch).
    pub fn with_engine(
        model: &ModelProfile,
        gpu: &GpuProfile,
        engine: &EngineConfig,
    ) -> Result<Self, ProfilingError> {
        let blocks = engine.validate(model, gpu)?;
        Ok(Self {
            cost: StepCost::new(model, gpu),
            kv_tokens: f64::from(blocks) * f64::from(engine.block_size),
            max_seqs: f64::from(engine.max_num_seqs),
            budget: f64::from(engine.max_num_batched_tokens),
            intake_s: gpu.request_intake_ms * 1e-3,
            max_model_len: engine.max_model_len,
        })
    }

    /// The engine's context length: shapes are fitted to it.
    pub fn max_model_len(&self) -> u32 {
        self.max_model_len
    }

    /// One step's time with `b` decodes and `p` prefill tokens of prompts of `input` tokens.
    fn step(&self, shape: Shape, b: f64, p: f64) -> f64 {
        let (i, o) = (shape.input, shape.output);
        let ctx = i + o / 2;
        let decodes = (b.ceil().max(1.0)) as usize;
        let mut items: Vec<BatchItem> = vec![
            BatchItem {
                new_tokens: 1,
                context: ctx,
            };
            decodes
        ];
        // Prefill tokens as whole-prompt chunks (context: the part already prefilled, on
        // average half of what is left when a prompt spans several steps).
        let mut left = p.ceil() as u32;
        while left > 0 {
            let chunk = left.min(i);
            items.push(BatchItem {
                new_tokens: chunk,
                context: (i - chunk) / 2,
            });
            left -= chunk;
        }
        self.cost.step_time(items, 0.0)
    }

    /// The steady state at `rate` req/s of `shape` (None: none exists within the engine's
    /// limits), with TPOT and TTFT at percentile `q` (0–1).
    pub fn steady_state(&self, shape: Shape, rate: f64, q: f64) -> Option<SteadyState> {
        let (i, o) = (f64::from(shape.input), f64::from(shape.output));
        let mut mean = self.step(shape, 0.0, 0.0);
        let mut last = None;
        for _ in 0..200 {
            let s = self.split(shape, rate, mean)?;
            let next = s.prefill_share * s.prefill_step + (1.0 - s.prefill_share) * s.decode_step;
            let done = (next - mean).abs() <= 1e-9 + 1e-6 * mean;
            // A step function (whole requests) can cycle between two values: keep the larger.
            mean = if done {
                next
            } else {
                next.max(mean * 0.5 + next * 0.5)
            };
            last = Some(s);
            if done {
                break;
            }
        }
        let s = self.split(shape, rate, mean).or(last)?;
        // TPOT: the share of a request's O − 1 decode steps that carry someone's prefill, at
        // the percentile: prefills arrive as a Poisson stream, each taking `chunks` steps.
        let decodes = (o - 1.0).max(0.0);
        let arrivals = poisson_quantile(decodes * s.prefill_share / s.chunks, q);
        let slow = (arrivals * s.chunks).min(decodes);
        let tpot = if decodes > 0.0 {
            (slow * s.prefill_step + (decodes - slow) * s.decode_step) / decodes
        } else {
            s.decode_step
        };
        // TTFT: its own prefill steps, after the prompts queued before it (M/M/1 at the share
        // of the free token budget prompts use).
        let service = s.chunks * s.prefill_step;
        let u = rate * i * mean / s.free;
        if u >= 1.0 {
            return None;
        }
        let wait = if u > 1.0 - q {
            service / (1.0 - u) * (u / (1.0 - q)).ln()
        } else {
            0.0
        };
        Some(SteadyState {
            step_s: mean,
            tpot_s: tpot,
            batch: s.batch,
            prefill_tokens: s.prefill_tokens,
            ttft_s: self.intake_s + wait + service,
        })
    }

    /// The two kinds of step at mean step time `mean`: decodes only, and decodes with prompt
    /// tokens; None when the batch does not fit the engine.
    fn split(&self, shape: Shape, rate: f64, mean: f64) -> Option<Split> {
        let (i, o) = (f64::from(shape.input), f64::from(shape.output));
        // Little's law: each request decodes for O steps.
        let batch = rate * o * mean;
        if batch > self.max_seqs || batch * (i + o / 2.0) > self.kv_tokens || batch >= self.budget {
            return None;
        }
        let free = self.budget - batch;
        let chunks = (i / free).ceil().max(1.0);
        // Share of steps that carry prompt tokens: some arrival's chunks fall in them.
        let prefill_share = (1.0 - (-rate * mean * chunks).exp()).max(1e-12);
        let prefill_tokens = rate * i * mean / prefill_share;
        if prefill_tokens > free * 1.000_001 {
            return None;
        }
        Some(Split {
            batch,
            free,
            chunks,
            prefill_share,
            prefill_tokens,
            decode_step: self.step(shape, batch, 0.0),
            prefill_step: self.step(shape, batch, prefill_tokens.min(free)),
        })
    }
}

/// One steady state's two kinds of step.
#[derive(Clone, Copy, Debug)]
struct Split {
    batch: f64,
    free: f64,
    chunks: f64,
    prefill_share: f64,
    prefill_tokens: f64,
    decode_step: f64,
    prefill_step: f64,
}

/// The smallest k with P(N ≤ k) ≥ q for N ~ Poisson(mean) (log space: no underflow).
fn poisson_quantile(mean: f64, q: f64) -> f64 {
    if mean <= 0.0 {
        return 0.0;
    }
    let (mut cdf, mut log_fact, mut k) = (0.0, 0.0, 0.0_f64);
    loop {
        if k > 0.0 {
            log_fact += k.ln();
        }
        cdf += (-mean + k * mean.ln() - log_fact).exp();
        if cdf >= q || k > mean + 20.0 * mean.sqrt() + 20.0 {
            return k;
        }
        k += 1.0;
    }
}

impl Measurer for AnalyticMeasurer {
    fn measure(&self, shape: Shape, rate: f64, slo: &Slo) -> Result<Measurement, ProfilingError> {
        let q = (slo.percentile / 100.0).clamp(0.0, 0.9999);
        let Some(s) = self.steady_state(shape, rate, q) else {
            return Ok(Measurement {
                attainment: 0.0,
                throughput: 0.0,
            });
        };
        let tpot = (shape.output > 1).then_some(s.tpot_s);
        let e2e = s.ttft_s + f64::from(shape.output.saturating_sub(1)) * s.step_s;
        let met = slo.met(Some(s.ttft_s), tpot, Some(e2e));
        Ok(Measurement {
            attainment: if met { 1.0 } else { 0.0 },
            throughput: rate,
        })
    }
}
