//! `brix optimize plan`: demand (a workload as `brix bench run/sim` read it, a Demand JSON
//! file, or a live gateway's load monitor) + GPU options (built-in or `--profiles DIR`
//! profiles, prices, caps) → `brix_optimizer::solve` → a table, and the plan JSON that
//! `brix bench sim --plan` replays.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use brix_bench::workload::{self, Arrival};
use brix_optimizer::{
    Demand, GpuOption, Grid, Plan, Problem, Profile, SolveOptions, builtin_profile, single_type,
    solve,
};
use clap::Args;

use super::{OptimizeError, parse_named, parse_slo, verify};
use crate::admin_key;

/// The GPU types `plan` chooses from by default: the built-in profiles'.
pub(crate) const DEFAULT_GPUS: &str = "L4,A10,L40S,A100-80GB,H100";

/// Flags of `brix optimize plan`.
#[derive(Debug, Args)]
pub(crate) struct PlanArgs {
    /// A generator spec or a workload/trace file, as `brix bench run/sim --workload` take it.
    #[arg(long, conflicts_with_all = ["demand", "gateway"], required_unless_present_any = ["demand", "gateway"])]
    workload: Option<String>,
    /// Arrivals of the workload (open loop), as `brix bench run`: trace:SCALE (the file's own
    /// times), poisson:RATE, constant:RATE, …; the demand is its requests over its duration.
    #[arg(long, default_value = "trace:1")]
    arrival: String,
    /// Seed of the workload and the arrival times.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Keep only arrivals before this many seconds.
    #[arg(long)]
    duration_s: Option<f64>,
    /// Use at most this many requests of the workload.
    #[arg(long)]
    max_requests: Option<usize>,
    /// A Demand JSON file (`{"grid": …, "rates": […]}`, what the gateway serves).
    #[arg(long, conflicts_with = "gateway")]
    demand: Option<PathBuf>,
    /// A live gateway (`brix up`): its load monitor's demand for --model
    /// (GET /brix/optimizer/demand?model=M, admin-keyed).
    #[arg(long, requires = "model")]
    gateway: Option<String>,
    /// The served model whose demand --gateway reports.
    #[arg(long)]
    model: Option<String>,
    /// Admin key of the gateway (else the key `brix up` generated, from the state directory).
    #[arg(long, env = "BRIX_ADMIN_KEY")]
    admin_key: Option<String>,
    /// Where `brix up` wrote its generated admin key.
    #[arg(long, env = "BRIX_STATE_DIR")]
    state_dir: Option<PathBuf>,
    /// Rescale the demand's mix to this total (req/s).
    #[arg(long)]
    rate: Option<f64>,
    /// GPU types to choose from, comma-separated.
    #[arg(long, default_value = DEFAULT_GPUS)]
    gpus: String,
    /// Model profile whose built-in capacity profiles are used.
    #[arg(long, default_value = "llama-3-8b")]
    model_profile: String,
    /// Directory of profiles (`<gpu>.json`, or `<model-profile>/<gpu>.json`) to use instead of
    /// the built-in ones.
    #[arg(long)]
    profiles: Option<PathBuf>,
    /// $/h of one replica, `NAME=DOLLARS` (repeat or comma-separate); default: the profile's.
    #[arg(long)]
    cost: Vec<String>,
    /// Fewest replicas of a type, `NAME=N` (redundancy).
    #[arg(long)]
    min: Vec<String>,
    /// Most replicas of a type, `NAME=N` (availability).
    #[arg(long)]
    max: Vec<String>,
    /// Most $/h for the whole plan.
    #[arg(long)]
    budget: Option<f64>,
    /// Share of a replica's profiled capacity the plan may use (headroom), in (0, 1].
    #[arg(long, default_value_t = 0.9)]
    utilisation: f64,
    /// The SLO the plan is for (`ttft=2s,tpot=100ms,p=90`); it must be the one the profiles
    /// were measured against (default: theirs).
    #[arg(long)]
    slo: Option<String>,
    /// Milliseconds of branch and bound before the fallback (relaxation rounded up).
    #[arg(long, default_value_t = 500)]
    time_budget_ms: u64,
    /// Write the plan JSON here (`brix bench sim --plan` replays it).
    #[arg(long)]
    json: Option<PathBuf>,
    /// Replay the plan in virtual time before printing it, derating GPU types whose requests
    /// miss the SLO and solving again (default with --workload; --demand and --gateway get a
    /// Poisson workload synthesised from the demand). Exit code 2 when no plan passes.
    #[arg(long, overrides_with = "no_verify")]
    verify: bool,
    /// Print the plan as solved, without replaying it.
    #[arg(long)]
    no_verify: bool,
    /// Most solve-and-replay rounds of --verify.
    #[arg(long, default_value_t = 5)]
    verify_rounds: u32,
    /// Seconds of the workload --verify synthesises from a --demand or --gateway demand.
    #[arg(long, default_value_t = 600.0)]
    verify_duration_s: f64,
}

