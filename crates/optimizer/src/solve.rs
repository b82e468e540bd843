//! The cost ILP: minimise Σ_g cost_g · y_g over integer replicas y_g and continuous shares
//! x_{b,g} ∈ [0, 1] with Σ_g x_{b,g} = 1 for every bucket with demand and
//! Σ_b λ_b x_{b,g} / T_{g,b} ≤ utilisation · y_g (x_{b,g} = 0 where T_{g,b} = 0), plus
//! min/max replicas per option and a budget. good_lp + microlp, branch and bound on y with a
//! time budget; the LP relaxation rounded up is the reported fallback.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::demand::Demand;
use crate::plan::Plan;
use crate::profile::Profile;

/// One GPU type (or deployment) the plan may use.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GpuOption {
    /// Name in the plan (a deployment in `brix up`; the GPU type offline).
    pub name: String,
    /// Capacity per bucket; its grid must equal the demand's. Its `cost` is the default price.
    pub profile: Profile,
    /// $/h of one replica (overrides the profile's `cost`).
    pub cost_per_hour: f64,
    /// Fewest replicas (redundancy; AIBrix's `model.aibrix.ai/min_replicas`).
    pub min_replicas: u32,
    /// Most replicas (availability); None: unbounded.
    pub max_replicas: Option<u32>,
}

/// What to plan for.
#[derive(Clone, Debug, PartialEq)]
pub struct Problem {
    /// Request rate per bucket.
    pub demand: Demand,
    /// The options, in the order the plan lists them.
    pub gpus: Vec<GpuOption>,
    /// Most $/h; None: no budget.
    pub budget_per_hour: Option<f64>,
    /// Share of a replica's profiled capacity a plan may use (headroom), in (0, 1]; default 0.9.
    pub utilisation: f64,
}

/// Solver limits.
#[derive(Clone, Debug, PartialEq)]
pub struct SolveOptions {
    /// Wall time for branch and bound before the fallback.
    pub time_budget: Duration,
    /// Most branch-and-bound nodes before the fallback (0 = the relaxation only).
    pub max_nodes: u32,
}

impl Default for SolveOptions {
    fn default() -> Self {
        Self {
            time_budget: Duration::from_millis(500),
            max_nodes: 10_000,
        }
    }
}

/// Why no plan exists.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SolveError {
    /// No option given.
    #[error("no GPU option to plan with")]
    NoGpus,
    /// A profile's grid differs from the demand's.
    #[error("profile of {gpu} has another bucket grid than the demand")]
    GridMismatch {
        /// The option.
        gpu: String,
    },
    /// The options' caps (or the budget) cannot carry the demand; `why` says which.
    #[error("infeasible: {why}")]
    Infeasible {
        /// Binding caps, budget, unservable buckets.
        why: String,
    },
    /// Bad numbers in the problem.
    #[error("invalid problem: {0}")]
    Invalid(String),
}

/// The cheapest plan for `p` (owner: issue-14 helper `opt-core`).
pub fn solve(p: &Problem, opts: &SolveOptions) -> Result<Plan, SolveError> {
    let _ = (p, opts);
    todo!("opt-core")
}

/// The cheapest plan that uses option `g` alone (the study's baseline), honouring its caps.
pub fn single_type(p: &Problem, g: usize) -> Result<Plan, SolveError> {
    let _ = (p, g);
    todo!("opt-core")
}
