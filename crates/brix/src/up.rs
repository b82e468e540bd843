//! `brix up`, `brix status`, `brix scale`: the whole system on one machine from one file, and
//! the two commands that look at it and resize it while it runs.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use brix_gateway::Registry;
use brix_platform::adapters::{AdapterConfig, AdapterStatus, Adapters};
use brix_platform::admin::{AdminGuard, ModelStatus, ScaleRequest};
use brix_platform::autoscale::{AutoscalerStatus, Autoscalers};
use brix_platform::optimizer::{Optimizer, OptimizerStatus};
use brix_platform::{
    FleetError, FleetFile, KvCacheSpec, LocalConfig, LocalPlatform, PlatformError,
};
use clap::Args;
use tokio::net::TcpListener;

use crate::admin_key;

mod neighbours;
mod print;

/// The fleet `brix up` serves without a file.
const DEFAULT_FLEET: &str = include_str!("../default-fleet.yaml");

/// Flags of `brix up`.
#[derive(Debug, Args)]
pub(crate) struct UpArgs {
    /// Fleet file (YAML; see docs/platform.md). Without one, the embedded default fleet.
    file: Option<PathBuf>,
    /// Gateway address, overriding the file's `gateway.listen`.
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Directory for command replicas' logs.
    #[arg(long, default_value = "brix-logs")]
    logs_dir: PathBuf,
    /// Seconds to wait for every replica to answer `/health` at start.
    #[arg(long, default_value_t = 600)]
    ready_timeout_s: u64,
    /// Directory for the generated admin key (when the file sets no
    /// `gateway.admission.admin_key`); default `$XDG_STATE_HOME/brix` or `~/.local/state/brix`.
    #[arg(long, env = "BRIX_STATE_DIR")]
    state_dir: Option<PathBuf>,
}

/// Where `brix status` and `brix scale` find a running `brix up`.
#[derive(Debug, Args)]
pub(crate) struct Endpoint {
    /// The `brix up` gateway address.
    #[arg(long, default_value = "http://127.0.0.1:8888", env = "BRIX_ENDPOINT")]
    endpoint: String,
    /// Admin key, when the fleet file sets `gateway.admission.admin_key`; otherwise the key
    /// `brix up` generated is read from the state directory.
    #[arg(long, env = "BRIX_ADMIN_KEY")]
    admin_key: Option<String>,
    /// Where `brix up` wrote its generated admin key.
    #[arg(long, env = "BRIX_STATE_DIR")]
    state_dir: Option<PathBuf>,
}

/// Flags of `brix status`.
#[derive(Debug, Args)]
pub(crate) struct StatusArgs {
    #[command(flatten)]
    endpoint: Endpoint,
    /// Print the raw JSON.
    #[arg(long)]
    json: bool,
}

/// Flags of `brix scale`.
#[derive(Debug, Args)]
pub(crate) struct ScaleArgs {
    /// Model to scale.
    model: String,
    /// Desired replicas.
    replicas: u32,
    #[command(flatten)]
    endpoint: Endpoint,
}

