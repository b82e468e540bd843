//! The autoscaler's state: windows per source, the load window, stabilization history, panic
//! state, recent decisions; `decide` runs the algorithm and applies stabilization and bounds.

use crate::decision::Decision;
use crate::slo::SloState;
use crate::{FleetState, Load, Policy, Reading};

/// One PodAutoscaler's state.
#[derive(Clone, Debug)]
pub struct Autoscaler {
    policy: Policy,
    slo: SloState,
    history: Vec<Decision>,
}

impl Autoscaler {
    /// A fresh autoscaler for `policy`.
    pub fn new(policy: Policy) -> Self {
        Self {
            slo: SloState::new(&policy),
            policy,
            history: Vec::new(),
        }
    }

    /// The policy it runs.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Records a reading of source `source` (index in `policy.sources`) taken at `now`.
    pub fn observe(&mut self, source: usize, reading: Reading, now: f64) {
        let _ = (source, reading, now);
    }

    /// Records the gateway's view of the model at `now`.
    pub fn observe_load(&mut self, load: &Load, now: f64) {
        self.slo.observe_load(load, now);
    }

    /// A replica took `seconds` from being asked for to ready.
    pub fn observe_startup(&mut self, seconds: f64) {
        let _ = seconds;
    }

    /// The replica count for `fleet` at `now`, with its reasons.
    pub fn decide(&mut self, fleet: &FleetState, now: f64) -> Decision {
        let _ = self.slo.recommend(&self.policy, fleet, 0.0, now);
        let d = Decision {
            at: now,
            current: fleet.desired,
            desired: fleet.desired,
            recommendation: None,
            inputs: Vec::new(),
            limits: Vec::new(),
            panic: false,
        };
        self.history.push(d.clone());
        d
    }

    /// The most recent decisions, oldest first (at most 20).
    pub fn history(&self) -> &[Decision] {
        &self.history
    }
}
