//! `brix optimize`: the heterogeneous GPU optimizer from the command line.
//! `plan` prints (and writes) the cheapest GPU mix for a workload or a live gateway's demand;
//! `profile` measures a capacity profile (virtual time, roofline, or a live endpoint);
//! `compare` sets roofline profiles against simulated ones. Parsing of the shared flag values
//! (`--slo`, `--grid`, `NAME=N` lists) lives here; docs/optimizer.md has the method.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use brix_optimizer::{Grid, Slo};
use clap::{Args, Subcommand};

#[path = "optimize_cmd_plan.rs"]
mod plan;
#[path = "optimize_cmd_profile.rs"]
mod profile;
#[path = "optimize_verify.rs"]
mod verify;

/// Flags of `brix optimize`.
#[derive(Debug, Args)]
pub(crate) struct OptimizeArgs {
    #[command(subcommand)]
    command: OptimizeCommand,
}

#[derive(Debug, Subcommand)]
enum OptimizeCommand {
    /// The cheapest mix of GPU types (replicas of each, and which request shapes each
    /// serves) that carries a workload's demand within the profiles' SLO.
    Plan(Box<plan::PlanArgs>),
    /// Measure a capacity profile: per (input, output) bucket, the highest rate one replica
    /// sustains within the SLO (AIBrix's JSON).
    Profile(Box<profile::ProfileArgs>),
    /// Roofline (analytic) profiles against simulated ones, GPU by GPU.
    Compare(profile::CompareArgs),
}

