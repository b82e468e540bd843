//! The reconciler against the mocked API: the exact calls for a fleet created from zero, a
//! steady state (one list, no write), a rolling step, a failed delete or create, an invalid spec.

use std::sync::{Arc, Mutex};

use brix_k8s::Error;
use brix_k8s::fleet::plan::template_hash;
use brix_k8s::fleet::{Clock, Config, Context, RayClusterFleet, reconcile};
use kube::runtime::controller::Action;
use serde_json::{Value, json};

use super::plan::now;
use crate::support::{Call, eq, list, mock};

const CLUSTERS: &str = "/apis/ray.io/v1/namespaces/default/rayclusters";
const STATUS: &str = "/apis/orchestration.aibrix.ai/v1alpha1/namespaces/default/rayclusterfleets/facebook-opt-13b/status";
const SELECTOR: &str = "labelSelector=model.aibrix.ai/name=facebook-opt-13b";
const FLEET_UID: &str = "0b0e6d42-1c55-4e3a-a0f7-5d8e2b6f9a01";

fn fleet_json(replicas: i32, strategy: Value) -> Value {
    let mut v = crate::sample("rayclusterfleet-vllm.yaml");
    v["spec"]["replicas"] = json!(replicas);
    v["spec"]["strategy"] = strategy;
    v["spec"]["minReadySeconds"] = json!(0);
    v["metadata"]["uid"] = json!(FLEET_UID);
    v["metadata"]["generation"] = json!(3);
    v
}

fn fleet(v: &Value) -> Arc<RayClusterFleet> {
    Arc::new(serde_json::from_value(v.clone()).unwrap())
}

fn ctx(client: kube::Client) -> Arc<Context> {
    Arc::new(Context {
        client,
        config: Config::default(),
        clock: Clock::new(now),
    })
}

fn hash_of(v: &Value) -> String {
    template_hash(&fleet(v).spec.template)
}

/// A RayCluster the fleet owns (or, with another `owner`, one it must leave alone).
fn raycluster(name: &str, hash: &str, ready: bool, age_s: i64, owner: &str) -> Value {
    let created = jiff::Timestamp::from_second(now().as_second() - age_s).unwrap();
    let mut status = json!({"state": if ready { "ready" } else { "" }});
    if ready {
        status["stateTransitionTimes"] = json!({"ready": created.to_string()});
    }
    json!({
        "apiVersion": "ray.io/v1", "kind": "RayCluster",
        "metadata": {
            "name": name, "namespace": "default", "uid": format!("uid-{name}"),
            "creationTimestamp": created.to_string(),
            "labels": {"model.aibrix.ai/name": "facebook-opt-13b",
                       "orchestration.aibrix.ai/fleet-name": "facebook-opt-13b",
                       "orchestration.aibrix.ai/template-hash": hash},
            "ownerReferences": [{"apiVersion": "orchestration.aibrix.ai/v1alpha1",
                "kind": "RayClusterFleet", "name": "facebook-opt-13b", "uid": owner,
                "controller": true, "blockOwnerDeletion": true}]
        },
        "spec": {"headGroupSpec": {"rayStartParams": {}, "template": {}}},
        "status": status,
    })
}

/// The POST the fleet must make for one new RayCluster.
fn expected_post(v: &Value) -> Value {
    let hash = hash_of(v);
    json!({
        "apiVersion": "ray.io/v1", "kind": "RayCluster",
        "metadata": {
            "generateName": format!("facebook-opt-13b-{hash}-"),
            "namespace": "default",
            "labels": {"model.aibrix.ai/name": "facebook-opt-13b",
                       "orchestration.aibrix.ai/fleet-name": "facebook-opt-13b",
                       "orchestration.aibrix.ai/template-hash": hash},
            "annotations": {"ray.io/overwrite-container-cmd": "true"},
            "ownerReferences": [{"apiVersion": "orchestration.aibrix.ai/v1alpha1",
                "kind": "RayClusterFleet", "name": "facebook-opt-13b", "uid": FLEET_UID,
                "controller": true, "blockOwnerDeletion": true}]
        },
        "spec": v["spec"]["template"]["spec"],
    })
}

