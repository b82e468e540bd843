//! LoRA adapters as the gateway routes them: which adapters exist (the controller's
//! ModelAdapters, [`AdapterRoute`]), requests held while an adapter is being placed, and each
//! adapter's request rate for the placement's hot-adapter rule.
//!
//! Under failure: a request for an adapter that exists but that no ready pod holds waits, when
//! the adapter's placement is in progress (`pending`), for a holder — at most
//! `adapters.max_held` requests at once over all adapters (one more is 503 at once), each at
//! most `adapters.wait_s` (then 503); otherwise it is 503 at once, naming the adapter. A client
//! that goes away while held frees its place. Rates are kept only for adapters that exist, so
//! clients cannot grow the map.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use prometheus::IntGauge;

use crate::Gateway;
use crate::config::AdaptersConfig;
use crate::error::{AdapterWhy, GatewayError};
use crate::pool::PodState;

/// One LoRA adapter that exists (a ModelAdapter the controller manages).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdapterRoute {
    /// The adapter's name, as requests send it in `model`.
    pub name: String,
    /// The base model whose pods may hold it.
    pub base_model: String,
    /// Its placement is in progress: a request finding no holder waits for one instead of
    /// failing at once.
    pub pending: bool,
}

/// Seconds of history behind [`Rates::rps`].
pub(crate) const RATE_WINDOW_S: u64 = 60;

/// Requests per adapter in one-second buckets over the last [`RATE_WINDOW_S`] seconds.
#[derive(Debug, Default)]
pub(crate) struct Rates {
    by_adapter: Mutex<HashMap<String, [(u64, u32); RATE_WINDOW_S as usize]>>,
}

impl Rates {
    /// Counts one request for `adapter` (an adapter that exists) at `now` seconds.
    pub(crate) fn count(&self, adapter: &str, now: f64) {
        let sec = now.max(0.0) as u64;
        let mut all = self.by_adapter.lock().unwrap_or_else(|p| p.into_inner());
        let slots = all
            .entry(adapter.to_string())
            .or_insert([(0, 0); RATE_WINDOW_S as usize]);
        let slot = &mut slots[(sec % RATE_WINDOW_S) as usize];
        if slot.0 != sec {
            *slot = (sec, 0);
        }
        slot.1 = slot.1.saturating_add(1);
    }

    /// Requests per second over the last minute for each of `names` (0 without requests);
    /// forgets adapters not among them.
    pub(crate) fn rps(&self, names: &[String], now: f64) -> BTreeMap<String, f64> {
        let sec = now.max(0.0) as u64;
        let mut all = self.by_adapter.lock().unwrap_or_else(|p| p.into_inner());
        all.retain(|k, _| names.contains(k));
        names
            .iter()
            .map(|n| {
                let total: u32 = all.get(n).map_or(0, |slots| {
                    slots
                        .iter()
                        .filter(|(s, _)| *s <= sec && s + RATE_WINDOW_S > sec)
                        .map(|(_, c)| *c)
                        .sum()
                });
                (n.clone(), f64::from(total) / RATE_WINDOW_S as f64)
            })
            .collect()
    }
}

/// Requests held over all adapters, mirrored in `brix_gateway_adapter_held_requests`.
#[derive(Debug)]
pub(crate) struct Held(AtomicU32, IntGauge);

impl Held {
    /// No request held yet; `gauge` shows the count.
    pub(crate) fn new(gauge: IntGauge) -> Self {
        Self(AtomicU32::new(0), gauge)
    }
}

/// A held request's place; given back when dropped (released, timed out, client gone).
struct Place<'a>(&'a Held);

impl Drop for Place<'_> {
    fn drop(&mut self) {
        self.0.0.fetch_sub(1, Ordering::SeqCst);
        self.0.1.dec();
    }
}

/// The candidates for a request naming `adapter` that found none: waits for a holder while
/// the adapter's placement is pending, else refuses naming why.
pub(crate) async fn hold(
    gw: &Gateway,
    adapter: &str,
    cfg: &AdaptersConfig,
) -> Result<Vec<Arc<PodState>>, GatewayError> {
    let refuse = |why| GatewayError::NoAdapterReplica(adapter.to_string(), why);
    if !gw.pool.route(adapter).is_some_and(|r| r.pending) {
        return Err(refuse(AdapterWhy::NotPlaced));
    }
    let taken = gw
        .adapters_held
        .0
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
            (n < cfg.max_held).then_some(n + 1)
        });
    if taken.is_err() {
        return Err(refuse(AdapterWhy::HeldFull(cfg.max_held)));
    }
    gw.adapters_held.1.inc();
    let _place = Place(&gw.adapters_held);
    tracing::debug!(adapter, "request held: adapter placement in progress");
    let deadline = tokio::time::Instant::now() + Duration::from_secs_f64(cfg.wait_s);
    loop {
        let changed = gw.pool.adapters_changed();
        let joined = gw.pool.joined();
        tokio::pin!(changed, joined);
        changed.as_mut().enable();
        joined.as_mut().enable();
        let candidates = gw.pool.candidates(adapter);
        if !candidates.is_empty() {
            return Ok(candidates);
        }
        match gw.pool.route(adapter) {
            Some(r) if r.pending => {}
            // Placement ended without a holder (failed, or the adapter was deleted).
            _ => return Err(refuse(AdapterWhy::NotPlaced)),
        }
        tokio::select! {
            () = changed => {}
            () = joined => {}
            // A missed wake-up costs at most this much.
            () = tokio::time::sleep(Duration::from_millis(250)) => {}
            () = tokio::time::sleep_until(deadline) => {
                return Err(refuse(AdapterWhy::WaitedTooLong(cfg.wait_s)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_cover_the_last_minute_of_adapters_that_exist() {
        let r = Rates::default();
        for t in [0.5, 10.0, 10.2, 59.9] {
            r.count("sql", t);
        }
        r.count("gone", 1.0);
        let names = vec!["sql".to_string(), "idle".to_string()];
        let at = |t: f64| r.rps(&names, t);
        assert_eq!(at(59.9)["sql"], 4.0 / 60.0);
        assert_eq!(at(59.9)["idle"], 0.0);
        assert_eq!(at(60.5)["sql"], 3.0 / 60.0, "second 0 left the window");
        assert_eq!(at(200.0)["sql"], 0.0);
        assert!(
            !r.by_adapter
                .lock()
                .map(|m| m.contains_key("gone"))
                .unwrap_or(true),
            "forgotten"
        );
    }
}