/// What can stop these commands.
#[derive(Debug, thiserror::Error)]
pub(crate) enum UpError {
    /// The fleet file.
    #[error(transparent)]
    Fleet(#[from] FleetError),
    /// The gateway.
    #[error(transparent)]
    Gateway(#[from] brix_gateway::StartError),
    /// The autoscalers' metrics could not be registered (a bug).
    #[error("autoscaler metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// Replicas.
    #[error(transparent)]
    Platform(#[from] PlatformError),
    /// The listen address is taken or invalid.
    #[error(
        "cannot listen on {addr}: {source} (is another `brix up` or gateway running? pass --listen)"
    )]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// I/O while serving.
    #[error("serving: {0}")]
    Serve(std::io::Error),
    /// The runtime could not start.
    #[error("starting the runtime: {0}")]
    Runtime(std::io::Error),
    /// The fleet's KV cache pool did not start.
    #[error("kvcache: {0}")]
    KvCache(String),
    /// The generated admin key could not be written.
    #[error("writing the admin key {path}: {source}")]
    AdminKey {
        /// The key file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Talking to a running `brix up`.
    #[error("{endpoint}: {why}")]
    Remote {
        /// Where.
        endpoint: String,
        /// What went wrong.
        why: String,
    },
}

pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, UpError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(UpError::Runtime)
}

/// Runs the fleet until Ctrl-C or SIGTERM, then stops every replica.
pub(crate) fn up(args: UpArgs) -> Result<(), UpError> {
    let mut file = match &args.file {
        Some(path) => FleetFile::load(path)?,
        None => FleetFile::parse("(default fleet)", DEFAULT_FLEET)?,
    };
    if let Some(listen) = args.listen {
        file.gateway.listen = listen;
    }
    for d in brix_api::deprecations(&file.resources) {
        eprintln!("brix up: warning: {d}");
    }
    let name = args.file.as_ref().map_or_else(
        || "(default fleet)".to_string(),
        |p| p.display().to_string(),
    );
    let planned = brix_platform::autoscale::plan(&file, &name)?;
    let base_dir = args
        .file
        .as_ref()
        .and_then(|f| f.parent())
        .map_or_else(|| PathBuf::from("."), PathBuf::from);
    let optimizer = brix_platform::optimizer::prepare(&file, &name, &base_dir)?;
    runtime()?.block_on(serve(file, planned, optimizer, &args))
}

async fn serve(
    mut file: FleetFile,
    planned: Vec<brix_platform::autoscale::Planned>,
    optimizer: Option<brix_platform::optimizer::PreparedOptimizer>,
    args: &UpArgs,
) -> Result<(), UpError> {
    let addr = file.gateway.listen;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| UpError::Bind { addr, source })?;
    let local = listener.local_addr().map_err(UpError::Serve)?;
    // The admin APIs are never open: without a configured key, one is generated for the
    // local user (kept until `brix up` stops).
    let _key_file = match file.gateway.admission.admin_key {
        Some(_) => None,
        None => {
            let path = admin_key::path(
                &admin_key::state_dir(args.state_dir.as_deref()),
                local.port(),
            );
            let written = admin_key::generate().and_then(|key| {
                let f = admin_key::KeyFile::write(path.clone(), &key)?;
                file.gateway.admission.admin_key = Some(key);
                Ok(f)
            });
            let f = written.map_err(|source| UpError::AdminKey { path, source })?;
            eprintln!(
                "brix up: admin key written to {} (brix status and brix scale read it)",
                f.path().display()
            );
            Some(f)
        }
    };
    let pool = match &file.kvcache {
        Some(spec) => Some(start_pool(spec).await?),
        None => None,
    };
    if pool.is_some() {
        for m in &file.models {
            if let brix_api::EngineSpec::Command(c) = &m.engine
                && !c.command.contains(brix_platform::KV_POOL_PLACEHOLDER)
            {
                eprintln!(
                    "brix up: {}: its engine command has no {}, so it does not use the pool",
                    m.name,
                    brix_platform::KV_POOL_PLACEHOLDER
                );
            }
        }
    }
    let registry = Arc::new(Registry::new());
    let kv_events = file.kv_events_models();
    let state_dir = admin_key::state_dir(args.state_dir.as_deref());
    // The runtimes beside replicas take the admin key for their changes, and the adapter
    // controller sends it.
    let runtime_key = file.gateway.admission.admin_key.clone();
    let gate = neighbours::gate(&file);
    let runtime = neighbours::runtime(runtime_key.clone(), state_dir.join("runtime"));
    let guard = AdminGuard::new(file.gateway.admission.admin_key.as_deref());
    let server = file.gateway.server.clone();
    let (routes, gateway) = brix_gateway::app_with_handle(file.gateway, registry.as_ref()).await?;
    let settled = gateway.clone();
    let in_flight = {
        let gateway = gateway.clone();
        Arc::new(move |address: &str| gateway.in_flight(address))
    };
    let platform = LocalPlatform::start(
        &file.models,
        registry.clone(),
        in_flight,
        LocalConfig {
            logs_dir: args.logs_dir.clone(),
            kv_events,
            kv_pool: pool.as_ref().map(|(_, engines)| engines.clone()),
            gate,
            runtime: Some(runtime),
            ..LocalConfig::default()
        },
    );
    let summary: Vec<String> = file
        .models
        .iter()
        .map(|m| format!("{} ×{}", m.name, m.replicas))
        .collect();
    eprintln!("brix up: starting {}", summary.join(", "));
    if let Err(e) = platform
        .wait_ready(Duration::from_secs(args.ready_timeout_s))
        .await
    {
        platform.shutdown().await;
        return Err(e.into());
    }
    if !planned.is_empty() {
        let names: Vec<String> = planned
            .iter()
            .map(|p| {
                format!(
                    "{} ({} on {})",
                    p.policy.name,
                    p.policy.strategy.as_str(),
                    p.policy.target
                )
            })
            .collect();
        eprintln!("brix up: autoscaling {}", names.join(", "));
    }
    let autoscalers = match Autoscalers::start(planned, platform.clone(), gateway.clone()) {
        Ok(a) => a,
        Err(e) => {
            platform.shutdown().await;
            return Err(e.into());
        }
    };
    let optimizer = match optimizer {
        Some(prepared) => {
            let names: Vec<String> = prepared
                .models
                .iter()
                .map(|m| {
                    let deps: Vec<&str> = m.problem.gpus.iter().map(|g| g.name.as_str()).collect();
                    format!("{} over {}", m.model, deps.join(", "))
                })
                .collect();
            eprintln!("brix up: optimizing {}", names.join("; "));
            Optimizer::start(prepared, platform.clone(), gateway.clone())
        }
        None => Optimizer::default(),
    };
    let adapters = Adapters::start(
        &file.models,
        &file.resources,
        &file.secrets,
        platform.clone(),
        gateway.clone(),
        AdapterConfig {
            base_dir: args
                .file
                .as_ref()
                .and_then(|f| f.parent())
                .map_or_else(|| PathBuf::from("."), PathBuf::from),
            cache_dir: state_dir.join("adapters"),
            runtime_key,
            ..AdapterConfig::default()
        },
    );
    let app = routes
        .merge(brix_platform::admin::router(
            platform.clone(),
            gateway.clone(),
            guard.clone(),
        ))
        .merge(brix_platform::admin::autoscaler_router(
            autoscalers.clone(),
            guard.clone(),
        ))
        .merge(brix_platform::optimizer_api::router(
            optimizer.clone(),
            platform.clone(),
            gateway,
            guard.clone(),
        ))
        .merge(brix_platform::adapters::api::router(
            adapters.clone(),
            guard,
        ));
    println!("brix gateway listening on http://{local}");
    println!("brix up: OpenAI endpoint http://{local}/v1 (Ctrl-C stops everything)");
    // On Ctrl-C or SIGTERM the gateway stops accepting and lets requests in flight finish
    // (within `gateway.server.shutdown_grace_s`) before the replicas are stopped.
    let grace = std::time::Duration::from_secs_f64(server.shutdown_grace_s);
    brix_net::serve_router(listener, app, server, brix_net::shutdown_signal()).await;
    autoscalers.stop();
    optimizer.stop();
    adapters.stop();
    settled.settle_within(grace).await;
    eprintln!("brix up: stopping replicas");
    platform.shutdown().await;
    if let Some((server, _)) = pool {
        server.shutdown().await;
    }
    Ok(())
}

