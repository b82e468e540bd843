//! The plan stage of [`Fleet::decide`]: group shares followed, discounted by readiness, and
//! the fallback over every pod.

use std::sync::Arc;

use rand::SeedableRng;
use rand::rngs::SmallRng;

use super::{CoreConfig, Fleet};
use crate::decision::Fallback;
use crate::plan::{PlanRoutes, plan_tokens};
use crate::pod::RouteRequest;
use crate::prefix::PrefixConfig;
use crate::strategy::Weighted;

/// Two input ticks (128, 1024), one output tick (64): short prompts split `short` between the
/// groups, long ones all to the last group.
fn plan(groups: &[&str], planned: &[u32], short: &[f64]) -> PlanRoutes {
    let mut long = vec![0.0; groups.len()];
    long[groups.len() - 1] = 1.0;
    PlanRoutes {
        inputs: vec![128, 1024],
        outputs: vec![64],
        groups: groups.iter().map(|g| g.to_string()).collect(),
        planned: planned.to_vec(),
        weights: vec![short.to_vec(), long],
        demand: vec![3.0, 1.0],
    }
}

/// `n` pods named `p-i`, all in rotation, in the given groups.
fn fleet(groups: &[Option<&str>]) -> Fleet {
    let names: Vec<(String, String)> = (0..groups.len())
        .map(|i| (format!("p-{i}"), format!("10.0.0.{i}:8000")))
        .collect();
    let mut f = Fleet::new(&names, PrefixConfig::default(), CoreConfig::default());
    for (i, g) in groups.iter().enumerate() {
        f.probe(i, true, 0.0);
        f.set_group(i, *g);
    }
    f
}

fn req(tokens: u32) -> RouteRequest<'static> {
    RouteRequest {
        prompt_tokens: Some(tokens),
        max_tokens: Some(64),
        ..RouteRequest::default()
    }
}

/// Decisions for `n` requests of `tokens`: the pods chosen and the fallbacks seen. Each
/// request is begun and ended at once, so least-request sees an idle fleet.
fn spread(f: &mut Fleet, tokens: u32, n: usize, seed: u64) -> (Vec<usize>, Vec<Option<Fallback>>) {
    let strategy: Weighted = "least-request".parse().unwrap_or_else(|e| panic!("{e}"));
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut counts = vec![0; f.len()];
    let mut fallbacks = Vec::new();
    for _ in 0..n {
        let d = f
            .decide(&strategy, &req(tokens), 1.0, &mut rng)
            .unwrap_or_else(|e| panic!("{e}"));
        counts[d.pod] += 1;
        fallbacks.push(d.fallback);
    }
    (counts, fallbacks)
}

/// Whether `k` successes of `n` fit probability `p` within 5 standard deviations.
fn binomial_ok(k: usize, n: usize, p: f64) -> bool {
    let (k, n) = (k as f64, n as f64);
    let sd = (n * p * (1.0 - p)).sqrt();
    (k - n * p).abs() <= 5.0 * sd.max(1.0)
}

#[test]
fn shares_are_followed_and_the_strategy_routes_within_the_group() {
    let mut f = fleet(&[Some("A"), Some("B"), Some("A"), Some("B")]);
    f.set_plan(Some(Arc::new(plan(&["A", "B"], &[2, 2], &[0.7, 0.3]))));
    let n = 4000;
    let (counts, fallbacks) = spread(&mut f, 120, n, 1);
    let a = counts[0] + counts[2];
    assert!(binomial_ok(a, n, 0.7), "A got {a} of {n}: {counts:?}");
    // Least-request within A and B alternates their two idle pods evenly (random ties).
    assert!(binomial_ok(counts[0], a, 0.5), "{counts:?}");
    assert!(fallbacks.iter().all(Option::is_none));
    // Long prompts (1000 tokens: the 1024 tick) all go to B.
    let (counts, _) = spread(&mut f, 1000, 500, 2);
    assert_eq!(counts[0] + counts[2], 0, "{counts:?}");
    assert_eq!(counts[1] + counts[3], 500);
}

