//! A plan: replicas per GPU type and which share of each bucket each type serves.

use serde::{Deserialize, Serialize};

use crate::demand::Demand;

/// How a plan was obtained.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// The integer optimum (branch and bound finished within budget).
    Optimal,
    /// The budget ran out; the best integer plan found so far (gap reported in notes).
    BestFound,
    /// The budget ran out before any integer plan: the LP relaxation with each count
    /// rounded up (feasible; costs at most Σ cost_g more).
    Relaxation,
    /// Hysteresis kept the previous replica counts (feasible, within the tolerance).
    Kept,
}

/// One GPU type in a plan.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlanGpu {
    /// The option's name (a deployment in `brix up`, the GPU type offline).
    pub name: String,
    /// The GPU type (`brix sim` GPU profile name).
    pub gpu: String,
    /// Replicas to run.
    pub replicas: u32,
    /// $/h of one replica.
    pub cost_per_replica: f64,
    /// Replicas' worth of load assigned (Σ bucket rate × fraction / capacity).
    pub load: f64,
}

/// The optimizer's answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// Per option, in the problem's order.
    pub gpus: Vec<PlanGpu>,
    /// `assign[cell][g]`: share of the bucket's rate sent to option g (rows sum to 1 where the
    /// bucket has demand; all 0 where it has none).
    pub assign: Vec<Vec<f64>>,
    /// The demand it was made for.
    pub demand: Demand,
    /// Σ replicas × cost, $/h.
    pub cost_per_hour: f64,
    /// The LP relaxation's cost: no integer plan is cheaper.
    pub lower_bound: f64,
    /// How it was obtained.
    pub method: Method,
    /// Solver time, ms.
    pub solve_ms: f64,
    /// Branch-and-bound nodes explored.
    pub nodes: u32,
    /// Why the plan is what it is: binding constraints, fallbacks, hysteresis, buckets no
    /// option can serve, in words.
    pub notes: Vec<String>,
}

impl Plan {
    /// The plan as the gateway's routing weights (bucket → option shares), with the demand
    /// to marginalise over outputs the router cannot see yet.
    pub fn routes(&self) -> brix_router::PlanRoutes {
        brix_router::PlanRoutes {
            inputs: self.demand.grid.inputs.clone(),
            outputs: self.demand.grid.outputs.clone(),
            groups: self.gpus.iter().map(|g| g.name.clone()).collect(),
            planned: self.gpus.iter().map(|g| g.replicas).collect(),
            weights: self.assign.clone(),
            demand: self.demand.rates.clone(),
        }
    }

    /// Replicas per option, in the problem's order.
    pub fn replicas(&self) -> Vec<u32> {
        self.gpus.iter().map(|g| g.replicas).collect()
    }
}
