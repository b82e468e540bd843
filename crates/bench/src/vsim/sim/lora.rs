//! The adapter half of the event loop: the controller's placement round every `tick_s`
//! (`brix_adapters::plan` over a snapshot of the simulated engines, its Load/Unload/Drain/
//! Resume actions applied to them; a load lands after `bytes / lora_disk_gbps`), the gateway's
//! holder set (pods that list the adapter and are not draining it), and requests for an
//! adapter no pod serves yet, held until one does or `hold_s` passes (then a 503). The policy
//! is the crate's: nothing here decides a placement.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use brix_adapters::{ActionKind, AdapterView, Placement, PodView, Snapshot};
use brix_sim::LoraWeights;

use super::Sim;
use super::slot::{Event, Life};
use crate::vsim::adapters::{
    AdapterCount, AdapterEvent, AdapterEventKind, AdapterReport, AdapterSim,
};

/// The base model every simulated pod serves (placement only compares names).
const BASE: &str = "base";

/// Placement state beside the fleet.
pub(crate) struct LoraState {
    cfg: AdapterSim,
    /// Per engine: adapters whose load is in flight.
    loading: Vec<BTreeSet<u32>>,
    /// Per engine: adapters drained (no new requests).
    draining: Vec<BTreeSet<u32>>,
    /// Per engine: adapter → requests in flight there.
    in_flight: Vec<BTreeMap<u32, u32>>,
    /// Per adapter: requests waiting for a pod to serve it, (request, arrival).
    held: BTreeMap<u32, VecDeque<(usize, f64)>>,
    held_now: usize,
    previous: Placement,
    /// Requests per adapter since the last round, and per round inside the traffic window.
    counts: Vec<u64>,
    window: VecDeque<(f64, Vec<u64>)>,
    sums: Vec<u64>,
    pub(super) report: AdapterReport,
    pub(super) warnings: Vec<String>,
}

impl LoraState {
    pub(super) fn new(cfg: &AdapterSim, engines: usize) -> Self {
        let k = cfg.names.len();
        let per_adapter = cfg
            .names
            .iter()
            .map(|n| (n.clone(), AdapterCount::default()))
            .collect();
        Self {
            cfg: cfg.clone(),
            loading: vec![BTreeSet::new(); engines],
            draining: vec![BTreeSet::new(); engines],
            in_flight: vec![BTreeMap::new(); engines],
            held: BTreeMap::new(),
            held_now: 0,
            previous: Placement::new(),
            counts: vec![0; k],
            window: VecDeque::new(),
            sums: vec![0; k],
            report: AdapterReport {
                per_adapter,
                max_resident: vec![0; engines],
                ..AdapterReport::default()
            },
            warnings: Vec::new(),
        }
    }

    /// Requests waiting for a pod to serve their adapter.
    pub(super) fn held(&self) -> usize {
        self.held_now
    }

    fn grow(&mut self, engines: usize) {
        if self.loading.len() < engines {
            self.loading.resize(engines, BTreeSet::new());
            self.draining.resize(engines, BTreeSet::new());
            self.in_flight.resize(engines, BTreeMap::new());
            self.report.max_resident.resize(engines, 0);
        }
    }

    fn event(&mut self, t: f64, pod: &str, adapter: u32, kind: AdapterEventKind) {
        let name = &self.cfg.names[adapter as usize];
        if let Some(c) = self.report.per_adapter.get_mut(name) {
            match kind {
                AdapterEventKind::Load => c.loads += 1,
                AdapterEventKind::Unload => c.unloads += 1,
                _ => {}
            }
        }
        self.report.events.push(AdapterEvent {
            t,
            pod: pod.to_string(),
            adapter: name.clone(),
            kind,
        });
    }
}

