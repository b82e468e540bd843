//! The routing half of the event loop: the gateway's decision through the routing core (over
//! the pods that serve the request's adapter, when it names one), or the oracle's.

use brix_router::RouteRequest;
use brix_router::fleet::Booking;
use rand::SeedableRng;
use rand::rngs::SmallRng;
use rand::seq::SliceRandom;

use super::slot::Life;
use super::{GOLDEN, Sim};
use crate::vsim::oracle::{self, EngineLoad};

impl Sim<'_> {
    /// The gateway's decision: the routing core over the pods in rotation (those holding
    /// the adapter when the request names one: `holders`, never empty), then the index booking (the engine
    /// accepts at once in virtual time: no network between them), and the work booked there
    /// (the `ttft` estimate's uncached prefill, as the gateway books it).
    pub(super) fn route(
        &mut self,
        strategy: &brix_router::Weighted,
        i: usize,
        now: f64,
        holders: Option<&[usize]>,
    ) -> (usize, Booking) {
        let key = &self.keys[i];
        let adapter = self.adapter_of(i).map(|a| self.adapter_name(a));
        let req = RouteRequest {
            blocks: &key.blocks,
            prompt_units: key.units,
            max_tokens: Some(self.w.requests[i].output_tokens),
            // The client sends `ignore_eos` (as `brix bench run` does): the output is exactly
            // `max_tokens`, so plan routing knows each request's output bucket.
            output_exact: true,
            adapter: adapter.as_deref(),
            // With KV events the gateway tokenizes: pods' exact indexes match the token ids.
            tokens: self.cfg.kv_events.then_some(&self.w.requests[i].prompt[..]),
            // A plan buckets requests by tokens: the gateway counts them (its tokenizer, or
            // the usage of earlier turns); runs without a plan keep the bytes-only view.
            prompt_tokens: self
                .cfg
                .plan
                .as_ref()
                .map(|_| u32::try_from(self.w.requests[i].prompt.len()).unwrap_or(u32::MAX)),
            ..RouteRequest::default()
        };
        let mut rng = SmallRng::seed_from_u64(self.cfg.seed ^ self.decisions.wrapping_mul(GOLDEN));
        self.decisions += 1;
        // `route` fails only without pods, and a fleet has at least one engine (holders are
        // never empty).
        let fallback = brix_router::Decision {
            pod: holders.and_then(|h| h.first().copied()).unwrap_or(0),
            fallback: None,
        };
        // The core routes an adapter's request only to the pods that hold it and are not
        // draining it (the holders the caller found).
        let r = self.assign_replica(i);
        let d = self
            .replica_fleet(r)
            .decide(strategy, &req, now, &mut rng)
            .unwrap_or(fallback);
        if let Some(f) = d.fallback {
            *self.fallbacks.entry(f.as_str().to_string()).or_default() += 1;
        }
        let fleet = self.replica_fleet(r);
        let e = fleet.estimate(d.pod, &req, now);
        let booking = fleet.book(d.pod, e.uncached_tokens, e.prompt_tokens, e.predicted_s);
        if self.feeds_index {
            self.replica_fleet(r).accepted(d.pod, &key.blocks, now);
            self.booked_by(r, d.pod, &key.blocks);
        }
        (d.pod, booking)
    }

    /// The oracle's decision (among `holders` when given) and the prefill it books on the
    /// chosen engine.
    pub(super) fn oracle(&mut self, i: usize, holders: Option<&[usize]>) -> (usize, u32) {
        let w = self.w;
        let prompt = &w.requests[i].prompt;
        let len = u32::try_from(prompt.len()).unwrap_or(u32::MAX);
        let lora = self.adapter_of(i).map(|a| self.adapter_name(a));
        let mut uncached = Vec::with_capacity(self.slots.len());
        let costs: Vec<f64> = self
            .slots
            .iter()
            .map(|s| {
                if s.life != Life::Ready {
                    uncached.push(0);
                    return f64::INFINITY;
                }
                let u = len.saturating_sub(s.engine.cached_prefix_tokens(prompt, lora.as_deref()));
                uncached.push(u);
                let load = EngineLoad {
                    uncached: u,
                    queued_prefill: s.queued_prefill,
                    decoding: s.decoding,
                    decode_context: s.decode_context,
                };
                let (step_cost, budget) = &self.group_costs[s.group];
                oracle::cost(&load, *budget, step_cost)
            })
            .collect();
        let mut rng = SmallRng::seed_from_u64(self.cfg.seed ^ self.decisions.wrapping_mul(GOLDEN));
        self.decisions += 1;
        let mut order: Vec<usize> = (0..self.slots.len())
            .filter(|&e| self.slots[e].life == Life::Ready)
            .filter(|e| holders.is_none_or(|h| h.contains(e)))
            .collect();
        order.shuffle(&mut rng);
        let e = oracle::choose(&costs, &order);
        (e, uncached[e])
    }
}
