//! Leader election against the mocked API: the exact calls to acquire an absent lease, take
//! over an expired one, lose a race (409), renew a held one, step down on loss, release on
//! shutdown.
#![allow(clippy::unwrap_used, clippy::panic)]

mod support;

use brix_k8s::lease::{LeaderElector, LeaseConfig};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};
use support::{Call, eq, mock};
use tokio::sync::{oneshot, watch};

const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/brix/leases";
const LEASE: &str = "/apis/coordination.k8s.io/v1/namespaces/brix/leases/brix-controller-manager";

fn cfg() -> LeaseConfig {
    LeaseConfig::new("brix-controller-manager", "brix", "me")
}

/// A Lease held by `holder`, renewed `age_s` seconds ago.
fn lease(holder: &str, rv: &str, age_s: i64, transitions: i32) -> Value {
    let renewed = Timestamp::now() - SignedDuration::from_secs(age_s);
    json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "brix-controller-manager", "namespace": "brix", "resourceVersion": rv},
        "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15,
                 "acquireTime": renewed.to_string(), "renewTime": renewed.to_string(),
                 "leaseTransitions": transitions}
    })
}

fn not_found() -> Call {
    Call::get(LEASE).fail(
        404,
        "NotFound",
        "leases.coordination.k8s.io \"brix-controller-manager\" not found",
    )
}

/// The body written holds the lease for "me", with `rv` and `transitions`.
fn held_by_me(rv: Option<&'static str>, transitions: i64) -> impl Fn(&Value) -> Result<(), String> {
    move |b| {
        eq(&b["spec"]["holderIdentity"], &json!("me"))?;
        eq(&b["spec"]["leaseDurationSeconds"], &json!(15))?;
        eq(&b["spec"]["leaseTransitions"], &json!(transitions))?;
        eq(
            &b["metadata"]["resourceVersion"],
            &rv.map_or(Value::Null, |v| json!(v)),
        )?;
        if b["spec"]["renewTime"].as_str().is_none() {
            return Err(format!("no renewTime in {b}"));
        }
        Ok(())
    }
}

#[tokio::test]
async fn an_absent_lease_is_created() {
    let (client, api) = mock(
        brix_k8s::lease::RULES,
        vec![
            not_found(),
            Call::post(LEASES)
                .expect_body(held_by_me(None, 0))
                .ok(lease("me", "1", 0, 0)),
        ],
    );
    assert!(
        LeaderElector::new(client, cfg())
            .try_acquire_or_renew()
            .await
            .unwrap()
    );
    api.done().await;
}

#[tokio::test]
async fn an_expired_lease_is_taken_over_with_its_resource_version() {
    let (client, api) = mock(
        brix_k8s::lease::RULES,
        vec![
            Call::get(LEASE).ok(lease("other", "5", 60, 2)),
            Call::put(LEASE)
                .expect_body(held_by_me(Some("5"), 3))
                .ok(lease("me", "6", 0, 3)),
        ],
    );
    assert!(
        LeaderElector::new(client, cfg())
            .try_acquire_or_renew()
            .await
            .unwrap()
    );
    api.done().await;
}

#[tokio::test]
async fn a_live_lease_of_another_is_left_alone() {
    let (client, api) = mock(
        brix_k8s::lease::RULES,
        vec![Call::get(LEASE).ok(lease("other", "5", 3, 2))],
    );
    assert!(
        !LeaderElector::new(client, cfg())
            .try_acquire_or_renew()
            .await
            .unwrap()
    );
    api.done().await;
}

#[tokio::test]
async fn a_race_lost_with_409_is_not_leading() {
    let (client, api) = mock(
        brix_k8s::lease::RULES,
        vec![
            Call::get(LEASE).ok(lease("other", "5", 60, 2)),
            Call::put(LEASE).fail(409, "Conflict", "the object has been modified"),
            not_found(),
            Call::post(LEASES).fail(
                409,
                "AlreadyExists",
                "leases \"brix-controller-manager\" already exists",
            ),
        ],
    );
    let mut e = LeaderElector::new(client, cfg());
    assert!(!e.try_acquire_or_renew().await.unwrap());
    assert!(!e.try_acquire_or_renew().await.unwrap());
    api.done().await;
}

