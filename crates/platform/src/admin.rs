//! The fleet's admin API, served beside the gateway by `brix up`, read by `brix status` and
//! `brix scale`: `GET /brix/fleet` and `POST /brix/fleet/scale {"model", "replicas"}`.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use brix_gateway::GatewayHandle;
use serde::{Deserialize, Serialize};

use crate::platform::{Platform, PlatformError};

/// One replica as `brix status` shows it: the platform's view joined with the gateway's.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct ReplicaStatus {
    /// Replica id.
    pub id: String,
    /// `host:port`.
    pub address: String,
    /// Lifecycle state.
    pub state: String,
    /// Restarts after crashes.
    pub restarts: u32,
    /// Process id (command replicas).
    pub pid: Option<u32>,
    /// Gateway requests in flight to it.
    pub in_flight: u32,
    /// Last scraped KV-cache usage, 0..1.
    pub kv_usage: Option<f64>,
    /// How its engine last ended.
    pub last_exit: Option<String>,
}

/// One model and its replicas.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct ModelStatus {
    /// Served name.
    pub name: String,
    /// Replicas, in id order.
    pub replicas: Vec<ReplicaStatus>,
}

/// `POST /brix/fleet/scale` body.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct ScaleRequest {
    /// Model name.
    pub model: String,
    /// Desired replicas.
    pub replicas: u32,
}

struct Admin<P> {
    platform: P,
    gateway: GatewayHandle,
    key: Option<String>,
}

/// The routes; with `key`, every call needs `Authorization: Bearer <key>`.
pub fn router<P: Platform>(platform: P, gateway: GatewayHandle, key: Option<String>) -> Router {
    let state = Arc::new(Admin {
        platform,
        gateway,
        key,
    });
    Router::new()
        .route("/brix/fleet", get(status::<P>))
        .route("/brix/fleet/scale", post(scale::<P>))
        .with_state(state)
}

fn error(status: StatusCode, message: &str) -> Response {
    let kind = match status {
        StatusCode::UNAUTHORIZED => "authentication_error",
        _ => "invalid_request_error",
    };
    (
        status,
        axum::Json(serde_json::json!({"error": {"message": message, "type": kind, "code": null, "param": null}})),
    )
        .into_response()
}

fn authorised<P>(admin: &Admin<P>, headers: &HeaderMap) -> bool {
    let Some(key) = &admin.key else { return true };
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|given| {
            given.len() == key.len()
                && given
                    .bytes()
                    .zip(key.bytes())
                    .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                    == 0
        })
}

async fn status<P: Platform>(State(admin): State<Arc<Admin<P>>>, headers: HeaderMap) -> Response {
    if !authorised(&admin, &headers) {
        return error(StatusCode::UNAUTHORIZED, "admin key required");
    }
    let pods = admin.gateway.pods();
    let mut out = Vec::new();
    for name in admin.platform.models().await {
        let Ok(replicas) = admin.platform.replicas(&name).await else {
            continue;
        };
        let replicas = replicas
            .into_iter()
            .map(|r| {
                let pod = pods.iter().find(|p| p.address == r.address);
                ReplicaStatus {
                    in_flight: admin.gateway.in_flight(&r.address),
                    kv_usage: pod.and_then(|p| p.kv_usage),
                    state: r.state.as_str().to_string(),
                    id: r.id,
                    address: r.address,
                    restarts: r.restarts,
                    pid: r.pid,
                    last_exit: r.last_exit,
                }
            })
            .collect();
        out.push(ModelStatus { name, replicas });
    }
    axum::Json(out).into_response()
}

async fn scale<P: Platform>(
    State(admin): State<Arc<Admin<P>>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if !authorised(&admin, &headers) {
        return error(StatusCode::UNAUTHORIZED, "admin key required");
    }
    let req: ScaleRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, &format!("invalid body: {e}")),
    };
    match admin.platform.scale(&req.model, req.replicas).await {
        Ok(()) => axum::Json(serde_json::json!({"model": req.model, "replicas": req.replicas}))
            .into_response(),
        Err(e @ PlatformError::UnknownModel(_)) => error(StatusCode::NOT_FOUND, &e.to_string()),
        Err(e) => error(StatusCode::BAD_REQUEST, &e.to_string()),
    }
}
