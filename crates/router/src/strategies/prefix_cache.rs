//! `prefix-cache`: AIBrix's rule — imbalance guard, then the longest cached prefix among pods
//! loaded at most mean + k·σ, else least-request.

use rand::RngCore;

use super::{Ctx, Scorer};
use crate::decision::{Decision, Fallback};
use crate::strategy::Strategy;

/// Longest match within the load cap; mixed, cost = `1 − matched blocks / prompt blocks`.
pub(crate) struct PrefixCache;

impl Scorer for PrefixCache {
    fn strategy(&self) -> Strategy {
        Strategy::PrefixCache
    }

    fn costs(&self, cx: &Ctx<'_>, _rng: &mut dyn RngCore) -> Vec<Option<f64>> {
        let blocks = cx.req.blocks.len().max(1) as f64;
        cx.index
            .matched(cx.req.blocks, cx.pods, cx.now)
            .into_iter()
            .map(|m| Some(1.0 - m as f64 / blocks))
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
        let matched = cx.index.matched(cx.req.blocks, pods, cx.now);
        let mut candidates: Vec<usize> = cx
            .order
            .iter()
            .copied()
            .filter(|&p| matched[p] > 0)
            .collect();
        // Longest match first, then least loaded; the stable sort keeps the shuffled order for ties.
        candidates.sort_by_key(|&p| (std::cmp::Reverse(matched[p]), pods[p].in_flight));
        match candidates.into_iter().find(|&p| loads[p] <= cap) {
            Some(pod) => Decision::chose(pod),
            None => cx.fallback(Fallback::NoPrefixMatch),
        }
    }
}
