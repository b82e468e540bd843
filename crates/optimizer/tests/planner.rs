//! The planner's hysteresis: keep close-enough counts, scale up at once, scale down late.

mod common;

use brix_optimizer::{Demand, Grid, Hysteresis, Method, Planner, Problem, SolveOptions, solve};
use common::{flat_profile, option};

/// Short requests only (one bucket): an A10 carries 4 req/s for $1/h, an L4 3.5 req/s for
/// $0.9/h, so the optimum flips between them as the rate moves.
fn problem(rate: f64) -> Problem {
    let grid = Grid::log2(5, 6, 2, 3);
    let mut rates = vec![0.0; grid.len()];
    rates[0] = rate;
    Problem {
        gpus: vec![
            option("A10", flat_profile("A10", 1.0, &grid, |_| 4.0)),
            option("L4", flat_profile("L4", 0.9, &grid, |_| 3.5)),
        ],
        demand: Demand { grid, rates },
        budget_per_hour: None,
        utilisation: 1.0,
    }
}

fn planner() -> Planner {
    Planner::new(Hysteresis {
        keep_within: 0.1,
        down_delay_s: 60.0,
    })
}

#[test]
fn close_enough_counts_are_kept() {
    let opts = SolveOptions::default();
    let mut pl = planner();
    // 10.6 req/s: 1 A10 + 2 L4 ($2.80/h).
    let d = pl.decide(&problem(10.6), &opts, 0.0).unwrap();
    assert!(
        d.changed && d.reason.starts_with("first plan"),
        "{}",
        d.reason
    );
    assert_eq!(d.plan.replicas(), vec![1, 2]);
    // 10 req/s: the optimum is 3 L4 ($2.70/h); $2.80 is within 10 %: kept.
    assert_eq!(solve(&problem(10.0), &opts).unwrap().replicas(), vec![0, 3]);
    let d = pl.decide(&problem(10.0), &opts, 1.0).unwrap();
    assert!(!d.changed);
    assert_eq!(d.plan.method, Method::Kept);
    assert_eq!(d.plan.replicas(), vec![1, 2]);
    assert!(d.reason.starts_with("kept A10 1, L4 2"), "{}", d.reason);
    // The kept plan's shares follow the new demand.
    assert!((d.plan.demand.total() - 10.0).abs() < 1e-9);
    // With no tolerance the counts still stay while they carry the demand, until the A10's
    // decrease is due; then the L4 increase comes with it.
    let mut strict = Planner::new(Hysteresis {
        keep_within: 0.0,
        down_delay_s: 60.0,
    });
    strict.decide(&problem(10.6), &opts, 0.0).unwrap();
    let d = strict.decide(&problem(10.0), &opts, 1.0).unwrap();
    assert!(!d.changed);
    assert_eq!(d.plan.replicas(), vec![1, 2]);
    assert!(
        d.reason.contains("A10 stays at 1") && d.reason.contains("L4 stays at 2 until"),
        "{}",
        d.reason
    );
    let d = strict.decide(&problem(10.0), &opts, 61.0).unwrap();
    assert!(d.changed);
    assert_eq!(d.plan.replicas(), vec![0, 3]);
    assert!(
        d.reason.starts_with("L4 2→3 at once; A10 1→0 after 60 s"),
        "{}",
        d.reason
    );
}

#[test]
fn increases_apply_at_once_and_decreases_wait_for_the_delay() {
    let opts = SolveOptions::default();
    let mut pl = planner();
    assert_eq!(
        pl.decide(&problem(10.0), &opts, 0.0)
            .unwrap()
            .plan
            .replicas(),
        vec![0, 3]
    );
    // 10.6 req/s: 3 L4 no longer carry it; optimum 1 A10 + 2 L4. The A10 comes at once, the
    // third L4 stays until the optimum has wanted 2 for 60 s.
    let d = pl.decide(&problem(10.6), &opts, 10.0).unwrap();
    assert!(d.changed);
    assert_eq!(d.plan.replicas(), vec![1, 3]);
    assert_eq!(d.plan.method, Method::Kept);
    let d = pl.decide(&problem(10.6), &opts, 40.0).unwrap();
    assert!(!d.changed, "{}", d.reason);
    assert_eq!(d.plan.replicas(), vec![1, 3]);
    // 1 A10 + 3 L4 ($3.70/h) is not within 10 % of $2.80/h: after 60 s the L4 goes.
    let d = pl.decide(&problem(10.6), &opts, 70.0).unwrap();
    assert!(d.changed, "{}", d.reason);
    assert_eq!(d.plan.replicas(), vec![1, 2]);
    assert!(d.reason.contains("L4 3→2 after 60 s"), "{}", d.reason);
    assert_eq!(pl.current().unwrap().replicas(), vec![1, 2]);
}

