//! The pool's decision with exact indexes: each candidate's cached tokens for this request,
//! and how the approximate index's guess compared (kept here so `pool.rs` stays one screen).

use std::sync::Arc;

use brix_router::{Decision, NoRoute, Pod, PromptKeys, RouteRequest, Weighted, route};
use rand::Rng;

use super::KvSeen;
use crate::pool::{PodState, Pool};

impl Pool {
    /// Runs `strategy` over the candidates' snapshots at `now`; the decision's `pod` indexes
    /// `candidates`. Nothing is booked: take the slot, then [`Self::accepted`].
    #[cfg(test)]
    pub fn decide(
        &self,
        model: &str,
        candidates: &[Arc<PodState>],
        strategy: &Weighted,
        req: &RouteRequest<'_>,
        now: f64,
        rng: &mut impl Rng,
    ) -> Result<Decision, NoRoute> {
        self.decide_measured(
            model,
            candidates,
            strategy,
            req,
            now,
            rng,
            &mut KvSeen::default(),
        )
    }

    /// [`Self::decide`]; with `req.tokens`, pods with an exact KV index get their
    /// `cached_tokens`, and `seen` gets them and how the approximate index compared.
    #[expect(
        clippy::too_many_arguments,
        reason = "decide's arguments and one output"
    )]
    pub(crate) fn decide_measured(
        &self,
        model: &str,
        candidates: &[Arc<PodState>],
        strategy: &Weighted,
        req: &RouteRequest<'_>,
        now: f64,
        rng: &mut impl Rng,
        seen: &mut KvSeen,
    ) -> Result<Decision, NoRoute> {
        let mut keys = req.tokens.map(|t| PromptKeys::new(t, req.adapter));
        let pods: Vec<Pod> = candidates
            .iter()
            .map(|p| p.snapshot_for(now, keys.as_mut()))
            .collect();
        let index = self.index(model);
        let index = index.lock().unwrap_or_else(|p| p.into_inner());
        seen.predictions = super::predictions(req, &pods, &index, now);
        seen.cached = pods.iter().map(|p| p.cached_tokens).collect();
        route(strategy, req, &pods, &index, now, rng)
    }
}
