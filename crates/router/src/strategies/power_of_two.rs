//! `power-of-two`: the less loaded of two distinct random pods.

use rand::RngCore;

use super::{Ctx, Scorer};
use crate::strategy::Strategy;

/// In-flight cost for the first two pods of the seeded shuffle, no signal for the rest; ties
/// go to the first drawn.
pub(crate) struct PowerOfTwo;

impl Scorer for PowerOfTwo {
    fn strategy(&self) -> Strategy {
        Strategy::PowerOfTwo
    }

    fn costs(&self, cx: &Ctx<'_>, _rng: &mut dyn RngCore) -> Vec<Option<f64>> {
        let pair = [cx.order[0], *cx.order.get(1).unwrap_or(&cx.order[0])];
        (0..cx.pods.len())
            .map(|p| pair.contains(&p).then(|| f64::from(cx.pods[p].in_flight)))
            .collect()
    }
}
