//! The routing core: what a router knows about each pod and the rules that update it, as one
//! pure type the live gateway and the virtual-time simulator both drive.
//!
//! A driver feeds [`PodCore`] events with the time they happened (`begin`/`end` of a request,
//! a finished response's tokens and latencies, a scrape's gauges or its failure, a `/health`
//! probe, an upstream failure or success) and asks for a [`Pod`](crate::Pod) snapshot at `now`
//! to hand to [`route`](crate::route). [`Fleet`] adds the pods of one model and their prefix
//! index, booked only once the engine accepted the request. No I/O, no clock: the gateway's
//! tokio tasks and the simulator's event heap are drivers, nothing here is mirrored.

#[allow(clippy::module_inception)]
mod fleet;
mod health;
mod pod;
mod remote;

#[cfg(test)]
mod kv_tests;
#[cfg(test)]
mod plan_tests;
#[cfg(test)]
mod tests;

pub use fleet::Fleet;
pub use health::{EjectionConfig, FailureKind, Health, HealthState, may_eject};
pub use pod::{Booking, EWMA_ALPHA, PodCore, RATE_WINDOW_S, Scrape, Stage, Transition};
pub use remote::{
    DEFAULT_REMOTE_TTL_S, MAX_GATEWAY_ID_LEN, MAX_PEERS, Refused, RemoteLoad, RemoteLoads,
};

/// How the core weighs what it knows: gauge freshness and outlier ejection.
#[derive(Clone, Debug, PartialEq)]
pub struct CoreConfig {
    /// Gauges younger than this (seconds since their scrape) are trusted in full.
    pub fresh_s: f64,
    /// Gauges older than this are dropped (strategies fall back as without metrics); between
    /// `fresh_s` and here the queue gauges (`running`, `waiting`) are scaled down linearly, so
    /// the exact in-flight count this router keeps takes over as they age.
    pub stale_s: f64,
    /// Outlier ejection and `/health` rules.
    pub ejection: EjectionConfig,
    /// Seconds another gateway replica's reported load on a pod counts after it arrived.
    pub remote_ttl_s: f64,
}

impl Default for CoreConfig {
    fn default() -> Self {
        Self {
            fresh_s: 2.0,
            stale_s: 10.0,
            ejection: EjectionConfig::default(),
            remote_ttl_s: DEFAULT_REMOTE_TTL_S,
        }
    }
}

impl CoreConfig {
    /// How much a gauge scraped `age` seconds ago counts: 1 when fresh, 0 when stale.
    pub fn trust(&self, age: f64) -> f64 {
        if age <= self.fresh_s {
            1.0
        } else if age >= self.stale_s {
            0.0
        } else {
            (self.stale_s - age) / (self.stale_s - self.fresh_s)
        }
    }
}
