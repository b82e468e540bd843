//! Whether a pod is in rotation: `/health` probes and outlier ejection, as Envoy does it.
//!
//! A pod joins after its first good `/health` probe (a pod still starting answers 503 there
//! while its `/metrics` may already answer). `unhealthy_after` failed probes in a row take it
//! out (Down) until one succeeds. Independently, `consecutive_failures` upstream failures in a
//! row (5xx answers, refused connections, timeouts) eject it for `base_ejection_s` times the
//! number of times it was ejected (capped at `max_ejection_s`); it rejoins on the first good
//! probe after that time. The ejection count drops by one for every `base_ejection_s` the pod
//! then stays in rotation. An ejection that would leave no pod in rotation, or eject more than
//! `max_ejection_fraction` of the fleet (at least one pod may always go), does not happen:
//! the failures are counted and the pod stays.

/// Outlier ejection and `/health` rules (Envoy's names and, where Envoy has one, its default).
#[derive(Clone, Debug, PartialEq)]
pub struct EjectionConfig {
    /// Failed `/health` probes in a row that take a pod out of rotation.
    pub unhealthy_after: u32,
    /// Upstream failures in a row that eject a pod (Envoy: 5).
    pub consecutive_failures: u32,
    /// First ejection's length, seconds (Envoy: 30).
    pub base_ejection_s: f64,
    /// Longest ejection, seconds (Envoy: 300).
    pub max_ejection_s: f64,
    /// Largest share of the fleet ejected at once (Envoy: 10 %; one pod may always go).
    pub max_ejection_fraction: f64,
}

impl Default for EjectionConfig {
    fn default() -> Self {
        Self {
            unhealthy_after: 2,
            consecutive_failures: 5,
            base_ejection_s: 30.0,
            max_ejection_s: 300.0,
            max_ejection_fraction: 0.5,
        }
    }
}

/// What went wrong on one upstream attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureKind {
    /// The connection was refused or reset before a response.
    Connect,
    /// The engine answered 5xx.
    Status5xx,
    /// No response headers, or no next chunk, in time.
    Timeout,
}

impl FailureKind {
    /// Stable label value (`connect`, `5xx`, `timeout`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::Status5xx => "5xx",
            Self::Timeout => "timeout",
        }
    }
}

/// Where a pod stands.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum HealthState {
    /// No good `/health` probe yet.
    Starting,
    /// In rotation.
    Up,
    /// `/health` failed `unhealthy_after` times in a row.
    Down,
    /// Ejected for upstream failures until this time.
    Ejected {
        /// Earliest time a good probe brings it back.
        until: f64,
    },
}

/// One pod's health state machine.
#[derive(Clone, Debug, PartialEq)]
pub struct Health {
    state: HealthState,
    probe_failures: u32,
    upstream_failures: u32,
    ejections: u32,
    /// Since when the pod has been in rotation without an ejection-count decrement.
    calm_since: f64,
}

impl Default for Health {
    fn default() -> Self {
        Self {
            state: HealthState::Starting,
            probe_failures: 0,
            upstream_failures: 0,
            ejections: 0,
            calm_since: 0.0,
        }
    }
}

/// Whether one more pod may be ejected: `ejected` are ejected now, `in_rotation` pods (this one
/// included) are in rotation, out of `pods` in the fleet.
pub fn may_eject(ejected: usize, in_rotation: usize, pods: usize, cfg: &EjectionConfig) -> bool {
    let cap = ((pods as f64 * cfg.max_ejection_fraction).floor() as usize).max(1);
    in_rotation > 1 && ejected < cap
}

impl Health {
    /// The state now.
    pub fn state(&self) -> HealthState {
        self.state
    }

    /// Whether requests may go to the pod.
    pub fn in_rotation(&self) -> bool {
        self.state == HealthState::Up
    }

    /// Whether the pod is ejected.
    pub fn is_ejected(&self) -> bool {
        matches!(self.state, HealthState::Ejected { .. })
    }

    /// Times ejected, less the decrements earned since (the next ejection's multiplier − 1).
    pub fn ejections(&self) -> u32 {
        self.ejections
    }

    /// A `/health` probe answered (`ok`: 2xx) at `now`; returns whether rotation changed.
    pub fn probe(&mut self, ok: bool, now: f64, cfg: &EjectionConfig) -> bool {
        let was = self.in_rotation();
        if ok {
            self.probe_failures = 0;
            match self.state {
                HealthState::Starting | HealthState::Down => self.join(now),
                HealthState::Ejected { until } if now >= until => self.join(now),
                HealthState::Ejected { .. } => {}
                HealthState::Up => {
                    if self.ejections > 0 && now - self.calm_since >= cfg.base_ejection_s {
                        self.ejections -= 1;
                        self.calm_since = now;
                    }
                }
            }
        } else {
            self.probe_failures = self.probe_failures.saturating_add(1);
            if self.state == HealthState::Up && self.probe_failures >= cfg.unhealthy_after {
                self.state = HealthState::Down;
            }
        }
        was != self.in_rotation()
    }

    fn join(&mut self, now: f64) {
        self.state = HealthState::Up;
        self.upstream_failures = 0;
        self.calm_since = now;
    }

    /// Whether one more upstream failure would eject the pod (ask [`may_eject`] first).
    pub fn would_eject(&self, cfg: &EjectionConfig) -> bool {
        self.state == HealthState::Up
            && self.upstream_failures.saturating_add(1) >= cfg.consecutive_failures
    }

    /// An upstream attempt failed at `now`; `allowed` is [`may_eject`]'s answer. Returns
    /// whether the pod was ejected.
    pub fn failure(
        &mut self,
        _kind: FailureKind,
        now: f64,
        allowed: bool,
        cfg: &EjectionConfig,
    ) -> bool {
        self.upstream_failures = self.upstream_failures.saturating_add(1);
        if !(allowed
            && self.state == HealthState::Up
            && self.upstream_failures >= cfg.consecutive_failures)
        {
            return false;
        }
        self.ejections = self.ejections.saturating_add(1);
        let length = (cfg.base_ejection_s * f64::from(self.ejections)).min(cfg.max_ejection_s);
        self.state = HealthState::Ejected {
            until: now + length,
        };
        self.upstream_failures = 0;
        true
    }

    /// An upstream attempt succeeded: the failure streak ends.
    pub fn success(&mut self) {
        self.upstream_failures = 0;
    }
}
