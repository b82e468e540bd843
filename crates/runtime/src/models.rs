//! `POST /v1/model/download` and `GET /v1/model/list`: whole models fetched in the background
//! through a files-only `brix_artifacts::Store` under `<models_dir>/models`, with AIBrix's
//! `ModelStatusCard` answers (`downloading`, `downloaded`, `failed`).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use brix_artifacts::{Credentials, Expect, Store};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::ApiError;
use crate::stats::Outcome;
use crate::{Runtime, json_body, valid_name};

/// Most models the runtime keeps track of (each download is a directory of the disk).
const MAX_MODELS: usize = 256;

/// AIBrix's `DownloadModelRequest`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DownloadRequest {
    model_uri: String,
    /// Accepted for AIBrix compatibility and ignored: models stay under the runtime's directory.
    #[serde(default)]
    #[allow(dead_code)]
    local_dir: Option<String>,
    #[serde(default)]
    model_name: Option<String>,
    #[serde(default)]
    download_extra_config: Option<BTreeMap<String, Value>>,
}

/// AIBrix's `ModelStatusCard` (plus the reason a download failed).
#[derive(Clone, Serialize)]
struct Card {
    model_name: String,
    model_root_path: String,
    source: &'static str,
    model_status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// The models downloaded or downloading.
pub(crate) struct Models {
    store: Store,
    cards: Mutex<HashMap<String, Card>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Models {
    pub(crate) fn new(store: Store) -> Self {
        Self {
            store: store.files_only(),
            cards: Mutex::new(HashMap::new()),
        }
    }
}

/// The scheme as AIBrix's `RemoteSource` names it.
fn source_of(uri: &str) -> &'static str {
    match uri.split_once("://").map(|(s, _)| s) {
        Some("s3") => "s3",
        Some("huggingface") => "huggingface",
        Some("http" | "https") => "http",
        Some("tos") => "tos",
        Some(_) => "unknown",
        None => "local",
    }
}

/// AIBrix's `download_extra_config` keys (`ak`, `sk`, `endpoint`, `region`, `hf_*`) and
/// Brix's own (`AWS_*`, `HF_*`) as credentials; other keys are ignored.
fn credentials(extra: &BTreeMap<String, Value>) -> Credentials {
    let mut map = BTreeMap::new();
    for (k, v) in extra {
        let Some(v) = v.as_str() else { continue };
        let key = match k.as_str() {
            "ak" => "AWS_ACCESS_KEY_ID",
            "sk" => "AWS_SECRET_ACCESS_KEY",
            "endpoint" => "AWS_ENDPOINT_URL",
            "region" => "AWS_REGION",
            "hf_token" => "HF_TOKEN",
            "hf_endpoint" => "HF_ENDPOINT",
            "hf_revision" => "HF_REVISION",
            other => other,
        };
        map.insert(key.to_owned(), v.to_owned());
    }
    Credentials::from_map(&map)
}

/// `POST /v1/model/download`: starts the download (or reports the one under way or done).
pub(crate) async fn download(State(rt): State<Arc<Runtime>>, body: Body) -> Response {
    match start(&rt, body).await {
        Ok(card) => axum::Json(card).into_response(),
        Err(e) => {
            rt.stats.downloads.add(Outcome::Rejected);
            e.into_response()
        }
    }
}

async fn start(rt: &Arc<Runtime>, body: Body) -> Result<Card, ApiError> {
    let req: DownloadRequest = json_body(body).await?;
    let uri = req.model_uri.trim().to_owned();
    if uri.is_empty() || uri.len() > 4096 {
        return Err(ApiError::bad_request("model_uri must be 1 to 4096 bytes").param("model_uri"));
    }
    let name = match req.model_name {
        Some(n) => n,
        None => uri
            .trim_end_matches('/')
            .rsplit(['/', ':'])
            .next()
            .unwrap_or_default()
            .to_owned(),
    };
    if !valid_name(&name) {
        return Err(ApiError::bad_request(
            "model_name (or the model_uri's last segment) must match ^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$",
        )
        .param("model_name"));
    }
    let source = source_of(&uri);
    let card = {
        let mut cards = lock(&rt.models.cards);
        if let Some(c) = cards.get(&name)
            && c.model_status != "failed"
        {
            return Ok(c.clone());
        }
        if cards.len() >= MAX_MODELS && !cards.contains_key(&name) {
            return Err(ApiError::new(
                StatusCode::INSUFFICIENT_STORAGE,
                "too_many_models",
                format!("the runtime already tracks {MAX_MODELS} models"),
            ));
        }
        let card = Card {
            model_name: name.clone(),
            model_root_path: rt.models.store.dir().display().to_string(),
            source,
            model_status: "downloading",
            error: None,
        };
        cards.insert(name.clone(), card.clone());
        card
    };
    let creds =
        credentials(&req.download_extra_config.unwrap_or_default()).or(rt.env_creds.clone());
    let rt2 = Arc::clone(rt);
    tokio::spawn(async move {
        let got = rt2
            .models
            .store
            .fetch(&uri, &creds, &Expect::default())
            .await;
        let mut cards = lock(&rt2.models.cards);
        let Some(card) = cards.get_mut(&name) else {
            return;
        };
        match got {
            Ok(f) => {
                rt2.stats.downloads.add(Outcome::Success);
                rt2.stats
                    .download_bytes
                    .fetch_add(f.bytes, std::sync::atomic::Ordering::Relaxed);
                card.model_root_path = f.dir.display().to_string();
                card.model_status = "downloaded";
                tracing::info!(model = %name, dir = %f.dir.display(), bytes = f.bytes, "model downloaded");
            }
            Err(e) => {
                rt2.stats.downloads.add(Outcome::DownloadError);
                tracing::warn!(model = %name, error = %e, "model download failed");
                card.model_status = "failed";
                card.error = Some(ApiError::artifact(&e).message);
            }
        }
    });
    Ok(card)
}

/// `GET /v1/model/list`: every model downloaded or downloading, sorted by name (AIBrix's
/// `ListModelResponse`; its `local_dir` is not taken: the runtime lists its own directory).
pub(crate) async fn list(State(rt): State<Arc<Runtime>>) -> Response {
    let mut data: Vec<Card> = lock(&rt.models.cards).values().cloned().collect();
    data.sort_by(|a, b| a.model_name.cmp(&b.model_name));
    axum::Json(serde_json::json!({"object": "list", "data": data})).into_response()
}
