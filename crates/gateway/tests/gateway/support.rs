//! A fleet of simulated engines behind an in-process gateway, and helpers to talk to it.

use std::sync::Arc;
use std::time::Duration;

use brix_gateway::{GatewayConfig, Registry, Target};
use brix_sim_http::SimConfig;
use brix_testkit::{Exposition, SimServer, start_sim};
use serde_json::{Value, json};
use tokio::net::TcpListener;

/// The model every test fleet serves.
pub const MODEL: &str = "sim";

/// Gateway settings for tests: fast probes so health changes show quickly.
pub fn gateway_config() -> GatewayConfig {
    let mut cfg = GatewayConfig::default();
    cfg.scrape.interval_ms = 50;
    cfg.scrape.timeout_ms = 500;
    cfg.scrape.models_every = 1;
    cfg
}

/// Engines, the registry that lists them, and the gateway in front.
pub struct Fleet {
    pub sims: Vec<SimServer>,
    pub registry: Arc<Registry>,
    pub base: String,
    pub http: reqwest::Client,
}

/// `n` engines built by `sim(i)`, all serving [`MODEL`], behind a gateway with `cfg`.
pub async fn fleet(n: usize, cfg: GatewayConfig, sim: impl Fn(usize) -> SimConfig) -> Fleet {
    let mut sims = Vec::new();
    for i in 0..n {
        sims.push(start_sim(&sim(i)).await);
    }
    let registry = Arc::new(Registry::new());
    registry.set(MODEL, targets(&sims));
    let app = brix_gateway::app(cfg, registry.as_ref()).await.unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    Fleet {
        sims,
        registry,
        base: format!("http://{addr}"),
        http: reqwest::Client::new(),
    }
}

/// `n` plain engines behind a default test gateway.
pub async fn plain(n: usize) -> Fleet {
    fleet(n, gateway_config(), |_| brix_testkit::sim_config(MODEL)).await
}

/// Pod names are `pod-<i>` for the i-th engine.
pub fn targets(sims: &[SimServer]) -> Vec<Target> {
    sims.iter()
        .enumerate()
        .map(|(i, s)| Target {
            name: format!("pod-{i}"),
            address: s.addr.to_string(),
        })
        .collect()
}

/// A chat body for [`MODEL`].
pub fn chat(content: &str) -> Value {
    json!({"model": MODEL, "messages": [{"role": "user", "content": content}]})
}

impl Fleet {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// POSTs JSON with extra headers.
    pub async fn post(
        &self,
        path: &str,
        body: &Value,
        headers: &[(&str, &str)],
    ) -> reqwest::Response {
        let mut r = self.http.post(self.url(path)).json(body);
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        r.send().await.unwrap()
    }

    /// POSTs and returns (status, target-pod header, JSON body).
    pub async fn call(
        &self,
        path: &str,
        body: &Value,
        headers: &[(&str, &str)],
    ) -> (u16, String, Value) {
        let r = self.post(path, body, headers).await;
        let status = r.status().as_u16();
        let pod = header(&r, "target-pod");
        (status, pod, r.json().await.unwrap())
    }

    /// One chat request with `strategy`; returns (status, target-pod).
    pub async fn chat_via(&self, strategy: &str) -> (u16, String) {
        let (status, pod, _) = self
            .call(
                "/v1/chat/completions",
                &chat("x"),
                &[("routing-strategy", strategy)],
            )
            .await;
        (status, pod)
    }

    pub async fn metrics(&self) -> Exposition {
        let text = self
            .http
            .get(self.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        Exposition::parse(&text)
    }

    /// Sum of a gateway counter over the samples matching `labels`.
    pub async fn counter(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.metrics()
            .await
            .find(name, labels)
            .map(|s| s.value)
            .sum()
    }
}

pub fn header(r: &reqwest::Response, name: &str) -> String {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

/// Polls `check` for up to 5 s (testkit's `eventually`), then fails with `what`.
pub async fn eventually<F: std::future::Future<Output = bool>>(
    what: &str,
    check: impl FnMut() -> F,
) {
    brix_testkit::eventually(what, Duration::from_secs(5), check).await;
}
