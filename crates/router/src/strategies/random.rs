//! `random`: uniform over ready pods.

use rand::{Rng, RngCore};

use super::{Ctx, Scorer};
use crate::decision::Decision;
use crate::strategy::Strategy;

/// Uniform choice: the first pod of the seeded shuffle; uniform draws when mixed.
pub(crate) struct Random;

impl Scorer for Random {
    fn strategy(&self) -> Strategy {
        Strategy::Random
    }

    fn costs(&self, cx: &Ctx<'_>, rng: &mut dyn RngCore) -> Vec<Option<f64>> {
        cx.pods.iter().map(|_| Some(rng.random::<f64>())).collect()
    }

    fn decide(&self, cx: &Ctx<'_>, _rng: &mut dyn RngCore) -> Decision {
        Decision::chose(cx.order[0])
    }
}
