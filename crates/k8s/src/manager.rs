//! The controller manager (`brix kubernetes controllers`): runs the chosen controllers while
//! this replica leads (or always, without leader election), serves `/healthz` and `/readyz`,
//! and stops cleanly on SIGTERM or Ctrl-C.
//!
//! - Leader election ([`crate::lease`]) on: controllers start when the lease is won and are
//!   stopped (their tasks dropped, with their in-memory state) the moment it is lost; the
//!   replica then campaigns again. `/readyz` is 200 only while leading, so a standby shows
//!   not-ready (and the chart's readiness probe says which replica works).
//! - A controller that ends, or fails, ends the manager with an error: the process exits
//!   non-zero and Kubernetes restarts it, rather than a replica leading with a dead
//!   controller.
//! - On shutdown the controllers stop first, then the lease is released so a standby takes
//!   over within its retry period instead of waiting out the lease.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use futures::future::BoxFuture;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::lease::{LeaderElector, LeaseConfig};
use crate::rbac::Rule;
use crate::{Error, Scope};

/// The manager itself calls no API (the lease and the controllers list theirs).
pub const RULES: &[Rule] = &[];

/// The controllers the manager can run, as `--controllers` names them.
pub const CONTROLLERS: [&str; 3] = ["podautoscaler", "modeladapter", "rayclusterfleet"];

/// What to run and how.
#[derive(Clone, Debug)]
pub struct ManagerConfig {
    /// Where the controllers look.
    pub scope: Scope,
    /// Which controllers to run (names from [`CONTROLLERS`]; see [`parse_controllers`]).
    pub controllers: Vec<String>,
    /// Leader election; None runs the controllers at once (one replica only).
    pub leader_election: Option<LeaseConfig>,
    /// Where `/healthz` and `/readyz` listen; None serves no health endpoints.
    pub health_listen: Option<SocketAddr>,
}

/// `*` (every controller) or a comma-separated list of [`CONTROLLERS`]; an unknown or empty
/// name is an error that lists the known ones.
pub fn parse_controllers(list: &str) -> Result<Vec<String>, Error> {
    if list.trim() == "*" {
        return Ok(CONTROLLERS.iter().map(|c| c.to_string()).collect());
    }
    let mut out: Vec<String> = Vec::new();
    for name in list.split(',').map(str::trim) {
        if !CONTROLLERS.contains(&name) {
            return Err(Error::Spec(format!(
                "--controllers: unknown controller '{name}' (known: *, {})",
                CONTROLLERS.join(", ")
            )));
        }
        if !out.iter().any(|c| c == name) {
            out.push(name.to_string());
        }
    }
    Ok(out)
}

/// Starts one controller by name; it runs until it fails or is dropped.
pub type Starter =
    Arc<dyn Fn(&str, kube::Client, Scope) -> BoxFuture<'static, Result<(), Error>> + Send + Sync>;

/// The controllers of this build, by name.
pub fn builtin() -> Starter {
    Arc::new(|name, client, scope| {
        let name = name.to_string();
        Box::pin(async move {
            match name.as_str() {
                "podautoscaler" => podautoscaler(client, scope).await,
                "modeladapter" => modeladapter(client, scope).await,
                "rayclusterfleet" => rayclusterfleet(client, scope).await,
                other => Err(Error::Spec(format!("unknown controller '{other}'"))),
            }
        })
    })
}

// One function per controller: each runs with its module's defaults.

async fn podautoscaler(client: kube::Client, scope: Scope) -> Result<(), Error> {
    crate::podautoscaler::run(client, scope, crate::podautoscaler::Config::default()).await
}

async fn modeladapter(client: kube::Client, scope: Scope) -> Result<(), Error> {
    crate::modeladapter::run(client, scope, crate::modeladapter::Config::default()).await
}

async fn rayclusterfleet(client: kube::Client, scope: Scope) -> Result<(), Error> {
    crate::fleet::run(client, scope, crate::fleet::Config::default()).await
}