/// What the API server answers to a POST: the object with a name and uid.
fn created(v: &Value, name: &str) -> Value {
    let mut c = expected_post(v);
    c["metadata"]["name"] = json!(name);
    c["metadata"]["uid"] = json!(format!("uid-{name}"));
    c["metadata"]["creationTimestamp"] = json!(now().to_string());
    c
}

/// A status-patch check that also keeps the patched status for the next step.
fn capture(into: &Arc<Mutex<Option<Value>>>) -> impl Fn(&Value) -> Result<(), String> + use<> {
    let into = into.clone();
    move |body: &Value| {
        *into.lock().unwrap() = Some(body["status"].clone());
        Ok(())
    }
}

#[tokio::test]
async fn a_new_fleet_creates_its_clusters_and_reports() {
    let v = fleet_json(2, json!(null));
    let post = expected_post(&v);
    let post2 = post.clone();
    let stamp = now().to_string();
    let want_status = json!({
        "observedGeneration": 3, "replicas": 2, "updatedReplicas": 2, "readyReplicas": 0,
        "availableReplicas": 0, "unavailableReplicas": 2,
        "scalingTargetSelector": "model.aibrix.ai/name=facebook-opt-13b",
        "conditions": [
            {"type": "Available", "status": "False", "reason": "MinimumReplicasUnavailable",
             "message": "RayClusterFleet does not have minimum availability.",
             "lastUpdateTime": stamp, "lastTransitionTime": stamp},
            {"type": "Progressing", "status": "True", "reason": "RayClustersUpdated",
             "message": "RayClusterFleet \"facebook-opt-13b\" is progressing.",
             "lastUpdateTime": stamp, "lastTransitionTime": stamp},
        ],
    });
    let (client, api) = mock(
        brix_k8s::fleet::RULES,
        vec![
            Call::get(CLUSTERS)
                .query(SELECTOR)
                .ok(list("RayClusterList", vec![])),
            Call::post(CLUSTERS)
                .expect_body(move |b| eq(b, &post))
                .ok(created(&v, "c1")),
            Call::post(CLUSTERS)
                .expect_body(move |b| eq(b, &post2))
                .ok(created(&v, "c2")),
            Call::patch(STATUS)
                .expect_body(move |b| eq(b, &json!({"status": want_status})))
                .ok(v.clone()),
        ],
    );
    let action = reconcile(fleet(&v), ctx(client)).await.unwrap();
    api.done().await;
    // The resync (300 s) comes before the progress deadline (601 s).
    assert_eq!(action, Action::requeue(std::time::Duration::from_secs(300)));
}

#[tokio::test]
async fn a_steady_state_only_lists() {
    let mut v = fleet_json(2, json!(null));
    let h = hash_of(&v);
    let owned = vec![
        raycluster("c1", &h, true, 100, FLEET_UID),
        raycluster("c2", &h, true, 200, FLEET_UID),
        // Matches the selector, but another controller owns it: not counted, not touched.
        raycluster("stranger", &h, false, 5, "someone-else"),
    ];
    let patched = Arc::new(Mutex::new(None));
    let (client, api) = mock(
        brix_k8s::fleet::RULES,
        vec![
            Call::get(CLUSTERS)
                .query(SELECTOR)
                .ok(list("RayClusterList", owned.clone())),
            Call::patch(STATUS)
                .expect_body(capture(&patched))
                .ok(v.clone()),
        ],
    );
    reconcile(fleet(&v), ctx(client.clone())).await.unwrap();
    api.done().await;
    let status = patched.lock().unwrap().clone().unwrap();
    assert_eq!(
        [
            &status["replicas"],
            &status["readyReplicas"],
            &status["availableReplicas"]
        ],
        [&json!(2), &json!(2), &json!(2)]
    );
    // The same world again, with the status the first step wrote: one list, nothing else.
    v["status"] = status;
    let (client, api) = mock(
        brix_k8s::fleet::RULES,
        vec![
            Call::get(CLUSTERS)
                .query(SELECTOR)
                .ok(list("RayClusterList", owned)),
        ],
    );
    reconcile(fleet(&v), ctx(client)).await.unwrap();
    api.done().await;
}

