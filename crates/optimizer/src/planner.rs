//! The planner: successive solves with hysteresis, so small demand changes do not churn
//! replicas. The live driver calls it every tick with the monitor's demand.

use std::time::Instant;

use crate::plan::{Method, Plan};
use crate::solve::{Problem, SolveError, SolveOptions, solve, with_counts};

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
    /// Per option, while the optimum asks for fewer replicas than run: since when, and the
    /// most it asked for since then (the count a delayed decrease goes to).
    down: Vec<Option<(f64, u32)>>,
}

impl Planner {
    /// A planner with no plan yet.
    pub fn new(hysteresis: Hysteresis) -> Self {
        Self {
            hysteresis,
            current: None,
            down: Vec::new(),
        }
    }

    /// The plan in force, if any.
    pub fn current(&self) -> Option<&Plan> {
        self.current.as_ref()
    }

    /// Solves `problem` at `now_s` and applies hysteresis against the plan in force: the
    /// current counts stay while they carry the new demand within `keep_within` of the optimum's
    /// cost; otherwise increases apply at once and each decrease waits until the optimum has
    /// asked for fewer replicas of that option for `down_delay_s` (then goes to the most it asked
    /// for meanwhile). An error leaves the plan in force unchanged.
    pub fn decide(
        &mut self,
        problem: &Problem,
        opts: &SolveOptions,
        now_s: f64,
    ) -> Result<PlannerDecision, SolveError> {
        let start = Instant::now();
        if !now_s.is_finite() {
            return Err(SolveError::Invalid(format!(
                "time {now_s} is not a number of seconds"
            )));
        }
        let opt = solve(problem, opts)?;
        let names: Vec<&str> = problem.gpus.iter().map(|o| o.name.as_str()).collect();
        let cur = match &self.current {
            Some(c)
                if c.gpus
                    .iter()
                    .map(|g| g.name.as_str())
                    .eq(names.iter().copied()) =>
            {
                c.replicas()
            }
            prev => {
                let reason = if prev.is_some() {
                    "the options changed: new plan".to_string()
                } else {
                    format!("first plan: {}", counts(&names, &opt.replicas()))
                };
                return Ok(self.adopt(opt, true, reason));
            }
        };
        let want = opt.replicas();
        self.down.resize(want.len(), None);
        for (g, d) in self.down.iter_mut().enumerate() {
            *d = if want[g] < cur[g] {
                let (since, most) = d.unwrap_or((now_s, want[g]));
                Some((since, most.max(want[g])))
            } else {
                None
            };
        }
        if want == cur {
            let reason = format!("the optimum is unchanged: {}", counts(&names, &cur));
            return Ok(self.adopt(opt, false, reason));
        }
        let tol = self.hysteresis.keep_within.max(0.0);
        let carried = with_counts(problem, &cur, opt.lower_bound);
        if let Some(kept) = &carried
            && kept.cost_per_hour <= (1.0 + tol) * opt.cost_per_hour + 1e-9
        {
            let reason = format!(
                "kept {} at ${:.2}/h: it carries the new demand and is within {:.0} % of the optimum ${:.2}/h ({})",
                counts(&names, &cur),
                kept.cost_per_hour,
                tol * 100.0,
                opt.cost_per_hour,
                counts(&names, &want)
            );
            let kept = kept.clone();
            return Ok(self.finish(kept, &opt, start, false, reason));
        }
        // Move: decreases after the delay; increases at once when the current replicas cannot
        // carry the demand, else together with a decrease (a swap to a cheaper mix).
        let mut target = want.clone();
        let mut said = Vec::new();
        let mut ups = Vec::new();
        for g in 0..want.len() {
            let (c, w) = (cur[g], want[g]);
            if w > c {
                ups.push(g);
            } else if w < c {
                let (since, most) = self.down[g].unwrap_or((now_s, w));
                let waited = now_s - since;
                let capped = problem.gpus[g].max_replicas.is_some_and(|hi| c > hi);
                if waited >= self.hysteresis.down_delay_s || capped {
                    target[g] = if capped { w } else { most };
                    said.push(format!(
                        "{} {c}→{} after {waited:.0} s of the optimum asking for fewer",
                        names[g], target[g]
                    ));
                } else {
                    target[g] = c;
                    said.push(format!(
                        "{} stays at {c} (the optimum asks for {w}; {waited:.0} of {:.0} s waited)",
                        names[g], self.hysteresis.down_delay_s
                    ));
                }
            }
        }
        let swapping = (0..want.len()).any(|g| target[g] < cur[g]);
        for g in ups {
            let (c, w) = (cur[g], want[g]);
            if carried.is_none() || swapping {
                said.insert(0, format!("{} {c}→{w} at once", names[g]));
            } else {
                target[g] = c;
                said.push(format!(
                    "{} stays at {c} until a decrease is due (the optimum asks for {w}; the current replicas carry the demand)",
                    names[g]
                ));
            }
        }
        let changed = target != cur;
        let reason = said.join("; ");
        let decision = if target == want {
            self.adopt(opt, changed, reason)
        } else {
            match with_counts(problem, &target, opt.lower_bound) {
                Some(plan) => self.finish(plan, &opt, start, changed, reason),
                // Held replicas break the budget: follow the optimum now.
                None => self.adopt(
                    opt,
                    true,
                    format!("{reason}; holding replicas would break the budget, so the optimum applies now"),
                ),
            }
        };
        // A count just lowered to more than the optimum asks starts its next wait now.
        let now = decision.plan.replicas();
        for (g, d) in self.down.iter_mut().enumerate() {
            if d.is_none() && want[g] < now[g] {
                *d = Some((now_s, want[g]));
            }
        }
        Ok(decision)
    }

    /// Puts `plan` in force (trackers of changed options reset).
    fn adopt(&mut self, plan: Plan, changed: bool, reason: String) -> PlannerDecision {
        let before = self.current.as_ref().map(Plan::replicas);
        let now = plan.replicas();
        self.down.resize(now.len(), None);
        for (g, d) in self.down.iter_mut().enumerate() {
            if before.as_ref().is_none_or(|b| b.get(g) != Some(&now[g])) {
                *d = None;
            }
        }
        self.current = Some(plan.clone());
        PlannerDecision {
            plan,
            changed,
            reason,
        }
    }

    /// A hysteresis plan (`Kept`) with the optimum's solve time and notes after the reason.
    fn finish(
        &mut self,
        mut plan: Plan,
        opt: &Plan,
        start: Instant,
        changed: bool,
        reason: String,
    ) -> PlannerDecision {
        plan.method = Method::Kept;
        plan.nodes = opt.nodes;
        plan.solve_ms = start.elapsed().as_secs_f64() * 1000.0;
        plan.notes.insert(0, reason.clone());
        self.adopt(plan, changed, reason)
    }
}

/// "A10 2, H100 1".
fn counts(names: &[&str], y: &[u32]) -> String {
    names
        .iter()
        .zip(y)
        .map(|(n, c)| format!("{n} {c}"))
        .collect::<Vec<_>>()
        .join(", ")
}
