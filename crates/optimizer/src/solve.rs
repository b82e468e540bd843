//! The cost ILP: minimise Σ_g cost_g · y_g over integer replicas y_g and continuous shares
//! x_{b,g} ∈ [0, 1] with Σ_g x_{b,g} = 1 for every bucket with demand and
//! Σ_b λ_b x_{b,g} / T_{g,b} ≤ utilisation · y_g (x_{b,g} = 0 where T_{g,b} = 0), plus
//! min/max replicas per option and a budget. Branch and bound on y over microlp LPs (`bnb`, `lp`)
//! with a time and node budget; the LP relaxation rounded up is the reported fallback.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::bnb::{self, ceil_count};
use crate::demand::Demand;
use crate::lp::{Assignment, LpFail, MAX_REPLICAS, Model};
use crate::notes;
use crate::plan::{Method, Plan, PlanGpu};
use crate::profile::Profile;

/// Most options one problem may have.
pub const MAX_OPTIONS: usize = 64;

/// Most buckets a problem's grid may have (64 × 64).
pub const MAX_CELLS: usize = 4096;

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

/// The cheapest plan for `p` (owner: issue-14 helper `opt-core`): branch and bound on the
/// replica counts within `opts`, the relaxation rounded up when it finds nothing better in time.
pub fn solve(p: &Problem, opts: &SolveOptions) -> Result<Plan, SolveError> {
    let start = Instant::now();
    validate(p)?;
    let mut m = Model::new(p);
    m.lp_limit = opts.time_budget.max(Duration::from_secs(1)) * 4;
    unservable(p, &m)?;
    if m.buckets.is_empty() {
        let y = m.lo.clone();
        check_budget(&m, &y, "the minimum replicas")?;
        let asg = m.assign(&y).ok_or_else(internal)?;
        let mut plan = build(p, &m, &y, asg, m.cost_of(&y), Method::Optimal, 0, start);
        plan.notes
            .insert(0, "no demand: every option at its minimum".into());
        return Ok(plan);
    }
    // Σ_b min_g λ_b / T_{g,b} / u: no plan has fewer replicas in all.
    let least: f64 = (0..m.buckets.len())
        .map(|k| {
            (0..m.options())
                .filter(|&g| m.cap[g][k] > 0.0)
                .map(|g| m.buckets[k].1 / m.cap[g][k])
                .fold(f64::INFINITY, f64::min)
        })
        .sum::<f64>()
        / m.util;
    if least > MAX_REPLICAS {
        return Err(SolveError::Invalid(format!(
            "the demand needs at least {least:.3e} replicas: more than {MAX_REPLICAS:.0} (check the units of rates and capacities)"
        )));
    }
    let root = match m.relaxation(true) {
        Ok(r) => r,
        Err(LpFail::Infeasible) => return Err(infeasible_why(p, &m)),
        Err(LpFail::Slow) => {
            return Err(SolveError::Invalid(format!(
                "the LP relaxation did not finish in {} ms ({} buckets with demand × {} options): too large",
                m.lp_limit.as_millis(),
                m.buckets.len(),
                m.options()
            )));
        }
        Err(LpFail::Other(e)) => return Err(SolveError::Invalid(format!("the LP failed: {e}"))),
    };
    let lower = root.sol.objective();
    for (o, &v) in p.gpus.iter().zip(&root.y) {
        let n = root.sol.var_value(v);
        if n > MAX_REPLICAS {
            return Err(SolveError::Invalid(format!(
                "the demand needs {n:.3e} replicas of {}: more than {MAX_REPLICAS:.0} (check the units of rates and capacities)",
                o.name
            )));
        }
    }
    let found = bnb::search(&m, root, opts.max_nodes, opts.time_budget, start);
    let Some(y) = found.y.clone() else {
        let why = match &found.stopped {
            Some(s) => format!(
                "{s} before any whole-replica plan within the budget of ${:.2}/h (the fractional optimum costs ${lower:.2}/h)",
                m.budget.unwrap_or(f64::INFINITY)
            ),
            None => format!(
                "no whole-replica plan fits the budget of ${:.2}/h (the fractional optimum costs ${lower:.2}/h)",
                m.budget.unwrap_or(f64::INFINITY)
            ),
        };
        return Err(SolveError::Infeasible { why });
    };
    let method = if found.exhausted {
        Method::Optimal
    } else if found.from_root {
        Method::Relaxation
    } else {
        Method::BestFound
    };
    let asg = m.assign(&y).ok_or_else(internal)?;
    let mut plan = build(p, &m, &y, asg, lower, method, found.nodes, start);
    plan.notes
        .insert(0, notes::method(method, &found, plan.cost_per_hour, lower));
    Ok(plan)
}

