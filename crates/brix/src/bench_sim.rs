//! `brix bench sim`: flags → a workload, a simulated fleet and strategies → [`vsim::run`] per
//! strategy → the same files `brix bench run` writes (`requests.jsonl`, `summary.json`,
//! `run.json`), one directory per strategy, plus a combined table. This module does the I/O
//! (reading the workload and profiles, writing the results, timing the runs); the simulation
//! itself is pure. With `--autoscaler FILE`, each PodAutoscaler document of FILE is its own run
//! (times each strategy), the fleet scaled by that policy (`bench_sim_scale.rs`).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use brix_bench::report::{RequestRecord, Slo, Summary};
use brix_bench::vsim::{self, Release, SimConfig, SimRun, SimStrategy};
use brix_bench::workload::{self, Arrival};
use brix_sim::{Catalog, EngineSettings, ProfileError};
use clap::Args;
use serde::Serialize;

#[path = "bench_sim_kvpool.rs"]
mod kvpool;
#[path = "bench_sim_lora.rs"]
mod lora;
#[path = "bench_sim_mix.rs"]
mod mix;
#[path = "bench_sim_scale.rs"]
mod scale;

/// Flags of `brix bench sim`.
#[derive(Debug, Args)]
pub(crate) struct SimArgs {
    /// A generator spec (`multi-turn:sessions=40,turns=5`, `shared-prefix:groups=8`, …) or a
    /// workload or trace file (Mooncake, Azure, ShareGPT, Brix).
    #[arg(long)]
    workload: String,
    /// Directory for the combined summary.md and one subdirectory per strategy.
    #[arg(long)]
    output: PathBuf,
    /// Strategies to compare, comma-separated, each run on the same workload: the gateway's
    /// (`random`, `least-request`, `prefix-cache`, `kv-cost`, …; a weighted mix joins parts
    /// with `+`) and `oracle`.
    #[arg(long, default_value = "least-request")]
    strategy: String,
    /// Simulated engines (replicas of the one model); with --autoscaler, the start count (0
    /// allowed: the first requests wait for a cold start).
    #[arg(long, default_value_t = 2)]
    engines: usize,
    /// A YAML file of PodAutoscaler documents (a list, or `---`-separated): each is one run
    /// (times each strategy), named by its metadata.name, its fleet scaled by that policy.
    #[arg(long)]
    autoscaler: Option<PathBuf>,
    /// Replica counts set at fixed times, `SECONDS:ENGINES,...` (no autoscaler): the surplus
    /// drains, missing engines start cold (empty caches) after the start-up time;
    /// `600:2,600:4` restarts two engines at 600 s, `600:2,900:4` scales 4 → 2 → 4.
    #[arg(long)]
    scale_at: Option<vsim::ScaleSchedule>,
    /// Storage bandwidth, GB/s, that an engine asked for by the autoscaler (or --scale-at)
    /// loads its weights at (per GPU).
    #[arg(long, default_value_t = brix_autoscaler::DEFAULT_STORAGE_GBPS)]
    storage_gbps: f64,
    /// Seconds an engine takes to start once its weights are loaded (CUDA graphs, warm-up).
    #[arg(long, default_value_t = brix_autoscaler::DEFAULT_ENGINE_START_S)]
    engine_start_s: f64,
    /// GPU profile of every engine.
    #[arg(long, default_value = "A100-80GB")]
    gpu: String,
    /// Model profile of every engine.
    #[arg(long, default_value = "llama-3-8b")]
    model_profile: String,
    /// Directory with extra `gpus/*.toml` and `models/*.toml` profiles.
    #[arg(long)]
    profiles_dir: Option<PathBuf>,
    /// Arrivals, as `brix bench run`: poisson:RATE, constant:RATE, trace:SCALE (open loop) or
    /// closed:USERS.
    #[arg(long, default_value = "closed:8")]
    arrival: String,
    /// Seed of the workload, the arrival times, routing decisions and scrape jitter.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Open loop: keep only arrivals before this many seconds; closed loop: start nothing after.
    #[arg(long)]
    duration_s: Option<f64>,
    /// Send at most this many requests.
    #[arg(long)]
    max_requests: Option<usize>,
    /// Cut prompts so prompt + output fits the engines' max_model_len (keeping the head);
    /// without it such requests fail with vLLM's 400, as they would live.
    #[arg(long)]
    fit_context: bool,
    /// Goodput counts requests whose time to first token is at most this.
    #[arg(long)]
    slo_ttft_ms: Option<f64>,
    /// Goodput counts requests whose time per output token is at most this.
    #[arg(long)]
    slo_tpot_ms: Option<f64>,
    /// The gateway's scrape interval: how stale the engine gauges routing sees may be.
    #[arg(long, default_value_t = 500)]
    scrape_interval_ms: u64,
    /// The gateway's prefix block size in bytes of prompt text.
    #[arg(long, default_value_t = 128)]
    block_size: u32,
    /// The gateway's `kv-cost` weight: prefill units one queued or running request is worth.
    #[arg(long, default_value_t = 256.0)]
    load_units_per_request: f64,
    /// Engines publish KV events into the gateway's exact per-pod index and routing sees
    /// each pod's exact cached tokens (else the approximate prefix index).
    #[arg(long)]
    kv_events: bool,
    /// Gateway replicas routing the requests, each with its own view, sharing loads and
    /// prefix bookings every --sync-ms (as `routing.sync` through Redis does live).
    #[arg(long, default_value_t = 1)]
    gateways: usize,
    /// Longest milliseconds between two sync batches of one replica (with --gateways above 1).
    #[arg(long, default_value_t = 100.0)]
    sync_ms: f64,
    /// Milliseconds between two looks of a replica at its own state; a change goes out at the
    /// next look (`routing.sync.min_interval_ms`).
    #[arg(long, default_value_t = 5.0)]
    sync_min_ms: f64,
    /// How requests are spread over the replicas: round-robin or hash (of the request id).
    #[arg(long, default_value = "round-robin")]
    gateway_assign: vsim::Assign,
    /// vLLM's --max-num-seqs (default: vLLM's for the GPU class).
    #[arg(long)]
    max_num_seqs: Option<u32>,
    /// vLLM's --max-num-batched-tokens (default: vLLM's for the GPU class).
    #[arg(long)]
    max_num_batched_tokens: Option<u32>,
    /// vLLM's --max-model-len (default: the model's).
    #[arg(long)]
    max_model_len: Option<u32>,
    /// vLLM's --num-gpu-blocks-override: KV blocks per engine instead of what memory allows.
    #[arg(long)]
    num_gpu_blocks_override: Option<u32>,
    #[command(flatten)]
    lora: lora::LoraArgs,
    #[command(flatten)]
    kv_pool: kvpool::KvPoolArgs,
    #[command(flatten)]
    mix: mix::MixArgs,
}

