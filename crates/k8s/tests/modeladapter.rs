//! The ModelAdapter controller against the mocked API (exact calls) and real engines: `brix
//! sim` with LoRA on 127.0.0.1:0 (the pods' `podIP` is 127.0.0.1, the port label its port),
//! and for the refusing engine a small axum server that answers the LoRA API with errors.
#![expect(
    clippy::unwrap_used,
    reason = "tests: a failed unwrap is a failed test"
)]

#[allow(clippy::collapsible_if)] // the shared harness is the lead's
mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use brix_api::ModelAdapterResource;
use brix_k8s::modeladapter::{Context, FINALIZER, error_policy, reconcile};
use brix_platform::adapters::engine::EngineClient;
use brix_testkit::{SimServer, start_sim, start_sim_at};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::runtime::controller::Action;
use serde_json::{Value, json};
use support::{Call, list, mock};

const PODS: &str = "/api/v1/namespaces/default/pods";
const MA: &str = "/apis/model.aibrix.ai/v1alpha1/namespaces/default/modeladapters/sql";
const STATUS: &str = "/apis/model.aibrix.ai/v1alpha1/namespaces/default/modeladapters/sql/status";
const SELECTOR: &str = "labelSelector=model.aibrix.ai/name=llama";
const T0: &str = "2026-06-01T12:00:00Z";

fn t0() -> Timestamp {
    T0.parse().unwrap()
}

/// A LoRA-enabled engine serving `llama` with room for four adapters.
async fn engine() -> SimServer {
    let mut cfg = brix_testkit::sim_config("llama");
    cfg.engine.enable_lora = true;
    cfg.engine.max_loras = 4;
    cfg.engine.max_cpu_loras = 4;
    start_sim(&cfg).await
}

/// A pod of `llama` on 127.0.0.1:`port`, Ready since `ready_since`.
fn pod(name: &str, port: u16, ready_since: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"),
            "labels": {"model.aibrix.ai/name": "llama", "model.aibrix.ai/port": port.to_string()}},
        "spec": {"containers": [{"name": "vllm", "image": "vllm/vllm-openai",
            "args": ["--model", "llama", "--enable-lora", "--max-loras", "4"]}]},
        "status": {"phase": "Running", "podIP": "127.0.0.1", "conditions": [
            {"type": "Ready", "status": "True", "lastTransitionTime": ready_since}]}})
}

/// The `sql` ModelAdapter on llama's pods, with the finalizer in place and `status`.
fn adapter(url: &str, extra: Value, status: Value) -> ModelAdapterResource {
    serde_json::from_value(json!({
        "apiVersion": "model.aibrix.ai/v1alpha1", "kind": "ModelAdapter",
        "metadata": {"name": "sql", "namespace": "default", "uid": "uid-sql", "generation": 1,
            "finalizers": [FINALIZER]},
        "spec": {"baseModel": "llama", "artifactURL": url,
            "podSelector": {"matchLabels": {"model.aibrix.ai/name": "llama"}},
            "additionalConfig": extra},
        "status": status}))
    .unwrap()
}

/// A context whose clock the test moves.
fn context(client: kube::Client) -> (Arc<Context>, Arc<Mutex<Timestamp>>) {
    let now = Arc::new(Mutex::new(t0() + SignedDuration::from_secs(60)));
    let clock = now.clone();
    let ctx = Context::with_clock(
        client,
        Default::default(),
        Arc::new(move || *clock.lock().unwrap()),
    );
    (Arc::new(ctx), now)
}

/// What the engine at `addr` lists as loaded adapters.
async fn loaded(addr: SocketAddr) -> Vec<String> {
    let l = EngineClient::new()
        .list(&addr.to_string(), None)
        .await
        .unwrap();
    l.adapters.into_iter().collect()
}

/// What the API server answers a PATCH with: the object.
fn echo() -> Value {
    serde_json::to_value(adapter(
        "huggingface://org/sql-lora",
        json!({}),
        Value::Null,
    ))
    .unwrap()
}

fn condition<'a>(status: &'a Value, kind: &str) -> &'a Value {
    status["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == kind))
        .unwrap_or(&Value::Null)
}

fn check_status(
    want: impl Fn(&Value) -> Result<(), String> + Send + 'static,
) -> impl Fn(&Value) -> Result<(), String> + Send + 'static {
    move |b| want(&b["status"]).map_err(|e| format!("{e} in {b}"))
}

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

/// A status PATCH that keeps what it was sent, to feed back as the object's status.
fn capture(into: &Arc<Mutex<Option<Value>>>) -> Call {
    let into = into.clone();
    Call::patch(STATUS)
        .expect_body(move |b| {
            *into.lock().unwrap() = Some(b["status"].clone());
            Ok(())
        })
        .ok(echo())
}

