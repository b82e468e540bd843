//! `brix gateway`: flags and environment over the YAML file → [`GatewayConfig`] → serve.
//!
//! Precedence: a flag (or its environment variable, AIBrix's names where AIBrix has one) beats
//! the `--config` file, which beats the defaults. The file describes the fleet; flags say how
//! this process runs.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use brix_gateway::{BlockUnit, GatewayConfig, StartError, StaticFile};
use clap::Args;

/// Flags of `brix gateway`.
#[derive(Debug, Args)]
pub(crate) struct GatewayArgs {
    /// YAML configuration file (see docs/gateway.md); flags override it.
    #[arg(long, env = "BRIX_GATEWAY_CONFIG")]
    config: Option<PathBuf>,
    /// Address to listen on (port 0 picks a free one; the listening line says which).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// AIBrix standalone endpoints file: `models: [{name, endpoints: ["host:port", ...]}]`.
    #[arg(long)]
    endpoints: Option<PathBuf>,
    /// Strategy for requests without a `routing-strategy` header (a name or a weighted mix).
    #[arg(long, env = "ROUTING_ALGORITHM")]
    routing_strategy: Option<String>,
    /// Accepted API key (`Authorization: Bearer`); repeat for several.
    #[arg(long = "api-key", env = "AIBRIX_AUTH_BEARER_TOKEN")]
    api_keys: Vec<String>,
    /// Key for the users admin API.
    #[arg(long, env = "BRIX_ADMIN_KEY")]
    admin_key: Option<String>,
    /// Redis for rate-limit counters and users (`redis://host:port/db`); memory when unset.
    #[arg(long, env = "REDIS_URL")]
    redis_url: Option<String>,
    /// Milliseconds between engine metric scrapes per pod.
    #[arg(long, env = "AIBRIX_POD_METRIC_REFRESH_INTERVAL_MS")]
    scrape_interval_ms: Option<u64>,
    /// Prefix block size, in the block unit (bytes or tokens).
    #[arg(long, env = "AIBRIX_PREFIX_CACHE_BLOCK_SIZE")]
    prefix_block_size: Option<u32>,
    /// What a prefix block counts: `bytes` or `tokens` (cl100k).
    #[arg(long)]
    prefix_block_unit: Option<BlockUnit>,
    /// Largest request body in bytes (413 above).
    #[arg(long)]
    max_body_bytes: Option<usize>,
    /// Seed of the routing RNG.
    #[arg(long)]
    seed: Option<u64>,
    /// Redis shared with the other gateway replicas (`routing.sync.redis`): they exchange
    /// per-pod loads and prefix bookings so N replicas route as one.
    #[arg(long, env = "BRIX_SYNC_REDIS")]
    sync_redis: Option<String>,
    /// This replica's id in the sync (`routing.sync.gateway_id`); random when unset.
    #[arg(long, env = "BRIX_GATEWAY_ID")]
    gateway_id: Option<String>,
    /// Find engine pods from the Kubernetes API (label `model.aibrix.ai/name`) and adapters
    /// from ModelAdapters, instead of an endpoints file.
    #[cfg(feature = "kubernetes")]
    #[arg(long, conflicts_with = "endpoints")]
    kubernetes: bool,
    /// With --kubernetes: the namespace to watch; every namespace when unset.
    #[cfg(feature = "kubernetes")]
    #[arg(long, requires = "kubernetes")]
    namespace: Option<String>,
}

/// What can stop `brix gateway`.
#[derive(Debug, thiserror::Error)]
pub(crate) enum GatewayCmdError {
    /// Bad configuration or start-up failure.
    #[error(transparent)]
    Start(#[from] StartError),
    /// The config file.
    #[error(transparent)]
    Config(#[from] brix_gateway::ConfigError),
    /// The endpoints file.
    #[error(transparent)]
    Endpoints(#[from] brix_gateway::EndpointsError),
    /// No endpoints file given.
    #[error("no endpoints: pass --endpoints FILE or set `endpoints:` in the config file")]
    NoEndpoints,
    /// The async runtime could not start.
    #[error("starting the runtime: {0}")]
    Runtime(std::io::Error),
    /// `--kubernetes`: no cluster, or the gateway failed.
    #[cfg(feature = "kubernetes")]
    #[error("{0}")]
    Kubernetes(String),
}

impl GatewayArgs {
    fn into_config(self) -> Result<GatewayConfig, GatewayCmdError> {
        let mut cfg = match &self.config {
            Some(path) => GatewayConfig::from_file(path)?,
            None => GatewayConfig::default(),
        };
        if let Some(v) = self.listen {
            cfg.listen = v;
        }
        if let Some(v) = self.endpoints {
            cfg.endpoints = Some(v);
        }
        if let Some(v) = self.routing_strategy {
            cfg.routing.default_strategy = v;
        }
        if !self.api_keys.is_empty() {
            cfg.admission.api_keys = self.api_keys;
        }
        if let Some(v) = self.admin_key {
            cfg.admission.admin_key = Some(v);
        }
        if let Some(v) = self.redis_url {
            cfg.admission.redis_url = Some(v);
        }
        if let Some(v) = self.scrape_interval_ms {
            cfg.scrape.interval_ms = v;
        }
        if let Some(v) = self.prefix_block_size {
            cfg.routing.block_size = v;
        }
        if let Some(v) = self.prefix_block_unit {
            cfg.routing.block_unit = v;
        }
        if let Some(v) = self.max_body_bytes {
            cfg.proxy.max_body_bytes = v;
        }
        if let Some(v) = self.seed {
            cfg.routing.seed = v;
        }
        if let Some(v) = self.sync_redis {
            cfg.routing.sync.redis = Some(v);
        }
        if let Some(v) = self.gateway_id {
            cfg.routing.sync.gateway_id = Some(v);
        }
        cfg.validate()?;
        Ok(cfg)
    }
}

/// Runs `brix gateway` until the process is stopped.
pub(crate) fn run(args: GatewayArgs) -> Result<(), GatewayCmdError> {
    #[cfg(feature = "kubernetes")]
    if args.kubernetes {
        let namespace = args.namespace.clone();
        let cfg = args.into_config()?;
        return crate::kube_cmd::gateway(cfg, namespace).map_err(GatewayCmdError::Kubernetes);
    }
    let cfg = args.into_config()?;
    let endpoints = cfg.endpoints.clone().ok_or(GatewayCmdError::NoEndpoints)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(GatewayCmdError::Runtime)?;
    rt.block_on(async move {
        let discovery = StaticFile::watch_file(endpoints, Duration::from_secs(1))?;
        brix_gateway::serve(cfg, &discovery).await?;
        Ok(())
    })
}
