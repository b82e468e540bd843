//! `prefix-cache`: AIBrix's rule — imbalance guard, then the longest cached prefix among pods
//! loaded at most mean + k·σ, else least-request.

use rand::RngCore;

use super::{Ctx, Scorer};
use crate::decision::{Decision, Fallback};
use crate::strategy::Strategy;

/// Longest match within the load cap; mixed, cost = `1 − cached share of the prompt` (exact
/// where the pod publishes KV events, else matched blocks / prompt blocks).
pub(crate) struct PrefixCache;

impl Scorer for PrefixCache {
    fn strategy(&self) -> Strategy {
        Strategy::PrefixCache
    }

    fn costs(&self, cx: &Ctx<'_>, _rng: &mut dyn RngCore) -> Vec<Option<f64>> {
        let blocks = cx.req.blocks.len();
        cx.cached()
            .into_iter()
            .map(|c| Some(1.0 - c.share(blocks)))
            .collect()
    }

    fn decide(&self, cx: &Ctx<'_>, _rng: &mut dyn RngCore) -> Decision {
        let cfg = cx.index.config();
        let pods = cx.pods;
        let loads: Vec<f64> = pods.iter().map(|p| f64::from(p.in_flight)).collect();
        let (min, max) = loads
            .iter()
            .fold((f64::MAX, f64::MIN), |(lo, hi), &x| (lo.min(x), hi.max(x)));
        if max - min > f64::from(cfg.imbalance_abs) {
            return cx.fallback(Fallback::LoadImbalance);
        }
        let n = loads.len() as f64;
        let mean = loads.iter().sum::<f64>() / n;
        let sd = (loads.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n).sqrt();
        let cap = mean + cfg.std_dev_factor * sd;
        let blocks = cx.req.blocks.len();
        let share: Vec<f64> = cx.cached().into_iter().map(|c| c.share(blocks)).collect();
        let mut candidates: Vec<usize> = cx
            .order
            .iter()
            .copied()
            .filter(|&p| share[p] > 0.0)
            .collect();
        // Longest match first, then least loaded; the stable sort keeps the shuffled order for ties.
        candidates.sort_by(|&a, &b| {
            share[b]
                .total_cmp(&share[a])
                .then(pods[a].in_flight.cmp(&pods[b].in_flight))
        });
        match candidates.into_iter().find(|&p| loads[p] <= cap) {
            Some(pod) => Decision::chose(pod),
            None => cx.fallback(Fallback::NoPrefixMatch),
        }
    }
}
