//! The fleet's admin API, served beside the gateway by `brix up`, read by `brix status` and
//! `brix scale`: `GET /brix/fleet`, `POST /brix/fleet/scale {"model", "replicas"}` and
//! `GET /brix/autoscalers`.
//! Guarded by the same admin-key check as the users API ([`AdminGuard`]): with no admin key
//! every call is refused (403), never served anonymously.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
pub use brix_admission::AdminGuard;
use brix_api::openai::ErrorEnvelope;
use brix_gateway::GatewayHandle;
use serde::{Deserialize, Serialize};

use crate::autoscale::Autoscalers;
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
    /// `host:port` of its runtime sidecar, when one runs beside it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<String>,
    /// Why it is in its state (`failed`: the GPUs' diagnosis), one bounded line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// One model and its replicas.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct ModelStatus {
    /// Served name.
    pub name: String,
    /// Replicas, in id order.
    pub replicas: Vec<ReplicaStatus>,
    /// The model's autoscaler, if one scales it (`brix status` joins it from
    /// `GET /brix/autoscalers`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaler: Option<crate::autoscale::AutoscalerStatus>,
    /// The ModelAdapters on this model (`brix status` joins them from `GET /brix/adapters`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub adapters: Vec<crate::adapters::AdapterStatus>,
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
    guard: AdminGuard,
}

/// The routes; every call needs `Authorization: Bearer <admin key>` (refused when `guard` has
/// no key).
pub fn router<P: Platform>(platform: P, gateway: GatewayHandle, guard: AdminGuard) -> Router {
    let state = Arc::new(Admin {
        platform,
        gateway,
        guard,
    });
    Router::new()
        .route("/brix/fleet", get(status::<P>))
        .route("/brix/fleet/scale", post(scale::<P>))
        .with_state(state)
}

/// `GET /brix/autoscalers`: each autoscaler's counts and last decisions, behind the same
/// admin-key check.
pub fn autoscaler_router(autoscalers: Autoscalers, guard: AdminGuard) -> Router {
    let state = Arc::new((autoscalers, guard));
    Router::new()
        .route(
            "/brix/autoscalers",
            get(
                |State(s): State<Arc<(Autoscalers, AdminGuard)>>, headers: HeaderMap| async move {
                    if let Err(denied) = s.1.check_headers(&headers) {
                        return denied.into_response();
                    }
                    axum::Json(s.0.status()).into_response()
                },
            ),
        )
        .with_state(state)
}

fn error(status: StatusCode, message: &str) -> Response {
    let body = ErrorEnvelope::new(message, "invalid_request_error");
    (status, axum::Json(body)).into_response()
}

async fn status<P: Platform>(State(admin): State<Arc<Admin<P>>>, headers: HeaderMap) -> Response {
    if let Err(denied) = admin.guard.check_headers(&headers) {
        return denied.into_response();
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
                    runtime: r.runtime,
                    reason: r.reason,
                }
            })
            .collect();
        out.push(ModelStatus {
            name,
            replicas,
            autoscaler: None,
            adapters: Vec::new(),
        });
    }
    axum::Json(out).into_response()
}

async fn scale<P: Platform>(
    State(admin): State<Arc<Admin<P>>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Err(denied) = admin.guard.check_headers(&headers) {
        return denied.into_response();
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
