//! `brix bench compare DIR...`: runs side by side. Each DIR is one run (it holds
//! `summary.json`) or a rate sweep (its subdirectories do); a sweep is one series whose runs
//! make a latency-throughput curve. Writes `table.md`, `ttft_cdf.{png,svg}` and
//! `latency_vs_load.{png,svg}` into the output directory and returns the table.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::plot::{self, CdfLine, LoadLine, LoadPoint, PlotError};
use super::{INFO_FILE, REQUESTS_FILE, RunInfo, SUMMARY_FILE};
use crate::report::{RequestRecord, Summary};

/// Why a comparison failed.
#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    /// A directory holds neither a run nor runs.
    #[error("{0}: no {SUMMARY_FILE} in it or in its subdirectories")]
    NoRun(PathBuf),
    /// Reading a file failed.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A file is not what a run writes.
    #[error("{path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What serde said.
        source: serde_json::Error,
    },
    /// Writing the table failed.
    #[error("writing {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A plot could not be drawn.
    #[error(transparent)]
    Plot(#[from] PlotError),
}

/// One run read back from its directory.
#[derive(Debug, Clone)]
pub struct Run {
    /// Its summary.
    pub summary: Summary,
    /// What was run, when `run.json` is there.
    pub info: Option<RunInfo>,
    /// Successful requests' TTFT, ascending (for the CDF).
    pub ttft_ms: Vec<f64>,
}

/// Runs that belong on one curve: a sweep, or a single run.
#[derive(Debug, Clone)]
pub struct Series {
    /// Legend text: the directory's name for a sweep, else the run's label.
    pub label: String,
    /// Its runs, by offered rate (else by achieved requests/s).
    pub runs: Vec<Run>,
}

/// Reads `dir` as one run or as a sweep of runs in its subdirectories.
pub fn load(dir: &Path) -> Result<Series, CompareError> {
    if dir.join(SUMMARY_FILE).is_file() {
        let run = load_run(dir)?;
        return Ok(Series {
            label: run.summary.label.clone(),
            runs: vec![run],
        });
    }
    let entries = std::fs::read_dir(dir).map_err(|source| CompareError::Read {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut subdirs: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.join(SUMMARY_FILE).is_file())
        .collect();
    subdirs.sort();
    if subdirs.is_empty() {
        return Err(CompareError::NoRun(dir.to_path_buf()));
    }
    let mut runs = subdirs
        .iter()
        .map(|d| load_run(d))
        .collect::<Result<Vec<_>, _>>()?;
    let key = |r: &Run| {
        r.info
            .as_ref()
            .and_then(|i| i.rate)
            .unwrap_or(r.summary.requests_per_s)
    };
    runs.sort_by(|a, b| key(a).total_cmp(&key(b)));
    let label = dir.file_name().map_or_else(
        || dir.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    Ok(Series { label, runs })
}

fn read(path: &Path) -> Result<String, CompareError> {
    std::fs::read_to_string(path).map_err(|source| CompareError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn parse<T: serde::de::DeserializeOwned>(path: &Path, text: &str) -> Result<T, CompareError> {
    serde_json::from_str(text).map_err(|source| CompareError::Parse {
        path: path.to_path_buf(),
        source,
    })
}

fn load_run(dir: &Path) -> Result<Run, CompareError> {
    let path = dir.join(SUMMARY_FILE);
    let summary: Summary = parse(&path, &read(&path)?)?;
    let path = dir.join(INFO_FILE);
    let info = if path.is_file() {
        Some(parse(&path, &read(&path)?)?)
    } else {
        None
    };
    let path = dir.join(REQUESTS_FILE);
    let mut ttft_ms = Vec::new();
    if path.is_file() {
        for line in read(&path)?.lines().filter(|l| !l.trim().is_empty()) {
            let r: RequestRecord = parse(&path, line)?;
            if let (true, Some(t)) = (r.ok(), r.ttft_ms) {
                ttft_ms.push(t);
            }
        }
    }
    ttft_ms.sort_by(f64::total_cmp);
    Ok(Run {
        summary,
        info,
        ttft_ms,
    })
}

/// The comparison as markdown: the shared summary table, then client lag and the split of
/// completed requests over pods per run.
pub fn table(series: &[Series]) -> String {
    let runs: Vec<&Run> = series.iter().flat_map(|s| &s.runs).collect();
    let summaries: Vec<&Summary> = runs.iter().map(|r| &r.summary).collect();
    let mut s = Summary::table(&summaries);
    s.push_str("\n| run | client lag p50 / p99 ms | completed per pod |\n|---|---|---|\n");
    for r in &runs {
        let total: u64 = r.summary.per_pod.values().sum();
        let split = r
            .summary
            .per_pod
            .iter()
            .map(|(pod, n)| {
                let pct = if total > 0 {
                    100.0 * *n as f64 / total as f64
                } else {
                    0.0
                };
                format!("{pod} {pct:.0} %")
            })
            .collect::<Vec<_>>()
            .join(", ");
        let _ = writeln!(
            s,
            "| {} | {:.1} / {:.1} | {} |",
            r.summary.label,
            r.summary.client_lag_ms.p50,
            r.summary.client_lag_ms.p99,
            if split.is_empty() { "–" } else { &split },
        );
    }
    s
}

/// Reads every directory, writes `table.md` and the plots into `out` (created if missing) and
/// returns the table.
pub fn compare(dirs: &[PathBuf], out: &Path) -> Result<String, CompareError> {
    let series = dirs
        .iter()
        .map(|d| load(d))
        .collect::<Result<Vec<_>, _>>()?;
    std::fs::create_dir_all(out).map_err(|source| CompareError::Write {
        path: out.to_path_buf(),
        source,
    })?;
    let table = table(&series);
    let path = out.join("table.md");
    std::fs::write(&path, &table).map_err(|source| CompareError::Write { path, source })?;
    let cdf: Vec<CdfLine<'_>> = series
        .iter()
        .flat_map(|s| &s.runs)
        .map(|r| CdfLine {
            label: &r.summary.label,
            sorted_ms: &r.ttft_ms,
        })
        .collect();
    plot::ttft_cdf(out, &cdf)?;
    let points = |s: &Series, f: fn(&Summary) -> (f64, f64)| {
        s.runs
            .iter()
            .map(|r| {
                let (p50, p99) = f(&r.summary);
                LoadPoint {
                    rps: r.summary.requests_per_s,
                    p50,
                    p99,
                }
            })
            .collect()
    };
    let load: Vec<LoadLine<'_>> = series
        .iter()
        .map(|s| LoadLine {
            label: &s.label,
            ttft: points(s, |m| (m.ttft_ms.p50, m.ttft_ms.p99)),
            e2e: points(s, |m| (m.e2e_ms.p50, m.e2e_ms.p99)),
        })
        .collect();
    plot::latency_vs_load(out, &load)?;
    Ok(table)
}
