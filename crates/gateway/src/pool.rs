//! The live pod table: which pods serve which models and adapters, and, per pod, the routing
//! core's state ([`brix_router::fleet::PodCore`]: in-flight count, gauges with their age,
//! latency EWMAs, token rates, health and outlier ejection). This module is the core's live
//! driver: it owns the locks and the clock; every rule is the core's, the same code the
//! virtual-time simulator drives.
//!
//! Discovery changes are applied by [`Pool::apply`], which keeps the state of pods that stay
//! (counts in flight, metrics) and returns the ones that appeared or left so the caller can
//! start or stop their probes. A pod that leaves, leaves rotation or restarts loses its claims
//! in the prefix indexes.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, Weak};
use std::time::Instant;

use brix_router::fleet::{CoreConfig, FailureKind, PodCore, Scrape, Transition, may_eject};
use brix_router::{
    Decision, NoRoute, Pod, PrefixConfig, PrefixIndex, RouteRequest, Weighted, route,
};
use rand::Rng;

use crate::discovery::Targets;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// One engine endpoint and everything known about it.
#[derive(Debug)]
pub struct PodState {
    /// Pod name (`target-pod`).
    pub name: String,
    /// `host:port` (`target-pod-ip`).
    pub address: String,
    core: Mutex<PodCore>,
    /// Adapters the pod's `/v1/models` lists besides its base models.
    adapters: Mutex<Vec<String>>,
    /// The pool's table and indexes (weak: the table holds the pod).
    shared: Weak<Shared>,
    epoch: Instant,
}

impl PodState {
    fn new(name: &str, address: &str, shared: Weak<Shared>, epoch: Instant) -> Self {
        Self {
            name: name.to_string(),
            address: address.to_string(),
            // A new pod joins after its first good `/health` probe.
            core: Mutex::default(),
            adapters: Mutex::default(),
            shared,
            epoch,
        }
    }

