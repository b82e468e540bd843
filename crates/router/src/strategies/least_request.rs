//! `least-request`: fewest requests in flight from this gateway.

use rand::RngCore;

use super::{Ctx, Scorer};
use crate::strategy::Strategy;

/// Cost = the gateway's exact in-flight count on the pod.
pub(crate) struct LeastRequest;

impl Scorer for LeastRequest {
    fn strategy(&self) -> Strategy {
        Strategy::LeastRequest
    }

    fn costs(&self, cx: &Ctx<'_>, _rng: &mut dyn RngCore) -> Vec<Option<f64>> {
        cx.pods
            .iter()
            .map(|p| Some(f64::from(p.in_flight)))
            .collect()
    }
}
