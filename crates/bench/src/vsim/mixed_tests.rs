//! Mixed fleets: deterministic, routed by a plan's shares, a plan's replay priced and scored.

use std::sync::Arc;

use brix_optimizer::{Demand, Grid, Method, Plan, PlanGpu, Slo};
use brix_router::PlanRoutes;
use brix_sim::{Catalog, ModelProfile};

use super::*;
use crate::workload::WorkRequest;

fn catalog() -> (Catalog, ModelProfile) {
    let c = Catalog::builtin();
    let m = c
        .model("llama-3-8b")
        .unwrap_or_else(|e| panic!("{e}"))
        .clone();
    (c, m)
}

fn mix(spec: &str) -> Vec<GroupConfig> {
    let (c, m) = catalog();
    let spec: MixSpec = spec.parse().unwrap_or_else(|e| panic!("{e}"));
    spec.groups(&m, &c).unwrap_or_else(|e| panic!("{e}"))
}

/// `n` requests at 4/s alternating short (100-token) and long (2,000-token) prompts.
fn short_and_long(n: usize) -> Workload {
    let requests = (0..n)
        .map(|i| {
            let len = if i % 2 == 0 { 100 } else { 2000 };
            WorkRequest {
                id: i as u64,
                at_s: i as f64 / 4.0,
                session: None,
                prompt: (0..len).map(|k| (k * 7 + i as u32 * 13) % 2000).collect(),
                output_tokens: 16,
            }
        })
        .collect();
    Workload { requests }
}

/// Routes on two input ticks (128, 2048) and one output tick (16): short prompts to the
/// first group, long ones to the second.
fn split_routes(groups: [&str; 2], planned: [u32; 2]) -> PlanRoutes {
    PlanRoutes {
        inputs: vec![128, 2048],
        outputs: vec![16],
        groups: groups.iter().map(|g| g.to_string()).collect(),
        planned: planned.to_vec(),
        weights: vec![vec![1.0, 0.0], vec![0.0, 1.0]],
        demand: vec![2.0, 2.0],
    }
}

fn run_mixed(w: &Workload, cfg: &SimConfig, s: &str) -> SimRun {
    let keys = route_keys(w, 128);
    let strategy: SimStrategy = s.parse().unwrap_or_else(|e| panic!("{e}"));
    run(w, &keys, Release::Open, cfg, &strategy).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn a_mixed_fleet_is_deterministic_and_names_engines_by_group() {
    let (_, m) = catalog();
    let cfg = SimConfig::mixed(m, mix("A10:2,H100:1"), None).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.engines, 3);
    let w = short_and_long(40);
    let a = run_mixed(&w, &cfg, "least-request");
    let b = run_mixed(&w, &cfg, "least-request");
    assert_eq!(a.records, b.records);
    let names: Vec<&str> = a.engines.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["A10-0", "A10-1", "H100-0"]);
    assert_eq!(a.groups.len(), 2);
    let served: u64 = a.groups.iter().map(|g| g.requests).sum();
    assert_eq!(served, 40);
    assert!(a.records.iter().all(|r| r.ok()));
    // The H100 is faster: the same least-request spread keeps it less busy per request.
    let per_request = |g: &GroupReport| g.busy_s / g.requests.max(1) as f64;
    assert!(
        per_request(&a.groups[1]) < per_request(&a.groups[0]),
        "{:?}",
        a.groups
    );
    // Billed at each GPU's price: 2 × A10 + 1 × H100 per hour.
    let c = Catalog::builtin();
    let price = |g: &str| c.gpu(g).map(|g| g.price_per_hour).unwrap_or(f64::NAN);
    let hourly: f64 = a.groups.iter().map(|g| g.cost_per_hour).sum();
    assert!((hourly - (2.0 * price("A10") + price("H100"))).abs() < 1e-9);
}

#[test]
fn a_plan_sends_short_prompts_to_one_group_and_long_ones_to_the_other() {
    let (_, m) = catalog();
    let routes = Arc::new(split_routes(["A10", "H100"], [2, 1]));
    let cfg =
        SimConfig::mixed(m, mix("A10:2,H100:1"), Some(routes)).unwrap_or_else(|e| panic!("{e}"));
    let w = short_and_long(40);
    for s in ["least-request", "prefix-cache", "random"] {
        let run = run_mixed(&w, &cfg, s);
        for (r, req) in run.records.iter().zip(&w.requests) {
            let pod = r.target_pod.as_deref().unwrap_or("");
            let want = if req.prompt.len() < 1000 {
                "A10-"
            } else {
                "H100-"
            };
            assert!(
                pod.starts_with(want),
                "{s}: {} tokens on {pod}",
                req.prompt.len()
            );
        }
        assert!(
            !run.fallbacks.contains_key("plan_group"),
            "{s}: {:?}",
            run.fallbacks
        );
        assert_eq!((run.groups[0].requests, run.groups[1].requests), (20, 20));
    }
    // Swapped routes move the shapes.
    let (_, m) = catalog();
    let routes = Arc::new(split_routes(["H100", "A10"], [1, 2]));
    let cfg =
        SimConfig::mixed(m, mix("A10:2,H100:1"), Some(routes)).unwrap_or_else(|e| panic!("{e}"));
    let run = run_mixed(&w, &cfg, "least-request");
    let first = run.records[0].target_pod.as_deref().unwrap_or("");
    assert!(first.starts_with("H100-"), "{first}");
}

