//! Test support shared by Brix's integration tests: simulated engines on `127.0.0.1:0`,
//! readers for what servers answer (SSE bodies, Prometheus text), and the one `eventually`
//! every test waits with. Tests use the engine simulator itself as their fake engine, never a
//! second mock.
#![expect(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test support: a failed unwrap is a failed test"
)]

pub mod lora;
pub mod moto;
pub mod redis;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use brix_sim::{Catalog, OutputLen};
use brix_sim_http::SimConfig;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// The NVML failure mock-up (`libbrix_nvml_mock.so`) cargo built for the calling test: a crate
/// that dev-depends on brix-nvml-mock gets the cdylib in target/<profile>/deps/ next to its test
/// binary (a workspace build also puts one a level up). Missing = a failed test, never a skip.
pub fn nvml_mock_library() -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let deps = exe.parent().unwrap();
    let candidates = [
        deps.join("libbrix_nvml_mock.so"),
        deps.join("../libbrix_nvml_mock.so"),
    ];
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .unwrap_or_else(|| panic!("libbrix_nvml_mock.so not found at {candidates:?}"))
}

/// A small, fast engine: H200 steps, 512 blocks, 2k context, answers of 4 tokens.
pub fn sim_config(served_model_name: &str) -> SimConfig {
    let c = Catalog::builtin();
    let mut cfg = SimConfig::new(
        c.model("llama-3-8b").unwrap().clone(),
        c.gpu("H200").unwrap().clone(),
    );
    cfg.served_model_name = served_model_name.into();
    cfg.engine.num_gpu_blocks_override = Some(512);
    cfg.engine.max_model_len = 2048;
    cfg.engine.output_len = OutputLen::Fixed(4);
    cfg
}

/// A `brix sim` served in this runtime.
pub struct SimServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The serving task; it owns every connection, so aborting it is a crash: the port closes
    /// and open connections (kept-alive ones included) are cut.
    pub task: JoinHandle<()>,
}

impl SimServer {
    /// Crashes the engine: listener and every connection gone at once.
    pub fn kill(&self) {
        self.task.abort();
    }
}

/// Serves `cfg` on `addr` (use `127.0.0.1:0` for a free port); start-up errors fail the test.
pub async fn start_sim_at(cfg: &SimConfig, addr: SocketAddr) -> SimServer {
    let listener = TcpListener::bind(addr).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = brix_sim_http::spawn_owned(cfg, listener).unwrap();
    SimServer { addr, task }
}

/// Serves `cfg` on a free loopback port.
pub async fn start_sim(cfg: &SimConfig) -> SimServer {
    start_sim_at(cfg, SocketAddr::from(([127, 0, 0, 1], 0))).await
}

/// Polls `check` every 10 ms until it yields a value; fails the test naming `what` after
/// `within`. Tests wait on conditions with this, never on sleeps.
pub async fn eventually_some<T, F: Future<Output = Option<T>>>(
    what: &str,
    within: Duration,
    mut check: impl FnMut() -> F,
) -> T {
    let give_up = tokio::time::Instant::now() + within;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < give_up,
            "never happened within {within:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// [`eventually_some`] for a yes/no condition.
pub async fn eventually<F: Future<Output = bool>>(
    what: &str,
    within: Duration,
    mut check: impl FnMut() -> F,
) {
    eventually_some(what, within, || {
        let f = check();
        async move { f.await.then_some(()) }
    })
    .await;
}

/// The `data:` payloads of an SSE body, in order; panics on any other line.
pub fn sse_events(body: &str) -> Vec<String> {
    assert!(
        body.ends_with("\n\n"),
        "SSE body must end with a blank line: {body:?}"
    );
    body.split("\n\n")
        .filter(|frame| !frame.is_empty())
        .map(|frame| {
            frame
                .strip_prefix("data: ")
                .unwrap_or_else(|| panic!("not an SSE data frame: {frame:?}"))
                .to_string()
        })
        .collect()
}

/// A parsed Prometheus text exposition (format 0.0.4).
#[derive(Debug, Default)]
pub struct Exposition {
    /// HELP text by family.
    pub help: HashMap<String, String>,
    /// TYPE by family.
    pub types: HashMap<String, String>,
    /// Every sample line.
    pub samples: Vec<Sample>,
}

/// One sample line.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Series name.
    pub name: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its value.
    pub value: f64,
}

impl Exposition {
    /// Parses the text, failing on anything malformed.
    pub fn parse(text: &str) -> Self {
        let mut e = Self::default();
        for line in text.lines().filter(|l| !l.is_empty()) {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, help) = rest.split_once(' ').unwrap();
                assert!(
                    e.help.insert(name.into(), help.into()).is_none(),
                    "HELP twice for {name}"
                );
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                assert!(
                    e.types.insert(name.into(), kind.into()).is_none(),
                    "TYPE twice for {name}"
                );
            } else {
                assert!(!line.starts_with('#'), "unexpected comment {line}");
                e.samples.push(parse_sample(line));
            }
        }
        e
    }

    /// Samples named `name` whose labels include every pair in `labels`.
    pub fn find<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&str, &str)],
    ) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples.iter().filter(move |s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
    }

    /// The sum of the samples matching (0 when none does): a family's total across series.
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.find(name, labels).map(|s| s.value).sum()
    }

    /// The one sample matching, or None.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let found: Vec<_> = self.find(name, labels).collect();
        assert!(
            found.len() <= 1,
            "{name} {labels:?} matches {} samples",
            found.len()
        );
        found.first().map(|s| s.value)
    }
}

fn parse_sample(line: &str) -> Sample {
    let s = brix_router::prom::sample(line).unwrap_or_else(|| panic!("bad sample line {line}"));
    let labels =
        brix_router::prom::labels(s.labels).unwrap_or_else(|| panic!("bad labels in {line}"));
    Sample {
        name: s.name.into(),
        labels: labels.into_iter().collect(),
        value: s.value,
    }
}
