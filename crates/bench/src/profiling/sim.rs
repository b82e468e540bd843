//! The virtual-time measurer: one `brix-sim` engine, Poisson arrivals of one shape.

use brix_optimizer::Slo;
use brix_sim::{Engine, EngineConfig, GpuProfile, ModelProfile, NewRequest, run_open_loop};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::{
    AnalyticMeasurer, Measurement, Measurer, ProfilingError, Sample, Search, judge, max_rate,
};

/// Measures a rate by simulating one replica (vLLM's defaults for the model on the GPU) in
/// virtual time: `max(min_requests, rate × duration)` requests, the duration at least
/// `min_duration_s` and `latency_multiple` request latencies (at most `max_requests` and
/// `max_tokens` tokens in all, never fewer than `min_requests`), Poisson arrivals, random prompts (no prefix
/// is shared, so the prefix cache never helps), exactly `output` tokens each. The same seed
/// at every rate (common random numbers), so the search sees a smooth pass/fail edge.
#[derive(Clone, Debug)]
pub struct SimMeasurer {
    model: ModelProfile,
    gpu: GpuProfile,
    engine: EngineConfig,
    analytic: AnalyticMeasurer,
    /// Fewest requests per run.
    pub min_requests: usize,
    /// Fewest virtual seconds of arrivals per run.
    pub min_duration_s: f64,
    /// Most requests per run (bounds a run at high rates).
    pub max_requests: usize,
    /// Arrivals last at least this many times a request's latency (the roofline's estimate
    /// at the rate), so a backlog has time to show.
    pub latency_multiple: f64,
    /// Most prompt + output tokens per run (bounds the work and memory of one run).
    pub max_tokens: usize,
    /// Share of the first requests (by arrival) left out of the attainment (cold start).
    pub warmup: f64,
    /// Seed of arrivals and prompts.
    pub seed: u64,
}

impl SimMeasurer {
    /// A measurer for `model` on `gpu` with vLLM's default engine settings; fails as the
    /// engine would (the model does not fit).
    pub fn new(model: ModelProfile, gpu: GpuProfile) -> Result<Self, ProfilingError> {
        let engine = EngineConfig::vllm_defaults(&model, &gpu);
        Self::with_engine(model, gpu, engine)
    }

    /// The same with explicit engine settings.
    pub fn with_engine(
        model: ModelProfile,
        gpu: GpuProfile,
        engine: EngineConfig,
    ) -> Result<Self, ProfilingError> {
        engine.validate(&model, &gpu)?;
        let analytic = AnalyticMeasurer::with_engine(&model, &gpu, &engine)?;
        Ok(Self {
            model,
            gpu,
            engine,
            analytic,
            min_requests: 200,
            min_duration_s: 60.0,
            max_requests: 4000,
            latency_multiple: 4.0,
            max_tokens: 4_000_000,
            warmup: 0.1,
            seed: 0,
        })
    }

    /// The engine's context length: shapes are fitted to it.
    pub fn max_model_len(&self) -> u32 {
        self.engine.max_model_len
    }
}

impl Measurer for SimMeasurer {
    fn measure(
        &self,
        shape: super::Shape,
        rate: f64,
        slo: &Slo,
    ) -> Result<Measurement, ProfilingError> {
        // Arrivals must outlast a request's latency several times over, or a run ends before
        // a backlog shows (long outputs at a rate just past capacity would pass).
        let q = (slo.percentile / 100.0).clamp(0.0, 0.9999);
        let latency = self
            .analytic
            .steady_state(shape, rate, q)
            .or_else(|| self.analytic.steady_state(shape, 1e-6, q))
            .map_or(0.0, |s| s.ttft_s + f64::from(shape.output) * s.step_s);
        let duration = self.min_duration_s.max(self.latency_multiple * latency);
        let by_time = (rate * duration).ceil() as usize;
        let by_tokens = self.max_tokens / (shape.input + shape.output).max(1) as usize;
        let n = by_time
            .max(self.min_requests)
            .min(self.max_requests)
            .min(by_tokens.max(self.min_requests));
        let mut rng = SmallRng::seed_from_u64(
            self.seed ^ (u64::from(shape.input) << 32) ^ u64::from(shape.output),
        );
        let mut t = 0.0;
        let mut arrivals = Vec::with_capacity(n);
        for id in 0..n as u64 {
            let u: f64 = rng.random();
            t += -(1.0 - u).ln() / rate;
            let prompt = (0..shape.input)
                .map(|_| rng.random_range(1..100_000))
                .collect();
            let req = NewRequest {
                id,
                prompt,
                max_tokens: Some(shape.output),
                min_tokens: shape.output,
                ignore_eos: true,
                ..NewRequest::default()
            };
            arrivals.push((t, req));
        }
        let mut engine = Engine::new(self.engine.clone(), self.model.clone(), self.gpu.clone())?;
        let finished = run_open_loop(&mut engine, arrivals);
        let mut samples: Vec<Sample> = finished
            .iter()
            .map(|f| {
                let tpot = match (f.first_token, f.output_tokens) {
                    (Some(first), o) if o > 1 => Some((f.end - first) / f64::from(o - 1)),
                    _ => None,
                };
                Sample {
                    arrival: f.arrival,
                    end: (f.output_tokens >= shape.output).then_some(f.end),
                    ttft: f.ttft(),
                    tpot,
                }
            })
            .collect();
        // Requests the engine refused never finished: they count as failures.
        for _ in finished.len()..n {
            samples.push(Sample {
                arrival: t,
                end: None,
                ttft: None,
                tpot: None,
            });
        }
        Ok(judge(&mut samples, rate, slo, self.warmup))
    }

    /// The analytic (roofline) capacity: usually within a factor of two of the simulated one.
    fn guess(&self, shape: super::Shape, slo: &Slo) -> f64 {
        let search = Search {
            rel_tol: 0.1,
            ..Search::default()
        };
        max_rate(&self.analytic, shape, slo, &search)
            .ok()
            .filter(|r| *r > 0.0)
            .unwrap_or(1.0)
    }
}