fn written(obj: &ModelAdapterResource, got: &Arc<Mutex<Option<Value>>>) -> ModelAdapterResource {
    let mut obj = obj.clone();
    let st = got.lock().unwrap().take().expect("a status was written");
    obj.status = Some(serde_json::from_value(st).unwrap());
    obj
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

/// An engine that lists its base model but answers every load with `code` and a message;
/// counts the loads and keeps the last `Authorization` header.
async fn refusing_engine(code: u16) -> (SocketAddr, Arc<AtomicU32>, Arc<Mutex<String>>) {
    use axum::routing::{get, post};
    let loads = Arc::new(AtomicU32::new(0));
    let auth = Arc::new(Mutex::new(String::new()));
    let (l, a) = (loads.clone(), auth.clone());
    let app = axum::Router::new()
        .route(
            "/v1/models",
            get(|| async {
                axum::Json(json!({"object": "list",
                    "data": [{"id": "llama", "object": "model", "root": "llama", "parent": null}]}))
            }),
        )
        .route(
            "/v1/load_lora_adapter",
            post(move |headers: axum::http::HeaderMap| {
                let (l, a) = (l.clone(), a.clone());
                async move {
                    l.fetch_add(1, Ordering::SeqCst);
                    let h = headers.get("authorization").and_then(|v| v.to_str().ok());
                    *a.lock().unwrap() = h.unwrap_or_default().to_string();
                    let status = axum::http::StatusCode::from_u16(code).unwrap();
                    let body = json!({"error": {"message": "engine busy: no free LoRA slot",
                        "type": "ServiceUnavailableError", "param": null, "code": code}});
                    (status, axum::Json(body))
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, loads, auth)
}

#[tokio::test]
async fn an_engine_refusing_the_load_fails_the_adapter_after_five_tries_without_the_key() {
    let (addr, loads, auth) = refusing_engine(503).await;
    let pods = vec![pod("p0", addr.port(), T0)];
    let got = Arc::new(Mutex::new(None));
    let listing = || {
        Call::get(PODS)
            .query(SELECTOR)
            .ok(list("PodList", pods.clone()))
    };
    let mut script = Vec::new();
    for attempt in 1..=5u32 {
        if attempt > 1 {
            // One second before the back-off ends: nothing sent, the status unchanged.
            script.push(listing());
        }
        script.push(listing());
        let into = got.clone();
        script.push(
            Call::patch(STATUS)
                .expect_body(move |b| {
                    let s = &b["status"];
                    *into.lock().unwrap() = Some(s.clone());
                    let ready = condition(s, "Ready");
                    let msg = ready["message"].as_str().unwrap_or_default();
                    if b.to_string().contains("sekrit") {
                        return Err("the api key is in the status".into());
                    }
                    let (phase, reason) = if attempt == 5 {
                        ("Failed", "LoadFailed")
                    } else {
                        ("Scheduled", "LoadRetrying")
                    };
                    let ok = s["phase"] == phase
                        && ready["status"] == "False"
                        && ready["reason"] == reason
                        && msg.contains("p0: 503: engine busy: no free LoRA slot")
                        && msg.contains(&format!("attempt {attempt} of 5"));
                    if ok {
                        Ok(())
                    } else {
                        Err(format!("attempt {attempt}: {s}"))
                    }
                })
                .ok(echo()),
        );
    }
    // An hour later: Failed stays Failed (the status unchanged), no load.
    script.push(listing());
    let (client, api) = mock(brix_k8s::modeladapter::RULES, script);
    let (ctx, now) = context(client);
    let mut obj = adapter(
        "huggingface://org/sql-lora",
        json!({"api-key": "sekrit"}),
        Value::Null,
    );
    for (attempt, wait) in [(1u32, 0i64), (2, 5), (3, 10), (4, 20), (5, 40)] {
        if wait > 0 {
            *now.lock().unwrap() += SignedDuration::from_secs(wait - 1);
            reconcile(Arc::new(obj.clone()), ctx.clone()).await.unwrap();
            assert_eq!(
                loads.load(Ordering::SeqCst),
                attempt - 1,
                "a load within the back-off"
            );
            *now.lock().unwrap() += SignedDuration::from_secs(1);
        }
        let action = reconcile(Arc::new(obj.clone()), ctx.clone()).await.unwrap();
        assert_eq!(action, Action::requeue(Duration::from_secs(10)));
        assert_eq!(loads.load(Ordering::SeqCst), attempt);
        obj = written(&obj, &got);
    }
    assert_eq!(*auth.lock().unwrap(), "Bearer sekrit");
    *now.lock().unwrap() += SignedDuration::from_secs(3600);
    reconcile(Arc::new(obj), ctx).await.unwrap();
    api.done().await;
    assert_eq!(loads.load(Ordering::SeqCst), 5, "no load after Failed");
}

#[tokio::test]
async fn an_engine_rejecting_the_request_fails_at_once() {
    // 4xx will not pass by retrying: Failed after one try.
    let (addr, loads, _) = refusing_engine(400).await;
    let pods = vec![pod("p0", addr.port(), T0)];
    let (client, api) = mock(
        brix_k8s::modeladapter::RULES,
        vec![
            Call::get(PODS)
                .query(SELECTOR)
                .ok(list("PodList", pods.clone())),
            Call::patch(STATUS)
                .expect_body(check_status(|s| {
                    let ok =
                        s["phase"] == "Failed" && condition(s, "Ready")["reason"] == "LoadFailed";
                    if ok { Ok(()) } else { Err("not Failed".into()) }
                }))
                .ok(echo()),
            Call::get(PODS)
                .query(SELECTOR)
                .ok(list("PodList", pods.clone())),
            Call::patch(STATUS).ok(echo()),
        ],
    );
    let (ctx, now) = context(client);
    let obj = adapter("huggingface://org/sql-lora", json!({}), Value::Null);
    reconcile(Arc::new(obj.clone()), ctx.clone()).await.unwrap();
    *now.lock().unwrap() += SignedDuration::from_secs(3600);
    reconcile(Arc::new(obj), ctx).await.unwrap();
    api.done().await;
    assert_eq!(loads.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn an_object_artifact_without_the_sidecar_fails_with_a_clear_reason() {
    let a = engine().await;
    let pods = vec![pod("p0", a.addr.port(), T0)];
    let (client, api) = mock(
        brix_k8s::modeladapter::RULES,
        vec![
            Call::get(PODS).query(SELECTOR).ok(list("PodList", pods)),
            Call::patch(STATUS)
                .expect_body(check_status(|s| {
                    let msg = condition(s, "Ready")["message"]
                        .as_str()
                        .unwrap_or_default();
                    let ok = s["phase"] == "Failed"
                        && msg.contains("s3:// needs the aibrix-runtime sidecar")
                        && !msg.contains("bucket");
                    if ok {
                        Ok(())
                    } else {
                        Err(format!("no clear reason: {msg}"))
                    }
                }))
                .ok(echo()),
        ],
    );
    let (ctx, _) = context(client);
    let obj = adapter("s3://bucket/sql", json!({}), Value::Null);
    reconcile(Arc::new(obj), ctx).await.unwrap();
    api.done().await;
    assert!(loaded(a.addr).await.is_empty());
}

#[tokio::test]
async fn a_conflict_on_the_status_patch_is_returned_to_the_error_policy() {
    let a = engine().await;
    let pods = vec![pod("p0", a.addr.port(), T0)];
    let (client, api) = mock(
        brix_k8s::modeladapter::RULES,
        vec![
            Call::get(PODS).query(SELECTOR).ok(list("PodList", pods)),
            Call::patch(STATUS).fail(409, "Conflict", "the object has been modified"),
        ],
    );
    let (ctx, _) = context(client);
    let obj = Arc::new(adapter(
        "huggingface://org/sql-lora",
        json!({}),
        Value::Null,
    ));
    let err = reconcile(obj.clone(), ctx.clone()).await.unwrap_err();
    api.done().await;
    assert!(
        matches!(&err, brix_k8s::Error::Kube(kube::Error::Api(e)) if e.code == 409),
        "{err:?}"
    );
    assert_eq!(
        error_policy(obj, &err, ctx),
        Action::requeue(Duration::from_secs(5))
    );
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

/// AIBrix's runtime sidecar as the controller sees it: `POST /v1/lora_adapter/load` with
/// the artifact URL; it "downloads" (the sim takes any hub-style id) and loads into `engine`.
async fn sidecar(engine: SocketAddr) -> (SocketAddr, Arc<Mutex<Vec<(String, Value)>>>) {
    use axum::routing::post;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let app = axum::Router::new().route(
        "/v1/lora_adapter/load",
        post(
            move |headers: axum::http::HeaderMap, axum::Json(body): axum::Json<Value>| {
                let s = s.clone();
                async move {
                    let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
                    s.lock()
                        .unwrap()
                        .push((auth.unwrap_or_default().to_string(), body.clone()));
                    let url = body["artifact_url"].as_str().unwrap_or_default();
                    let local = url.split("://").nth(1).unwrap_or_default();
                    let name = body["lora_name"].as_str().unwrap_or_default();
                    match EngineClient::new()
                        .load(&engine.to_string(), name, local, None)
                        .await
                    {
                        Ok(()) => (axum::http::StatusCode::OK, "loaded".to_string()),
                        Err(e) => (axum::http::StatusCode::INTERNAL_SERVER_ERROR, e.why),
                    }
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, seen)
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