#[tokio::test]
async fn renewing_a_held_lease_keeps_it_without_a_transition() {
    let (client, api) = mock(
        brix_k8s::lease::RULES,
        vec![
            Call::get(LEASE).ok(lease("me", "7", 2, 4)),
            Call::put(LEASE)
                .expect_body(|b| {
                    held_by_me(Some("7"), 4)(b)?;
                    // The acquire time stays the one of the term.
                    if b["spec"]["acquireTime"] == b["spec"]["renewTime"] {
                        return Err(format!("acquireTime moved: {b}"));
                    }
                    Ok(())
                })
                .ok(lease("me", "8", 0, 4)),
        ],
    );
    assert!(
        LeaderElector::new(client, cfg())
            .try_acquire_or_renew()
            .await
            .unwrap()
    );
    api.done().await;
}

#[tokio::test]
async fn an_api_error_is_an_error_not_a_loss() {
    let (client, api) = mock(
        brix_k8s::lease::RULES,
        vec![Call::get(LEASE).fail(500, "InternalError", "etcd timeout")],
    );
    assert!(
        LeaderElector::new(client, cfg())
            .try_acquire_or_renew()
            .await
            .is_err()
    );
    api.done().await;
}

async fn until(rx: &mut watch::Receiver<bool>, want: bool) {
    tokio::time::timeout(
        std::time::Duration::from_secs(60),
        rx.wait_for(|v| *v == want),
    )
    .await
    .unwrap_or_else(|_| panic!("leading never became {want}"))
    .unwrap();
}

#[tokio::test(start_paused = true)]
async fn the_leader_steps_down_when_a_renewal_loses() {
    let (client, api) = mock(
        brix_k8s::lease::RULES,
        vec![
            not_found(),
            Call::post(LEASES).ok(lease("me", "1", 0, 0)),
            Call::get(LEASE).ok(lease("me", "1", 2, 0)),
            Call::put(LEASE).fail(409, "Conflict", "the object has been modified"),
        ],
    );
    let (tx, mut rx) = watch::channel(false);
    let (stop, stopped) = oneshot::channel::<()>();
    let run = tokio::spawn(LeaderElector::new(client, cfg()).run(tx, async {
        let _ = stopped.await;
    }));
    until(&mut rx, true).await;
    until(&mut rx, false).await;
    // Not leading: shutting down releases nothing (no more calls).
    stop.send(()).unwrap();
    run.await.unwrap();
    api.done().await;
}

#[tokio::test(start_paused = true)]
async fn the_leader_releases_the_lease_on_shutdown() {
    let (client, api) = mock(
        brix_k8s::lease::RULES,
        vec![
            not_found(),
            Call::post(LEASES).ok(lease("me", "1", 0, 0)),
            Call::put(LEASE)
                .expect_body(|b| {
                    eq(&b["metadata"]["resourceVersion"], &json!("1"))?;
                    eq(&b["spec"]["holderIdentity"], &Value::Null)?;
                    eq(&b["spec"]["leaseDurationSeconds"], &json!(1))
                })
                .ok(lease("", "2", 0, 0)),
        ],
    );
    let (tx, mut rx) = watch::channel(false);
    let (stop, stopped) = oneshot::channel::<()>();
    let run = tokio::spawn(LeaderElector::new(client, cfg()).run(tx, async {
        let _ = stopped.await;
    }));
    until(&mut rx, true).await;
    stop.send(()).unwrap();
    run.await.unwrap();
    assert!(!*rx.borrow());
    api.done().await;
}

#[tokio::test(start_paused = true)]
async fn the_leader_steps_down_when_renewals_fail_past_the_deadline() {
    // Renewed at t=0; attempts every 2 s fail; at t=10 s (the renew deadline) it steps down,
    // before the 15 s lease could pass to another replica.
    let mut script = vec![not_found(), Call::post(LEASES).ok(lease("me", "1", 0, 0))];
    for _ in 0..5 {
        script.push(Call::get(LEASE).fail(500, "InternalError", "etcd timeout"));
    }
    let (client, api) = mock(brix_k8s::lease::RULES, script);
    let (tx, mut rx) = watch::channel(false);
    let (stop, stopped) = oneshot::channel::<()>();
    let t0 = tokio::time::Instant::now();
    let run = tokio::spawn(LeaderElector::new(client, cfg()).run(tx, async {
        let _ = stopped.await;
    }));
    until(&mut rx, true).await;
    until(&mut rx, false).await;
    let after = t0.elapsed();
    assert!(
        after >= std::time::Duration::from_secs(10) && after < std::time::Duration::from_secs(15),
        "stepped down after {after:?}"
    );
    stop.send(()).unwrap();
    run.await.unwrap();
    api.done().await;
}
