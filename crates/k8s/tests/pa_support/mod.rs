//! Helpers of the PodAutoscaler controller tests: a real `/metrics` server on 127.0.0.1, the
//! objects the mocked API answers with, and checks on the status bodies sent.
#![allow(dead_code, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use brix_api::PodAutoscalerResource;
use brix_k8s::podautoscaler::{Clock, Config, Context, METRIC_PORT_LABEL};
use serde_json::{Value, json};

use crate::support::list;

/// Unix time of the controller clock's zero: 2026-05-28 20:26:40 UTC.
pub const EPOCH: f64 = 1_780_000_000.0;
pub const PAS: &str = "/apis/autoscaling.aibrix.ai/v1alpha1/namespaces/default/podautoscalers";
pub const DEPLOY_SCALE: &str = "/apis/apps/v1/namespaces/default/deployments/llama/scale";
pub const PODS: &str = "/api/v1/namespaces/default/pods";

/// A real `/metrics` endpoint whose text and status the test sets.
#[derive(Clone)]
pub struct Metrics {
    body: Arc<Mutex<(u16, String)>>,
    pub addr: SocketAddr,
}

impl Metrics {
    pub async fn start(text: &str) -> Self {
        let body = Arc::new(Mutex::new((200, text.to_string())));
        let app = Router::new()
            .route("/metrics", get(serve))
            .with_state(body.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { body, addr }
    }

    pub fn set(&self, status: u16, text: &str) {
        *self.body.lock().unwrap() = (status, text.to_string());
    }
}

async fn serve(State(body): State<Arc<Mutex<(u16, String)>>>) -> (StatusCode, String) {
    let (status, text) = body.lock().unwrap().clone();
    (StatusCode::from_u16(status).unwrap(), text)
}

pub fn running(n: f64) -> String {
    format!(
        "# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running{{model_name=\"llama\"}} {n}\n"
    )
}

/// A PodAutoscaler on `target` (`[apiVersion, kind, name]`), HPA on a pod metric.
pub fn pa(name: &str, uid: &str, created: &str, target: [&str; 3]) -> Value {
    json!({
        "apiVersion": "autoscaling.aibrix.ai/v1alpha1", "kind": "PodAutoscaler",
        "metadata": {"name": name, "namespace": "default", "uid": uid, "generation": 1,
                     "resourceVersion": "1", "creationTimestamp": created},
        "spec": {
            "scaleTargetRef": {"apiVersion": target[0], "kind": target[1], "name": target[2]},
            "minReplicas": 1, "maxReplicas": 10,
            "metricsSources": [{"metricSourceType": "pod", "protocolType": "http",
                "path": "/metrics", "targetMetric": "num_requests_running", "targetValue": "2"}],
            "scalingStrategy": "HPA"
        }
    })
}

pub fn deploy_pa() -> Value {
    pa(
        "llama-pa",
        "uid-a",
        "2026-01-01T00:00:00Z",
        ["apps/v1", "Deployment", "llama"],
    )
}

pub fn scale(name: &str, replicas: i32, selector: &str) -> Value {
    json!({"apiVersion": "autoscaling/v1", "kind": "Scale",
           "metadata": {"name": name, "namespace": "default"},
           "spec": {"replicas": replicas},
           "status": {"replicas": replicas, "selector": selector}})
}

/// Ready pods on 127.0.0.1 whose metrics port (label) is `port`, plus one not ready.
pub fn pods(n: usize, port: u16) -> Value {
    let pod = |i: usize, ready: bool| {
        json!({"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": format!("llama-{i}"), "namespace": "default",
                            "labels": {"app": "llama", METRIC_PORT_LABEL: port.to_string()}},
               "status": {"phase": "Running", "podIP": "127.0.0.1",
                          "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}})
    };
    let mut items: Vec<Value> = (0..n).map(|i| pod(i, true)).collect();
    items.push(pod(n, false));
    list("PodList", items)
}

pub fn root(v: &Value) -> Arc<PodAutoscalerResource> {
    Arc::new(serde_json::from_value(v.clone()).unwrap())
}

pub fn context(client: kube::Client) -> Arc<Context> {
    Arc::new(Context::with_clock(
        client,
        Config::default(),
        Clock::manual(EPOCH),
    ))
}

/// The condition `kind` of a status body: `(status, reason, message)`.
pub fn condition(status: &Value, kind: &str) -> (String, String, String) {
    let c = status["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == kind))
        .unwrap_or_else(|| panic!("no condition {kind} in {status}"));
    let s = |k: &str| c[k].as_str().unwrap_or_default().to_string();
    (s("status"), s("reason"), s("message"))
}

/// Keeps the status a PATCH sent, for the test to read after the reconcile.
pub fn keep(slot: &Arc<Mutex<Value>>) -> impl Fn(&Value) -> Result<(), String> + Send + 'static {
    let slot = slot.clone();
    move |b: &Value| {
        *slot.lock().unwrap() = b["status"].clone();
        Ok(())
    }
}

pub fn replicas_are(n: u32) -> impl Fn(&Value) -> Result<(), String> + Send + 'static {
    move |b: &Value| crate::support::eq(b, &json!({"spec": {"replicas": n}}))
}

/// `v` as the API server stores a merge patch: `null` fields removed.
pub fn without_nulls(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), without_nulls(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(without_nulls).collect()),
        other => other.clone(),
    }
}