/// The cheapest plan that uses option `g` alone (the study's baseline), honouring its caps.
pub fn single_type(p: &Problem, g: usize) -> Result<Plan, SolveError> {
    let start = Instant::now();
    validate(p)?;
    let name = p
        .gpus
        .get(g)
        .map(|o| o.name.clone())
        .ok_or_else(|| SolveError::Invalid(format!("no option {g}")))?;
    let mut m = Model::new(p);
    for (h, (lo, hi)) in m.lo.iter_mut().zip(m.hi.iter_mut()).enumerate() {
        if h != g {
            *lo = 0;
            *hi = Some(0);
        }
    }
    unservable(p, &m)?;
    let load: f64 = (0..m.buckets.len())
        .map(|k| m.buckets[k].1 / m.cap[g][k])
        .sum();
    if load / m.util > MAX_REPLICAS {
        return Err(SolveError::Invalid(format!(
            "{name} alone needs {:.3e} replicas: more than {MAX_REPLICAS:.0}",
            load / m.util
        )));
    }
    let mut y = vec![0; m.options()];
    y[g] = ceil_count(load / m.util).max(m.lo[g]);
    if let Some(hi) = m.hi[g].filter(|&hi| y[g] > hi) {
        return Err(SolveError::Infeasible {
            why: format!(
                "{name} alone needs {} replicas ({load:.2} replicas' load at {:.0} % utilisation) but is capped at {hi}",
                y[g],
                m.util * 100.0
            ),
        });
    }
    check_budget(&m, &y, &format!("{name} alone"))?;
    let asg = m.assign(&y).ok_or_else(internal)?;
    let cost = m.cost_of(&y);
    let mut plan = build(p, &m, &y, asg, cost, Method::Optimal, 0, start);
    plan.notes.insert(
        0,
        format!("{name} alone: the fewest replicas that carry the demand"),
    );
    Ok(plan)
}

/// The plan that runs exactly `y` replicas (shares re-optimised for `p`'s demand), if they
/// respect the bounds and the budget and carry the demand within the utilisation; `Kept`.
pub(crate) fn with_counts(p: &Problem, y: &[u32], lower: f64) -> Option<Plan> {
    let m = Model::new(p);
    let in_bounds = y.len() == m.options()
        && y.iter()
            .enumerate()
            .all(|(g, &n)| n >= m.lo[g] && m.hi[g].is_none_or(|hi| n <= hi));
    if !in_bounds || check_budget(&m, y, "").is_err() {
        return None;
    }
    let asg = m.assign(y)?;
    if asg.peak > m.util * (1.0 + 1e-9) {
        return None;
    }
    Some(build(p, &m, y, asg, lower, Method::Kept, 0, Instant::now()))
}

/// The plan for counts `y` with assignment `asg`, its notes filled.
#[allow(clippy::too_many_arguments)]
fn build(
    p: &Problem,
    m: &Model,
    y: &[u32],
    asg: Assignment,
    lower: f64,
    method: Method,
    nodes: u32,
    start: Instant,
) -> Plan {
    let gpus = p
        .gpus
        .iter()
        .zip(y)
        .zip(&asg.load)
        .map(|((o, &n), &load)| PlanGpu {
            name: o.name.clone(),
            gpu: o.profile.gpu.clone(),
            replicas: n,
            cost_per_replica: o.cost_per_hour,
            load,
        })
        .collect();
    let notes = notes::plan(p, m, y, &asg);
    Plan {
        gpus,
        assign: asg.assign,
        demand: p.demand.clone(),
        cost_per_hour: m.cost_of(y),
        lower_bound: lower,
        method,
        solve_ms: start.elapsed().as_secs_f64() * 1000.0,
        nodes,
        notes,
    }
}

fn internal() -> SolveError {
    SolveError::Infeasible {
        why: "no assignment carries the demand on the chosen replicas (numerical trouble)".into(),
    }
}

/// Infeasible when `y` costs more than the budget.
fn check_budget(m: &Model, y: &[u32], what: &str) -> Result<(), SolveError> {
    let c = m.cost_of(y);
    match m.budget {
        Some(b) if c > b + 1e-9 * b.abs().max(1.0) => Err(SolveError::Infeasible {
            why: format!("{what} cost ${c:.2}/h, over the budget of ${b:.2}/h"),
        }),
        _ => Ok(()),
    }
}

