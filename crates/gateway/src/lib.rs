//! The Brix gateway: one OpenAI-compatible endpoint in front of many engine pods, choosing
//! for each request the pod that will serve it fastest.
//!
//! Request path ([`handler`]): parse → authenticate → admit ([`brix_admission`]) → route (the
//! pure [`brix_router`] policies over live pod snapshots) → proxy (SSE passed through as it
//! arrives) → account. Pods come from a [`Discovery`] source (the AIBrix endpoints file, or an
//! in-process [`Registry`]); [`pool`] keeps their state and `probe` their health and engine
//! metrics. Failures become the OpenAI error envelope in one place, [`error`].

mod activator;
mod adapters;
mod catalog;
mod config;
mod discovery;
mod endpoint;
mod error;
mod explain;
mod handler;
mod kv;
mod load;
mod metrics;
mod optimizer;
mod parse;
mod pool;
mod probe;
mod relay;
mod retry;
mod sse;
mod sync;
mod upstream;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use brix_admission::Admission;
use brix_router::{TokenWindow, VtcView, Weighted};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rand::SeedableRng;
use rand::rngs::SmallRng;
use tokio::net::TcpListener;
use tokio::task::AbortHandle;

pub use activator::Activation;
pub use adapters::AdapterRoute;
pub use brix_net::ServeConfig;
pub use brix_router::BlockUnit;
pub use config::{
    ActivatorConfig, AdaptersConfig, ConfigError, GatewayConfig, OutlierConfig, ProxyConfig,
    RoutingConfig, ScrapeConfig,
};
pub use discovery::{
    Discovery, EndpointsError, KvEndpoints, Registry, StaticFile, Target, Targets, parse_endpoints,
};
pub use error::{AdapterWhy, GatewayError};
pub use kv::{KvEventsConfig, KvModelConfig};

pub use load::ModelLoad;
pub use sync::SyncConfig;

use catalog::Catalog;
use metrics::Metrics;
use pool::Pool;
use probe::Client;
use retry::RetryBudget;

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Admission (Redis) could not be set up.
    #[error("admission: {0}")]
    Admission(#[from] brix_admission::AdmissionError),
    /// The metrics registry refused a family (a bug).
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// The tokenizer for token blocks could not load.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// The listen address could not be bound.
    #[error("binding {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The server stopped with an I/O error.
    #[error("serving: {0}")]
    Serve(std::io::Error),
}

/// Shared state of one gateway process.
pub(crate) struct Gateway {
    cfg: GatewayConfig,
    default_strategy: Weighted,
    /// Strategy for adapter requests without a `routing-strategy` header.
    adapter_strategy: Weighted,
    /// Requests held for adapters being placed.
    adapters_held: adapters::Held,
    /// Requests per adapter over the last minute.
    adapter_rates: Arc<adapters::Rates>,
    pool: Arc<Pool>,
    client: Client,
    metrics: Arc<Metrics>,
    catalog: Catalog,
    retry_budget: RetryBudget,
    accounting: Arc<Accounting>,
    activator: Arc<activator::Activator>,
    loads: Arc<load::Loads>,
    admission: Arc<Admission>,
    tokenizer: Option<tiktoken_rs::CoreBPE>,
    /// Models whose engines publish KV events, with their tokenizers.
    kv: Arc<kv::KvModels>,
    /// The optimizer's monitors and plan routes.
    optimized: Arc<optimizer::Optimized>,
    vtc: Mutex<TokenWindow>,
    epoch: Instant,
    rng_seq: AtomicU64,
    warned: Mutex<HashSet<(String, &'static str)>>,
}

impl Gateway {
    /// Seconds since start: the clock routing policies are given.
    pub(crate) fn now(&self) -> f64 {
        self.epoch.elapsed().as_secs_f64()
    }

    /// A per-request RNG: seeded from the configured seed and a counter, so runs replay.
    pub(crate) fn rng(&self) -> SmallRng {
        let n = self.rng_seq.fetch_add(1, Ordering::Relaxed);
        SmallRng::seed_from_u64(self.cfg.routing.seed ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15))
    }

