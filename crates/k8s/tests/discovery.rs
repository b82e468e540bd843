//! Gateway discovery from a mocked Kubernetes API: pods listed and watched (added, becoming
//! ready, deleted, workers ignored, a failing watch retried), and the real gateway over it
//! routing to real `brix sim` engines on 127.0.0.1 that the pods name.
#![allow(clippy::unwrap_used, clippy::panic)]

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use brix_gateway::{Discovery, GatewayConfig, GatewayHandle, Target, Targets};
use brix_k8s::Scope;
use brix_k8s::discovery::KubeDiscovery;
use brix_testkit::{SimServer, eventually, sim_config, start_sim};
use serde_json::{Value, json};
use support::{Call, list, mock};
use tokio::net::TcpListener;

const PODS: &str = "/api/v1/namespaces/default/pods";
const ADAPTERS: &str = "/apis/model.aibrix.ai/v1alpha1/namespaces/default/modeladapters";
const WITHIN: Duration = Duration::from_secs(10);

fn scope() -> Scope {
    Scope {
        namespace: Some("default".into()),
    }
}

/// A pod of model `llama` on 127.0.0.1 with the port label `port`.
fn pod(name: &str, rv: u32, port: u16, ready: bool, extra_labels: Value) -> Value {
    let mut labels =
        json!({"model.aibrix.ai/name": "llama", "model.aibrix.ai/port": port.to_string()});
    labels
        .as_object_mut()
        .unwrap()
        .extend(extra_labels.as_object().unwrap().clone());
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "resourceVersion": rv.to_string(), "labels": labels},
        "spec": {"containers": [{"name": "vllm", "image": "vllm"}]},
        "status": {"phase": "Running", "podIP": "127.0.0.1",
                   "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}
    })
}

fn event(kind: &str, object: Value) -> Value {
    json!({"type": kind, "object": object})
}

fn target(name: &str, sim: &SimServer) -> Target {
    Target {
        name: name.into(),
        address: sim.addr.to_string(),
        kv_events: None,
        metrics: None,
    }
}

fn llama(targets: Vec<Target>) -> Targets {
    BTreeMap::from([("llama".to_string(), targets)])
}

async fn sees(d: &KubeDiscovery, want: &Targets) {
    let rx = d.watch();
    eventually(&format!("discovery publishes {want:?}"), WITHIN, || {
        let now = rx.borrow().clone();
        async move { *now == *want }
    })
    .await;
}

fn list_call(items: Vec<Value>) -> Call {
    Call::get(PODS)
        .query("limit=500")
        .ok(list("PodList", items))
}

/// The gateway over `d`, served on 127.0.0.1:0; returns its base URL and handle.
async fn gateway(d: &KubeDiscovery) -> (String, GatewayHandle) {
    let mut cfg = GatewayConfig::default();
    cfg.scrape.interval_ms = 50;
    cfg.scrape.timeout_ms = 500;
    cfg.scrape.models_every = 1;
    let (app, handle) = brix_gateway::app_with_handle(cfg, d).await.unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), handle)
}

