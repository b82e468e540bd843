//! The controller's clock: `f64` seconds since it started (the time base of
//! `brix_autoscaler`'s windows), and the Unix time of its zero (for schedules and the RFC 3339
//! times of the status). Tests use a manual clock they move themselves.

use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Seconds since the controller started, real or set by a test.
#[derive(Clone, Debug)]
pub struct Clock {
    kind: Kind,
    epoch_unix_s: f64,
}

#[derive(Clone, Debug)]
enum Kind {
    Real(Instant),
    Manual(Arc<Mutex<f64>>),
}

impl Clock {
    /// The process's clock, zero now.
    pub fn real() -> Self {
        let epoch_unix_s = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        Self {
            kind: Kind::Real(Instant::now()),
            epoch_unix_s,
        }
    }

    /// A clock that reads 0 until [`Clock::advance`] moves it; its zero is Unix time
    /// `epoch_unix_s` (so tests get fixed timestamps and schedules).
    pub fn manual(epoch_unix_s: f64) -> Self {
        Self {
            kind: Kind::Manual(Arc::new(Mutex::new(0.0))),
            epoch_unix_s,
        }
    }

    /// Moves a manual clock forward by `seconds` (a real clock ignores it).
    pub fn advance(&self, seconds: f64) {
        if let Kind::Manual(t) = &self.kind {
            *t.lock().unwrap_or_else(|p| p.into_inner()) += seconds;
        }
    }

    /// Seconds since the zero.
    pub fn now(&self) -> f64 {
        match &self.kind {
            Kind::Real(start) => start.elapsed().as_secs_f64(),
            Kind::Manual(t) => *t.lock().unwrap_or_else(|p| p.into_inner()),
        }
    }

    /// Unix time of the zero.
    pub fn epoch_unix_s(&self) -> f64 {
        self.epoch_unix_s
    }

    /// `now` (seconds on this clock) as an RFC 3339 UTC time, whole seconds.
    pub fn rfc3339(&self, now: f64) -> String {
        let unix = (self.epoch_unix_s + now).floor();
        k8s_openapi::jiff::Timestamp::from_second(unix as i64)
            .map_or_else(|_| "1970-01-01T00:00:00Z".to_string(), |t| t.to_string())
    }
}
