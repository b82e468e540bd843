//! `brix bench load`: a closed-loop HTTP/1.1 load generator.
//!
//! C workers each own one keep-alive connection and send their next request as soon as the
//! previous reply has been read to the end, so the offered load adapts to the server: the
//! requests/s it reaches at a given concurrency is the server's capacity there, and the latency
//! it records is what one client waiting on each reply sees. Bodies are built before the run
//! ([`crate::prompts`]) and shared as [`Bytes`]; per request a worker only clones a `Bytes`,
//! builds the request head and reads the reply into a buffer it reuses.
//!
//! A request counts as an error, and its latency is left out of the percentiles, when the
//! connection fails, the status is not 2xx, or a streamed reply is not a complete SSE stream
//! ending in `[DONE]`. After an error the worker drops its connection and dials again.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HOST, HeaderValue};
use http::{Method, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use tokio::net::TcpStream;

use crate::prompts::{self, ApiShape, PromptConfig};
use crate::sse;
use crate::stats::Summary;

/// When a run ends (after the warm-up, which is never recorded).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Stop starting requests after this long; requests in flight then still finish.
    Duration(Duration),
    /// Stop after this many requests in all (tests use this: it does not depend on speed).
    Requests(u64),
}

/// One load run, validated.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// Where to connect: `host:port` of the `http://` URL.
    pub addr: SocketAddr,
    /// The `Host` header (the URL's authority).
    pub host: HeaderValue,
    /// Request path, e.g. `/v1/chat/completions`.
    pub path: Uri,
    /// Workers, each with its own connection.
    pub concurrency: usize,
    /// When to stop.
    pub stop: Stop,
    /// Time to run unrecorded first, so connections and caches are warm.
    pub warmup: Duration,
    /// The `model` field of every body.
    pub model: String,
    /// Ask for SSE replies.
    pub stream: bool,
    /// Shared system-prompt prefixes (see [`crate::prompts`]).
    pub prefixes: usize,
    /// Seeds the bodies and each worker's choice among them.
    pub seed: u64,
}

/// Why a load run could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// `--url` is not `http://HOST:PORT` with a literal IP address.
    #[error("--url must look like http://127.0.0.1:8000 (an IP address, no path), got {0:?}")]
    Url(String),
    /// `--path` is not an absolute path.
    #[error("--path must start with '/', got {0:?}")]
    Path(String),
    /// Zero workers, or a `Requests` stop of zero.
    #[error("--concurrency and --requests must be at least 1")]
    Empty,
    /// The first connection, made before the run starts, failed.
    #[error("connecting to {addr}: {source}")]
    Connect {
        /// The target.
        addr: SocketAddr,
        /// What the OS said.
        source: std::io::Error,
    },
}

impl LoadConfig {
    /// Checks `url` and `path` and fills the rest with the defaults the CLI shows.
    pub fn new(url: &str, path: &str) -> Result<Self, LoadError> {
        let bad_url = || LoadError::Url(url.to_owned());
        let authority = url
            .strip_prefix("http://")
            .map(|rest| rest.trim_end_matches('/'))
            .filter(|a| !a.contains('/'))
            .ok_or_else(bad_url)?;
        let addr: SocketAddr = authority.parse().map_err(|_| bad_url())?;
        let host = HeaderValue::from_str(authority).map_err(|_| bad_url())?;
        if !path.starts_with('/') {
            return Err(LoadError::Path(path.to_owned()));
        }
        let path: Uri = path.parse().map_err(|_| LoadError::Path(path.to_owned()))?;
        Ok(Self {
            addr,
            host,
            path,
            concurrency: 1,
            stop: Stop::Duration(Duration::from_secs(10)),
            warmup: Duration::from_secs(1),
            model: "mock".into(),
            stream: false,
            prefixes: 8,
            seed: 1,
        })
    }
}

/// Requests that failed, by the step that failed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ErrorCounts {
    /// Dialling a new connection failed.
    pub connect: u64,
    /// Sending the request or reading the reply failed.
    pub io: u64,
    /// The status was not 2xx.
    pub status: u64,
    /// A streamed reply was not a complete SSE stream.
    pub stream: u64,
}

impl ErrorCounts {
    /// All failures.
    pub fn total(&self) -> u64 {
        self.connect + self.io + self.status + self.stream
    }

    fn add(&mut self, o: &Self) {
        self.connect += o.connect;
        self.io += o.io;
        self.status += o.status;
        self.stream += o.stream;
    }
}

