//! `brix bench mock`: an OpenAI-compatible upstream that answers as fast as a socket allows.
//!
//! Every reply is built once at start-up and served as shared [`Bytes`]; a generation reads
//! the request body only to see whether it asks for `"stream": true`. There is no delay and no
//! tokenizer, so in a benchmark the mock is the cheapest thing on the path and what remains is
//! the cost of whatever sits between the load generator and it.
//!
//! It also answers what routers call before they route: `/health`, `/v1/models`, sglang's
//! `/get_server_info` and `/get_model_info` (sglang-router registers a worker only after both),
//! and `/metrics` with the vLLM gauges gateways scrape (`vllm:num_requests_running` is the real
//! number of generations in flight; the others are zero). A counter of generations served,
//! `brix_bench_mock_generations_total`, lets a benchmark see how a router spread its load.
//!
//! Under failure: it listens through [`brix_net`], like every Brix server: a connection that
//! errors is dropped; an `accept` error (say, out of file descriptors) is logged once per burst
//! and retried after a growing pause, so a burst of connections cannot stop the server.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{SystemTime, UNIX_EPOCH};

use brix_api::openai::{ErrorCode, ErrorEnvelope};
use brix_net::RequestBody;
use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, SizeHint};
use hyper::service::service_fn;
use serde_json::{Value, json};
use tokio::net::TcpListener;

/// How the mock presents itself.
#[derive(Debug, Clone)]
pub struct MockConfig {
    /// The model id it serves and echoes in every reply.
    pub model: String,
    /// Completion tokens per reply (one SSE chunk each when streaming).
    pub completion_tokens: u32,
}

impl Default for MockConfig {
    fn default() -> Self {
        Self {
            model: "mock".into(),
            completion_tokens: 4,
        }
    }
}

/// Why the mock stopped or could not start.
#[derive(Debug, thiserror::Error)]
pub enum MockError {
    /// The listening address could not be bound.
    #[error("binding {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The bound socket has no local address (the OS refused to say).
    #[error("reading the listening address: {0}")]
    LocalAddr(std::io::Error),
}

/// A bound mock, not yet serving: tests bind `127.0.0.1:0`, read the port, then [`run`](Self::run).
#[derive(Debug)]
pub struct MockServer {
    listener: TcpListener,
    state: Arc<State>,
}

/// A view of a running mock's counters, kept by whoever started it.
#[derive(Debug, Clone)]
pub struct MockHandle(Arc<State>);

impl MockHandle {
    /// Generations (`/v1/chat/completions`, `/v1/completions`) answered so far.
    pub fn generations(&self) -> u64 {
        self.0.generations.load(Ordering::Relaxed)
    }
}

/// Binds `addr`, prints `brix bench mock listening on http://ADDR` on stdout once ready (the
/// line scripts wait for, with the real port when `addr` asked for port 0), and serves.
pub async fn serve(addr: SocketAddr, config: MockConfig) -> Result<(), MockError> {
    let server = MockServer::bind(addr, config).await?;
    println!(
        "brix bench mock listening on http://{}",
        server.local_addr()?
    );
    server.run().await
}

