//! The runtime sidecar beside one engine (AIBrix's `aibrix-runtime`): adapter load and unload,
//! direct or delegated (the runtime downloads the artifact through `brix-artifacts`, the same
//! code the adapter controller uses), model download and list, health, and the engine's
//! metrics re-exported under the standard `aibrix:` names. Endpoints that change something
//! take `Authorization: Bearer <key>`; every engine call has a timeout and a bounded reply.

mod adapters;
mod engine;
mod error;
mod models;
mod stats;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use brix_artifacts::{Credentials, Limits, Store};
use subtle::ConstantTimeEq;

use crate::engine::Engine;
use crate::error::ApiError;
use crate::stats::Stats;

/// The metric rules and mode a [`RuntimeConfig`] takes, re-exported for callers.
pub use brix_metrics::{Mode, Rules};

/// Which engine API the runtime speaks for adapters (the paths differ).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EngineKind {
    /// vLLM: `/v1/load_lora_adapter`, `/v1/unload_lora_adapter`.
    Vllm,
    /// SGLang: `/load_lora_adapter`, `/unload_lora_adapter`.
    Sglang,
}

impl EngineKind {
    /// The name used on the command line and for the builtin metric rules.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Vllm => "vllm",
            Self::Sglang => "sglang",
        }
    }
}

/// Everything one runtime needs; built by `brix runtime` or by `brix up` beside a replica.
pub struct RuntimeConfig {
    /// The engine's base URL, e.g. `http://127.0.0.1:8000`.
    pub engine_url: String,
    /// Which engine API to speak.
    pub engine: EngineKind,
    /// Bearer key every endpoint that changes something (load, unload, download) requires;
    /// `None` lets anyone on the network change the engine's adapters.
    pub api_key: Option<String>,
    /// Sent to the engine as `Authorization: Bearer`; without it the caller's header is forwarded.
    pub engine_api_key: Option<String>,
    /// Where downloads go: `adapters/` (the artifact cache) and `models/`.
    pub models_dir: PathBuf,
    /// Metric rename rules for the engine's `/metrics`.
    pub rules: brix_metrics::Rules,
    /// Whether to rename, rename and keep the originals, or pass through.
    pub mode: brix_metrics::Mode,
    /// Bounds on every download.
    pub limits: Limits,
}

/// Largest request body any endpoint reads.
const MAX_BODY: usize = 64 << 10;

/// Shared by every handler.
pub(crate) struct Runtime {
    pub(crate) engine: Engine,
    pub(crate) api_key: Option<String>,
    pub(crate) adapters: adapters::Adapters,
    pub(crate) models: models::Models,
    pub(crate) env_creds: Credentials,
    pub(crate) stats: Stats,
    rules: brix_metrics::Rules,
    mode: brix_metrics::Mode,
    /// The last `/metrics` answer and when it was made (see [`metrics`]).
    last_metrics: tokio::sync::Mutex<Option<(tokio::time::Instant, axum::body::Bytes)>>,
}

/// Serves the runtime on `listener` until `shutdown` completes, then finishes in-flight requests.
pub async fn serve(
    listener: tokio::net::TcpListener,
    cfg: RuntimeConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router(cfg)?;
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

/// The runtime's routes over `cfg` (opens the download directories).
fn router(cfg: RuntimeConfig) -> std::io::Result<Router> {
    let adapter_store = Store::open(cfg.models_dir.join("adapters"), cfg.limits)?;
    let model_store = Store::open(cfg.models_dir.join("models"), cfg.limits)?;
    let rt = Arc::new(Runtime {
        engine: Engine::new(&cfg.engine_url, cfg.engine, cfg.engine_api_key)?,
        api_key: cfg.api_key.filter(|k| !k.is_empty()),
        adapters: adapters::Adapters::new(adapter_store),
        models: models::Models::new(model_store),
        env_creds: Credentials::from_env(),
        stats: Stats::default(),
        rules: cfg.rules,
        mode: cfg.mode,
        last_metrics: tokio::sync::Mutex::new(None),
    });
    let changes = Router::new()
        .route("/v1/lora_adapter/load", post(adapters::load))
        .route("/v1/lora_adapter/unload", post(adapters::unload))
        .route("/v1/model/download", post(models::download))
        .route_layer(middleware::from_fn_with_state(Arc::clone(&rt), require_key));
    Ok(Router::new()
        .merge(changes)
        .route("/v1/models", get(engine_models))
        .route("/v1/model/list", get(models::list))
        .route(
            "/healthz",
            get(|| async { axum::Json(serde_json::json!({"status": "ok"})) }),
        )
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .route("/v1/runtime/models", any(model_claims))
        .route("/v1/runtime/models/{*rest}", any(model_claims))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(rt))
}

/// Refuses a change without the runtime's key (when one is set): 401 with the envelope.
async fn require_key(State(rt): State<Arc<Runtime>>, req: Request, next: Next) -> Response {
    let Some(key) = &rt.api_key else {
        return next.run(req).await;
    };
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match given {
        Some(g) if bool::from(g.as_bytes().ct_eq(key.as_bytes())) => next.run(req).await,
        _ => {
            let outcome = stats::Outcome::Rejected;
            match req.uri().path() {
                "/v1/model/download" => rt.stats.downloads.add(outcome),
                "/v1/lora_adapter/unload" => rt.stats.unloads.add(outcome),
                _ => rt.stats.loads.add(outcome),
            }
            let mut resp = ApiError::new(
                StatusCode::UNAUTHORIZED,
                "authentication_error",
                "this endpoint needs Authorization: Bearer <the runtime's api key>",
            )
            .into_response();
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
            resp
        }
    }
}

/// `GET /v1/models`: the engine's answer as is (status and body).
async fn engine_models(State(rt): State<Arc<Runtime>>, headers: HeaderMap) -> Response {
    match rt.engine.models(headers.get(header::AUTHORIZATION)).await {
        Ok(r) => (
            r.status,
            [(header::CONTENT_TYPE, "application/json")],
            r.body,
        )
            .into_response(),
        Err(e) => e.into_response(),
    }
}

/// `GET /ready`: 200 while the engine's `/health` answers 200, else 503 with the reason.
async fn ready(State(rt): State<Arc<Runtime>>) -> Response {
    match rt.engine.healthy().await {
        Ok(()) => axum::Json(serde_json::json!({"status": "ready"})).into_response(),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({"status": "not ready", "reason": why})),
        )
            .into_response(),
    }
}

