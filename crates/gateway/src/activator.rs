//! Scale from zero, as Knative's activator does it: a request for a model that may scale from
//! zero and has no ready replica is held instead of refused, the model's autoscaler is poked
//! (it decides at once, seeing the held count), and the request goes on as soon as a replica
//! joins rotation.
//!
//! Guardrails: only models `brix up` declared scalable from zero hold requests (the set comes
//! from the fleet file, never from clients); at most `activator.max_held` per model (one more
//! is refused with 503 at once); each waits at most `activator.timeout_s` (then 503 saying no
//! replica became ready in time); a client that goes away while held frees its place.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use prometheus::IntGauge;
use tokio::sync::Notify;

use crate::Gateway;
use crate::config::ActivatorConfig;
use crate::error::GatewayError;
use crate::pool::PodState;

/// One model's gate: the held count and the autoscaler's doorbell.
#[derive(Debug)]
pub(crate) struct Gate {
    held: AtomicU32,
    poke: Notify,
    gauge: IntGauge,
}

/// The models that may scale from zero, each with its gate.
#[derive(Debug, Default)]
pub(crate) struct Activator {
    gates: RwLock<HashMap<String, Arc<Gate>>>,
}

impl Activator {
    /// Declares `model` scalable from zero (idempotent).
    pub(crate) fn enable(&self, model: &str, gauge: IntGauge) -> Arc<Gate> {
        let mut gates = self.gates.write().unwrap_or_else(|p| p.into_inner());
        gates
            .entry(model.to_string())
            .or_insert_with(|| {
                Arc::new(Gate {
                    held: AtomicU32::new(0),
                    poke: Notify::new(),
                    gauge,
                })
            })
            .clone()
    }

    /// The gate of `model`, if it may scale from zero.
    pub(crate) fn gate(&self, model: &str) -> Option<Arc<Gate>> {
        self.gates
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(model)
            .cloned()
    }
}

/// A held request's place; gives it back when dropped (released, timed out, or the client
/// went away).
struct Place(Arc<Gate>);

impl Drop for Place {
    fn drop(&mut self) {
        self.0.held.fetch_sub(1, Ordering::SeqCst);
        self.0.gauge.dec();
    }
}

/// What code beside the gateway (the autoscaler driver) sees of one model's gate.
#[derive(Clone, Debug)]
pub struct Activation(pub(crate) Arc<Gate>);

impl Activation {
    /// Requests held now.
    pub fn held(&self) -> u32 {
        self.0.held.load(Ordering::SeqCst)
    }

    /// Resolves when a request was held since the last call (a permit is kept if nobody
    /// waits, so a poke between two waits is not lost).
    pub async fn requested(&self) {
        self.0.poke.notified().await;
    }
}

/// Holds a request for `model` until some pod serving it is in rotation; returns the
/// candidates then. Refuses at once when the model's queue is full, and after the timeout.
pub(crate) async fn hold(
    gw: &Gateway,
    gate: Arc<Gate>,
    model: &str,
    cfg: &ActivatorConfig,
) -> Result<Vec<Arc<PodState>>, GatewayError> {
    let taken = gate
        .held
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
            (n < cfg.max_held).then_some(n + 1)
        });
    if taken.is_err() {
        return Err(GatewayError::ActivatorFull(model.to_string(), cfg.max_held));
    }
    gate.gauge.inc();
    let place = Place(gate);
    place.0.poke.notify_one();
    tracing::debug!(model, "request held: no ready replica; activating");
    let deadline = tokio::time::Instant::now() + Duration::from_secs_f64(cfg.timeout_s);
    loop {
        let joined = gw.pool.joined();
        tokio::pin!(joined);
        joined.as_mut().enable();
        let candidates = gw.pool.candidates(model);
        if !candidates.is_empty() {
            return Ok(candidates);
        }
        tokio::select! {
            () = joined => {}
            // A missed wake-up costs at most this much.
            () = tokio::time::sleep(Duration::from_millis(250)) => {}
            () = tokio::time::sleep_until(deadline) => {
                return Err(GatewayError::ActivationTimeout(model.to_string(), cfg.timeout_s));
            }
        }
    }
}
