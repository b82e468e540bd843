//! The HTTP surface: vLLM's OpenAI server routes plus the two sglang-router discovery routes,
//! over shared state that holds the engine handle, metrics, tokenizer and faults.

mod choice;
mod info;
mod lora;
mod openai;
mod protocol;
mod render;
mod stream;
mod validate;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use serde_json::Value;

use crate::config::SimConfig;
use crate::driver::EngineHandle;
use crate::error::ApiError;
use crate::faults::Faults;
use crate::metrics::Metrics;
use crate::tokenizer::Tokenizer;

pub(crate) use lora::{expand_home, is_local as lora_is_local, read_adapter};

/// Bodies up to this size are read; long-context prompts are megabytes of JSON.
const BODY_LIMIT: usize = 64 << 20;

/// Everything handlers share.
#[derive(Debug)]
pub(crate) struct App {
    served_model_name: String,
    model_root: String,
    max_model_len: u32,
    enable_lora: bool,
    engine: EngineHandle,
    metrics: Arc<Metrics>,
    tokenizer: Tokenizer,
    faults: Faults,
    load: LoadTracker,
    ids: ResponseIds,
    /// The distinct filler tokens, which logprob alternatives are drawn from.
    vocab: Arc<[u32]>,
    /// `system_fingerprint` of every response, fixed per configuration.
    fingerprint: String,
    /// `/get_server_info` and `/get_model_info` bodies, fixed at start-up.
    server_info: Value,
    model_info: Value,
}

/// The parts of [`App`] that `lib.rs` builds before the state exists.
pub(crate) struct AppParts {
    pub(crate) engine: EngineHandle,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) tokenizer: Tokenizer,
    pub(crate) faults: Faults,
    pub(crate) num_gpu_blocks: u32,
}

impl App {
    pub(crate) fn new(cfg: &SimConfig, parts: AppParts) -> Self {
        let mut vocab = parts.tokenizer.filler();
        vocab.sort_unstable();
        vocab.dedup();
        Self {
            vocab: vocab.into(),
            fingerprint: fingerprint(cfg),
            served_model_name: cfg.served_model_name.clone(),
            model_root: cfg.model.hf_id.clone(),
            max_model_len: cfg.engine.max_model_len,
            enable_lora: cfg.engine.enable_lora,
            engine: parts.engine,
            metrics: parts.metrics,
            tokenizer: parts.tokenizer,
            faults: parts.faults,
            load: LoadTracker::default(),
            ids: ResponseIds::new(),
            server_info: info::server_info(cfg, parts.num_gpu_blocks),
            model_info: info::model_info(cfg),
        }
    }

    /// The name a response reports and the adapter to use: no `model`, an empty one or the
    /// served name mean the base model; anything else must be a loaded adapter (404 as
    /// vLLM's `_check_model` otherwise).
    async fn check_model(
        &self,
        model: Option<String>,
    ) -> Result<(String, Option<String>), ApiError> {
        let m = match model {
            Some(m) if !m.is_empty() && m != self.served_model_name => m,
            _ => return Ok((self.served_model_name.clone(), None)),
        };
        let snap = self.engine.snapshot().await?;
        match snap.loras.iter().any(|(name, _)| *name == m) {
            true => Ok((m.clone(), Some(m))),
            false => Err(ApiError::UnknownModel {
                model: m,
                served: self.served_model_name.clone(),
            }),
        }
    }
}

/// The routes. The LoRA routes exist only with `--enable-lora`: vLLM gates them on
/// `VLLM_ALLOW_RUNTIME_LORA_UPDATING`, which only makes sense with LoRA enabled, so the
/// simulator folds the two switches into one.
pub(crate) fn router(app: Arc<App>) -> Router {
    let mut r = Router::new()
        .route("/v1/completions", post(openai::completions))
        .route("/v1/chat/completions", post(openai::chat))
        .route("/v1/models", get(info::models))
        .route("/health", get(info::health))
        .route("/ping", get(info::health).post(info::health))
        .route("/version", get(info::version))
        .route("/load", get(info::load))
        .route("/tokenize", post(info::tokenize))
        .route("/detokenize", post(info::detokenize))
        .route("/metrics", get(info::metrics))
        .route("/reset_prefix_cache", post(info::reset_prefix_cache))
        // sglang's discovery routes; newer routers ask for the unprefixed names first.
        .route("/get_server_info", get(info::get_server_info))
        .route("/server_info", get(info::get_server_info))
        .route("/get_model_info", get(info::get_model_info))
        .route("/model_info", get(info::get_model_info));
    if app.enable_lora {
        r = r
            .route("/v1/load_lora_adapter", post(lora::load))
            .route("/v1/unload_lora_adapter", post(lora::unload));
    }
    r.fallback(|| async { ApiError::NoRoute })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(app)
}

/// Requests in flight, for vLLM's `/load` (`server_load`).
#[derive(Clone, Debug, Default)]
struct LoadTracker(Arc<AtomicUsize>);

impl LoadTracker {
    fn track(&self) -> LoadGuard {
        self.0.fetch_add(1, Ordering::Relaxed);
        LoadGuard(self.0.clone())
    }
    fn current(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
}

/// One in-flight request; released when the response (or its stream) is dropped.
#[derive(Debug)]
pub(crate) struct LoadGuard(Arc<AtomicUsize>);

impl Drop for LoadGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Response ids in vLLM's shape (`cmpl-<16 hex>`, as its `random_uuid`), unique per process
/// run.
#[derive(Debug)]
struct ResponseIds {
    nonce: u64,
    next: AtomicU64,
}

impl ResponseIds {
    fn new() -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        Self {
            nonce: (nanos as u64) ^ u64::from(std::process::id()).rotate_left(32),
            next: AtomicU64::new(1),
        }
    }
    fn next(&self, prefix: &str) -> String {
        // SplitMix64 over a per-run counter: distinct for 2^64 ids, random-looking like a uuid.
        let mut z = self.nonce.wrapping_add(
            self.next
                .fetch_add(1, Ordering::Relaxed)
                .wrapping_mul(0x9e37_79b9_7f4a_7c15),
        );
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        format!("{prefix}-{:016x}", z ^ (z >> 31))
    }
}

/// vLLM's default (`full`) fingerprint: `vllm-<version>[-tp<N>]-<8 hex of the config hash>`.
fn fingerprint(cfg: &SimConfig) -> String {
    // FNV-1a over the settings that make the engine what it is: stable across runs.
    let text = format!(
        "{}|{}|{}|{:?}",
        cfg.served_model_name, cfg.model.hf_id, cfg.gpu.name, cfg.engine
    );
    let hash = text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let tp = match cfg.model.tensor_parallel_size {
        n if n > 1 => format!("tp{n}-"),
        _ => String::new(),
    };
    format!("vllm-{}-{tp}{:08x}", info::VERSION, hash as u32)
}

/// Seconds since the Unix epoch, for `created` fields.
fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
