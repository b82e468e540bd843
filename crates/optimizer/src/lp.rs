//! The linear programs behind the solver, on microlp directly (its dual simplex re-solves a
//! solution after one added bound, which is what branch and bound on the replica counts needs).
//! Only (bucket with demand, option with capacity there) pairs get a share variable.

use std::time::Duration;

use microlp::{ComparisonOp, OptimizationDirection, Problem as Lp, Solution, Variable};

use crate::solve::Problem;

/// Capacities below this (req/s per replica) count as 0: a replica that serves a request a
/// fortnight is no option, and 1 / T would wreck the LP's scaling.
pub(crate) const MIN_CAPACITY: f64 = 1e-6;

/// Most replicas of one option a plan may need (more is a units mistake, and counts are u32).
pub(crate) const MAX_REPLICAS: f64 = 1e6;

/// The problem reduced to what the LPs read: buckets with demand, capacities, costs, bounds.
#[derive(Clone, Debug)]
pub(crate) struct Model {
    /// (flat cell, req/s) of every bucket with demand.
    pub buckets: Vec<(usize, f64)>,
    /// `cap[g][k]`: req/s one replica of option g sustains in bucket k (0: cannot serve it).
    pub cap: Vec<Vec<f64>>,
    /// $/h per replica.
    pub cost: Vec<f64>,
    /// Fewest replicas per option.
    pub lo: Vec<u32>,
    /// Most replicas per option (None: unbounded).
    pub hi: Vec<Option<u32>>,
    /// Usable share of profiled capacity.
    pub util: f64,
    /// Most $/h.
    pub budget: Option<f64>,
    /// Cells in the grid.
    pub cells: usize,
    /// Wall time one LP may take (a guard against huge grids; the search has its own budget).
    pub lp_limit: Duration,
}

/// Why an LP gave no optimum.
#[derive(Debug)]
pub(crate) enum LpFail {
    /// No point satisfies the constraints.
    Infeasible,
    /// It did not finish within [`Model::lp_limit`].
    Slow,
    /// microlp's other errors (unbounded cannot happen: costs are positive).
    Other(String),
}

/// The relaxation (replica counts continuous) as a warm-startable LP.
pub(crate) struct Relaxed {
    /// One per option.
    pub y: Vec<Variable>,
    /// The LP's optimum.
    pub sol: Solution,
}

/// Shares of each bucket per option, with the load they put on each option.
#[derive(Clone, Debug)]
pub(crate) struct Assignment {
    /// `assign[cell][g]` over the whole grid.
    pub assign: Vec<Vec<f64>>,
    /// Replicas' worth of load per option (Σ rate × share / capacity).
    pub load: Vec<f64>,
    /// Highest load / replicas over options with replicas (0 without demand).
    pub peak: f64,
}

impl Model {
    /// The reduced model of a validated problem.
    pub fn new(p: &Problem) -> Self {
        let grid = &p.demand.grid;
        let buckets: Vec<(usize, f64)> = p
            .demand
            .rates
            .iter()
            .enumerate()
            .filter(|(_, r)| **r > 0.0)
            .map(|(i, r)| (i, *r))
            .collect();
        let cap = p
            .gpus
            .iter()
            .map(|o| {
                buckets
                    .iter()
                    .map(|&(i, _)| {
                        let t = o.profile.capacity(grid.cell_at(i));
                        if t >= MIN_CAPACITY { t } else { 0.0 }
                    })
                    .collect()
            })
            .collect();
        Self {
            buckets,
            cap,
            cost: p.gpus.iter().map(|o| o.cost_per_hour).collect(),
            lo: p.gpus.iter().map(|o| o.min_replicas).collect(),
            hi: p.gpus.iter().map(|o| o.max_replicas).collect(),
            util: p.utilisation,
            budget: p.budget_per_hour,
            cells: grid.len(),
            lp_limit: Duration::from_secs(5),
        }
    }

    /// Number of options.
    pub fn options(&self) -> usize {
        self.cost.len()
    }

    /// Whether option g may serve bucket k at all.
    fn usable(&self, g: usize, k: usize) -> bool {
        self.cap[g][k] > 0.0 && self.hi[g] != Some(0)
    }

    /// Adds the share variables and the per-bucket "shares sum to 1" rows; returns
    /// `x[g]` = (bucket, variable) pairs.
    fn shares(
        &self,
        lp: &mut Lp,
        mut allowed: impl FnMut(usize) -> bool,
    ) -> Vec<Vec<(usize, Variable)>> {
        let mut x: Vec<Vec<(usize, Variable)>> = vec![Vec::new(); self.options()];
        for k in 0..self.buckets.len() {
            let mut row = Vec::new();
            for (g, xg) in x.iter_mut().enumerate() {
                if self.usable(g, k) && allowed(g) {
                    let v = lp.add_var(0.0, (0.0, 1.0));
                    xg.push((k, v));
                    row.push((v, 1.0));
                }
            }
            lp.add_constraint(row, ComparisonOp::Eq, 1.0);
        }
        x
    }

