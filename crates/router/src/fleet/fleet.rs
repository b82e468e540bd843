//! The pods of one model and their prefix index, for a driver that owns them all (the
//! virtual-time simulator; the gateway keeps one [`PodCore`] per pod behind its own locks and
//! applies the same rules, pinned by a test that drives both with one event list).
//!
//! With an optimizer plan ([`Fleet::set_plan`]) a decision has two stages: the request's shape
//! picks a pod group (GPU type, deployment) by the plan's shares, discounted where a group has
//! fewer ready pods than planned; then the strategy picks a pod within that group. A shape the
//! plan gives no ready group is routed over every pod ([`Fallback::PlanGroup`]).

use std::ops::Range;
use std::sync::Arc;

use rand::Rng;

use super::CoreConfig;
use super::health::{FailureKind, may_eject};
use super::pod::{Booking, PodCore, Scrape, Transition};
use super::remote::{Refused, RemoteLoad};
use crate::decision::{Decision, Fallback, NoRoute};
use crate::kvindex::{KvUpdate, PromptKeys, StoreError};
use crate::plan::{PlanRoutes, draw, plan_tokens};
use crate::pod::{Pod, RouteRequest};
use crate::prefix::{PrefixConfig, PrefixIndex};
use crate::select::route;
use crate::strategies::ttft::{Estimate, estimate};
use crate::strategy::Weighted;

/// Pods (by position), their cores, and the prefix index.
#[derive(Clone, Debug)]
pub struct Fleet {
    cfg: CoreConfig,
    /// Each pod's name and address; the rest is refreshed from its core at every decision.
    views: Vec<Pod>,
    cores: Vec<PodCore>,
    /// Pods taken out of rotation for good (scaled down: draining, then stopped).
    retired: Vec<bool>,
    index: PrefixIndex,
    /// Positions of the pods in rotation at the last decision, in `order`.
    candidates: Vec<usize>,
    /// Their views, in that order.
    scratch: Vec<Pod>,
    /// Each pod's group (deployment, GPU type), as the driver set it.
    groups: Vec<Option<String>>,
    /// The optimizer's routes, if the model has a plan.
    plan: Option<Arc<PlanRoutes>>,
    /// All pod positions, those of plan group 0 first, then group 1…, then pods in no plan
    /// group; `0..n` without a plan. Candidates keep this order, so a group is a contiguous
    /// span of them and the strategy routes over a slice, no copy.
    order: Vec<usize>,
    /// Each pod's position in the plan's groups.
    pod_group: Vec<Option<usize>>,
    /// Per plan group, its span of `candidates` (its ready pods for the last request).
    spans: Vec<Range<usize>>,
    /// Per plan group, its candidates count; and the pick weights, reused.
    ready: Vec<u32>,
    weights: Vec<f64>,
    /// Groups or the plan changed: the candidates must be rebuilt.
    regroup: bool,
}

impl Fleet {
    /// `pods` as (name, address), none in rotation until its first good probe.
    pub fn new(pods: &[(String, String)], prefix: PrefixConfig, cfg: CoreConfig) -> Self {
        Self {
            cfg,
            views: pods
                .iter()
                .map(|(name, address)| Pod {
                    name: name.clone(),
                    address: address.clone(),
                    ..Pod::default()
                })
                .collect(),
            cores: vec![PodCore::default(); pods.len()],
            retired: vec![false; pods.len()],
            index: PrefixIndex::new(prefix),
            candidates: Vec::new(),
            scratch: Vec::new(),
            groups: vec![None; pods.len()],
            plan: None,
            order: (0..pods.len()).collect(),
            pod_group: vec![None; pods.len()],
            spans: Vec::new(),
            ready: Vec::new(),
            weights: Vec::new(),
            regroup: true,
        }
    }

    /// Puts pod `i` in group `group` (its deployment or GPU type: a plan's group name), or in
    /// none (it then serves only requests the plan cannot place).
    pub fn set_group(&mut self, i: usize, group: Option<&str>) {
        if self.groups[i].as_deref() != group {
            self.groups[i] = group.map(str::to_string);
            self.regroup();
        }
    }

    /// Pod `i`'s group.
    pub fn group(&self, i: usize) -> Option<&str> {
        self.groups[i].as_deref()
    }

