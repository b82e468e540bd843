//! The heterogeneous-GPU study of issue 14: for each workload (the Azure conversation and code
//! traces, a ShareGPT-shaped generator) at each total rate, the optimizer's cheapest GPU mix
//! against the best single GPU type, both sized for the same SLO from the same profiles, then
//! both plans replayed in virtual time on the same requests (plan routing across types,
//! least-request within a type) to check the SLO is met and at what cost.
//!
//! Run (release; the profiles are the committed sim-measured ones):
//! `cargo run --release -p brix-bench --example optimizer_study -- OUT [--rates 0.5,2,8,32]
//! [--duration 600] [--workloads conv,code,sharegpt] [--profiles DIR] [--traces DIR] [--utilisation 0.9]
//! [--seed 1]`. Writes `OUT/results.csv` (one row per plan), `OUT/singles.csv` (every single
//! type's size and cost), `OUT/plans/<case>-{mix,single}.json` and prints a table.
//!
//! Replay: each request's GPU type is drawn (seeded) from the plan's shares for its prompt
//! length and `max_tokens`, exactly as the gateway's plan stage draws it
//! (`PlanRoutes::shares`); each type's requests then run on a `brix_bench::vsim` fleet of that
//! type's replicas with least-request routing. In a static fleet every planned replica is
//! ready, so the readiness discount of the plan stage is 1 and this equals one mixed fleet.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use brix_bench::vsim::{self, Release, RouteKey, SimConfig, SimStrategy};
use brix_bench::workload::{self, Arrival, WorkRequest, Workload};
use brix_optimizer::{Demand, GpuOption, Grid, Plan, Problem, Profile, Slo, SolveOptions};
use brix_sim::{Catalog, ModelProfile};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

const MODEL: &str = "llama-3-8b";
const GPUS: &[&str] = &["L4", "A10", "L40S", "A100-80GB", "H100"];

/// ShareGPT's published mean lengths (vLLM paper, first turns: 161 prompt / 338 output
/// tokens); no ShareGPT text is shipped here, so the `synthetic` generator draws lengths
/// around them (normal, spread as large as the mean, at least 1 token).
const SHAREGPT: &str = "prompt=161,prompt_std=160,output=338,output_std=300";

struct Args {
    out: PathBuf,
    rates: Vec<f64>,
    duration_s: f64,
    workloads: Vec<String>,
    profiles: PathBuf,
    traces: PathBuf,
    utilisation: f64,
    seed: u64,
}

fn parse_args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let mut a = Args {
        out: PathBuf::new(),
        rates: vec![0.5, 2.0, 8.0, 32.0],
        duration_s: 600.0,
        workloads: ["conv", "code", "sharegpt"].map(String::from).to_vec(),
        profiles: PathBuf::from(format!("crates/optimizer/profiles/{MODEL}")),
        traces: PathBuf::from("../shared/traces"),
        utilisation: 0.9,
        seed: 1,
    };
    let mut out = None;
    while let Some(arg) = it.next() {
        let mut val = || it.next().ok_or(format!("{arg} needs a value"));
        let num = |s: String| s.parse::<f64>().map_err(|e| format!("{s}: {e}"));
        match arg.as_str() {
            "--rates" => {
                a.rates = val()?
                    .split(',')
                    .map(|s| num(s.to_string()))
                    .collect::<Result<_, _>>()?
            }
            "--duration" => a.duration_s = num(val()?)?,
            "--workloads" => a.workloads = val()?.split(',').map(String::from).collect(),
            "--profiles" => a.profiles = PathBuf::from(val()?),
            "--traces" => a.traces = PathBuf::from(val()?),
            "--utilisation" => a.utilisation = num(val()?)?,
            "--seed" => a.seed = val()?.parse().map_err(|e| format!("--seed: {e}"))?,
            s if !s.starts_with("--") && out.is_none() => out = Some(PathBuf::from(s)),
            s => return Err(format!("unknown argument {s}")),
        }
    }
    a.out = out.ok_or("usage: optimizer_study OUT [--rates ..] [--duration S] ...")?;
    if a.rates.iter().any(|r| !(r.is_finite() && *r > 0.0))
        || a.duration_s.is_nan()
        || a.duration_s <= 0.0
    {
        return Err("rates and duration must be positive".into());
    }
    Ok(a)
}

