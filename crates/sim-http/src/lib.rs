//! `brix sim`: the [`brix_sim`] engine model behind vLLM's OpenAI-compatible HTTP API, in real
//! time.
//!
//! A client, router or gateway talks to it exactly as to vLLM: completions and chat (JSON and
//! SSE), `/v1/models`, runtime LoRA loading, `/tokenize`, `/health`, and `/metrics` with vLLM's
//! metric names, labels and buckets. Timing, batching, KV-cache pressure and prefix-cache hits
//! come from the engine model, so what is measured against `brix sim` carries over to vLLM.
//!
//! Modules: [`SimConfig`] (checked once) → `driver` (one task owns the engine) → `routes`
//! (handlers in stages) with `tokenizer`, `metrics`, `faults`, and `error` (the one place a
//! failure becomes vLLM's error body).

mod config;
mod driver;
mod error;
mod faults;
mod kv_events;
mod kv_pool;
mod metrics;
mod pydantic;
mod routes;
mod sanitize;
mod tokenizer;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use brix_net::ServeConfig;
use brix_sim::{Engine, LoraError, LoraWeights};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub use config::{FaultConfig, LoraModule, LoraModuleParseError, SimConfig, SimError};
pub use kv_pool::{KvPoolConfig, LOOKUP_TIMEOUT};

use driver::{Clock, EngineHandle};
use faults::Faults;
use metrics::{Metrics, MetricsSpec};
use routes::{App, AppParts};
use tokenizer::Tokenizer;
pub use tokenizer::export_tokenizer;

/// Checks `config`, builds the engine (preloading `lora_modules`), starts the driver task on
/// the current tokio runtime and returns the routes. Everything that can fail at start-up
/// fails here, before any port opens; callers that bring their own server (or drive the
/// routes in-process) use this instead of [`run`].
pub fn router(config: &SimConfig) -> Result<Router, SimError> {
    config.validate()?;
    let tokenizer = Tokenizer::load(config.tokenizer.as_deref())?;
    let kv_events = config.kv_events.as_ref().filter(|k| k.publishes());
    if let Some(k) = kv_events {
        kv_events::precheck(k)?;
    }
    let mut engine_cfg = config.engine.clone();
    engine_cfg.kv_events |= kv_events.is_some();
    let mut engine = Engine::new(engine_cfg, config.model.clone(), config.gpu.clone())?
        .with_filler(tokenizer.filler());
    for m in &config.lora_modules {
        // A local folder is read as a runtime load reads it; a missing one is refused.
        let weights = match routes::lora_is_local(&m.path) {
            false => LoraWeights::default(),
            true => routes::read_adapter(&routes::expand_home(&m.path)).ok_or_else(|| {
                SimError::LoraModule {
                    name: m.name.clone(),
                    source: LoraError::NotFound(m.path.clone()),
                }
            })?,
        };
        engine
            .load_lora_with(&m.name, &m.path, weights, false)
            .map_err(|source| SimError::LoraModule {
                name: m.name.clone(),
                source,
            })?;
    }
    let pool = match &config.kv_pool {
        Some(p) => {
            let (tier, cfg, counters) = kv_pool::tier(config, p)?;
            engine = engine.with_kv_tier(tier, cfg);
            Some(counters)
        }
        None => None,
    };
    let num_gpu_blocks = engine.num_gpu_blocks();
    let metrics = Arc::new(Metrics::new(&MetricsSpec {
        served_model_name: &config.served_model_name,
        engine: &config.engine,
        num_gpu_blocks,
        show_hidden: config.show_hidden_metrics_for_version.is_some(),
        kv_pool: pool,
    })?);
    let clock = Clock::start();
    let handle = EngineHandle::spawn(engine, metrics.clone(), clock);
    if let Some(k) = kv_events {
        handle.start_kv_publisher(k.clone());
    }
    let parts = AppParts {
        engine: handle,
        metrics,
        tokenizer,
        faults: Faults::new(config.faults.clone(), clock, config.engine.seed),
        num_gpu_blocks,
    };
    tracing::info!(
        model = %config.served_model_name,
        gpu = %config.gpu.name,
        num_gpu_blocks,
        max_num_seqs = config.engine.max_num_seqs,
        max_num_batched_tokens = config.engine.max_num_batched_tokens,
        "engine ready"
    );
    Ok(routes::router(Arc::new(App::new(config, parts))))
}

/// Serves `config` on an already-bound listener until the future is dropped (tests bind
/// `127.0.0.1:0` themselves and read the port from the listener).
pub async fn run(config: SimConfig, listener: TcpListener) -> Result<(), SimError> {
    let app = router(&config)?;
    brix_net::serve_router(
        listener,
        app,
        ServeConfig::default(),
        std::future::pending(),
    )
    .await;
    Ok(())
}

/// Serves `config` on `listener` in a task that owns every connection it accepts, so aborting
/// the task is a crash: the port closes and open connections (kept-alive ones included) are
/// cut at once. `brix up` runs simulated replicas this way, and tests kill engines with it.
/// Accept errors (out of file descriptors) do not end it.
pub fn spawn_owned(config: &SimConfig, listener: TcpListener) -> Result<JoinHandle<()>, SimError> {
    let app = router(config)?;
    Ok(tokio::spawn(brix_net::serve_router(
        listener,
        app,
        ServeConfig::default(),
        std::future::pending(),
    )))
}

/// Binds `addr`, prints `brix sim listening on http://HOST:PORT` on stdout once ready (the
/// line callers wait for, with the real port when `addr` asked for port 0), and serves until
/// Ctrl-C or SIGTERM, then drains the requests in flight.
pub async fn serve(config: SimConfig, addr: SocketAddr) -> Result<(), SimError> {
    let app = router(&config)?;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| SimError::Bind { addr, source })?;
    let local = listener.local_addr().map_err(SimError::Serve)?;
    println!("brix sim listening on http://{local}");
    brix_net::serve_router(
        listener,
        app,
        ServeConfig::default(),
        brix_net::shutdown_signal(),
    )
    .await;
    Ok(())
}
