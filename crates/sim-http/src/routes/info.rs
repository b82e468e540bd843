//! The routes that do not generate: health, version, load, models, tokenizer, metrics, and the
//! discovery routes sglang-router reads when registering a worker.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::protocol::ChatMessage;
use super::{App, unix_now};
use crate::config::SimConfig;
use crate::error::{ApiError, JsonBody, ParamError};
use crate::metrics::CONTENT_TYPE;

/// What `/version` reports: the vLLM release whose API, validation and metrics this mirrors
/// (clients and routers branch on it; the simulator's own version is in `brix --version`).
pub(crate) const VERSION: &str = "0.32.0";

/// `GET /health` and `/ping`: 200 when serving, 503 during `--startup-delay`, 500 when the
/// engine loop is gone.
pub(crate) async fn health(State(app): State<Arc<App>>) -> StatusCode {
    if app.faults.is_starting() {
        StatusCode::SERVICE_UNAVAILABLE
    } else if !app.engine.is_alive() {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::OK
    }
}

/// `POST /reset_prefix_cache` (vLLM serves it in dev mode): `{"success": bool}`, false while
/// requests hold blocks.
pub(crate) async fn reset_prefix_cache(
    State(app): State<Arc<App>>,
) -> Result<Json<Value>, ApiError> {
    let success = app.engine.reset_prefix_cache().await?;
    Ok(Json(json!({ "success": success })))
}

/// `GET /version`.
pub(crate) async fn version() -> Json<Value> {
    Json(json!({ "version": VERSION }))
}

/// `GET /load`: requests in flight, as vLLM's load tracking reports them.
pub(crate) async fn load(State(app): State<Arc<App>>) -> Json<Value> {
    Json(json!({ "server_load": app.load.current() }))
}

fn permission(created: u64, id: &str) -> Value {
    json!({
        "id": id,
        "object": "model_permission",
        "created": created,
        "allow_create_engine": false,
        "allow_sampling": true,
        "allow_logprobs": true,
        "allow_search_indices": false,
        "allow_view": true,
        "allow_fine_tuning": false,
        "organization": "*",
        "group": null,
        "is_blocking": false,
    })
}

/// `GET /v1/models`: the base model, then each adapter with `parent` = the served name.
pub(crate) async fn models(State(app): State<Arc<App>>) -> Result<Json<Value>, ApiError> {
    let snap = app.engine.snapshot().await?;
    let created = unix_now();
    let card = |id: &str, root: &str, parent: Option<&str>, max_len: Option<u32>| {
        json!({
            "id": id,
            "object": "model",
            "created": created,
            "owned_by": "vllm",
            "root": root,
            "parent": parent,
            "max_model_len": max_len,
            "permission": [permission(created, &app.ids.next("modelperm"))],
        })
    };
    let mut data = vec![card(
        &app.served_model_name,
        &app.model_root,
        None,
        Some(app.max_model_len),
    )];
    for (name, path) in &snap.loras {
        data.push(card(name, path, Some(&app.served_model_name), None));
    }
    Ok(Json(json!({ "object": "list", "data": data })))
}

/// Refuses a `model` that is neither the served model nor a loaded adapter.
async fn check_model(app: &App, model: Option<&str>) -> Result<(), ApiError> {
    app.check_model(model.map(str::to_string)).await.map(|_| ())
}

/// vLLM's `TokenizeCompletionRequest` or `TokenizeChatRequest`.
#[derive(Debug, Deserialize)]
pub(crate) struct TokenizeRequest {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    prompt: Option<String>,
    #[serde(default)]
    messages: Option<Vec<ChatMessage>>,
    #[serde(default)]
    add_generation_prompt: Option<bool>,
}

/// `POST /tokenize`.
pub(crate) async fn tokenize(
    State(app): State<Arc<App>>,
    JsonBody(req): JsonBody<TokenizeRequest>,
) -> Result<Json<Value>, ApiError> {
    check_model(&app, req.model.as_deref()).await?;
    let tokens = match (&req.prompt, &req.messages) {
        (Some(p), _) => app.tokenizer.encode(p),
        (None, Some(msgs)) => {
            let add = req.add_generation_prompt.unwrap_or(true);
            let text = app
                .tokenizer
                .render_chat(msgs.iter().map(|m| (m.role.as_str(), m.text())), add);
            app.tokenizer.encode_chat(&text)
        }
        (None, None) => return Err(ParamError::NothingToTokenize.into()),
    };
    Ok(Json(json!({
        "count": tokens.len(),
        "max_model_len": app.max_model_len,
        "tokens": tokens,
        "token_strs": null,
    })))
}

/// vLLM's `DetokenizeRequest`.
#[derive(Debug, Deserialize)]
pub(crate) struct DetokenizeRequest {
    #[serde(default)]
    model: Option<String>,
    tokens: Vec<u32>,
}

/// `POST /detokenize`.
pub(crate) async fn detokenize(
    State(app): State<Arc<App>>,
    JsonBody(req): JsonBody<DetokenizeRequest>,
) -> Result<Json<Value>, ApiError> {
    check_model(&app, req.model.as_deref()).await?;
    let text = app
        .tokenizer
        .decode(&req.tokens)
        .map_err(ParamError::TokenOutOfVocab)?;
    Ok(Json(json!({ "prompt": text })))
}

/// `GET /metrics`: gauges from a fresh snapshot, then the whole registry as text.
pub(crate) async fn metrics(State(app): State<Arc<App>>) -> Result<Response, ApiError> {
    let snap = app.engine.snapshot().await?;
    match app.metrics.render(&snap.engine) {
        Ok(text) => Ok(([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response()),
        Err(e) => {
            tracing::error!(error = %e, "rendering metrics");
            Ok(StatusCode::INTERNAL_SERVER_ERROR.into_response())
        }
    }
}

/// `GET /get_server_info`.
pub(crate) async fn get_server_info(State(app): State<Arc<App>>) -> Json<Value> {
    Json(app.server_info.clone())
}

/// `GET /get_model_info`.
pub(crate) async fn get_model_info(State(app): State<Arc<App>>) -> Json<Value> {
    Json(app.model_info.clone())
}

/// sglang's `/get_server_info` fields that routers read (model path, DP size, capacity).
pub(crate) fn server_info(cfg: &SimConfig, num_gpu_blocks: u32) -> Value {
    let e = &cfg.engine;
    json!({
        "model_path": cfg.model.hf_id,
        "tokenizer_path": cfg.model.hf_id,
        "served_model_name": cfg.served_model_name,
        "dp_size": 1,
        "tp_size": cfg.model.tensor_parallel_size,
        "context_length": e.max_model_len,
        "max_total_tokens": u64::from(num_gpu_blocks) * u64::from(e.block_size),
        "max_prefill_tokens": e.max_num_batched_tokens,
        "max_running_requests": e.max_num_seqs,
        "page_size": e.block_size,
        "enable_lora": e.enable_lora,
        "max_loras_per_batch": e.max_loras,
        "is_embedding": false,
        "version": VERSION,
        "gpu": cfg.gpu.name,
    })
}

/// sglang's `/get_model_info`.
pub(crate) fn model_info(cfg: &SimConfig) -> Value {
    json!({
        "model_path": cfg.model.hf_id,
        "tokenizer_path": cfg.model.hf_id,
        "is_generation": true,
        "preferred_sampling_params": null,
        "weight_version": "default",
        "has_image_understanding": false,
        "has_audio_understanding": false,
    })
}