/// Starts the fleet file's KV cache pool in this process and says where it listens; the
/// engines get the returned settings.
async fn start_pool(
    spec: &KvCacheSpec,
) -> Result<
    (
        brix_kvcache::server::ServerHandle,
        brix_sim_http::KvPoolConfig,
    ),
    UpError,
> {
    let mut cfg = brix_kvcache::server::ServerConfig::new(spec.listen, spec.capacity.0);
    cfg.token = spec.token.clone();
    if let Some(m) = spec.max_value {
        cfg.store.max_value = m.0;
    }
    if let Some(p) = &spec.policy {
        // Checked when the file was parsed.
        cfg.store.policy = p.parse().unwrap_or_default();
    }
    let policy = spec.policy.as_deref().unwrap_or("s3fifo").to_string();
    let server = brix_kvcache::server::Server::bind(cfg)
        .await
        .map_err(|e| UpError::KvCache(e.to_string()))?;
    let addr = server.local_addr();
    let engines = spec.engine_config(addr);
    eprintln!(
        "brix up: KV cache pool on {addr} ({}, {policy}; engines load over {}, {}-token chunks)",
        spec.capacity,
        engines.transport.as_str(),
        engines.chunk_tokens
    );
    Ok((server.spawn(), engines))
}

pub(crate) fn request(
    client: &reqwest::Client,
    endpoint: &Endpoint,
    method: reqwest::Method,
    path: &str,
) -> reqwest::RequestBuilder {
    let url = format!("{}{path}", endpoint.endpoint.trim_end_matches('/'));
    let r = client.request(method, url);
    match endpoint_key(endpoint) {
        Some(k) => r.bearer_auth(k),
        None => r,
    }
}

