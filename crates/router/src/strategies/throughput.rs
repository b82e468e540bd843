//! `throughput`: the pod processing the fewest weighted tokens per second, as measured by this
//! gateway (AIBrix reads PromQL and silently turns random without Prometheus).

use rand::RngCore;

use super::{Ctx, Scorer};
use crate::strategy::Strategy;

/// Cost = `2 × prompt_tps + output_tps` from [`crate::Observed`]; never missing (0 when idle).
pub(crate) struct Throughput;

impl Scorer for Throughput {
    fn strategy(&self) -> Strategy {
        Strategy::Throughput
    }

    fn costs(&self, cx: &Ctx<'_>, _rng: &mut dyn RngCore) -> Vec<Option<f64>> {
        cx.pods
            .iter()
            .map(|p| Some(2.0 * p.observed.prompt_tps + p.observed.output_tps))
            .collect()
    }
}
