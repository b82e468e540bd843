//! Published vLLM measurements and what the model says for the same setup.
//!
//! Each point re-runs its benchmark in virtual time (same prompt/output lengths, same
//! concurrency) and reports the model's number beside the published one. Points marked
//! `fitted` were used to choose the GPU profile's efficiencies and overheads, and a test keeps
//! the model within `tolerance` of them; the others are shown for context only.

use crate::config::EngineConfig;
use crate::drive::run_closed_loop;
use crate::engine::{Engine, Finished};
use crate::profile::Catalog;
use crate::request::NewRequest;

/// One published number and the model's value for it.
#[derive(Clone, Debug)]
pub struct CalibrationRow {
    /// Id in the reference page (C5, C7, ...).
    pub id: &'static str,
    /// What was measured, on what.
    pub setup: &'static str,
    /// The published value.
    pub published: f64,
    /// The model's value for the same setup.
    pub model: f64,
    /// Unit of both values.
    pub unit: &'static str,
    /// Allowed relative error when `fitted`.
    pub tolerance: f64,
    /// Whether the profile was fitted to this point (and a test holds it).
    pub fitted: bool,
}

impl CalibrationRow {
    /// model / published − 1.
    pub fn error(&self) -> f64 {
        self.model / self.published - 1.0
    }
}

/// Runs `n` requests of `input` → `output` tokens with `concurrency` in flight on a fresh engine.
fn bench(
    gpu: &str,
    concurrency: usize,
    n: usize,
    input: u32,
    output: u32,
    offline: bool,
) -> (Vec<Finished>, f64) {
    let catalog = Catalog::builtin();
    let (Ok(model), Ok(gpu)) = (catalog.model("llama-3-8b"), catalog.gpu(gpu)) else {
        return (Vec::new(), 0.0);
    };
    let mut cfg = EngineConfig::vllm_defaults(model, gpu);
    if offline {
        // vLLM's offline `LLM` class (benchmark_latency) raises the token budget.
        cfg.max_num_batched_tokens = cfg.max_num_batched_tokens.max(8192) * 2;
    }
    let Ok(mut engine) = Engine::new(cfg, model.clone(), gpu.clone()) else {
        return (Vec::new(), 0.0);
    };
    run_closed_loop(&mut engine, concurrency, n, |i| NewRequest {
        id: i,
        // Distinct prompts: benchmark prompts are random, so no prefix hits.
        prompt: (0..input)
            .map(|t| (t * 7919 + i as u32 * 104_729) % 100_000 + 1)
            .collect(),
        max_tokens: Some(output),
        ignore_eos: true,
        ..NewRequest::default()
    })
}

fn mean(xs: impl Iterator<Item = f64>) -> f64 {
    let (s, n) = xs.fold((0.0, 0.0), |(s, n), x| (s + x, n + 1.0));
    if n == 0.0 { f64::NAN } else { s / n }
}

/// Output tokens per second of a closed-loop run.
fn throughput(done: &[Finished], end: f64) -> f64 {
    done.iter().map(|f| f64::from(f.output_tokens)).sum::<f64>() / end
}

/// Every calibration point with the model's value.
pub fn calibration_table() -> Vec<CalibrationRow> {
    let (c1, t1) = bench("A100-40GB", 1, 8, 1024, 128, false);
    let (c8, t8) = bench("A100-40GB", 8, 64, 1024, 128, false);
    let itl = mean(
        c1.iter()
            .filter_map(|f| Some(f.decode_time()? / f64::from(f.output_tokens - 1))),
    );
    let (lat, _) = bench("H200", 8, 8, 32, 128, true);
    let (h100, _) = bench("H100", 1, 4, 256, 64, false);
    let h100_itl = mean(
        h100.iter()
            .filter_map(|f| Some(f.decode_time()? / f64::from(f.output_tokens - 1))),
    );
    let h100_ttft = mean(h100.iter().filter_map(Finished::ttft));
    vec![
        CalibrationRow {
            id: "C7",
            setup: "A100-40GB, Llama-3.1-8B BF16, 1024 in / 128 out, concurrency 1: decode ITL",
            published: 13.3,
            model: itl * 1e3,
            unit: "ms",
            tolerance: 0.10,
            fitted: true,
        },
        CalibrationRow {
            id: "C7",
            setup: "same, concurrency 1: output throughput",
            published: 75.0,
            model: throughput(&c1, t1),
            unit: "tok/s",
            tolerance: 0.10,
            fitted: true,
        },
        CalibrationRow {
            id: "C7",
            setup: "same, throughput at concurrency 8 / concurrency 1",
            published: 6.6,
            model: throughput(&c8, t8) / throughput(&c1, t1),
            unit: "x",
            tolerance: 0.15,
            fitted: true,
        },
        CalibrationRow {
            id: "C5",
            setup: "H200, Llama-3.1-8B, 32 in / 128 out, batch 8: mean end-to-end latency",
            published: 833.4,
            model: mean(lat.iter().map(Finished::e2e)) * 1e3,
            unit: "ms",
            tolerance: 0.10,
            fitted: true,
        },
        CalibrationRow {
            id: "C8",
            setup: "H100 (assumed), Llama-3.1-8B on NIM/TensorRT-LLM, concurrency 1: ITL",
            published: 4.63,
            model: h100_itl * 1e3,
            unit: "ms",
            tolerance: 0.0,
            fitted: false,
        },
        CalibrationRow {
            id: "C8",
            setup: "same: TTFT (model: 256-token prompt; NIM's ISL not captured)",
            published: 10.3,
            model: h100_ttft * 1e3,
            unit: "ms",
            tolerance: 0.0,
            fitted: false,
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fitted_points_stay_within_tolerance() {
        let table = calibration_table();
        assert!(table.iter().all(|r| r.model.is_finite()), "{table:#?}");
        for r in table.iter().filter(|r| r.fitted) {
            assert!(
                r.error().abs() <= r.tolerance,
                "{} {}: model {:.2} vs published {:.2} {} ({:+.1} %, tolerance {:.0} %)",
                r.id,
                r.setup,
                r.model,
                r.published,
                r.unit,
                r.error() * 100.0,
                r.tolerance * 100.0
            );
        }
    }
}
