//! The solver against exact answers found another way: enumeration of every replica count on
//! tiny random instances, microlp's own MIP on mid-size roofline ones; and cut-short searches.

mod common;

use brix_optimizer::{Demand, Grid, Method, Problem, SolveError, SolveOptions, solve};
use common::{check_plan, flat_profile, option, tiny};
use microlp::{ComparisonOp, OptimizationDirection, Problem as Lp};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// Whether counts `y` carry the demand: an LP of its own (shares only), independent of the
/// solver's model.
fn carries(p: &Problem, y: &[u32]) -> bool {
    let grid = &p.demand.grid;
    let mut lp = Lp::new(OptimizationDirection::Minimize);
    let mut rows: Vec<Vec<(microlp::Variable, f64)>> = vec![Vec::new(); p.gpus.len()];
    for (i, &r) in p.demand.rates.iter().enumerate() {
        if r <= 0.0 {
            continue;
        }
        let mut sum = Vec::new();
        for (g, o) in p.gpus.iter().enumerate() {
            let t = o.profile.capacity(grid.cell_at(i));
            if t > 0.0 && y[g] > 0 {
                let v = lp.add_var(0.0, (0.0, 1.0));
                sum.push((v, 1.0));
                rows[g].push((v, r / t));
            }
        }
        if sum.is_empty() {
            return false;
        }
        lp.add_constraint(sum, ComparisonOp::Eq, 1.0);
    }
    for (g, row) in rows.into_iter().enumerate() {
        if !row.is_empty() {
            lp.add_constraint(
                row,
                ComparisonOp::Le,
                p.utilisation * f64::from(y[g]) + 1e-9,
            );
        }
    }
    lp.solve().is_ok()
}
/// The cheapest counts by enumeration over 0..=limit per option (caps, minimums, budget).
fn brute_force(p: &Problem, limit: u32) -> Option<(f64, Vec<u32>)> {
    let n = p.gpus.len();
    let mut best: Option<(f64, Vec<u32>)> = None;
    let mut y = vec![0u32; n];
    loop {
        let ok_bounds = p
            .gpus
            .iter()
            .zip(&y)
            .all(|(o, &k)| k >= o.min_replicas && o.max_replicas.is_none_or(|m| k <= m));
        let cost: f64 = p
            .gpus
            .iter()
            .zip(&y)
            .map(|(o, &k)| o.cost_per_hour * f64::from(k))
            .sum();
        let in_budget = p.budget_per_hour.is_none_or(|b| cost <= b + 1e-9);
        if ok_bounds
            && in_budget
            && best.as_ref().is_none_or(|b| cost < b.0 - 1e-9)
            && carries(p, &y)
        {
            best = Some((cost, y.clone()));
        }
        // Next vector.
        let mut g = 0;
        while g < n {
            y[g] += 1;
            if y[g] <= limit {
                break;
            }
            y[g] = 0;
            g += 1;
        }
        if g == n {
            return best;
        }
    }
}
fn random_problem(rng: &mut SmallRng) -> Problem {
    let grid = tiny();
    let n = rng.random_range(2..=3);
    let gpus = (0..n)
        .map(|g| {
            let caps: Vec<f64> = (0..grid.len())
                .map(|_| {
                    if rng.random_bool(0.25) {
                        0.0
                    } else {
                        rng.random_range(1.0..4.0)
                    }
                })
                .collect();
            let mut o = option(
                &format!("g{g}"),
                flat_profile(&format!("g{g}"), rng.random_range(0.5..5.0), &grid, |i| {
                    caps[i]
                }),
            );
            if rng.random_bool(0.3) {
                o.min_replicas = rng.random_range(0..=2);
            }
            if rng.random_bool(0.4) {
                o.max_replicas = Some(rng.random_range(o.min_replicas.max(1)..=4));
            }
            o
        })
        .collect();
    let rates = (0..grid.len())
        .map(|_| {
            if rng.random_bool(0.2) {
                0.0
            } else {
                rng.random_range(0.0..1.5)
            }
        })
        .collect();
    Problem {
        demand: Demand { grid, rates },
        gpus,
        budget_per_hour: rng.random_bool(0.3).then(|| rng.random_range(2.0..20.0)),
        utilisation: rng.random_range(0.6..=1.0),
    }
}
#[test]
fn branch_and_bound_matches_brute_force_on_random_tiny_instances() {
    let mut rng = SmallRng::seed_from_u64(14);
    let (mut solved, mut infeasible, mut fractional) = (0, 0, 0);
    for case in 0..300 {
        let p = random_problem(&mut rng);
        // Loads stay under 4 × 1.5 / (1 × 0.6) = 10 replicas per option.
        let truth = brute_force(&p, 10);
        match (solve(&p, &SolveOptions::default()), truth) {
            (Ok(plan), Some((cost, y))) => {
                assert_eq!(plan.method, Method::Optimal, "case {case}");
                assert!(
                    (plan.cost_per_hour - cost).abs() < 1e-6,
                    "case {case}: solver ${} (replicas {:?}), brute force ${cost} ({y:?})",
                    plan.cost_per_hour,
                    plan.replicas()
                );
                check_plan(&p, &plan);
                if plan.lower_bound < cost - 1e-6 {
                    fractional += 1;
                }
                solved += 1;
            }
            (Err(SolveError::Infeasible { .. }), None) => infeasible += 1,
            (got, truth) => panic!("case {case}: solver {got:?}, brute force {truth:?}"),
        }
    }
    // The instances exercise branching (fractional roots) and infeasibility both.
    assert!(
        solved > 150 && infeasible > 10 && fractional > 50,
        "{solved} {infeasible} {fractional}"
    );
}
#[test]
fn cut_short_searches_still_give_feasible_plans_and_say_so() {
    let mut rng = SmallRng::seed_from_u64(41);
    let mut seen = std::collections::HashSet::new();
    for case in 0..200 {
        let p = random_problem(&mut rng);
        let Some((best, _)) = brute_force(&p, 10) else {
            continue;
        };
        let opts = SolveOptions {
            max_nodes: rng.random_range(0..4),
            ..SolveOptions::default()
        };
        // Without room to search, a tight budget may leave no plan: that is reported.
        let plan = match solve(&p, &opts) {
            Ok(plan) => plan,
            Err(SolveError::Infeasible { why }) => {
                assert!(why.contains("node budget"), "case {case}: {why}");
                continue;
            }
            Err(e) => panic!("case {case}: {e:?}"),
        };
        check_plan(&p, &plan);
        assert!(plan.cost_per_hour >= best - 1e-6, "case {case}");
        assert!(plan.nodes <= opts.max_nodes);
        let first = &plan.notes[0];
        match plan.method {
            Method::Optimal => assert!((plan.cost_per_hour - best).abs() < 1e-6),
            Method::BestFound => assert!(first.starts_with("best found: the node budget")),
            Method::Relaxation => assert!(first.starts_with("fallback: the node budget")),
            Method::Kept => panic!("the solver never keeps"),
        }
        seen.insert(format!("{:?}", plan.method));
    }
    assert_eq!(seen.len(), 3, "{seen:?}");
}
/// microlp's own MIP solver (integer counts) on the same problem: the optimum's cost.
fn mip_cost(p: &Problem) -> Option<f64> {
    let grid = &p.demand.grid;
    let mut lp = Lp::new(OptimizationDirection::Minimize);
    let y: Vec<_> = p
        .gpus
        .iter()
        .map(|o| {
            let hi = o.max_replicas.map_or(1000, |m| m as i32);
            lp.add_integer_var(o.cost_per_hour, (o.min_replicas as i32, hi))
        })
        .collect();
    let mut rows: Vec<Vec<(microlp::Variable, f64)>> = vec![Vec::new(); p.gpus.len()];
    for (i, &r) in p.demand.rates.iter().enumerate() {
        if r <= 0.0 {
            continue;
        }
        let mut sum = Vec::new();
        for (g, o) in p.gpus.iter().enumerate() {
            let t = o.profile.capacity(grid.cell_at(i));
            if t > 0.0 {
                let v = lp.add_var(0.0, (0.0, 1.0));
                sum.push((v, 1.0));
                rows[g].push((v, r / t));
            }
        }
        lp.add_constraint(sum, ComparisonOp::Eq, 1.0);
    }
    for (g, mut row) in rows.into_iter().enumerate() {
        row.push((y[g], -p.utilisation));
        lp.add_constraint(row, ComparisonOp::Le, 0.0);
    }
    Some(lp.solve().ok()?.into_solution().ok()?.objective())
}

#[test]
fn realistic_mid_size_instances_match_microlps_own_mip() {
    // 4 types on a 4 × 4 grid (inputs 256 … 2048, outputs 32 … 256), several rates and caps.
    let grid = Grid::log2(8, 11, 5, 8);
    for seed in 0..12u64 {
        let total = [0.7, 3.0, 12.0, 40.0][seed as usize % 4];
        let mut p = Problem {
            demand: common::mixed_demand(&grid, total, seed),
            gpus: (0..4)
                .map(|k| option(common::GPUS[k].0, common::roofline_profile(k, &grid)))
                .collect(),
            budget_per_hour: None,
            utilisation: 0.85,
        };
        if seed % 3 == 1 {
            p.gpus[2].max_replicas = Some(2);
            p.gpus[0].min_replicas = 1;
        }
        let plan = solve(&p, &SolveOptions::default()).unwrap();
        check_plan(&p, &plan);
        let truth = mip_cost(&p).expect("microlp solves it");
        assert!(
            (plan.cost_per_hour - truth).abs() < 1e-6,
            "seed {seed}: ours ${} ({:?}), microlp MIP ${truth}",
            plan.cost_per_hour,
            plan.replicas()
        );
    }
}
