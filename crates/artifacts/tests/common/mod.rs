//! Shared by the artifact tests: tiny valid adapters written by hand, scratch directories, and
//! a recording HTTP file server on 127.0.0.1:0.

#![allow(dead_code, missing_docs)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

/// A safetensors file: 8-byte little-endian header length, the JSON header, the tensor bytes.
pub fn safetensors(tensors: &[(&str, usize)]) -> Vec<u8> {
    let mut header = serde_json::Map::new();
    let mut at = 0;
    for (name, len) in tensors {
        header.insert(
            (*name).to_owned(),
            serde_json::json!({"dtype": "F32", "shape": [len / 4], "data_offsets": [at, at + len]}),
        );
        at += len;
    }
    let header = serde_json::to_vec(&header).expect("json");
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&header);
    out.extend((0..at).map(|i| (i % 251) as u8));
    out
}

/// A rank-`r` PEFT adapter for `base`: (file name, contents).
pub fn adapter(r: u32, base: &str) -> Vec<(String, Vec<u8>)> {
    let config = serde_json::json!({
        "peft_type": "LORA",
        "r": r,
        "lora_alpha": 16,
        "target_modules": ["q_proj", "v_proj"],
        "base_model_name_or_path": base,
    });
    vec![
        (
            "adapter_config.json".into(),
            serde_json::to_vec(&config).expect("json"),
        ),
        (
            "adapter_model.safetensors".into(),
            safetensors(&[("q.lora_A.weight", 256), ("q.lora_B.weight", 256)]),
        ),
    ]
}

/// A fresh, empty directory under the system temp dir, removed on drop.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("brix-artifacts-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        Self(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Writes `files` under `sub`, returning that directory.
    pub fn write(&self, sub: &str, files: &[(String, Vec<u8>)]) -> PathBuf {
        let dir = self.0.join(sub);
        for (name, bytes) in files {
            let path = dir.join(name);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(path, bytes).expect("write");
        }
        dir
    }

    /// Names in the directory (sorted).
    pub fn entries(&self, sub: &str) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.0.join(sub))
            .map(|rd| {
                rd.map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What the file server answers for one path.
#[derive(Clone)]
pub enum Reply {
    /// 200 with this body and ETag.
    File(Vec<u8>, String),
    /// 200 with this body sent in chunks, without a Content-Length.
    Chunked(Vec<u8>),
    /// This status, empty body.
    Status(u16),
    /// 302 to this path.
    Redirect(String),
}

#[derive(Default)]
pub struct ServerState {
    routes: Mutex<BTreeMap<String, Reply>>,
    log: Mutex<Vec<String>>,
    bearer: Mutex<Option<String>>,
}

/// A recording HTTP server: serves [`Reply`]s by path, logs `METHOD /path` of every request,
/// and, when a bearer token is set, answers 401 to requests without it.
#[derive(Clone)]
pub struct FileServer {
    pub addr: SocketAddr,
    state: Arc<ServerState>,
}

impl FileServer {
    pub async fn start() -> Self {
        let state = Arc::new(ServerState::default());
        let app = axum::Router::new()
            .fallback(serve)
            .with_state(Arc::clone(&state));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { addr, state }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn set(&self, path: &str, reply: Reply) {
        self.state
            .routes
            .lock()
            .expect("routes")
            .insert(path.to_owned(), reply);
    }

    /// Serves `files` under `dir` (`/dir/name`), each with an ETag naming `version`.
    pub fn put_files(&self, dir: &str, files: &[(String, Vec<u8>)], version: &str) {
        for (name, bytes) in files {
            self.set(
                &format!("{dir}/{name}"),
                Reply::File(bytes.clone(), format!("\"{version}-{name}\"")),
            );
        }
    }

    pub fn require_bearer(&self, token: &str) {
        *self.state.bearer.lock().expect("bearer") = Some(token.to_owned());
    }

    /// How many logged requests are exactly `line` (`GET /a/adapter_config.json`).
    pub fn count(&self, line: &str) -> usize {
        self.state
            .log
            .lock()
            .expect("log")
            .iter()
            .filter(|l| *l == line)
            .count()
    }

    pub fn log(&self) -> Vec<String> {
        self.state.log.lock().expect("log").clone()
    }
}

async fn serve(
    axum::extract::State(state): axum::extract::State<Arc<ServerState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let path = uri.path().to_owned();
    state
        .log
        .lock()
        .expect("log")
        .push(format!("{method} {path}"));
    if let Some(token) = state.bearer.lock().expect("bearer").clone() {
        let want = format!("Bearer {token}");
        if headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            != Some(want.as_str())
        {
            return StatusCode::UNAUTHORIZED.into_response();
        }
    }
    let reply = state.routes.lock().expect("routes").get(&path).cloned();
    match reply {
        None => StatusCode::NOT_FOUND.into_response(),
        Some(Reply::Status(code)) => StatusCode::from_u16(code).expect("status").into_response(),
        Some(Reply::Redirect(to)) => (StatusCode::FOUND, [(header::LOCATION, to)]).into_response(),
        Some(Reply::File(bytes, etag)) => {
            let body = if method == Method::HEAD {
                Body::empty()
            } else {
                Body::from(bytes.clone())
            };
            let mut resp = Response::new(body);
            resp.headers_mut()
                .insert(header::ETAG, etag.parse().expect("etag"));
            resp.headers_mut().insert(
                header::CONTENT_LENGTH,
                bytes.len().to_string().parse().expect("len"),
            );
            resp
        }
        Some(Reply::Chunked(bytes)) => {
            let chunks: Vec<Result<Bytes, std::io::Error>> = bytes
                .chunks(1024)
                .map(|c| Ok(Bytes::copy_from_slice(c)))
                .collect();
            Response::new(Body::from_stream(tokio_stream::iter(chunks)))
        }
    }
}

/// A server that answers every connection with headers and the first bytes of a body, then
/// goes silent (holding the connection) — a stalled download.
pub async fn stalled_server() -> SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = socket.read(&mut buf).await;
                let head = "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n{\"r\": 8,";
                let _ = socket.write_all(head.as_bytes()).await;
                std::future::pending::<()>().await;
                drop(socket);
            });
        }
    });
    addr
}

/// Short timeouts so failure tests finish fast.
pub fn quick_limits() -> brix_artifacts::Limits {
    brix_artifacts::Limits {
        max_bytes: 1 << 20,
        connect_timeout: Duration::from_secs(2),
        read_idle_timeout: Duration::from_millis(500),
    }
}