    /// Routes by the optimizer's plan from now on (None: by the strategy alone, over all pods).
    pub fn set_plan(&mut self, plan: Option<Arc<PlanRoutes>>) {
        self.plan = plan;
        self.regroup();
    }

    /// The plan routing follows, if any.
    pub fn plan(&self) -> Option<&Arc<PlanRoutes>> {
        self.plan.as_ref()
    }

    /// Recomputes each pod's plan group and the candidate order after a group or plan change.
    fn regroup(&mut self) {
        let plan = self.plan.as_deref();
        self.pod_group = self
            .groups
            .iter()
            .map(|g| plan.zip(g.as_deref()).and_then(|(p, g)| p.group(g)))
            .collect();
        self.order = (0..self.cores.len()).collect();
        let pg = &self.pod_group;
        self.order.sort_by_key(|&i| pg[i].unwrap_or(usize::MAX));
        let groups = plan.map_or(0, |p| p.groups.len());
        self.weights = vec![0.0; groups];
        self.ready = vec![0; groups];
        self.spans = vec![0..0; groups];
        self.regroup = true;
    }

    /// Adds a pod (a replica the autoscaler asked for) at the next position, which it returns;
    /// like the others it is out of rotation until its first good probe.
    pub fn add(&mut self, name: &str, address: &str) -> usize {
        self.views.push(Pod {
            name: name.to_string(),
            address: address.to_string(),
            ..Pod::default()
        });
        self.cores.push(PodCore::default());
        self.retired.push(false);
        self.groups.push(None);
        self.regroup();
        self.cores.len() - 1
    }

    /// Takes pod `i` out of rotation for good (scaled down: it drains the requests it has and
    /// stops), and drops its prefix-index claims; its in-flight count still ends as usual.
    pub fn retire(&mut self, i: usize) {
        self.retired[i] = true;
        self.index.purge(&self.views[i].address);
    }

    /// Whether pod `i` may take new requests: in rotation and not retired.
    pub fn routable(&self, i: usize) -> bool {
        !self.retired[i] && self.cores[i].in_rotation()
    }

    /// Pods in the fleet.
    pub fn len(&self) -> usize {
        self.cores.len()
    }

    /// Whether the fleet has no pod.
    pub fn is_empty(&self) -> bool {
        self.cores.is_empty()
    }

    /// Pod `i`'s name.
    pub fn name(&self, i: usize) -> &str {
        &self.views[i].name
    }

    /// Pod `i`'s state.
    pub fn core(&self, i: usize) -> &PodCore {
        &self.cores[i]
    }

    /// The prefix index.
    pub fn index(&self) -> &PrefixIndex {
        &self.index
    }

    /// Pod `i`'s routing view at `now`.
    pub fn snapshot(&self, i: usize, now: f64) -> Pod {
        let mut p = self.views[i].clone();
        self.cores[i].fill(&mut p, now, &self.cfg);
        p
    }