    fn core(&self) -> MutexGuard<'_, PodCore> {
        lock(&self.core)
    }

    /// Seconds on the gateway's clock (the same epoch as `Gateway::now`).
    fn now(&self) -> f64 {
        self.epoch.elapsed().as_secs_f64()
    }

    /// Requests this gateway has in flight on the pod.
    pub fn in_flight(&self) -> u32 {
        self.core().in_flight()
    }

    /// Whether the pod is in the candidate set.
    pub fn is_healthy(&self) -> bool {
        self.core().in_rotation()
    }

    /// Takes an in-flight slot, released when the guard drops (also on cancellation).
    pub fn acquire(self: &Arc<Self>) -> InFlight {
        self.core().begin();
        InFlight { pod: self.clone() }
    }

    /// Stores a good scrape; an engine that restarted loses its prefix claims.
    pub fn set_scrape(&self, scrape: Scrape) {
        self.set_scrape_at(scrape, self.now());
    }

    pub(crate) fn set_scrape_at(&self, scrape: Scrape, now: f64) {
        let t = self.core().scraped(now, scrape);
        self.after(t);
    }

    /// A `/health` probe answered; returns whether the pod moved in or out of rotation.
    pub fn probe_health(&self, ok: bool) -> bool {
        self.probe_health_at(ok, self.now())
    }

    pub(crate) fn probe_health_at(&self, ok: bool, now: f64) -> bool {
        let cfg = self.config();
        let t = self.core().probe(ok, now, &cfg);
        self.after(t);
        t.is_some()
    }

    /// An upstream attempt on the pod failed (passive health): enough in a row eject it, unless
    /// that would eject too much of the fleet. Returns whether it was ejected now.
    pub fn record_failure(&self, kind: FailureKind) -> bool {
        self.record_failure_at(kind, self.now())
    }

    pub(crate) fn record_failure_at(&self, kind: FailureKind, now: f64) -> bool {
        let cfg = self.config();
        let Some(shared) = self.shared.upgrade() else {
            self.core().failure(kind, now, false, &cfg);
            return false;
        };
        // One ejection decision at a time, so two pods cannot both take the last slot.
        let _one = lock(&shared.eject);
        let allowed = self.core().health().would_eject(&cfg.ejection) && {
            let pods = shared
                .table()
                .by_address
                .values()
                .cloned()
                .collect::<Vec<_>>();
            let ejected = pods
                .iter()
                .filter(|p| p.core().health().is_ejected())
                .count();
            let in_rotation = pods.iter().filter(|p| p.is_healthy()).count();
            may_eject(ejected, in_rotation, pods.len(), &cfg.ejection)
        };
        let t = self.core().failure(kind, now, allowed, &cfg);
        self.after(t);
        t.is_some()
    }

    /// An upstream attempt on the pod succeeded: its failure streak ends.
    pub fn record_success(&self) {
        self.core().success();
    }

    fn config(&self) -> CoreConfig {
        self.shared
            .upgrade()
            .map_or_else(CoreConfig::default, |s| s.cfg.clone())
    }

    /// Acts on a core transition: a pod that left rotation or restarted loses its claims.
    fn after(&self, t: Option<Transition>) {
        match t {
            Some(Transition::Left | Transition::Restarted) => {
                if let Some(shared) = self.shared.upgrade() {
                    shared.purge(&self.address);
                }
                tracing::info!(pod = %self.name, address = %self.address, transition = ?t, "pod out of rotation or restarted; its prefix claims dropped");
            }
            Some(Transition::Joined) => {
                if let Some(shared) = self.shared.upgrade() {
                    shared.joined.notify_waiters();
                }
                tracing::info!(pod = %self.name, address = %self.address, "pod in rotation");
            }
            None => {}
        }
    }

    /// Stores the adapters the pod lists.
    pub fn set_adapters(&self, adapters: Vec<String>) {
        *lock(&self.adapters) = adapters;
    }

    /// Whether the pod lists `adapter`.
    pub fn has_adapter(&self, adapter: &str) -> bool {
        lock(&self.adapters).iter().any(|a| a == adapter)
    }

    /// Adapters the pod lists.
    pub fn adapters(&self) -> Vec<String> {
        lock(&self.adapters).clone()
    }

    /// Records one finished response as this gateway saw it.
    pub fn observe(
        &self,
        now: f64,
        prompt_tokens: u64,
        output_tokens: u64,
        ttft_s: Option<f64>,
        tpot_s: Option<f64>,
    ) {
        self.core()
            .response(now, prompt_tokens, output_tokens, ttft_s, tpot_s);
    }

    /// Seconds since the last good scrape, None before any.
    pub fn metrics_age(&self) -> Option<f64> {
        self.core().metrics_age(self.now())
    }

    /// The routing view of this pod now.
    pub fn snapshot_now(&self) -> Pod {
        self.snapshot(self.now())
    }

    /// The routing view of this pod at `now`.
    pub fn snapshot(&self, now: f64) -> Pod {
        let cfg = self.config();
        self.core().snapshot(&self.name, &self.address, now, &cfg)
    }
}

/// An in-flight slot on a pod; dropping it gives the slot back.
#[derive(Debug)]
pub struct InFlight {
    pod: Arc<PodState>,
}

impl InFlight {
    /// The pod the slot is on.
    pub fn pod(&self) -> &Arc<PodState> {
        &self.pod
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.pod.core().end();
    }
}

/// What a discovery change did to the table.
#[derive(Debug, Default)]
pub struct Change {
    /// Pods that appeared (start probing them).
    pub added: Vec<Arc<PodState>>,
    /// Pods that left (stop probing them).
    pub removed: Vec<Arc<PodState>>,
}

#[derive(Debug, Default)]
struct Table {
    by_address: HashMap<String, Arc<PodState>>,
    by_model: BTreeMap<String, Vec<Arc<PodState>>>,
}

/// What pods reach through a weak link: the table (for the ejection census) and the indexes.
#[derive(Debug)]
struct Shared {
    table: RwLock<Table>,
    indexes: Mutex<HashMap<String, Arc<Mutex<PrefixIndex>>>>,
    eject: Mutex<()>,
    cfg: CoreConfig,
    /// Woken whenever a pod joins rotation (held requests of a model scaling from zero wait
    /// on it).
    joined: tokio::sync::Notify,
}

impl Shared {
    fn table(&self) -> std::sync::RwLockReadGuard<'_, Table> {
        self.table.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Drops `address`'s claims from every model's prefix index.
    fn purge(&self, address: &str) {
        let all: Vec<_> = lock(&self.indexes).values().cloned().collect();
        for i in all {
            lock(&i).purge(address);
        }
    }
}

