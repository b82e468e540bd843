//! `POST /v1/load_lora_adapter` and `POST /v1/unload_lora_adapter`, with vLLM's plain-text
//! success replies (no content type) and its errors: `InvalidUserInput` for a missing field,
//! a duplicate or the base model's name, `NotFoundError` for an unknown adapter or a local
//! path that does not exist, `InternalServerError` for a rank above `--max-lora-rank`.
//!
//! A local path (absolute, or starting with `.` or `~`) is read as vLLM reads it: `r` from
//! `adapter_config.json` (the largest of `r` and `rank_pattern`) and the weights' size from the
//! safetensors header; both then price the adapter's loads in the engine. Any other path (a
//! Hugging Face id, a URL) stands for a remote adapter of `--max-lora-rank`, since the
//! simulator has no hub to download from. Changes apply between engine steps.

use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use brix_sim::{LoraError, LoraWeights};
use serde::Deserialize;
use serde_json::Value;

use super::App;
use crate::error::{ApiError, JsonBody};

/// The largest safetensors header read (the format caps it at 100 MB; real adapters' are KBs).
const MAX_HEADER: u64 = 100 << 20;

/// vLLM's `LoadLoRAAdapterRequest`.
#[derive(Debug, Deserialize)]
pub(crate) struct LoadRequest {
    #[serde(default)]
    lora_name: Option<String>,
    #[serde(default)]
    lora_path: Option<String>,
    #[serde(default)]
    load_inplace: Option<bool>,
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

/// vLLM answers success as a bare body: `Response(content=...)`, no media type.
fn plain(text: String) -> Response {
    Response::new(Body::from(text))
}

/// `POST /v1/load_lora_adapter`.
pub(crate) async fn load(
    State(app): State<Arc<App>>,
    JsonBody(req): JsonBody<LoadRequest>,
) -> Result<Response, ApiError> {
    let (Some(name), Some(path)) = (given(req.lora_name), given(req.lora_path)) else {
        return Err(ApiError::LoraFieldsMissing);
    };
    if name == app.served_model_name {
        return Err(ApiError::LoraNameConflict(name));
    }
    let inplace = req.load_inplace.unwrap_or(false);
    let weights = match is_local(&path) {
        false => LoraWeights::default(),
        true => {
            let p = path.clone();
            let read = tokio::task::spawn_blocking(move || read_adapter(&expand_home(&p))).await;
            match read {
                Ok(Some(w)) => w,
                _ => return Err(ApiError::LoraNotFound { name, path }),
            }
        }
    };
    match app
        .engine
        .load_lora(name.clone(), path, weights, inplace)
        .await?
    {
        Ok(()) => {}
        Err(e @ LoraError::RankTooLarge { .. }) => return Err(ApiError::LoraWorker(e)),
        Err(e) => return Err(e.into()),
    }
    tracing::info!(adapter = %name, rank = ?weights.rank, bytes = ?weights.bytes, "loaded LoRA adapter");
    Ok(plain(format!(
        "Success: LoRA adapter '{name}' added successfully."
    )))
}

/// `POST /v1/unload_lora_adapter`.
pub(crate) async fn unload(
    State(app): State<Arc<App>>,
    JsonBody(req): JsonBody<UnloadRequest>,
) -> Result<Response, ApiError> {
    let name = given(req.lora_name).ok_or(ApiError::LoraNameMissing)?;
    app.engine.unload_lora(name.clone()).await??;
    tracing::info!(adapter = %name, "unloaded LoRA adapter");
    Ok(plain(format!(
        "Success: LoRA adapter '{name}' removed successfully."
    )))
}

/// Whether vLLM would read `path` from the local disk (rather than resolve it on the hub):
/// absolute or home-relative paths, explicit relative ones, and relative paths that exist.
pub(crate) fn is_local(path: &str) -> bool {
    path.starts_with('/')
        || path.starts_with('.')
        || path.starts_with('~')
        || Path::new(path).exists()
}

/// `path` with a leading `~/` expanded from `$HOME`, as vLLM's `os.path.expanduser`.
pub(crate) fn expand_home(path: &str) -> std::path::PathBuf {
    match (path.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => Path::new(&home).join(rest),
        _ => path.into(),
    }
}

/// Rank and size of the adapter in `dir`; None when it is not a PEFT adapter folder (vLLM's
/// `FileNotFoundError`, reported as not found).
pub(crate) fn read_adapter(dir: &Path) -> Option<LoraWeights> {
    let mut config = String::new();
    File::open(dir.join("adapter_config.json"))
        .ok()?
        .take(1 << 20)
        .read_to_string(&mut config)
        .ok()?;
    let config: Value = serde_json::from_str(&config).ok()?;
    let pattern_max = config
        .get("rank_pattern")
        .and_then(Value::as_object)
        .and_then(|m| m.values().filter_map(Value::as_u64).max());
    let rank = config
        .get("r")
        .and_then(Value::as_u64)
        .max(pattern_max)
        .map(|r| r.min(u64::from(u32::MAX)) as u32);
    let bytes = safetensors_bytes(&dir.join("adapter_model.safetensors")).or_else(|| {
        std::fs::metadata(dir.join("adapter_model.bin"))
            .ok()
            .map(|m| m.len())
    });
    Some(LoraWeights { rank, bytes })
}

/// Bytes of tensor data a safetensors file declares: the largest end of `data_offsets` in
/// its JSON header (an 8-byte little-endian length, then the header).
fn safetensors_bytes(file: &Path) -> Option<u64> {
    let mut f = File::open(file).ok()?;
    let mut len = [0u8; 8];
    f.read_exact(&mut len).ok()?;
    let len = u64::from_le_bytes(len);
    if len > MAX_HEADER {
        return None;
    }
    let mut header = vec![0u8; len as usize];
    f.read_exact(&mut header).ok()?;
    let header: Value = serde_json::from_slice(&header).ok()?;
    header
        .as_object()?
        .values()
        .filter_map(|t| t.get("data_offsets")?.get(1)?.as_u64())
        .max()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adapters_are_read_as_peft_writes_them() {
        let dir = std::env::temp_dir().join(format!("brix-lora-unit-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        assert_eq!(read_adapter(&dir), None);
        let _ = std::fs::write(
            dir.join("adapter_config.json"),
            r#"{"r": 8, "rank_pattern": {"q_proj": 12}, "lora_alpha": 16}"#,
        );
        let header = br#"{"a":{"dtype":"BF16","shape":[8,256],"data_offsets":[0,4096]},"b":{"dtype":"BF16","shape":[256,8],"data_offsets":[4096,8192]}}"#;
        let mut st = (header.len() as u64).to_le_bytes().to_vec();
        st.extend_from_slice(header);
        st.extend(std::iter::repeat_n(0u8, 8192));
        let _ = std::fs::write(dir.join("adapter_model.safetensors"), st);
        assert_eq!(
            read_adapter(&dir),
            Some(LoraWeights {
                rank: Some(12),
                bytes: Some(8192)
            })
        );
        let _ = std::fs::remove_dir_all(&dir);
        assert!(is_local("/a") && is_local("./a") && !is_local("org/adapter"));
    }
}