/// The requests of one case: `name` at `rate` req/s over at most `duration_s` seconds.
/// Traces keep their own burstiness (timestamps scaled to the rate, from the trace's start);
/// the generator gets Poisson arrivals. Returns the workload and its window in seconds.
fn case_workload(
    traces: &Path,
    name: &str,
    rate: f64,
    duration_s: f64,
    max_len: u32,
    seed: u64,
) -> Result<(Workload, f64), String> {
    let (mut w, arrival) = match name {
        "conv" | "code" => {
            let path = traces.join(format!("azure_llm_2023_{name}.csv"));
            let path = path.display().to_string();
            let w = workload::load(&path, seed).map_err(|e| e.to_string())?;
            let span = w.requests.last().map_or(0.0, |r| r.at_s);
            if span <= 0.0 {
                return Err(format!("{path}: no time span"));
            }
            let native = w.requests.len() as f64 / span;
            (
                w,
                Arrival::Trace {
                    scale: native / rate,
                },
            )
        }
        "sharegpt" => {
            let n = (rate * duration_s * 1.2).ceil() as u64 + 20;
            let spec = format!("synthetic:requests={n},{SHAREGPT},max_len={max_len}");
            let w = workload::load(&spec, seed).map_err(|e| e.to_string())?;
            (w, Arrival::Poisson { rate })
        }
        other => return Err(format!("unknown workload {other} (conv, code, sharegpt)")),
    };
    vsim::fit_context(&mut w, max_len);
    let w = workload::schedule(w, &arrival, seed, Some(duration_s), None);
    let last = w.requests.last().map_or(0.0, |r| r.at_s);
    // A trace shorter than the window at this rate ends early: its window is what it spans.
    let window = if last < duration_s * 0.98 {
        last.max(1.0)
    } else {
        duration_s
    };
    Ok((w, window))
}

/// What a plan did on replay.
#[derive(Default)]
struct Replay {
    requests: usize,
    ok: usize,
    attainment: f64,
    p90_ttft_ms: f64,
    p90_tpot_ms: f64,
    /// Per type: (requests, attainment).
    per_type: BTreeMap<String, (usize, f64)>,
    /// Requests whose input tick had no planned demand (spread over all types by replicas).
    unplanned: usize,
    wall_s: f64,
}

fn nearest_rank(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    brix_bench::report::percentile(v, p)
}