#[test]
fn a_group_short_of_its_planned_replicas_takes_a_smaller_share() {
    // A is planned 4 replicas and has 2: its half of the shape becomes a quarter, so A takes
    // 0.25 / (0.25 + 0.5) = 1/3 of it.
    let mut f = fleet(&[Some("A"), Some("A"), Some("B"), Some("B")]);
    f.set_plan(Some(Arc::new(plan(&["A", "B"], &[4, 2], &[0.5, 0.5]))));
    let n = 3000;
    let (counts, _) = spread(&mut f, 128, n, 3);
    let a = counts[0] + counts[1];
    assert!(binomial_ok(a, n, 1.0 / 3.0), "A got {a} of {n}");
    // A third replica of A joins: 3 of 4 → 0.375 / 0.875.
    let i = f.add("p-4", "10.0.0.4:8000");
    f.probe(i, true, 1.0);
    f.set_group(i, Some("A"));
    let (counts, _) = spread(&mut f, 128, n, 4);
    let a = counts[0] + counts[1] + counts[4];
    assert!(binomial_ok(a, n, 0.375 / 0.875), "A got {a} of {n}");
}

#[test]
fn a_shape_without_a_ready_group_falls_back_to_every_pod() {
    // B's pods are not in rotation: long prompts (planned on B only) go anywhere, reported.
    let names: Vec<(String, String)> = (0..4)
        .map(|i| (format!("p-{i}"), format!("10.0.0.{i}:8000")))
        .collect();
    let mut f = Fleet::new(&names, PrefixConfig::default(), CoreConfig::default());
    for (i, g) in ["A", "A", "B", "B"].iter().enumerate() {
        f.set_group(i, Some(g));
    }
    f.probe(0, true, 0.0);
    f.probe(1, true, 0.0);
    f.set_plan(Some(Arc::new(plan(&["A", "B"], &[2, 2], &[0.5, 0.5]))));
    let (counts, fallbacks) = spread(&mut f, 1024, 100, 5);
    assert_eq!(counts[0] + counts[1], 100);
    assert!(fallbacks.iter().all(|f| *f == Some(Fallback::PlanGroup)));
    // Short prompts: B's half is discounted to 0, A takes all, no fallback.
    let (counts, fallbacks) = spread(&mut f, 128, 100, 6);
    assert_eq!(counts[0] + counts[1], 100);
    assert!(fallbacks.iter().all(Option::is_none));
    // A shape with no planned demand (a prompt nearest no planned cell: rows zero).
    let mut p = plan(&["A", "B"], &[2, 2], &[0.5, 0.5]);
    p.demand = vec![0.0, 1.0];
    p.weights[0] = vec![0.0, 0.0];
    f.set_plan(Some(Arc::new(p)));
    let (_, fallbacks) = spread(&mut f, 100, 10, 7);
    assert!(fallbacks.iter().all(|f| *f == Some(Fallback::PlanGroup)));
}

#[test]
fn pods_outside_the_plan_serve_only_the_fallback() {
    let mut f = fleet(&[Some("A"), None, Some("C"), Some("B")]);
    f.set_plan(Some(Arc::new(plan(&["A", "B"], &[1, 1], &[1.0, 0.0]))));
    let (counts, _) = spread(&mut f, 128, 200, 8);
    assert_eq!(counts, vec![200, 0, 0, 0]);
    let (counts, _) = spread(&mut f, 1024, 200, 9);
    assert_eq!(counts, vec![0, 0, 0, 200]);
    // Without the plan every pod serves again, groups or not.
    f.set_plan(None);
    let (counts, fallbacks) = spread(&mut f, 128, 400, 10);
    assert!(counts.iter().all(|&c| c > 0), "{counts:?}");
    assert!(fallbacks.iter().all(Option::is_none));
}