#[tokio::test]
async fn a_rolling_step_deletes_the_newest_old_cluster_and_surges_one() {
    let v = fleet_json(
        2,
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 1}}),
    );
    let post = expected_post(&v);
    let old = vec![
        raycluster("old-a", "oldhash", true, 500, FLEET_UID),
        raycluster("old-b", "oldhash", true, 100, FLEET_UID),
    ];
    let patched = Arc::new(Mutex::new(None));
    let (client, api) = mock(
        brix_k8s::fleet::RULES,
        vec![
            Call::get(CLUSTERS)
                .query(SELECTOR)
                .ok(list("RayClusterList", old)),
            Call::delete(&format!("{CLUSTERS}/old-b"))
                .expect_body(|b| eq(&b["preconditions"]["uid"], &json!("uid-old-b")))
                .ok(json!({"kind": "Status", "apiVersion": "v1", "status": "Success"})),
            Call::post(CLUSTERS)
                .expect_body(move |b| eq(b, &post))
                .ok(created(&v, "new-a")),
            Call::patch(STATUS)
                .expect_body(capture(&patched))
                .ok(v.clone()),
        ],
    );
    reconcile(fleet(&v), ctx(client)).await.unwrap();
    api.done().await;
    let s = patched.lock().unwrap().clone().unwrap();
    let counts: Vec<&Value> = [
        "replicas",
        "updatedReplicas",
        "readyReplicas",
        "availableReplicas",
        "unavailableReplicas",
    ]
    .iter()
    .map(|k| &s[*k])
    .collect();
    assert_eq!(
        counts,
        [&json!(2), &json!(1), &json!(1), &json!(1), &json!(1)]
    );
}

#[tokio::test]
async fn a_delete_answered_404_is_done_and_409_is_retried() {
    let v = fleet_json(1, json!(null));
    let h = hash_of(&v);
    let clusters = vec![
        raycluster("keep", &h, true, 300, FLEET_UID),
        raycluster("gone", &h, true, 100, FLEET_UID),
        raycluster("replaced", &h, true, 200, FLEET_UID),
    ];
    let patched = Arc::new(Mutex::new(None));
    let (client, api) = mock(
        brix_k8s::fleet::RULES,
        vec![
            Call::get(CLUSTERS)
                .query(SELECTOR)
                .ok(list("RayClusterList", clusters)),
            Call::delete(&format!("{CLUSTERS}/gone")).fail(404, "NotFound", "not found"),
            Call::delete(&format!("{CLUSTERS}/replaced")).fail(
                409,
                "Conflict",
                "uid precondition failed",
            ),
            Call::patch(STATUS)
                .expect_body(capture(&patched))
                .ok(v.clone()),
        ],
    );
    let action = reconcile(fleet(&v), ctx(client)).await.unwrap();
    api.done().await;
    assert_eq!(action, Action::requeue(Config::default().retry));
    // Status counts what is there: the kept one and the one that could not be deleted.
    assert_eq!(
        patched.lock().unwrap().as_ref().unwrap()["replicas"],
        json!(2)
    );
}

#[tokio::test]
async fn a_failed_create_reports_only_what_was_made_then_errors() {
    let v = fleet_json(2, json!(null));
    let patched = Arc::new(Mutex::new(None));
    let (client, api) = mock(
        brix_k8s::fleet::RULES,
        vec![
            Call::get(CLUSTERS)
                .query(SELECTOR)
                .ok(list("RayClusterList", vec![])),
            Call::post(CLUSTERS).ok(created(&v, "c1")),
            Call::post(CLUSTERS).fail(500, "InternalError", "etcd is sad"),
            Call::patch(STATUS)
                .expect_body(capture(&patched))
                .ok(v.clone()),
        ],
    );
    let err = reconcile(fleet(&v), ctx(client)).await.unwrap_err();
    api.done().await;
    assert!(matches!(err, Error::Kube(_)), "{err}");
    let s = patched.lock().unwrap().clone().unwrap();
    assert_eq!(
        (&s["replicas"], &s["updatedReplicas"]),
        (&json!(1), &json!(1))
    );
}

#[tokio::test]
async fn an_invalid_spec_makes_no_call() {
    let mut v = fleet_json(2, json!(null));
    v["spec"]["selector"] = json!({"matchLabels": {"model.aibrix.ai/name": "another-model"}});
    let (client, api) = mock(brix_k8s::fleet::RULES, vec![]);
    let err = reconcile(fleet(&v), ctx(client)).await.unwrap_err();
    api.done().await;
    assert!(
        matches!(err, Error::Spec(ref m) if m.contains("spec.selector")),
        "{err}"
    );
}
