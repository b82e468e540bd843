//! The optimizer's HTTP surface in `brix up`, beside the gateway:
//! - `GET /brix/optimizer` (every optimized model's status), `GET /brix/optimizer/demand?model=M`
//!   (the monitor's `Demand` JSON, what `brix optimize plan --gateway` reads) and
//!   `GET /brix/optimizer/plan?model=M` (the plan in force with its reason): admin key only;
//! - `GET /metrics/{ns}/{deployment}`: AIBrix's GPU-optimizer text,
//!   `vllm:deployment_replicas{model_name="M"} <replicas × 100>`, read-only and anonymous as
//!   `/metrics` is, for a PodAutoscaler's external source (`targetValue: "100"`); 404 for a
//!   deployment the optimizer does not plan. Before the first plan it reports the replicas the
//!   deployment has, so an autoscaler reading it holds still.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use brix_admission::AdminGuard;
use brix_api::openai::ErrorEnvelope;
use brix_gateway::GatewayHandle;

use crate::local::LocalPlatform;
use crate::optimizer::Optimizer;
use crate::platform::{Platform, ReplicaState};

struct Api {
    optimizer: Optimizer,
    platform: LocalPlatform,
    gateway: GatewayHandle,
    guard: AdminGuard,
}

/// The routes (see the module doc).
pub fn router(
    optimizer: Optimizer,
    platform: LocalPlatform,
    gateway: GatewayHandle,
    guard: AdminGuard,
) -> Router {
    let state = Arc::new(Api {
        optimizer,
        platform,
        gateway,
        guard,
    });
    Router::new()
        .route("/brix/optimizer", get(all))
        .route("/brix/optimizer/demand", get(demand))
        .route("/brix/optimizer/plan", get(plan))
        .route("/metrics/{ns}/{deployment}", get(replicas))
        .with_state(state)
}

fn error(status: StatusCode, message: &str) -> Response {
    let kind = if status == StatusCode::NOT_FOUND {
        "not_found_error"
    } else {
        "invalid_request_error"
    };
    (status, axum::Json(ErrorEnvelope::new(message, kind))).into_response()
}

/// The `model` query parameter, checked against the optimized models.
/// (Served names need no percent-decoding: a name that would is no model's.)
fn model_of(api: &Api, headers: &HeaderMap, q: Option<String>) -> Result<String, Box<Response>> {
    api.guard
        .check_headers(headers)
        .map_err(|d| Box::new(d.into_response()))?;
    let q = q.unwrap_or_default();
    let Some(model) = q.split('&').find_map(|kv| kv.strip_prefix("model=")) else {
        return Err(Box::new(error(
            StatusCode::BAD_REQUEST,
            "missing query parameter: model",
        )));
    };
    if api.optimizer.model(model).is_none() {
        return Err(Box::new(error(
            StatusCode::NOT_FOUND,
            "no optimizer runs for that model (see the fleet file's optimizer: section)",
        )));
    }
    Ok(model.to_string())
}

async fn all(State(api): State<Arc<Api>>, headers: HeaderMap) -> Response {
    if let Err(denied) = api.guard.check_headers(&headers) {
        return denied.into_response();
    }
    axum::Json(api.optimizer.status()).into_response()
}

async fn demand(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    match model_of(&api, &headers, q) {
        Err(r) => *r,
        Ok(model) => match api.gateway.demand(&model) {
            Some(d) => axum::Json(d).into_response(),
            None => error(StatusCode::NOT_FOUND, "no monitor for that model"),
        },
    }
}

async fn plan(State(api): State<Arc<Api>>, headers: HeaderMap, RawQuery(q): RawQuery) -> Response {
    match model_of(&api, &headers, q) {
        Err(r) => *r,
        Ok(model) => match api.optimizer.model(&model) {
            Some(s) => axum::Json(s).into_response(),
            None => error(StatusCode::NOT_FOUND, "no optimizer runs for that model"),
        },
    }
}

async fn replicas(
    State(api): State<Arc<Api>>,
    Path((_ns, deployment)): Path<(String, String)>,
) -> Response {
    let Some((model, target)) = api.optimizer.deployment(&deployment) else {
        return error(
            StatusCode::NOT_FOUND,
            "the optimizer plans no deployment of that name",
        );
    };
    let replicas = match target {
        Some(t) => t,
        None => api.platform.replicas(&deployment).await.map_or(0, |r| {
            let live = r
                .iter()
                .filter(|x| x.state != ReplicaState::Draining)
                .count();
            u32::try_from(live).unwrap_or(u32::MAX)
        }),
    };
    // Served names are validated to [A-Za-z0-9._-]: nothing to escape in the label.
    let body = format!(
        "# HELP vllm:deployment_replicas Replicas the GPU optimizer asks of the deployment, × 100.\n# TYPE vllm:deployment_replicas gauge\nvllm:deployment_replicas{{model_name=\"{model}\"}} {}\n",
        u64::from(replicas) * 100
    );
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}
