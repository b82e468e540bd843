//! The live measurer: the same Poisson runs, sent to an OpenAI endpoint by `brix bench run`'s
//! client (`/v1/completions`, streamed, `ignore_eos`), for people with real engines.

use brix_optimizer::Slo;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::runtime::Handle;

use super::{Measurement, Measurer, ProfilingError, Sample, Shape, judge};
use crate::live::{LiveConfig, Pacing};
use crate::workload::vocab::{VOCAB_LEN, text};
use crate::workload::{WorkRequest, Workload};

/// Measures a rate by sending `max(min_requests, rate × duration_s)` requests (at most
/// `max_requests`) with Poisson arrivals to a live endpoint, one replica behind it. Runs take
/// real time: keep the grid small, the duration short. Call it from outside the runtime whose
/// `handle` it holds (e.g. in `spawn_blocking`), since it blocks on each run.
#[derive(Clone, Debug)]
pub struct LiveMeasurer {
    cfg: LiveConfig,
    handle: Handle,
    /// Fewest requests per run.
    pub min_requests: usize,
    /// Seconds of arrivals per run.
    pub duration_s: f64,
    /// Most requests per run.
    pub max_requests: usize,
    /// Share of the first requests left out of the attainment (cold start).
    pub warmup: f64,
    /// Seed of arrivals and prompts.
    pub seed: u64,
    /// The endpoint's context length: shapes are fitted to it.
    pub max_model_len: u32,
}

impl LiveMeasurer {
    /// Open-loop runs against `cfg`'s endpoint, driven on `handle`'s runtime.
    pub fn new(mut cfg: LiveConfig, handle: Handle, max_model_len: u32) -> Self {
        cfg.pacing = Pacing::Open;
        cfg.progress = false;
        Self {
            cfg,
            handle,
            min_requests: 50,
            duration_s: 30.0,
            max_requests: 2000,
            warmup: 0.1,
            seed: 0,
            max_model_len,
        }
    }
}

impl Measurer for LiveMeasurer {
    fn measure(&self, shape: Shape, rate: f64, slo: &Slo) -> Result<Measurement, ProfilingError> {
        let n = ((rate * self.duration_s).ceil() as usize)
            .max(self.min_requests)
            .min(self.max_requests);
        let mut rng = SmallRng::seed_from_u64(
            self.seed ^ (u64::from(shape.input) << 32) ^ u64::from(shape.output),
        );
        let mut at = 0.0;
        let requests = (0..n as u64)
            .map(|id| {
                let u: f64 = rng.random();
                at += -(1.0 - u).ln() / rate;
                WorkRequest {
                    id,
                    at_s: at,
                    session: None,
                    prompt: (0..shape.input)
                        .map(|_| rng.random_range(0..VOCAB_LEN))
                        .collect(),
                    output_tokens: shape.output,
                }
            })
            .collect();
        let workload = Workload { requests };
        let records = self
            .handle
            .block_on(crate::live::run(&self.cfg, &workload, text))?;
        let mut samples: Vec<Sample> = records
            .iter()
            .map(|r| {
                let ok = r.ok() && r.output_tokens >= shape.output;
                Sample {
                    arrival: r.scheduled_s,
                    end: r.e2e_ms.filter(|_| ok).map(|ms| r.sent_s + ms * 1e-3),
                    ttft: r.ttft_ms.map(|ms| ms * 1e-3),
                    tpot: r.tpot_ms.map(|ms| ms * 1e-3),
                }
            })
            .collect();
        Ok(judge(&mut samples, rate, slo, self.warmup))
    }
}
