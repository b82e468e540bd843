//! A real HTTP server on 127.0.0.1:0 serving one file with single-range `Range` support,
//! streamed from disk in 1 MiB pieces (shared by the tests and the benchmark).

use std::os::unix::fs::FileExt as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;

/// How the server treats `Range`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(dead_code)] // each test binary uses some
pub enum Mode {
    /// Honours it: 206 with `Content-Range`.
    Ranges,
    /// Ignores it: 200 with the whole file (what a plain static server without range support does).
    IgnoreRange,
    /// Answers 206 but cuts every body in half (aborting the connection).
    Truncate,
    /// Answers every other request 503 (the first one included).
    Flaky,
}

/// A running server; stops when dropped.
pub struct FileServer {
    /// `http://127.0.0.1:PORT/file.safetensors`.
    pub url: String,
    /// GETs served.
    #[allow(dead_code)] // read by the tests, not the benchmark
    pub requests: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FileServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Clone)]
struct Served {
    path: Arc<PathBuf>,
    mode: Mode,
    requests: Arc<AtomicUsize>,
}

/// Serves `path` at `/file.safetensors`.
pub async fn serve_file(path: PathBuf, mode: Mode) -> FileServer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let requests = Arc::new(AtomicUsize::new(0));
    let state = Served {
        path: Arc::new(path),
        mode,
        requests: Arc::clone(&requests),
    };
    let app = axum::Router::new()
        .route("/file.safetensors", axum::routing::get(get_file))
        .with_state(state);
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    FileServer {
        url: format!("http://{addr}/file.safetensors"),
        requests,
        task,
    }
}

fn parse_range(headers: &HeaderMap, len: u64) -> Option<Result<(u64, u64), ()>> {
    let v = headers.get(header::RANGE)?.to_str().ok()?;
    let spec = v.strip_prefix("bytes=")?;
    let (a, b) = spec.split_once('-')?;
    let a: u64 = a.parse().ok()?;
    let b: u64 = if b.is_empty() {
        len.saturating_sub(1)
    } else {
        b.parse().ok()?
    };
    if a >= len || b < a {
        return Some(Err(()));
    }
    Some(Ok((a, b.min(len - 1))))
}

async fn get_file(State(s): State<Served>, headers: HeaderMap) -> Response {
    let n = s.requests.fetch_add(1, Ordering::Relaxed);
    if s.mode == Mode::Flaky && n % 2 == 0 {
        return status(StatusCode::SERVICE_UNAVAILABLE);
    }
    let Ok(file) = std::fs::File::open(&*s.path) else {
        return status(StatusCode::NOT_FOUND);
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let range = match (s.mode, parse_range(&headers, len)) {
        (Mode::IgnoreRange, _) | (_, None) => None,
        (_, Some(Err(()))) => return status(StatusCode::RANGE_NOT_SATISFIABLE),
        (_, Some(Ok(r))) => Some(r),
    };
    let (start, end) = range.map_or((0, len), |(a, b)| (a, b + 1));
    let send_until = if s.mode == Mode::Truncate {
        start + (end - start) / 2
    } else {
        end
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    tokio::task::spawn_blocking(move || {
        let mut at = start;
        while at < send_until {
            let n = (send_until - at).min(1 << 20) as usize;
            let mut buf = vec![0; n];
            let piece = file.read_exact_at(&mut buf, at).map(|()| Bytes::from(buf));
            let failed = piece.is_err();
            if tx.blocking_send(piece).is_err() || failed {
                return;
            }
            at += n as u64;
        }
        if send_until < end {
            let _ = tx.blocking_send(Err(std::io::Error::other("cut short")));
        }
    });
    let body = Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
    let mut resp = Response::new(body);
    let h = resp.headers_mut();
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(end - start));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if range.is_some() {
        *resp.status_mut() = StatusCode::PARTIAL_CONTENT;
        let cr = format!("bytes {start}-{}/{len}", end - 1);
        resp.headers_mut().insert(
            header::CONTENT_RANGE,
            HeaderValue::from_str(&cr).expect("ascii"),
        );
    }
    resp
}

fn status(code: StatusCode) -> Response {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = code;
    r
}
