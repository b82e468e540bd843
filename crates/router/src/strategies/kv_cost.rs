//! `kv-cost` (Brix's own): the prefill a pod would still compute for this prompt plus its load,
//! in one unit, linear in both so a popular prefix spills over gradually, with no cliff.

use rand::RngCore;

use super::{Ctx, Scorer};
use crate::strategy::Strategy;

/// Cost = `(prompt_units − cached_units) + load_units_per_request × (in_flight + waiting)`;
/// `cached_units = prompt_units × cached_tokens / prompt_tokens` where the pod publishes KV
/// events, else matched blocks × `block_units`.
pub(crate) struct KvCost;

impl Scorer for KvCost {
    fn strategy(&self) -> Strategy {
        Strategy::KvCost
    }

    fn costs(&self, cx: &Ctx<'_>, _rng: &mut dyn RngCore) -> Vec<Option<f64>> {
        let cfg = cx.index.config();
        let prompt = f64::from(cx.req.prompt_units);
        cx.cached()
            .into_iter()
            .zip(cx.pods)
            .map(|(c, p)| {
                let cached = c.units(prompt, cfg.block_units);
                let queue = f64::from(p.in_flight) + p.metrics.waiting.unwrap_or(0.0);
                Some((prompt - cached) + cfg.load_units_per_request * queue)
            })
            .collect()
    }
}