fn hand_plan() -> Plan {
    let grid = Grid {
        inputs: vec![128, 2048],
        outputs: vec![16],
    };
    let gpu = |name: &str, replicas, cost| PlanGpu {
        name: name.to_string(),
        gpu: name.to_string(),
        replicas,
        cost_per_replica: cost,
        load: 0.0,
    };
    Plan {
        gpus: vec![
            gpu("L4", 2, 0.8),
            gpu("A100-80GB", 1, 3.0),
            gpu("H100", 0, 5.0),
        ],
        assign: vec![vec![1.0, 0.0, 0.0], vec![0.0, 1.0, 0.0]],
        demand: Demand {
            grid,
            rates: vec![2.0, 2.0],
        },
        cost_per_hour: 4.6,
        lower_bound: 4.6,
        method: Method::Optimal,
        solve_ms: 0.0,
        nodes: 0,
        notes: Vec::new(),
    }
}

#[test]
fn replaying_a_plan_prices_its_replicas_for_the_run_and_scores_the_slo() {
    let (c, m) = catalog();
    let plan = hand_plan();
    let routes = PlanRoutes {
        groups: vec!["L4".into(), "A100-80GB".into(), "H100".into()],
        planned: vec![2, 1, 0],
        weights: vec![vec![1.0, 0.0, 0.0], vec![0.0, 1.0, 0.0]],
        ..split_routes(["L4", "A100-80GB"], [2, 1])
    };
    let w = short_and_long(40);
    let strategy: SimStrategy = "least-request".parse().unwrap_or_else(|e| panic!("{e}"));
    let loose = Slo {
        percentile: 90.0,
        ttft: Some(30.0),
        tpot: Some(1.0),
        e2e: None,
    };
    let r = replay_routes(&w, &plan, routes.clone(), &m, &c, &strategy, &loose)
        .unwrap_or_else(|e| panic!("{e}"));
    // Groups: the options with replicas, named and priced as the plan says.
    let names: Vec<&str> = r.run.groups.iter().map(|g| g.name.as_str()).collect();
    assert_eq!(names, ["L4", "A100-80GB"]);
    assert!((r.cost_per_hour - 4.6).abs() < 1e-9, "{}", r.cost_per_hour);
    // Every engine billed for the whole run: 3 engines × T at 4.6 $/h in all.
    let t = r.run.fleet.replica_seconds / 3.0;
    assert!(
        t >= r.run.end_s && t < r.run.end_s + 1.0,
        "{t} vs {}",
        r.run.end_s
    );
    assert!(
        (r.cost_usd - 4.6 * t / 3600.0).abs() < 1e-9,
        "{}",
        r.cost_usd
    );
    let by_group: f64 = r.run.groups.iter().map(|g| g.cost_usd).sum();
    assert!((by_group - r.cost_usd).abs() < 1e-9);
    assert!((r.run.groups[0].cost_usd - 1.6 * t / 3600.0).abs() < 1e-9);
    assert_eq!((r.overall, r.met), (1.0, true));
    assert_eq!(r.attainment, vec![1.0, 1.0]);
    // A TTFT bound no request can meet: nothing attains it.
    let tight = Slo {
        ttft: Some(1e-6),
        ..loose
    };
    let r = replay_routes(&w, &plan, routes, &m, &c, &strategy, &tight)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((r.overall, r.met), (0.0, false));
    assert_eq!(r.attainment, vec![0.0, 0.0]);
}

#[test]
fn replay_plan_follows_the_plans_own_routes() {
    let (c, m) = catalog();
    let plan = hand_plan();
    let w = short_and_long(40);
    let strategy: SimStrategy = "least-request".parse().unwrap_or_else(|e| panic!("{e}"));
    let r = replay_plan(&w, &plan, &m, &c, &strategy, &Slo::default())
        .unwrap_or_else(|e| panic!("{e}"));
    // assign: the 128 tick on L4, the 2048 tick on A100-80GB (H100 has no replica).
    for (rec, req) in r.run.records.iter().zip(&w.requests) {
        let pod = rec.target_pod.as_deref().unwrap_or("");
        let want = if req.prompt.len() < 1000 {
            "L4-"
        } else {
            "A100-80GB-"
        };
        assert!(
            pod.starts_with(want),
            "{} tokens on {pod}",
            req.prompt.len()
        );
    }
    assert!(r.run.fallbacks.is_empty(), "{:?}", r.run.fallbacks);
}

