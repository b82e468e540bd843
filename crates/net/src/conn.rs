//! One accepted connection: TCP_NODELAY, hyper's HTTP/1.1, and a watchdog that closes it when
//! the client is idle too long or stalls in the middle of a request head. The watchdog knows
//! whether a request is in flight (from the first byte of its head until its response body is
//! done or dropped) by wrapping the socket, the service and the response body.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Sleep;

use crate::{RequestBody, ServeConfig};

/// The error type bodies and services are boxed into.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

const NONE: u64 = u64::MAX;

/// What the watchdog reads; every field is written by the connection's own task.
struct ConnState {
    born: Instant,
    /// Requests whose response is not finished.
    active: AtomicUsize,
    /// When `active` last fell to 0 (ms since `born`).
    idle_since_ms: AtomicU64,
    /// When the first byte of a request head not yet complete arrived, or [`NONE`].
    head_since_ms: AtomicU64,
}

impl ConnState {
    fn new() -> Self {
        Self {
            born: Instant::now(),
            active: AtomicUsize::new(0),
            idle_since_ms: AtomicU64::new(0),
            head_since_ms: AtomicU64::new(NONE),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.born.elapsed().as_millis()).unwrap_or(NONE - 1)
    }
}

/// Serves one accepted connection until it ends, times out, or the server shuts down.
pub(crate) async fn serve_connection<S, B>(
    stream: TcpStream,
    service: S,
    cfg: Arc<ServeConfig>,
    mut stop: watch::Receiver<bool>,
) where
    S: hyper::service::Service<http::Request<RequestBody>, Response = http::Response<B>>
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    // Small writes (SSE chunks) go out at once instead of waiting for the peer's ACK.
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(error = %e, "set_nodelay");
    }
    let state = Arc::new(ConnState::new());
    let io = TokioIo::new(Tracked {
        io: stream,
        state: state.clone(),
    });
    let svc = Counted {
        inner: service,
        state: state.clone(),
        read_timeout: cfg.header_read_timeout(),
    };
    let mut builder = http1::Builder::new();
    // The watchdog below applies the head timeout; hyper's own would also cut idle
    // kept-alive connections at the same deadline.
    builder.header_read_timeout(None);
    let conn = builder.serve_connection(io, svc);
    tokio::pin!(conn);
    let mut draining = false;
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            why = watchdog(&state, cfg.header_read_timeout(), cfg.idle_timeout()) => {
                tracing::debug!(reason = why, "closing a client connection");
                return;
            }
            _ = stop.wait_for(|s| *s), if !draining => {
                // Idle: closes now; otherwise after the response in flight.
                draining = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

/// Resolves, with the reason, once the connection has had no request in flight for
/// `idle`, or a request head has been arriving for longer than `head`.
async fn watchdog(state: &ConnState, head: Duration, idle: Duration) -> &'static str {
    let tick = (head.min(idle) / 4).clamp(Duration::from_millis(5), Duration::from_secs(1));
    let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(NONE - 1);
    loop {
        tokio::time::sleep(tick).await;
        if state.active.load(Ordering::SeqCst) > 0 {
            continue;
        }
        let now = state.now_ms();
        let since = state.head_since_ms.load(Ordering::SeqCst);
        if since != NONE {
            if now.saturating_sub(since) >= ms(head) {
                return "header read timeout";
            }
        } else if now.saturating_sub(state.idle_since_ms.load(Ordering::SeqCst)) >= ms(idle) {
            return "idle timeout";
        }
    }
}

/// The socket, noting when the first byte of a new request head arrives.
struct Tracked {
    io: TcpStream,
    state: Arc<ConnState>,
}

impl AsyncRead for Tracked {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.io).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(())))
            && buf.filled().len() > before
            && this.state.active.load(Ordering::SeqCst) == 0
        {
            let now = this.state.now_ms();
            let _ = this.state.head_since_ms.compare_exchange(
                NONE,
                now,
                Ordering::SeqCst,
                Ordering::SeqCst,
            );
        }
        r
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// One request in flight on a connection; dropped when its response body is done.
struct Active(Arc<ConnState>);

impl Active {
    fn enter(state: Arc<ConnState>) -> Self {
        state.head_since_ms.store(NONE, Ordering::SeqCst);
        state.active.fetch_add(1, Ordering::SeqCst);
        Self(state)
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        if self.0.active.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0
                .idle_since_ms
                .store(self.0.now_ms(), Ordering::SeqCst);
        }
    }
}

/// The service, counting requests in flight and timing the request body.
struct Counted<S> {
    inner: S,
    state: Arc<ConnState>,
    read_timeout: Duration,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B> hyper::service::Service<http::Request<Incoming>> for Counted<S>
where
    S: hyper::service::Service<http::Request<RequestBody>, Response = http::Response<B>>,
    S::Future: Send + 'static,
    B: Body,
{
    type Response = http::Response<Guarded<B>>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, S::Error>>;

    fn call(&self, req: http::Request<Incoming>) -> Self::Future {
        let active = Active::enter(self.state.clone());
        let timeout = self.read_timeout;
        let fut = self.inner.call(req.map(|b| TimedBody::new(b, timeout)));
        Box::pin(async move {
            let resp = fut.await?;
            Ok(resp.map(|body| Guarded {
                body: Box::pin(body),
                _active: active,
            }))
        })
    }
}

/// A response body that keeps its request counted as in flight until it is done.
struct Guarded<B> {
    body: Pin<Box<B>>,
    _active: Active,
}

impl<B: Body> Body for Guarded<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        self.get_mut().body.as_mut().poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A request body that fails when the client pauses longer than the read timeout, so a
/// half-sent body cannot hold a handler (and its connection) forever.
pub struct TimedBody<B> {
    inner: B,
    timeout: Duration,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl<B> TimedBody<B> {
    /// Wraps `inner`; each wait for its next frame may last at most `timeout`.
    pub fn new(inner: B, timeout: Duration) -> Self {
        Self {
            inner,
            timeout,
            sleep: None,
        }
    }
}

/// The client stopped sending its request body.
#[derive(Debug)]
struct Stalled(Duration);

impl std::fmt::Display for Stalled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the client sent no request body data for {:.1} s",
            self.0.as_secs_f64()
        )
    }
}

impl std::error::Error for Stalled {}

impl<B> Body for TimedBody<B>
where
    B: Body + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = B::Data;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.sleep = None;
                Poll::Ready(frame.map(|r| r.map_err(Into::into)))
            }
            Poll::Pending => {
                let timeout = this.timeout;
                let sleep = this
                    .sleep
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                match sleep.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(Stalled(timeout))))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
