//! Solve time of the optimizer's ILP (goal, issue 14: 4 GPU types × 100 buckets under 100 ms).
//! Run: `cargo bench -p brix-optimizer --bench solve`; results and machine note:
//! bench/results/optimizer-solver-2026-11-30/README.md. Each case prints its nodes, method, cost
//! and lower bound once before it is timed.
#![expect(missing_docs, reason = "criterion_group! generates undocumented items")]

#[path = "../tests/common/mod.rs"]
mod common;

use std::hint::black_box;

use brix_optimizer::{Problem, SolveOptions, solve};
use criterion::{Criterion, criterion_group, criterion_main};
use rand::{Rng, SeedableRng};

/// Ten options: the five types in two regions (the second 15 % dearer), each capped at 3, with
/// a minimum of 1 on the cheap A10s: many small integer decisions.
fn binary_heavy(total: f64) -> Problem {
    let mut p = common::roofline_problem(5, total, 7);
    let more: Vec<_> = p
        .gpus
        .iter()
        .map(|o| {
            let mut o = o.clone();
            o.name = format!("{}-east", o.name);
            o.cost_per_hour *= 1.15;
            o
        })
        .collect();
    p.gpus.extend(more);
    for o in &mut p.gpus {
        o.max_replicas = Some(3);
    }
    p.gpus[1].min_replicas = 1;
    p
}

/// Eight options (the five types, three of them also in a 10 % dearer region) on a 12 × 12
/// grid (inputs 16 … 32k, outputs 2 … 4k): the size the reference's solver table ends with.
fn large(total: f64) -> Problem {
    let grid = brix_optimizer::Grid::log2(4, 15, 1, 12);
    let mut gpus: Vec<_> = (0..5)
        .map(|k| common::option(common::GPUS[k].0, common::roofline_profile(k, &grid)))
        .collect();
    for k in [1, 2, 4] {
        let mut o = gpus[k].clone();
        o.name = format!("{}-west", o.name);
        o.cost_per_hour *= 1.1;
        o.max_replicas = Some(4);
        gpus[k].max_replicas = Some(6);
        gpus.push(o);
    }
    let mut demand = common::mixed_demand(&grid, total, 5);
    // The longest prompts fit no type within the SLO: leave them out, as a profile would.
    for (i, r) in demand.rates.iter_mut().enumerate() {
        if gpus
            .iter()
            .all(|o| o.profile.capacity(grid.cell_at(i)) == 0.0)
        {
            *r = 0.0;
        }
    }
    Problem {
        demand,
        gpus,
        budget_per_hour: None,
        utilisation: 0.9,
    }
}

fn cases() -> Vec<(String, Problem)> {
    let mut v = Vec::new();
    for total in [5.0, 20.0, 80.0, 300.0] {
        v.push((
            format!("4x100_{total}rps"),
            common::roofline_problem(4, total, 1),
        ));
    }
    v.push(("5x100_80rps".into(), common::roofline_problem(5, 80.0, 2)));
    v.push(("binary_heavy_10x100_30rps".into(), binary_heavy(30.0)));
    v.push(("large_8x144_120rps".into(), large(120.0)));
    v
}

/// Once, untimed by criterion: 200 seeded 4 × 100 instances at 1–400 req/s (log-uniform) with
/// random caps and minimums; prints the slowest solve, the most nodes and the methods seen.
fn sweep(opts: &SolveOptions) {
    let mut rng = rand::rngs::SmallRng::seed_from_u64(99);
    let (mut worst_ms, mut most_nodes, mut methods) =
        (0.0f64, 0u32, std::collections::BTreeMap::new());
    let mut times = Vec::new();
    for seed in 0..200 {
        let total = 10f64.powf(rng.random_range(0.0..2.6));
        let mut p = common::roofline_problem(4, total, seed);
        for o in &mut p.gpus {
            if rng.random_bool(0.3) {
                o.min_replicas = rng.random_range(0..2);
            }
            if rng.random_bool(0.3) {
                o.max_replicas = Some(rng.random_range(o.min_replicas.max(2)..12));
            }
        }
        let t = std::time::Instant::now();
        let r = solve(&p, opts);
        let ms = t.elapsed().as_secs_f64() * 1000.0;
        times.push(ms);
        worst_ms = worst_ms.max(ms);
        let key = match &r {
            Ok(plan) => {
                most_nodes = most_nodes.max(plan.nodes);
                format!("{:?}", plan.method)
            }
            Err(_) => "Infeasible".to_string(),
        };
        *methods.entry(key).or_insert(0) += 1;
    }
    times.sort_by(f64::total_cmp);
    eprintln!(
        "sweep of 200 random 4x100 instances: median {:.1} ms, p90 {:.1} ms, max {worst_ms:.1} ms, most nodes {most_nodes}, {methods:?}",
        times[100], times[180]
    );
}

fn bench(c: &mut Criterion) {
    let opts = SolveOptions::default();
    sweep(&opts);
    for (name, p) in cases() {
        let plan = solve(&p, &opts).expect("the bench instances are feasible");
        eprintln!(
            "{name}: {:?}, {} nodes, ${:.2}/h (lower bound ${:.2}/h), replicas {:?}, {:.1} ms",
            plan.method,
            plan.nodes,
            plan.cost_per_hour,
            plan.lower_bound,
            plan.replicas(),
            plan.solve_ms
        );
        c.bench_function(&format!("solve_{name}"), |b| {
            b.iter(|| solve(black_box(&p), &opts))
        });
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = bench
}
criterion_main!(benches);
