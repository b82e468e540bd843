//! Starting servers, reading SSE, parsing Prometheus text, and waiting on conditions.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use brix_sim::{Catalog, OutputLen};
use brix_sim_http::SimConfig;
use serde_json::Value;
use tokio::net::TcpListener;

/// The name every test server serves.
pub const MODEL: &str = "sim";

/// A small, fast engine: H200 steps, 512 blocks, 2k context, answers of 4 tokens.
pub fn config() -> SimConfig {
    let c = Catalog::builtin();
    let mut cfg = SimConfig::new(
        c.model("llama-3-8b").unwrap().clone(),
        c.gpu("H200").unwrap().clone(),
    );
    cfg.served_model_name = MODEL.into();
    cfg.engine.num_gpu_blocks_override = Some(512);
    cfg.engine.max_model_len = 2048;
    cfg.engine.output_len = OutputLen::Fixed(4);
    cfg
}

/// A running server and a client for it.
pub struct Server {
    pub base: String,
    pub http: reqwest::Client,
}

/// Serves `cfg` on 127.0.0.1:0 in this runtime; start-up errors fail the test here.
pub async fn start(cfg: SimConfig) -> Server {
    let app = brix_sim_http::router(&cfg).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    Server {
        base: format!("http://{addr}"),
        http: reqwest::Client::new(),
    }
}

impl Server {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn post(&self, path: &str, body: &Value) -> reqwest::Response {
        self.http
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// POST and read the reply as (status, JSON).
    pub async fn post_json(&self, path: &str, body: &Value) -> (u16, Value) {
        let r = self.post(path, body).await;
        let status = r.status().as_u16();
        (status, r.json().await.unwrap())
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http.get(self.url(path)).send().await.unwrap()
    }

    pub async fn metrics(&self) -> Exposition {
        let r = self.get("/metrics").await;
        assert_eq!(r.status(), 200);
        Exposition::parse(&r.text().await.unwrap())
    }

    /// Polls /metrics until `check` holds, at most 200 times 20 ms apart (4 s), then fails.
    pub async fn metrics_eventually(
        &self,
        what: &str,
        check: impl Fn(&Exposition) -> bool,
    ) -> Exposition {
        for _ in 0..200 {
            let m = self.metrics().await;
            if check(&m) {
                return m;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("metrics never showed: {what}");
    }
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
    pub help: HashMap<String, String>,
    pub types: HashMap<String, String>,
    pub samples: Vec<Sample>,
}

/// One sample line.
#[derive(Debug, Clone)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

impl Exposition {
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
    let (series, value) = line.rsplit_once(' ').unwrap();
    let value: f64 = match value {
        "+Inf" => f64::INFINITY,
        v => v.parse().unwrap_or_else(|_| panic!("bad value in {line}")),
    };
    let Some((name, rest)) = series.split_once('{') else {
        return Sample {
            name: series.into(),
            labels: BTreeMap::new(),
            value,
        };
    };
    let body = rest
        .strip_suffix('}')
        .unwrap_or_else(|| panic!("unclosed labels in {line}"));
    Sample {
        name: name.into(),
        labels: parse_labels(body),
        value,
    }
}

/// `k="v",k2="v2"` with `\"`, `\\` and `\n` escapes inside values.
fn parse_labels(body: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut chars = body.chars().peekable();
    loop {
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            return out;
        }
        assert_eq!(chars.next(), Some('"'), "label {key} value must be quoted");
        let mut value = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some('n') => value.push('\n'),
                    Some(other) => value.push(other),
                    None => panic!("dangling escape"),
                },
                '"' => break,
                c => value.push(c),
            }
        }
        out.insert(key.trim_start_matches(',').to_string(), value);
        if chars.peek() == Some(&',') {
            chars.next();
        }
    }
}