    /// Routes `req` over the pods in rotation at `now` (for a request naming an adapter, those
    /// holding it and not draining it: [`PodCore::serves`]); the decision's `pod` is a fleet
    /// position. With a plan, over the pods of the group its shape drew (module docs). With
    /// `req.tokens`, pods with an exact KV index get `cached_tokens`. Book the request with
    /// [`Self::begin`] (or [`Self::begin_for`]) and, once the engine accepted it,
    /// [`Self::accepted`].
    pub fn decide(
        &mut self,
        strategy: &Weighted,
        req: &RouteRequest<'_>,
        now: f64,
        rng: &mut impl Rng,
    ) -> Result<Decision, NoRoute> {
        // In rotation and, for an adapter, holding it and not draining it.
        let eligible = |f: &Self, i: usize| f.routable(i) && f.cores[i].serves(req.adapter);
        let same = !self.regroup
            && self
                .order
                .iter()
                .copied()
                .filter(|&i| eligible(self, i))
                .eq(self.candidates.iter().copied());
        if !same {
            // The set in rotation changed: rebuild the views (names cloned once per change).
            self.regroup = false;
            self.candidates = self
                .order
                .iter()
                .copied()
                .filter(|&i| eligible(self, i))
                .collect();
            self.scratch = self
                .candidates
                .iter()
                .map(|&i| self.views[i].clone())
                .collect();
            self.spans.iter_mut().for_each(|s| *s = 0..0);
            for (k, &i) in self.candidates.iter().enumerate() {
                if let Some(g) = self.pod_group[i] {
                    let s = &mut self.spans[g];
                    if s.start == s.end {
                        *s = k..k;
                    }
                    s.end = k + 1;
                }
            }
            for (r, s) in self.ready.iter_mut().zip(&self.spans) {
                *r = u32::try_from(s.len()).unwrap_or(u32::MAX);
            }
        }
        let (span, plan_fallback) = match &self.plan {
            Some(plan) => {
                plan.shares_into(plan_tokens(req), req.output_hint(), &mut self.weights);
                let total = plan.discount(&mut self.weights, &self.ready);
                match draw(&self.weights, total, rng) {
                    Some(g) => (self.spans[g].clone(), false),
                    None => (0..self.candidates.len(), true),
                }
            }
            None => (0..self.candidates.len(), false),
        };
        let mut keys = req.tokens.map(|t| PromptKeys::new(t, req.adapter));
        for (p, &i) in self.scratch[span.clone()]
            .iter_mut()
            .zip(&self.candidates[span.clone()])
        {
            self.cores[i].fill(p, now, &self.cfg);
            if let Some(keys) = &mut keys {
                p.cached_tokens = self.cores[i].cached_tokens(keys);
            }
        }
        let d = route(
            strategy,
            req,
            &self.scratch[span.clone()],
            &self.index,
            now,
            rng,
        )?;
        Ok(Decision {
            pod: self.candidates[span.start + d.pod],
            fallback: if plan_fallback {
                Some(Fallback::PlanGroup)
            } else {
                d.fallback
            },
        })
    }

    /// A request was sent to pod `i`.
    pub fn begin(&mut self, i: usize) {
        self.cores[i].begin();
    }

    /// A request to pod `i` ended.
    pub fn end(&mut self, i: usize) {
        self.cores[i].end();
    }

    /// What the `ttft` cost model estimates for `req` on pod `i` at `now`: the prefill to
    /// [`Self::book`] when the request is sent there, and the TTFT predicted for it.
    pub fn estimate(&self, i: usize, req: &RouteRequest<'_>, now: f64) -> Estimate {
        let mut view = self.snapshot(i, now);
        if let Some(t) = req.tokens {
            view.cached_tokens = self.cores[i].cached_tokens(&mut PromptKeys::new(t, req.adapter));
        }
        let matched = self
            .index
            .matched(req.blocks, std::slice::from_ref(&view), now)
            .first()
            .copied()
            .unwrap_or(0);
        estimate(req, &view, matched, self.index.config())
    }

    /// Books a request sent to pod `i` ([`PodCore::book`]): its uncached prefill is pending
    /// there until [`Self::first_token`]; give the booking back with [`Self::release`].
    pub fn book(&mut self, i: usize, prefill: f64, context: f64, predicted_s: f64) -> Booking {
        self.cores[i].book(prefill, context, predicted_s)
    }

    /// The request booked on pod `i` produced its first token `ttft_s` after its send.
    pub fn first_token(&mut self, i: usize, b: &mut Booking, ttft_s: Option<f64>) {
        self.cores[i].first_token(b, ttft_s);
    }

    /// The request booked on pod `i` ended.
    pub fn release(&mut self, i: usize, b: &mut Booking) {
        self.cores[i].release(b);
    }

    /// A response from pod `i` had a prompt of `units` (index unit) and `tokens` (engine).
    pub fn prompt_size(&mut self, i: usize, units: f64, tokens: f64) {
        self.cores[i].prompt_size(units, tokens);
    }

    /// A request for `adapter` (None: the base model) was sent to pod `i`.
    pub fn begin_for(&mut self, i: usize, adapter: Option<&str>) {
        self.cores[i].begin_for(adapter);
    }

    /// A request begun with [`Self::begin_for`] on pod `i` ended.
    pub fn end_for(&mut self, i: usize, adapter: Option<&str>) {
        self.cores[i].end_for(adapter);
    }

