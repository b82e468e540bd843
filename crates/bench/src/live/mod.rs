//! `brix bench run`: a workload against a live OpenAI endpoint (the gateway, `brix up`, a
//! peer router or an engine), every request streamed and timed as a client sees it, and
//! `brix bench compare`: several runs side by side as a table and as plots.
//!
//! A run is [`run`] (send the workload, get one [`RequestRecord`] per request) then
//! [`write_run`] (`requests.jsonl`, `summary.json`, `run.json` in a directory). Requests are
//! `POST /v1/completions` with `ignore_eos`, so each generates exactly the workload's output
//! length and runs against different strategies or routers are the same work. Arrivals are
//! open loop (never delayed by slow responses) or closed loop (N users); see [`dispatch`].

mod client;
pub mod compare;
mod dispatch;
pub(crate) mod plot;
mod progress;
mod stream;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;
use reqwest::Url;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use self::client::Target;
use self::dispatch::{Ctx, Job, Unit};
use self::progress::Progress;
use crate::report::{RequestRecord, Summary};
use crate::workload::Workload;

pub use self::compare::{CompareError, compare};

/// How requests are paced.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pacing {
    /// Each request at its workload time (`at_s`), whatever the server is doing.
    Open,
    /// This many users, each sending its next request when its last one ends.
    Closed {
        /// Concurrent users.
        users: usize,
    },
}

/// One live run, validated.
#[derive(Debug, Clone)]
pub struct LiveConfig {
    /// `…/v1/completions` on the endpoint.
    pub url: Url,
    /// The `model` of every request.
    pub model: String,
    /// Sent as the `routing-strategy` header, for the gateway to pick a strategy per run.
    pub routing_strategy: Option<String>,
    /// Longest one request may take (send to last byte) before it is recorded as timed out.
    pub timeout: Duration,
    /// Open or closed loop.
    pub pacing: Pacing,
    /// Closed loop: start no request after this long (open loop: the workload's own times
    /// bound the run).
    pub stop_after: Option<Duration>,
    /// Draw a progress bar on stderr (only on a terminal).
    pub progress: bool,
}

/// Why a live run or its output failed.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    /// `--endpoint` is not an `http://` URL.
    #[error(
        "--endpoint must look like http://127.0.0.1:8888 (optionally ending in /v1), got {0:?}"
    )]
    Endpoint(String),
    /// `--routing-strategy` cannot be a header value.
    #[error("--routing-strategy {0:?} is not a valid header value")]
    Strategy(String),
    /// The HTTP client could not be built.
    #[error("building the HTTP client: {0}")]
    Client(reqwest::Error),
    /// The workload has no request.
    #[error("the workload has no request")]
    Empty,
    /// Writing an output file failed.
    #[error("writing {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// Encoding an output file failed.
    #[error("encoding {path}: {source}")]
    Encode {
        /// The file.
        path: PathBuf,
        /// What serde said.
        source: serde_json::Error,
    },
}

impl LiveConfig {
    /// Checks `endpoint` (`http://HOST:PORT`, with or without a trailing `/v1`) and fills the
    /// rest with the defaults the CLI shows: closed loop of 8, 300 s per request.
    pub fn new(endpoint: &str, model: &str) -> Result<Self, LiveError> {
        let bad = || LiveError::Endpoint(endpoint.to_owned());
        let base = endpoint.trim_end_matches('/');
        let base = base.strip_suffix("/v1").unwrap_or(base);
        let parsed = Url::parse(base).map_err(|_| bad())?;
        // Plain HTTP only: the client is built without TLS (loopback and cluster-internal
        // endpoints are what this measures).
        if parsed.scheme() != "http" || parsed.host().is_none() {
            return Err(bad());
        }
        let url = Url::parse(&format!("{base}/v1/completions")).map_err(|_| bad())?;
        Ok(Self {
            url,
            model: model.to_owned(),
            routing_strategy: None,
            timeout: Duration::from_secs(300),
            pacing: Pacing::Closed { users: 8 },
            stop_after: None,
            progress: true,
        })
    }
}

/// Sends `workload` as configured and returns one record per request sent, in id order.
/// `text` renders a prompt's word ids (all prompts are rendered before the first send, so
/// rendering adds no client lag).
pub async fn run(
    cfg: &LiveConfig,
    workload: &Workload,
    text: impl Fn(&[u32]) -> String,
) -> Result<Vec<RequestRecord>, LiveError> {
    if workload.requests.is_empty() {
        return Err(LiveError::Empty);
    }
    let routing_strategy = cfg
        .routing_strategy
        .as_deref()
        .map(|s| HeaderValue::from_str(s).map_err(|_| LiveError::Strategy(s.to_owned())))
        .transpose()?;
    let users = match cfg.pacing {
        Pacing::Open => None,
        Pacing::Closed { users } => Some(users.max(1)),
    };
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(users.unwrap_or(usize::MAX))
        .tcp_nodelay(true)
        .build()
        .map_err(LiveError::Client)?;
    let units = units(workload, text);
    let ctx = Arc::new(Ctx {
        client,
        target: Target {
            url: cfg.url.clone(),
            model: cfg.model.clone(),
            routing_strategy,
            timeout: cfg.timeout,
        },
        t0: Instant::now(),
        progress: Progress::new(workload.requests.len() as u64, cfg.progress),
    });
    let mut records = match users {
        None => dispatch::open_loop(Arc::clone(&ctx), units).await,
        Some(users) => {
            let stop_s = cfg.stop_after.map(|d| d.as_secs_f64());
            dispatch::closed_loop(Arc::clone(&ctx), units, users, stop_s).await
        }
    };
    ctx.progress.finish();
    records.sort_by_key(|r| r.id);
    Ok(records)
}