impl MockServer {
    /// Binds the listener and builds every reply.
    pub async fn bind(addr: SocketAddr, config: MockConfig) -> Result<Self, MockError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| MockError::Bind { addr, source })?;
        Ok(Self {
            listener,
            state: Arc::new(State::new(&config)),
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> Result<SocketAddr, MockError> {
        self.listener.local_addr().map_err(MockError::LocalAddr)
    }

    /// A handle on the counters that outlives [`run`](Self::run)'s move of `self`.
    pub fn handle(&self) -> MockHandle {
        MockHandle(self.state.clone())
    }

    /// Serves HTTP/1.1 connections (through [`brix_net`]: TCP_NODELAY, accept errors
    /// survived, client timeouts) until the task is dropped.
    pub async fn run(self) -> Result<(), MockError> {
        let state = self.state;
        let svc = service_fn(move |req| handle(state.clone(), req));
        brix_net::serve(
            self.listener,
            svc,
            brix_net::ServeConfig::default(),
            std::future::pending(),
        )
        .await;
        Ok(())
    }
}

/// Prebuilt replies and live counters.
#[derive(Debug)]
struct State {
    model: String,
    chat_json: Bytes,
    chat_sse: Vec<Bytes>,
    completion_json: Bytes,
    completion_sse: Vec<Bytes>,
    models: Bytes,
    server_info: Bytes,
    model_info: Bytes,
    not_found: Bytes,
    generations: AtomicU64,
    running: Arc<AtomicI64>,
}

#[derive(Debug, Clone, Copy)]
enum Api {
    Chat,
    Completion,
}

impl State {
    fn new(cfg: &MockConfig) -> Self {
        let created = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let m = cfg.model.as_str();
        let n = cfg.completion_tokens.max(1);
        let info = json!({
            "model_path": m,
            "tokenizer_path": m,
            "served_model_name": m,
            "dp_size": 1,
            "tp_size": 1,
            "context_length": 8192,
            "max_total_tokens": 1_000_000,
            "max_prefill_tokens": 8192,
            "max_running_requests": 1024,
            "page_size": 16,
            "enable_lora": false,
            "is_embedding": false,
            "version": concat!("brix-bench-mock-", env!("CARGO_PKG_VERSION")),
        });
        Self {
            model: m.to_owned(),
            chat_json: to_bytes(&reply(Api::Chat, m, created, n)),
            chat_sse: sse(Api::Chat, m, created, n),
            completion_json: to_bytes(&reply(Api::Completion, m, created, n)),
            completion_sse: sse(Api::Completion, m, created, n),
            models: to_bytes(&json!({"object": "list", "data": [{
                "id": m, "object": "model", "created": created, "owned_by": "brix-bench",
                "root": m, "parent": null, "max_model_len": 8192,
            }]})),
            server_info: to_bytes(&info),
            model_info: to_bytes(&json!({
                "model_path": m,
                "tokenizer_path": m,
                "is_generation": true,
                "preferred_sampling_params": null,
                "weight_version": "default",
                "has_image_understanding": false,
                "has_audio_understanding": false,
            })),
            not_found: Bytes::from(
                ErrorEnvelope::new("no such route", "NotFoundError")
                    .with_code(Some(ErrorCode::Status(404)))
                    .to_json(),
            ),
            generations: AtomicU64::new(0),
            running: Arc::new(AtomicI64::new(0)),
        }
    }

    fn metrics(&self) -> Bytes {
        let m = &self.model;
        let running = self.running.load(Ordering::Relaxed);
        let done = self.generations.load(Ordering::Relaxed);
        Bytes::from(format!(
            "# HELP vllm:num_requests_running Requests in the model execution batch.\n\
             # TYPE vllm:num_requests_running gauge\n\
             vllm:num_requests_running{{model_name=\"{m}\"}} {running}\n\
             # HELP vllm:num_requests_waiting Requests waiting to be processed.\n\
             # TYPE vllm:num_requests_waiting gauge\n\
             vllm:num_requests_waiting{{model_name=\"{m}\"}} 0\n\
             # HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.\n\
             # TYPE vllm:kv_cache_usage_perc gauge\n\
             vllm:kv_cache_usage_perc{{model_name=\"{m}\"}} 0\n\
             # HELP brix_bench_mock_generations_total Generations answered.\n\
             # TYPE brix_bench_mock_generations_total counter\n\
             brix_bench_mock_generations_total{{model_name=\"{m}\"}} {done}\n"
        ))
    }
}

fn to_bytes(v: &Value) -> Bytes {
    Bytes::from(v.to_string())
}

fn usage(n: u32) -> Value {
    json!({"prompt_tokens": 1, "completion_tokens": n, "total_tokens": 1 + n})
}

/// The non-streaming reply.
fn reply(api: Api, model: &str, created: u64, n: u32) -> Value {
    let text = "ok ".repeat(n as usize);
    match api {
        Api::Chat => json!({
            "id": "chatcmpl-brixbench", "object": "chat.completion", "created": created,
            "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                         "logprobs": null, "finish_reason": "length"}],
            "usage": usage(n),
        }),
        Api::Completion => json!({
            "id": "cmpl-brixbench", "object": "text_completion", "created": created,
            "model": model,
            "choices": [{"index": 0, "text": text, "logprobs": null, "finish_reason": "length"}],
            "usage": usage(n),
        }),
    }
}

/// The SSE reply as separate chunks: one per token, a usage chunk, then `[DONE]`.
fn sse(api: Api, model: &str, created: u64, n: u32) -> Vec<Bytes> {
    let (id, object) = match api {
        Api::Chat => ("chatcmpl-brixbench", "chat.completion.chunk"),
        Api::Completion => ("cmpl-brixbench", "text_completion"),
    };
    let chunk = |choices: Value, usage: Value| {
        let v = json!({"id": id, "object": object, "created": created, "model": model,
                       "choices": choices, "usage": usage});
        Bytes::from(format!("data: {v}\n\n"))
    };
    let choice = |i: u32| {
        let finish = if i + 1 == n {
            json!("length")
        } else {
            Value::Null
        };
        match api {
            Api::Chat => {
                let delta = if i == 0 {
                    json!({"role": "assistant", "content": "ok "})
                } else {
                    json!({"content": "ok "})
                };
                json!([{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}])
            }
            Api::Completion => {
                json!([{"index": 0, "text": "ok ", "logprobs": null, "finish_reason": finish}])
            }
        }
    };
    let mut out: Vec<Bytes> = (0..n).map(|i| chunk(choice(i), Value::Null)).collect();
    out.push(chunk(json!([]), usage(n)));
    out.push(Bytes::from_static(b"data: [DONE]\n\n"));
    out
}

/// True when a JSON body has `"stream": true` at any depth. A byte scan rather than a parse:
/// bodies come from load generators and routers, and the mock must stay cheaper than both.
fn wants_stream(body: &[u8]) -> bool {
    const KEY: &[u8] = b"\"stream\"";
    let mut rest = body;
    while let Some(at) = rest.windows(KEY.len()).position(|w| w == KEY) {
        rest = &rest[at + KEY.len()..];
        let after = rest.trim_ascii_start();
        if let Some(value) = after.strip_prefix(b":") {
            return value.trim_ascii_start().starts_with(b"true");
        }
    }
    false
}

async fn handle(
    state: Arc<State>,
    req: Request<RequestBody>,
) -> Result<Response<MockBody>, Infallible> {
    let json = |bytes: &Bytes| respond(StatusCode::OK, JSON, vec![bytes.clone()], None);
    let resp = match (req.method(), req.uri().path()) {
        (&Method::GET, "/health" | "/ping") => respond(StatusCode::OK, TEXT, Vec::new(), None),
        (&Method::GET, "/v1/models") => json(&state.models),
        (&Method::GET, "/get_server_info") => json(&state.server_info),
        (&Method::GET, "/get_model_info") => json(&state.model_info),
        (&Method::GET, "/metrics") => {
            respond(StatusCode::OK, PROMETHEUS, vec![state.metrics()], None)
        }
        (&Method::POST, "/v1/chat/completions") => generate(&state, req, Api::Chat).await,
        (&Method::POST, "/v1/completions") => generate(&state, req, Api::Completion).await,
        _ => respond(
            StatusCode::NOT_FOUND,
            JSON,
            vec![state.not_found.clone()],
            None,
        ),
    };
    Ok(resp)
}

async fn generate(state: &State, req: Request<RequestBody>, api: Api) -> Response<MockBody> {
    let body = match req.into_body().collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => {
            tracing::debug!(error = %e, "reading a request body");
            return respond(StatusCode::BAD_REQUEST, JSON, Vec::new(), None);
        }
    };
    state.generations.fetch_add(1, Ordering::Relaxed);
    let running = Running::start(&state.running);
    match (wants_stream(&body), api) {
        (false, Api::Chat) => respond(
            StatusCode::OK,
            JSON,
            vec![state.chat_json.clone()],
            Some(running),
        ),
        (false, Api::Completion) => respond(
            StatusCode::OK,
            JSON,
            vec![state.completion_json.clone()],
            Some(running),
        ),
        (true, Api::Chat) => respond(StatusCode::OK, SSE, state.chat_sse.clone(), Some(running)),
        (true, Api::Completion) => respond(
            StatusCode::OK,
            SSE,
            state.completion_sse.clone(),
            Some(running),
        ),
    }
}