/// Bad numbers, no options, grids that differ.
pub(crate) fn validate(p: &Problem) -> Result<(), SolveError> {
    let bad = |s: String| Err(SolveError::Invalid(s));
    if p.gpus.is_empty() {
        return Err(SolveError::NoGpus);
    }
    if p.gpus.len() > MAX_OPTIONS {
        return bad(format!("{} options: at most {MAX_OPTIONS}", p.gpus.len()));
    }
    if p.demand.grid.len() > MAX_CELLS {
        return bad(format!(
            "{} buckets: at most {MAX_CELLS}",
            p.demand.grid.len()
        ));
    }
    if let Some(why) = p.demand.grid.problem() {
        return bad(format!("demand grid: {why}"));
    }
    if p.demand.rates.len() != p.demand.grid.len() {
        return bad(format!(
            "demand has {} rates for {} buckets",
            p.demand.rates.len(),
            p.demand.grid.len()
        ));
    }
    if p.demand.rates.iter().any(|r| !(r.is_finite() && *r >= 0.0)) {
        return bad("demand rates must be finite and ≥ 0".into());
    }
    if !(p.utilisation > 0.0 && p.utilisation <= 1.0) {
        return bad(format!("utilisation {} is not in (0, 1]", p.utilisation));
    }
    if let Some(b) = p.budget_per_hour.filter(|b| !(b.is_finite() && *b >= 0.0)) {
        return bad(format!("budget {b} must be finite and ≥ 0"));
    }
    for o in &p.gpus {
        if !(o.cost_per_hour.is_finite() && o.cost_per_hour > 0.0) {
            return bad(format!(
                "{}: cost {} must be positive",
                o.name, o.cost_per_hour
            ));
        }
        if o.max_replicas.is_some_and(|hi| hi < o.min_replicas) {
            return bad(format!("{}: max replicas below min replicas", o.name));
        }
        if o.profile.grid() != p.demand.grid {
            return Err(SolveError::GridMismatch {
                gpu: o.name.clone(),
            });
        }
        o.profile
            .validate()
            .map_err(|e| SolveError::Invalid(format!("{}: {e}", o.name)))?;
    }
    Ok(())
}

/// Infeasible, naming them, when buckets with demand have no option able to serve them.
fn unservable(p: &Problem, m: &Model) -> Result<(), SolveError> {
    let lost: Vec<usize> = (0..m.buckets.len())
        .filter(|&k| (0..m.options()).all(|g| m.cap[g][k] <= 0.0 || m.hi[g] == Some(0)))
        .collect();
    if lost.is_empty() {
        return Ok(());
    }
    let grid = &p.demand.grid;
    let mut names: Vec<String> = lost
        .iter()
        .take(5)
        .map(|&k| {
            let (i, r) = m.buckets[k];
            let c = grid.cell_at(i);
            format!(
                "{} in × {} out ({r:.3} req/s)",
                grid.inputs[c.inp], grid.outputs[c.out]
            )
        })
        .collect();
    if lost.len() > 5 {
        names.push(format!("and {} more", lost.len() - 5));
    }
    Err(SolveError::Infeasible {
        why: format!(
            "no option serves {} bucket(s) within the SLO: {}",
            lost.len(),
            names.join(", ")
        ),
    })
}

/// Why the relaxation is infeasible: the budget (when the caps alone are fine) or the caps.
fn infeasible_why(p: &Problem, m: &Model) -> SolveError {
    if let (Some(b), Ok(r)) = (m.budget, m.relaxation(false)) {
        return SolveError::Infeasible {
            why: format!(
                "the budget of ${b:.2}/h is below the cheapest fractional plan (${:.2}/h)",
                r.sol.objective()
            ),
        };
    }
    let caps: Vec<String> = p
        .gpus
        .iter()
        .filter_map(|o| o.max_replicas.map(|hi| format!("{} ≤ {hi}", o.name)))
        .collect();
    if caps.is_empty() {
        return SolveError::Infeasible {
            why: format!(
                "the LP found no plan for {:.2} req/s without caps (numerical trouble: check the scale of rates and capacities)",
                p.demand.total()
            ),
        };
    }
    SolveError::Infeasible {
        why: format!(
            "the caps ({}) cannot carry {:.2} req/s at {:.0} % utilisation",
            caps.join(", "),
            p.demand.total(),
            p.utilisation * 100.0
        ),
    }
}
