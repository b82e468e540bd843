//! The one Brix binary: each subcommand is a module that parses its flags and calls a library.

mod adapter_cmd;
mod admin_key;
mod bench;
mod diag_cmd;
mod gateway;
#[cfg(feature = "kubernetes")]
mod kube_cmd;
mod kvcache_cmd;
mod optimize_cmd;
mod runtime_cmd;
mod sim;
mod up;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

/// Brix: a control plane for serving LLMs on GPU fleets.
#[derive(Debug, Parser)]
#[command(name = "brix", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve a simulated vLLM engine behind vLLM's OpenAI-compatible HTTP API.
    Sim(Box<sim::SimArgs>),
    /// One OpenAI-compatible endpoint that routes each request to an engine pod.
    Gateway(gateway::GatewayArgs),
    /// Run a fleet of engines and the gateway on this machine from one file.
    Up(up::UpArgs),
    /// Show a running `brix up`'s models and replicas.
    Status(up::StatusArgs),
    /// Set a model's replica count on a running `brix up`.
    Scale(up::ScaleArgs),
    /// Add, replace or delete ModelAdapters on a running `brix up`.
    Adapter(adapter_cmd::AdapterArgs),
    /// KV cache pool: `serve` a pool server, `bench` its transfer paths against memcpy.
    Kvcache(kvcache_cmd::KvcacheArgs),
    /// The runtime sidecar beside one engine: adapter load/unload (with download), model
    /// download, health, standardised metrics (AIBrix's `aibrix-runtime` API).
    Runtime(Box<runtime_cmd::RuntimeArgs>),
    /// Measure the gateway on loopback: a fast mock upstream and a closed-loop load generator.
    Bench(bench::BenchArgs),
    /// The cheapest mix of GPU types for a workload (`plan`), capacity profiles (`profile`),
    /// roofline against simulation (`compare`).
    Optimize(optimize_cmd::OptimizeArgs),
    /// Accelerator diagnostics through NVML: one verdict per GPU; exit 0 healthy, 1 unhealthy.
    Diag(diag_cmd::DiagArgs),
    /// Brix on Kubernetes: print the CRDs or a component's RBAC rules, run the controllers.
    #[cfg(feature = "kubernetes")]
    Kubernetes(kube_cmd::KubernetesArgs),
}

/// Raises the soft open-files limit to the hard one: every connection is a descriptor, and
/// the common soft limit of 1,024 is below what one gateway or fleet holds under a burst.
fn raise_open_files_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => {
            if let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
                tracing::debug!(soft, hard, error = %e, "could not raise the open-files limit");
            }
        }
        Ok(_) => {}
        Err(e) => tracing::debug!(error = %e, "reading the open-files limit"),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Logs go to stderr so stdout carries only what callers parse (the listening line).
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    raise_open_files_limit();
    let result = match cli.command {
        Command::Sim(args) => sim::run(*args).map_err(|e| e.to_string()),
        Command::Gateway(args) => gateway::run(args).map_err(|e| e.to_string()),
        Command::Up(args) => up::up(args).map_err(|e| e.to_string()),
        Command::Status(args) => up::status(args).map_err(|e| e.to_string()),
        Command::Scale(args) => up::scale(args).map_err(|e| e.to_string()),
        Command::Adapter(args) => adapter_cmd::run(args).map_err(|e| e.to_string()),
        Command::Kvcache(args) => kvcache_cmd::run(args).map_err(|e| e.to_string()),
        Command::Runtime(args) => runtime_cmd::run(*args).map_err(|e| e.to_string()),
        Command::Bench(args) => return bench::main(args),
        Command::Optimize(args) => return optimize_cmd::main(args),
        Command::Diag(args) => return diag_cmd::main(args),
        #[cfg(feature = "kubernetes")]
        Command::Kubernetes(args) => kube_cmd::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