/// POSTs a chat for `model`; returns (status, target-pod header, body).
async fn chat(base: &str, model: &str) -> (u16, String, Value) {
    let r = reqwest::Client::new()
        .post(format!("{base}/v1/chat/completions"))
        .json(&json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let pod = r
        .headers()
        .get("target-pod")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, pod, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listed_pods_route_through_the_gateway_and_workers_and_unready_pods_do_not() {
    let a = start_sim(&sim_config("llama")).await;
    let other = start_sim(&sim_config("llama")).await;
    let (client, api) = mock(
        brix_k8s::discovery::RULES,
        vec![
            list_call(vec![
                pod("llama-0", 1, a.addr.port(), true, json!({})),
                pod(
                    "llama-worker",
                    1,
                    other.addr.port(),
                    true,
                    json!({"ray.io/node-type": "worker"}),
                ),
                pod("llama-1", 1, other.addr.port(), false, json!({})),
                json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "namespace": "default", "resourceVersion": "1"},
                       "status": {"podIP": "127.0.0.1", "conditions": [{"type": "Ready", "status": "True"}]}}),
            ]),
            Call::get(PODS)
                .query("watch=true")
                .query("resourceVersion=1")
                .events(vec![]),
        ],
    );
    let d = KubeDiscovery::start(client, &scope());
    sees(&d, &llama(vec![target("llama-0", &a)])).await;
    let (base, _handle) = gateway(&d).await;
    for _ in 0..4 {
        let (status, pod, body) = chat(&base, "llama").await;
        assert_eq!((status, pod.as_str()), (200, "llama-0"), "{body}");
    }
    api.done().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_events_add_ready_and_delete_pods() {
    let a = start_sim(&sim_config("llama")).await;
    let b = start_sim(&sim_config("llama")).await;
    let c = start_sim(&sim_config("llama")).await;
    let (client, api) = mock(
        brix_k8s::discovery::RULES,
        vec![
            list_call(vec![
                pod("llama-a", 1, a.addr.port(), true, json!({})),
                pod("llama-b", 1, b.addr.port(), false, json!({})),
            ]),
            // The first watch: b becomes ready, c is added (not ready yet), then the stream
            // ends and the watcher resumes from the last version it saw.
            Call::get(PODS)
                .query("watch=true")
                .query("resourceVersion=1")
                .events_then_close(vec![
                    event(
                        "MODIFIED",
                        pod("llama-b", 2, b.addr.port(), true, json!({})),
                    ),
                    event("ADDED", pod("llama-c", 3, c.addr.port(), false, json!({}))),
                ]),
            Call::get(PODS)
                .query("watch=true")
                .query("resourceVersion=3")
                .events(vec![
                    event(
                        "MODIFIED",
                        pod("llama-c", 4, c.addr.port(), true, json!({})),
                    ),
                    event("DELETED", pod("llama-a", 5, a.addr.port(), true, json!({}))),
                ]),
        ],
    );
    let d = KubeDiscovery::start(client, &scope());
    sees(
        &d,
        &llama(vec![target("llama-b", &b), target("llama-c", &c)]),
    )
    .await;
    api.done().await;
    // The gateway routes only to the pods left: a (deleted) gets nothing.
    let (base, _handle) = gateway(&d).await;
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..8 {
        let (status, pod, body) = chat(&base, "llama").await;
        assert_eq!(status, 200, "{body}");
        seen.insert(pod);
    }
    assert!(
        seen.iter().all(|p| p == "llama-b" || p == "llama-c"),
        "{seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_watch_keeps_the_last_pods_and_retries() {
    let a = start_sim(&sim_config("llama")).await;
    let b = start_sim(&sim_config("llama")).await;
    let (client, api) = mock(
        brix_k8s::discovery::RULES,
        vec![
            list_call(vec![pod("llama-a", 1, a.addr.port(), true, json!({}))]),
            Call::get(PODS)
                .query("watch=true")
                .query("resourceVersion=1")
                .fail(500, "InternalError", "etcd is down"),
            Call::get(PODS)
                .query("watch=true")
                .query("resourceVersion=1")
                .events(vec![event(
                    "ADDED",
                    pod("llama-b", 2, b.addr.port(), true, json!({})),
                )]),
        ],
    );
    let d = KubeDiscovery::start(client, &scope());
    sees(&d, &llama(vec![target("llama-a", &a)])).await;
    // The error is retried after a backoff; the set published meanwhile is the last good one.
    sees(
        &d,
        &llama(vec![target("llama-a", &a), target("llama-b", &b)]),
    )
    .await;
    api.done().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_adapters_declare_adapters_and_their_pods() {
    let a = start_sim(&sim_config("llama")).await;
    let (pods_client, pods_api) = mock(
        brix_k8s::discovery::RULES,
        vec![
            list_call(vec![pod("llama-a", 1, a.addr.port(), true, json!({}))]),
            Call::get(PODS).query("watch=true").events(vec![]),
        ],
    );
    let adapter = |name: &str, phase: &str, instances: Vec<&str>| {
        json!({"apiVersion": "model.aibrix.ai/v1alpha1", "kind": "ModelAdapter",
               "metadata": {"name": name, "namespace": "default", "resourceVersion": "7"},
               "spec": {"baseModel": "llama", "artifactURL": "huggingface://org/x",
                        "podSelector": {"matchLabels": {"model.aibrix.ai/name": "llama"}}},
               "status": {"phase": phase, "instances": instances}})
    };
    let (adapters_client, adapters_api) = mock(
        brix_k8s::discovery::RULES,
        vec![
            Call::get(ADAPTERS).query("limit=500").ok(json!({
                "kind": "ModelAdapterList", "apiVersion": "model.aibrix.ai/v1alpha1",
                "metadata": {"resourceVersion": "7"},
                "items": [adapter("sql", "Running", vec!["llama-a"]), adapter("ghost", "Failed", vec![])]})),
            Call::get(ADAPTERS).query("watch=true").query("resourceVersion=7").events(vec![]),
        ],
    );
    let d = KubeDiscovery::start(pods_client, &scope());
    sees(&d, &llama(vec![target("llama-a", &a)])).await;
    let (base, handle) = gateway(&d).await;
    d.watch_adapters(adapters_client, &scope(), handle.clone());
    eventually("the gateway knows the adapters", WITHIN, || {
        let names: Vec<String> = handle.adapter_rps().into_keys().collect();
        async move { names == ["ghost", "sql"] }
    })
    .await;
    // A declared adapter that no pod holds and that is not being placed: 503 naming it, where
    // an unknown name is model_not_found.
    let (status, _, body) = chat(&base, "ghost").await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("'ghost'"),
        "{body}"
    );
    let (status, _, body) = chat(&base, "nope").await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (400, json!("model_not_found"))
    );
    pods_api.done().await;
    adapters_api.done().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_namespace_is_watched_without_a_namespace() {
    let a = start_sim(&sim_config("llama")).await;
    let b = start_sim(&sim_config("llama")).await;
    let mut other = pod("llama-0", 1, b.addr.port(), true, json!({}));
    other["metadata"]["namespace"] = json!("team-b");
    let (client, api) = mock(
        brix_k8s::discovery::RULES,
        vec![
            Call::get("/api/v1/pods").query("limit=500").ok(list(
                "PodList",
                vec![pod("llama-0", 1, a.addr.port(), true, json!({})), other],
            )),
            Call::get("/api/v1/pods").query("watch=true").events(vec![]),
        ],
    );
    let d = KubeDiscovery::start(client, &Scope { namespace: None });
    // Same pod name in two namespaces: both are targets.
    let mut both = vec![target("llama-0", &a), target("llama-0", &b)];
    both.sort();
    sees(&d, &llama(both)).await;
    api.done().await;
}
