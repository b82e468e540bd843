//! LoRA adapters in virtual time: which adapter each request names (a popularity mix drawn
//! with a seed), how the fleet places them (`brix_adapters::plan`, the controller's policy)
//! and what the run reports per adapter.
//!
//! A mix is `uniform:K` (K adapters, equally likely), `zipf:K:S` (adapter `k` of `K` with
//! weight `1 / k^S`), or a file's text ([`AdapterMix::parse_file`]: one adapter a line,
//! `NAME[,WEIGHT]`, weight 1 when absent, `#` comments). Generated adapters are named
//! `lora-0` … `lora-(K−1)`, most popular first.

use std::collections::BTreeMap;
use std::fmt;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

/// Most adapters a mix may name: placement plans over every one each tick.
pub const MAX_ADAPTERS: usize = 100_000;

/// Why an adapter spec or file does not parse.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum AdapterSpecError {
    /// The spec is none of the known forms.
    #[error("adapter spec {0:?}: expected uniform:K, zipf:K:S or file:PATH")]
    Form(String),
    /// K is not a whole number in 1..=MAX_ADAPTERS.
    #[error("adapter count {0:?}: expected a whole number from 1 to {MAX_ADAPTERS}")]
    Count(String),
    /// The Zipf exponent is not a finite number ≥ 0.
    #[error("zipf exponent {0:?}: expected a finite number >= 0")]
    Exponent(String),
    /// A file line is bad.
    #[error("adapter file line {line}: {why}")]
    Line {
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        why: String,
    },
    /// The file names no adapter.
    #[error("adapter file names no adapter")]
    Empty,
}

/// Adapter names and their relative popularity.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AdapterMix {
    /// Names, in the order given (most popular first for generated mixes).
    pub names: Vec<String>,
    /// Relative weights, one per name, all > 0.
    pub weights: Vec<f64>,
}

/// A spec as given on the command line, before a file is read.
#[derive(Clone, Debug, PartialEq)]
pub enum AdapterSpec {
    /// A generated mix.
    Mix(AdapterMix),
    /// `file:PATH`: the caller reads it and calls [`AdapterMix::parse_file`].
    File(String),
}

impl AdapterSpec {
    /// Parses `uniform:K`, `zipf:K:S` or `file:PATH`.
    pub fn parse(s: &str) -> Result<Self, AdapterSpecError> {
        let s = s.trim();
        let parts: Vec<&str> = s.splitn(3, ':').collect();
        match parts.as_slice() {
            ["file", path] | ["file", path, ..] if !path.is_empty() => {
                Ok(Self::File(s["file:".len()..].to_string()))
            }
            ["uniform", k] => Ok(Self::Mix(AdapterMix::zipf(count(k)?, 0.0))),
            ["zipf", k, e] => {
                let exp: f64 = e
                    .parse()
                    .ok()
                    .filter(|x: &f64| x.is_finite() && *x >= 0.0)
                    .ok_or_else(|| AdapterSpecError::Exponent(e.to_string()))?;
                Ok(Self::Mix(AdapterMix::zipf(count(k)?, exp)))
            }
            _ => Err(AdapterSpecError::Form(s.to_string())),
        }
    }
}

fn count(k: &str) -> Result<usize, AdapterSpecError> {
    k.parse()
        .ok()
        .filter(|n| (1..=MAX_ADAPTERS).contains(n))
        .ok_or_else(|| AdapterSpecError::Count(k.to_string()))
}

impl AdapterMix {
    /// `k` adapters `lora-0` … with weights `1 / (i+1)^s` (`s = 0`: uniform).
    pub fn zipf(k: usize, s: f64) -> Self {
        Self {
            names: (0..k).map(|i| format!("lora-{i}")).collect(),
            weights: (0..k).map(|i| 1.0 / ((i + 1) as f64).powf(s)).collect(),
        }
    }

