//! The live pod table: which pods serve which models and adapters, whether they are healthy,
//! and the load signals routing reads (in-flight counts kept here, exact; engine metrics
//! scraped; latencies and token rates measured on proxied responses).
//!
//! Discovery changes are applied by [`Pool::apply`], which keeps the state of pods that stay
//! (counts in flight, metrics) and returns the ones that appeared or left so the caller can
//! start or stop their probes.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, Weak};

use brix_router::{EngineMetrics, Observed, Pod, PrefixConfig, PrefixIndex};

use crate::discovery::Targets;

/// Smoothing of the measured TTFT and TPOT (weight of the newest sample).
const EWMA_ALPHA: f64 = 0.2;
/// Seconds of history behind the token-rate signals.
const RATE_WINDOW_S: usize = 10;

/// One engine endpoint and everything known about it.
#[derive(Debug)]
pub struct PodState {
    /// Pod name (`target-pod`).
    pub name: String,
    /// `host:port` (`target-pod-ip`).
    pub address: String,
    in_flight: AtomicU32,
    healthy: AtomicBool,
    inner: Mutex<PodInner>,
}

#[derive(Debug, Default)]
struct PodInner {
    metrics: EngineMetrics,
    /// Adapters the pod's `/v1/models` lists besides its base models.
    adapters: Vec<String>,
    ttft_s: Option<f64>,
    tpot_s: Option<f64>,
    rates: RateWindow,
}

/// Tokens per one-second bucket over the last [`RATE_WINDOW_S`] seconds.
#[derive(Debug, Default)]
struct RateWindow {
    /// (second, prompt tokens, output tokens) per slot.
    slots: [(u64, f64, f64); RATE_WINDOW_S],
}

impl RateWindow {
    fn add(&mut self, now: f64, prompt: f64, output: f64) {
        let sec = now.max(0.0) as u64;
        let slot = &mut self.slots[sec as usize % RATE_WINDOW_S];
        if slot.0 != sec {
            *slot = (sec, 0.0, 0.0);
        }
        slot.1 += prompt;
        slot.2 += output;
    }

    /// (prompt, output) tokens per second over the window ending at `now`.
    fn rates(&self, now: f64) -> (f64, f64) {
        let sec = now.max(0.0) as u64;
        let live = self
            .slots
            .iter()
            .filter(|s| s.0 + RATE_WINDOW_S as u64 > sec && s.0 <= sec);
        let (p, o) = live.fold((0.0, 0.0), |(p, o), s| (p + s.1, o + s.2));
        let w = RATE_WINDOW_S as f64;
        (p / w, o / w)
    }
}

fn ewma(old: Option<f64>, sample: f64) -> Option<f64> {
    Some(match old {
        Some(x) => x + EWMA_ALPHA * (sample - x),
        None => sample,
    })
}

impl PodState {
    fn new(name: &str, address: &str) -> Self {
        Self {
            name: name.to_string(),
            address: address.to_string(),
            in_flight: AtomicU32::new(0),
            // A new pod joins after its first successful probe.
            healthy: AtomicBool::new(false),
            inner: Mutex::default(),
        }
    }

    fn inner(&self) -> MutexGuard<'_, PodInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Requests this gateway has in flight on the pod.
    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Whether the pod is in the candidate set.
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Moves the pod in or out of rotation; returns whether that changed anything.
    pub fn set_healthy(&self, healthy: bool) -> bool {
        self.healthy.swap(healthy, Ordering::Relaxed) != healthy
    }

    /// Takes an in-flight slot, released when the guard drops (also on cancellation).
    pub fn acquire(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight { pod: self.clone() }
    }

    /// Stores the latest scrape.
    pub fn set_metrics(&self, metrics: EngineMetrics) {
        self.inner().metrics = metrics;
    }

    /// Stores the adapters the pod lists.
    pub fn set_adapters(&self, adapters: Vec<String>) {
        self.inner().adapters = adapters;
    }

    /// Whether the pod lists `adapter`.
    pub fn has_adapter(&self, adapter: &str) -> bool {
        self.inner().adapters.iter().any(|a| a == adapter)
    }

    /// Adapters the pod lists.
    pub fn adapters(&self) -> Vec<String> {
        self.inner().adapters.clone()
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
        let mut inner = self.inner();
        inner
            .rates
            .add(now, prompt_tokens as f64, output_tokens as f64);
        if let Some(t) = ttft_s {
            inner.ttft_s = ewma(inner.ttft_s, t);
        }
        if let Some(t) = tpot_s {
            inner.tpot_s = ewma(inner.tpot_s, t);
        }
    }

    /// The routing view of this pod at `now`.
    pub fn snapshot(&self, now: f64) -> Pod {
        let inner = self.inner();
        let (prompt_tps, output_tps) = inner.rates.rates(now);
        Pod {
            name: self.name.clone(),
            address: self.address.clone(),
            in_flight: self.in_flight(),
            metrics: inner.metrics.clone(),
            observed: Observed {
                prompt_tps,
                output_tps,
                ttft_s: inner.ttft_s,
                tpot_s: inner.tpot_s,
            },
        }
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
        self.pod.in_flight.fetch_sub(1, Ordering::Relaxed);
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

/// All pods, by model, plus each model's prefix index.
#[derive(Debug)]
pub struct Pool {
    table: RwLock<Table>,
    /// Pods discovery removed; alive while a request still holds their slot (for draining).
    retired: Mutex<Vec<Weak<PodState>>>,
    indexes: Mutex<HashMap<String, Arc<Mutex<PrefixIndex>>>>,
    prefix: PrefixConfig,
}

impl Pool {
    /// An empty pool whose prefix indexes use `prefix`.
    pub fn new(prefix: PrefixConfig) -> Self {
        Self {
            table: RwLock::default(),
            retired: Mutex::default(),
            indexes: Mutex::default(),
            prefix,
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Table> {
        self.table.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Replaces the model → pods map, keeping the state of pods that stay.
    pub fn apply(&self, targets: &Targets) -> Change {
        let mut table = self.table.write().unwrap_or_else(|p| p.into_inner());
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
                            let p = Arc::new(PodState::new(&t.name, &t.address));
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
        let mut all = self.indexes.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(i) = all.get(model) {
            return i.clone();
        }
        let i = Arc::new(Mutex::new(PrefixIndex::new(self.prefix.clone())));
        all.insert(model.to_string(), i.clone());
        i
    }
}

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
        let pool = Pool::new(PrefixConfig::default());
        let c = pool.apply(&targets(&[("m", &["a:1", "b:1"])]));
        assert_eq!((c.added.len(), c.removed.len()), (2, 0));
        assert!(pool.candidates("m").is_empty(), "unprobed pods wait");
        for p in pool.all() {
            p.set_healthy(true);
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
        let pool = Pool::new(PrefixConfig::default());
        pool.apply(&targets(&[("base", &["a:1", "b:1"])]));
        for p in pool.all() {
            p.set_healthy(true);
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

    #[test]
    fn rates_cover_the_last_ten_seconds() {
        let mut w = RateWindow::default();
        w.add(1.2, 100.0, 10.0);
        w.add(5.0, 100.0, 10.0);
        assert_eq!(w.rates(5.5), (20.0, 2.0));
        assert_eq!(w.rates(11.5), (10.0, 1.0));
        assert_eq!(w.rates(30.0), (0.0, 0.0));
    }
}
