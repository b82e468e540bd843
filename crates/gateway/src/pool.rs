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
use brix_router::{Estimate, Pod, PrefixConfig, PrefixIndex, PromptKeys, RouteRequest, estimate};

use crate::adapters::AdapterRoute;
use crate::discovery::{KvEndpoints, Target, Targets};

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// One engine endpoint and everything known about it.
#[derive(Debug)]
pub struct PodState {
    /// Pod name (`target-pod`).
    pub name: String,
    /// `host:port` (`target-pod-ip`).
    pub address: String,
    /// Where its engine publishes KV events, as discovery said (see [`crate::kv`]).
    pub kv_events: Option<KvEndpoints>,
    /// Where its `/metrics` are scraped (`Target::metrics`, else `address`).
    pub metrics_address: String,
    /// The routing core's state, adapters held and draining included.
    core: Mutex<PodCore>,
    /// Bumped by every adapter-list update, so a probe's `/v1/models` read before a newer
    /// update (the controller's, after a load) does not overwrite it.
    adapters_gen: std::sync::atomic::AtomicU64,
    /// The pool's table and indexes (weak: the table holds the pod).
    shared: Weak<Shared>,
    epoch: Instant,
}

impl PodState {
    fn new(t: &Target, shared: Weak<Shared>, epoch: Instant) -> Self {
        Self {
            name: t.name.clone(),
            address: t.address.clone(),
            kv_events: t.kv_events.clone(),
            metrics_address: t.metrics.clone().unwrap_or_else(|| t.address.clone()),
            // A new pod joins after its first good `/health` probe.
            core: Mutex::default(),
            adapters_gen: std::sync::atomic::AtomicU64::new(0),
            shared,
            epoch,
        }
    }

    pub(crate) fn core(&self) -> MutexGuard<'_, PodCore> {
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

