//! `POST /v1/lora_adapter/load` and `/unload`. A load is direct (`lora_path`: the engine reads
//! it) or delegated (`artifact_url`: fetched through `brix_artifacts::Store`, verified, then
//! loaded from the local copy). Concurrent loads of one adapter from one source share one
//! download and one engine call; a load of the same name from another source meanwhile is 409.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use brix_api::openai::ErrorEnvelope;
use brix_artifacts::{Credentials, Expect, Store};
use serde::Deserialize;
use tokio::sync::OnceCell;

use crate::engine::Reply;
use crate::error::{ApiError, ERROR_TEXT, cut};
use crate::stats::Outcome;
use crate::{Runtime, json_body, valid_name};

/// Most distinct adapters being loaded at once; more is 429 (each holds a download).
const MAX_IN_FLIGHT: usize = 64;
/// Most adapters the runtime tracks as loaded (far above any engine's `--max-cpu-loras`).
const MAX_LOADED: usize = 4096;
/// Longest `lora_path` or `artifact_url` accepted.
const MAX_URL: usize = 4096;

/// AIBrix's `LoadLoraAdapterRequest` and `LoadLoraAdapterRuntimeRequest` in one body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoadRequest {
    lora_name: String,
    #[serde(default)]
    lora_path: Option<String>,
    #[serde(default)]
    artifact_url: Option<String>,
    #[serde(default)]
    credentials: Option<BTreeMap<String, String>>,
    #[serde(default)]
    credentials_secret: Option<String>,
    #[serde(default)]
    additional_config: Option<BTreeMap<String, String>>,
    /// Accepted for AIBrix compatibility and ignored: downloads stay under the runtime's
    /// models directory, never where a client points.
    #[serde(default)]
    #[allow(dead_code)]
    local_dir: Option<String>,
}

/// AIBrix's `UnloadLoraAdapterRequest` and `UnloadLoraAdapterRuntimeRequest` in one body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UnloadRequest {
    lora_name: String,
    #[serde(default)]
    cleanup_local: Option<bool>,
    #[serde(default)]
    #[allow(dead_code)]
    lora_int_id: Option<i64>,
}

/// An adapter this runtime loaded into the engine.
#[derive(Clone)]
struct Loaded {
    /// The directory the engine read it from.
    dir: PathBuf,
    /// Whether that directory is the runtime's own download (removed on unload with cleanup).
    owned: bool,
}

/// What a finished load answers (shared by every request coalesced into it).
type Finished = Result<Success, (ApiError, Outcome)>;

/// A cloneable success reply.
#[derive(Clone)]
struct Success {
    body: String,
    json: bool,
}

/// Where a load's adapter comes from.
enum Src {
    /// A directory the engine reads itself.
    Path(String),
    /// An artifact URL the runtime fetches first.
    Url(String),
}

struct Flight {
    source: String,
    cell: Arc<OnceCell<Finished>>,
}

/// The adapters this runtime loaded and the loads in progress.
pub(crate) struct Adapters {
    store: Store,
    loaded: Mutex<HashMap<String, Loaded>>,
    in_flight: Mutex<HashMap<String, Flight>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Adapters {
    pub(crate) fn new(store: Store) -> Self {
        Self {
            store,
            loaded: Mutex::new(HashMap::new()),
            in_flight: Mutex::new(HashMap::new()),
        }
    }

    /// How many adapters this runtime has loaded.
    pub(crate) fn count(&self) -> usize {
        lock(&self.loaded).len()
    }
}

/// Removes a flight from the map when its last waiter leaves or it has finished, so a load
/// whose caller went away does not block the name.
struct FlightGuard<'a> {
    adapters: &'a Adapters,
    name: String,
    cell: Arc<OnceCell<Finished>>,
}

impl Drop for FlightGuard<'_> {
    fn drop(&mut self) {
        let mut map = lock(&self.adapters.in_flight);
        if let Some(f) = map.get(&self.name)
            && Arc::ptr_eq(&f.cell, &self.cell)
            && (self.cell.initialized() || Arc::strong_count(&self.cell) <= 2)
        {
            map.remove(&self.name);
        }
    }
}

/// `POST /v1/lora_adapter/load`.
pub(crate) async fn load(
    State(rt): State<Arc<Runtime>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let result = match json_body::<LoadRequest>(body).await {
        Ok(req) => load_checked(&rt, &headers, req).await,
        Err(e) => Err((e, Outcome::Rejected)),
    };
    match result {
        Ok(r) => {
            rt.stats.loads.add(Outcome::Success);
            let ctype = match r.json {
                true => "application/json",
                false => "text/plain; charset=utf-8",
            };
            ([(header::CONTENT_TYPE, ctype)], r.body).into_response()
        }
        Err((e, outcome)) => {
            rt.stats.loads.add(outcome);
            e.into_response()
        }
    }
}

