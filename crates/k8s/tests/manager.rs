//! The controller manager over the mocked API: controllers start only once the lease is won,
//! `/readyz` says whether this replica leads, shutdown stops the controllers and releases the
//! lease, a failing controller ends the manager with its name.
#![allow(clippy::unwrap_used, clippy::panic)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use brix_k8s::lease::LeaseConfig;
use brix_k8s::manager::{ManagerConfig, Starter, run_with};
use brix_k8s::{Error, Scope};
use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};
use support::{Call, eq, mock};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/brix/leases";
const LEASE: &str = "/apis/coordination.k8s.io/v1/namespaces/brix/leases/brix-controller-manager";

fn lease(holder: &str, rv: &str) -> Value {
    let now = Timestamp::now().to_string();
    json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "brix-controller-manager", "namespace": "brix", "resourceVersion": rv},
        "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15, "acquireTime": now,
                 "renewTime": now, "leaseTransitions": 0}
    })
}

fn config(elect: bool) -> ManagerConfig {
    let mut lease = LeaseConfig::new("brix-controller-manager", "brix", "me");
    // No renewal falls inside a test.
    lease.retry_period = Duration::from_secs(60);
    ManagerConfig {
        scope: Scope {
            namespace: Some("brix".into()),
        },
        controllers: vec!["podautoscaler".into(), "modeladapter".into()],
        leader_election: elect.then_some(lease),
        health_listen: None,
    }
}

/// Controllers that report their start on `tx` and run until dropped.
fn recording(tx: mpsc::UnboundedSender<String>) -> Starter {
    Arc::new(move |name, _client, _scope| {
        let _ = tx.send(name.to_string());
        Box::pin(std::future::pending())
    })
}

async fn get(url: &str) -> u16 {
    reqwest::get(url).await.unwrap().status().as_u16()
}

struct Running {
    base: String,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), Error>>,
}

async fn start(client: kube::Client, cfg: ManagerConfig, starter: Starter) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(run_with(client, cfg, starter, Some(listener), async {
        let _ = stopped.await;
    }));
    Running { base, stop, task }
}

async fn started(rx: &mut mpsc::UnboundedReceiver<String>) -> String {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .unwrap()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_runs_the_controllers_is_ready_and_releases_on_shutdown() {
    let (client, api) = mock(
        brix_k8s::lease::RULES,
        vec![
            Call::get(LEASE).fail(404, "NotFound", "not found"),
            Call::post(LEASES).ok(lease("me", "1")),
            Call::put(LEASE)
                .expect_body(|b| eq(&b["spec"]["holderIdentity"], &Value::Null))
                .ok(lease("", "2")),
        ],
    );
    let (tx, mut rx) = mpsc::unbounded_channel();
    let m = start(client, config(true), recording(tx)).await;
    let mut names = vec![started(&mut rx).await, started(&mut rx).await];
    names.sort();
    assert_eq!(names, ["modeladapter", "podautoscaler"]);
    assert_eq!(get(&format!("{}/readyz", m.base)).await, 200);
    assert_eq!(get(&format!("{}/healthz", m.base)).await, 200);
    m.stop.send(()).unwrap();
    m.task.await.unwrap().unwrap();
    api.done().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_runs_nothing_and_is_not_ready() {
    let (client, api) = mock(
        brix_k8s::lease::RULES,
        vec![Call::get(LEASE).ok(lease("other", "5"))],
    );
    let (tx, mut rx) = mpsc::unbounded_channel();
    let m = start(client, config(true), recording(tx)).await;
    api.done().await;
    assert_eq!(get(&format!("{}/healthz", m.base)).await, 200);
    assert_eq!(get(&format!("{}/readyz", m.base)).await, 503);
    m.stop.send(()).unwrap();
    m.task.await.unwrap().unwrap();
    assert!(rx.try_recv().is_err(), "a standby started a controller");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_controller_ends_the_manager_naming_it() {
    let (client, api) = mock(brix_k8s::lease::RULES, vec![]);
    let starter: Starter = Arc::new(|name, _client, _scope| {
        let name = name.to_string();
        Box::pin(async move {
            if name == "modeladapter" {
                Err(Error::Other("watch refused".into()))
            } else {
                std::future::pending().await
            }
        })
    });
    let m = start(client, config(false), starter).await;
    let e = tokio::time::timeout(Duration::from_secs(10), m.task)
        .await
        .unwrap()
        .unwrap();
    let e = e.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        e.contains("modeladapter") && e.contains("watch refused"),
        "{e}"
    );
    api.done().await;
}

/// Sends its name on `tx` when dropped.
struct DropSignal(String, mpsc::UnboundedSender<String>);

impl Drop for DropSignal {
    fn drop(&mut self) {
        let _ = self.1.send(self.0.clone());
    }
}

#[tokio::test(start_paused = true)]
async fn losing_the_lease_stops_the_controllers() {
    let (client, api) = mock(
        brix_k8s::lease::RULES,
        vec![
            Call::get(LEASE).fail(404, "NotFound", "not found"),
            Call::post(LEASES).ok(lease("me", "1")),
            // The renewal 2 s later: another replica wrote the lease meanwhile.
            Call::get(LEASE).ok(lease("me", "1")),
            Call::put(LEASE).fail(409, "Conflict", "the object has been modified"),
        ],
    );
    let mut cfg = config(true);
    if let Some(l) = cfg.leader_election.as_mut() {
        l.retry_period = Duration::from_secs(2);
    }
    let (started_tx, mut started_rx) = mpsc::unbounded_channel();
    let (dropped_tx, mut dropped_rx) = mpsc::unbounded_channel();
    let starter: Starter = Arc::new(move |name, _client, _scope| {
        let _ = started_tx.send(name.to_string());
        let guard = DropSignal(name.to_string(), dropped_tx.clone());
        Box::pin(async move {
            let _guard = guard;
            std::future::pending().await
        })
    });
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(run_with(client, cfg, starter, None, async {
        let _ = stopped.await;
    }));
    started(&mut started_rx).await;
    started(&mut started_rx).await;
    let mut gone = vec![
        started(&mut dropped_rx).await,
        started(&mut dropped_rx).await,
    ];
    gone.sort();
    assert_eq!(gone, ["modeladapter", "podautoscaler"]);
    // A standby now: shutting down releases nothing.
    stop.send(()).unwrap();
    task.await.unwrap().unwrap();
    api.done().await;
    assert!(
        started_rx.try_recv().is_err(),
        "controllers restarted without the lease"
    );
}
