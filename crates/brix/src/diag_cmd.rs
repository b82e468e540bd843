//! `brix diag`: the accelerator diagnostics of this node as a table or JSON, with an exit
//! code for scripts and node jobs (0 healthy, 1 unhealthy, 2 usage or output error).

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

/// Flags of `brix diag`.
#[derive(Debug, Args)]
pub(crate) struct DiagArgs {
    /// Cards the node must have; a different count fails the node (AIBrix's GPU_CARD_COUNT).
    #[arg(long, env = "GPU_CARD_COUNT")]
    expected_cards: Option<u32>,
    /// Only these GPU indices, comma-separated (all GPUs by default).
    #[arg(long, value_delimiter = ',')]
    gpus: Option<Vec<u32>>,
    /// Print the report as JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// NVML library to load instead of libnvidia-ml.so.1 (e.g. the failure mock-up,
    /// target/debug/libbrix_nvml_mock.so).
    #[arg(long, env = "BRIX_NVML_LIBRARY")]
    nvml_lib: Option<PathBuf>,
}

/// Runs the checks and prints the report; the exit code is the verdict.
pub(crate) fn main(args: DiagArgs) -> ExitCode {
    let cfg = brix_diag::DiagConfig {
        nvml_lib: args.nvml_lib,
        expected_cards: args.expected_cards,
        gpus: args.gpus,
    };
    let report = brix_diag::diagnose(&cfg);
    let text = if args.json {
        match serde_json::to_string_pretty(&report) {
            Ok(s) => s + "\n",
            Err(e) => {
                say(format_args!("error: encoding the report: {e}"));
                return ExitCode::from(2);
            }
        }
    } else {
        report.to_table()
    };
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        say(format_args!("error: writing the report: {e}"));
        return ExitCode::from(2);
    }
    if report.healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// Prints to stderr, ignoring a closed stderr (`brix diag 2>&1 | head` closes both): the exit
/// code still says what happened, where `eprintln!` would panic.
fn say(message: std::fmt::Arguments<'_>) {
    let _ = writeln!(std::io::stderr(), "{message}");
}
