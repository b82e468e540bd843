//! `brix runtime`: the runtime sidecar (AIBrix's `aibrix-runtime`) beside one engine. Refuses to
//! start without an API key unless `--allow-anonymous` says so: anyone who can reach it could
//! otherwise load and unload the engine's adapters and fill its disk with downloads.

use std::net::SocketAddr;
use std::path::PathBuf;

use brix_runtime::{EngineKind, Mode, Rules, RuntimeConfig};
use clap::{Args, ValueEnum};

/// `brix runtime` flags.
#[derive(Debug, Args)]
pub(crate) struct RuntimeArgs {
    /// The engine's base URL (vLLM or SGLang), e.g. `http://127.0.0.1:8000`.
    #[arg(long)]
    engine_url: String,
    /// Which engine API to speak for adapters and which builtin metric rules to use.
    #[arg(long, value_enum, default_value_t = Engine::Vllm)]
    engine: Engine,
    /// Address to listen on (port 0 picks a free one; the listening line says which).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Bearer key required by every endpoint that changes something (load, unload, download).
    #[arg(long, env = "BRIX_RUNTIME_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Start without a key: anyone who reaches the port may load and unload adapters.
    #[arg(long)]
    allow_anonymous: bool,
    /// Bearer key sent to the engine (vLLM's `--api-key`); without it the caller's
    /// `Authorization` header is forwarded, as AIBrix's runtime does.
    #[arg(long, env = "BRIX_ENGINE_API_KEY", hide_env_values = true)]
    engine_api_key: Option<String>,
    /// Where downloads go (`adapters/`, `models/`); default `$BRIX_STATE_DIR/runtime`, else
    /// `brix/runtime` under the system temp directory (AIBrix uses `aibrix/models` there).
    #[arg(long)]
    models_dir: Option<PathBuf>,
    /// A TOML file of metric rules added to (and overriding) the builtin ones.
    #[arg(long)]
    metric_rules: Option<PathBuf>,
    /// `transform`: re-export under the standard names; `keep-original`: both; `passthrough`:
    /// the engine's text unchanged.
    #[arg(long, value_enum, default_value_t = MetricsMode::Transform)]
    metrics_mode: MetricsMode,
    /// Largest artifact one download may hold, in bytes.
    #[arg(long, default_value_t = 4 << 30)]
    max_download_bytes: u64,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Engine {
    Vllm,
    Sglang,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum MetricsMode {
    Transform,
    KeepOriginal,
    Passthrough,
}

/// Why `brix runtime` could not run.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RuntimeCmdError {
    /// No key and no `--allow-anonymous`.
    #[error(
        "no API key: pass --api-key or set BRIX_RUNTIME_API_KEY (or --allow-anonymous to let anyone who reaches the port load and unload adapters)"
    )]
    NoKey,
    /// The rules file could not be read or parsed.
    #[error("--metric-rules {0}: {1}")]
    Rules(PathBuf, String),
    /// Binding or serving failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

fn default_models_dir() -> PathBuf {
    match std::env::var_os("BRIX_STATE_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d).join("runtime"),
        _ => std::env::temp_dir().join("brix").join("runtime"),
    }
}

/// Runs the runtime until Ctrl-C or SIGTERM, then finishes the requests in flight.
pub(crate) fn run(args: RuntimeArgs) -> Result<(), RuntimeCmdError> {
    let api_key = args.api_key.filter(|k| !k.trim().is_empty());
    if api_key.is_none() && !args.allow_anonymous {
        return Err(RuntimeCmdError::NoKey);
    }
    let engine = match args.engine {
        Engine::Vllm => EngineKind::Vllm,
        Engine::Sglang => EngineKind::Sglang,
    };
    let mut rules = Rules::builtin(engine.as_str()).unwrap_or_else(Rules::all_builtin);
    if let Some(path) = &args.metric_rules {
        let text = std::fs::read_to_string(path)
            .map_err(|e| RuntimeCmdError::Rules(path.clone(), e.to_string()))?;
        let user = Rules::from_toml_str(&text)
            .map_err(|e| RuntimeCmdError::Rules(path.clone(), e.to_string()))?;
        rules.extend(user);
    }
    let mode = match args.metrics_mode {
        MetricsMode::Transform => Mode::Transform {
            keep_original: false,
        },
        MetricsMode::KeepOriginal => Mode::Transform {
            keep_original: true,
        },
        MetricsMode::Passthrough => Mode::Passthrough,
    };
    let limits = brix_artifacts::Limits {
        max_bytes: args.max_download_bytes,
        ..brix_artifacts::Limits::default()
    };
    let cfg = RuntimeConfig {
        engine_url: args.engine_url,
        engine,
        api_key,
        engine_api_key: args.engine_api_key.filter(|k| !k.trim().is_empty()),
        models_dir: args.models_dir.unwrap_or_else(default_models_dir),
        rules,
        mode,
        limits,
    };
    if cfg.api_key.is_none() {
        tracing::warn!(
            "no API key (--allow-anonymous): anyone who reaches the port may change the engine's adapters"
        );
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.listen).await?;
        println!("runtime listening on {}", listener.local_addr()?);
        brix_runtime::serve(listener, cfg, brix_net::shutdown_signal()).await?;
        Ok(())
    })
}
