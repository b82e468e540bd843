//! One type per strategy, each behind the narrow [`Scorer`] trait.
//!
//! A scorer gives every pod a lower-is-better cost (None where the pod lacks the signal); the
//! weighted mix normalises and sums those. Routed alone, a strategy [`decides`](Scorer::decide):
//! by default the cheapest pod wins, or least-request when no pod has the signal; strategies
//! with a rule of their own (prefix-cache, session-affinity, vtc-basic) override it.

use rand::RngCore;

use crate::decision::{Decision, Fallback};
use crate::pod::{Pod, RouteRequest};
use crate::prefix::PrefixIndex;
use crate::strategy::Strategy;

mod kv_cost;
mod least_kv_cache;
mod least_latency;
mod least_request;
mod lora_affinity;
mod power_of_two;
mod prefix_cache;
mod random;
mod session_affinity;
mod throughput;
pub(crate) mod ttft;
mod vtc_basic;

/// One routing call's inputs, shared by every strategy.
#[derive(Clone, Copy)]
pub(crate) struct Ctx<'a> {
    pub(crate) req: &'a RouteRequest<'a>,
    pub(crate) pods: &'a [Pod],
    pub(crate) index: &'a PrefixIndex,
    pub(crate) now: f64,
    /// Pod indices in the seeded shuffle that breaks ties.
    pub(crate) order: &'a [usize],
}

impl Ctx<'_> {
    /// Fewest in flight; the first in the shuffled order among equals.
    pub(crate) fn least_request(&self) -> usize {
        self.order
            .iter()
            .copied()
            .min_by_key(|&p| self.pods[p].in_flight)
            .unwrap_or(0)
    }

    /// Least-request, reporting why the strategy's own rule did not decide.
    pub(crate) fn fallback(&self, why: Fallback) -> Decision {
        Decision {
            pod: self.least_request(),
            fallback: Some(why),
        }
    }

    /// What each pod holds of the prompt: exact where its engine publishes KV events and the
    /// request has its token count, else the approximate index's leading matched blocks (the
    /// approximate index is consulted only if some pod needs it).
    pub(crate) fn cached(&self) -> Vec<Cached> {
        let prompt_tokens = self.req.prompt_token_count().filter(|&t| t > 0);
        let exact = |p: &Pod| Some(f64::from(p.cached_tokens?) / f64::from(prompt_tokens?));
        let approx = if self.pods.iter().all(|p| exact(p).is_some()) {
            Vec::new()
        } else {
            self.index.matched(self.req.blocks, self.pods, self.now)
        };
        self.pods
            .iter()
            .enumerate()
            .map(|(i, p)| match exact(p) {
                Some(share) => Cached::Exact(share.min(1.0)),
                None => Cached::Approx(approx[i]),
            })
            .collect()
    }

    /// The first pod in the shuffled order with the lowest finite cost; None if no pod has one.
    pub(crate) fn cheapest(&self, costs: &[Option<f64>]) -> Option<usize> {
        let cost = |p: usize| costs[p].filter(|c| c.is_finite());
        self.order
            .iter()
            .copied()
            .filter(|&p| cost(p).is_some())
            .reduce(|a, b| if cost(b) < cost(a) { b } else { a })
    }
}

/// What one pod holds of the prompt, as [`Ctx::cached`] found it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Cached {
    /// Share of the prompt's tokens cached, 0..=1, from the pod's KV events.
    Exact(f64),
    /// Leading blocks of `req.blocks` the approximate prefix index credits the pod with.
    Approx(usize),
}

impl Cached {
    /// The cached share of a prompt of `blocks` blocks (0..=1).
    pub(crate) fn share(self, blocks: usize) -> f64 {
        match self {
            Self::Exact(s) => s,
            Self::Approx(m) => m as f64 / blocks.max(1) as f64,
        }
    }

    /// Cached units of a prompt of `prompt_units`, blocks of `block_units`.
    pub(crate) fn units(self, prompt_units: f64, block_units: u32) -> f64 {
        match self {
            Self::Exact(s) => s * prompt_units,
            Self::Approx(m) => (m as f64 * f64::from(block_units)).min(prompt_units),
        }
    }
}

/// A routing strategy: per-pod costs for mixing, and its own rule when routed alone.
pub(crate) trait Scorer {
    /// Which strategy this is (for fallback reasons).
    fn strategy(&self) -> Strategy;

    /// Lower-is-better cost per pod, None where the pod lacks the signal.
    fn costs(&self, cx: &Ctx<'_>, rng: &mut dyn RngCore) -> Vec<Option<f64>>;

    /// The pod to use when this strategy routes alone: the cheapest, else least-request.
    fn decide(&self, cx: &Ctx<'_>, rng: &mut dyn RngCore) -> Decision {
        match cx.cheapest(&self.costs(cx, rng)) {
            Some(pod) => Decision::chose(pod),
            None => cx.fallback(Fallback::MissingSignal(self.strategy())),
        }
    }
}

/// The type implementing `strategy`.
pub(crate) fn scorer(strategy: Strategy) -> &'static dyn Scorer {
    match strategy {
        Strategy::Random => &random::Random,
        Strategy::LeastRequest => &least_request::LeastRequest,
        Strategy::LeastKvCache => &least_kv_cache::LeastKvCache,
        Strategy::PowerOfTwo => &power_of_two::PowerOfTwo,
        Strategy::SessionAffinity => &session_affinity::SessionAffinity,
        Strategy::PrefixCache => &prefix_cache::PrefixCache,
        Strategy::KvCost => &kv_cost::KvCost,
        Strategy::Throughput => &throughput::Throughput,
        Strategy::LeastLatency => &least_latency::LeastLatency,
        Strategy::VtcBasic => &vtc_basic::VtcBasic,
        Strategy::LoraAffinity => &lora_affinity::LoraAffinity,
        Strategy::Ttft => &ttft::Ttft,
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod ttft_tests;