/// The admin key: the flag, else the one `brix up` generated for the endpoint's port.
fn endpoint_key(endpoint: &Endpoint) -> Option<String> {
    if let Some(k) = &endpoint.admin_key {
        return Some(k.clone());
    }
    let port = reqwest::Url::parse(&endpoint.endpoint)
        .ok()?
        .port_or_known_default()?;
    admin_key::read(&admin_key::path(
        &admin_key::state_dir(endpoint.state_dir.as_deref()),
        port,
    ))
}

pub(crate) async fn send<T: serde::de::DeserializeOwned>(
    endpoint: &Endpoint,
    r: reqwest::RequestBuilder,
) -> Result<T, UpError> {
    let remote = |why: String| UpError::Remote {
        endpoint: endpoint.endpoint.clone(),
        why,
    };
    let resp = r
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .map_err(|e| remote(format!("is `brix up` running? {e}")))?;
    let status = resp.status();
    let body = resp.text().await.map_err(|e| remote(e.to_string()))?;
    if !status.is_success() {
        let message =
            brix_api::openai::ErrorEnvelope::parse(body.as_bytes()).map_or(body, |e| e.message);
        return Err(remote(format!("{status}: {message}")));
    }
    serde_json::from_str(&body).map_err(|e| remote(format!("unexpected reply: {e}")))
}

/// Prints the fleet: models, replicas, addresses, state, in-flight, KV usage.
pub(crate) fn status(args: StatusArgs) -> Result<(), UpError> {
    runtime()?.block_on(async {
        let client = reqwest::Client::new();
        let r = request(&client, &args.endpoint, reqwest::Method::GET, "/brix/fleet");
        let mut models: Vec<ModelStatus> = send(&args.endpoint, r).await?;
        let r = request(
            &client,
            &args.endpoint,
            reqwest::Method::GET,
            "/brix/autoscalers",
        );
        let autoscalers: Vec<AutoscalerStatus> = send(&args.endpoint, r).await?;
        let r = request(
            &client,
            &args.endpoint,
            reqwest::Method::GET,
            "/brix/adapters",
        );
        let adapters: Vec<AdapterStatus> = send(&args.endpoint, r).await?;
        let r = request(
            &client,
            &args.endpoint,
            reqwest::Method::GET,
            "/brix/optimizer",
        );
        let optimizers: Vec<OptimizerStatus> = send(&args.endpoint, r).await?;
        for m in &mut models {
            m.autoscaler = autoscalers.iter().find(|a| a.model == m.name).cloned();
        }
        for m in &mut models {
            m.adapters = adapters
                .iter()
                .filter(|a| a.base_model == m.name)
                .cloned()
                .collect();
        }
        if args.json {
            println!(
                "{}",
                serde_json::to_string_pretty(&models).unwrap_or_default()
            );
            return Ok(());
        }
        println!(
            "{:<16} {:<20} {:<16} {:<11} {:>9} {:>6} {:>8} {:>8}",
            "MODEL", "REPLICA", "ADDRESS", "STATE", "IN-FLIGHT", "KV", "RESTARTS", "PID"
        );
        for m in &models {
            for r in &m.replicas {
                let kv = r
                    .kv_usage
                    .map_or("-".to_string(), |k| format!("{:.0}%", k * 100.0));
                let pid = r.pid.map_or("-".to_string(), |p| p.to_string());
                println!(
                    "{:<16} {:<20} {:<16} {:<11} {:>9} {:>6} {:>8} {:>8}",
                    m.name, r.id, r.address, r.state, r.in_flight, kv, r.restarts, pid
                );
                if let Some(why) = &r.reason {
                    println!("{:<16} {:<20} reason: {why}", "", "");
                }
                if let Some(at) = &r.runtime {
                    println!("{:<16} {:<20} runtime: {at}", "", "");
                }
            }
        }
        print::print_autoscalers(&autoscalers);
        print::print_optimizers(&optimizers);
        if !adapters.is_empty() {
            println!();
            println!("ADAPTERS (phase ready/desired on replicas)");
            for a in &adapters {
                println!("{}", a.line());
            }
        }
        Ok(())
    })
}

/// Sets a model's replica count on a running `brix up`.
pub(crate) fn scale(args: ScaleArgs) -> Result<(), UpError> {
    runtime()?.block_on(async {
        let client = reqwest::Client::new();
        let r = request(
            &client,
            &args.endpoint,
            reqwest::Method::POST,
            "/brix/fleet/scale",
        )
        .json(&ScaleRequest {
            model: args.model.clone(),
            replicas: args.replicas,
        });
        let _: serde_json::Value = send(&args.endpoint, r).await?;
        println!("{}: scaling to {} replicas", args.model, args.replicas);
        Ok(())
    })
}
