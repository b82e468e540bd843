//! The event loop: arrivals, engine step ends and scrape ticks in timestamp order.
//!
//! An engine steps only while it has work. A request sent to an idle engine is added and a
//! step starts at once; one sent to a busy engine waits, as in `brix sim`'s driver, until the
//! running step ends, then joins the next step's scheduling with its own arrival time. A step's
//! tokens and finished requests become visible at its end. A scrape copies the engine's gauges
//! (as `brix sim` reports them mid-step) into the routing core.
//!
//! What the gateway knows about each engine is `brix_router::fleet`, the type the live gateway
//! drives too: this loop feeds it the same events (send, end, finished response, scrape, first
//! good probe at t = 0) and routes with its `decide`; nothing of the gateway is copied here.

mod cache_aware;
mod decide;
mod kv_events;
mod lora;
mod replicas;
mod scale;
mod schedule;
mod scrape;
mod slot;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::sync::Arc;

use brix_router::Strategy;
use brix_router::fleet::{Booking, CoreConfig, Fleet};
use brix_sim::{Finished, NewRequest, StepCost};
use rand::SeedableRng;
use rand::rngs::SmallRng;

use self::lora::LoraState;
pub use self::replicas::{Assign, ReplicaConfig};
use self::scale::ScaleState;
use self::slot::{Event, Life, Slot, Timed};
use super::autoscale::Decide;
use super::release::{Action, Releaser};
use super::{EngineReport, FleetPool, Release, RouteKey, SimConfig, SimError, SimRun, SimStrategy};
use crate::report::RequestRecord;
use crate::workload::Workload;

/// The gateway's per-request RNG stream: `seed ^ n · golden` (`brix-gateway`'s `Gateway::rng`).
const GOLDEN: u64 = 0x9e37_79b9_7f4a_7c15;

/// A request between its send and its end.
#[derive(Clone, Debug)]
struct Live {
    engine: usize,
    scheduled: f64,
    first: Option<f64>,
    last: f64,
    itl_ms: Vec<f64>,
    /// Uncached prefill the oracle booked for it (0 for other strategies).
    prefill: u32,
    /// The work the gateway's routing core booked for it (None under the oracle).
    booking: Option<Booking>,
    /// The adapter it names, in a run with adapters.
    adapter: Option<u32>,
}

/// One run's state.
pub(crate) struct Sim<'a> {
    w: &'a Workload,
    keys: &'a [RouteKey],
    cfg: &'a SimConfig,
    strategy: &'a SimStrategy,
    slots: Vec<Slot>,
    /// What the gateway knows of each engine, and the prefix index.
    fleet: Fleet,
    /// Whether the strategy reads the prefix index. The gateway feeds it after every decision
    /// whatever the strategy; for strategies that never read it, skipping the inserts changes
    /// no decision and saves most of a run's time.
    feeds_index: bool,
    /// Per group of a mixed fleet (one entry otherwise): its engines' step cost and token
    /// budget, for the oracle.
    group_costs: Vec<(StepCost, u32)>,
    releaser: Releaser,
    heap: BinaryHeap<Reverse<Timed>>,
    /// Events in the heap other than scrapes: the run ends when none is left.
    live_events: usize,
    seq: u64,
    decisions: u64,
    jitter: SmallRng,
    live: Vec<Option<Live>>,
    records: Vec<Option<RequestRecord>>,
    fallbacks: BTreeMap<String, u64>,
    done: usize,
    now: f64,
    /// The gateway's view of the model's load (the autoscaler reads it).
    load: brix_autoscaler::Load,
    /// The autoscaler and its activator, in an autoscaled run.
    scale: Option<ScaleState>,
    /// The replica count last set (the start count in a static run).
    desired: u32,
    /// (time, engines billed from then on).
    billed: Vec<(f64, u32)>,
    /// One sample per observe tick.
    timeline: Vec<super::TimelineSample>,
    last_observe: f64,
    /// The adapter controller and the holders' state, in a run with adapters.
    lora: Option<LoraState>,
    /// Gateway replicas 1..N, in a run with more than one.
    replicas: Option<replicas::Replicas>,
    /// SGLang's per-engine trees, for `sglang-cache-aware`.
    trees: cache_aware::Trees,
    /// Replica-schedule steps that changed the count.
    scheduled_events: u64,
    /// The KV pool every engine shares, in a run with one.
    pool: Option<Arc<FleetPool>>,
}

