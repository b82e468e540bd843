//! Starting servers and waiting on conditions; SSE and Prometheus readers come from brix-testkit.

use std::time::Duration;

use brix_sim_http::SimConfig;
use serde_json::Value;
use tokio::net::TcpListener;

pub use brix_testkit::{Exposition, sse_events};

/// The name every test server serves.
pub const MODEL: &str = "sim";

/// A small, fast engine: H200 steps, 512 blocks, 2k context, answers of 4 tokens.
pub fn config() -> SimConfig {
    brix_testkit::sim_config(MODEL)
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

    /// Polls /metrics until `check` holds (testkit's `eventually`, 4 s), then fails.
    pub async fn metrics_eventually(
        &self,
        what: &str,
        check: impl Fn(&Exposition) -> bool,
    ) -> Exposition {
        brix_testkit::eventually_some(what, Duration::from_secs(4), || async {
            let m = self.metrics().await;
            check(&m).then_some(m)
        })
        .await
    }
}
