//! The solver on hand-made instances: each constraint, fallback, error and note.

mod common;

use brix_optimizer::{
    Demand, Grid, Method, Plan, Problem, SolveError, SolveOptions, single_type, solve,
};
use common::{check_plan, flat_profile, option, tiny};

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
    // Absurd scales: a capacity of 1e-9 req/s counts as none; 1e12 req/s is a units mistake.
    let mut p = two_types(1.0, 1.0);
    p.gpus[1].profile.tputs[0][1] = 1e-9;
    assert!(matches!(
        solve(&p, &opts),
        Err(SolveError::Infeasible { .. })
    ));
    let p = two_types(1e12, 1.0);
    let r = solve(&p, &opts);
    assert!(
        matches!(&r, Err(SolveError::Invalid(why)) if why.contains("replicas: more than")),
        "{r:?}"
    );
    assert!(matches!(single_type(&p, 1), Err(SolveError::Invalid(_))));
    // Sizes beyond what a planner tick should attempt.
    let mut p = two_types(1.0, 1.0);
    let one = p.gpus[0].clone();
    p.gpus.resize(brix_optimizer::MAX_OPTIONS + 1, one);
    assert!(matches!(solve(&p, &opts), Err(SolveError::Invalid(why)) if why.contains("options")));
    let big = Grid {
        inputs: (1..=65).collect(),
        outputs: (1..=65).collect(),
    };
    let p = Problem {
        demand: Demand::zero(big.clone()),
        gpus: vec![option("A10", flat_profile("A10", 1.0, &big, |_| 1.0))],
        budget_per_hour: None,
        utilisation: 1.0,
    };
    assert!(matches!(solve(&p, &opts), Err(SolveError::Invalid(why)) if why.contains("buckets")));
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

/// `--verify`'s correction: a derated profile carries less per replica, so the same demand
/// needs more replicas of that type; factors outside [0, 1] are clamped.
#[test]
fn derated_profiles_need_more_replicas() {
    let p = two_types(8.0, 0.0);
    let before = single_type(&p, 0).expect("plan");
    let mut q = p.clone();
    q.gpus[0].profile = q.gpus[0].profile.derated(0.5);
    let after = single_type(&q, 0).expect("plan");
    assert!(
        after.gpus[0].replicas > before.gpus[0].replicas,
        "{after:?} vs {before:?}"
    );
    let cell = p.demand.grid.cell_at(0);
    let cap = p.gpus[0].profile.capacity(cell);
    assert_eq!(q.gpus[0].profile.capacity(cell), cap * 0.5);
    assert_eq!(p.gpus[0].profile.derated(3.0), p.gpus[0].profile);
    assert_eq!(p.gpus[0].profile.derated(-1.0).capacity(cell), 0.0);
}
