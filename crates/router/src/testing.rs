//! Builders shared by the table tests.

use rand::SeedableRng;
use rand::rngs::SmallRng;

use crate::decision::Decision;
use crate::pod::{EngineMetrics, Pod, RouteRequest};
use crate::prefix::{PrefixConfig, PrefixIndex};
use crate::select::route;
use crate::strategy::Weighted;

/// Pod `i` at `10.0.0.i:8000` with that load and KV usage.
pub(crate) fn pod(i: usize, in_flight: u32, kv: Option<f64>) -> Pod {
    Pod {
        name: format!("pod-{i}"),
        address: format!("10.0.0.{i}:8000"),
        in_flight,
        metrics: EngineMetrics {
            kv_usage: kv,
            ..EngineMetrics::default()
        },
        ..Pod::default()
    }
}

/// Pods 0.. with those loads.
pub(crate) fn pods(loads: &[u32]) -> Vec<Pod> {
    loads
        .iter()
        .enumerate()
        .map(|(i, &l)| pod(i, l, None))
        .collect()
}

/// Routes at t = 100 with a seeded RNG, panicking on errors.
pub(crate) fn pick(
    strategy: &str,
    req: &RouteRequest<'_>,
    pods: &[Pod],
    index: &PrefixIndex,
    seed: u64,
) -> Decision {
    let s: Weighted = strategy.parse().unwrap_or_else(|e| panic!("{e}"));
    route(
        &s,
        req,
        pods,
        index,
        100.0,
        &mut SmallRng::seed_from_u64(seed),
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

/// An empty prefix index with AIBrix's settings.
pub(crate) fn empty() -> PrefixIndex {
    PrefixIndex::new(PrefixConfig::default())
}