/// Why `brix optimize` failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum OptimizeError {
    /// A flag's value is wrong.
    #[error("{0}")]
    Flag(String),
    /// The workload could not be loaded or generated.
    #[error(transparent)]
    Workload(#[from] brix_bench::workload::WorkloadError),
    /// `--arrival` does not parse.
    #[error("--arrival: {0}")]
    Arrival(#[from] brix_bench::workload::ArrivalError),
    /// A profile is missing or unusable.
    #[error("{0}")]
    Profile(String),
    /// No plan exists.
    #[error("no plan: {0}")]
    Solve(#[from] brix_optimizer::SolveError),
    /// Measuring a profile failed.
    #[error(transparent)]
    Profiling(#[from] brix_bench::profiling::ProfilingError),
    /// The gateway's demand could not be fetched.
    #[error("gateway {url}: {why}")]
    Gateway {
        /// What was asked.
        url: String,
        /// Why it failed.
        why: String,
    },
    /// `--verify`: no plan met the SLO on replay within the rounds (exit code 2).
    #[error("{0}")]
    NotVerified(String),
    /// Writing an output failed.
    #[error("writing {path}: {why}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        why: String,
    },
}

/// Runs `brix optimize` and turns its result into the exit code.
pub(crate) fn main(args: OptimizeArgs) -> ExitCode {
    let result = match args.command {
        OptimizeCommand::Plan(a) => plan::run(*a),
        OptimizeCommand::Profile(a) => profile::run(*a),
        OptimizeCommand::Compare(a) => profile::compare(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(OptimizeError::NotVerified(why)) => {
            eprintln!("error: {why}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Parses `ttft=2s,tpot=100ms,e2e=30s,p=90` (seconds when no unit; any subset, at least one
/// bound; `p` defaults to 90).
pub(crate) fn parse_slo(s: &str) -> Result<Slo, OptimizeError> {
    let bad = |why: String| OptimizeError::Flag(format!("--slo {s:?}: {why}"));
    let mut slo = Slo {
        percentile: 90.0,
        ttft: None,
        tpot: None,
        e2e: None,
    };
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| bad(format!("'{part}' is not KEY=VALUE")))?;
        match k.trim() {
            "p" | "percentile" => {
                slo.percentile = v
                    .trim()
                    .trim_start_matches(['p', 'P'])
                    .parse()
                    .map_err(|_| bad(format!("'{v}' is not a percentile")))?;
            }
            key @ ("ttft" | "tpot" | "e2e") => {
                let secs = Some(parse_seconds(v).ok_or_else(|| {
                    bad(format!("'{v}' is not a duration (e.g. 2s, 100ms, 0.5)"))
                })?);
                match key {
                    "ttft" => slo.ttft = secs,
                    "tpot" => slo.tpot = secs,
                    _ => slo.e2e = secs,
                }
            }
            other => return Err(bad(format!("unknown key '{other}' (ttft, tpot, e2e, p)"))),
        }
    }
    match slo.problem() {
        Some(why) => Err(bad(why)),
        None => Ok(slo),
    }
}

/// `2s`, `100ms`, `0.5` (seconds) → seconds.
fn parse_seconds(v: &str) -> Option<f64> {
    let v = v.trim();
    let (num, scale) = if let Some(ms) = v.strip_suffix("ms") {
        (ms, 1e-3)
    } else if let Some(s) = v.strip_suffix('s') {
        (s, 1.0)
    } else {
        (v, 1.0)
    };
    num.trim()
        .parse::<f64>()
        .ok()
        .map(|x| x * scale)
        .filter(|x| x.is_finite() && *x > 0.0)
}

/// Parses `inputs=32..16384,outputs=4..2048`: powers of two between the ends, inclusive.
pub(crate) fn parse_grid(s: &str) -> Result<Grid, OptimizeError> {
    let bad = |why: String| OptimizeError::Flag(format!("--grid {s:?}: {why}"));
    let exp = |v: &str| -> Result<u32, OptimizeError> {
        let n: u32 = v
            .trim()
            .parse()
            .map_err(|_| bad(format!("'{v}' is not a token count")))?;
        if n == 0 || !n.is_power_of_two() {
            return Err(bad(format!("{n} is not a power of two")));
        }
        Ok(n.trailing_zeros())
    };
    let mut ends = BTreeMap::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| bad(format!("'{part}' is not KEY=LO..HI")))?;
        let (lo, hi) = v
            .split_once("..")
            .ok_or_else(|| bad(format!("'{v}' is not LO..HI")))?;
        let (lo, hi) = (exp(lo)?, exp(hi)?);
        if lo > hi || hi - lo > 16 {
            return Err(bad(format!(
                "'{v}': LO must not exceed HI, at most 17 ticks"
            )));
        }
        match k.trim() {
            key @ ("inputs" | "outputs") => {
                ends.insert(key, (lo, hi));
            }
            other => return Err(bad(format!("unknown key '{other}' (inputs, outputs)"))),
        }
    }
    let d = Grid::default();
    let (ilo, ihi) = ends.get("inputs").copied().unwrap_or((
        d.inputs[0].trailing_zeros(),
        d.inputs[d.inputs.len() - 1].trailing_zeros(),
    ));
    let (olo, ohi) = ends.get("outputs").copied().unwrap_or((
        d.outputs[0].trailing_zeros(),
        d.outputs[d.outputs.len() - 1].trailing_zeros(),
    ));
    Ok(Grid::log2(ilo, ihi, olo, ohi))
}

/// Parses repeated or comma-separated `NAME=VALUE` flags into a map; names must be among
/// `known` (the GPU types of the plan).
pub(crate) fn parse_named<T: std::str::FromStr>(
    flag: &str,
    values: &[String],
    known: &[String],
) -> Result<BTreeMap<String, T>, OptimizeError> {
    let mut out = BTreeMap::new();
    for part in values.iter().flat_map(|v| v.split(',')).map(str::trim) {
        if part.is_empty() {
            continue;
        }
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| OptimizeError::Flag(format!("{flag} '{part}' is not NAME=VALUE")))?;
        let name = known
            .iter()
            .find(|n| n.eq_ignore_ascii_case(k.trim()))
            .ok_or_else(|| {
                OptimizeError::Flag(format!(
                    "{flag} '{k}': not one of the GPU types ({})",
                    known.join(", ")
                ))
            })?;
        let v: T = v
            .trim()
            .parse()
            .map_err(|_| OptimizeError::Flag(format!("{flag} '{part}': bad value")))?;
        out.insert(name.clone(), v);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slo_strings_parse_with_units_and_reject_nonsense() {
        let s = parse_slo("ttft=2s,tpot=100ms,p=90").expect("valid");
        assert_eq!(s, Slo::default());
        let s = parse_slo("e2e=30,p=p99").expect("valid");
        assert_eq!((s.e2e, s.percentile, s.ttft), (Some(30.0), 99.0, None));
        for bad in ["", "ttft=fast", "p=90", "ttft=2s,p=150", "speed=1", "ttft"] {
            assert!(parse_slo(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn grids_are_powers_of_two_between_ends() {
        assert_eq!(
            parse_grid("inputs=32..16384,outputs=4..2048").ok(),
            Some(Grid::default())
        );
        let g = parse_grid("inputs=128..512").expect("valid");
        assert_eq!(g.inputs, vec![128, 256, 512]);
        assert_eq!(g.outputs, Grid::default().outputs);
        for bad in [
            "inputs=100..200",
            "inputs=64..32",
            "widths=1..2",
            "inputs=1",
        ] {
            assert!(parse_grid(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn named_values_match_known_types_case_insensitively() {
        let known = vec!["A10".to_string(), "H100".to_string()];
        let m: BTreeMap<String, u32> =
            parse_named("--max", &["a10=3,H100=1".into()], &known).expect("valid");
        assert_eq!(m.get("A10"), Some(&3));
        assert!(parse_named::<u32>("--max", &["L4=1".into()], &known).is_err());
        assert!(parse_named::<u32>("--max", &["A10=x".into()], &known).is_err());
    }
}
