//! The ModelAdapter controller against the mocked API (exact calls) and real engines: `brix
//! sim` with LoRA on 127.0.0.1:0 (the pods' `podIP` is 127.0.0.1, the port label its port),
//! and for the refusing engine a small axum server that answers the LoRA API with errors.
#![expect(
    clippy::unwrap_used,
    reason = "tests: a failed unwrap is a failed test"
)]

#[path = "modeladapter/failures.rs"]
mod failures;
#[path = "modeladapter/fixtures.rs"]
mod fixtures;
#[allow(clippy::collapsible_if)] // the shared harness is the lead's
mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use brix_k8s::modeladapter::{FINALIZER, reconcile};
use brix_platform::adapters::engine::EngineClient;
use brix_testkit::start_sim_at;
use fixtures::*;
use k8s_openapi::jiff::SignedDuration;
use kube::runtime::controller::Action;
use serde_json::{Value, json};
use support::{Call, list, mock};

#[tokio::test]
async fn loads_onto_the_selected_pods_and_reports_what_they_list() {
    let (a, b) = (engine().await, engine().await);
    let pods = vec![pod("p0", a.addr.port(), T0), pod("p1", b.addr.port(), T0)];
    let (client, api) = mock(
        brix_k8s::modeladapter::RULES,
        vec![
            Call::get(PODS)
                .query(SELECTOR)
                .ok(list("PodList", pods.clone())),
            Call::patch(STATUS)
                .expect_body(check_status(|s| {
                    let ok = s["instances"] == json!(["p0", "p1"])
                        && s["candidates"] == json!(["p0", "p1"])
                        && s["readyReplicas"] == 2
                        && s["desiredReplicas"] == 2
                        && s["phase"] == "Running"
                        && condition(s, "Ready")["status"] == "True"
                        && condition(s, "Ready")["lastTransitionTime"] == "2026-06-01T12:01:00Z"
                        && condition(s, "Scheduled")["status"] == "True";
                    if ok {
                        Ok(())
                    } else {
                        Err("not loaded on p0 and p1".into())
                    }
                }))
                .ok(echo()),
        ],
    );
    let (ctx, _) = context(client);
    let obj = adapter("huggingface://org/sql-lora", json!({}), Value::Null);
    let action = reconcile(Arc::new(obj), ctx.clone()).await.unwrap();
    api.done().await;
    assert_eq!(action, Action::requeue(Duration::from_secs(60)));
    assert_eq!(loaded(a.addr).await, vec!["sql"]);
    assert_eq!(loaded(b.addr).await, vec!["sql"]);
}

#[tokio::test]
async fn an_unchanged_world_patches_nothing_and_a_lost_adapter_is_loaded_again() {
    let a = engine().await;
    let pods = vec![pod("p0", a.addr.port(), T0)];
    let got = Arc::new(Mutex::new(None));
    let (client, api) = mock(
        brix_k8s::modeladapter::RULES,
        vec![
            Call::get(PODS)
                .query(SELECTOR)
                .ok(list("PodList", pods.clone())),
            capture(&got),
            // Resync: the same pods, the engine still lists it: no PATCH.
            Call::get(PODS)
                .query(SELECTOR)
                .ok(list("PodList", pods.clone())),
            // The engine restarted and lost it: loaded again, the status is unchanged.
            Call::get(PODS)
                .query(SELECTOR)
                .ok(list("PodList", pods.clone())),
        ],
    );
    let (ctx, now) = context(client);
    let obj = adapter("huggingface://org/sql-lora", json!({}), Value::Null);
    reconcile(Arc::new(obj.clone()), ctx.clone()).await.unwrap();
    brix_testkit::eventually("the first status", Duration::from_secs(5), || async {
        got.lock().unwrap().is_some()
    })
    .await;
    let obj = written(&obj, &got);
    assert_eq!(obj.status.as_ref().unwrap().instances, vec!["p0"]);
    *now.lock().unwrap() += SignedDuration::from_secs(60);
    let action = reconcile(Arc::new(obj.clone()), ctx.clone()).await.unwrap();
    assert_eq!(action, Action::requeue(Duration::from_secs(60)));

    let addr = a.addr;
    a.kill();
    let _ = a.task.await;
    let restarted = {
        let mut cfg = brix_testkit::sim_config("llama");
        cfg.engine.enable_lora = true;
        cfg.engine.max_loras = 4;
        cfg.engine.max_cpu_loras = 4;
        start_sim_at(&cfg, addr).await
    };
    assert!(loaded(restarted.addr).await.is_empty());
    *now.lock().unwrap() += SignedDuration::from_secs(60);
    reconcile(Arc::new(obj), ctx).await.unwrap();
    api.done().await;
    assert_eq!(loaded(restarted.addr).await, vec!["sql"]);
}

