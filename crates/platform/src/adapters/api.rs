//! The adapters' admin API, behind the admin key like the rest: `GET /brix/adapters` (status),
//! `PUT /brix/adapters/{name}` (a ModelAdapter document, YAML or JSON: add or replace) and
//! `DELETE /brix/adapters/{name}` (drain and unload everywhere, then forget).

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use brix_admission::AdminGuard;
use brix_api::Resource;
use brix_api::openai::ErrorEnvelope;

use super::Adapters;

/// Largest document `PUT` takes.
const MAX_DOCUMENT: usize = 64 * 1024;

type Shared = Arc<(Adapters, AdminGuard)>;

/// The routes.
pub fn router(adapters: Adapters, guard: AdminGuard) -> Router {
    Router::new()
        .route("/brix/adapters", get(list))
        .route("/brix/adapters/{name}", get(one).put(apply).delete(delete))
        .with_state(Arc::new((adapters, guard)))
}

fn error(status: StatusCode, kind: &str, message: &str) -> Response {
    (status, axum::Json(ErrorEnvelope::new(message, kind))).into_response()
}

async fn list(State(s): State<Shared>, headers: HeaderMap) -> Response {
    if let Err(denied) = s.1.check_headers(&headers) {
        return denied.into_response();
    }
    axum::Json(s.0.status()).into_response()
}

async fn one(State(s): State<Shared>, Path(name): Path<String>, headers: HeaderMap) -> Response {
    if let Err(denied) = s.1.check_headers(&headers) {
        return denied.into_response();
    }
    match s.0.status().into_iter().find(|a| a.name == name) {
        Some(a) => axum::Json(a).into_response(),
        None => not_found(&name),
    }
}

fn not_found(name: &str) -> Response {
    let shown = super::engine::cut(name, 128);
    error(
        StatusCode::NOT_FOUND,
        "NotFoundError",
        &format!("no ModelAdapter '{shown}'"),
    )
}

async fn apply(
    State(s): State<Shared>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Err(denied) = s.1.check_headers(&headers) {
        return denied.into_response();
    }
    let bad = |m: String| error(StatusCode::BAD_REQUEST, "invalid_request_error", &m);
    if body.len() > MAX_DOCUMENT {
        return bad(format!("document over {MAX_DOCUMENT} bytes"));
    }
    let Ok(text) = std::str::from_utf8(&body) else {
        return bad("the document is not UTF-8".into());
    };
    let adapter = match serde_yaml_ng::from_str::<Resource>(text) {
        Ok(Resource::ModelAdapter(a)) => a,
        Ok(other) => return bad(format!("kind {} is not a ModelAdapter", other.kind())),
        Err(e) => return bad(format!("invalid ModelAdapter document: {e}")),
    };
    if adapter.metadata.name != name {
        return bad(format!(
            "metadata.name '{}' differs from the path's name",
            super::engine::cut(&adapter.metadata.name, 128)
        ));
    }
    match s.0.apply(adapter) {
        Ok(()) => (
            StatusCode::ACCEPTED,
            axum::Json(serde_json::json!({"name": name, "applied": true})),
        )
            .into_response(),
        Err(e) => bad(e.to_string()),
    }
}

async fn delete(State(s): State<Shared>, Path(name): Path<String>, headers: HeaderMap) -> Response {
    if let Err(denied) = s.1.check_headers(&headers) {
        return denied.into_response();
    }
    if s.0.delete(&name) {
        (
            StatusCode::ACCEPTED,
            axum::Json(serde_json::json!({"name": name, "deleted": true})),
        )
            .into_response()
    } else {
        not_found(&name)
    }
}