    /// The prompt's chained block hashes and its length in block units.
    pub(crate) fn blocks(&self, key: &str) -> (Vec<u64>, u32) {
        let size = self.cfg.routing.block_size as usize;
        match &self.tokenizer {
            None => (
                brix_router::hash_bytes(key.as_bytes(), size, brix_router::DEFAULT_SEED),
                u32::try_from(key.len()).unwrap_or(u32::MAX),
            ),
            Some(bpe) => {
                let tokens = bpe.encode_ordinary(key);
                (
                    brix_router::hash_tokens(&tokens, size, brix_router::DEFAULT_SEED),
                    u32::try_from(tokens.len()).unwrap_or(u32::MAX),
                )
            }
        }
    }

    /// This user's place in the fairness window.
    pub(crate) fn vtc_view(&self, user: &str) -> VtcView {
        let now = self.now();
        self.vtc
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .view(user, now)
    }

    /// Adds a finished request's tokens to the fairness window. A name longer than any
    /// stored user's ([`brix_admission::MAX_USER_NAME_BYTES`]) is not kept: a client must not
    /// fill the window's map with huge keys.
    pub(crate) fn vtc_add(&self, user: &str, input: u64, output: u64) {
        if user.len() > brix_admission::MAX_USER_NAME_BYTES {
            return;
        }
        let now = self.now();
        self.vtc
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .add(user, input, output, now);
    }

    /// Logs a strategy's fallback the first time it happens (the metric counts every time).
    pub(crate) fn warn_once(&self, strategy: &str, reason: &'static str) {
        let mut warned = self.warned.lock().unwrap_or_else(|p| p.into_inner());
        if warned.insert((strategy.to_string(), reason)) {
            tracing::warn!(
                strategy,
                reason,
                "routing strategy fell back to least-request (logged once; see brix_gateway_routing_decisions_total)"
            );
        }
    }

    /// Whether the client's `Authorization` is the gateway's own key (then it is not forwarded).
    pub(crate) fn strips_auth(&self) -> bool {
        !self.cfg.admission.api_keys.is_empty()
    }
}

/// Admission settlements and refunds still running: each request's accounting finishes in
/// a task of its own after the answer, so a draining process waits for them
/// ([`GatewayHandle::accounting_settled`]) before it exits.
#[derive(Debug, Default)]
pub(crate) struct Accounting {
    pending: AtomicU64,
    idle: tokio::sync::Notify,
}

impl Accounting {
    /// Runs `fut` (a settlement or refund) on the current runtime, counted until it ends.
    pub(crate) fn spawn(self: &Arc<Self>, fut: impl Future<Output = ()> + Send + 'static) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        self.pending.fetch_add(1, Ordering::SeqCst);
        let this = self.clone();
        rt.spawn(async move {
            fut.await;
            if this.pending.fetch_sub(1, Ordering::SeqCst) == 1 {
                this.idle.notify_waiters();
            }
        });
    }

