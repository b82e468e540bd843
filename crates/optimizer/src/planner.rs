//! The planner: successive solves with hysteresis, so small demand changes do not churn
//! replicas. The live driver calls it every tick with the monitor's demand.

use crate::plan::Plan;
use crate::solve::{Problem, SolveError, SolveOptions};

/// When the planner keeps the replicas it has.
#[derive(Clone, Debug, PartialEq)]
pub struct Hysteresis {
    /// Keep the current counts while they are feasible for the new demand and cost at most
    /// `1 + keep_within` times the new optimum (0.1 = 10 %).
    pub keep_within: f64,
    /// A plan with fewer replicas of some type takes effect only after the optimum has asked
    /// for no more than it for this many seconds (scale-up is immediate).
    pub down_delay_s: f64,
}

impl Default for Hysteresis {
    fn default() -> Self {
        Self {
            keep_within: 0.1,
            down_delay_s: 60.0,
        }
    }
}

/// The planner's answer at one tick.
#[derive(Clone, Debug, PartialEq)]
pub struct PlannerDecision {
    /// The plan in force now.
    pub plan: Plan,
    /// Whether the replica counts changed from the previous tick.
    pub changed: bool,
    /// Why (kept, scaled up, scaled down after the delay, fallback used), in words.
    pub reason: String,
}

/// Successive plans for one model (owner: issue-14 helper `opt-core`).
#[derive(Clone, Debug, Default)]
pub struct Planner {
    hysteresis: Hysteresis,
    current: Option<Plan>,
}

impl Planner {
    /// A planner with no plan yet.
    pub fn new(hysteresis: Hysteresis) -> Self {
        Self {
            hysteresis,
            current: None,
        }
    }

    /// The plan in force, if any.
    pub fn current(&self) -> Option<&Plan> {
        self.current.as_ref()
    }

    /// Solves `problem` at `now_s` and applies hysteresis against the plan in force.
    pub fn decide(
        &mut self,
        problem: &Problem,
        opts: &SolveOptions,
        now_s: f64,
    ) -> Result<PlannerDecision, SolveError> {
        let _ = (problem, opts, now_s, &self.hysteresis);
        todo!("opt-core")
    }
}
