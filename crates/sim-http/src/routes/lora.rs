//! `POST /v1/load_lora_adapter` and `POST /v1/unload_lora_adapter`, with vLLM's plain-text
//! success replies and its error types (`InvalidUserInput` for a missing field or a duplicate,
//! `NotFoundError` for an unknown adapter). Changes apply between engine steps.

use std::sync::Arc;

use axum::extract::State;
use serde::Deserialize;

use super::App;
use crate::error::{ApiError, JsonBody};

/// vLLM's `LoadLoRAAdapterRequest` (`load_inplace` is accepted and ignored).
#[derive(Debug, Deserialize)]
pub(crate) struct LoadRequest {
    #[serde(default)]
    lora_name: Option<String>,
    #[serde(default)]
    lora_path: Option<String>,
}

/// vLLM's `UnloadLoRAAdapterRequest` (`lora_int_id` is accepted and ignored).
#[derive(Debug, Deserialize)]
pub(crate) struct UnloadRequest {
    #[serde(default)]
    lora_name: Option<String>,
}

fn given(s: Option<String>) -> Option<String> {
    s.filter(|s| !s.is_empty())
}

/// `POST /v1/load_lora_adapter`.
pub(crate) async fn load(
    State(app): State<Arc<App>>,
    JsonBody(req): JsonBody<LoadRequest>,
) -> Result<String, ApiError> {
    let (Some(name), Some(path)) = (given(req.lora_name), given(req.lora_path)) else {
        return Err(ApiError::LoraFieldsMissing);
    };
    app.engine.load_lora(name.clone(), path).await??;
    tracing::info!(adapter = %name, "loaded LoRA adapter");
    Ok(format!(
        "Success: LoRA adapter '{name}' added successfully."
    ))
}

/// `POST /v1/unload_lora_adapter`.
pub(crate) async fn unload(
    State(app): State<Arc<App>>,
    JsonBody(req): JsonBody<UnloadRequest>,
) -> Result<String, ApiError> {
    let name = given(req.lora_name).ok_or(ApiError::LoraNameMissing)?;
    app.engine.unload_lora(name.clone()).await??;
    tracing::info!(adapter = %name, "unloaded LoRA adapter");
    Ok(format!(
        "Success: LoRA adapter '{name}' removed successfully."
    ))
}
