//! `brix bench`: flags → [`brix_bench`] configs → run. `mock` serves a fast OpenAI upstream;
//! `load` drives a closed-loop load against any OpenAI endpoint and prints what it measured.
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
    Sim(sim::SimArgs),
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
        BenchCommand::Sim(a) => Ok(sim::run(a)?),
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
