//! What the ModelAdapter tests share: the engines (sims, a refusing one, a sidecar), pods and
//! adapters as the API server returns them, a context on a clock the test moves, and helpers
//! for the status PATCH.

use std::net::SocketAddr;
use std::sync::atomic::AtomicU32;
use std::sync::{Arc, Mutex};

use brix_api::ModelAdapterResource;
use brix_k8s::modeladapter::{Context, FINALIZER};
use brix_platform::adapters::engine::EngineClient;
use brix_testkit::{SimServer, start_sim};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};

use crate::support::Call;

pub(crate) const PODS: &str = "/api/v1/namespaces/default/pods";
pub(crate) const MA: &str = "/apis/model.aibrix.ai/v1alpha1/namespaces/default/modeladapters/sql";
pub(crate) const STATUS: &str =
    "/apis/model.aibrix.ai/v1alpha1/namespaces/default/modeladapters/sql/status";
pub(crate) const SELECTOR: &str = "labelSelector=model.aibrix.ai/name=llama";
pub(crate) const T0: &str = "2026-06-01T12:00:00Z";

pub(crate) fn t0() -> Timestamp {
    T0.parse().unwrap()
}

/// A LoRA-enabled engine serving `llama` with room for four adapters.
pub(crate) async fn engine() -> SimServer {
    let mut cfg = brix_testkit::sim_config("llama");
    cfg.engine.enable_lora = true;
    cfg.engine.max_loras = 4;
    cfg.engine.max_cpu_loras = 4;
    start_sim(&cfg).await
}

/// A pod of `llama` on 127.0.0.1:`port`, Ready since `ready_since`.
pub(crate) fn pod(name: &str, port: u16, ready_since: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"),
            "labels": {"model.aibrix.ai/name": "llama", "model.aibrix.ai/port": port.to_string()}},
        "spec": {"containers": [{"name": "vllm", "image": "vllm/vllm-openai",
            "args": ["--model", "llama", "--enable-lora", "--max-loras", "4"]}]},
        "status": {"phase": "Running", "podIP": "127.0.0.1", "conditions": [
            {"type": "Ready", "status": "True", "lastTransitionTime": ready_since}]}})
}

/// The `sql` ModelAdapter on llama's pods, with the finalizer in place and `status`.
pub(crate) fn adapter(url: &str, extra: Value, status: Value) -> ModelAdapterResource {
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

/// A context whose clock the test moves; the owned Service and EndpointSlice are left to
/// [`owned_objects_list_the_instances`].
pub(crate) fn context(client: kube::Client) -> (Arc<Context>, Arc<Mutex<Timestamp>>) {
    let cfg = brix_k8s::modeladapter::Config {
        owned_objects: false,
        ..Default::default()
    };
    context_with(client, cfg)
}

pub(crate) fn context_with(
    client: kube::Client,
    cfg: brix_k8s::modeladapter::Config,
) -> (Arc<Context>, Arc<Mutex<Timestamp>>) {
    let now = Arc::new(Mutex::new(t0() + SignedDuration::from_secs(60)));
    let clock = now.clone();
    let ctx = Context::with_clock(client, cfg, Arc::new(move || *clock.lock().unwrap()));
    (Arc::new(ctx), now)
}

/// What the engine at `addr` lists as loaded adapters.
pub(crate) async fn loaded(addr: SocketAddr) -> Vec<String> {
    let l = EngineClient::new()
        .list(&addr.to_string(), None)
        .await
        .unwrap();
    l.adapters.into_iter().collect()
}

/// What the API server answers a PATCH with: the object.
pub(crate) fn echo() -> Value {
    serde_json::to_value(adapter(
        "huggingface://org/sql-lora",
        json!({}),
        Value::Null,
    ))
    .unwrap()
}

pub(crate) fn condition<'a>(status: &'a Value, kind: &str) -> &'a Value {
    status["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == kind))
        .unwrap_or(&Value::Null)
}

pub(crate) fn check_status(
    want: impl Fn(&Value) -> Result<(), String> + Send + 'static,
) -> impl Fn(&Value) -> Result<(), String> + Send + 'static {
    move |b| want(&b["status"]).map_err(|e| format!("{e} in {b}"))
}

/// A status PATCH that keeps what it was sent, to feed back as the object's status.
pub(crate) fn capture(into: &Arc<Mutex<Option<Value>>>) -> Call {
    let into = into.clone();
    Call::patch(STATUS)
        .expect_body(move |b| {
            *into.lock().unwrap() = Some(b["status"].clone());
            Ok(())
        })
        .ok(echo())
}

pub(crate) fn written(
    obj: &ModelAdapterResource,
    got: &Arc<Mutex<Option<Value>>>,
) -> ModelAdapterResource {
    let mut obj = obj.clone();
    let st = got.lock().unwrap().take().expect("a status was written");
    obj.status = Some(serde_json::from_value(st).unwrap());
    obj
}

/// An engine that lists its base model but answers every load with `code` and a message;
/// counts the loads and keeps the last `Authorization` header.
pub(crate) async fn refusing_engine(code: u16) -> (SocketAddr, Arc<AtomicU32>, Arc<Mutex<String>>) {
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
                    l.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
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

/// AIBrix's runtime sidecar as the controller sees it: `POST /v1/lora_adapter/load` with
/// the artifact URL; it "downloads" (the sim takes any hub-style id) and loads into `engine`.
pub(crate) async fn sidecar(engine: SocketAddr) -> (SocketAddr, Arc<Mutex<Vec<(String, Value)>>>) {
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
