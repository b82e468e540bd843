//! How every Brix server listens, so that none of them gets it wrong on its own: the gateway,
//! `brix up`, `brix sim` and the bench mock all serve through [`serve`] (or [`serve_router`]).
//!
//! - **TCP_NODELAY** on every accepted connection: without it the first small writes of a
//!   stream on a kept-alive connection wait for the peer's delayed ACK (tens of milliseconds).
//! - **Accept errors are survived.** Out of file descriptors (`EMFILE`/`ENFILE`) and other
//!   resource errors are logged once per burst and retried with a back-off (10 ms doubling to
//!   1 s); errors of one half-open connection are skipped at once. The loop never exits on
//!   its own.
//! - **Client timeouts** ([`ServeConfig`]): a request's head must arrive, and its body must
//!   keep coming, within `header_read_timeout`; a kept-alive connection with no request in
//!   flight is closed after `idle_timeout`. A response being written is never cut by them.
//! - **Graceful shutdown**: when the `shutdown` future resolves the listener is closed (new
//!   connections are refused), idle connections close, requests in flight (streams included)
//!   finish, and whatever is left after `shutdown_grace` is cut.

mod conn;

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::service::TowerToHyperService;
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

pub use conn::{BoxError, TimedBody};

/// The body every served request carries: the client's body, cut when it stalls.
pub type RequestBody = TimedBody<Incoming>;

/// Client-side timeouts and the shutdown grace period of a listener.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ServeConfig {
    /// Seconds a client may take to send a request's head (from its first byte), and the
    /// longest pause within its body; then the connection is closed.
    pub header_read_timeout_s: f64,
    /// Seconds a kept-alive connection may sit with no request in flight before it is closed.
    pub idle_timeout_s: f64,
    /// Seconds requests in flight get to finish after a shutdown signal before being cut.
    pub shutdown_grace_s: f64,
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            header_read_timeout_s: 30.0,
            idle_timeout_s: 90.0,
            shutdown_grace_s: 30.0,
        }
    }
}

impl ServeConfig {
    /// Checks every value is a positive, finite number of seconds; names the bad key.
    pub fn validate(&self) -> Result<(), String> {
        for (key, v) in [
            ("header_read_timeout_s", self.header_read_timeout_s),
            ("idle_timeout_s", self.idle_timeout_s),
            ("shutdown_grace_s", self.shutdown_grace_s),
        ] {
            if Duration::try_from_secs_f64(v).map_or(true, |d| d.is_zero()) {
                return Err(format!(
                    "{key} must be a positive number of seconds, got {v}"
                ));
            }
        }
        Ok(())
    }

    fn secs(v: f64) -> Duration {
        Duration::try_from_secs_f64(v).unwrap_or(Duration::from_secs(1))
    }

    pub(crate) fn header_read_timeout(&self) -> Duration {
        Self::secs(self.header_read_timeout_s)
    }

    pub(crate) fn idle_timeout(&self) -> Duration {
        Self::secs(self.idle_timeout_s)
    }

    pub(crate) fn shutdown_grace(&self) -> Duration {
        Self::secs(self.shutdown_grace_s)
    }
}

/// Serves an axum [`Router`] on `listener` until `shutdown` resolves, then drains (see the
/// crate docs). The future owns every connection: dropping or aborting it cuts them all.
pub async fn serve_router(
    listener: TcpListener,
    router: Router,
    cfg: ServeConfig,
    shutdown: impl Future<Output = ()> + Send,
) {
    serve(listener, TowerToHyperService::new(router), cfg, shutdown).await;
}