    /// Pod `i`'s engine holds these adapters now (its `/v1/models`; in virtual time, the
    /// placement's loads and unloads as they complete).
    pub fn set_adapters(&mut self, i: usize, adapters: Vec<String>) {
        self.cores[i].set_adapters(adapters);
    }

    /// Marks `adapter` draining on pod `i` (no new requests for it there) or serving again.
    pub fn set_draining(&mut self, i: usize, adapter: &str, draining: bool) {
        self.cores[i].set_draining(adapter, draining);
    }

    /// The engine of pod `i` accepted a prompt of `blocks` at `now` (2xx response headers):
    /// it will cache it whatever the strategy, so the prefix index books it now, not before.
    pub fn accepted(&mut self, i: usize, blocks: &[u64], now: f64) {
        if !blocks.is_empty() {
            self.index.insert(blocks, &self.views[i].address, now);
        }
    }

    /// Peer gateway `gateway` reported `load` on pod `i`, received at `now`.
    pub fn set_remote(
        &mut self,
        i: usize,
        gateway: &str,
        load: RemoteLoad,
        now: f64,
    ) -> Result<(), Refused> {
        self.cores[i].set_remote(gateway, load, now, &self.cfg)
    }

    /// A peer gateway booked `blocks` on pod `i` (its engine accepted them), heard at `now`:
    /// the prefix index books them as this router's own acceptance would.
    pub fn peer_accepted(&mut self, i: usize, blocks: &[u64], now: f64) {
        self.accepted(i, blocks, now);
    }

    /// A response from pod `i` finished at `now`.
    pub fn response(
        &mut self,
        i: usize,
        now: f64,
        prompt_tokens: u64,
        output_tokens: u64,
        ttft_s: Option<f64>,
        tpot_s: Option<f64>,
    ) {
        self.cores[i].response(now, prompt_tokens, output_tokens, ttft_s, tpot_s);
    }

    /// One KV event from pod `i`'s engine (see [`PodCore::kv_event`]).
    pub fn kv_event(&mut self, i: usize, update: KvUpdate<'_>) -> Result<(), StoreError> {
        self.cores[i].kv_event(update)
    }

    /// Pod `i`'s engine publishes KV events; its index holds at most `capacity` blocks.
    pub fn kv_enable(&mut self, i: usize, capacity: usize) {
        self.cores[i].kv_enable(capacity);
    }

    /// Pod `i`'s KV events were lost for good: forget its exact index.
    pub fn kv_clear(&mut self, i: usize) {
        self.cores[i].kv_clear();
    }

    /// Pod `i` was scraped at `now`.
    pub fn scraped(&mut self, i: usize, now: f64, scrape: Scrape) -> Option<Transition> {
        let t = self.cores[i].scraped(now, scrape);
        self.apply(i, t)
    }

    /// Pod `i`'s `/health` answered at `now`.
    pub fn probe(&mut self, i: usize, ok: bool, now: f64) -> Option<Transition> {
        let t = self.cores[i].probe(ok, now, &self.cfg);
        self.apply(i, t)
    }

    /// An upstream attempt on pod `i` failed at `now`.
    pub fn failure(&mut self, i: usize, kind: FailureKind, now: f64) -> Option<Transition> {
        let ejected = self
            .cores
            .iter()
            .filter(|c| c.health().is_ejected())
            .count();
        let in_rotation = (0..self.cores.len()).filter(|&i| self.routable(i)).count();
        let live = self.retired.iter().filter(|r| !**r).count();
        let allowed = may_eject(ejected, in_rotation, live, &self.cfg.ejection);
        let t = self.cores[i].failure(kind, now, allowed, &self.cfg);
        self.apply(i, t)
    }

    /// An upstream attempt on pod `i` succeeded.
    pub fn success(&mut self, i: usize) {
        self.cores[i].success();
    }

    /// A pod whose engine left rotation or restarted loses its prefix claims (its core already
    /// cleared its exact index).
    fn apply(&mut self, i: usize, t: Option<Transition>) -> Option<Transition> {
        if matches!(t, Some(Transition::Left | Transition::Restarted)) {
            self.index.purge(&self.views[i].address);
        }
        t
    }
}