impl<'a> Sim<'a> {
    pub(crate) fn new(
        w: &'a Workload,
        keys: &'a [RouteKey],
        release: Release,
        cfg: &'a SimConfig,
        strategy: &'a SimStrategy,
        decider: Option<Box<dyn Decide>>,
    ) -> Result<Self, SimError> {
        if cfg.engines == 0 && cfg.autoscaler.is_none() {
            return Err(SimError::NoEngines);
        }
        if let Some(e) = cfg.mixed_problem() {
            return Err(e);
        }
        if keys.len() != w.requests.len() {
            return Err(SimError::KeysMismatch {
                keys: keys.len(),
                requests: w.requests.len(),
            });
        }
        if !(cfg.scrape_interval_s.is_finite() && cfg.scrape_interval_s > 0.0) {
            return Err(SimError::ScrapeInterval(cfg.scrape_interval_s));
        }
        if let Some(a) = &cfg.adapters {
            if a.of_request.len() != w.requests.len()
                || a.of_request.iter().any(|&x| x as usize >= a.names.len())
            {
                return Err(SimError::AdapterMismatch {
                    assigned: a.of_request.len(),
                    requests: w.requests.len(),
                });
            }
            let positive = |x: f64| x.is_finite() && x > 0.0;
            let hold_ok = a.hold_s.is_finite() && a.hold_s >= 0.0;
            if !positive(a.tick_s) || !hold_ok || !positive(a.traffic_window_s) {
                return Err(SimError::AdapterTiming);
            }
        }
        let pool = cfg.kv_pool.clone().map(FleetPool::new);
        let slots = (0..cfg.engines)
            .map(|i| Slot::new(cfg, i, Life::Ready, 0.0, pool.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        let names: Vec<(String, String)> = (0..cfg.engines)
            .map(|i| (cfg.engine_name(i), cfg.engine_name(i)))
            .collect();
        // The gateway's `ttft` profile is the engines' own roofline: the model and GPU are known.
        let step_cost = StepCost::new(&cfg.model, &cfg.gpu);
        let mut prefix = cfg.prefix.clone();
        prefix.ttft = brix_router::TtftProfile {
            units_per_token: prefix.ttft.units_per_token,
            uncached_weight: prefix.ttft.uncached_weight,
            correction_min: prefix.ttft.correction_min,
            correction_max: prefix.ttft.correction_max,
            ..brix_router::TtftProfile::fit(
                |items| {
                    step_cost.step_time(
                        items
                            .iter()
                            .map(|&(new_tokens, context)| brix_sim::BatchItem {
                                new_tokens,
                                context,
                            }),
                        0.0,
                    )
                },
                cfg.engine.max_num_batched_tokens,
            )
        };
        let mut fleet = Fleet::new(&names, prefix, CoreConfig::default());
        for i in 0..cfg.engines {
            // The engines are up from the start: their first probe succeeds.
            fleet.probe(i, true, 0.0);
            if let Some(g) = cfg.group_of(i) {
                fleet.set_group(i, Some(&cfg.groups[g].name));
            }
        }
        fleet.set_plan(cfg.plan.clone());
        let group_costs = cfg.group_costs(step_cost);
        let mut sim = Self {
            w,
            keys,
            cfg,
            strategy,
            slots,
            fleet,
            feeds_index: match strategy {
                SimStrategy::Router(w) => w.0.iter().any(|(s, _)| {
                    matches!(s, Strategy::PrefixCache | Strategy::KvCost | Strategy::Ttft)
                }),
                SimStrategy::Oracle => false,
                SimStrategy::SglangCacheAware => true,
            },
            trees: cache_aware::Trees::default(),
            group_costs,
            releaser: Releaser::new(w, release),
            heap: BinaryHeap::new(),
            live_events: 0,
            seq: 0,
            decisions: 0,
            jitter: SmallRng::seed_from_u64(cfg.seed ^ 0x7363_7261_7065),
            live: vec![None; w.requests.len()],
            records: vec![None; w.requests.len()],
            fallbacks: BTreeMap::new(),
            done: 0,
            now: 0.0,
            load: brix_autoscaler::Load::default(),
            scale: cfg
                .autoscaler
                .as_ref()
                .zip(decider)
                .map(|(sc, d)| ScaleState::new(sc, d)),
            desired: u32::try_from(cfg.engines).unwrap_or(u32::MAX),
            billed: vec![(0.0, u32::try_from(cfg.engines).unwrap_or(u32::MAX))],
            timeline: Vec::new(),
            last_observe: 0.0,
            lora: cfg
                .adapters
                .as_ref()
                .map(|a| LoraState::new(a, cfg.engines)),
            replicas: None,
            scheduled_events: 0,
            pool,
        };
        sim.start_replicas()?;
        sim.start_schedule()?;
        if matches!(release, Release::Closed { users: 0, .. }) {
            return Err(SimError::NoUsers);
        }
        let actions = sim.releaser.start(w);
        sim.act(actions, 0.0);
        for e in 0..cfg.engines {
            sim.push(0.0, Event::Scrape(e));
        }
        sim.push(0.0, Event::Observe);
        if let Some(sc) = &cfg.autoscaler {
            sim.push(sc.policy.sync_s, Event::Decide { tick: true });
        }
        // The starting placement is in place before the first request.
        sim.place(0.0, true);
        Ok(sim)
    }

    fn push(&mut self, at: f64, event: Event) {
        if event.live() {
            self.live_events += 1;
        }
        self.seq += 1;
        self.heap.push(Reverse(Timed {
            at,
            seq: self.seq,
            event,
        }));
    }

    /// Processes events until every request has ended.
    pub(crate) fn run(mut self) -> Result<SimRun, SimError> {
        while self.alive() {
            let Some(Reverse(Timed { at, event, .. })) = self.heap.pop() else {
                break;
            };
            if event.live() {
                self.live_events -= 1;
            }
            self.now = at;
            match event {
                Event::Arrival(i) => self.arrive(i, at),
                Event::StepEnd(e) => self.step_end(e, at),
                Event::Scrape(e) => self.scrape(e, at),
                Event::Wake => {
                    let actions = self.releaser.wake(at);
                    self.act(actions, at);
                }
                Event::Observe => self.observe(at),
                Event::Decide { tick } => self.decide(tick, at),
                Event::Ready(e) => self.ready(e, at),
                Event::HoldTimeout(i) => self.hold_timeout(i, at),
                Event::Place => self.place(at, false),
                Event::AdapterLoaded(e, a) => self.loaded(e, a, at),
                Event::AdapterHoldTimeout(i) => self.adapter_hold_timeout(i, at),
                Event::Sync(r) => self.sync(r, at),
                Event::Scheduled(k) => self.scheduled(k, at),
            }
        }
        let stuck = self.live.iter().filter(|l| l.is_some()).count() + self.held();
        if stuck > 0 {
            return Err(SimError::Stalled {
                stuck,
                done: self.done,
            });
        }
        let engines = self
            .slots
            .iter()
            .enumerate()
            .map(|(i, s)| EngineReport::of(self.fleet.name(i), s.requests, s.engine.stats()))
            .collect();
        let pool = self
            .pool
            .as_ref()
            .map(|p| p.report(&self.cfg.model, &self.cfg.gpu));
        let end_s = self
            .records
            .iter()
            .flatten()
            .map(|r| r.sent_s + r.e2e_ms.unwrap_or(0.0) / 1000.0)
            .fold(0.0, f64::max);
        let fleet = self.fleet_summary();
        let groups = self.group_reports();
        let (decisions, mut warnings) = self
            .scale
            .map(|s| (s.decisions, s.warnings))
            .unwrap_or_default();
        let adapters = self.lora.map(|l| {
            warnings.extend(l.warnings);
            l.report
        });
        Ok(SimRun {
            records: self.records.into_iter().flatten().collect(),
            engines,
            fallbacks: self.fallbacks,
            end_s,
            fleet,
            timeline: self.timeline,
            decisions,
            warnings,
            adapters,
            pool,
            groups,
        })
    }

    /// Request `i` reaches the gateway at `now`: sent on, or held while no engine is ready.
    fn arrive(&mut self, i: usize, now: f64) {
        self.load.requests += 1;
        self.load.prompt_tokens += self.w.requests[i].prompt.len() as u64;
        if let Some(a) = self.adapter_of(i) {
            self.count_adapter(a);
        }
        if self.scale.is_some() && self.count(Life::Ready) == 0 {
            self.hold(i, now);
        } else {
            self.send(i, now, now);
        }
    }

    /// Routes and sends request `i`, which arrived at `arrived`, at `now`.
    fn send(&mut self, i: usize, arrived: f64, now: f64) {
        let w = self.w;
        let req = &w.requests[i];
        let adapter = self.adapter_of(i);
        // A request for an adapter goes only to pods that serve it; none yet: it waits.
        let holders = match adapter {
            Some(a) => {
                let h = self.holders(a);
                if h.is_empty() {
                    self.hold_for_adapter(i, a, arrived, now);
                    return;
                }
                Some(h)
            }
            None => None,
        };
        let (e, prefill, booking) = match self.strategy {
            SimStrategy::Router(strategy) => {
                let (e, booking) = self.route(strategy, i, now, holders.as_deref());
                (e, 0, Some(booking))
            }
            SimStrategy::Oracle => {
                let (e, prefill) = self.oracle(i, holders.as_deref());
                (e, prefill, None)
            }
            SimStrategy::SglangCacheAware => {
                let (e, booking) = self.cache_aware(i, now, holders.as_deref());
                (e, 0, Some(booking))
            }
        };
        let name = adapter.map(|a| self.adapter_name(a));
        self.fleet_of(i).begin_for(e, name.as_deref());
        if let Some(a) = adapter {
            self.adapter_in_flight(e, a, 1);
        }
        let slot = &mut self.slots[e];
        slot.requests += 1;
        slot.queued_prefill += u64::from(prefill);
        self.live[i] = Some(Live {
            engine: e,
            scheduled: arrived,
            first: None,
            last: now,
            itl_ms: Vec::new(),
            prefill,
            booking,
            adapter,
        });
        let new = NewRequest {
            id: i as u64,
            prompt: req.prompt.clone(),
            max_tokens: Some(req.output_tokens),
            min_tokens: 0,
            ignore_eos: true,
            lora: name,
            seed: None,
        };
        if self.slots[e].step.is_some() {
            self.slots[e].pending.push((new, now));
        } else {
            self.add(e, new, now);
            self.start_step(e, now);
        }
    }

    /// Adds a request to an engine; a refusal ends it as vLLM's 400 would.
    fn add(&mut self, e: usize, new: NewRequest, arrival: f64) {
        let id = new.id as usize;
        if let Err(err) = self.slots[e].engine.add_request(new, arrival) {
            self.fail(id, &err.to_string(), self.now);
        }
    }

    fn start_step(&mut self, e: usize, now: f64) {
        if let Some(out) = self.slots[e].engine.step(now) {
            let end = out.end;
            self.slots[e].step = Some(out);
            self.push(end, Event::StepEnd(e));
        }
    }

    /// Hands out the step's tokens and ends, adds pending arrivals, and starts the next step.
    fn step_end(&mut self, e: usize, now: f64) {
        let Some(out) = self.slots[e].step.take() else {
            return;
        };
        self.kv_events(e);
        for tok in &out.tokens {
            let Some(l) = self.live.get_mut(tok.id as usize).and_then(Option::as_mut) else {
                continue;
            };
            let slot = &mut self.slots[e];
            if l.first.is_none() {
                l.first = Some(now);
                if let Some(b) = &mut l.booking {
                    let r = replicas::owner(&self.replicas, tok.id as usize);
                    replicas::core(&mut self.replicas, &mut self.fleet, r).first_token(
                        e,
                        b,
                        Some(now - l.scheduled),
                    );
                }
                slot.queued_prefill = slot.queued_prefill.saturating_sub(u64::from(l.prefill));
                slot.decoding += 1;
                slot.decode_context += self.w.requests[tok.id as usize].prompt.len() as u64 + 1;
            } else {
                l.itl_ms.push((now - l.last) * 1000.0);
                slot.decode_context += 1;
            }
            l.last = now;
        }
        for f in &out.finished {
            self.finish(e, f, now);
        }
        for (new, arrival) in std::mem::take(&mut self.slots[e].pending) {
            self.add(e, new, arrival);
        }
        self.start_step(e, now);
    }

    /// Books a request the engine completed.
    fn finish(&mut self, e: usize, f: &Finished, now: f64) {
        let i = f.id as usize;
        let Some(l) = self.live.get_mut(i).and_then(Option::take) else {
            return;
        };
        let name = l.adapter.map(|a| self.adapter_name(a));
        if let Some(mut b) = l.booking {
            self.fleet_of(i).release(e, &mut b);
            let units = f64::from(self.keys[i].units);
            self.fleet_of(i)
                .prompt_size(e, units, f64::from(f.prompt_tokens));
        }
        self.fleet_of(i).end_for(e, name.as_deref());
        if let Some(a) = l.adapter {
            self.adapter_in_flight(e, a, -1);
            self.adapter_ok(a);
        }
        let slot = &mut self.slots[e];
        if l.first.is_some() {
            slot.decoding = slot.decoding.saturating_sub(1);
            let ctx = u64::from(f.prompt_tokens) + u64::from(f.output_tokens);
            slot.decode_context = slot.decode_context.saturating_sub(ctx);
        }
        let ttft = l.first.map(|t| t - l.scheduled);
        let tpot = match l.first {
            Some(first) if f.output_tokens > 1 => {
                Some((now - first) / f64::from(f.output_tokens - 1))
            }
            _ => None,
        };
        self.load.completed += 1;
        self.load.output_tokens += u64::from(f.output_tokens);
        if let Some(t) = ttft {
            self.load.ttft_sum_s += t;
            self.load.ttft_count += 1;
        }
        if let Some(t) = tpot {
            self.load.tpot_sum_s += t;
            self.load.tpot_count += 1;
        }
        self.fleet_of(i).response(
            e,
            now,
            u64::from(f.prompt_tokens),
            u64::from(f.output_tokens),
            ttft,
            tpot,
        );
        let w = self.w;
        let r = &w.requests[i];
        self.records[i] = Some(RequestRecord {
            id: r.id,
            session: r.session.map(|t| t.session),
            turn: r.session.map(|t| t.turn),
            scheduled_s: l.scheduled,
            sent_s: l.scheduled,
            ttft_ms: ttft.map(|t| t * 1000.0),
            itl_ms: l.itl_ms,
            tpot_ms: tpot.map(|t| t * 1000.0),
            e2e_ms: Some((now - l.scheduled) * 1000.0),
            prompt_tokens: f.prompt_tokens,
            output_tokens: f.output_tokens,
            status: 200,
            target_pod: Some(self.fleet.name(e).to_string()),
            error: None,
        });
        self.done += 1;
        self.ended_on(e, now);
        self.release_after(i, now);
    }

    /// Books a request the engine refused.
    fn fail(&mut self, i: usize, error: &str, now: f64) {
        let Some(l) = self.live.get_mut(i).and_then(Option::take) else {
            return;
        };
        let name = l.adapter.map(|a| self.adapter_name(a));
        if let Some(mut b) = l.booking {
            self.fleet_of(i).release(l.engine, &mut b);
        }
        self.fleet_of(i).end_for(l.engine, name.as_deref());
        if let Some(a) = l.adapter {
            self.adapter_in_flight(l.engine, a, -1);
        }
        let slot = &mut self.slots[l.engine];
        slot.queued_prefill = slot.queued_prefill.saturating_sub(u64::from(l.prefill));
        let r = &self.w.requests[i];
        self.records[i] = Some(RequestRecord {
            id: r.id,
            session: r.session.map(|t| t.session),
            turn: r.session.map(|t| t.turn),
            scheduled_s: l.scheduled,
            sent_s: l.scheduled,
            prompt_tokens: u32::try_from(r.prompt.len()).unwrap_or(u32::MAX),
            status: 400,
            target_pod: Some(self.fleet.name(l.engine).to_string()),
            error: Some(error.to_string()),
            ..RequestRecord::default()
        });
        self.done += 1;
        self.ended_on(l.engine, now);
        self.release_after(i, now);
    }

    /// Tells the client request `i` ended; sends what it releases.
    fn release_after(&mut self, i: usize, now: f64) {
        let actions = self.releaser.ended(self.w, i, now);
        self.act(actions, now);
    }

    fn act(&mut self, actions: Vec<Action>, now: f64) {
        for a in actions {
            match a {
                Action::Send(i) => self.push(now, Event::Arrival(i)),
                Action::SendAt(i, at) => self.push(at, Event::Arrival(i)),
                Action::WakeAt(at) => self.push(at, Event::Wake),
            }
        }
    }
}
