//! What the engines say about their models: `GET /v1/models` answered from the engines'
//! own entries (every field they report — `root`, `max_model_len`, `parent`, `permission` —
//! merged over the healthy pods), and each model's context length for TPM reservations.
//!
//! Under failure: a pod that does not answer `/v1/models` within the scrape timeout is left
//! out of the merge; a model no pod described gets a minimal entry; an unknown context
//! length is `proxy.default_max_model_len`. Keys are models the pool knows, never raw client
//! input, so the cache stays bounded.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use crate::Gateway;

/// How long a learned context length is trusted before it is read again.
const TTL: Duration = Duration::from_secs(60);

/// Context lengths the engines reported, by model, with when they were read.
#[derive(Debug, Default)]
pub(crate) struct Catalog {
    lens: Mutex<HashMap<String, (Instant, Option<u32>)>>,
}

impl Catalog {
    fn fresh(&self, model: &str) -> Option<Option<u32>> {
        let lens = self.lens.lock().unwrap_or_else(|p| p.into_inner());
        lens.get(model)
            .filter(|(at, _)| at.elapsed() < TTL)
            .map(|(_, len)| *len)
    }

    fn learn(&self, entries: &BTreeMap<String, Value>) {
        let mut lens = self.lens.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        for (id, e) in entries {
            let len = e
                .get("max_model_len")
                .and_then(Value::as_u64)
                .and_then(|v| u32::try_from(v).ok());
            lens.insert(id.clone(), (now, len));
        }
    }
}

/// The model's context length: what its engines report, else the configured default.
/// `model` must be one the pool knows (the cache is keyed by it).
pub(crate) async fn max_model_len(gw: &Gateway, model: &str, address: &str) -> u32 {
    let default = gw.cfg.proxy.default_max_model_len;
    if let Some(len) = gw.catalog.fresh(model) {
        return len.unwrap_or(default);
    }
    let mut entries = BTreeMap::new();
    merge(&mut entries, fetch(gw, address).await);
    gw.catalog.learn(&entries);
    // Remember a model the engine did not list too, so it is not asked on every request.
    let len = entries
        .get(model)
        .and_then(|e| e.get("max_model_len"))
        .and_then(Value::as_u64)
        .and_then(|v| u32::try_from(v).ok());
    if !entries.contains_key(model) {
        let mut lens = gw.catalog.lens.lock().unwrap_or_else(|p| p.into_inner());
        lens.insert(model.to_string(), (Instant::now(), None));
    }
    len.unwrap_or(default)
}

/// One pod's `/v1/models` entries, or none if it did not answer in time.
async fn fetch(gw: &Gateway, address: &str) -> Vec<Value> {
    let timeout = Duration::from_millis(gw.cfg.scrape.timeout_ms);
    let Ok(body) = crate::probe::get(&gw.client, address, "/v1/models", timeout).await else {
        return Vec::new();
    };
    serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.get("data").and_then(Value::as_array).cloned())
        .unwrap_or_default()
}

/// Adds entries by `id`, the first pod's entry winning.
fn merge(into: &mut BTreeMap<String, Value>, entries: Vec<Value>) {
    for e in entries {
        if let Some(id) = e.get("id").and_then(Value::as_str) {
            into.entry(id.to_string()).or_insert(e);
        }
    }
}

/// `GET /v1/models`: the models and adapters with a healthy pod now, each as its engines
/// describe it.
pub(crate) async fn models(State(gw): State<Arc<Gateway>>) -> Response {
    let mut tasks = tokio::task::JoinSet::new();
    for pod in gw.pool.all().into_iter().filter(|p| p.is_healthy()) {
        let gw = gw.clone();
        tasks.spawn(async move { fetch(&gw, &pod.address).await });
    }
    let mut entries = BTreeMap::new();
    while let Some(r) = tasks.join_next().await {
        if let Ok(list) = r {
            merge(&mut entries, list);
        }
    }
    gw.catalog.learn(&entries);
    let data: Vec<Value> = gw
        .pool
        .routable()
        .into_iter()
        .map(|(id, parent)| {
            entries.remove(&id).unwrap_or_else(|| {
                serde_json::json!({"id": id, "object": "model", "created": 0, "owned_by": "brix", "root": id, "parent": parent})
            })
        })
        .collect();
    axum::Json(serde_json::json!({"object": "list", "data": data})).into_response()
}