/// [`serve_router`] for any hyper service (the bench mock's hand-built one).
pub async fn serve<S, B>(
    listener: TcpListener,
    service: S,
    cfg: ServeConfig,
    shutdown: impl Future<Output = ()> + Send,
) where
    S: hyper::service::Service<http::Request<RequestBody>, Response = http::Response<B>>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let cfg = Arc::new(cfg);
    let (stop, stopped) = watch::channel(false);
    let mut conns = JoinSet::new();
    let mut errors = AcceptErrors::default();
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            () = &mut shutdown => break,
        };
        while conns.try_join_next().is_some() {}
        match accepted {
            Ok((stream, _)) => {
                errors.recovered();
                conns.spawn(conn::serve_connection(
                    stream,
                    service.clone(),
                    cfg.clone(),
                    stopped.clone(),
                ));
            }
            Err(e) => {
                if let Some(pause) = errors.failed(&e) {
                    tokio::select! {
                        () = tokio::time::sleep(pause) => {}
                        () = &mut shutdown => break,
                    }
                }
            }
        }
    }
    // Refuse new connections at once, then let those open finish within the grace period.
    drop(listener);
    stop.send_replace(true);
    let open = conns.len();
    if open > 0 {
        tracing::info!(
            connections = open,
            grace_s = cfg.shutdown_grace_s,
            "shutting down: draining open connections"
        );
    }
    let drained = tokio::time::timeout(cfg.shutdown_grace(), async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            connections = conns.len(),
            "shutdown grace period over: cutting the connections left"
        );
        conns.shutdown().await;
    }
}

/// Ctrl-C or SIGTERM: what every Brix server stops on.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = ctrl_c.await;
        }
    }
}

const PAUSE_MIN: Duration = Duration::from_millis(10);
const PAUSE_MAX: Duration = Duration::from_secs(1);

/// A run of failed accepts: logged once when it starts and once when it ends, with a
/// growing pause while the cause is a resource limit.
#[derive(Default)]
struct AcceptErrors {
    in_burst: u64,
    pause: Option<Duration>,
}

impl AcceptErrors {
    /// Records a failed accept; returns how long to pause before the next one.
    fn failed(&mut self, e: &io::Error) -> Option<Duration> {
        if is_per_connection(e) {
            // The client went away between SYN and accept: nothing to wait for.
            tracing::debug!(error = %e, "accept: connection failed before it was accepted");
            return None;
        }
        if self.in_burst == 0 {
            tracing::warn!(error = %e, "accept failed (out of file descriptors?); backing off and retrying, logged once per burst");
        }
        self.in_burst += 1;
        let pause = self.pause.map_or(PAUSE_MIN, |p| (p * 2).min(PAUSE_MAX));
        self.pause = Some(pause);
        Some(pause)
    }

    /// An accept succeeded: ends a burst.
    fn recovered(&mut self) {
        if self.in_burst > 0 {
            tracing::warn!(
                failed_accepts = self.in_burst,
                "accepting connections again"
            );
        }
        self.in_burst = 0;
        self.pause = None;
    }
}

fn is_per_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::Interrupted
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_errors_back_off_and_reset() {
        let mut e = AcceptErrors::default();
        let emfile = io::Error::from_raw_os_error(24);
        let pauses: Vec<_> = (0..9).map(|_| e.failed(&emfile)).collect();
        assert_eq!(pauses[0], Some(PAUSE_MIN));
        assert!(pauses.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(pauses[8], Some(PAUSE_MAX));
        assert_eq!(e.failed(&io::ErrorKind::ConnectionAborted.into()), None);
        e.recovered();
        assert_eq!(e.failed(&emfile), Some(PAUSE_MIN));
    }

    #[test]
    fn config_rejects_non_positive() {
        assert!(ServeConfig::default().validate().is_ok());
        let bad = ServeConfig {
            idle_timeout_s: 0.0,
            ..ServeConfig::default()
        };
        assert!(matches!(bad.validate(), Err(e) if e.contains("idle_timeout_s")));
        let bad = ServeConfig {
            shutdown_grace_s: f64::NAN,
            ..ServeConfig::default()
        };
        assert!(bad.validate().is_err());
    }
}
