//! `brix bench`: flags → [`brix_bench`] configs → run. `mock` serves a fast OpenAI upstream;
//! `load` drives a closed-loop load against any OpenAI endpoint and prints what it measured.
//! `run` sends a workload to a live endpoint and records every request as the client saw it;
//! `compare` puts runs side by side as a table and plots.
//! `scripts/bench-gateway` combines the two; see docs/bench.md.

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use brix_bench::{LoadConfig, LoadError, MockConfig, MockError, Stop};
use clap::{Args, Subcommand};

#[path = "bench_sim.rs"]
mod sim;

/// Flags of `brix bench`.
#[derive(Debug, Args)]
pub(crate) struct BenchArgs {
    #[command(subcommand)]
    command: BenchCommand,
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// Serve a mock OpenAI upstream that answers at once (no delay, no tokenizer).
    Mock(MockArgs),
    /// Run a closed-loop load against an OpenAI endpoint and report requests/s and latency.
    Load(LoadArgs),
    /// Run a workload on a simulated fleet in virtual time, routed by the gateway's policies
    /// (and an oracle): the same reports as `run`, in seconds for an hour of traffic.
    Sim(Box<sim::SimArgs>),
    /// Send a workload to a live OpenAI endpoint, streaming and timing every request.
    Run(RunArgs),
    /// Put runs of `brix bench run` side by side: one table, a TTFT CDF, latency against load.
    Compare(CompareArgs),
}

/// Flags of `brix bench mock`.
#[derive(Debug, Args)]
struct MockArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
    /// Port to listen on (0 picks a free one; the listening line says which).
    #[arg(long)]
    port: u16,
    /// Model id to serve.
    #[arg(long, default_value = "mock")]
    model: String,
    /// Completion tokens per reply (SSE chunks when streaming).
    #[arg(long, default_value_t = 4)]
    completion_tokens: u32,
    /// Runtime worker threads. One keeps the mock from competing with what is measured.
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

