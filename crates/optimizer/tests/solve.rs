//! The solver against brute force on tiny instances, and each constraint, fallback and error.

mod common;

use brix_optimizer::{
    Demand, Grid, Method, Plan, Problem, SolveError, SolveOptions, single_type, solve,
};
use common::{flat_profile, option};
use microlp::{ComparisonOp, OptimizationDirection, Problem as Lp};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// 2 × 2 buckets: inputs 32, 64; outputs 4, 8.
fn tiny() -> Grid {
    Grid::log2(5, 6, 2, 3)
}

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

/// Every plan invariant: bounds, budget, rows summing to 1 on options that serve the bucket,
/// load within utilisation × replicas, cost = Σ replicas × price.
fn check_plan(p: &Problem, plan: &Plan) {
    let grid = &p.demand.grid;
    let mut load = vec![0.0; p.gpus.len()];
    for (i, &r) in p.demand.rates.iter().enumerate() {
        let row = &plan.assign[i];
        let s: f64 = row.iter().sum();
        if r > 0.0 {
            assert!((s - 1.0).abs() < 1e-6, "bucket {i}: shares sum to {s}");
        } else {
            assert_eq!(s, 0.0, "bucket {i} without demand has shares");
        }
        for (g, o) in p.gpus.iter().enumerate() {
            let t = o.profile.capacity(grid.cell_at(i));
            if row[g] > 0.0 {
                assert!(
                    t > 0.0,
                    "bucket {i} sent to {} which cannot serve it",
                    o.name
                );
                assert!(
                    plan.gpus[g].replicas > 0,
                    "bucket {i} sent to 0 replicas of {}",
                    o.name
                );
                load[g] += r * row[g] / t;
            }
        }
    }
    let mut cost = 0.0;
    for (g, o) in p.gpus.iter().enumerate() {
        let n = plan.gpus[g].replicas;
        assert!(n >= o.min_replicas, "{} below its minimum", o.name);
        assert!(
            o.max_replicas.is_none_or(|m| n <= m),
            "{} above its cap",
            o.name
        );
        assert!(
            load[g] <= p.utilisation * f64::from(n) + 1e-6,
            "{}: load {} over {} × {n}",
            o.name,
            load[g],
            p.utilisation
        );
        assert!((plan.gpus[g].load - load[g]).abs() < 1e-6);
        cost += f64::from(n) * o.cost_per_hour;
    }
    assert!((plan.cost_per_hour - cost).abs() < 1e-9);
    if let Some(b) = p.budget_per_hour {
        assert!(cost <= b + 1e-9, "over budget");
    }
    assert!(plan.lower_bound <= cost + 1e-6);
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

/// Short requests (32 in) fit the cheap type best; long ones (64 in) only the dear one.
fn two_types(rate_short: f64, rate_long: f64) -> Problem {
    let grid = tiny();
    let small = flat_profile("A10", 1.0, &grid, |i| if i % 2 == 0 { 4.0 } else { 0.0 });
    let big = flat_profile("H100", 5.0, &grid, |i| if i % 2 == 0 { 10.0 } else { 2.0 });
    let mut rates = vec![0.0; 4];
    rates[0] = rate_short;
    rates[1] = rate_long;
    Problem {
        demand: Demand { grid, rates },
        gpus: vec![option("A10", small), option("H100", big)],
        budget_per_hour: None,
        utilisation: 1.0,
    }
}

#[test]
fn shapes_go_to_the_type_that_serves_them_cheapest() {
    // Long prompts need the H100; the half of it they leave idle takes 4 of the 8 short
    // req/s, so one A10 is enough: $6/h where 2 A10 + 1 H100 would cost $7/h.
    let p = two_types(8.0, 1.0);
    let plan = solve(&p, &SolveOptions::default()).unwrap();
    check_plan(&p, &plan);
    assert_eq!(plan.replicas(), vec![1, 1]);
    assert!((plan.cost_per_hour - 6.0).abs() < 1e-9);
    assert!(
        (plan.lower_bound - 4.5).abs() < 1e-9,
        "{}",
        plan.lower_bound
    );
    assert_eq!(plan.assign[1], vec![0.0, 1.0]);
    // Shares balance load: 8x / 4 = 8(1 − x) / 10 + 1 / 2 → x = 13/28 (both 93 % busy).
    assert!(
        (plan.assign[0][0] - 13.0 / 28.0).abs() < 1e-6,
        "{:?}",
        plan.assign[0]
    );
    assert!(
        plan.notes.iter().any(|n| n.contains("only fit H100")),
        "{:?}",
        plan.notes
    );
    let routes = plan.routes();
    assert_eq!(routes.groups, vec!["A10", "H100"]);
    assert_eq!(routes.planned, vec![1, 1]);
    assert_eq!(routes.shares(64, Some(4)), vec![0.0, 1.0]);
    let s = routes.shares(32, None);
    assert!(
        (s[0] - 13.0 / 28.0).abs() < 1e-6 && (s[1] - 15.0 / 28.0).abs() < 1e-6,
        "{s:?}"
    );
}

#[test]
fn caps_minimums_and_budget_bind() {
    // 16 short req/s: 4 A10 ($4/h) unconstrained; A10 capped at 2, an H100 takes the rest.
    let mut p = two_types(16.0, 0.0);
    assert_eq!(
        solve(&p, &SolveOptions::default()).unwrap().replicas(),
        vec![4, 0]
    );
    p.gpus[0].max_replicas = Some(2);
    let plan = solve(&p, &SolveOptions::default()).unwrap();
    check_plan(&p, &plan);
    assert_eq!(plan.replicas(), vec![2, 1]);
    assert!(
        plan.notes.iter().any(|n| n == "A10 capped at 2"),
        "{:?}",
        plan.notes
    );
    // A minimum of 3 A10s for redundancy.
    let mut p = two_types(8.0, 1.0);
    p.gpus[0].min_replicas = 3;
    let plan = solve(&p, &SolveOptions::default()).unwrap();
    check_plan(&p, &plan);
    assert_eq!(plan.replicas(), vec![3, 1]);
    assert!(
        plan.notes
            .iter()
            .any(|n| n.contains("held at its minimum of 3")),
        "{:?}",
        plan.notes
    );
    // Budget: exactly the optimum binds; under the integer optimum ($6) there is no plan;
    // under the fractional one ($4.5) it says so.
    let mut p = two_types(8.0, 1.0);
    p.budget_per_hour = Some(6.0);
    let plan = solve(&p, &SolveOptions::default()).unwrap();
    assert!(
        plan.notes.iter().any(|n| n.starts_with("budget binds")),
        "{:?}",
        plan.notes
    );
    p.budget_per_hour = Some(5.9);
    let err = solve(&p, &SolveOptions::default()).unwrap_err();
    assert!(
        matches!(&err, SolveError::Infeasible { why } if why.contains("no whole-replica plan")),
        "{err:?}"
    );
    p.budget_per_hour = Some(4.0);
    let err = solve(&p, &SolveOptions::default()).unwrap_err();
    assert!(
        matches!(&err, SolveError::Infeasible { why } if why.contains("below the cheapest fractional plan")),
        "{err:?}"
    );
    // Caps that cannot carry the demand.
    let mut p = two_types(8.0, 5.0);
    p.gpus[1].max_replicas = Some(2);
    let err = solve(&p, &SolveOptions::default()).unwrap_err();
    assert!(
        matches!(&err, SolveError::Infeasible { why } if why.contains("H100 ≤ 2")),
        "{err:?}"
    );
}

#[test]
fn utilisation_leaves_headroom() {
    let mut p = two_types(8.0, 0.0);
    p.gpus.truncate(1);
    assert_eq!(
        solve(&p, &SolveOptions::default()).unwrap().replicas(),
        vec![2]
    );
    p.utilisation = 0.9;
    assert_eq!(
        solve(&p, &SolveOptions::default()).unwrap().replicas(),
        vec![3]
    );
}

#[test]
fn buckets_no_option_serves_are_named() {
    let mut p = two_types(1.0, 1.0);
    p.gpus.truncate(1);
    let err = solve(&p, &SolveOptions::default()).unwrap_err();
    assert!(
        matches!(&err, SolveError::Infeasible { why } if why.contains("64 in × 4 out (1.000 req/s)")),
        "{err:?}"
    );
    // A cap of 0 removes an option.
    let mut p = two_types(1.0, 1.0);
    p.gpus[1].max_replicas = Some(0);
    assert!(matches!(
        solve(&p, &SolveOptions::default()),
        Err(SolveError::Infeasible { .. })
    ));
}

#[test]
fn bad_problems_are_refused() {
    let opts = SolveOptions::default();
    let mut p = two_types(1.0, 1.0);
    p.demand.rates[2] = f64::NAN;
    assert!(matches!(solve(&p, &opts), Err(SolveError::Invalid(_))));
    let mut p = two_types(1.0, 1.0);
    p.demand.rates[2] = -1.0;
    assert!(matches!(solve(&p, &opts), Err(SolveError::Invalid(_))));
    let mut p = two_types(1.0, 1.0);
    p.utilisation = 0.0;
    assert!(matches!(solve(&p, &opts), Err(SolveError::Invalid(_))));
    let mut p = two_types(1.0, 1.0);
    p.gpus[0].cost_per_hour = f64::INFINITY;
    assert!(matches!(solve(&p, &opts), Err(SolveError::Invalid(_))));
    let mut p = two_types(1.0, 1.0);
    p.gpus[0].min_replicas = 3;
    p.gpus[0].max_replicas = Some(2);
    assert!(matches!(solve(&p, &opts), Err(SolveError::Invalid(_))));
    let mut p = two_types(1.0, 1.0);
    p.gpus[1].profile.tputs[0][0] = f64::NAN;
    assert!(matches!(solve(&p, &opts), Err(SolveError::Invalid(_))));
    let mut p = two_types(1.0, 1.0);
    p.gpus[1].profile = flat_profile("H100", 5.0, &Grid::default(), |_| 1.0);
    assert_eq!(
        solve(&p, &opts),
        Err(SolveError::GridMismatch { gpu: "H100".into() })
    );
    let mut p = two_types(1.0, 1.0);
    p.gpus.clear();
    assert_eq!(solve(&p, &opts), Err(SolveError::NoGpus));
}

#[test]
fn no_demand_runs_every_option_at_its_minimum() {
    let mut p = two_types(0.0, 0.0);
    p.gpus[1].min_replicas = 1;
    let plan = solve(&p, &SolveOptions::default()).unwrap();
    check_plan(&p, &plan);
    assert_eq!(plan.replicas(), vec![0, 1]);
    assert!(plan.assign.iter().flatten().all(|s| *s == 0.0));
    assert!(plan.routes().shares(32, None).iter().all(|s| *s == 0.0));
}

#[test]
fn without_nodes_the_relaxation_rounded_up_is_reported() {
    // 5 req/s of short requests: the relaxation wants 1.25 A10s, rounding gives 2.
    let mut p = two_types(5.0, 0.5);
    p.gpus[1].cost_per_hour = 3.0;
    let full = solve(&p, &SolveOptions::default()).unwrap();
    let opts = SolveOptions {
        max_nodes: 0,
        ..SolveOptions::default()
    };
    let plan = solve(&p, &opts).unwrap();
    check_plan(&p, &plan);
    assert_eq!(plan.method, Method::Relaxation);
    assert_eq!(plan.nodes, 0);
    assert!(
        plan.notes[0].starts_with("fallback: the node budget (0) ran out"),
        "{:?}",
        plan.notes
    );
    assert!(plan.cost_per_hour >= full.cost_per_hour);
    assert!(plan.cost_per_hour <= plan.lower_bound + 1.0 + 3.0 + 1e-9);
    assert!(
        full.cost_per_hour < plan.cost_per_hour,
        "the instance must need the tree"
    );
    assert_eq!(full.method, Method::Optimal);
    // A zero time budget stops the same way.
    let opts = SolveOptions {
        time_budget: std::time::Duration::ZERO,
        ..SolveOptions::default()
    };
    assert_eq!(solve(&p, &opts).unwrap().method, Method::Relaxation);
}

#[test]
fn single_type_sizes_one_option_alone() {
    let p = two_types(8.0, 1.0);
    let err = single_type(&p, 0).unwrap_err();
    assert!(
        matches!(&err, SolveError::Infeasible { why } if why.contains("64 in × 4 out")),
        "{err:?}"
    );
    let plan = single_type(&p, 1).unwrap();
    check_plan(&p, &plan);
    // 8/10 + 1/2 = 1.3 replicas' load → 2 H100s.
    assert_eq!(plan.replicas(), vec![0, 2]);
    let mut p = p;
    p.gpus[1].max_replicas = Some(1);
    assert!(matches!(
        single_type(&p, 1),
        Err(SolveError::Infeasible { .. })
    ));
    assert!(matches!(single_type(&p, 5), Err(SolveError::Invalid(_))));
}

#[test]
fn realistic_instances_are_optimal_and_never_worse_than_one_type() {
    for (types, total) in [(4, 10.0), (4, 60.0), (5, 150.0)] {
        let p = common::roofline_problem(types, total, 3);
        let plan = solve(&p, &SolveOptions::default()).unwrap();
        check_plan(&p, &plan);
        assert_eq!(plan.method, Method::Optimal);
        for g in 0..types {
            if let Ok(one) = single_type(&p, g) {
                check_plan(&p, &one);
                assert!(plan.cost_per_hour <= one.cost_per_hour + 1e-9);
            }
        }
        let json = serde_json::to_string(&plan).unwrap();
        let back: Plan = serde_json::from_str(&json).unwrap();
        assert_eq!(back.replicas(), plan.replicas());
    }
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
