//! The heterogeneous GPU optimizer: which GPU types, how many replicas of each, and which request
//! shapes each type serves, at the least cost per hour that meets a latency SLO (Mélange's
//! formulation, as AIBrix wires it, with continuous assignment). Pure: no I/O, no clock; the
//! live driver (`brix up`) and the offline tools (`brix optimize`, the study) call the same code.
//!
//! - [`Grid`]: the (input, output) token buckets, log2 ticks as AIBrix's profiles use.
//! - [`Profile`]: one (model, GPU type)'s capacity per bucket within an [`Slo`], AIBrix's JSON;
//!   [`builtin_profile`]: the ones Brix ships (llama-3-8b on five GPU types).
//! - [`Demand`]: request rate per bucket; [`LoadMonitor`] builds it over a moving window.
//! - [`solve`]: the ILP (integer replicas, continuous per-bucket fractions), with a time budget
//!   and a reported fallback; [`Planner`] adds hysteresis over successive solves.
//! - [`Plan::routes`]: the plan as the gateway's per-bucket GPU-type weights.

mod bnb;
mod builtin;
mod demand;
mod grid;
mod lp;
mod monitor;
mod notes;
mod plan;
mod planner;
mod profile;
mod solve;

pub use builtin::{builtin_profile, builtin_profiles};
pub use demand::Demand;
pub use grid::{Cell, Grid};
pub use monitor::{LoadMonitor, MAX_TICKS, MonitorConfig};
pub use plan::{Method, Plan, PlanGpu};
pub use planner::{Hysteresis, Planner, PlannerDecision};
pub use profile::{Profile, ProfileError, Slo};
pub use solve::{
    GpuOption, MAX_CELLS, MAX_OPTIONS, Problem, SolveError, SolveOptions, single_type, solve,
};