/// Flags of `brix bench load`.
#[derive(Debug, Args)]
struct LoadArgs {
    /// Target, as http://IP:PORT.
    #[arg(long)]
    url: String,
    /// Request path.
    #[arg(long, default_value = "/v1/chat/completions")]
    path: String,
    /// Workers, each with one keep-alive connection and one request at a time.
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
    /// Seconds to measure (after the warm-up).
    #[arg(long, default_value_t = 10.0, conflicts_with = "requests")]
    duration_s: f64,
    /// Stop after this many requests instead of after --duration-s.
    #[arg(long)]
    requests: Option<u64>,
    /// Seconds to run unrecorded first.
    #[arg(long, default_value_t = 1.0)]
    warmup_s: f64,
    /// The `model` of every request.
    #[arg(long, default_value = "mock")]
    model: String,
    /// Ask for SSE replies (and check each ends in `data: [DONE]`).
    #[arg(long)]
    stream: bool,
    /// Shared system-prompt prefixes (1–2 KB each) the bodies draw from.
    #[arg(long, default_value_t = 8)]
    prefixes: usize,
    /// Seed for the bodies and the workers' choices.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Runtime worker threads (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

/// Flags of `brix bench run`.
#[derive(Debug, Args)]
struct RunArgs {
    /// The OpenAI endpoint (`brix up`, the gateway, a router or an engine), e.g.
    /// http://127.0.0.1:8888 (a trailing /v1 is fine).
    #[arg(long)]
    endpoint: String,
    /// The `model` of every request.
    #[arg(long)]
    model: String,
    /// A generator spec (`multi-turn:sessions=40,turns=5`, `shared-prefix:groups=8`, …) or a
    /// workload or trace file.
    #[arg(long)]
    workload: String,
    /// Directory for requests.jsonl, summary.json and run.json; with --rates, one
    /// subdirectory rate-R per rate.
    #[arg(long)]
    output: std::path::PathBuf,
    /// Arrivals: poisson:RATE, constant:RATE, trace:SCALE (open loop) or closed:USERS.
    #[arg(long, default_value = "closed:8")]
    arrival: String,
    /// A rate sweep (requests/s, comma-separated): one open-loop run per rate, Poisson unless
    /// --arrival is constant:…; `brix bench compare DIR` draws the latency-throughput curve.
    #[arg(long, value_delimiter = ',')]
    rates: Vec<f64>,
    /// Seed of the workload and the arrival times.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Open loop: keep only arrivals before this many seconds; closed loop: start nothing after.
    #[arg(long)]
    duration_s: Option<f64>,
    /// Send at most this many requests.
    #[arg(long)]
    max_requests: Option<usize>,
    /// Sent as the `routing-strategy` header (the gateway's strategy for this run).
    #[arg(long)]
    routing_strategy: Option<String>,
    /// Goodput counts requests whose time to first token is at most this.
    #[arg(long)]
    slo_ttft_ms: Option<f64>,
    /// Goodput counts requests whose time per output token is at most this.
    #[arg(long)]
    slo_tpot_ms: Option<f64>,
    /// The run's name in tables and plots (default: the routing strategy, else "live").
    #[arg(long)]
    label: Option<String>,
    /// Longest one request may take before it is recorded as timed out.
    #[arg(long, default_value_t = 300.0)]
    timeout_s: f64,
    /// Draw no progress bar (it is drawn only on a terminal anyway).
    #[arg(long)]
    no_progress: bool,
    /// Runtime worker threads (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
}

/// Flags of `brix bench compare`.
#[derive(Debug, Args)]
struct CompareArgs {
    /// Run directories (each with summary.json) or sweep directories (runs in subdirectories).
    #[arg(required = true)]
    dirs: Vec<std::path::PathBuf>,
    /// Where table.md, ttft_cdf.{png,svg} and latency_vs_load.{png,svg} go.
    #[arg(long, short)]
    output: std::path::PathBuf,
}

/// Why `brix bench` failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BenchCliError {
    /// The mock could not start.
    #[error(transparent)]
    Mock(#[from] MockError),
    /// The load could not be set up.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// A duration flag is negative or not a number.
    #[error("{flag} must be a non-negative number of seconds, got {value}")]
    Seconds {
        /// The flag.
        flag: &'static str,
        /// What was given.
        value: f64,
    },
    /// The workload could not be loaded or generated.
    #[error(transparent)]
    Workload(#[from] brix_bench::workload::WorkloadError),
    /// `--arrival` does not parse.
    #[error("--arrival: {0}")]
    Arrival(#[from] brix_bench::workload::ArrivalError),
    /// A rate in `--rates` is not a positive number.
    #[error("--rates: {0} is not a positive number of requests/s")]
    Rate(f64),
    /// The live run could not be set up or written.
    #[error(transparent)]
    Live(#[from] brix_bench::live::LiveError),
    /// The comparison could not be read or drawn.
    #[error(transparent)]
    Compare(#[from] brix_bench::live::CompareError),
    /// The virtual-time run failed.
    #[error(transparent)]
    Sim(#[from] sim::SimCliError),
    /// The async runtime could not start.
    #[error("starting the runtime: {0}")]
    Runtime(std::io::Error),
    /// The JSON report could not be written.
    #[error("writing the report: {0}")]
    Report(std::io::Error),
}

/// Runs `brix bench` and turns its result into the exit code, reporting a failure on stderr
/// the way `main` does for the other subcommands.
pub(crate) fn main(args: BenchArgs) -> ExitCode {
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs `brix bench mock` or `brix bench load`.
fn run(args: BenchArgs) -> Result<(), BenchCliError> {
    match args.command {
        BenchCommand::Mock(a) => {
            let addr = SocketAddr::new(a.host, a.port);
            let config = MockConfig {
                model: a.model,
                completion_tokens: a.completion_tokens,
            };
            runtime(Some(a.threads))?.block_on(brix_bench::mock::serve(addr, config))?;
            Ok(())
        }
        BenchCommand::Run(a) => run_live(a),
        BenchCommand::Compare(a) => {
            let table = brix_bench::live::compare(&a.dirs, &a.output)?;
            println!("{table}");
            eprintln!(
                "wrote table.md, ttft_cdf.png/.svg and latency_vs_load.png/.svg to {}",
                a.output.display()
            );
            Ok(())
        }
        BenchCommand::Sim(a) => Ok(sim::run(*a)?),
        BenchCommand::Load(a) => {
            let mut cfg = LoadConfig::new(&a.url, &a.path)?;
            cfg.concurrency = a.concurrency;
            cfg.stop = match a.requests {
                Some(n) => Stop::Requests(n),
                None => Stop::Duration(seconds("--duration-s", a.duration_s)?),
            };
            cfg.warmup = seconds("--warmup-s", a.warmup_s)?;
            cfg.model = a.model;
            cfg.stream = a.stream;
            cfg.prefixes = a.prefixes;
            cfg.seed = a.seed;
            let report = runtime(a.threads)?.block_on(brix_bench::load::run(cfg))?;
            if a.json {
                report
                    .write_json(std::io::stdout().lock())
                    .map_err(BenchCliError::Report)?;
            } else {
                println!("{report}");
            }
            Ok(())
        }
    }
}

fn seconds(flag: &'static str, value: f64) -> Result<Duration, BenchCliError> {
    Duration::try_from_secs_f64(value).map_err(|_| BenchCliError::Seconds { flag, value })
}

fn runtime(threads: Option<usize>) -> Result<tokio::runtime::Runtime, BenchCliError> {
    let mut b = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = threads {
        b.worker_threads(n.max(1));
    }
    b.enable_all().build().map_err(BenchCliError::Runtime)
}

/// One run of `brix bench run`: where it goes and how it paces.
struct LivePlan {
    arrival: brix_bench::workload::Arrival,
    rate: Option<f64>,
    dir: std::path::PathBuf,
    label: String,
}

/// Runs `brix bench run`: the workload once, or once per rate of a sweep, each into its own
/// directory; prints the summaries as one table.
fn run_live(a: RunArgs) -> Result<(), BenchCliError> {
    use brix_bench::live::{self, LiveConfig, Pacing, RunInfo};
    use brix_bench::report::{Slo, Summary};
    use brix_bench::workload::{self, Arrival};

    let timeout = seconds("--timeout-s", a.timeout_s)?;
    let stop_after = a
        .duration_s
        .map(|d| seconds("--duration-s", d))
        .transpose()?;
    let arrival: Arrival = a.arrival.parse()?;
    let label = a
        .label
        .clone()
        .or_else(|| a.routing_strategy.clone())
        .unwrap_or_else(|| "live".into());
    let rate_of = |arrival: Arrival| match arrival {
        Arrival::Poisson { rate } | Arrival::Constant { rate } => Some(rate),
        _ => None,
    };
    let plans = if a.rates.is_empty() {
        vec![LivePlan {
            arrival,
            rate: rate_of(arrival),
            dir: a.output.clone(),
            label,
        }]
    } else {
        let mut plans = Vec::new();
        for &rate in &a.rates {
            if !(rate.is_finite() && rate > 0.0) {
                return Err(BenchCliError::Rate(rate));
            }
            let arrival = match arrival {
                Arrival::Constant { .. } => Arrival::Constant { rate },
                _ => Arrival::Poisson { rate },
            };
            plans.push(LivePlan {
                arrival,
                rate: Some(rate),
                dir: a.output.join(format!("rate-{rate}")),
                label: format!("{label} @ {rate}/s"),
            });
        }
        plans
    };
    let base = workload::load(&a.workload, a.seed)?;
    let slo = Slo {
        ttft_ms: a.slo_ttft_ms,
        tpot_ms: a.slo_tpot_ms,
    };
    let command = command_line();
    let rt = runtime(a.threads)?;
    let mut summaries = Vec::new();
    for plan in plans {
        let w = workload::schedule(
            base.clone(),
            &plan.arrival,
            a.seed,
            a.duration_s,
            a.max_requests,
        );
        let mut cfg = LiveConfig::new(&a.endpoint, &a.model)?;
        cfg.routing_strategy = a.routing_strategy.clone();
        cfg.timeout = timeout;
        cfg.pacing = match plan.arrival.users() {
            Some(users) => Pacing::Closed { users },
            None => Pacing::Open,
        };
        cfg.stop_after = stop_after;
        cfg.progress = !a.no_progress;
        eprintln!(
            "{}: {} requests, {} → {}",
            plan.label,
            w.requests.len(),
            plan.arrival,
            plan.dir.display()
        );
        let records = rt.block_on(live::run(&cfg, &w, workload::vocab::text))?;
        let summary = Summary::from_records(&plan.label, &records, slo);
        let info = RunInfo {
            label: plan.label,
            endpoint: a.endpoint.clone(),
            model: a.model.clone(),
            workload: a.workload.clone(),
            arrival: plan.arrival.to_string(),
            rate: plan.rate,
            seed: a.seed,
            routing_strategy: a.routing_strategy.clone(),
            command: command.clone(),
        };
        live::write_run(&plan.dir, &records, &summary, &info)?;
        summaries.push(summary);
    }
    let rows: Vec<&Summary> = summaries.iter().collect();
    println!("{}", Summary::table(&rows));
    for s in &summaries {
        println!(
            "{}: client lag p50 {:.1} ms, p99 {:.1} ms",
            s.label, s.client_lag_ms.p50, s.client_lag_ms.p99
        );
    }
    Ok(())
}

/// This process's command line, quoted for a shell, for `run.json`.
fn command_line() -> String {
    std::env::args()
        .map(|arg| {
            let plain = arg
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./:=,@+".contains(c));
            if plain && !arg.is_empty() {
                arg
            } else {
                format!("'{}'", arg.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}