/// All pods, by model, plus each model's prefix index.
#[derive(Debug)]
pub struct Pool {
    shared: Arc<Shared>,
    /// Pods discovery removed; alive while a request still holds their slot (for draining).
    retired: Mutex<Vec<Weak<PodState>>>,
    prefix: PrefixConfig,
    epoch: Instant,
}

impl Pool {
    /// An empty pool whose prefix indexes use `prefix`, on the clock that starts at `epoch`.
    pub fn new(prefix: PrefixConfig, core: CoreConfig, epoch: Instant) -> Self {
        Self {
            shared: Arc::new(Shared {
                table: RwLock::default(),
                indexes: Mutex::default(),
                eject: Mutex::default(),
                cfg: core,
                joined: tokio::sync::Notify::new(),
            }),
            retired: Mutex::default(),
            prefix,
            epoch,
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Table> {
        self.shared.table()
    }

    /// Replaces the model → pods map, keeping the state of pods that stay.
    pub fn apply(&self, targets: &Targets) -> Change {
        let mut table = self.shared.table.write().unwrap_or_else(|p| p.into_inner());
        let mut change = Change::default();
        let mut by_address = HashMap::new();
        let mut by_model = BTreeMap::new();
        for (model, ts) in targets {
            let mut pods = Vec::with_capacity(ts.len());
            for t in ts {
                let pod = by_address
                    .entry(t.address.clone())
                    .or_insert_with(|| match table.by_address.get(&t.address) {
                        Some(p) if p.name == t.name => p.clone(),
                        _ => {
                            let p = Arc::new(PodState::new(
                                &t.name,
                                &t.address,
                                Arc::downgrade(&self.shared),
                                self.epoch,
                            ));
                            change.added.push(p.clone());
                            p
                        }
                    })
                    .clone();
                pods.push(pod);
            }
            by_model.insert(model.clone(), pods);
        }
        for (addr, p) in &table.by_address {
            if by_address.get(addr).is_none_or(|q| !Arc::ptr_eq(p, q)) {
                change.removed.push(p.clone());
            }
        }
        *table = Table {
            by_address,
            by_model,
        };
        drop(table);
        for p in &change.removed {
            self.shared.purge(&p.address);
        }
        let mut retired = self.retired.lock().unwrap_or_else(|p| p.into_inner());
        retired.retain(|w| w.strong_count() > 0);
        retired.extend(change.removed.iter().map(Arc::downgrade));
        change
    }

    /// Requests in flight to `address`, counting pods discovery already removed (a replica
    /// being drained is out of the table but may still be answering).
    pub fn in_flight_at(&self, address: &str) -> u32 {
        let live = self
            .read()
            .by_address
            .get(address)
            .map_or(0, |p| p.in_flight());
        let retired = self.retired.lock().unwrap_or_else(|p| p.into_inner());
        let gone: u32 = retired
            .iter()
            .filter_map(Weak::upgrade)
            .filter(|p| p.address == address)
            .map(|p| p.in_flight())
            .sum();
        live + gone
    }

    /// Resolves the next time a pod joins rotation (enable it before checking candidates).
    pub fn joined(&self) -> tokio::sync::futures::Notified<'_> {
        self.shared.joined.notified()
    }

    /// Whether `model` is known at all (a base model, or an adapter some pod lists).
    pub fn knows(&self, model: &str) -> bool {
        let t = self.read();
        t.by_model.contains_key(model) || t.by_address.values().any(|p| p.has_adapter(model))
    }

    /// Healthy pods serving `model` as a base model or as an adapter.
    pub fn candidates(&self, model: &str) -> Vec<Arc<PodState>> {
        let t = self.read();
        match t.by_model.get(model) {
            Some(pods) => pods.iter().filter(|p| p.is_healthy()).cloned().collect(),
            None => t
                .by_address
                .values()
                .filter(|p| p.is_healthy() && p.has_adapter(model))
                .cloned()
                .collect(),
        }
    }

    /// Every pod, for `/metrics` and probes.
    pub fn all(&self) -> Vec<Arc<PodState>> {
        self.read().by_address.values().cloned().collect()
    }

    /// Models (base and adapters, with the adapter's base) that have a healthy pod now.
    pub fn routable(&self) -> Vec<(String, Option<String>)> {
        let t = self.read();
        let mut out: BTreeMap<String, Option<String>> = BTreeMap::new();
        for (model, pods) in &t.by_model {
            for p in pods.iter().filter(|p| p.is_healthy()) {
                out.entry(model.clone()).or_insert(None);
                for a in p.adapters() {
                    out.entry(a).or_insert_with(|| Some(model.clone()));
                }
            }
        }
        out.into_iter().collect()
    }

    /// The prefix index of `model`, made on first use.
    pub fn index(&self, model: &str) -> Arc<Mutex<PrefixIndex>> {
        let mut all = lock(&self.shared.indexes);
        if let Some(i) = all.get(model) {
            return i.clone();
        }
        let i = Arc::new(Mutex::new(PrefixIndex::new(self.prefix.clone())));
        all.insert(model.to_string(), i.clone());
        i
    }

    /// Runs `strategy` over the candidates' snapshots at `now`; the decision's `pod` indexes
    /// `candidates`. Nothing is booked: take the slot, then [`Self::accepted`].
    pub fn decide(
        &self,
        model: &str,
        candidates: &[Arc<PodState>],
        strategy: &Weighted,
        req: &RouteRequest<'_>,
        now: f64,
        rng: &mut impl Rng,
    ) -> Result<Decision, NoRoute> {
        let pods: Vec<Pod> = candidates.iter().map(|p| p.snapshot(now)).collect();
        let index = self.index(model);
        let index = lock(&index);
        route(strategy, req, &pods, &index, now, rng)
    }

    /// The engine at `address` accepted (2xx headers) a prompt of `blocks` for `model` at
    /// `now`: it will cache it whatever the strategy, so prefix routing books it now.
    pub fn accepted(&self, model: &str, blocks: &[u64], address: &str, now: f64) {
        if !blocks.is_empty() {
            lock(&self.index(model)).insert(blocks, address, now);
        }
    }
}

#[cfg(test)]
#[path = "pool_tests.rs"]
mod core_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discovery::Target;