/// What a run measured.
#[derive(Debug, Clone, Serialize)]
pub struct LoadReport {
    /// Workers.
    pub concurrency: usize,
    /// Whether replies were streamed.
    pub stream: bool,
    /// Successful requests recorded.
    pub requests: u64,
    /// Failed requests (all kinds).
    pub errors: u64,
    /// Failed requests by kind.
    pub errors_by_kind: ErrorCounts,
    /// Seconds from the end of warm-up until the last worker finished.
    pub duration_s: f64,
    /// Successful requests per second over `duration_s`.
    pub rps: f64,
    /// Latency of the successful requests.
    #[serde(flatten)]
    pub latency: Summary,
}

impl LoadReport {
    /// Writes the report as one JSON object and a newline (what `--json` prints, for scripts).
    pub fn write_json(&self, mut w: impl std::io::Write) -> std::io::Result<()> {
        serde_json::to_writer(&mut w, self)?;
        w.write_all(b"\n")
    }
}

impl std::fmt::Display for LoadReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let l = &self.latency;
        let e = &self.errors_by_kind;
        writeln!(
            f,
            "{} requests in {:.2} s at concurrency {}: {:.1} requests/s",
            self.requests, self.duration_s, self.concurrency, self.rps
        )?;
        writeln!(
            f,
            "latency ms: p50 {:.3}  p90 {:.3}  p99 {:.3}  max {:.3}  mean {:.3}",
            l.p50_ms, l.p90_ms, l.p99_ms, l.max_ms, l.mean_ms
        )?;
        write!(
            f,
            "errors {} (connect {}, io {}, status {}, stream {})",
            self.errors, e.connect, e.io, e.status, e.stream
        )
    }
}

/// What every worker reads.
struct Shared {
    cfg: LoadConfig,
    bodies: Vec<Bytes>,
    content_type: HeaderValue,
    measure_from: Instant,
    /// Requests started after warm-up, for [`Stop::Requests`].
    started: AtomicU64,
}

impl Shared {
    /// Whether a request starting `now` is recorded, or `None` when the run is over.
    fn admit(&self, now: Instant) -> Option<bool> {
        if now < self.measure_from {
            return Some(false);
        }
        match self.cfg.stop {
            Stop::Duration(d) => (now < self.measure_from + d).then_some(true),
            Stop::Requests(n) => (self.started.fetch_add(1, Ordering::Relaxed) < n).then_some(true),
        }
    }
}

/// One worker's results.
struct Tally {
    latencies: Vec<u64>,
    errors: ErrorCounts,
}

/// Runs the load and summarizes it. Spawns one task per worker on the current runtime.
pub async fn run(cfg: LoadConfig) -> Result<LoadReport, LoadError> {
    if cfg.concurrency == 0 || cfg.stop == Stop::Requests(0) {
        return Err(LoadError::Empty);
    }
    // Fail fast on a wrong port instead of counting a run's worth of refused connections.
    connect(cfg.addr)
        .await
        .map_err(|source| LoadError::Connect {
            addr: cfg.addr,
            source,
        })?;
    let bodies = prompts::bodies(&PromptConfig {
        shape: ApiShape::for_path(cfg.path.path()),
        model: cfg.model.clone(),
        stream: cfg.stream,
        prefixes: cfg.prefixes,
        turns_per_prefix: 64,
        max_tokens: 16,
        seed: cfg.seed,
    });
    let shared = Arc::new(Shared {
        bodies,
        content_type: HeaderValue::from_static("application/json"),
        measure_from: Instant::now() + cfg.warmup,
        started: AtomicU64::new(0),
        cfg,
    });
    let workers: Vec<_> = (0..shared.cfg.concurrency)
        .map(|i| tokio::spawn(worker(shared.clone(), i as u64)))
        .collect();
    let mut latencies = Vec::new();
    let mut errors = ErrorCounts::default();
    for w in workers {
        match w.await {
            Ok(t) => {
                latencies.extend_from_slice(&t.latencies);
                errors.add(&t.errors);
            }
            Err(e) => tracing::error!(error = %e, "a load worker panicked"),
        }
    }
    let duration = Instant::now().saturating_duration_since(shared.measure_from);
    let latency = Summary::from_nanos(&mut latencies);
    let duration_s = duration.as_secs_f64();
    Ok(LoadReport {
        concurrency: shared.cfg.concurrency,
        stream: shared.cfg.stream,
        requests: latency.count,
        errors: errors.total(),
        errors_by_kind: errors,
        duration_s,
        rps: if duration_s > 0.0 {
            latency.count as f64 / duration_s
        } else {
            0.0
        },
        latency,
    })
}

