//! The listener over real sockets: idle and half-sent connections are closed after their
//! timeouts while slow responses are not, and a shutdown refuses new connections but lets a
//! stream in flight finish.
#![expect(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::routing::{get, post};
use brix_net::ServeConfig;
use http_body::Frame;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

/// Generous bound on any wait, so a broken server fails the test instead of hanging it.
const LIMIT: Duration = Duration::from_secs(20);

/// A response body fed by a channel: one frame per message, done when the sender drops.
struct Chan(mpsc::Receiver<Bytes>);

impl http_body::Body for Chan {
    type Data = Bytes;
    type Error = std::convert::Infallible;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.0.poll_recv(cx).map(|m| m.map(|b| Ok(Frame::data(b))))
    }
}

type Feed = Arc<Mutex<Option<mpsc::Receiver<Bytes>>>>;

struct Server {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    done: tokio::task::JoinHandle<()>,
}

fn cfg(head: f64, idle: f64) -> ServeConfig {
    ServeConfig {
        header_read_timeout_s: head,
        idle_timeout_s: idle,
        shutdown_grace_s: 10.0,
    }
}

async fn start(cfg: ServeConfig, feed: Feed, slow: Duration) -> Server {
    let app = Router::new()
        .route("/", get(|| async { "ok" }))
        .route(
            "/slow",
            get(move || async move {
                tokio::time::sleep(slow).await;
                "slow ok"
            }),
        )
        .route("/echo", post(|body: Bytes| async move { body }))
        .route(
            "/stream",
            get(move || async move {
                let rx = feed.lock().unwrap().take().unwrap();
                axum::body::Body::new(Chan(rx))
            }),
        );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let done = tokio::spawn(brix_net::serve_router(listener, app, cfg, async {
        let _ = stopped.await;
    }));
    Server {
        addr,
        stop: Some(stop),
        done,
    }
}

/// Reads until the peer closes; returns everything read.
async fn read_to_close(s: &mut TcpStream) -> String {
    let mut out = Vec::new();
    tokio::time::timeout(LIMIT, s.read_to_end(&mut out))
        .await
        .expect("the server never closed the connection")
        .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads until `needle` appears.
async fn read_until(s: &mut TcpStream, needle: &str) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&out).contains(needle) {
        let n = tokio::time::timeout(LIMIT, s.read(&mut buf))
            .await
            .expect("timed out waiting for data")
            .unwrap();
        assert!(
            n > 0,
            "closed before {needle:?}: {:?}",
            String::from_utf8_lossy(&out)
        );
        out.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn idle_connection_closed_but_slow_response_is_not() {
    let feed = Feed::default();
    // The slow handler takes four idle timeouts: a request in flight is not idle.
    let s = start(cfg(5.0, 0.2), feed, Duration::from_millis(800)).await;
    let mut c = TcpStream::connect(s.addr).await.unwrap();
    c.write_all(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let reply = read_until(&mut c, "slow ok").await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    // Kept alive, then idle: the server closes it.
    let rest = read_to_close(&mut c).await;
    assert!(rest.is_empty(), "{rest}");
}

#[tokio::test]
async fn half_sent_head_is_closed() {
    let s = start(cfg(0.2, 60.0), Feed::default(), Duration::ZERO).await;
    let mut c = TcpStream::connect(s.addr).await.unwrap();
    c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let got = read_to_close(&mut c).await;
    assert!(!got.contains("200"), "{got}");
    // A complete request on a fresh connection is still served.
    let mut c = TcpStream::connect(s.addr).await.unwrap();
    c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    assert!(read_to_close(&mut c).await.starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn half_sent_body_is_cut() {
    let s = start(cfg(0.2, 60.0), Feed::default(), Duration::ZERO).await;
    let mut c = TcpStream::connect(s.addr).await.unwrap();
    c.write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly ten..")
        .await
        .unwrap();
    let got = read_to_close(&mut c).await;
    // axum answers 400 for a body that failed to arrive; the connection then closes.
    assert!(got.starts_with("HTTP/1.1 400"), "{got}");
}

#[tokio::test]
async fn shutdown_refuses_new_connections_and_finishes_streams() {
    let feed = Feed::default();
    let (tx, rx) = mpsc::channel(4);
    *feed.lock().unwrap() = Some(rx);
    let mut s = start(cfg(5.0, 60.0), feed, Duration::ZERO).await;
    let mut c = TcpStream::connect(s.addr).await.unwrap();
    c.write_all(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    tx.send(Bytes::from_static(b"first-chunk")).await.unwrap();
    read_until(&mut c, "first-chunk").await;
    // An idle kept-alive connection, open before the signal.
    let mut idle = TcpStream::connect(s.addr).await.unwrap();
    idle.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    read_until(&mut idle, "ok").await;

    s.stop.take().unwrap().send(()).unwrap();
    // The idle connection is closed, and new connections are refused.
    assert_eq!(read_to_close(&mut idle).await, "");
    let refused = tokio::time::timeout(LIMIT, async {
        loop {
            if TcpStream::connect(s.addr).await.is_err() {
                return;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(refused.is_ok(), "still accepting after shutdown");
    // The stream in flight still completes.
    tx.send(Bytes::from_static(b"last-chunk")).await.unwrap();
    drop(tx);
    let rest = read_to_close(&mut c).await;
    assert!(rest.contains("last-chunk"), "{rest}");
    assert!(
        rest.ends_with("0\r\n\r\n"),
        "stream not terminated: {rest:?}"
    );
    tokio::time::timeout(LIMIT, s.done).await.unwrap().unwrap();
}

#[tokio::test]
async fn shutdown_cuts_what_outlives_the_grace_period() {
    let feed = Feed::default();
    let (tx, rx) = mpsc::channel(4);
    *feed.lock().unwrap() = Some(rx);
    let mut c = cfg(5.0, 60.0);
    c.shutdown_grace_s = 0.2;
    let mut s = start(c, feed, Duration::ZERO).await;
    let mut c = TcpStream::connect(s.addr).await.unwrap();
    c.write_all(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    tx.send(Bytes::from_static(b"first-chunk")).await.unwrap();
    read_until(&mut c, "first-chunk").await;
    s.stop.take().unwrap().send(()).unwrap();
    // The stream never ends on its own; the server still returns, cutting it.
    tokio::time::timeout(LIMIT, s.done).await.unwrap().unwrap();
    let rest = read_to_close(&mut c).await;
    assert!(!rest.ends_with("0\r\n\r\n"), "{rest:?}");
    drop(tx);
}