    /// Load coefficient of bucket k on option g: replicas of g one whole bucket takes.
    fn coef(&self, g: usize, k: usize) -> f64 {
        self.buckets[k].1 / self.cap[g][k]
    }

    /// min Σ cost·y over continuous y in [lo, hi] and shares: the lower bound, and the
    /// root of branch and bound. `Err` when infeasible.
    pub fn relaxation(&self, with_budget: bool) -> Result<Relaxed, LpFail> {
        let mut lp = Lp::new(OptimizationDirection::Minimize);
        lp.set_time_limit(self.lp_limit);
        let y: Vec<Variable> = (0..self.options())
            .map(|g| {
                let hi = self.hi[g].map_or(f64::INFINITY, f64::from);
                lp.add_var(self.cost[g], (f64::from(self.lo[g]), hi))
            })
            .collect();
        let x = self.shares(&mut lp, |_| true);
        for (g, xg) in x.iter().enumerate() {
            let mut row: Vec<(Variable, f64)> =
                xg.iter().map(|&(k, v)| (v, self.coef(g, k))).collect();
            row.push((y[g], -self.util));
            lp.add_constraint(row, ComparisonOp::Le, 0.0);
        }
        if let (true, Some(b)) = (with_budget, self.budget) {
            let row: Vec<(Variable, f64)> =
                y.iter().zip(&self.cost).map(|(&v, &c)| (v, c)).collect();
            lp.add_constraint(row, ComparisonOp::Le, b);
        }
        let sol = match lp.solve() {
            Ok(out) => out.into_solution().map_err(|_| LpFail::Slow)?,
            Err(microlp::Error::Infeasible) => return Err(LpFail::Infeasible),
            Err(e) => return Err(LpFail::Other(e.to_string())),
        };
        Ok(Relaxed { y, sol })
    }

    /// With replica counts fixed, the shares that balance load: minimise the highest
    /// load / replicas over options (then, slightly, the summed utilisation, so idle room
    /// goes to the cheaper fit). `None` when some bucket with demand has no replica able to
    /// serve it.
    pub fn assign(&self, y: &[u32]) -> Option<Assignment> {
        let mut asg = Assignment {
            assign: vec![vec![0.0; self.options()]; self.cells],
            load: vec![0.0; self.options()],
            peak: 0.0,
        };
        if self.buckets.is_empty() {
            return Some(asg);
        }
        let mut lp = Lp::new(OptimizationDirection::Minimize);
        lp.set_time_limit(self.lp_limit);
        let peak = lp.add_var(1.0, (0.0, f64::INFINITY));
        // Σ_g load_g / y_g weighted 1/(100·G): a tie-break well below the peak's weight.
        let tie = 0.01 / self.options() as f64;
        let mut x: Vec<Vec<(usize, Variable)>> = vec![Vec::new(); self.options()];
        for k in 0..self.buckets.len() {
            let mut row = Vec::new();
            for (g, xg) in x.iter_mut().enumerate() {
                if self.usable(g, k) && y[g] > 0 {
                    let v = lp.add_var(tie * self.coef(g, k) / f64::from(y[g]), (0.0, 1.0));
                    xg.push((k, v));
                    row.push((v, 1.0));
                }
            }
            if row.is_empty() {
                return None;
            }
            lp.add_constraint(row, ComparisonOp::Eq, 1.0);
        }
        for (g, xg) in x.iter().enumerate() {
            if xg.is_empty() {
                continue;
            }
            let mut row: Vec<(Variable, f64)> =
                xg.iter().map(|&(k, v)| (v, self.coef(g, k))).collect();
            row.push((peak, -f64::from(y[g])));
            lp.add_constraint(row, ComparisonOp::Le, 0.0);
        }
        let sol = lp.solve().ok()?.into_solution().ok()?;
        for (g, xg) in x.iter().enumerate() {
            for &(k, v) in xg {
                let s = sol.var_value(v).clamp(0.0, 1.0);
                if s > 1e-9 {
                    asg.assign[self.buckets[k].0][g] = s;
                    asg.load[g] += s * self.coef(g, k);
                }
            }
        }
        // Rows sum to exactly 1 (LP round-off aside).
        for row in &mut asg.assign {
            let t: f64 = row.iter().sum();
            if t > 0.0 {
                row.iter_mut().for_each(|s| *s /= t);
            }
        }
        asg.peak = asg
            .load
            .iter()
            .zip(y)
            .filter(|(_, n)| **n > 0)
            .map(|(l, n)| l / f64::from(*n))
            .fold(0.0, f64::max);
        Some(asg)
    }

    /// Σ cost × replicas.
    pub fn cost_of(&self, y: &[u32]) -> f64 {
        y.iter()
            .zip(&self.cost)
            .map(|(&n, &c)| f64::from(n) * c)
            .sum()
    }
}