    /// One adapter a line, `NAME[,WEIGHT]`; blank lines and `#` comments skipped. Names are
    /// unique, at most 128 bytes of `[A-Za-z0-9._/-]`; weights finite and > 0.
    pub fn parse_file(text: &str) -> Result<Self, AdapterSpecError> {
        let mut mix = Self {
            names: Vec::new(),
            weights: Vec::new(),
        };
        let mut seen = std::collections::BTreeSet::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let bad = |why: String| AdapterSpecError::Line { line: n + 1, why };
            let (name, weight) = match line.split_once(',') {
                Some((name, w)) => {
                    let w: f64 = w
                        .trim()
                        .parse()
                        .ok()
                        .filter(|x: &f64| x.is_finite() && *x > 0.0)
                        .ok_or_else(|| bad("the weight must be a number > 0".into()))?;
                    (name.trim(), w)
                }
                None => (line, 1.0),
            };
            let valid = |c: char| c.is_ascii_alphanumeric() || "._/-".contains(c);
            if name.is_empty() || name.len() > 128 || !name.chars().all(valid) {
                return Err(bad(
                    "the name must be 1-128 characters of A-Z a-z 0-9 . _ / -".into(),
                ));
            }
            if !seen.insert(name.to_string()) {
                return Err(bad(format!("adapter {name} is listed twice")));
            }
            if mix.names.len() == MAX_ADAPTERS {
                return Err(bad(format!("more than {MAX_ADAPTERS} adapters")));
            }
            mix.names.push(name.to_string());
            mix.weights.push(weight);
        }
        if mix.names.is_empty() {
            return Err(AdapterSpecError::Empty);
        }
        Ok(mix)
    }

    /// Each weight over their sum.
    pub fn shares(&self) -> Vec<f64> {
        let total: f64 = self.weights.iter().sum();
        self.weights.iter().map(|w| w / total).collect()
    }

    /// The adapter (index into `names`) of each of `n` requests, drawn independently with
    /// the mix's weights from a generator seeded with `seed`.
    pub fn assign(&self, n: usize, seed: u64) -> Vec<u32> {
        let mut cumulative = Vec::with_capacity(self.weights.len());
        let mut sum = 0.0;
        for w in &self.weights {
            sum += w;
            cumulative.push(sum);
        }
        let mut rng = SmallRng::seed_from_u64(seed ^ 0x006c_6f72_616d_6978);
        (0..n)
            .map(|_| {
                let x = rng.random_range(0.0..sum);
                let i = cumulative.partition_point(|&c| c <= x);
                i.min(self.names.len() - 1) as u32
            })
            .collect()
    }
}

impl fmt::Display for AdapterMix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} adapters", self.names.len())
    }
}

/// The adapters of a run and how the fleet places them.
#[derive(Clone, Debug, PartialEq)]
pub struct AdapterSim {
    /// Adapter names.
    pub names: Vec<String>,
    /// Per request (workload position): index into `names`.
    pub of_request: Vec<u32>,
    /// Each ModelAdapter's `replicas`: `None` = every pod (as AIBrix), `Some(n)` = n pods,
    /// more when hot.
    pub replicas: Option<u32>,
    /// The placement policy's knobs.
    pub policy: brix_adapters::Config,
    /// Seconds between placement rounds (the controller's loop: 2 s).
    pub tick_s: f64,
    /// Bytes of each adapter's weights (rank `max_lora_rank` on q, k, v, o when `None`); a
    /// load takes `bytes / lora_disk_gbps`.
    pub bytes: Option<u64>,
    /// Seconds a request for an adapter that no pod serves yet is held before a 503.
    pub hold_s: f64,
    /// Seconds over which per-adapter traffic is counted for the hot rule (the gateway's 60).
    pub traffic_window_s: f64,
}

impl AdapterSim {
    /// `mix` drawn over `requests` requests with `seed`, one replica each, the controller's
    /// defaults.
    pub fn new(mix: &AdapterMix, requests: usize, seed: u64) -> Self {
        Self {
            names: mix.names.clone(),
            of_request: mix.assign(requests, seed),
            replicas: Some(1),
            policy: brix_adapters::Config::default(),
            tick_s: 2.0,
            bytes: None,
            hold_s: 60.0,
            traffic_window_s: 60.0,
        }
    }
}

/// What happened to adapters on one pod.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum AdapterEventKind {
    /// A load started (the placement's Load action).
    Load,
    /// The load finished: the engine lists it and requests may go there.
    Loaded,
    /// No new requests for it there (Drain).
    Drain,
    /// Routable there again (Resume).
    Resume,
    /// Unloaded from the engine.
    Unload,
}

/// One placement event.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AdapterEvent {
    /// Virtual seconds.
    pub t: f64,
    /// Engine name.
    pub pod: String,
    /// Adapter name.
    pub adapter: String,
    /// What happened.
    pub kind: AdapterEventKind,
}

/// One adapter at the end of a run.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct AdapterCount {
    /// Requests that named it.
    pub requests: u64,
    /// Of those, served (200).
    pub ok: u64,
    /// Loads started.
    pub loads: u64,
    /// Unloads.
    pub unloads: u64,
    /// Most pods that held it at once.
    pub max_replicas: u32,
}

/// The adapter side of a run.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct AdapterReport {
    /// Per adapter, by name.
    pub per_adapter: BTreeMap<String, AdapterCount>,
    /// Loads, drains, resumes and unloads, in order.
    pub events: Vec<AdapterEvent>,
    /// Placement rounds run.
    pub rounds: u64,
    /// Per engine: most adapters resident at once (never above its capacity).
    pub max_resident: Vec<u32>,
    /// Requests that waited for a pod to serve their adapter.
    pub held: u64,
    /// Of those, ended with a 503 (no pod in `hold_s`).
    pub held_timed_out: u64,
}

impl AdapterReport {
    /// Events of one kind.
    pub fn count(&self, kind: AdapterEventKind) -> usize {
        self.events.iter().filter(|e| e.kind == kind).count()
    }
}
