//! The autoscaling half of the event loop: the observe tick (metric readings and the gateway's
//! load, fed to the policy; a timeline sample), the decide tick, the platform's side of a
//! decision (engines asked for start cold and join on their first probe after `startup_s`;
//! surplus ready engines leave rotation, drain and stop), and the activator (requests that
//! arrive while no engine is ready are held, then sent in arrival order, or time out with a
//! 503). The replica count is always the policy's: nothing here decides one.

use std::collections::VecDeque;

use brix_autoscaler::{
    Decision, FleetState, Phase, Reading, ReplicaView, SourceKind, scale_down_victims,
};

use super::Sim;
use super::slot::{Event, Life, Slot};
use crate::report::{FleetSummary, RequestRecord};
use crate::vsim::TimelineSample;
use crate::vsim::autoscale::{Decide, PodMetric, ScaleConfig};

/// What an autoscaled run keeps beside the fleet.
pub(crate) struct ScaleState {
    cfg: ScaleConfig,
    decider: Box<dyn Decide>,
    /// Per source: the engine metric it reads (`None`: not exported, or not a pod source).
    metrics: Vec<Option<PodMetric>>,
    /// Requests held by the activator: (request, arrival), oldest first.
    held: VecDeque<(usize, f64)>,
    pub(super) decisions: Vec<Decision>,
    scale_events: u64,
    pub(super) warnings: Vec<String>,
}

impl ScaleState {
    pub(super) fn new(cfg: &ScaleConfig, decider: Box<dyn Decide>) -> Self {
        let mut warnings = Vec::new();
        let metrics = cfg
            .policy
            .sources
            .iter()
            .enumerate()
            .map(|(k, s)| {
                let m = PodMetric::of(&s.metric);
                if s.kind == SourceKind::PerPod && m.is_none() {
                    warnings.push(format!(
                        "metricsSources[{k}]: the simulated engine does not export '{}': \
                         every pod reads missing",
                        s.metric
                    ));
                }
                m
            })
            .collect();
        Self {
            cfg: cfg.clone(),
            decider,
            metrics,
            held: VecDeque::new(),
            decisions: Vec::new(),
            scale_events: 0,
            warnings,
        }
    }
}