/// Why `brix bench sim` failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SimCliError {
    /// A profile is unknown or a profiles directory is bad.
    #[error(transparent)]
    Profile(#[from] ProfileError),
    /// The workload could not be loaded or generated.
    #[error(transparent)]
    Workload(#[from] workload::WorkloadError),
    /// `--arrival` does not parse.
    #[error("--arrival: {0}")]
    Arrival(#[from] workload::ArrivalError),
    /// `--strategy` does not parse.
    #[error("--strategy: {0}")]
    Strategy(#[from] vsim::StrategyParseError),
    /// A flag is out of range.
    #[error("{0}")]
    Flag(String),
    /// The simulation could not run.
    #[error(transparent)]
    Sim(#[from] vsim::SimError),
    /// Writing a result file failed.
    #[error("writing {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
}

/// `run.json`: what was run, with the fields (and names) of `brix bench run`'s, so
/// `brix bench compare` reads a simulated run like a live one.
#[derive(Serialize)]
struct RunInfo {
    label: String,
    endpoint: String,
    model: String,
    workload: String,
    arrival: String,
    rate: Option<f64>,
    seed: u64,
    routing_strategy: Option<String>,
    command: String,
}

/// What `sim.json` holds beside the shared files: the fleet's own counters (deterministic).
#[derive(Serialize)]
struct SimInfo<'a> {
    strategy: String,
    engines: usize,
    gpu: &'a str,
    model_profile: &'a str,
    requests: usize,
    fitted_to_context: usize,
    prefix_hit_rate: f64,
    virtual_end_s: f64,
    fallbacks: &'a std::collections::BTreeMap<String, u64>,
    per_engine: &'a [vsim::EngineReport],
    external_hit_rate: f64,
    kv_pool: Option<&'a vsim::PoolReport>,
    autoscaler: Option<&'a str>,
    startup_s: Option<f64>,
    warnings: &'a [String],
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    groups: &'a [vsim::GroupReport],
}

/// Runs `brix bench sim`.
pub(crate) fn run(a: SimArgs) -> Result<(), SimCliError> {
    let strategies = SimStrategy::parse_list(&a.strategy)?;
    let arrival: Arrival = a.arrival.parse()?;
    let cfg = fleet(&a)?;
    let mut cfg = cfg;
    if a.autoscaler.is_some() || a.scale_at.is_some() {
        if !(a.storage_gbps.is_finite() && a.storage_gbps > 0.0) {
            return Err(SimCliError::Flag("--storage-gbps must be positive".into()));
        }
        if !(a.engine_start_s.is_finite() && a.engine_start_s >= 0.0) {
            return Err(SimCliError::Flag(
                "--engine-start-s must be 0 or more seconds".into(),
            ));
        }
    }
    let startup = brix_autoscaler::startup_estimate(&cfg.model, a.storage_gbps, a.engine_start_s);
    cfg.schedule = a.scale_at.clone().map(|mut s| {
        s.startup_s = startup;
        s
    });
    let autoscalers: Vec<Option<vsim::ScaleConfig>> = match &a.autoscaler {
        None => vec![None],
        Some(path) => scale::load(path, &cfg, startup)?
            .into_iter()
            .map(Some)
            .collect(),
    };
    let release = match arrival.users() {
        Some(users) => Release::Closed {
            users,
            stop_s: a.duration_s,
        },
        None => Release::Open,
    };
    let t0 = Instant::now();
    let base = workload::load(&a.workload, a.seed)?;
    let mut w = workload::schedule(base, &arrival, a.seed, a.duration_s, a.max_requests);
    let fitted = if a.fit_context {
        vsim::fit_context(&mut w, cfg.engine.max_model_len)
    } else {
        0
    };
    cfg.adapters = a.lora.build(w.requests.len(), a.seed)?;
    let load_s = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let keys = vsim::route_keys(&w, a.block_size as usize);
    let keys_s = t1.elapsed().as_secs_f64();
    let fleet_words = mix::describe(&cfg, &a.gpu);
    eprintln!(
        "{} requests ({fitted} cut to fit the context), {arrival}, {fleet_words} {}: workload {load_s:.2} s, route keys {keys_s:.2} s",
        w.requests.len(),
        a.model_profile,
    );
    let slo = Slo {
        ttft_ms: a.slo_ttft_ms,
        tpot_ms: a.slo_tpot_ms,
    };
    let command = super::command_line();
    let mut rows: Vec<(Summary, SimRun, f64)> = Vec::new();
    let runs = autoscalers
        .iter()
        .flat_map(|sc| strategies.iter().map(move |s| (s, sc)));
    for (strategy, sc) in runs {
        let scaler = sc.as_ref().map(|sc| sc.policy.name.as_str());
        let name = match scaler {
            None => strategy.to_string(),
            Some(n) if strategies.len() == 1 => n.to_string(),
            Some(n) => format!("{n}.{strategy}"),
        };
        let mut cfg = cfg.clone();
        cfg.autoscaler = sc.clone();
        // Marked as simulated, so `brix bench compare` can put it beside a live run.
        let label = format!("vsim/{name}");
        let t = Instant::now();
        let result = vsim::run(&w, &keys, release, &cfg, strategy)?;
        let wall_s = t.elapsed().as_secs_f64();
        let mut summary = Summary::from_records(&label, &result.records, slo);
        summary.fleet = Some(result.fleet.clone());
        for warning in &result.warnings {
            eprintln!("{name}: {warning}");
        }
        let dir = a.output.join(&name);
        let info = RunInfo {
            label: label.clone(),
            endpoint: match sc {
                None => format!("vsim: {fleet_words} {}", a.model_profile),
                Some(sc) => format!(
                    "vsim: {} ({} {}–{}) × {} {}",
                    sc.policy.name,
                    sc.policy.strategy.as_str(),
                    sc.policy.min_replicas,
                    sc.policy.max_replicas,
                    a.gpu,
                    a.model_profile
                ),
            },
            model: a.model_profile.clone(),
            workload: a.workload.clone(),
            arrival: arrival.to_string(),
            rate: match arrival {
                Arrival::Poisson { rate } | Arrival::Constant { rate } => Some(rate),
                _ => None,
            },
            seed: a.seed,
            routing_strategy: Some(name.clone()),
            command: command.clone(),
        };
        write_run(&dir, &result.records, &summary, &info)?;
        scale::write_fleet(&dir, &result, scaler)?;
        lora::write_report(&dir, &result)?;
        let sim_info = SimInfo {
            strategy: name.clone(),
            engines: cfg.engines,
            // One GPU type, or the mix in words.
            gpu: if cfg.groups.is_empty() {
                &a.gpu
            } else {
                &fleet_words
            },
            model_profile: &a.model_profile,
            requests: w.requests.len(),
            fitted_to_context: fitted,
            prefix_hit_rate: result.prefix_hit_rate(),
            virtual_end_s: result.end_s,
            fallbacks: &result.fallbacks,
            per_engine: &result.engines,
            external_hit_rate: result.external_hit_rate(),
            kv_pool: result.pool.as_ref(),
            autoscaler: scaler,
            startup_s: sc.as_ref().map(|sc| sc.startup_s),
            warnings: &result.warnings,
            groups: &result.groups,
        };
        let path = dir.join("sim.json");
        write(&path, &json(&path, &sim_info, true)?)?;
        eprintln!(
            "{name}: {wall_s:.2} s wall for {:.0} s simulated → {}",
            result.end_s,
            dir.display()
        );
        rows.push((summary, result, wall_s));
    }
    let table = combined(&rows, &command, load_s + keys_s, slo);
    write(&a.output.join("summary.md"), &table)?;
    println!("{table}");
    Ok(())
}

/// The simulated fleet the flags describe.
fn fleet(a: &SimArgs) -> Result<SimConfig, SimCliError> {
    if a.engines == 0 && a.autoscaler.is_none() && !a.mix.is_set() {
        return Err(SimCliError::Flag("--engines must be at least 1".into()));
    }
    if a.scrape_interval_ms == 0 {
        return Err(SimCliError::Flag(
            "--scrape-interval-ms must be positive".into(),
        ));
    }
    if a.block_size == 0 {
        return Err(SimCliError::Flag("--block-size must be positive".into()));
    }
    let mut catalog = Catalog::builtin();
    if let Some(dir) = &a.profiles_dir {
        catalog.load_dir(dir)?;
    }
    let model = catalog.model(&a.model_profile)?.clone();
    let gpu = catalog.gpu(&a.gpu)?.clone();
    let mut cfg = SimConfig::new(a.engines, model, gpu);
    let mut settings = EngineSettings {
        max_num_seqs: a.max_num_seqs,
        max_num_batched_tokens: a.max_num_batched_tokens,
        max_model_len: a.max_model_len,
        num_gpu_blocks_override: a.num_gpu_blocks_override,
        ..EngineSettings::default()
    };
    lora::engine_settings(&a.lora, &mut settings);
    cfg.engine = settings.apply(cfg.engine);
    cfg.prefix.block_units = a.block_size;
    cfg.prefix.load_units_per_request = a.load_units_per_request;
    cfg.scrape_interval_s = a.scrape_interval_ms as f64 / 1000.0;
    cfg.kv_events = a.kv_events;
    cfg.seed = a.seed;
    cfg.kv_pool = a.kv_pool.build(cfg.engine.block_size)?;
    let min_ok = a.sync_min_ms > 0.0 && a.sync_min_ms <= a.sync_ms && a.sync_ms.is_finite();
    if a.gateways == 0 || a.gateways > 64 || !min_ok {
        return Err(SimCliError::Flag(
            "--gateways must be in 1..=64 and 0 < --sync-min-ms <= --sync-ms".into(),
        ));
    }
    cfg.replicas = vsim::ReplicaConfig {
        gateways: a.gateways,
        sync_s: a.sync_ms / 1000.0,
        min_sync_s: a.sync_min_ms / 1000.0,
        assign: a.gateway_assign,
    };
    a.mix.apply(cfg, &catalog, &settings)
}

/// Every strategy's summary in one table, then what only the simulator knows, then the command.
fn combined(rows: &[(Summary, SimRun, f64)], command: &str, setup_s: f64, slo: Slo) -> String {
    let summaries: Vec<&Summary> = rows.iter().map(|(s, _, _)| s).collect();
    let mut out = Summary::table(&summaries);
    out.push_str(
        "\n| run | prefix hit rate | busiest / idlest engine (requests) | preemptions | fallbacks | GPU-s | cost $ | scale events | replicas mean / max | virtual s | wall s |\n|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for (s, r, wall) in rows {
        let counts = r.engines.iter().map(|e| e.requests);
        let (max, min) = (counts.clone().max().unwrap_or(0), counts.min().unwrap_or(0));
        let preemptions: u64 = r.engines.iter().map(|e| e.preemptions).sum();
        let fallbacks = if r.fallbacks.is_empty() {
            "–".to_string()
        } else {
            r.fallbacks
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = writeln!(
            out,
            "| {} | {:.1} % | {max} / {min} | {preemptions} | {fallbacks} | {:.0} | {:.2} | {} | {:.2} / {} | {:.0} | {wall:.2} |",
            s.label,
            100.0 * r.prefix_hit_rate(),
            r.fleet.gpu_seconds,
            r.fleet.cost_usd,
            r.fleet.scale_events,
            r.fleet.replicas_mean,
            r.fleet.replicas_max,
            r.end_s,
        );
    }
    out.push_str(&kvpool::table(
        rows.iter().map(|(s, r, _)| (s.label.as_str(), r)),
    ));
    out.push_str(&mix::table(
        rows.iter().map(|(s, r, _)| (s.label.as_str(), r)),
        slo,
    ));
    let adapters: Vec<String> = rows
        .iter()
        .filter_map(|(s, r, _)| lora::summary_line(&s.label, r))
        .collect();
    if !adapters.is_empty() {
        let _ = write!(out, "\nAdapters:\n{}\n", adapters.join("\n"));
    }
    let _ = write!(
        out,
        "\nLoading the workload and hashing the route keys: {setup_s:.2} s wall (once for all strategies).\n\nCommand: `{command}`\n"
    );
    out
}

/// `requests.jsonl` (one record a line), `summary.json` and `run.json`, as `brix bench run`
/// writes them.
fn write_run(
    dir: &Path,
    records: &[RequestRecord],
    summary: &Summary,
    info: &RunInfo,
) -> Result<(), SimCliError> {
    let path = dir.join("requests.jsonl");
    let mut lines = String::new();
    for r in records {
        lines.push_str(&json(&path, r, false)?);
        lines.push('\n');
    }
    write(&path, &lines)?;
    let path = dir.join("summary.json");
    write(&path, &json(&path, summary, true)?)?;
    let path = dir.join("run.json");
    write(&path, &json(&path, info, true)?)
}

/// `v` as JSON; pretty-printed ones end in a newline.
fn json<T: Serialize>(path: &Path, v: &T, pretty: bool) -> Result<String, SimCliError> {
    let text = if pretty {
        serde_json::to_string_pretty(v).map(|s| s + "\n")
    } else {
        serde_json::to_string(v)
    };
    text.map_err(|e| SimCliError::Io {
        path: path.to_path_buf(),
        source: std::io::Error::other(e),
    })
}

fn write(path: &Path, text: &str) -> Result<(), SimCliError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| SimCliError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    std::fs::write(path, text).map_err(|source| SimCliError::Io {
        path: path.to_path_buf(),
        source,
    })
}