#[tokio::test]
async fn the_finalizer_is_added_then_unloads_on_delete() {
    let a = engine().await;
    let mut obj = adapter("huggingface://org/sql-lora", json!({}), Value::Null);
    obj.metadata.finalizers = None;
    let (client, api) = mock(
        brix_k8s::modeladapter::RULES,
        vec![
            Call::patch(MA)
                .expect_body(|b| {
                    support::eq(
                        b,
                        &json!([{"op": "test", "path": "/metadata/finalizers", "value": null},
                        {"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]}]),
                    )
                })
                .ok(echo()),
        ],
    );
    let (ctx, _) = context(client);
    let action = reconcile(Arc::new(obj), ctx).await.unwrap();
    api.done().await;
    assert_eq!(action, Action::await_change());

    // Deleted while loaded on p0; p-gone no longer exists.
    EngineClient::new()
        .load(&a.addr.to_string(), "sql", "org/sql-lora", None)
        .await
        .unwrap();
    let mut obj = adapter(
        "huggingface://org/sql-lora",
        json!({}),
        json!({"instances": ["p-gone", "p0"], "readyReplicas": 2, "desiredReplicas": 2}),
    );
    obj.metadata.deletion_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(t0()));
    let (client, api) = mock(
        brix_k8s::modeladapter::RULES,
        vec![
            Call::get(&format!("{PODS}/p-gone")).fail(404, "NotFound", "pods \"p-gone\" not found"),
            Call::get(&format!("{PODS}/p0")).ok(pod("p0", a.addr.port(), T0)),
            Call::patch(MA)
                .expect_body(|b| {
                    support::eq(
                        b,
                        &json!([{"op": "test", "path": "/metadata/finalizers/0", "value": FINALIZER},
                            {"op": "remove", "path": "/metadata/finalizers/0"}]),
                    )
                })
                .ok(echo()),
        ],
    );
    let (ctx, _) = context(client);
    reconcile(Arc::new(obj), ctx).await.unwrap();
    api.done().await;
    assert!(loaded(a.addr).await.is_empty());
}

#[tokio::test]
async fn a_pod_not_ready_long_enough_is_not_a_candidate() {
    let (a, b) = (engine().await, engine().await);
    // At t0+60 s: p0 Ready for 58 s, p1 for 2 s.
    let pods = vec![
        pod("p0", a.addr.port(), "2026-06-01T12:00:02Z"),
        pod("p1", b.addr.port(), "2026-06-01T12:00:58Z"),
    ];
    let got = Arc::new(Mutex::new(None));
    let (client, api) = mock(
        brix_k8s::modeladapter::RULES,
        vec![
            Call::get(PODS)
                .query(SELECTOR)
                .ok(list("PodList", pods.clone())),
            capture(&got),
            Call::get(PODS)
                .query(SELECTOR)
                .ok(list("PodList", pods.clone())),
            Call::patch(STATUS)
                .expect_body(check_status(|s| {
                    support::eq(&s["instances"], &json!(["p0", "p1"]))
                }))
                .ok(echo()),
        ],
    );
    let (ctx, now) = context(client);
    let obj = adapter("huggingface://org/sql-lora", json!({}), Value::Null);
    reconcile(Arc::new(obj.clone()), ctx.clone()).await.unwrap();
    brix_testkit::eventually("the first status", Duration::from_secs(5), || async {
        got.lock().unwrap().is_some()
    })
    .await;
    let obj = written(&obj, &got);
    let st = obj.status.clone().unwrap();
    assert_eq!(
        (st.candidates, st.instances),
        (vec!["p0".to_string()], vec!["p0".to_string()])
    );
    assert!(loaded(b.addr).await.is_empty());
    // Three seconds later p1 has been Ready for 5 s.
    *now.lock().unwrap() += SignedDuration::from_secs(3);
    reconcile(Arc::new(obj), ctx).await.unwrap();
    api.done().await;
    assert_eq!(loaded(b.addr).await, vec!["sql"]);
}

#[tokio::test]
async fn fewer_replicas_drain_first_then_unload() {
    let (a, b) = (engine().await, engine().await);
    for e in [&a, &b] {
        EngineClient::new()
            .load(&e.addr.to_string(), "sql", "org/sql-lora", None)
            .await
            .unwrap();
    }
    let pods = vec![pod("p0", a.addr.port(), T0), pod("p1", b.addr.port(), T0)];
    let got = Arc::new(Mutex::new(None));
    let (client, api) = mock(
        brix_k8s::modeladapter::RULES,
        vec![
            // replicas: 1 while both hold it: one leaves `instances` (the gateway stops
            // routing there), still loaded.
            Call::get(PODS)
                .query(SELECTOR)
                .ok(list("PodList", pods.clone())),
            capture(&got),
            // Next round: that copy is unloaded; the status is unchanged.
            Call::get(PODS)
                .query(SELECTOR)
                .ok(list("PodList", pods.clone())),
        ],
    );
    let (ctx, now) = context(client);
    let mut obj = adapter(
        "huggingface://org/sql-lora",
        json!({}),
        json!({"instances": ["p0", "p1"], "readyReplicas": 2, "desiredReplicas": 2}),
    );
    obj.spec.replicas = Some(1);
    let action = reconcile(Arc::new(obj.clone()), ctx.clone()).await.unwrap();
    assert_eq!(
        action,
        Action::requeue(Duration::from_secs(10)),
        "draining resyncs soon"
    );
    let obj = written(&obj, &got);
    let st = obj.status.clone().unwrap();
    assert_eq!(
        (st.instances.len(), st.ready_replicas, st.desired_replicas),
        (1, 1, 1)
    );
    let kept = st.instances[0].clone();
    let (kept_addr, drained_addr) = if kept == "p0" {
        (a.addr, b.addr)
    } else {
        (b.addr, a.addr)
    };
    assert_eq!(
        loaded(drained_addr).await,
        vec!["sql"],
        "drained, not yet unloaded"
    );
    *now.lock().unwrap() += SignedDuration::from_secs(10);
    let action = reconcile(Arc::new(obj), ctx).await.unwrap();
    api.done().await;
    assert_eq!(action, Action::requeue(Duration::from_secs(60)));
    assert!(loaded(drained_addr).await.is_empty());
    assert_eq!(loaded(kept_addr).await, vec!["sql"]);
}

#[tokio::test]
async fn a_pod_with_the_runtime_sidecar_loads_object_store_artifacts_through_it() {
    let a = engine().await;
    let (side, seen) = sidecar(a.addr).await;
    let mut p = pod("p0", a.addr.port(), T0);
    p["spec"]["containers"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "aibrix-runtime", "ports": [{"containerPort": side.port()}]}));
    let (client, api) = mock(
        brix_k8s::modeladapter::RULES,
        vec![
            Call::get(PODS).query(SELECTOR).ok(list("PodList", vec![p])),
            Call::patch(STATUS)
                .expect_body(check_status(|s| {
                    support::eq(&s["instances"], &json!(["p0"]))
                }))
                .ok(echo()),
        ],
    );
    let (ctx, _) = context(client);
    let obj = adapter(
        "s3://bucket/sql",
        json!({"api-key": "sekrit", "max-rank": "8"}),
        Value::Null,
    );
    reconcile(Arc::new(obj), ctx).await.unwrap();
    api.done().await;
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].0, "Bearer sekrit");
    assert_eq!(
        seen[0].1,
        json!({"lora_name": "sql", "artifact_url": "s3://bucket/sql",
            "additional_config": {"api-key": "sekrit", "max-rank": "8"}})
    );
    assert_eq!(loaded(a.addr).await, vec!["sql"]);
}