/// Runs the manager with this build's controllers until SIGTERM or Ctrl-C.
pub async fn run(client: kube::Client, cfg: ManagerConfig) -> Result<(), Error> {
    let health = match cfg.health_listen {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .map_err(|e| Error::Other(format!("binding the health endpoint {addr}: {e}")))?,
        ),
        None => None,
    };
    run_with(client, cfg, builtin(), health, brix_net::shutdown_signal()).await
}

/// [`run`] with the controllers started by `start`, health served on an already-bound
/// listener, until `shutdown` resolves.
pub async fn run_with(
    client: kube::Client,
    cfg: ManagerConfig,
    start: Starter,
    health: Option<TcpListener>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), Error> {
    if cfg.controllers.is_empty() {
        return Err(Error::Spec("no controller to run".into()));
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    let (leading_tx, mut leading) = watch::channel(cfg.leader_election.is_none());
    let mut background = JoinSet::new();
    if let Some(listener) = health {
        let ready = leading.clone();
        let app = Router::new()
            .route("/healthz", get(|| async { "ok" }))
            .route(
                "/readyz",
                get(move || {
                    let leading = *ready.borrow();
                    async move {
                        if leading {
                            (StatusCode::OK, "ok")
                        } else {
                            (StatusCode::SERVICE_UNAVAILABLE, "not leading")
                        }
                    }
                }),
            );
        let serve = brix_net::ServeConfig {
            shutdown_grace_s: 1.0,
            ..brix_net::ServeConfig::default()
        };
        background.spawn(brix_net::serve_router(listener, app, serve, stopped()));
    }
    // `leading_tx` lives to the end, so `leading` never closes.
    let elector = cfg.leader_election.clone().map(|lease| {
        tokio::spawn(LeaderElector::new(client.clone(), lease).run(leading_tx.clone(), stopped()))
    });
    tokio::pin!(shutdown);
    let outcome = loop {
        // Wait for leadership (at once without election).
        tokio::select! {
            () = &mut shutdown => break Ok(()),
            r = leading.wait_for(|l| *l) => if r.is_err() { break Err(Error::Other("leader election ended".into())) },
        }
        tracing::info!(controllers = ?cfg.controllers, "starting controllers");
        let mut controllers = JoinSet::new();
        for name in &cfg.controllers {
            let run = start(name, client.clone(), cfg.scope.clone());
            let name = name.clone();
            controllers.spawn(async move { (name, run.await) });
        }
        let ended = tokio::select! {
            () = &mut shutdown => Some(Ok(())),
            r = leading.wait_for(|l| !*l) => r.is_err().then(|| Err(Error::Other("leader election ended".into()))),
            Some(done) = controllers.join_next() => Some(Err(match done {
                Ok((name, Ok(()))) => Error::Other(format!("the {name} controller stopped")),
                Ok((name, Err(e))) => Error::Other(format!("the {name} controller failed: {e}")),
                Err(e) => Error::Other(format!("a controller panicked: {e}")),
            })),
        };
        controllers.shutdown().await;
        match ended {
            Some(result) => break result,
            None => tracing::warn!("lost leadership: controllers stopped; campaigning again"),
        }
    };
    // Stop: controllers are gone; the elector releases the lease; health stops serving.
    let _ = stop_tx.send(true);
    if let Some(elector) = elector
        && tokio::time::timeout(Duration::from_secs(15), elector)
            .await
            .is_err()
    {
        tracing::warn!("leader election did not stop within 15 s");
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), background.join_all()).await;
    drop(leading_tx);
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controllers_parse_from_star_or_a_list() {
        assert_eq!(
            parse_controllers("*").ok(),
            Some(CONTROLLERS.map(String::from).to_vec())
        );
        assert_eq!(
            parse_controllers("modeladapter, podautoscaler,modeladapter").ok(),
            Some(vec![
                "modeladapter".to_string(),
                "podautoscaler".to_string()
            ])
        );
        let e = parse_controllers("podautoscaler,hpa")
            .err()
            .map(|e| e.to_string());
        assert!(e.is_some_and(|e| e.contains("'hpa'") && e.contains("rayclusterfleet")));
        assert!(parse_controllers("").is_err());
    }
}