async fn load_checked(rt: &Arc<Runtime>, headers: &HeaderMap, req: LoadRequest) -> Finished {
    let reject = |e: ApiError| Err((e, Outcome::Rejected));
    if !valid_name(&req.lora_name) {
        return reject(
            ApiError::bad_request("lora_name must match ^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
                .param("lora_name"),
        );
    }
    let src = match (&req.lora_path, &req.artifact_url) {
        (Some(p), None) if !p.trim().is_empty() && p.len() <= MAX_URL => Src::Path(p.clone()),
        (None, Some(u)) if !u.trim().is_empty() && u.len() <= MAX_URL => Src::Url(u.clone()),
        (Some(_), Some(_)) => {
            return reject(ApiError::bad_request(
                "give either lora_path (direct) or artifact_url (delegated), not both",
            ));
        }
        (None, None) => {
            return reject(ApiError::bad_request(
                "lora_path (direct) or artifact_url (delegated) is required",
            ));
        }
        _ => {
            return reject(ApiError::bad_request(format!(
                "lora_path / artifact_url must be 1 to {MAX_URL} bytes"
            )));
        }
    };
    if req.credentials_secret.is_some() && req.credentials.is_none() {
        return reject(
            ApiError::bad_request(
                "credentials_secret (a mounted Kubernetes secret) is not supported; send credentials",
            )
            .param("credentials_secret"),
        );
    }
    let source = match &src {
        Src::Path(p) => format!("path {p}"),
        Src::Url(u) => format!("url {u}"),
    };
    let name = req.lora_name.clone();
    {
        let loaded = lock(&rt.adapters.loaded);
        if loaded.len() >= MAX_LOADED && !loaded.contains_key(&name) {
            return Err((
                ApiError::new(
                    StatusCode::INSUFFICIENT_STORAGE,
                    "too_many_adapters",
                    format!("{MAX_LOADED} adapters are loaded already; unload some first"),
                ),
                Outcome::Rejected,
            ));
        }
    }
    let (cell, follower) = {
        let mut map = lock(&rt.adapters.in_flight);
        match map.get(&name) {
            Some(f) if f.source == source => (Arc::clone(&f.cell), true),
            Some(_) => {
                return Err((
                    ApiError::new(
                        StatusCode::CONFLICT,
                        "conflict",
                        format!("adapter '{name}' is being loaded from another source"),
                    ),
                    Outcome::Rejected,
                ));
            }
            None if map.len() >= MAX_IN_FLIGHT => {
                return Err((
                    ApiError::new(
                        StatusCode::TOO_MANY_REQUESTS,
                        "rate_limit_exceeded",
                        format!("{MAX_IN_FLIGHT} adapter loads are already in progress"),
                    ),
                    Outcome::Rejected,
                ));
            }
            None => {
                let cell = Arc::new(OnceCell::new());
                map.insert(
                    name.clone(),
                    Flight {
                        source,
                        cell: Arc::clone(&cell),
                    },
                );
                (cell, false)
            }
        }
    };
    if follower {
        rt.stats
            .coalesced
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    // The guard holds this request's only reference to the flight (the map holds the other),
    // so when it drops the count says whether anyone else still waits.
    let guard = FlightGuard {
        adapters: &rt.adapters,
        name,
        cell,
    };
    let auth = headers.get(header::AUTHORIZATION);
    guard
        .cell
        .get_or_init(|| run_load(rt, auth, &req, &src))
        .await
        .clone()
}

/// The load itself: download when delegated, then the engine call.
async fn run_load(
    rt: &Runtime,
    auth: Option<&header::HeaderValue>,
    req: &LoadRequest,
    src: &Src,
) -> Finished {
    let name = &req.lora_name;
    let (dir, owned, url) = match src {
        Src::Path(path) => (PathBuf::from(path), false, None),
        Src::Url(url) => {
            let mut given = req.credentials.clone().unwrap_or_default();
            given.extend(req.additional_config.clone().unwrap_or_default());
            let creds = Credentials::from_map(&given).or(rt.env_creds.clone());
            let fetched = rt
                .adapters
                .store
                .fetch(url, &creds, &Expect::default())
                .await
                .map_err(|e| (ApiError::artifact(&e), Outcome::DownloadError))?;
            let owned = fetched.dir.starts_with(rt.adapters.store.dir());
            if owned {
                rt.stats
                    .download_bytes
                    .fetch_add(fetched.bytes, std::sync::atomic::Ordering::Relaxed);
            }
            (fetched.dir, owned, Some(url))
        }
    };
    let Some(path) = dir.to_str() else {
        return Err((
            ApiError::bad_request("the adapter's path is not UTF-8"),
            Outcome::Rejected,
        ));
    };
    let reply = rt
        .engine
        .load(name, path, auth)
        .await
        .map_err(|e| (e, Outcome::EngineError))?;
    if !reply.status.is_success() {
        return Err((engine_refused(&reply, "load"), Outcome::EngineError));
    }
    lock(&rt.adapters.loaded).insert(
        name.clone(),
        Loaded {
            dir: dir.clone(),
            owned,
        },
    );
    let engine_text = cut(&String::from_utf8_lossy(&reply.body), ERROR_TEXT);
    tracing::info!(adapter = %name, path = %dir.display(), delegated = url.is_some(), "adapter loaded");
    Ok(match url {
        None => Success {
            body: String::from_utf8_lossy(&reply.body).into_owned(),
            json: false,
        },
        Some(url) => Success {
            body: serde_json::json!({
                "status": "success",
                "message": format!("Successfully loaded adapter {name} from {}", cut(url, 256)),
                "local_path": path,
                "engine_response": {"message": engine_text},
            })
            .to_string(),
            json: true,
        },
    })
}

/// An engine's refusal as ours: its 4xx kept (with its message and type, cut short), its 5xx
/// as 502.
fn engine_refused(reply: &Reply, what: &str) -> ApiError {
    let parsed = ErrorEnvelope::parse(&reply.body);
    let message = match &parsed {
        Some(e) => e.message.clone(),
        None => String::from_utf8_lossy(&reply.body).into_owned(),
    };
    let code = reply.status.as_u16();
    let status = match reply.status.is_client_error() {
        true => reply.status,
        false => StatusCode::BAD_GATEWAY,
    };
    let kind = match (status.is_client_error(), code) {
        (_, 404) => "not_found_error",
        (true, _) => "invalid_request_error",
        (false, _) => "engine_error",
    };
    ApiError::new(
        status,
        kind,
        format!(
            "engine {what} answered {code}: {}",
            cut(&message, ERROR_TEXT)
        ),
    )
}

/// `POST /v1/lora_adapter/unload`: the engine's unload, then (unless `cleanup_local` is
/// false) removal of the runtime's own download of it. An adapter the engine does not know
/// is 404 (its files are still cleaned up).
pub(crate) async fn unload(
    State(rt): State<Arc<Runtime>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let (resp, outcome) = match json_body::<UnloadRequest>(body).await {
        Err(e) => (e.into_response(), Outcome::Rejected),
        Ok(req) if !valid_name(&req.lora_name) => (
            ApiError::bad_request("lora_name must match ^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
                .param("lora_name")
                .into_response(),
            Outcome::Rejected,
        ),
        Ok(req) => unload_checked(&rt, &headers, req).await,
    };
    rt.stats.unloads.add(outcome);
    resp
}

async fn unload_checked(
    rt: &Runtime,
    headers: &HeaderMap,
    req: UnloadRequest,
) -> (Response, Outcome) {
    let name = &req.lora_name;
    let reply = match rt
        .engine
        .unload(name, headers.get(header::AUTHORIZATION))
        .await
    {
        Ok(r) => r,
        Err(e) => return (e.into_response(), Outcome::EngineError),
    };
    let gone = reply.status.is_success() || reply.status == StatusCode::NOT_FOUND;
    if !gone {
        return (
            engine_refused(&reply, "unload").into_response(),
            Outcome::EngineError,
        );
    }
    let removed = lock(&rt.adapters.loaded).remove(name);
    let mut cleaned = false;
    if let Some(l) = removed
        && l.owned
        && req.cleanup_local.unwrap_or(true)
    {
        cleaned = cleanup(rt, &l.dir).await;
    }
    if reply.status == StatusCode::NOT_FOUND {
        let e = engine_refused(&reply, "unload");
        return (e.into_response(), Outcome::EngineError);
    }
    tracing::info!(adapter = %name, cleaned, "adapter unloaded");
    let body = serde_json::json!({
        "status": "success",
        "message": format!("Successfully unloaded adapter {name}"),
        "cleaned_local": cleaned,
    });
    (axum::Json(body).into_response(), Outcome::Success)
}

/// Removes a downloaded adapter directory unless another loaded adapter uses it.
async fn cleanup(rt: &Runtime, dir: &Path) -> bool {
    let shared = lock(&rt.adapters.loaded).values().any(|l| l.dir == dir);
    if shared || !dir.starts_with(rt.adapters.store.dir()) {
        return false;
    }
    let d = dir.to_path_buf();
    match tokio::task::spawn_blocking(move || std::fs::remove_dir_all(&d)).await {
        Ok(Ok(())) => true,
        Ok(Err(e)) => {
            tracing::warn!(dir = %dir.display(), error = %e, "removing an unloaded adapter's files");
            false
        }
        Err(_) => false,
    }
}