#[tokio::test]
async fn owned_objects_list_the_instances() {
    let (a, b) = (engine().await, engine().await);
    // p1 is not ready long enough: selected by the Service, not in the EndpointSlice.
    let pods = vec![
        pod("p0", a.addr.port(), T0),
        pod("p1", b.addr.port(), "2026-06-01T12:00:59Z"),
    ];
    let svc_path = "/api/v1/namespaces/default/services/sql";
    let slice_path = "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices/sql";
    let owner = json!([{"apiVersion": "model.aibrix.ai/v1alpha1", "kind": "ModelAdapter",
        "name": "sql", "uid": "uid-sql", "controller": true}]);
    let (o1, o2) = (owner.clone(), owner);
    let port = a.addr.port();
    let got = Arc::new(Mutex::new(None));
    let (client, api) = mock(
        brix_k8s::modeladapter::RULES,
        vec![
            Call::get(PODS)
                .query(SELECTOR)
                .ok(list("PodList", pods.clone())),
            Call::patch(svc_path)
                .query("fieldManager=brix-modeladapter")
                .query("force=true")
                .expect_body(move |b| {
                    support::eq(&b["metadata"]["ownerReferences"], &o1)?;
                    support::eq(
                        &b["spec"],
                        &json!({"clusterIP": "None", "publishNotReadyAddresses": true,
                            "selector": {"model.aibrix.ai/name": "llama"},
                            "ports": [{"name": "http", "port": port, "targetPort": port,
                                "protocol": "TCP"}]}),
                    )
                })
                .ok(json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "sql"}})),
            Call::patch(slice_path)
                .query("fieldManager=brix-modeladapter")
                .expect_body(move |b| {
                    support::eq(&b["metadata"]["ownerReferences"], &o2)?;
                    support::eq(
                        &b["metadata"]["labels"]["kubernetes.io/service-name"],
                        &json!("sql"),
                    )?;
                    support::eq(&b["addressType"], &json!("IPv4"))?;
                    support::eq(
                        &b["endpoints"],
                        &json!([{"addresses": ["127.0.0.1"], "conditions": {"ready": true},
                            "targetRef": {"kind": "Pod", "name": "p0", "namespace": "default"}}]),
                    )
                })
                .ok(
                    json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                    "metadata": {"name": "sql"}, "addressType": "IPv4", "endpoints": []}),
                ),
            capture(&got),
            // Unchanged: neither the owned objects nor the status are written again.
            Call::get(PODS)
                .query(SELECTOR)
                .ok(list("PodList", pods.clone())),
        ],
    );
    let (ctx, _) = context_with(client, Default::default());
    let obj = adapter("huggingface://org/sql-lora", json!({}), Value::Null);
    reconcile(Arc::new(obj.clone()), ctx.clone()).await.unwrap();
    let obj = written(&obj, &got);
    reconcile(Arc::new(obj), ctx).await.unwrap();
    api.done().await;
}