async fn connect(addr: SocketAddr) -> std::io::Result<SendRequest<Full<Bytes>>> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, conn) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(std::io::Error::other)?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "load connection ended with an error");
        }
    });
    Ok(sender)
}

/// Leaves `conn` holding a connection ready for a request: the old one if it still is,
/// otherwise a new one (a server may close an idle keep-alive connection; that is no error).
async fn ensure_ready(
    conn: &mut Option<SendRequest<Full<Bytes>>>,
    addr: SocketAddr,
) -> std::io::Result<()> {
    if let Some(s) = conn
        && s.ready().await.is_ok()
    {
        return Ok(());
    }
    *conn = None;
    let mut s = connect(addr).await?;
    s.ready().await.map_err(std::io::Error::other)?;
    *conn = Some(s);
    Ok(())
}

/// The closed loop of one worker.
async fn worker(shared: Arc<Shared>, id: u64) -> Tally {
    let cfg = &shared.cfg;
    let mut rng = SmallRng::seed_from_u64(cfg.seed ^ id.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut tally = Tally {
        latencies: Vec::with_capacity(1 << 14),
        errors: ErrorCounts::default(),
    };
    let mut conn: Option<SendRequest<Full<Bytes>>> = None;
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    loop {
        let start = Instant::now();
        let Some(record) = shared.admit(start) else {
            break;
        };
        if let Err(e) = ensure_ready(&mut conn, cfg.addr).await {
            tracing::debug!(error = %e, "connect");
            if record {
                tally.errors.connect += 1;
            }
            // A refused dial returns at once; don't spin a core on it.
            tokio::time::sleep(Duration::from_millis(1)).await;
            continue;
        }
        let Some(sender) = conn.as_mut() else {
            continue;
        };
        let body = shared.bodies[rng.random_range(0..shared.bodies.len())].clone();
        let mut req = Request::new(Full::new(body));
        *req.method_mut() = Method::POST;
        *req.uri_mut() = cfg.path.clone();
        let headers = req.headers_mut();
        headers.insert(HOST, cfg.host.clone());
        headers.insert(CONTENT_TYPE, shared.content_type.clone());
        let outcome = exchange(sender, req, &mut buf, cfg.stream).await;
        let elapsed = start.elapsed();
        if !matches!(outcome, Outcome::Ok) {
            conn = None;
        }
        if !record {
            continue;
        }
        match outcome {
            Outcome::Ok => tally.latencies.push(elapsed.as_nanos() as u64),
            Outcome::Io => tally.errors.io += 1,
            Outcome::Status => tally.errors.status += 1,
            Outcome::Stream => tally.errors.stream += 1,
        }
    }
    tally
}

enum Outcome {
    Ok,
    Io,
    Status,
    Stream,
}

/// Sends one request and reads the whole reply into `buf`.
async fn exchange(
    sender: &mut SendRequest<Full<Bytes>>,
    req: Request<Full<Bytes>>,
    buf: &mut Vec<u8>,
    stream: bool,
) -> Outcome {
    let resp = match sender.send_request(req).await {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(error = %e, "send");
            return Outcome::Io;
        }
    };
    let ok = resp.status().is_success();
    let mut body = resp.into_body();
    buf.clear();
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(f) => {
                if let Some(data) = f.data_ref() {
                    buf.extend_from_slice(data);
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, "read");
                return Outcome::Io;
            }
        }
    }
    if !ok {
        Outcome::Status
    } else if stream && !sse::summarize(buf).is_complete() {
        Outcome::Stream
    } else {
        Outcome::Ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let c = LoadConfig::new("http://127.0.0.1:8080", "/v1/completions").expect("valid");
        assert_eq!(c.addr, "127.0.0.1:8080".parse().expect("addr"));
        assert_eq!(c.host, "127.0.0.1:8080");
        assert!(LoadConfig::new("http://127.0.0.1:8080/", "/x").is_ok());
        for bad in [
            "127.0.0.1:80",
            "https://127.0.0.1:80",
            "http://localhost:80",
            "http://127.0.0.1:80/v1",
        ] {
            assert!(
                matches!(LoadConfig::new(bad, "/x"), Err(LoadError::Url(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            LoadConfig::new("http://127.0.0.1:1", "x"),
            Err(LoadError::Path(_))
        ));
    }
}