/// Runs `brix optimize plan`.
pub(super) fn run(a: PlanArgs) -> Result<(), OptimizeError> {
    let t0 = Instant::now();
    let names: Vec<String> = a
        .gpus
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect();
    if names.is_empty() {
        return Err(OptimizeError::Flag("--gpus names no GPU type".into()));
    }
    let profiles = names
        .iter()
        .map(|g| load_profile(g, &a.model_profile, a.profiles.as_deref()))
        .collect::<Result<Vec<_>, _>>()?;
    let slo = match &a.slo {
        Some(s) => Some(parse_slo(s)?),
        None => None,
    };
    for p in &profiles {
        if let (Some(want), Some(got)) = (&slo, &p.slos)
            && want != got
        {
            return Err(OptimizeError::Profile(format!(
                "profile of {} was measured for {}, not the --slo {}; measure one with \
                 `brix optimize profile --gpu {} --slo …` and pass --profiles",
                p.gpu,
                slo_text(got),
                slo_text(want),
                p.gpu
            )));
        }
    }
    let grid = profiles[0].grid();
    if let Some(p) = profiles.iter().find(|p| p.grid() != grid) {
        return Err(OptimizeError::Profile(format!(
            "profile of {} has another bucket grid than {}'s: profiles planned together must \
             share one grid",
            p.gpu, profiles[0].gpu
        )));
    }
    // The workload (when the demand came from one) stays at hand for a replay of the plan
    // (`brix_bench::vsim::replay_plan`, a `--verify` flag).
    let (demand, source, workload) = demand(&a, &grid)?;
    let verify = !a.no_verify && (a.verify || workload.is_some());
    let unscaled = demand.total();
    if demand.grid != grid {
        return Err(OptimizeError::Profile(format!(
            "the demand's bucket grid differs from the profiles' ({} × {} vs {} × {})",
            demand.grid.outputs.len(),
            demand.grid.inputs.len(),
            grid.outputs.len(),
            grid.inputs.len()
        )));
    }
    let demand = match a.rate {
        Some(r) if r.is_finite() && r > 0.0 => demand.scaled_to(r),
        Some(r) => return Err(OptimizeError::Flag(format!("--rate {r} must be positive"))),
        None => demand,
    };
    if demand.total().is_nan() || demand.total() <= 0.0 {
        return Err(OptimizeError::Flag(
            "the demand is empty (no request, or a workload without arrival times: give \
             --arrival poisson:RATE or --rate)"
                .into(),
        ));
    }
    let costs: BTreeMap<String, f64> = parse_named("--cost", &a.cost, &names)?;
    let mins: BTreeMap<String, u32> = parse_named("--min", &a.min, &names)?;
    let maxs: BTreeMap<String, u32> = parse_named("--max", &a.max, &names)?;
    let gpus = names
        .iter()
        .zip(profiles)
        .map(|(n, profile)| GpuOption {
            name: n.clone(),
            cost_per_hour: costs.get(n).copied().unwrap_or(profile.cost),
            min_replicas: mins.get(n).copied().unwrap_or(0),
            max_replicas: maxs.get(n).copied(),
            profile,
        })
        .collect();
    let problem = Problem {
        demand,
        gpus,
        budget_per_hour: a.budget,
        utilisation: a.utilisation,
    };
    let opts = SolveOptions {
        time_budget: Duration::from_millis(a.time_budget_ms),
        ..SolveOptions::default()
    };
    let singles: Vec<(String, Result<Plan, String>)> = (0..problem.gpus.len())
        .map(|g| {
            let r = single_type(&problem, g).map_err(|e| e.to_string());
            (problem.gpus[g].name.clone(), r)
        })
        .collect();
    let (plan, verified) = if verify {
        let w = verify_workload(&a, workload, &problem.demand, unscaled)?;
        let slo = slo
            .clone()
            .or_else(|| problem.gpus[0].profile.slos.clone())
            .unwrap_or_default();
        let v = verify::check(
            &a.model_profile,
            &problem,
            &opts,
            &singles,
            w,
            slo,
            a.verify_rounds,
        )?;
        (v.plan.clone(), Some(v))
    } else {
        (solve(&problem, &opts)?, None)
    };
    if let Some(path) = &a.json {
        let text = serde_json::to_string_pretty(&plan).map_err(|e| OptimizeError::Write {
            path: path.clone(),
            why: e.to_string(),
        })?;
        std::fs::write(path, text + "\n").map_err(|e| OptimizeError::Write {
            path: path.clone(),
            why: e.to_string(),
        })?;
    }
    print!(
        "{}",
        report(
            &problem,
            &plan,
            &singles,
            &source,
            a.json.as_deref(),
            verified.is_some()
        )
    );
    if let Some(v) = &verified {
        print!("{}", v.text);
    }
    println!("Planned in {:.0} ms.", t0.elapsed().as_secs_f64() * 1e3);
    match verified {
        Some(v) if !v.ok => Err(OptimizeError::NotVerified(v.verdict)),
        _ => Ok(()),
    }
}