    /// Requests for `adapter` in flight on the pod.
    pub fn adapter_in_flight(&self, adapter: &str) -> u32 {
        self.core().adapter_in_flight(adapter)
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

    pub(crate) fn config(&self) -> CoreConfig {
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

    /// Stores the adapters the pod holds (its `/v1/models`, or the controller after a load or
    /// unload; the newest word wins), at most [`MAX_POD_ADAPTERS`]; wakes requests waiting
    /// for an adapter.
    pub fn set_adapters(&self, adapters: Vec<String>) {
        self.set_adapters_if(adapters, None);
    }

    /// The adapter list's generation now: pass it to [`Self::set_adapters_if`] with a list
    /// read after this call.
    pub fn adapters_generation(&self) -> u64 {
        self.adapters_gen.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// [`Self::set_adapters`], unless the list changed since generation `read_at` (then this
    /// list is older news and is dropped). Returns whether it was applied.
    pub fn set_adapters_if(&self, mut adapters: Vec<String>, read_at: Option<u64>) -> bool {
        if adapters.len() > MAX_POD_ADAPTERS {
            tracing::warn!(pod = %self.name, listed = adapters.len(), kept = MAX_POD_ADAPTERS, "pod lists too many adapters; the rest are not routed to");
            adapters.truncate(MAX_POD_ADAPTERS);
        }
        let changed = {
            let mut core = self.core();
            let gen_ = &self.adapters_gen;
            let now = gen_.load(std::sync::atomic::Ordering::SeqCst);
            if read_at.is_some_and(|g| g != now) {
                return false;
            }
            gen_.store(now + 1, std::sync::atomic::Ordering::SeqCst);
            let changed = core.adapters() != adapters.as_slice();
            core.set_adapters(adapters);
            changed
        };
        if changed && let Some(shared) = self.shared.upgrade() {
            shared.adapters_changed.notify_waiters();
        }
        true
    }

    /// Marks `adapter` draining here (no new requests for it) or serving again.
    pub fn set_draining(&self, adapter: &str, draining: bool) {
        self.core().set_draining(adapter, draining);
        if !draining && let Some(shared) = self.shared.upgrade() {
            shared.adapters_changed.notify_waiters();
        }
    }

    /// Whether the pod lists `adapter`.
    pub fn has_adapter(&self, adapter: &str) -> bool {
        self.core().has_adapter(adapter)
    }

    /// Whether a request for `adapter` may come here, health aside (the core's rule).
    pub fn serves(&self, adapter: &str) -> bool {
        self.core().serves(Some(adapter))
    }

    /// Adapters the pod lists.
    pub fn adapters(&self) -> Vec<String> {
        self.core().adapters().to_vec()
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

/// Most adapters kept per pod (they become metric labels; engines are configured, but a
/// broken one must not grow the table without bound).
pub const MAX_POD_ADAPTERS: usize = 4096;

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
    /// Woken whenever a pod's adapter list changes or a drain ends (held adapter requests).
    adapters_changed: tokio::sync::Notify,
    /// The adapters that exist (the controller's ModelAdapters), by name.
    routes: RwLock<BTreeMap<String, AdapterRoute>>,
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
    /// Prefix blocks booked since the last sync batch; None while sync is off.
    booked: Mutex<Option<crate::sync::Outbox>>,
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
                adapters_changed: tokio::sync::Notify::new(),
                routes: RwLock::default(),
            }),
            retired: Mutex::default(),
            prefix,
            epoch,
            booked: Mutex::default(),
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
                        Some(p)
                            if p.name == t.name
                                && p.kv_events == t.kv_events
                                && Some(&p.metrics_address)
                                    == t.metrics.as_ref().or(Some(&t.address)) =>
                        {
                            p.clone()
                        }
                        _ => {
                            let p = Arc::new(PodState::new(
                                t,
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
        self.sum_at(address, PodState::in_flight)
    }

    /// Requests for `adapter` in flight to `address`, removed pods included.
    pub fn adapter_in_flight_at(&self, address: &str, adapter: &str) -> u32 {
        self.sum_at(address, |p| p.adapter_in_flight(adapter))
    }

    /// `count` summed over the pod at `address` and removed pods still holding requests.
    fn sum_at(&self, address: &str, count: impl Fn(&PodState) -> u32) -> u32 {
        let live = self.read().by_address.get(address).map_or(0, |p| count(p));
        let retired = self.retired.lock().unwrap_or_else(|p| p.into_inner());
        let gone: u32 = retired
            .iter()
            .filter_map(Weak::upgrade)
            .filter(|p| p.address == address)
            .map(|p| count(&p))
            .sum();
        live + gone
    }

    /// The pod discovery lists at `address`.
    pub fn pod(&self, address: &str) -> Option<Arc<PodState>> {
        self.read().by_address.get(address).cloned()
    }

    /// Replaces the set of adapters that exist; wakes requests waiting for one.
    pub fn set_routes(&self, routes: Vec<AdapterRoute>) {
        let map = routes.into_iter().map(|r| (r.name.clone(), r)).collect();
        *self
            .shared
            .routes
            .write()
            .unwrap_or_else(|p| p.into_inner()) = map;
        self.shared.adapters_changed.notify_waiters();
    }

    /// The adapter named `name`, if it exists.
    pub fn route(&self, name: &str) -> Option<AdapterRoute> {
        let routes = self.shared.routes.read().unwrap_or_else(|p| p.into_inner());
        routes.get(name).cloned()
    }

    /// Names of the adapters that exist.
    pub fn route_names(&self) -> Vec<String> {
        let routes = self.shared.routes.read().unwrap_or_else(|p| p.into_inner());
        routes.keys().cloned().collect()
    }

    /// Resolves the next time a pod's adapter list changes, a drain ends or the adapters that
    /// exist change (enable it before checking candidates).
    pub fn adapters_changed(&self) -> tokio::sync::futures::Notified<'_> {
        self.shared.adapters_changed.notified()
    }

    /// Whether `model` names an adapter (not a base model some pod serves).
    pub fn is_adapter(&self, model: &str) -> bool {
        let base = self.read().by_model.contains_key(model);
        !base && self.knows(model)
    }

    /// Resolves the next time a pod joins rotation (enable it before checking candidates).
    pub fn joined(&self) -> tokio::sync::futures::Notified<'_> {
        self.shared.joined.notified()
    }

    /// Whether `model` is known at all (a base model, an adapter that exists, or an adapter
    /// some pod lists). Only known names become metric labels.
    pub fn knows(&self, model: &str) -> bool {
        let t = self.read();
        t.by_model.contains_key(model)
            || self.route(model).is_some()
            || t.by_address.values().any(|p| p.has_adapter(model))
    }

    /// Healthy pods serving `model` as a base model, or, for an adapter, holding it and not
    /// draining it — in discovery order (the order routing's seeded shuffle starts from).
    pub fn candidates(&self, model: &str) -> Vec<Arc<PodState>> {
        let t = self.read();
        if let Some(pods) = t.by_model.get(model) {
            return pods.iter().filter(|p| p.is_healthy()).cloned().collect();
        }
        // An adapter: the pods of its base model when it is known, else of every model.
        let base = self.route(model).map(|r| r.base_model);
        let mut seen = std::collections::HashSet::new();
        t.by_model
            .iter()
            .filter(|(m, _)| {
                base.as_ref()
                    .is_none_or(|b| !t.by_model.contains_key(b) || *m == b)
            })
            .flat_map(|(_, pods)| pods)
            .filter(|p| seen.insert(p.address.clone()))
            .filter(|p| p.is_healthy() && p.serves(model))
            .cloned()
            .collect()
    }

    /// Every pod, for `/metrics` and probes.
    pub fn all(&self) -> Vec<Arc<PodState>> {
        self.read().by_address.values().cloned().collect()
    }

    /// The base model an adapter runs on: its route's, else that of a pod listing it.
    pub fn base_of(&self, adapter: &str) -> Option<String> {
        if let Some(r) = self.route(adapter) {
            return Some(r.base_model);
        }
        let t = self.read();
        t.by_model
            .iter()
            .find(|(_, pods)| pods.iter().any(|p| p.has_adapter(adapter)))
            .map(|(model, _)| model.clone())
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

    /// What the `ttft` cost model estimates for `req` on `pod` at `now` (the prefill to book
    /// when the request is sent there, and the TTFT predicted for the correction).
    pub fn estimate(
        &self,
        model: &str,
        pod: &PodState,
        req: &RouteRequest<'_>,
        now: f64,
    ) -> Estimate {
        // The exact cached tokens too, where the pod has KV events and the request tokens.
        let mut keys = req.tokens.map(|t| PromptKeys::new(t, req.adapter));
        let view = pod.snapshot_for(now, keys.as_mut());
        let index = self.index(model);
        let index = lock(&index);
        let matched = index
            .matched(req.blocks, std::slice::from_ref(&view), now)
            .first()
            .copied()
            .unwrap_or(0);
        estimate(req, &view, matched, index.config())
    }

    /// The engine at `address` accepted (2xx headers) a prompt of `blocks` for `model` at
    /// `now`: it will cache it whatever the strategy, so prefix routing books it now.
    pub fn accepted(&self, model: &str, blocks: &[u64], address: &str, now: f64) {
        self.peer_accepted(model, blocks, address, now);
        if !blocks.is_empty()
            && let Some(out) = lock(&self.booked).as_mut()
        {
            out.push(model, address, blocks);
        }
    }
}

#[path = "pool_slot.rs"]
mod slot;
pub use slot::InFlight;

#[path = "pool_sync.rs"]
mod sync_hooks;

#[cfg(test)]
#[path = "pool_tests.rs"]
mod core_tests;

#[cfg(test)]
#[path = "pool_unit_tests.rs"]
mod tests;