/// `GET /metrics`: the engine's series through the rules, then the runtime's own. An engine
/// that does not answer leaves only the runtime's (with `brix_runtime_engine_up 0`). One
/// engine scrape at a time: requests arriving while one runs wait for it and share its answer
/// (an exposition can be 16 MiB; a copy and a parse per client would multiply that).
async fn metrics(State(rt): State<Arc<Runtime>>) -> Response {
    let arrived = tokio::time::Instant::now();
    let mut last = rt.last_metrics.lock().await;
    let body = match &*last {
        Some((made, body)) if *made >= arrived => body.clone(),
        _ => {
            let body = axum::body::Bytes::from(scrape(&rt).await);
            *last = Some((tokio::time::Instant::now(), body.clone()));
            body
        }
    };
    drop(last);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

/// One scrape of the engine, standardised (off the async threads: it can take a second) and
/// followed by the runtime's own series.
async fn scrape(rt: &Arc<Runtime>) -> String {
    let scraped = rt.engine.metrics().await;
    let engine_up = scraped.is_ok();
    let mut text = match scraped {
        Ok(raw) => {
            let rt2 = Arc::clone(rt);
            tokio::task::spawn_blocking(move || {
                brix_metrics::standardise(&rt2.rules, &raw, rt2.mode)
            })
            .await
            .unwrap_or_default()
        }
        Err(e) => {
            tracing::warn!(error = %e.message, "scraping the engine's metrics");
            String::new()
        }
    };
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(&rt.stats.render(engine_up, rt.adapters.count()));
    text
}

/// AIBrix's ModelClaim lifecycle endpoints: not supported (501), said so in the envelope.
async fn model_claims(req: Request) -> ApiError {
    let path = error::cut(req.uri().path(), 80);
    ApiError::new(
        StatusCode::NOT_IMPLEMENTED,
        "not_implemented",
        format!(
            "{path}: the ModelClaim runtime lifecycle (activate, deactivate, kv-limit, sleep, wake) \
             is not supported by brix runtime; it manages one engine started beside it"
        ),
    )
}

async fn method_not_allowed(req: Request) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "invalid_request_error",
        format!(
            "{} is not allowed on {}",
            req.method(),
            error::cut(req.uri().path(), 80)
        ),
    )
}

async fn not_found(req: Request) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!(
            "no route {} {}",
            req.method(),
            error::cut(req.uri().path(), 80)
        ),
    )
}

/// Reads a JSON body of at most [`MAX_BODY`] bytes into `T`: 413 when larger, 400 when it is
/// not JSON or not `T`.
pub(crate) async fn json_body<T: serde::de::DeserializeOwned>(
    body: axum::body::Body,
) -> Result<T, ApiError> {
    let bytes = axum::body::to_bytes(body, MAX_BODY).await.map_err(|_| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request_error",
            format!("request body larger than {MAX_BODY} bytes"),
        )
    })?;
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
}

/// AIBrix's rule for names that become directory names: `^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`.
pub(crate) fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= 128
        && chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_could_leave_the_directory_are_refused() {
        for ok in ["lora-r8", "a", "A.b_c-1", &"x".repeat(128)] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in [
            "",
            "..",
            ".hidden",
            "../x",
            "a/b",
            "a\\b",
            "-a",
            "é",
            &"x".repeat(129),
            "a b",
        ] {
            assert!(!valid_name(bad), "{bad}");
        }
    }
}
