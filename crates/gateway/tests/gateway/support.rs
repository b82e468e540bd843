//! A fleet of simulated engines behind an in-process gateway, and helpers to talk to it.

use std::sync::Arc;
use std::time::Duration;

use brix_gateway::{GatewayConfig, GatewayHandle, Registry, Target};
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
    /// What code beside the gateway (the `brix up` controllers) calls.
    pub handle: GatewayHandle,
}

/// `n` engines built by `sim(i)`, all serving [`MODEL`], behind a gateway with `cfg`.
pub async fn fleet(n: usize, cfg: GatewayConfig, sim: impl Fn(usize) -> SimConfig) -> Fleet {
    let mut sims = Vec::new();
    for i in 0..n {
        sims.push(start_sim(&sim(i)).await);
    }
    let registry = Arc::new(Registry::new());
    registry.set(MODEL, targets(&sims));
    let (app, handle) = brix_gateway::app_with_handle(cfg, registry.as_ref())
        .await
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    Fleet {
        sims,
        registry,
        base: format!("http://{addr}"),
        http: reqwest::Client::new(),
        handle,
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
            kv_events: None,
            metrics: None,
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

    /// The body of `GET path` on the gateway, as text.
    pub async fn get_text(&self, path: &str) -> String {
        let r = self.http.get(self.url(path)).send().await.unwrap();
        r.text().await.unwrap()
    }

    /// The body of `GET path` on the gateway, as JSON.
    pub async fn get_json(&self, path: &str) -> serde_json::Value {
        let r = self.http.get(self.url(path)).send().await.unwrap();
        r.json().await.unwrap()
    }

    pub async fn metrics(&self) -> Exposition {
        Exposition::parse(&self.get_text("/metrics").await)
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

/// How a [`RawEngine`] answers generation requests (probes always get a healthy answer).
#[derive(Clone, Copy, Debug)]
pub enum Misbehave {
    /// Headers and one SSE event, then silence with the connection held open.
    StallAfterFirstEvent,
    /// Headers, then one endless SSE line with no delimiter.
    EndlessLine,
    /// Not a fault: an Anthropic Messages stream as vLLM sends it (no `[DONE]`).
    AnthropicStream,
}

/// A tiny HTTP/1.1 engine over raw TCP, for misbehaviour `brix sim` cannot produce.
pub struct RawEngine {
    pub addr: std::net::SocketAddr,
    /// Set once a generation connection was closed by the gateway (a write failed).
    pub dropped: Arc<std::sync::atomic::AtomicBool>,
}

/// Starts a [`RawEngine`] serving [`MODEL`] with a 2048-token context.
pub async fn raw_engine(how: Misbehave) -> RawEngine {
    use std::sync::atomic::{AtomicBool, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let dropped = Arc::new(AtomicBool::new(false));
    let flag = dropped.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let flag = flag.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    // One request: the head, then content-length bytes of body.
                    let head_end = loop {
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                        let mut chunk = [0u8; 4096];
                        match sock.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..head_end]).to_lowercase();
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .map_or(0, |v| v.trim().parse().unwrap());
                    while buf.len() < head_end + len {
                        let mut chunk = [0u8; 4096];
                        match sock.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    buf.drain(..head_end + len);
                    if head.starts_with("get") {
                        let body = if head.starts_with("get /v1/models") {
                            format!(
                                r#"{{"object":"list","data":[{{"id":"{MODEL}","max_model_len":2048}}]}}"#
                            )
                        } else {
                            String::new()
                        };
                        let resp = format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        if sock.write_all(resp.as_bytes()).await.is_err() {
                            return;
                        }
                        continue;
                    }
                    let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n";
                    if sock.write_all(head.as_bytes()).await.is_err() {
                        return;
                    }
                    let chunk = |data: &[u8]| {
                        let mut c = format!("{:x}\r\n", data.len()).into_bytes();
                        c.extend_from_slice(data);
                        c.extend_from_slice(b"\r\n");
                        c
                    };
                    match how {
                        Misbehave::StallAfterFirstEvent => {
                            let ev = br#"data: {"id":"x","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"hi"}}]}

"#;
                            let _ = sock.write_all(&chunk(ev)).await;
                            // Hold the connection silently until the gateway closes it.
                            let mut sink = [0u8; 64];
                            while matches!(sock.read(&mut sink).await, Ok(n) if n > 0) {}
                            flag.store(true, Ordering::SeqCst);
                            return;
                        }
                        Misbehave::AnthropicStream => {
                            let events = [
                                r#"{"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","content":[],"model":"sim","usage":{"input_tokens":5,"output_tokens":0}}}"#,
                                r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"hi"}}"#,
                                r#"{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":4}}"#,
                                r#"{"type":"message_stop"}"#,
                            ];
                            for e in events {
                                let name = e.split('"').nth(3).unwrap();
                                let ev = format!("event: {name}\ndata: {e}\n\n");
                                if sock.write_all(&chunk(ev.as_bytes())).await.is_err() {
                                    return;
                                }
                            }
                            if sock.write_all(b"0\r\n\r\n").await.is_err() {
                                return;
                            }
                        }
                        Misbehave::EndlessLine => {
                            let _ = sock.write_all(&chunk(b"data: {\"x\":\"")).await;
                            let block = chunk(&[b'x'; 16 * 1024]);
                            while sock.write_all(&block).await.is_ok() {}
                            flag.store(true, Ordering::SeqCst);
                            return;
                        }
                    }
                }
            });
        }
    });
    RawEngine { addr, dropped }
}

/// A gateway with `cfg` in front of engines at `addrs` (named `pod-<i>`), serving [`MODEL`].
pub async fn gateway_over(cfg: GatewayConfig, addrs: &[std::net::SocketAddr]) -> Fleet {
    let registry = Arc::new(Registry::new());
    let ts = addrs
        .iter()
        .enumerate()
        .map(|(i, a)| Target {
            name: format!("pod-{i}"),
            address: a.to_string(),
            kv_events: None,
            metrics: None,
        })
        .collect();
    registry.set(MODEL, ts);
    let (app, handle) = brix_gateway::app_with_handle(cfg, registry.as_ref())
        .await
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    Fleet {
        sims: Vec::new(),
        registry,
        base: format!("http://{addr}"),
        http: reqwest::Client::new(),
        handle,
    }
}
