//! Shared by the optimizer's tests and its bench: synthetic but heterogeneous capacity profiles
//! (a roofline-like model of an 8B model on five GPU types) and demand mixes.
#![allow(dead_code)]

use brix_optimizer::{Demand, GpuOption, Grid, Plan, Problem, Profile, Slo};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// (name, TFLOP/s, GB/s, GB, $/h): public datasheet numbers, rounded.
pub const GPUS: [(&str, f64, f64, f64, f64); 5] = [
    ("L4", 121.0, 300.0, 24.0, 0.8),
    ("A10", 125.0, 600.0, 24.0, 1.0),
    ("L40S", 362.0, 864.0, 48.0, 1.9),
    ("A100-80GB", 312.0, 2039.0, 80.0, 3.7),
    ("H100", 989.0, 3350.0, 80.0, 6.0),
];

/// Requests per second one replica sustains for `input` × `output` tokens within TTFT ≤ 2 s
/// and TPOT ≤ 100 ms, by a crude roofline: 16 GB of weights, 128 KiB of KV cache per token,
/// prefill at half the peak FLOP/s, decode steps bound by memory traffic.
pub fn roofline_rate(tflops: f64, gbs: f64, mem_gb: f64, input: u32, output: u32) -> f64 {
    let (i, o) = (f64::from(input), f64::from(output));
    let prefill_s = i * 16e9 / (tflops * 1e12 * 0.5);
    if prefill_s > 1.8 {
        return 0.0;
    }
    let kv_per_req = (i + o) * 131_072.0;
    let by_mem = ((mem_gb - 16.0) * 1e9 * 0.9 / kv_per_req).floor();
    // Step time (weights + the batch's KV) / bandwidth ≤ 100 ms.
    let by_tpot = ((0.1 * gbs * 1e9 - 16e9) / (kv_per_req * 0.5)).floor();
    let batch = by_mem.min(by_tpot).min(256.0);
    if batch < 1.0 {
        return 0.0;
    }
    let step = (16e9 + batch * kv_per_req * 0.5) / (gbs * 1e9);
    batch / (o * step + prefill_s * batch.sqrt())
}

/// The profile of GPU `k` of [`GPUS`] on `grid`.
pub fn roofline_profile(k: usize, grid: &Grid) -> Profile {
    let (gpu, tf, bw, mem, cost) = GPUS[k];
    Profile {
        gpu: gpu.into(),
        cost,
        tputs: grid
            .outputs
            .iter()
            .map(|&o| {
                grid.inputs
                    .iter()
                    .map(|&i| roofline_rate(tf, bw, mem, i, o))
                    .collect()
            })
            .collect(),
        indexes: vec![grid.outputs.clone(), grid.inputs.clone()],
        created: 0.0,
        slos: Some(Slo::default()),
        model: Some("synthetic-8b".into()),
        method: Some("analytic".into()),
    }
}

/// An option from a profile at its own price, unbounded.
pub fn option(name: &str, profile: Profile) -> GpuOption {
    GpuOption {
        name: name.into(),
        cost_per_hour: profile.cost,
        profile,
        min_replicas: 0,
        max_replicas: None,
    }
}

/// A profile on `grid` whose capacity in each cell is `f(cell index)`.
pub fn flat_profile(gpu: &str, cost: f64, grid: &Grid, f: impl Fn(usize) -> f64) -> Profile {
    let n = grid.inputs.len();
    Profile {
        gpu: gpu.into(),
        cost,
        tputs: (0..grid.outputs.len())
            .map(|o| (0..n).map(|i| f(o * n + i)).collect())
            .collect(),
        indexes: vec![grid.outputs.clone(), grid.inputs.clone()],
        created: 0.0,
        slos: None,
        model: None,
        method: None,
    }
}

/// A chat-and-code-like mix over every bucket of `grid` (more short requests, a long tail),
/// `total` req/s, seeded.
pub fn mixed_demand(grid: &Grid, total: f64, seed: u64) -> Demand {
    let mut rng = SmallRng::seed_from_u64(seed);
    let rates = (0..grid.len())
        .map(|i| {
            let c = grid.cell_at(i);
            let shortness = 1.0 / (1.0 + (c.inp + c.out) as f64 / 4.0);
            shortness * rng.random_range(0.2..1.0)
        })
        .collect();
    Demand {
        grid: grid.clone(),
        rates,
    }
    .scaled_to(total)
}

/// The problem of the first `types` GPUs of [`GPUS`] on the default grid at `total` req/s.
pub fn roofline_problem(types: usize, total: f64, seed: u64) -> Problem {
    let grid = Grid::default();
    Problem {
        demand: mixed_demand(&grid, total, seed),
        gpus: (0..types)
            .map(|k| option(GPUS[k].0, roofline_profile(k, &grid)))
            .collect(),
        budget_per_hour: None,
        utilisation: 0.9,
    }
}

/// 2 × 2 buckets: inputs 32, 64; outputs 4, 8.
pub fn tiny() -> Grid {
    Grid::log2(5, 6, 2, 3)
}
/// Every plan invariant: bounds, budget, rows summing to 1 on options that serve the bucket,
/// load within utilisation × replicas, cost = Σ replicas × price.
pub fn check_plan(p: &Problem, plan: &Plan) {
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