/// Groups the workload into units: each single request alone, each session's turns together
/// in turn order; units in order of their first request's `at_s`.
fn units(workload: &Workload, text: impl Fn(&[u32]) -> String) -> Vec<Unit> {
    let mut units: Vec<Unit> = Vec::new();
    let mut session_unit: BTreeMap<u64, usize> = BTreeMap::new();
    for r in &workload.requests {
        let job = Job {
            id: r.id,
            session: r.session.map(|t| (t.session, t.turn)),
            at_s: r.at_s,
            think_s: r.session.map_or(0.0, |t| t.think_s),
            text: text(&r.prompt),
            prompt_tokens: u32::try_from(r.prompt.len()).unwrap_or(u32::MAX),
            output_tokens: r.output_tokens,
        };
        match r.session {
            Some(t) => {
                let i = *session_unit.entry(t.session).or_insert_with(|| {
                    units.push(Unit::default());
                    units.len() - 1
                });
                units[i].jobs.push_back(job);
            }
            None => units.push(Unit { jobs: [job].into() }),
        }
    }
    for u in &mut units {
        u.jobs
            .make_contiguous()
            .sort_by_key(|j| j.session.map(|s| s.1));
    }
    units.sort_by(|a, b| {
        let at = |u: &Unit| u.jobs.front().map_or(0.0, |j| j.at_s);
        at(a).total_cmp(&at(b))
    });
    units
}

/// What was run, written beside the results (`run.json`) so a result names its command.
/// Missing fields read as their defaults, so files from other writers (`brix bench sim`) and
/// older runs still compare.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(default)]
pub struct RunInfo {
    /// The run's label (the row name in tables and plots).
    pub label: String,
    /// The endpoint.
    pub endpoint: String,
    /// The model.
    pub model: String,
    /// The workload spec or file.
    pub workload: String,
    /// The arrival process.
    pub arrival: String,
    /// Offered rate in requests/s, for an open-loop run at a fixed rate (sweeps plot by it).
    pub rate: Option<f64>,
    /// Workload and arrival seed.
    pub seed: u64,
    /// The `routing-strategy` header, if sent.
    pub routing_strategy: Option<String>,
    /// The command line that made it.
    pub command: String,
}

/// File names inside a run directory.
pub const REQUESTS_FILE: &str = "requests.jsonl";
/// The summary's file name.
pub const SUMMARY_FILE: &str = "summary.json";
/// The run description's file name.
pub const INFO_FILE: &str = "run.json";

/// Writes `requests.jsonl` (one record per line), `summary.json` and `run.json` into `dir`
/// (created if missing).
pub fn write_run(
    dir: &Path,
    records: &[RequestRecord],
    summary: &Summary,
    info: &RunInfo,
) -> Result<(), LiveError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| LiveError::Write { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let path = dir.join(REQUESTS_FILE);
    let mut lines = Vec::new();
    for r in records {
        serde_json::to_writer(&mut lines, r).map_err(|source| LiveError::Encode {
            path: path.clone(),
            source,
        })?;
        lines.push(b'\n');
    }
    std::fs::write(&path, lines).map_err(io(&path))?;
    write_json(&dir.join(SUMMARY_FILE), summary)?;
    write_json(&dir.join(INFO_FILE), info)
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), LiveError> {
    let mut out = serde_json::to_vec_pretty(value).map_err(|source| LiveError::Encode {
        path: path.to_path_buf(),
        source,
    })?;
    let _ = out.write_all(b"\n");
    std::fs::write(path, out).map_err(|source| LiveError::Write {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::{Turn, WorkRequest};

    #[test]
    fn live_endpoint_forms() {
        for ok in [
            "http://127.0.0.1:8888",
            "http://127.0.0.1:8888/",
            "http://127.0.0.1:8888/v1",
            "http://localhost:8888/v1/",
        ] {
            let c = LiveConfig::new(ok, "m").expect(ok);
            assert_eq!(c.url.path(), "/v1/completions", "{ok}");
        }
        for bad in ["127.0.0.1:8888", "ftp://x:1", "https://x:1", "http://", ""] {
            assert!(LiveConfig::new(bad, "m").is_err(), "{bad}");
        }
    }

    #[test]
    fn live_units_group_sessions_in_turn_order() {
        let req = |id, at_s, session: Option<(u64, u32)>| WorkRequest {
            id,
            at_s,
            session: session.map(|(session, turn)| Turn {
                session,
                turn,
                think_s: 0.5,
            }),
            prompt: vec![1, 2, 3],
            output_tokens: 4,
        };
        let w = Workload {
            requests: vec![
                req(0, 0.2, Some((7, 1))),
                req(1, 0.1, Some((7, 0))),
                req(2, 0.0, None),
                req(3, 0.3, Some((8, 0))),
            ],
        };
        let units = units(&w, |p| format!("{p:?}"));
        let ids: Vec<Vec<u64>> = units
            .iter()
            .map(|u| u.jobs.iter().map(|j| j.id).collect())
            .collect();
        assert_eq!(ids, vec![vec![2], vec![1, 0], vec![3]]);
        assert_eq!(units[1].jobs[1].think_s, 0.5);
        assert_eq!(units[0].jobs[0].text, "[1, 2, 3]");
    }
}