#[test]
fn groups_without_a_plan_change_no_decision() {
    let mut plain = fleet(&[None, None, None]);
    let mut grouped = fleet(&[Some("B"), Some("A"), Some("B")]);
    let strategy: Weighted = "least-request".parse().unwrap_or_else(|e| panic!("{e}"));
    let (mut r1, mut r2) = (SmallRng::seed_from_u64(11), SmallRng::seed_from_u64(11));
    for k in 0..60 {
        let a = plain.decide(&strategy, &req(100 + k), 1.0, &mut r1);
        let b = grouped.decide(&strategy, &req(100 + k), 1.0, &mut r2);
        assert_eq!(a, b, "request {k}");
        let i = a.unwrap_or_else(|e| panic!("{e}")).pod;
        plain.begin(i);
        grouped.begin(i);
    }
}

#[test]
fn pick_serves_a_driver_without_a_fleet() {
    let p = plan(&["A", "B"], &[2, 2], &[0.25, 0.75]);
    let mut rng = SmallRng::seed_from_u64(12);
    let n = 2000;
    let b = (0..n)
        .filter(|_| p.pick(128, Some(64), &[2, 2], &mut rng) == Some(1))
        .count();
    assert!(binomial_ok(b, n, 0.75), "B got {b} of {n}");
    assert_eq!(p.pick(128, Some(64), &[2, 0], &mut rng), Some(0));
    assert_eq!(p.pick(1024, None, &[2, 0], &mut rng), None);
    assert_eq!(p.group("B"), Some(1));
    assert_eq!(p.group("C"), None);
}

#[test]
fn plan_tokens_reads_bytes_as_a_quarter_token_each() {
    let r = RouteRequest {
        prompt_units: 4000,
        ..RouteRequest::default()
    };
    assert_eq!(plan_tokens(&r), 1000);
    let r = RouteRequest {
        prompt_units: 4000,
        prompt_tokens: Some(700),
        ..RouteRequest::default()
    };
    assert_eq!(plan_tokens(&r), 700);
}

#[test]
fn an_exact_output_uses_its_own_bucket_and_a_bound_the_marginal() {
    use crate::plan::OutputHint;
    // One input tick, outputs 16 and 512: short outputs planned on `small` (3 req/s), long
    // ones on `big` (1 req/s).
    let p = PlanRoutes {
        inputs: vec![256],
        outputs: vec![16, 512],
        groups: vec!["small".into(), "big".into()],
        planned: vec![1, 1],
        weights: vec![vec![1.0, 0.0], vec![0.0, 1.0]],
        demand: vec![3.0, 1.0],
    };
    // A long answer known to be long goes where long answers were planned.
    assert_eq!(p.shares(256, OutputHint::Exactly(512)), vec![0.0, 1.0]);
    assert_eq!(p.shares(256, OutputHint::Exactly(16)), vec![1.0, 0.0]);
    // Only bounded: the planned mix of every output up to the bound.
    assert_eq!(p.shares(256, OutputHint::AtMost(512)), vec![0.75, 0.25]);
    assert_eq!(p.shares(256, Some(512)), vec![0.75, 0.25]);
    assert_eq!(p.shares(256, OutputHint::Unknown), vec![0.75, 0.25]);
    // An exact output in a bucket without planned demand falls back to the bound.
    let mut q = p.clone();
    q.demand = vec![3.0, 0.0];
    assert_eq!(q.shares(256, OutputHint::Exactly(512)), vec![1.0, 0.0]);
    // The request's own hint: exact only when it says so.
    let r = RouteRequest {
        max_tokens: Some(512),
        output_exact: true,
        ..RouteRequest::default()
    };
    assert_eq!(r.output_hint(), OutputHint::Exactly(512));
    let r = RouteRequest {
        max_tokens: Some(512),
        ..RouteRequest::default()
    };
    assert_eq!(r.output_hint(), OutputHint::AtMost(512));
}
