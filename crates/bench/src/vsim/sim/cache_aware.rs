//! SGLang's `cache_aware` policy (sglang-router 0.3.2, its Python launcher's defaults), as a
//! baseline to compare the gateway's strategies with in virtual time.
//!
//! Per request: when the engines' in-flight counts are imbalanced (max − min > 64 and
//! max > 1.5 × min) the least loaded engine; otherwise the engine with the longest cached
//! prefix of the prompt's text when it covers more than 30 % of it, else the engine with the
//! smallest tree (the fewest distinct blocks routed to it). The chosen engine's tree learns
//! the prompt. Approximations: SGLang's radix tree is over characters; here it is the
//! gateway's prefix index over 128-byte blocks (20-minute TTL, the same match for
//! every strategy), and the tree size counts distinct blocks sent, never evicted (the
//! launcher's `max_tree_size` is 64 M characters per worker).

use std::collections::HashSet;

use brix_router::fleet::Booking;
use brix_router::{Pod, RouteRequest};
use rand::SeedableRng;
use rand::rngs::SmallRng;
use rand::seq::SliceRandom;

use super::{GOLDEN, Sim};

/// The launcher's `--cache-threshold`.
const CACHE_THRESHOLD: f64 = 0.3;
/// The launcher's `--balance-abs-threshold`.
const BALANCE_ABS: u32 = 64;
/// The launcher's `--balance-rel-threshold`.
const BALANCE_REL: f64 = 1.5;

/// Distinct blocks routed to each engine (SGLang's per-worker tree size).
#[derive(Default)]
pub(super) struct Trees(Vec<HashSet<u64>>);

impl Sim<'_> {
    /// SGLang's decision among the engines in rotation (or `holders`), booked as the gateway
    /// books any decision.
    pub(super) fn cache_aware(
        &mut self,
        i: usize,
        now: f64,
        holders: Option<&[usize]>,
    ) -> (usize, Booking) {
        let key = &self.keys[i];
        let mut rng = SmallRng::seed_from_u64(self.cfg.seed ^ self.decisions.wrapping_mul(GOLDEN));
        self.decisions += 1;
        let mut order: Vec<usize> = (0..self.fleet.len())
            .filter(|&e| self.fleet.routable(e))
            .filter(|e| holders.is_none_or(|h| h.contains(e)))
            .collect();
        if order.is_empty() {
            order = holders.map_or_else(|| vec![0], <[usize]>::to_vec);
        }
        order.shuffle(&mut rng);
        let load = |e: usize| self.fleet.core(e).in_flight();
        let (min, max) = order.iter().fold((u32::MAX, 0), |(lo, hi), &e| {
            (lo.min(load(e)), hi.max(load(e)))
        });
        let least_loaded = || order.iter().copied().min_by_key(|&e| load(e));
        let e = if max - min > BALANCE_ABS && f64::from(max) > BALANCE_REL * f64::from(min) {
            least_loaded()
        } else {
            let views: Vec<Pod> = order.iter().map(|&e| self.fleet.snapshot(e, now)).collect();
            let matched = self.fleet.index().matched(&key.blocks, &views, now);
            let best = (0..order.len()).reduce(|a, b| if matched[b] > matched[a] { b } else { a });
            let block = f64::from(self.cfg.prefix.block_units);
            let rate = best.map_or(0.0, |b| {
                (matched[b] as f64 * block).min(f64::from(key.units)) / f64::from(key.units.max(1))
            });
            if rate > CACHE_THRESHOLD {
                best.map(|b| order[b])
            } else {
                let trees = &self.trees.0;
                let size = |e: usize| trees.get(e).map_or(0, HashSet::len);
                order.iter().copied().min_by_key(|&e| size(e))
            }
        }
        .unwrap_or(0);
        let req = RouteRequest {
            blocks: &key.blocks,
            prompt_units: key.units,
            ..RouteRequest::default()
        };
        let est = self.fleet.estimate(e, &req, now);
        let booking = self
            .fleet
            .book(e, est.uncached_tokens, est.prompt_tokens, est.predicted_s);
        self.fleet.accepted(e, &key.blocks, now);
        if self.trees.0.len() <= e {
            self.trees.0.resize_with(e + 1, HashSet::new);
        }
        self.trees.0[e].extend(key.blocks.iter().copied());
        (e, booking)
    }
}