    fn targets(spec: &[(&str, &[&str])]) -> Targets {
        spec.iter()
            .map(|(m, addrs)| {
                let ts = addrs
                    .iter()
                    .map(|a| Target {
                        name: a.to_string(),
                        address: a.to_string(),
                    })
                    .collect();
                (m.to_string(), ts)
            })
            .collect()
    }

    #[test]
    fn apply_keeps_state_of_pods_that_stay() {
        let pool = Pool::new(
            PrefixConfig::default(),
            CoreConfig::default(),
            Instant::now(),
        );
        let c = pool.apply(&targets(&[("m", &["a:1", "b:1"])]));
        assert_eq!((c.added.len(), c.removed.len()), (2, 0));
        assert!(pool.candidates("m").is_empty(), "unprobed pods wait");
        for p in pool.all() {
            p.probe_health(true);
        }
        let a = pool
            .candidates("m")
            .into_iter()
            .find(|p| p.address == "a:1");
        let slot = a.as_ref().map(|p| p.acquire());
        let c = pool.apply(&targets(&[("m", &["a:1", "c:1"])]));
        assert_eq!(c.added.len(), 1);
        assert_eq!(c.removed.len(), 1);
        assert_eq!(c.removed[0].address, "b:1");
        let kept: Vec<_> = pool.candidates("m");
        assert_eq!(kept.len(), 1, "c:1 is not probed yet");
        assert_eq!(kept[0].in_flight(), 1);
        drop(slot);
        assert_eq!(kept[0].in_flight(), 0);

        // A removed pod still answering counts until its last request ends.
        let c_slot = pool
            .all()
            .into_iter()
            .find(|p| p.address == "c:1")
            .map(|p| p.acquire());
        pool.apply(&targets(&[("m", &["a:1"])]));
        assert_eq!(pool.in_flight_at("c:1"), 1);
        drop(c_slot);
        assert_eq!(pool.in_flight_at("c:1"), 0);
    }

    #[test]
    fn adapters_route_to_the_pods_that_list_them() {
        let pool = Pool::new(
            PrefixConfig::default(),
            CoreConfig::default(),
            Instant::now(),
        );
        pool.apply(&targets(&[("base", &["a:1", "b:1"])]));
        for p in pool.all() {
            p.probe_health(true);
            if p.address == "b:1" {
                p.set_adapters(vec!["sql".into()]);
            }
        }
        assert!(pool.knows("sql"));
        assert!(!pool.knows("other"));
        let c = pool.candidates("sql");
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].address, "b:1");
        assert_eq!(
            pool.routable(),
            vec![("base".into(), None), ("sql".into(), Some("base".into()))]
        );
    }
}