const JSON: &str = "application/json";
const TEXT: &str = "text/plain";
const SSE: &str = "text/event-stream";
const PROMETHEUS: &str = "text/plain; version=0.0.4; charset=utf-8";

fn respond(
    status: StatusCode,
    content_type: &'static str,
    chunks: Vec<Bytes>,
    running: Option<Running>,
) -> Response<MockBody> {
    let streamed = content_type == SSE;
    let mut resp = Response::new(MockBody::new(chunks, streamed, running));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

/// Counts a generation in `vllm:num_requests_running` until its reply body is dropped.
#[derive(Debug)]
struct Running(Arc<AtomicI64>);

impl Running {
    fn start(gauge: &Arc<AtomicI64>) -> Self {
        gauge.fetch_add(1, Ordering::Relaxed);
        Self(gauge.clone())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A reply body of prebuilt chunks: with a `Content-Length` when `streamed` is false, chunked
/// (one HTTP chunk per SSE event, as engines send them) when true.
#[derive(Debug)]
struct MockBody {
    chunks: std::vec::IntoIter<Bytes>,
    len: u64,
    streamed: bool,
    _running: Option<Running>,
}

impl MockBody {
    fn new(chunks: Vec<Bytes>, streamed: bool, running: Option<Running>) -> Self {
        let len = chunks.iter().map(|c| c.len() as u64).sum();
        Self {
            chunks: chunks.into_iter(),
            len,
            streamed,
            _running: running,
        }
    }
}

impl Body for MockBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.get_mut().chunks.next().map(|c| Ok(Frame::data(c))))
    }

    fn is_end_stream(&self) -> bool {
        self.chunks.len() == 0
    }

    fn size_hint(&self) -> SizeHint {
        if self.streamed {
            SizeHint::default()
        } else {
            SizeHint::with_exact(self.len)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_flag_scan() {
        let cases: &[(&[u8], bool)] = &[
            (br#"{"stream":true}"#, true),
            (br#"{"model":"m", "stream" : true}"#, true),
            (br#"{"stream": false}"#, false),
            (
                br#"{"messages":[{"content":"say \"stream\" please"}],"stream":true}"#,
                true,
            ),
            (br#"{"stream_options":{"include_usage":true}}"#, false),
            (b"{}", false),
            (b"", false),
        ];
        for &(body, want) in cases {
            assert_eq!(
                wants_stream(body),
                want,
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn prebuilt_replies_are_valid() {
        let s = State::new(&MockConfig::default());
        for b in [&s.chat_json, &s.completion_json, &s.models, &s.server_info] {
            serde_json::from_slice::<Value>(b).expect("json");
        }
        let sse_body: Vec<u8> = s.chat_sse.concat();
        let summary = crate::sse::summarize(&sse_body);
        assert!(summary.is_complete());
        assert_eq!(summary.data_events, 5, "4 tokens and a usage chunk");
        assert!(
            String::from_utf8_lossy(&s.metrics())
                .contains("vllm:num_requests_running{model_name=\"mock\"} 0")
        );
    }
}
