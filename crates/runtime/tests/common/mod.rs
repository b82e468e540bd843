//! Shared by the runtime tests: a runtime in front of an engine on 127.0.0.1:0, a recording
//! file server for `http://` artifacts, and moto (a real S3-compatible server) for `s3://`.
#![allow(dead_code, missing_docs, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{StatusCode, Uri};
use brix_runtime::{EngineKind, Mode, Rules, RuntimeConfig};
pub use brix_testkit::moto::Moto;

pub const KEY: &str = "sekret";

/// A fresh directory under the system temp dir, removed on drop.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("brix-runtime-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A runtime served in this test, stopped on drop.
pub struct Rt {
    pub addr: SocketAddr,
    pub http: reqwest::Client,
    pub dir: Scratch,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Rt {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

impl Rt {
    pub async fn start(name: &str, engine_url: &str, key: Option<&str>) -> Self {
        let dir = Scratch::new(name);
        let cfg = RuntimeConfig {
            engine_url: engine_url.to_owned(),
            engine: EngineKind::Vllm,
            api_key: key.map(str::to_owned),
            engine_api_key: None,
            models_dir: dir.path().join("models"),
            rules: Rules::builtin("vllm").unwrap(),
            mode: Mode::Transform {
                keep_original: false,
            },
            limits: brix_artifacts::Limits::default(),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(brix_runtime::serve(listener, cfg, async move {
            let _ = rx.await;
        }));
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        Self {
            addr,
            http,
            dir,
            stop: Some(tx),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// POSTs `body` (JSON) with the key, returning status and body.
    pub async fn post(&self, path: &str, body: &serde_json::Value) -> (u16, String) {
        self.post_raw(path, body.to_string(), Some(KEY)).await
    }

    pub async fn post_raw(&self, path: &str, body: String, key: Option<&str>) -> (u16, String) {
        let mut req = self
            .http
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body);
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        let resp = req.send().await.unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    }

    pub async fn get(&self, path: &str) -> (u16, String) {
        let resp = self.http.get(self.url(path)).send().await.unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    }

    /// The ids the engine lists through the runtime's `/v1/models`.
    pub async fn model_ids(&self) -> Vec<String> {
        let (status, body) = self.get("/v1/models").await;
        assert_eq!(status, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        v["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap().to_owned())
            .collect()
    }
}

/// The envelope's message and type; fails unless `body` is an OpenAI error envelope.
pub fn envelope(body: &str) -> (String, String) {
    let v: serde_json::Value =
        serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"));
    let e = &v["error"];
    (
        e["message"]
            .as_str()
            .unwrap_or_else(|| panic!("no message: {body}"))
            .to_owned(),
        e["type"]
            .as_str()
            .unwrap_or_else(|| panic!("no type: {body}"))
            .to_owned(),
    )
}

/// A rank-`r` PEFT adapter: (file name, contents).
pub fn adapter_files(dir: &Path, r: u32) -> Vec<(String, Vec<u8>)> {
    brix_testkit::lora::write_adapter(dir, r, "llama-3-8b", 4096).unwrap();
    ["adapter_config.json", "adapter_model.safetensors"]
        .iter()
        .map(|n| ((*n).to_owned(), std::fs::read(dir.join(n)).unwrap()))
        .collect()
}

/// An HTTP file server that counts GETs per path.
#[derive(Clone)]
pub struct Files {
    files: Arc<Mutex<BTreeMap<String, Vec<u8>>>>,
    gets: Arc<Mutex<BTreeMap<String, usize>>>,
    pub total: Arc<AtomicUsize>,
    /// Requests under `gated` wait for [`Files::open`].
    gated: Arc<Mutex<Option<String>>>,
    gate: Arc<tokio::sync::Semaphore>,
}

impl Default for Files {
    fn default() -> Self {
        Self {
            files: Arc::default(),
            gets: Arc::default(),
            total: Arc::default(),
            gated: Arc::default(),
            gate: Arc::new(tokio::sync::Semaphore::new(0)),
        }
    }
}

impl Files {
    pub async fn start(files: &[(String, Vec<u8>)], prefix: &str) -> (SocketAddr, Self) {
        let me = Self::default();
        for (n, b) in files {
            me.files
                .lock()
                .unwrap()
                .insert(format!("{prefix}{n}"), b.clone());
        }
        let app = axum::Router::new().fallback(serve).with_state(me.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (addr, me)
    }

    /// Holds every request under `prefix` until [`Files::open`].
    pub fn hold(&self, prefix: &str) {
        *self.gated.lock().unwrap() = Some(prefix.to_owned());
    }

    /// Lets held requests through.
    pub fn open(&self) {
        self.gate.add_permits(1 << 20);
    }

    pub fn gets(&self, path: &str) -> usize {
        self.gets.lock().unwrap().get(path).copied().unwrap_or(0)
    }
}

async fn serve(State(f): State<Files>, uri: Uri) -> (StatusCode, Vec<u8>) {
    let path = uri.path().to_owned();
    f.total.fetch_add(1, Ordering::Relaxed);
    *f.gets.lock().unwrap().entry(path.clone()).or_default() += 1;
    let held = f.gated.lock().unwrap().clone();
    if held.is_some_and(|p| path.starts_with(&p)) {
        let _pass = f.gate.acquire().await.unwrap();
    }
    match f.files.lock().unwrap().get(&path) {
        Some(b) => (StatusCode::OK, b.clone()),
        None => (StatusCode::NOT_FOUND, Vec::new()),
    }
}
