//! The analytic measurer: the roofline alone, no simulation (the paper's open question: can
//! it replace profiling?).
//!
//! At `rate` r of shape (I, O), the steady state of one vLLM engine has a step time t solving
//! `t = step(b decodes at context I + O/2, p prefill tokens)` with `b = r·O·t` requests
//! decoding (Little's law: each decodes for O steps) and `p = r·I·t` prompt tokens prefilled
//! per step (chunked prefill rides along the decodes). The rate is sustainable if the fixed
//! point exists and fits the engine: `b ≤ max_num_seqs`, `b·(I + O/2) ≤` KV tokens,
//! `b + p ≤ max_num_batched_tokens`. Then TPOT = t; a prompt takes
//! `s = ⌈I / (budget − b)⌉` steps of t to prefill, and waits for the prompts before it as in
//! an M/M/1 queue of utilisation `u = p / (budget − b)`: at the SLO's percentile q the wait is
//! `s/(1−u) · ln(u/(1−q))` (0 when u ≤ 1−q); TTFT = API intake + wait + s·t; e2e = TTFT +
//! (O − 1)·t. Attainment is 1 when every bound holds, else 0.

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
    /// Step time, s (= TPOT).
    pub step_s: f64,
    /// Requests decoding at once.
    pub batch: f64,
    /// Prompt tokens prefilled per step.
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
    /// limits), with TTFT at percentile `q` (0–1).
    pub fn steady_state(&self, shape: Shape, rate: f64, q: f64) -> Option<SteadyState> {
        let (i, o) = (f64::from(shape.input), f64::from(shape.output));
        let fits = |b: f64, p: f64| {
            b <= self.max_seqs && b * (i + o / 2.0) <= self.kv_tokens && b + p <= self.budget
        };
        let mut t = self.step(shape, 0.0, 0.0);
        let mut converged = false;
        for _ in 0..200 {
            let (b, p) = (rate * o * t, rate * i * t);
            if !fits(b, p) {
                return None;
            }
            let next = self.step(shape, b, p);
            if (next - t).abs() <= 1e-9 + 1e-6 * t {
                t = next;
                converged = true;
                break;
            }
            t = next;
        }
        // A step function (whole requests) can cycle between two values: take the larger.
        if !converged {
            let (b, p) = (rate * o * t, rate * i * t);
            t = t.max(self.step(shape, b, p));
        }
        let (b, p) = (rate * o * t, rate * i * t);
        if !fits(b, p) {
            return None;
        }
        let free = self.budget - b;
        let steps = (i / free).ceil().max(1.0);
        let service = steps * t;
        let u = p / free;
        if u >= 1.0 {
            return None;
        }
        let wait = if u > 1.0 - q {
            service / (1.0 - u) * (u / (1.0 - q)).ln()
        } else {
            0.0
        };
        Some(SteadyState {
            step_s: t,
            batch: b,
            prefill_tokens: p,
            ttft_s: self.intake_s + wait + service,
        })
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
        let tpot = (shape.output > 1).then_some(s.step_s);
        let e2e = s.ttft_s + f64::from(shape.output.saturating_sub(1)) * s.step_s;
        let met = slo.met(Some(s.ttft_s), tpot, Some(e2e));
        Ok(Measurement {
            attainment: if met { 1.0 } else { 0.0 },
            throughput: rate,
        })
    }
}