/// Replays `w` on the fleet `plan` sizes (see the module doc).
fn replay(
    w: &Workload,
    plan: &Plan,
    catalog: &Catalog,
    model: &ModelProfile,
    slo: &Slo,
    seed: u64,
) -> Result<Replay, String> {
    let t0 = Instant::now();
    let routes = plan.routes();
    let groups = &plan.gpus;
    let total: f64 = groups.iter().map(|g| f64::from(g.replicas)).sum();
    let mut rng = SmallRng::seed_from_u64(seed ^ 0x5eed_0f91);
    let mut split: Vec<Vec<WorkRequest>> = vec![Vec::new(); groups.len()];
    let mut shares = vec![0.0; groups.len()];
    let mut unplanned = 0;
    for r in &w.requests {
        let prompt = u32::try_from(r.prompt.len()).unwrap_or(u32::MAX);
        routes.shares_into(prompt, Some(r.output_tokens), &mut shares);
        if shares.iter().all(|s| *s <= 0.0) {
            unplanned += 1;
            for (s, g) in shares.iter_mut().zip(groups) {
                *s = f64::from(g.replicas) / total;
            }
        }
        let mut x: f64 = rng.random::<f64>() * shares.iter().sum::<f64>();
        let mut pick = shares.iter().rposition(|s| *s > 0.0).unwrap_or(0);
        for (g, s) in shares.iter().enumerate() {
            if x < *s {
                pick = g;
                break;
            }
            x -= s;
        }
        split[pick].push(r.clone());
    }
    let strategy: SimStrategy = "least-request".parse().map_err(|e| format!("{e}"))?;
    let (mut ttft, mut tpot) = (Vec::new(), Vec::new());
    let mut out = Replay {
        unplanned,
        ..Replay::default()
    };
    let mut met_total = 0;
    for (g, mut requests) in groups.iter().zip(split) {
        if requests.is_empty() {
            continue;
        }
        if g.replicas == 0 {
            return Err(format!(
                "{} requests routed to {} with 0 replicas",
                requests.len(),
                g.name
            ));
        }
        for (i, r) in requests.iter_mut().enumerate() {
            r.id = i as u64;
        }
        let sub = Workload { requests };
        let gpu = catalog.gpu(&g.gpu).map_err(|e| e.to_string())?.clone();
        let mut cfg = SimConfig::new(g.replicas as usize, model.clone(), gpu);
        cfg.seed = seed;
        let keys = vec![RouteKey::default(); sub.requests.len()];
        let run = vsim::run(&sub, &keys, Release::Open, &cfg, &strategy)
            .map_err(|e| format!("{}: {e}", g.name))?;
        let mut met = 0;
        for rec in &run.records {
            out.requests += 1;
            if !rec.ok() {
                continue;
            }
            out.ok += 1;
            let (t, p) = (rec.ttft_ms, rec.tpot_ms);
            if slo.met(t.map(|v| v / 1e3), p.map(|v| v / 1e3), None) {
                met += 1;
            }
            ttft.extend(t);
            tpot.extend(p);
        }
        met_total += met;
        let n = run.records.len();
        out.per_type
            .insert(g.name.clone(), (n, met as f64 / n.max(1) as f64));
    }
    out.attainment = met_total as f64 / out.requests.max(1) as f64;
    out.p90_ttft_ms = nearest_rank(&mut ttft, slo.percentile);
    out.p90_tpot_ms = nearest_rank(&mut tpot, slo.percentile);
    out.wall_s = t0.elapsed().as_secs_f64();
    Ok(out)
}