/// The requests `--verify` replays: the workload the demand came from (its times stretched
/// when --rate rescaled the demand), else a Poisson workload synthesised from the demand.
fn verify_workload(
    a: &PlanArgs,
    workload: Option<workload::Workload>,
    demand: &Demand,
    unscaled: f64,
) -> Result<workload::Workload, OptimizeError> {
    match workload {
        Some(mut w) => {
            let stretch = unscaled / demand.total();
            if (stretch - 1.0).abs() > 1e-9 {
                for r in &mut w.requests {
                    r.at_s *= stretch;
                }
            }
            Ok(w)
        }
        None => {
            let d = a.verify_duration_s;
            if !(d.is_finite() && d > 0.0 && d * demand.total() <= 2e6) {
                return Err(OptimizeError::Flag(format!(
                    "--verify-duration-s {d}: must be positive, with at most 2 million \
                     requests at the demand's rate"
                )));
            }
            Ok(verify::synthesise(demand, d, a.seed))
        }
    }
}

/// The profile of `gpu`: `DIR/<gpu>.json` or `DIR/<model>/<gpu>.json` with --profiles, else
/// the built-in one.
pub(super) fn load_profile(
    gpu: &str,
    model: &str,
    dir: Option<&Path>,
) -> Result<Profile, OptimizeError> {
    match dir {
        Some(dir) => {
            let candidates = [
                dir.join(format!("{gpu}.json")),
                dir.join(model).join(format!("{gpu}.json")),
            ];
            let path = candidates.iter().find(|p| p.is_file()).ok_or_else(|| {
                OptimizeError::Profile(format!(
                    "no profile for {gpu}: neither {} nor {} exists",
                    candidates[0].display(),
                    candidates[1].display()
                ))
            })?;
            Profile::load(path).map_err(|e| OptimizeError::Profile(e.to_string()))
        }
        None => builtin_profile(model, gpu).ok_or_else(|| {
            OptimizeError::Profile(format!(
                "no built-in profile for {model} on {gpu}; built in: {}; measure one with \
                 `brix optimize profile --model-profile {model} --gpu {gpu} -o DIR/{gpu}.json` \
                 and pass --profiles DIR",
                brix_optimizer::builtin_profiles()
                    .map(|(m, g)| format!("{m}/{g}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        }),
    }
}

/// The demand, where it came from (in words), and the workload it was made of, if any.
fn demand(
    a: &PlanArgs,
    grid: &Grid,
) -> Result<(Demand, String, Option<workload::Workload>), OptimizeError> {
    if let Some(path) = &a.demand {
        let text = std::fs::read_to_string(path)
            .map_err(|e| OptimizeError::Flag(format!("--demand {}: {e}", path.display())))?;
        let d: Demand = serde_json::from_str(&text)
            .map_err(|e| OptimizeError::Flag(format!("--demand {}: {e}", path.display())))?;
        check_demand(&d, &format!("--demand {}", path.display()))?;
        return Ok((d, format!("demand file {}", path.display()), None));
    }
    if let Some(url) = &a.gateway {
        let model = a.model.as_deref().unwrap_or_default();
        let d = fetch_demand(url, model, a)?;
        check_demand(&d, url)?;
        return Ok((d, format!("gateway {url}, model {model}"), None));
    }
    let spec = a.workload.as_deref().unwrap_or_default();
    let arrival: Arrival = a.arrival.parse()?;
    if arrival.users().is_some() {
        return Err(OptimizeError::Flag(
            "--arrival closed:USERS has no rate; plan for an open-loop arrival (trace:1, \
             poisson:RATE) or give --rate"
                .into(),
        ));
    }
    let base = workload::load(spec, a.seed)?;
    let w = workload::schedule(base, &arrival, a.seed, a.duration_s, a.max_requests);
    let n = w.requests.len();
    let (first, last) = w
        .requests
        .iter()
        .fold((f64::INFINITY, 0.0_f64), |(lo, hi), r| {
            (lo.min(r.at_s), hi.max(r.at_s))
        });
    // n arrivals span n − 1 gaps: the rate is n over span × n / (n − 1).
    let duration = if n > 1 && last > first {
        (last - first) * n as f64 / (n - 1) as f64
    } else if a.rate.is_some() {
        1.0 // only the mix matters: --rate rescales it
    } else {
        0.0
    };
    let reqs = w.requests.iter().map(|r| {
        (
            u32::try_from(r.prompt.len()).unwrap_or(u32::MAX),
            r.output_tokens,
        )
    });
    let d = Demand::from_requests(grid.clone(), reqs, duration);
    let source = format!("{n} requests of {spec} ({arrival}) over {duration:.0} s");
    Ok((d, source, Some(w)))
}

fn check_demand(d: &Demand, what: &str) -> Result<(), OptimizeError> {
    if let Some(why) = d.grid.problem() {
        return Err(OptimizeError::Flag(format!("{what}: grid: {why}")));
    }
    if d.rates.len() != d.grid.len() || d.rates.iter().any(|r| !(r.is_finite() && *r >= 0.0)) {
        return Err(OptimizeError::Flag(format!(
            "{what}: rates must be {} finite values ≥ 0",
            d.grid.len()
        )));
    }
    Ok(())
}

/// GET `<url>/brix/optimizer/demand?model=M` with the admin key (10 s timeout).
fn fetch_demand(url: &str, model: &str, a: &PlanArgs) -> Result<Demand, OptimizeError> {
    let base = url.trim_end_matches('/');
    let err = |why: String| OptimizeError::Gateway {
        url: base.to_string(),
        why,
    };
    let parsed = reqwest::Url::parse(base).map_err(|e| err(format!("not a URL: {e}")))?;
    let mut target = parsed
        .join("/brix/optimizer/demand")
        .map_err(|e| err(e.to_string()))?;
    target.query_pairs_mut().append_pair("model", model);
    let key = a.admin_key.clone().or_else(|| {
        let port = parsed.port_or_known_default()?;
        admin_key::read(&admin_key::path(
            &admin_key::state_dir(a.state_dir.as_deref()),
            port,
        ))
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| err(e.to_string()))?;
    rt.block_on(async {
        let client = reqwest::Client::new();
        let mut req = client.get(target).timeout(Duration::from_secs(10));
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        let mut resp = req.send().await.map_err(|e| err(e.to_string()))?;
        let status = resp.status();
        // A demand is a few kB; stop reading past 16 MiB rather than buffer anything sent.
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| err(e.to_string()))? {
            if body.len() + chunk.len() > 16 << 20 {
                return Err(err("reply over 16 MiB".into()));
            }
            body.extend_from_slice(&chunk);
        }
        if !status.is_success() {
            let msg = brix_api::openai::ErrorEnvelope::parse(&body).map_or_else(
                || String::from_utf8_lossy(&body).into_owned(),
                |e| e.message,
            );
            let msg: String = msg.chars().take(300).collect();
            return Err(err(format!("{status}: {msg}")));
        }
        serde_json::from_slice(&body).map_err(|e| err(format!("not a Demand JSON: {e}")))
    })
}

pub(super) fn slo_text(s: &brix_optimizer::Slo) -> String {
    let mut parts = Vec::new();
    for (n, v) in [("TTFT", s.ttft), ("TPOT", s.tpot), ("e2e", s.e2e)] {
        if let Some(v) = v {
            parts.push(if v < 1.0 {
                format!("{n} ≤ {:.0} ms", v * 1e3)
            } else {
                format!("{n} ≤ {v} s")
            });
        }
    }
    format!("P{} {}", s.percentile, parts.join(", "))
}

/// The plan as the table `brix optimize plan` prints.
fn report(
    p: &Problem,
    plan: &Plan,
    singles: &[(String, Result<Plan, String>)],
    source: &str,
    json: Option<&Path>,
    verified: bool,
) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let busy = p.demand.rates.iter().filter(|r| **r > 0.0).count();
    let _ = writeln!(
        s,
        "Demand: {:.3} req/s in {busy} of {} buckets, from {source}",
        p.demand.total(),
        p.demand.grid.len()
    );
    let _ = writeln!(
        s,
        "\n{:<12} {:>8} {:>10} {:>9} {:>8} {:>8} {:>9}",
        "GPU", "REPLICAS", "$/H EACH", "$/H", "LOAD", "UTIL", "REQ/S"
    );
    for (g, pg) in plan.gpus.iter().enumerate() {
        let rate: f64 = plan
            .assign
            .iter()
            .zip(&plan.demand.rates)
            .map(|(row, r)| row.get(g).copied().unwrap_or(0.0) * r)
            .sum();
        let util = if pg.replicas > 0 {
            format!("{:.0} %", 100.0 * pg.load / f64::from(pg.replicas))
        } else {
            "-".into()
        };
        let _ = writeln!(
            s,
            "{:<12} {:>8} {:>10.2} {:>9.2} {:>8.2} {:>8} {:>9.3}",
            pg.name,
            pg.replicas,
            pg.cost_per_replica,
            f64::from(pg.replicas) * pg.cost_per_replica,
            pg.load,
            util,
            rate
        );
    }
    let _ = writeln!(
        s,
        "\nCost: ${:.2}/h (LP lower bound ${:.2}/h); method {:?}, {} nodes, {:.1} ms",
        plan.cost_per_hour, plan.lower_bound, plan.method, plan.nodes, plan.solve_ms
    );
    let best = singles
        .iter()
        .filter_map(|(n, r)| r.as_ref().ok().map(|pl| (n, pl.cost_per_hour, pl)))
        .min_by(|a, b| a.1.total_cmp(&b.1));
    let _ = writeln!(
        s,
        "\nSingle GPU types, each sized for the same demand{}:",
        if verified {
            " by the profiles (before replay)"
        } else {
            ""
        }
    );
    for (n, r) in singles {
        match r {
            Ok(pl) => {
                let reps: u32 = pl.gpus.iter().map(|g| g.replicas).sum();
                let _ = writeln!(s, "  {n:<12} {reps:>4} × = ${:.2}/h", pl.cost_per_hour);
            }
            Err(e) => {
                let _ = writeln!(s, "  {n:<12} cannot: {e}");
            }
        }
    }
    match best {
        // Verified: the saving is printed against the verified single type, below.
        _ if verified => {}
        Some((n, c, _)) if c > 0.0 => {
            let saving = 100.0 * (c - plan.cost_per_hour) / c;
            let _ = writeln!(
                s,
                "Best single type: {n} at ${c:.2}/h; the plan saves {saving:.1} %{}",
                if saving.abs() < 0.05 {
                    " (one type is optimal here)"
                } else {
                    ""
                }
            );
        }
        _ => {
            let _ = writeln!(s, "No single type can carry the demand alone.");
        }
    }
    let slo = p.gpus.first().and_then(|g| g.profile.slos.clone());
    if !verified {
        let _ = writeln!(
            s,
            "\nExpected SLO attainment: every type runs at ≤ {:.0} % of the rate its profile \
         sustains within {} (measured at the SLO's percentile), so the plan meets the SLO by \
         its profiles; replay it to confirm: brix bench sim --plan {}",
            100.0 * p.utilisation,
            slo.as_ref().map_or("its SLO".into(), slo_text),
            json.map_or("PLAN.json (write it with --json)".into(), |j| j
                .display()
                .to_string())
        );
    }
    if !plan.notes.is_empty() {
        let _ = writeln!(s, "\nWhy:");
        for n in &plan.notes {
            let _ = writeln!(s, "  - {n}");
        }
    }
    s
}
