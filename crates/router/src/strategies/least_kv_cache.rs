//! `least-kv-cache`: lowest KV-cache usage, on `kv_cache_usage_perc` alone (vLLM V1 has no
//! CPU-cache term, which makes AIBrix's version always random).

use rand::RngCore;

use super::{Ctx, Scorer};
use crate::strategy::Strategy;

/// Cost = `vllm:kv_cache_usage_perc`; least-request when no pod exports it.
pub(crate) struct LeastKvCache;

impl Scorer for LeastKvCache {
    fn strategy(&self) -> Strategy {
        Strategy::LeastKvCache
    }

    fn costs(&self, cx: &Ctx<'_>, _rng: &mut dyn RngCore) -> Vec<Option<f64>> {
        cx.pods.iter().map(|p| p.metrics.kv_usage).collect()
    }
}