#[test]
fn a_mixed_fleet_refuses_what_it_cannot_combine() {
    let (c, m) = catalog();
    let mut cfg =
        SimConfig::mixed(m.clone(), mix("A10:1,L4:1"), None).unwrap_or_else(|e| panic!("{e}"));
    cfg.schedule = Some("10:1".parse().unwrap_or_else(|e| panic!("{e}")));
    let w = short_and_long(4);
    let keys = route_keys(&w, 128);
    let s = SimStrategy::Router("least-request".parse().unwrap_or_else(|e| panic!("{e}")));
    assert_eq!(
        run(&w, &keys, Release::Open, &cfg, &s).err(),
        Some(SimError::Mixed)
    );
    // A plan needs groups.
    let gpu = c.gpu("A10").unwrap_or_else(|e| panic!("{e}")).clone();
    let mut single = SimConfig::new(2, m.clone(), gpu);
    single.plan = Some(Arc::new(split_routes(["A10", "L4"], [1, 1])));
    assert_eq!(
        run(&w, &keys, Release::Open, &single, &s).err(),
        Some(SimError::Mixed)
    );
    // A plan with no replica has no fleet.
    let mut plan = hand_plan();
    plan.gpus.iter_mut().for_each(|g| g.replicas = 0);
    assert!(matches!(
        plan_fleet(&plan, split_routes(["L4", "H100"], [0, 0]), &m, &c),
        Err(ReplayError::Plan(_))
    ));
}

#[test]
fn mix_specs_parse_and_refuse() {
    let ok: MixSpec = "A10:3, H100:1".parse().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(ok.0, vec![("A10".to_string(), 3), ("H100".to_string(), 1)]);
    let a100: MixSpec = "A100-80GB:2".parse().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(a100.0, vec![("A100-80GB".to_string(), 2)]);
    for bad in [
        "",
        "A10",
        "A10:0",
        "A10:x",
        "A10:1,a10:2",
        ":3",
        "A10:99999",
    ] {
        assert!(bad.parse::<MixSpec>().is_err(), "{bad}");
    }
    let (c, m) = catalog();
    let unknown: MixSpec = "B200:1".parse().unwrap_or_else(|e| panic!("{e}"));
    assert!(unknown.groups(&m, &c).is_err());
}

/// A profile on the 2 × 1 grid of [`short_and_long`]: req/s for short and long prompts.
fn profile(gpu: &str, cost: f64, short: f64, long: f64) -> brix_optimizer::Profile {
    brix_optimizer::Profile {
        gpu: gpu.to_string(),
        cost,
        tputs: vec![vec![short, long]],
        indexes: vec![vec![16], vec![128, 2048]],
        created: 0.0,
        slos: Some(Slo::default()),
        model: Some("llama-3-8b".into()),
        method: None,
    }
}

#[test]
fn a_solved_plan_replays_within_its_slo_at_its_price() {
    use brix_optimizer::{GpuOption, Problem, SolveOptions, solve};
    let (c, m) = catalog();
    let w = short_and_long(200);
    let grid = Grid {
        inputs: vec![128, 2048],
        outputs: vec![16],
    };
    let shapes = w
        .requests
        .iter()
        .map(|r| (r.prompt.len() as u32, r.output_tokens));
    let duration = w.requests.len() as f64 / 4.0;
    let demand = Demand::from_requests(grid, shapes, duration);
    // Conservative capacities: the A10 is cheap for short prompts, the H100 needed for long.
    let option = |p: brix_optimizer::Profile| GpuOption {
        name: p.gpu.clone(),
        cost_per_hour: p.cost,
        profile: p,
        min_replicas: 0,
        max_replicas: None,
    };
    let problem = Problem {
        demand,
        gpus: vec![
            option(profile("A10", 0.86, 4.0, 0.5)),
            option(profile("H100", 2.99, 10.0, 2.5)),
        ],
        budget_per_hour: None,
        utilisation: 0.9,
    };
    let plan = solve(&problem, &SolveOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(plan.replicas(), vec![1, 1], "{plan:?}");
    let strategy: SimStrategy = "least-request".parse().unwrap_or_else(|e| panic!("{e}"));
    let r = replay_plan(&w, &plan, &m, &c, &strategy, &Slo::default())
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        r.met,
        "attainment {} per group {:?}",
        r.overall, r.attainment
    );
    assert!((r.cost_per_hour - plan.cost_per_hour).abs() < 1e-9);
    // Each group got the plan's share of each shape (within 5σ).
    for (cell, len) in [(0usize, 100usize), (1, 2000)] {
        let n = w.requests.iter().filter(|q| q.prompt.len() == len).count();
        let on_a10 = r
            .run
            .records
            .iter()
            .zip(&w.requests)
            .filter(|(rec, q)| {
                q.prompt.len() == len
                    && rec
                        .target_pod
                        .as_deref()
                        .is_some_and(|p| p.starts_with("A10-"))
            })
            .count();
        let p = plan.assign[cell][0];
        let sd = (n as f64 * p * (1.0 - p)).sqrt().max(1.0);
        assert!(
            (on_a10 as f64 - n as f64 * p).abs() <= 5.0 * sd,
            "cell {cell}: {on_a10} of {n} on A10, planned {p}"
        );
    }
}
