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

/// A PEFT adapter folder under the temp dir (`adapter_config.json` with rank `r`, a
/// safetensors file declaring `bytes` of weights), a fresh one per call.
pub fn adapter_dir(name: &str, r: u32, bytes: u64) -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("brix-sim-lora-{}-{n}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = serde_json::json!({"r": r, "lora_alpha": 16, "target_modules": ["q_proj", "v_proj"], "peft_type": "LORA"});
    std::fs::write(dir.join("adapter_config.json"), config.to_string()).unwrap();
    let header =
        format!(r#"{{"w":{{"dtype":"BF16","shape":[{r},8],"data_offsets":[0,{bytes}]}}}}"#);
    let mut st = (header.len() as u64).to_le_bytes().to_vec();
    st.extend_from_slice(header.as_bytes());
    std::fs::write(dir.join("adapter_model.safetensors"), st).unwrap();
    dir.to_string_lossy().into_owned()
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
