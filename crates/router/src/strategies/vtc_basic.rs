//! `vtc-basic`: AIBrix's per-user token fairness — heavier users land on higher-ranked pods,
//! tempered by load and a small random jitter.

use rand::{Rng, RngCore};

use super::{Ctx, Scorer};
use crate::decision::{Decision, Fallback};
use crate::strategy::Strategy;

/// Weight of the fairness term (AIBrix's documented default).
const FAIRNESS_WEIGHT: f64 = 1.0;
/// Weight of the utilisation term (AIBrix's documented default).
const UTIL_WEIGHT: f64 = 1.0;
/// In-flight requests at which the utilisation term saturates at 1.
const MAX_POD_LOAD: f64 = 100.0;
/// Smallest token bucket.
const MIN_BUCKET: f64 = 1000.0;
/// Upper end of the uniform jitter that breaks ties.
const JITTER: f64 = 0.1;

/// Cost = `|rank − min(user / bucket, n − 1)| × 1 + min(in_flight / 100, 1) × 1 + U[0, 0.1)`,
/// `bucket = max(1000, (min + max) / 2)`, rank = position by pod name; least-request
/// (`no_user`) without a user.
pub(crate) struct VtcBasic;

impl Scorer for VtcBasic {
    fn strategy(&self) -> Strategy {
        Strategy::VtcBasic
    }

    fn costs(&self, cx: &Ctx<'_>, rng: &mut dyn RngCore) -> Vec<Option<f64>> {
        let pods = cx.pods;
        let Some(view) = cx.req.user.and(cx.req.vtc) else {
            return vec![None; pods.len()];
        };
        let bucket = MIN_BUCKET.max((view.min_tokens + view.max_tokens) / 2.0);
        let top = pods.len().saturating_sub(1) as f64;
        let normalized = (view.user_tokens.max(0.0) / bucket).min(top);
        // Rank by name (address for equal names), so the slice's order does not matter.
        let mut by_name: Vec<usize> = (0..pods.len()).collect();
        by_name.sort_by(|&a, &b| {
            (&pods[a].name, &pods[a].address).cmp(&(&pods[b].name, &pods[b].address))
        });
        let mut costs = vec![None; pods.len()];
        for (rank, &p) in by_name.iter().enumerate() {
            // AIBrix's load is the gateway's own in-flight count (`realtime_num_requests_running`).
            let util = (f64::from(pods[p].in_flight) / MAX_POD_LOAD).min(1.0);
            let fairness = (rank as f64 - normalized).abs();
            let jitter = rng.random::<f64>() * JITTER;
            costs[p] = Some(fairness * FAIRNESS_WEIGHT + util * UTIL_WEIGHT + jitter);
        }
        costs
    }

    fn decide(&self, cx: &Ctx<'_>, rng: &mut dyn RngCore) -> Decision {
        match cx.cheapest(&self.costs(cx, rng)) {
            Some(pod) => Decision::chose(pod),
            None => cx.fallback(Fallback::NoUser),
        }
    }
}
