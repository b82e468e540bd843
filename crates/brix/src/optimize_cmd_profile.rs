//! `brix optimize profile` (measure one capacity profile: `sim`, `analytic` or `live`) and
//! `brix optimize compare` (analytic against simulated, GPU by GPU).

use std::path::PathBuf;
use std::time::Instant;

use brix_bench::live::LiveConfig;
use brix_bench::profiling::{
    AnalyticMeasurer, LiveMeasurer, Measurer, ProfileMeta, Search, Shape, SimMeasurer,
    build_profile, compare as compare_profiles,
};
use brix_optimizer::{Grid, Slo};
use brix_sim::Catalog;
use clap::{Args, ValueEnum};

use super::{OptimizeError, parse_grid, parse_slo};

/// How a profile is measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Method {
    /// One simulated engine in virtual time (seconds to minutes).
    Sim,
    /// The roofline alone, no simulation (milliseconds).
    Analytic,
    /// Poisson runs against a live OpenAI endpoint serving one replica (real time).
    Live,
}

/// Flags of `brix optimize profile`.
#[derive(Debug, Args)]
pub(crate) struct ProfileArgs {
    /// How to measure.
    #[arg(long, value_enum, default_value = "sim")]
    method: Method,
    /// Model profile (`brix sim`'s): the model measured, or (live) the endpoint's model's
    /// architecture, for its context length.
    #[arg(long, default_value = "llama-3-8b")]
    model_profile: String,
    /// GPU type (a `brix sim` GPU profile; live: the endpoint's GPU, for the name and price).
    #[arg(long)]
    gpu: String,
    /// Directory with extra `gpus/*.toml` and `models/*.toml` profiles.
    #[arg(long)]
    profiles_dir: Option<PathBuf>,
    /// The SLO (`ttft=2s,tpot=100ms,p=90`); default Brix's P90 TTFT ≤ 2 s, TPOT ≤ 100 ms.
    #[arg(long)]
    slo: Option<String>,
    /// Buckets, `inputs=32..16384,outputs=4..2048` (powers of two); default that grid.
    #[arg(long)]
    grid: Option<String>,
    /// $/h of one replica (default: the GPU's price × the model's tensor-parallel size).
    #[arg(long)]
    cost: Option<f64>,
    /// Where the profile JSON goes.
    #[arg(long, short)]
    output: PathBuf,
    /// Worker threads over buckets (sim and analytic; live measures one bucket at a time).
    #[arg(long)]
    threads: Option<usize>,
    /// Stop the rate search when within this relative tolerance.
    #[arg(long, default_value_t = 0.03)]
    tolerance: f64,
    /// Live: the endpoint (`http://HOST:PORT`), one replica of --model behind it.
    #[arg(long, required_if_eq("method", "live"))]
    endpoint: Option<String>,
    /// Live: the `model` of every request.
    #[arg(long, required_if_eq("method", "live"))]
    model: Option<String>,
    /// Live: seconds of arrivals per rate tried.
    #[arg(long, default_value_t = 30.0)]
    live_duration_s: f64,
    /// Seed of arrivals and prompts.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

/// Flags of `brix optimize compare`.
#[derive(Debug, Args)]
pub(crate) struct CompareArgs {
    /// GPU types, comma-separated.
    #[arg(long, default_value = super::plan::DEFAULT_GPUS)]
    gpus: String,
    /// Model profile.
    #[arg(long, default_value = "llama-3-8b")]
    model_profile: String,
    /// Simulated profiles to compare against (`DIR/<gpu>.json` or `DIR/<model>/<gpu>.json`, as
    /// `plan --profiles`); default the built-in ones.
    #[arg(long)]
    profiles: Option<PathBuf>,
    /// Directory with extra `gpus/*.toml` and `models/*.toml` profiles.
    #[arg(long)]
    profiles_dir: Option<PathBuf>,
    /// Also write the comparison as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

fn catalog(dir: Option<&std::path::Path>) -> Result<Catalog, OptimizeError> {
    let mut c = Catalog::builtin();
    if let Some(d) = dir {
        c.load_dir(d)
            .map_err(|e| OptimizeError::Profile(e.to_string()))?;
    }
    Ok(c)
}

/// Runs `brix optimize profile`.
pub(super) fn run(a: ProfileArgs) -> Result<(), OptimizeError> {
    let cat = catalog(a.profiles_dir.as_deref())?;
    let model = cat
        .model(&a.model_profile)
        .map_err(|e| OptimizeError::Profile(e.to_string()))?
        .clone();
    let gpu = cat
        .gpu(&a.gpu)
        .map_err(|e| OptimizeError::Profile(e.to_string()))?
        .clone();
    let slo = match &a.slo {
        Some(s) => parse_slo(s)?,
        None => Slo::default(),
    };
    let grid = match &a.grid {
        Some(g) => parse_grid(g)?,
        None => Grid::default(),
    };
    let cost = a
        .cost
        .unwrap_or(gpu.price_per_hour * f64::from(model.tensor_parallel_size));
    if !(cost.is_finite() && cost > 0.0) {
        return Err(OptimizeError::Flag(format!(
            "--cost {cost} must be positive"
        )));
    }
    let search = Search {
        rel_tol: a.tolerance,
        ..Search::default()
    };
    let threads = a
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let mut meta = ProfileMeta {
        gpu: gpu.name.clone(),
        cost,
        model: a.model_profile.clone(),
        method: format!("{:?}", a.method).to_lowercase(),
        max_model_len: model.max_position_embeddings,
    };
    let progress = |s: Shape, r: f64| {
        eprintln!("  in {:>5} out {:>5}: {r:.3} req/s", s.input, s.output);
    };
    let t0 = Instant::now();
    let profile = match a.method {
        Method::Sim => {
            let mut m = SimMeasurer::new(model, gpu)?;
            m.seed = a.seed;
            meta.max_model_len = m.max_model_len();
            build_profile(&m, &meta, &grid, &slo, &search, threads, &progress)?
        }
        Method::Analytic => {
            let m = AnalyticMeasurer::new(&model, &gpu)?;
            meta.max_model_len = m.max_model_len();
            build_profile(&m, &meta, &grid, &slo, &search, threads, &|_, _| {})?
        }
        Method::Live => {
            let endpoint = a.endpoint.clone().unwrap_or_default();
            let served = a.model.clone().unwrap_or_default();
            meta.model = served.clone();
            let cfg = LiveConfig::new(&endpoint, &served)
                .map_err(|e| OptimizeError::Flag(e.to_string()))?;
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .map_err(|e| OptimizeError::Flag(format!("starting the runtime: {e}")))?;
            let mut m = LiveMeasurer::new(cfg, rt.handle().clone(), meta.max_model_len);
            m.seed = a.seed;
            m.duration_s = a.live_duration_s;
            // The measurer blocks on the runtime: drive it from this (non-runtime) thread.
            build_profile(
                &m as &dyn Measurer,
                &meta,
                &grid,
                &slo,
                &search,
                1,
                &progress,
            )?
        }
    };
    let text = serde_json::to_string_pretty(&profile).map_err(|e| OptimizeError::Write {
        path: a.output.clone(),
        why: e.to_string(),
    })?;
    std::fs::write(&a.output, text + "\n").map_err(|e| OptimizeError::Write {
        path: a.output.clone(),
        why: e.to_string(),
    })?;
    let served = profile.tputs.iter().flatten().filter(|r| **r > 0.0).count();
    eprintln!(
        "{} profile of {} on {}: {served} of {} buckets servable, {:.1} s → {}",
        meta.method,
        meta.model,
        meta.gpu,
        grid.len(),
        t0.elapsed().as_secs_f64(),
        a.output.display()
    );
    Ok(())
}

/// Runs `brix optimize compare`: analytic profiles computed now against the simulated ones.
pub(super) fn compare(a: CompareArgs) -> Result<(), OptimizeError> {
    let cat = catalog(a.profiles_dir.as_deref())?;
    let model = cat
        .model(&a.model_profile)
        .map_err(|e| OptimizeError::Profile(e.to_string()))?
        .clone();
    let mut rows = Vec::new();
    println!(
        "{:<12} {:>7} {:>8} {:>8} {:>8} {:>9} {:>9} {:>9}",
        "GPU", "BOTH", "MEDIAN", "MIN", "MAX", "±20 %", "ONLY-AN", "ONLY-SIM"
    );
    for name in a.gpus.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let sim = super::plan::load_profile(name, &a.model_profile, a.profiles.as_deref())?;
        let gpu = cat
            .gpu(name)
            .map_err(|e| OptimizeError::Profile(e.to_string()))?
            .clone();
        let m = AnalyticMeasurer::new(&model, &gpu)?;
        let meta = ProfileMeta {
            gpu: gpu.name.clone(),
            cost: sim.cost,
            model: a.model_profile.clone(),
            method: "analytic".into(),
            max_model_len: m.max_model_len(),
        };
        let slo = sim.slos.clone().unwrap_or_default();
        let analytic = build_profile(
            &m,
            &meta,
            &sim.grid(),
            &slo,
            &Search::default(),
            1,
            &|_, _| {},
        )?;
        let c = compare_profiles(&analytic, &sim)
            .ok_or_else(|| OptimizeError::Profile(format!("{name}: grids differ")))?;
        println!(
            "{:<12} {:>7} {:>8.2} {:>8.2} {:>8.2} {:>8.0}% {:>9} {:>9}",
            c.gpu,
            c.both,
            c.median_ratio,
            c.min_ratio,
            c.max_ratio,
            100.0 * c.within_20pct,
            c.only_a,
            c.only_b
        );
        rows.push(c);
    }
    println!("(ratios: analytic ÷ sim capacity per bucket)");
    if let Some(path) = &a.json {
        let text = serde_json::to_string_pretty(&rows).map_err(|e| OptimizeError::Write {
            path: path.clone(),
            why: e.to_string(),
        })?;
        std::fs::write(path, text + "\n").map_err(|e| OptimizeError::Write {
            path: path.clone(),
            why: e.to_string(),
        })?;
    }
    Ok(())
}