impl Sim<'_> {
    /// Whether the run goes on: events that end requests are pending, or requests are held.
    pub(super) fn alive(&self) -> bool {
        self.live_events > 0 || self.held() > 0
    }

    /// Requests held by the activator.
    pub(super) fn held(&self) -> usize {
        self.scale.as_ref().map_or(0, |s| s.held.len()) + self.lora.as_ref().map_or(0, |l| l.held())
    }

    /// Engines in `life`.
    pub(super) fn count(&self, life: Life) -> u32 {
        self.slots.iter().filter(|s| s.life == life).count() as u32
    }

    fn fleet_state(&self) -> FleetState {
        FleetState {
            desired: self.desired,
            ready: self.count(Life::Ready),
            starting: self.count(Life::Starting),
            held: u32::try_from(self.held()).unwrap_or(u32::MAX),
        }
    }

    /// No engine is ready: the activator holds request `i` (bounded; each waits at most
    /// `hold_timeout_s`), and the first one held asks for a decision at once.
    pub(super) fn hold(&mut self, i: usize, now: f64) {
        let Some(sc) = self.scale.as_mut() else {
            return;
        };
        if sc.held.len() >= sc.cfg.hold_limit {
            let why = format!(
                "no replica is ready and {} requests are already held",
                sc.cfg.hold_limit
            );
            self.unavailable(i, now, now, &why);
            return;
        }
        sc.held.push_back((i, now));
        let (first, timeout) = (sc.held.len() == 1, sc.cfg.hold_timeout_s);
        self.push(now + timeout, Event::HoldTimeout(i));
        if first {
            self.push(now, Event::Decide { tick: false });
        }
    }

    /// Request `i`'s hold is over: if still held, it ends with a 503.
    pub(super) fn hold_timeout(&mut self, i: usize, now: f64) {
        let Some(sc) = self.scale.as_mut() else {
            return;
        };
        let Some(pos) = sc.held.iter().position(|(r, _)| *r == i) else {
            return;
        };
        let (_, arrived) = sc.held.remove(pos).unwrap_or((i, now));
        let why = format!("no replica became ready in {} s", sc.cfg.hold_timeout_s);
        self.unavailable(i, arrived, now, &why);
    }

    /// Books request `i` as the gateway's 503 (a scale-from-zero or adapter hold that timed out).
    pub(super) fn unavailable(&mut self, i: usize, arrived: f64, now: f64, why: &str) {
        let r = &self.w.requests[i];
        self.records[i] = Some(RequestRecord {
            id: r.id,
            session: r.session.map(|t| t.session),
            turn: r.session.map(|t| t.turn),
            scheduled_s: arrived,
            sent_s: arrived,
            e2e_ms: Some((now - arrived) * 1000.0),
            prompt_tokens: u32::try_from(r.prompt.len()).unwrap_or(u32::MAX),
            status: 503,
            error: Some(why.to_string()),
            ..RequestRecord::default()
        });
        self.done += 1;
        self.release_after(i, now);
    }

    /// Every `observe_s`: one reading per metric source and the gateway's load for the policy,
    /// and a timeline sample.
    pub(super) fn observe(&mut self, now: f64) {
        let period = now - self.last_observe;
        self.last_observe = now;
        let mut rates = Vec::new();
        for s in &mut self.slots {
            let st = s.engine.stats();
            let (p, g) = (st.prompt_tokens, st.generation_tokens);
            if s.life == Life::Ready {
                let per_s = |d: u64| if period > 0.0 { d as f64 / period } else { 0.0 };
                rates.push((per_s(p - s.counted.0), per_s(g - s.counted.1)));
            }
            s.counted = (p, g);
        }
        let ready: Vec<&Slot> = self
            .slots
            .iter()
            .filter(|s| s.life == Life::Ready)
            .collect();
        let in_flight: u32 = (0..self.fleet.len())
            .map(|e| self.fleet.core(e).in_flight())
            .sum::<u32>()
            + u32::try_from(self.held()).unwrap_or(u32::MAX);
        self.load.in_flight = in_flight;
        self.load.set_gauges(
            ready
                .iter()
                .filter_map(|s| s.gauges)
                .map(|(w, k)| (Some(w), Some(k))),
        );
        if let Some(sc) = self.scale.as_mut() {
            for (k, src) in sc.cfg.policy.sources.iter().enumerate() {
                let reading = if src.kind == SourceKind::PerPod {
                    let metric = sc.metrics[k];
                    let value = |(s, r): (&&Slot, &(f64, f64))| {
                        let snap = s.engine.snapshot();
                        metric.map(|m| match m {
                            PodMetric::Running => snap.num_running as f64,
                            PodMetric::Waiting => snap.num_waiting as f64,
                            PodMetric::KvUsage => snap.kv_usage,
                            PodMetric::PromptThroughput => r.0,
                            PodMetric::GenerationThroughput => r.1,
                        })
                    };
                    Reading::Pods(ready.iter().zip(&rates).map(value).collect())
                } else if src.kind == SourceKind::Total {
                    Reading::Failed("no external endpoint in virtual time".into())
                } else {
                    // Sources the policy computes itself (from the load) take no reading.
                    continue;
                };
                sc.decider.observe(k, reading, now);
            }
            sc.decider.observe_load(&self.load, now);
        }
        self.timeline.push(TimelineSample {
            t: now,
            desired: self.desired,
            ready: self.count(Life::Ready),
            starting: self.count(Life::Starting),
            draining: self.count(Life::Draining),
            in_flight,
            held: u32::try_from(self.held()).unwrap_or(u32::MAX),
        });
        if self.alive() {
            let step = self.scale.as_ref().map_or(1.0, |s| s.cfg.observe_s);
            self.push(now + step, Event::Observe);
        }
    }

    /// Asks the policy for the replica count and converges the fleet to it.
    pub(super) fn decide(&mut self, tick: bool, now: f64) {
        let fleet = self.fleet_state();
        let alive = self.alive();
        let Some(sc) = self.scale.as_mut() else {
            return;
        };
        let d = sc.decider.decide(&fleet, now);
        if d.desired != self.desired {
            sc.scale_events += 1;
        }
        self.desired = d.desired;
        sc.decisions.push(d);
        let sync_s = sc.cfg.policy.sync_s;
        if tick && alive {
            self.push(now + sync_s, Event::Decide { tick: true });
        }
        self.reconcile(now);
    }

    /// The platform's side: more engines asked for, or surplus ready ones drained.
    pub(super) fn reconcile(&mut self, now: f64) {
        let active = self.count(Life::Ready) + self.count(Life::Starting);
        if self.desired > active {
            for _ in active..self.desired {
                if let Err(e) = self.start_engine(now) {
                    // The same settings started the first engines; report rather than panic.
                    if let Some(sc) = self.scale.as_mut() {
                        sc.warnings.push(format!("engine not started: {e}"));
                    }
                    break;
                }
            }
        } else if self.desired < active {
            // The live platform's rule (`scale_down_victims`): ready engines beyond the count
            // leave, the fewest in flight first, the newest among equals; starting ones are
            // never removed, and those beyond it are kept: once ready, the surplus leave then.
            let engines: Vec<usize> = (0..self.slots.len())
                .filter(|&e| matches!(self.slots[e].life, Life::Ready | Life::Starting))
                .collect();
            let views: Vec<ReplicaView> = engines
                .iter()
                .map(|&e| ReplicaView {
                    phase: if self.slots[e].life == Life::Ready {
                        Phase::Ready
                    } else {
                        Phase::Starting
                    },
                    in_flight: self.fleet.core(e).in_flight(),
                    order: e as u64,
                })
                .collect();
            for e in scale_down_victims(&views, self.desired)
                .into_iter()
                .map(|i| engines[i])
            {
                self.slots[e].life = Life::Draining;
                self.fleet.retire(e);
                self.ended_on(e, now);
            }
        }
    }

    /// Asks for one more engine: billed from now, routable after `startup_s`.
    fn start_engine(&mut self, now: f64) -> Result<(), crate::vsim::SimError> {
        let e = self.slots.len();
        self.slots.push(Slot::new(
            self.cfg,
            e,
            Life::Starting,
            now,
            self.pool.as_ref(),
        )?);
        let name = format!("engine-{e}");
        self.fleet.add(&name, &name);
        self.bill(now);
        let startup = self.scale.as_ref().map_or_else(
            || self.schedule_startup_s().unwrap_or(0.0),
            |s| s.cfg.startup_s,
        );
        self.push(now + startup, Event::Ready(e));
        Ok(())
    }

    /// Engine `e` is up: it joins the rotation, the policy learns its start-up time, and the
    /// held requests go to the fleet in arrival order.
    pub(super) fn ready(&mut self, e: usize, now: f64) {
        if self.slots[e].life != Life::Starting {
            return;
        }
        self.slots[e].life = Life::Ready;
        self.fleet.probe(e, true, now);
        self.push(now, Event::Scrape(e));
        let requested = self.slots[e].requested_at;
        let held = match self.scale.as_mut() {
            Some(sc) => {
                sc.decider.observe_startup(now - requested);
                std::mem::take(&mut sc.held)
            }
            None => VecDeque::new(),
        };
        for (i, arrived) in held {
            self.send(i, arrived, now);
        }
        self.reconcile(now);
    }

    /// A request on engine `e` ended: a draining engine with none left stops.
    pub(super) fn ended_on(&mut self, e: usize, now: f64) {
        if self.slots[e].life == Life::Draining && self.fleet.core(e).in_flight() == 0 {
            self.slots[e].life = Life::Stopped;
            self.slots[e].stopped_at = Some(now);
            self.bill(now);
        }
    }

    /// Logs the number of engines billed from `now` on.
    fn bill(&mut self, now: f64) {
        let n = self
            .slots
            .iter()
            .filter(|s| s.life != Life::Stopped)
            .count() as u32;
        self.billed.push((now, n));
    }

    /// Per group of a mixed fleet: requests, busy and billed time, cost (empty otherwise).
    pub(super) fn group_reports(&self) -> Vec<crate::vsim::GroupReport> {
        let end = self.now;
        let mut out: Vec<crate::vsim::GroupReport> = self
            .cfg
            .groups
            .iter()
            .map(|g| crate::vsim::GroupReport {
                name: g.name.clone(),
                gpu: g.gpu.name.clone(),
                engines: g.count,
                cost_per_hour: g.cost_per_hour * g.count as f64,
                ..Default::default()
            })
            .collect();
        for s in &self.slots {
            let Some(r) = out.get_mut(s.group) else {
                continue;
            };
            let billed = (s.stopped_at.unwrap_or(end) - s.requested_at).max(0.0);
            r.requests += s.requests;
            r.busy_s += s.engine.stats().busy_time;
            r.replica_seconds += billed;
            r.cost_usd += billed / 3600.0 * self.cfg.groups[s.group].cost_per_hour;
        }
        out
    }

    /// Billed time and replica counts up to the run's end (the last event).
    pub(super) fn fleet_summary(&self) -> FleetSummary {
        let end = self.now;
        let replica_seconds: f64 = self
            .slots
            .iter()
            .map(|s| (s.stopped_at.unwrap_or(end) - s.requested_at).max(0.0))
            .fold(0.0, |a, b| a + b);
        let gpu_seconds = replica_seconds * f64::from(self.cfg.model.tensor_parallel_size);
        let (mut min, mut max, mut area) = (u32::MAX, 0, 0.0);
        for (k, &(t, n)) in self.billed.iter().enumerate() {
            let next = self.billed.get(k + 1).map_or(end, |b| b.0);
            area += f64::from(n) * (next.min(end) - t).max(0.0);
            min = min.min(n);
            max = max.max(n);
        }
        let (decisions, scale_events) = self
            .scale
            .as_ref()
            .map_or((0, 0), |s| (s.decisions.len() as u64, s.scale_events));
        let cost_usd = if self.cfg.groups.is_empty() {
            gpu_seconds / 3600.0 * self.cfg.gpu.price_per_hour
        } else {
            // Each engine at its group's price per engine-hour.
            self.slots
                .iter()
                .map(|s| {
                    let billed = (s.stopped_at.unwrap_or(end) - s.requested_at).max(0.0);
                    billed / 3600.0 * self.cfg.groups[s.group].cost_per_hour
                })
                .sum()
        };
        FleetSummary {
            gpu_seconds,
            replica_seconds,
            cost_usd,
            replicas_min: if min == u32::MAX { 0 } else { min },
            replicas_max: max,
            replicas_mean: if end > 0.0 {
                area / end
            } else {
                f64::from(max)
            },
            scale_events: scale_events + self.scheduled_events,
            decisions,
        }
    }
}
