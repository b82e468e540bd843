//! Picking a pod: one strategy's own rule, or a weighted mix of normalised scores.
//!
//! Fallback rules (each reported in [`Decision::fallback`] so the gateway counts and logs
//! it; none is silent, and none falls back to random):
//! - a strategy whose signal no pod exports (`least-kv-cache` without KV metrics,
//!   `least-latency` before any latency sample) routes least-request;
//! - `session-affinity` without a pinned pod or a session key routes least-request;
//! - `prefix-cache` with no usable match, or under load imbalance, routes least-request;
//! - `vtc-basic` without a user routes least-request.

use rand::seq::SliceRandom;
use rand::{Rng, RngCore};

use crate::decision::{Decision, NoRoute};
use crate::pod::{Pod, RouteRequest};
use crate::prefix::PrefixIndex;
use crate::score::normalise;
use crate::strategies::{Ctx, scorer};
use crate::strategy::{Strategy, Weighted};

/// Chooses a pod for `req` among `pods` (all ready, all serving the model).
pub fn route(
    strategy: &Weighted,
    req: &RouteRequest<'_>,
    pods: &[Pod],
    index: &PrefixIndex,
    now: f64,
    rng: &mut impl Rng,
) -> Result<Decision, NoRoute> {
    if pods.is_empty() {
        return Err(NoRoute::NoPods);
    }
    // A seeded shuffle decides every tie, so no pod is favoured by its position.
    let mut order: Vec<usize> = (0..pods.len()).collect();
    order.shuffle(rng);
    let cx = Ctx {
        req,
        pods,
        index,
        now,
        order: &order,
    };
    Ok(match strategy.0.as_slice() {
        [(one, _)] => scorer(*one).decide(&cx, rng),
        mix => weighted(mix, &cx, rng),
    })
}

/// Σ weight × normalised score over the mix's strategies; the best total wins.
fn weighted(mix: &[(Strategy, u32)], cx: &Ctx<'_>, rng: &mut dyn RngCore) -> Decision {
    let mut total = vec![0.0; cx.pods.len()];
    let weights: f64 = mix.iter().map(|(_, w)| f64::from(*w)).sum();
    for &(strategy, w) in mix {
        let costs = scorer(strategy).costs(cx, rng);
        for (t, s) in total.iter_mut().zip(normalise(&costs)) {
            *t += s * f64::from(w) / weights;
        }
    }
    Decision::chose(best(&total, cx.order).unwrap_or(0))
}

/// The first pod in `order` with the highest score.
fn best(scores: &[f64], order: &[usize]) -> Option<usize> {
    order
        .iter()
        .copied()
        .reduce(|a, b| if scores[b] > scores[a] { b } else { a })
}

#[cfg(test)]
#[path = "select_tests.rs"]
mod tests;