    async fn settled(&self) {
        loop {
            let notified = self.idle.notified();
            if self.pending.load(Ordering::SeqCst) == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// A view into a running gateway for the code that runs beside it (`brix up`'s controllers
/// and status): what it knows about each pod.
#[derive(Clone)]
pub struct GatewayHandle {
    pool: Arc<Pool>,
    accounting: Arc<Accounting>,
    activator: Arc<activator::Activator>,
    loads: Arc<load::Loads>,
    metrics: Arc<Metrics>,
    adapter_rates: Arc<adapters::Rates>,
    optimized: Arc<optimizer::Optimized>,
    epoch: Instant,
}

/// One pod as the gateway sees it now.
#[derive(Clone, Debug, PartialEq)]
pub struct PodView {
    /// Pod name.
    pub name: String,
    /// `host:port`.
    pub address: String,
    /// In rotation.
    pub healthy: bool,
    /// Requests in flight through this gateway.
    pub in_flight: u32,
    /// Last scraped `vllm:kv_cache_usage_perc`.
    pub kv_usage: Option<f64>,
    /// Last scraped `vllm:num_requests_waiting`.
    pub waiting: Option<f64>,
    /// Seconds since the last good scrape (None before any): a slow or failed scrape keeps
    /// the last gauges, older.
    pub metrics_age_s: Option<f64>,
}

impl GatewayHandle {
    /// Requests in flight to `address`, including a pod discovery already removed.
    pub fn in_flight(&self, address: &str) -> u32 {
        self.pool.in_flight_at(address)
    }

    /// Resolves once no admission settlement or refund is running: a draining gateway awaits
    /// it after its server stopped (every in-flight request booked its end), so TPM counters
    /// in a shared store are right when the process exits.
    pub async fn accounting_settled(&self) {
        self.accounting.settled().await;
    }

    /// [`Self::accounting_settled`], waiting at most `limit` (a shared store that stopped
    /// answering must not hold the exit forever); logs when it gives up.
    pub async fn settle_within(&self, limit: Duration) {
        if tokio::time::timeout(limit, self.accounting_settled())
            .await
            .is_err()
        {
            tracing::warn!("admission settlements still running at exit; counters may be off");
        }
    }

    /// Declares `model` scalable from zero: from now on a request for it that finds no ready
    /// replica is held (see `activator`) instead of refused. Call it for models from the
    /// fleet file only.
    pub fn enable_activation(&self, model: &str) -> Activation {
        let gauge = self.metrics.activator_held.with_label_values(&[model]);
        Activation(self.activator.enable(model, gauge))
    }

    /// The activator's view of `model`, if it may scale from zero.
    pub fn activation(&self, model: &str) -> Option<Activation> {
        self.activator.gate(model).map(Activation)
    }

    /// `model`'s load now: the gateway's counters, and the engines' queue and KV gauges from
    /// the last scrapes of its pods in rotation.
    pub fn load(&self, model: &str) -> ModelLoad {
        let mut load = self
            .loads
            .get(model)
            .map_or_else(ModelLoad::default, |c| c.read());
        let pods = self.pool.candidates(model);
        // On the pods' own clock, so gauges too old to trust are left out.
        load.set_gauges(pods.iter().map(|p| {
            let m = p.snapshot_now().metrics;
            (m.waiting, m.kv_usage)
        }));
        load
    }

    /// Declares the LoRA adapters that exist (the controller's ModelAdapters; replaces the
    /// last set): requests naming one are routed with `routing.adapter_strategy`, held while
    /// it is `pending` and no pod holds it, refused with 503 naming it otherwise, counted under
    /// its name. Names come from the fleet file, never from requests.
    pub fn set_adapters(&self, adapters: Vec<AdapterRoute>) {
        self.pool.set_routes(adapters);
    }

    /// The adapters the engine at `address` holds now, as its `/v1/models` lists them (the
    /// controller calls it after a load or unload, so routing need not wait for the next
    /// probe; the probe keeps it current too, the newest word winning). Unknown addresses are
    /// ignored.
    pub fn set_pod_adapters(&self, address: &str, adapters: Vec<String>) {
        match self.pool.pod(address) {
            Some(p) => p.set_adapters(adapters),
            None => tracing::debug!(address, "set_pod_adapters: no such pod"),
        }
    }

    /// Stops (`true`) or resumes (`false`) routing new requests for `adapter` to the pod at
    /// `address`, so it can be unloaded once [`Self::adapter_in_flight`] reaches 0. The mark
    /// ends by itself when the pod stops listing the adapter.
    pub fn set_adapter_draining(&self, address: &str, adapter: &str, draining: bool) {
        match self.pool.pod(address) {
            Some(p) => p.set_draining(adapter, draining),
            None => tracing::debug!(address, adapter, "set_adapter_draining: no such pod"),
        }
    }

    /// Requests for `adapter` in flight on the pod at `address` (a removed pod still
    /// answering included): exact, released however each request ends.
    pub fn adapter_in_flight(&self, address: &str, adapter: &str) -> u32 {
        self.pool.adapter_in_flight_at(address, adapter)
    }

    /// Requests per second over the last 60 s for each adapter [`Self::set_adapters`]
    /// declared (0 for an idle one): the placement's traffic input.
    pub fn adapter_rps(&self) -> BTreeMap<String, f64> {
        let now = self.epoch.elapsed().as_secs_f64();
        self.adapter_rates.rps(&self.pool.route_names(), now)
    }

    /// Adds a collector (the autoscalers' series) to the gateway's `/metrics`.
    pub fn register_metrics(
        &self,
        collector: Box<dyn prometheus::core::Collector>,
    ) -> Result<(), prometheus::Error> {
        self.metrics.register(collector)
    }

    /// Every pod discovery lists now.
    pub fn pods(&self) -> Vec<PodView> {
        self.pool
            .all()
            .into_iter()
            .map(|p| {
                let s = p.snapshot(0.0);
                let age = p.metrics_age();
                PodView {
                    healthy: p.is_healthy(),
                    in_flight: s.in_flight,
                    kv_usage: s.metrics.kv_usage,
                    waiting: s.metrics.waiting,
                    metrics_age_s: age,
                    name: s.name,
                    address: s.address,
                }
            })
            .collect()
    }
}

/// Builds the gateway over `discovery`, starts its background tasks (discovery watch, probes)
/// on the current runtime, waits briefly for the first probes, and returns the routes.
pub async fn app(cfg: GatewayConfig, discovery: &dyn Discovery) -> Result<Router, StartError> {
    Ok(app_with_handle(cfg, discovery).await?.0)
}

/// [`app`], plus a handle for code running beside the gateway.
pub async fn app_with_handle(
    cfg: GatewayConfig,
    discovery: &dyn Discovery,
) -> Result<(Router, GatewayHandle), StartError> {
    let default_strategy = cfg.validate()?;
    let adapter_strategy = cfg.adapter_strategy()?;
    let admission = Arc::new(Admission::connect(cfg.admission.clone()).await?);
    let tokenizer = match cfg.routing.block_unit {
        BlockUnit::Bytes => None,
        BlockUnit::Tokens => {
            Some(tiktoken_rs::cl100k_base().map_err(|e| StartError::Tokenizer(e.to_string()))?)
        }
    };
    let kv = Arc::new(kv::KvModels::load(&cfg.kv_events).map_err(StartError::Tokenizer)?);
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(cfg.proxy.connect_timeout()));
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        // Below every engine's keep-alive (vLLM's uvicorn closes idle connections after 5 s,
        // `brix sim` after 90 s), so a pooled connection is not reused as the engine closes it.
        .pool_idle_timeout(Duration::from_secs(4))
        .build(connector);
    let epoch = Instant::now();
    let metrics = Arc::new(Metrics::new()?);
    let gw = Arc::new(Gateway {
        default_strategy,
        adapter_strategy,
        adapters_held: adapters::Held::new(metrics.adapter_held.clone()),
        adapter_rates: Arc::default(),
        pool: Arc::new(Pool::new(cfg.routing.prefix(), cfg.core(), epoch)),
        client,
        metrics,
        catalog: Catalog::default(),
        accounting: Arc::default(),
        activator: Arc::default(),
        loads: Arc::default(),
        retry_budget: RetryBudget::new(
            cfg.proxy.retry_budget_ratio,
            cfg.proxy.retry_budget_min_per_s,
        ),
        admission: admission.clone(),
        tokenizer,
        kv,
        optimized: Arc::default(),
        vtc: Mutex::new(TokenWindow::new(brix_router::DEFAULT_WINDOW_S)),
        epoch,
        rng_seq: AtomicU64::new(0),
        warned: Mutex::default(),
        cfg,
    });
    watch_discovery(&gw, discovery).await;
    let sync_metrics = sync::SyncMetrics::register(&gw.metrics)?;
    sync::spawn(gw.pool.clone(), gw.cfg.routing.sync.clone(), sync_metrics);
    let handle = GatewayHandle {
        pool: gw.pool.clone(),
        accounting: gw.accounting.clone(),
        activator: gw.activator.clone(),
        loads: gw.loads.clone(),
        metrics: gw.metrics.clone(),
        adapter_rates: gw.adapter_rates.clone(),
        optimized: gw.optimized.clone(),
        epoch: gw.epoch,
    };
    let mut routes = Router::new();
    for &(path, e) in endpoint::PATHS {
        routes = routes.route(
            path,
            post(move |State(gw): State<Arc<Gateway>>, req: Request<Body>| {
                handler::proxy(gw, e, path, req)
            })
            .fallback(handler::wrong_method),
        );
    }
    let routes = routes
        .route(
            "/v1/models",
            get(catalog::models).fallback(handler::wrong_method),
        )
        .route("/metrics", get(render_metrics))
        .route("/health", get(|| async { "ok" }))
        .route("/ready", get(ready))
        .with_state(gw);
    let routes = routes
        .merge(admission.admin_router())
        .fallback(handler::not_found);
    Ok((routes, handle))
}

/// Serves on an already-bound listener until the future is dropped (tests run it in a task).
pub async fn run(
    cfg: GatewayConfig,
    discovery: &dyn Discovery,
    listener: TcpListener,
) -> Result<(), StartError> {
    let server = cfg.server.clone();
    let routes = app(cfg, discovery).await?;
    brix_net::serve_router(listener, routes, server, std::future::pending()).await;
    Ok(())
}

/// Binds `cfg.listen`, prints `brix gateway listening on http://ADDR` on stdout once ready
/// (the line callers wait for), and serves until Ctrl-C or SIGTERM, then drains.
pub async fn serve(cfg: GatewayConfig, discovery: &dyn Discovery) -> Result<(), StartError> {
    let addr = cfg.listen;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { addr, source })?;
    let server = cfg.server.clone();
    let (routes, handle) = app_with_handle(cfg, discovery).await?;
    let local = listener.local_addr().map_err(StartError::Serve)?;
    println!("brix gateway listening on http://{local}");
    let grace = Duration::from_secs_f64(server.shutdown_grace_s);
    brix_net::serve_router(listener, routes, server, brix_net::shutdown_signal()).await;
    handle.settle_within(grace).await;
    Ok(())
}

/// Applies the current targets, then every change, starting and stopping probes; returns once
/// the first probes answered (or their timeout passed).
async fn watch_discovery(gw: &Arc<Gateway>, discovery: &dyn Discovery) {
    let mut rx = discovery.watch();
    let probes: Arc<Mutex<HashMap<String, AbortHandle>>> = Arc::default();
    // KV-event subscribers, by pod address (pods whose model publishes events).
    let subscribers: Arc<Mutex<HashMap<String, AbortHandle>>> = Arc::default();
    let apply = {
        let gw = gw.clone();
        move |targets: &discovery::Targets| {
            let change = gw.pool.apply(targets);
            let mut probes = probes.lock().unwrap_or_else(|p| p.into_inner());
            let mut subscribers = subscribers.lock().unwrap_or_else(|p| p.into_inner());
            for pod in change.removed {
                if let Some(h) = probes.remove(&pod.address) {
                    h.abort();
                }
                if let Some(h) = subscribers.remove(&pod.address) {
                    h.abort();
                }
                gw.metrics.forget_pod(&pod.name);
                tracing::info!(pod = %pod.name, address = %pod.address, "pod left");
            }
            for pod in change.added {
                tracing::info!(pod = %pod.name, address = %pod.address, "pod joined; probing");
                if let Some(sub) = kv::watch_pod(&gw, targets, &pod)
                    && let Some(old) = subscribers.insert(pod.address.clone(), sub)
                {
                    old.abort();
                }
                let task = tokio::spawn(probe::run(
                    pod.clone(),
                    gw.client.clone(),
                    gw.cfg.scrape.clone(),
                    gw.metrics.clone(),
                ));
                if let Some(old) = probes.insert(pod.address.clone(), task.abort_handle()) {
                    old.abort();
                }
            }
        }
    };
    let first = rx.borrow_and_update().clone();
    apply(&first);
    tokio::spawn(async move {
        while rx.changed().await.is_ok() {
            let targets = rx.borrow_and_update().clone();
            apply(&targets);
        }
    });
    let deadline = Instant::now() + Duration::from_millis(gw.cfg.scrape.timeout_ms + 200);
    while Instant::now() < deadline && gw.pool.all().iter().any(|p| !p.is_healthy()) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn render_metrics(State(gw): State<Arc<Gateway>>) -> Response {
    // Exact indexes change inside the routing core too (cleared when a pod leaves rotation
    // or restarts): read their sizes now.
    for p in gw.pool.all() {
        if let Some(n) = p.kv_blocks() {
            let n = i64::try_from(n).unwrap_or(i64::MAX);
            gw.metrics.kv.blocks.with_label_values(&[&p.name]).set(n);
        }
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        gw.metrics.render(),
    )
        .into_response()
}

/// `GET /ready`: 200 while some pod is in rotation, 503 otherwise.
async fn ready(State(gw): State<Arc<Gateway>>) -> StatusCode {
    if gw.pool.all().iter().any(|p| p.is_healthy()) {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}