fn load_options(
    dir: &Path,
    catalog: &Catalog,
    model: &ModelProfile,
) -> Result<Vec<GpuOption>, String> {
    GPUS.iter()
        .map(|name| {
            let path = dir.join(format!("{name}.json"));
            let profile = Profile::load(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            let gpu = catalog.gpu(name).map_err(|e| e.to_string())?;
            Ok(GpuOption {
                name: (*name).to_string(),
                cost_per_hour: gpu.price_per_hour * f64::from(model.tensor_parallel_size),
                profile,
                min_replicas: 0,
                max_replicas: None,
            })
        })
        .collect()
}

fn replicas(plan: &Plan) -> String {
    let s: Vec<String> = plan
        .gpus
        .iter()
        .filter(|g| g.replicas > 0)
        .map(|g| format!("{}:{}", g.name, g.replicas))
        .collect();
    s.join("+")
}

fn per_type(r: &Replay) -> String {
    let s: Vec<String> = r
        .per_type
        .iter()
        .map(|(n, (k, a))| format!("{n}:{k}@{:.1}%", 100.0 * a))
        .collect();
    s.join(" ")
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a = parse_args()?;
    let catalog = Catalog::builtin();
    let model = catalog.model(MODEL)?.clone();
    let options = load_options(&a.profiles, &catalog, &model)?;
    let slo = options[0].profile.slos.clone().unwrap_or_default();
    let grid: Grid = options[0].profile.grid();
    std::fs::create_dir_all(a.out.join("plans"))?;
    let mut csv = String::from(
        "workload,rate,window_s,requests,plan,replicas,cost_per_hour,lower_bound,method,solve_ms,\
         saving_pct,replayed,attainment_pct,p90_ttft_ms,p90_tpot_ms,slo_met,unplanned,per_type,replay_wall_s\n",
    );
    let mut singles = String::from("workload,rate,gpu,replicas,cost_per_hour,feasible\n");
    println!(
        "{:<9} {:>5} {:>6} {:<7} {:<28} {:>8} {:>7} {:>8} {:>9} {:>9}",
        "workload",
        "rate",
        "reqs",
        "plan",
        "replicas",
        "$/h",
        "saving",
        "attain",
        "p90ttft",
        "p90tpot"
    );
    let started = Instant::now();
    for name in &a.workloads {
        for &rate in &a.rates {
            let (w, window) = case_workload(&a.traces, name, rate, a.duration_s, 8192, a.seed)?;
            let reqs = w.requests.iter().map(|r| {
                (
                    u32::try_from(r.prompt.len()).unwrap_or(u32::MAX),
                    r.output_tokens,
                )
            });
            let demand = Demand::from_requests(grid.clone(), reqs, window);
            let problem = Problem {
                demand,
                gpus: options.clone(),
                budget_per_hour: None,
                utilisation: a.utilisation,
            };
            let mix = brix_optimizer::solve(&problem, &SolveOptions::default())?;
            let mut best: Option<Plan> = None;
            for (g, option) in options.iter().enumerate() {
                match brix_optimizer::single_type(&problem, g) {
                    Ok(p) => {
                        writeln!(
                            singles,
                            "{name},{rate},{},{},{:.2},yes",
                            option.name, p.gpus[g].replicas, p.cost_per_hour
                        )?;
                        if best
                            .as_ref()
                            .is_none_or(|b| p.cost_per_hour < b.cost_per_hour)
                        {
                            best = Some(p);
                        }
                    }
                    Err(e) => {
                        let why = e.to_string().replace([',', '\n'], ";");
                        writeln!(singles, "{name},{rate},{},,,no: {why}", option.name)?;
                    }
                }
            }
            let best = best.ok_or("no single GPU type can serve this workload")?;
            let saving = 100.0 * (1.0 - mix.cost_per_hour / best.cost_per_hour);
            let case = format!("{name}-{rate}");
            for (kind, plan) in [("mix", &mix), ("single", &best)] {
                let path = a.out.join("plans").join(format!("{case}-{kind}.json"));
                std::fs::write(&path, serde_json::to_string_pretty(plan)? + "\n")?;
                let r = replay(&w, plan, &catalog, &model, &slo, a.seed)?;
                let met = r.attainment * 100.0 >= slo.percentile;
                let sv = if kind == "mix" { saving } else { 0.0 };
                writeln!(
                    csv,
                    "{name},{rate},{window:.1},{},{kind},{},{:.2},{:.2},{:?},{:.1},{sv:.1},{},{:.2},{:.0},{:.1},{met},{},{},{:.1}",
                    w.requests.len(),
                    replicas(plan),
                    plan.cost_per_hour,
                    plan.lower_bound,
                    plan.method,
                    plan.solve_ms,
                    r.requests,
                    100.0 * r.attainment,
                    r.p90_ttft_ms,
                    r.p90_tpot_ms,
                    r.unplanned,
                    per_type(&r),
                    r.wall_s,
                )?;
                println!(
                    "{name:<9} {rate:>5} {:>6} {kind:<7} {:<28} {:>8.2} {:>6.1}% {:>7.1}% {:>9.0} {:>9.1}{}",
                    w.requests.len(),
                    replicas(plan),
                    plan.cost_per_hour,
                    sv,
                    100.0 * r.attainment,
                    r.p90_ttft_ms,
                    r.p90_tpot_ms,
                    if met { "" } else { "  SLO MISSED" },
                );
                std::fs::write(a.out.join("results.csv"), &csv)?;
                std::fs::write(a.out.join("singles.csv"), &singles)?;
            }
        }
    }
    eprintln!("study: {:.1} s wall", started.elapsed().as_secs_f64());
    Ok(())
}