impl Sim<'_> {
    /// The adapter request `i` names, if the run has adapters.
    pub(super) fn adapter_of(&self, i: usize) -> Option<u32> {
        let l = self.lora.as_ref()?;
        l.cfg.of_request.get(i).copied()
    }

    /// The adapter's name.
    pub(super) fn adapter_name(&self, a: u32) -> String {
        self.lora
            .as_ref()
            .map(|l| l.cfg.names[a as usize].clone())
            .unwrap_or_default()
    }

    /// Engines that may take a request for adapter `a` now: in rotation, listing it, not
    /// draining it.
    pub(super) fn holders(&self, a: u32) -> Vec<usize> {
        let Some(l) = &self.lora else {
            return Vec::new();
        };
        let name = l.cfg.names[a as usize].as_str();
        // The routing core's own rule (listed, not draining), so holders and routing agree.
        (0..self.slots.len())
            .filter(|&e| {
                self.slots[e].life == Life::Ready
                    && self.fleet.routable(e)
                    && self.fleet.core(e).serves(Some(name))
            })
            .collect()
    }

    /// Counts request `i`'s adapter (traffic and totals) when it arrives.
    pub(super) fn count_adapter(&mut self, a: u32) {
        if let Some(l) = self.lora.as_mut() {
            l.counts[a as usize] += 1;
            let name = &l.cfg.names[a as usize];
            if let Some(c) = l.report.per_adapter.get_mut(name) {
                c.requests += 1;
            }
        }
    }

    /// A request for `a` was sent to (`delta` 1) or ended on (`delta` −1) engine `e`.
    pub(super) fn adapter_in_flight(&mut self, e: usize, a: u32, delta: i32) {
        let engines = self.slots.len();
        if let Some(l) = self.lora.as_mut() {
            l.grow(engines);
            let n = l.in_flight[e].entry(a).or_default();
            *n = n.saturating_add_signed(delta);
            if *n == 0 {
                l.in_flight[e].remove(&a);
            }
        }
    }

    /// Books a served request for its adapter.
    pub(super) fn adapter_ok(&mut self, a: u32) {
        if let Some(l) = self.lora.as_mut()
            && let Some(c) = l.report.per_adapter.get_mut(&l.cfg.names[a as usize])
        {
            c.ok += 1;
        }
    }

    /// Holds request `i` (arrived at `arrived`) until a pod serves adapter `a`.
    pub(super) fn hold_for_adapter(&mut self, i: usize, a: u32, arrived: f64, now: f64) {
        let Some(l) = self.lora.as_mut() else {
            return;
        };
        l.held.entry(a).or_default().push_back((i, arrived));
        l.held_now += 1;
        l.report.held += 1;
        let at = now + l.cfg.hold_s;
        self.push(at, Event::AdapterHoldTimeout(i));
    }

    /// Request `i`'s wait for its adapter is over: if still held, a 503.
    pub(super) fn adapter_hold_timeout(&mut self, i: usize, now: f64) {
        let Some(a) = self.adapter_of(i) else { return };
        let Some(l) = self.lora.as_mut() else { return };
        let Some(q) = l.held.get_mut(&a) else { return };
        let Some(pos) = q.iter().position(|(r, _)| *r == i) else {
            return;
        };
        let (_, arrived) = q.remove(pos).unwrap_or((i, now));
        l.held_now -= 1;
        l.report.held_timed_out += 1;
        let why = format!(
            "no replica serves adapter {} after {} s",
            l.cfg.names[a as usize], l.cfg.hold_s
        );
        self.unavailable(i, arrived, now, &why);
    }

    /// Sends the requests held for `a`, oldest first, now that a pod serves it.
    fn release_held(&mut self, a: u32, now: f64) {
        let Some(l) = self.lora.as_mut() else { return };
        let Some(q) = l.held.remove(&a) else { return };
        l.held_now -= q.len();
        for (i, arrived) in q {
            self.send(i, arrived, now);
        }
    }

    /// A placement round: the snapshot, the plan, its actions; `instant` loads at once (the
    /// fleet's starting placement, as `--lora-modules` would have it).
    pub(super) fn place(&mut self, now: f64, instant: bool) {
        let Some(mut l) = self.lora.take() else {
            return;
        };
        l.grow(self.slots.len());
        l.report.rounds += 1;
        // The traffic window: this round's counts in, rounds older than the window out.
        let counts = std::mem::replace(&mut l.counts, vec![0; l.cfg.names.len()]);
        for (s, c) in l.sums.iter_mut().zip(&counts) {
            *s += c;
        }
        l.window.push_back((now, counts));
        while let Some((t, old)) = l.window.front() {
            if now - t < l.cfg.traffic_window_s {
                break;
            }
            for (s, c) in l.sums.iter_mut().zip(old) {
                *s -= c;
            }
            l.window.pop_front();
        }
        let span = now.min(l.cfg.traffic_window_s).max(l.cfg.tick_s);
        let ec = &self.cfg.engine;
        let pods: Vec<PodView> = (0..self.slots.len())
            .filter(|&e| self.slots[e].life != Life::Stopped)
            .map(|e| {
                let engine = &self.slots[e].engine;
                let mut loaded: BTreeSet<String> =
                    engine.loras().into_iter().map(|(n, _)| n).collect();
                loaded.extend(
                    l.loading[e]
                        .iter()
                        .map(|&a| l.cfg.names[a as usize].clone()),
                );
                let draining = l.draining[e]
                    .iter()
                    .map(|&a| {
                        let idle = !l.in_flight[e].contains_key(&a);
                        (l.cfg.names[a as usize].clone(), idle)
                    })
                    .collect();
                l.report.max_resident[e] = l.report.max_resident[e].max(loaded.len() as u32);
                PodView {
                    name: self.fleet.name(e).to_string(),
                    base_model: BASE.into(),
                    ready: self.slots[e].life == Life::Ready && self.fleet.routable(e),
                    max_loras: ec.max_loras,
                    max_cpu_loras: ec.max_cpu_loras,
                    loaded,
                    draining,
                }
            })
            .collect();
        let adapters = l
            .cfg
            .names
            .iter()
            .zip(&l.sums)
            .map(|(name, &n)| AdapterView {
                name: name.clone(),
                base_model: BASE.into(),
                replicas: l.cfg.replicas,
                eligible: None,
                traffic_rps: n as f64 / span,
                deleted: false,
            })
            .collect();
        let snap = Snapshot {
            pods,
            adapters,
            previous: std::mem::take(&mut l.previous),
            config: l.cfg.policy.clone(),
        };
        let plan = match brix_adapters::plan(&snap) {
            Ok(p) => p,
            Err(e) => {
                l.warnings.push(format!("placement at {now:.1} s: {e}"));
                l.previous = snap.previous;
                self.lora = Some(l);
                return;
            }
        };
        l.previous = plan.placement;
        let index: BTreeMap<&str, u32> = l
            .cfg
            .names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.as_str(), i as u32))
            .collect();
        let pod_index: BTreeMap<&str, usize> = (0..self.slots.len())
            .map(|e| (self.fleet.name(e), e))
            .collect();
        // Resolved to (kind, adapter, engine) first: the names borrow the state.
        let actions: Vec<(ActionKind, u32, usize)> = plan
            .actions
            .iter()
            .filter_map(|act| {
                Some((
                    act.kind,
                    *index.get(act.adapter.as_str())?,
                    *pod_index.get(act.pod.as_str())?,
                ))
            })
            .collect();
        drop(index);
        let mut routable = Vec::new();
        let mut loads = Vec::new();
        // Engines whose adapter list changed: the routing core is told once per round.
        let mut listed = BTreeSet::new();
        for (kind, a, e) in actions {
            let pod = self.fleet.name(e).to_string();
            let name = l.cfg.names[a as usize].clone();
            match kind {
                ActionKind::Unload => {
                    l.draining[e].remove(&a);
                    if self.slots[e].engine.unload_lora(&name).is_ok() {
                        l.event(now, &pod, a, AdapterEventKind::Unload);
                        listed.insert(e);
                    }
                }
                ActionKind::Drain => {
                    if l.draining[e].insert(a) {
                        l.event(now, &pod, a, AdapterEventKind::Drain);
                        self.fleet.set_draining(e, &name, true);
                    }
                }
                ActionKind::Resume => {
                    if l.draining[e].remove(&a) {
                        l.event(now, &pod, a, AdapterEventKind::Resume);
                        self.fleet.set_draining(e, &name, false);
                        routable.push(a);
                    }
                }
                ActionKind::Load => {
                    // "Already loaded" (or loading) is done, as the controller treats it.
                    if self.slots[e].engine.has_lora(&name) || !l.loading[e].insert(a) {
                        continue;
                    }
                    l.event(now, &pod, a, AdapterEventKind::Load);
                    loads.push((e, a));
                }
            }
        }
        let bytes = l.cfg.bytes;
        let tick = l.cfg.tick_s;
        self.lora = Some(l);
        for (e, a) in loads {
            if instant {
                self.load_now(e, a, now);
                listed.insert(e);
            } else {
                let per_s = self.cfg.engine.lora_disk_gbps * 1e9;
                let b =
                    bytes.map_or_else(|| self.slots[e].engine.lora_default_bytes(), |b| b as f64);
                self.push(now + b / per_s, Event::AdapterLoaded(e, a));
            }
        }
        for e in listed {
            self.list_adapters(e);
        }
        for a in routable {
            self.release_held(a, now);
        }
        if self.alive() {
            self.push(now + tick, Event::Place);
        }
    }

    /// Tells the routing core what engine `e` lists (as the controller does after a load or
    /// unload, and the gateway's `/v1/models` poll would).
    fn list_adapters(&mut self, e: usize) {
        let names = self.slots[e]
            .engine
            .loras()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        self.fleet.set_adapters(e, names);
    }

    /// A load finished: engine `e` lists adapter `a`, and requests held for it go out.
    pub(super) fn loaded(&mut self, e: usize, a: u32, now: f64) {
        if self.load_now(e, a, now) {
            self.list_adapters(e);
            self.release_held(a, now);
        }
    }

    /// Registers adapter `a` on engine `e`; false when the load no longer applies.
    fn load_now(&mut self, e: usize, a: u32, now: f64) -> bool {
        let Some(l) = self.lora.as_mut() else {
            return false;
        };
        if !l.loading[e].remove(&a) || self.slots[e].life == Life::Stopped {
            return false;
        }
        let name = l.cfg.names[a as usize].clone();
        let weights = LoraWeights {
            rank: None,
            bytes: l.cfg.bytes,
        };
        let path = format!("/adapters/{name}");
        if let Err(err) = self.slots[e]
            .engine
            .load_lora_with(&name, &path, weights, false)
        {
            l.warnings.push(format!("loading {name}: {err}"));
            return false;
        }
        let pod = self.fleet.name(e).to_string();
        l.event(now, &pod, a, AdapterEventKind::Loaded);
        let resident = (self.slots[e].engine.loras().len() + l.loading[e].len()) as u32;
        l.report.max_resident[e] = l.report.max_resident[e].max(resident);
        let replicas = (0..self.slots.len())
            .filter(|&x| self.slots[x].engine.has_lora(&name))
            .count() as u32;
        if let Some(c) = l.report.per_adapter.get_mut(&name) {
            c.max_replicas = c.max_replicas.max(replicas);
        }
        true
    }
}