#[test]
fn a_delayed_decrease_goes_to_the_most_asked_for_meanwhile() {
    let opts = SolveOptions::default();
    let mut pl = planner();
    let a10 = |rate: f64| {
        let mut p = problem(rate);
        p.gpus.truncate(1);
        p
    };
    assert_eq!(
        pl.decide(&a10(20.0), &opts, 0.0).unwrap().plan.replicas(),
        vec![5]
    );
    // Demand falls to 2 req/s (1 A10), is back at 7 (2 A10) at 30 s, then 2 again.
    let d = pl.decide(&a10(2.0), &opts, 0.0).unwrap();
    assert!(
        !d.changed && d.reason.contains("A10 stays at 5"),
        "{}",
        d.reason
    );
    assert_eq!(
        pl.decide(&a10(7.0), &opts, 30.0).unwrap().plan.replicas(),
        vec![5]
    );
    let d = pl.decide(&a10(2.0), &opts, 61.0).unwrap();
    assert!(
        d.changed && d.reason.contains("A10 5→2 after 61 s"),
        "{}",
        d.reason
    );
    assert_eq!(d.plan.replicas(), vec![2]);
    // The next decrease counts from then.
    assert_eq!(
        pl.decide(&a10(2.0), &opts, 100.0).unwrap().plan.replicas(),
        vec![2]
    );
    let d = pl.decide(&a10(2.0), &opts, 121.0).unwrap();
    assert_eq!(d.plan.replicas(), vec![1]);
    // A swap to a cheaper type: nothing moves before the delay, then both at once.
    let mut pl = planner();
    assert_eq!(
        pl.decide(&problem(20.0), &opts, 0.0)
            .unwrap()
            .plan
            .replicas(),
        vec![5, 0]
    );
    let d = pl.decide(&problem(2.0), &opts, 1.0).unwrap();
    assert_eq!(d.plan.replicas(), vec![5, 0]);
    let d = pl.decide(&problem(2.0), &opts, 61.0).unwrap();
    assert_eq!(d.plan.replicas(), vec![0, 1]);
    // Demand beyond what runs: the increase is immediate.
    let d = pl.decide(&problem(9.0), &opts, 62.0).unwrap();
    assert!(d.changed, "{}", d.reason);
    assert!(
        d.plan.gpus[0].replicas + d.plan.gpus[1].replicas >= 3,
        "{:?}",
        d.plan.replicas()
    );
}

#[test]
fn errors_leave_the_plan_in_force() {
    let opts = SolveOptions::default();
    let mut pl = planner();
    pl.decide(&problem(5.0), &opts, 0.0).unwrap();
    let before = pl.current().unwrap().clone();
    let mut bad = problem(5.0);
    bad.demand.rates[0] = f64::NAN;
    assert!(pl.decide(&bad, &opts, 1.0).is_err());
    assert!(pl.decide(&problem(5.0), &opts, f64::NAN).is_err());
    assert_eq!(pl.current(), Some(&before));
    // A different option list starts over.
    let mut other = problem(5.0);
    other.gpus.truncate(1);
    let d = pl.decide(&other, &opts, 2.0).unwrap();
    assert!(d.changed && d.reason.contains("options changed"));
    assert_eq!(d.plan.gpus.len(), 1);
}

#[test]
fn a_new_cap_below_the_running_count_applies_at_once() {
    let opts = SolveOptions::default();
    let mut pl = planner();
    assert_eq!(
        pl.decide(&problem(10.0), &opts, 0.0)
            .unwrap()
            .plan
            .replicas(),
        vec![0, 3]
    );
    let mut capped = problem(10.0);
    capped.gpus[1].max_replicas = Some(2);
    let d = pl.decide(&capped, &opts, 1.0).unwrap();
    assert!(d.changed, "{}", d.reason);
    assert_eq!(d.plan.replicas(), vec![1, 2]);
    assert!(
        d.reason.contains("A10 0→1 at once") && d.reason.contains("L4 3→2"),
        "{}",
        d.reason
    );
}
