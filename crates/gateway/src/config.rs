//! The gateway's one typed configuration: parsed from YAML (or built by flags), validated once.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use brix_admission::AdmissionConfig;
use brix_net::ServeConfig;
use brix_router::fleet::{CoreConfig, EjectionConfig};
use brix_router::{BlockUnit, PrefixConfig, Weighted};
use serde::Deserialize;

use crate::kv::KvEventsConfig;

/// Everything the gateway needs to start; every field has a default.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatewayConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// AIBrix standalone endpoints file (`models: [{name, endpoints: ["host:port"]}]`), watched.
    pub endpoints: Option<PathBuf>,
    /// Routing knobs.
    pub routing: RoutingConfig,
    /// Health checks and engine metric scrapes.
    pub scrape: ScrapeConfig,
    /// Upstream connection behaviour and request limits.
    pub proxy: ProxyConfig,
    /// Outlier ejection: upstream failures in a row that take a pod out, and for how long.
    pub outlier: OutlierConfig,
    /// API keys, per-user RPM/TPM, per-model RPS, the users API.
    pub admission: AdmissionConfig,
    /// Client connections: header-read and idle timeouts, shutdown grace (docs/gateway.md).
    pub server: ServeConfig,
    /// Scale from zero: how many requests are held for a model with no ready replica, and
    /// for how long.
    pub activator: ActivatorConfig,
    /// LoRA adapters: how many requests wait for an adapter being placed, and for how long.
    pub adapters: AdaptersConfig,
    /// Exact prefix routing from the engines' KV events, per model.
    pub kv_events: KvEventsConfig,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8888)),
            endpoints: None,
            routing: RoutingConfig::default(),
            scrape: ScrapeConfig::default(),
            proxy: ProxyConfig::default(),
            outlier: OutlierConfig::default(),
            admission: AdmissionConfig::default(),
            server: ServeConfig::default(),
            activator: ActivatorConfig::default(),
            adapters: AdaptersConfig::default(),
            kv_events: KvEventsConfig::default(),
        }
    }
}

/// Requests for a known adapter that no ready pod holds yet while its placement is in progress
/// (`AdapterRoute::pending`) wait for a holder instead of failing at once, within bounds.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdaptersConfig {
    /// Most requests held at once over all adapters; one more gets 503 at once.
    pub max_held: u32,
    /// Seconds a held request waits for a pod holding its adapter before it gets 503.
    pub wait_s: f64,
}

impl Default for AdaptersConfig {
    fn default() -> Self {
        Self {
            max_held: 1000,
            wait_s: 30.0,
        }
    }
}

/// Knative's activator: a request for a model that may scale from zero and has no ready
/// replica is held (not refused) while a replica starts.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ActivatorConfig {
    /// Most requests held per model; one more gets 503 at once.
    pub max_held: u32,
    /// Seconds a held request waits for a ready replica before it gets 503.
    pub timeout_s: f64,
}

impl Default for ActivatorConfig {
    fn default() -> Self {
        Self {
            max_held: 1000,
            timeout_s: 60.0,
        }
    }
}

/// Which strategy to use when a request names none, and how prompts become prefix blocks.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RoutingConfig {
    /// Strategy (or weighted mix) for requests without a `routing-strategy` header.
    pub default_strategy: String,
    /// Strategy for requests naming a LoRA adapter without a `routing-strategy` header
    /// (base-model requests keep `default_strategy`).
    pub adapter_strategy: String,
    /// Unit prompts are cut into blocks in: raw UTF-8 bytes, or cl100k tokens.
    #[serde(deserialize_with = "from_str")]
    pub block_unit: BlockUnit,
    /// Units per block (bytes or tokens, per `block_unit`).
    pub block_size: u32,
    /// Prefix-index capacity in blocks.
    pub capacity_blocks: usize,
    /// Seconds a pod's claim on a prefix block lasts.
    pub ttl_s: f64,
    /// `prefix-cache`: route least-request when max − min in-flight exceeds this.
    pub imbalance_abs: u32,
    /// `prefix-cache`: skip matching pods loaded above mean + k·σ.
    pub std_dev_factor: f64,
    /// `kv-cost`: prefill units one queued or running request is worth.
    pub load_units_per_request: f64,
    /// `lora-affinity`: queued requests a pod with a free GPU slot costs over one already
    /// running the adapter.
    pub lora_slot_cost: f64,
    /// `lora-affinity`: queued requests a pod whose GPU slots are all taken costs over one
    /// already running the adapter.
    pub lora_wait_cost: f64,
    /// Seed of the routing RNG (tie breaks, random): same seed, same decisions.
    pub seed: u64,
    /// Gateway replicas sharing load and prefix bookings through Redis (docs/gateway.md).
    pub sync: crate::sync::SyncConfig,
}

impl Default for RoutingConfig {
    fn default() -> Self {
        let p = PrefixConfig::default();
        Self {
            default_strategy: "least-request".into(),
            adapter_strategy: "lora-affinity".into(),
            block_unit: BlockUnit::Bytes,
            block_size: 128,
            capacity_blocks: p.capacity_blocks,
            ttl_s: p.ttl_s,
            imbalance_abs: p.imbalance_abs,
            std_dev_factor: p.std_dev_factor,
            load_units_per_request: p.load_units_per_request,
            lora_slot_cost: p.lora_slot_cost,
            lora_wait_cost: p.lora_wait_cost,
            seed: 0,
            sync: crate::sync::SyncConfig::default(),
        }
    }
}

impl RoutingConfig {
    /// The prefix-index settings these knobs describe.
    pub fn prefix(&self) -> PrefixConfig {
        PrefixConfig {
            capacity_blocks: self.capacity_blocks,
            ttl_s: self.ttl_s,
            imbalance_abs: self.imbalance_abs,
            std_dev_factor: self.std_dev_factor,
            block_units: self.block_size,
            load_units_per_request: self.load_units_per_request,
            lora_slot_cost: self.lora_slot_cost,
            lora_wait_cost: self.lora_wait_cost,
            ttft: brix_router::TtftProfile {
                units_per_token: match self.block_unit {
                    BlockUnit::Tokens => 1.0,
                    BlockUnit::Bytes => 4.0,
                },
                ..brix_router::TtftProfile::default()
            },
        }
    }
}

/// Reads a value through its `FromStr` (types from the pure crates carry no serde).
fn from_str<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: std::str::FromStr<Err: std::fmt::Display>,
{
    let s = String::deserialize(d)?;
    s.parse().map_err(serde::de::Error::custom)
}

/// How often pods are probed, and when they leave and rejoin the candidate set.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScrapeConfig {
    /// Milliseconds between scrapes of one pod (±10 % jitter).
    pub interval_ms: u64,
    /// Milliseconds a scrape or health check may take.
    pub timeout_ms: u64,
    /// Consecutive failed `/health` probes that take a pod out of rotation.
    pub unhealthy_after: u32,
    /// Refresh a pod's model list (`/v1/models`, for adapters) every this many scrapes.
    pub models_every: u32,
    /// Gauges younger than this many seconds are trusted in full.
    pub fresh_s: f64,
    /// Gauges older than this are dropped (strategies fall back); in between, queue gauges
    /// count less and less (see docs/router.md, "Stale gauges").
    pub stale_s: f64,
}

impl Default for ScrapeConfig {
    fn default() -> Self {
        Self {
            interval_ms: 500,
            timeout_ms: 1000,
            unhealthy_after: 2,
            models_every: 4,
            fresh_s: 2.0,
            stale_s: 10.0,
        }
    }
}

/// Passive health (Envoy's outlier detection), fed by proxied requests.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutlierConfig {
    /// Upstream failures in a row (5xx, refused connection, timeout) that eject a pod.
    pub consecutive_failures: u32,
    /// First ejection's length, seconds; the n-th lasts n times as long.
    pub base_ejection_s: f64,
    /// Longest ejection, seconds.
    pub max_ejection_s: f64,
    /// Largest share of the pods ejected at once (one may always go; never the last in rotation).
    pub max_ejection_fraction: f64,
}

impl Default for OutlierConfig {
    fn default() -> Self {
        let e = EjectionConfig::default();
        Self {
            consecutive_failures: e.consecutive_failures,
            base_ejection_s: e.base_ejection_s,
            max_ejection_s: e.max_ejection_s,
            max_ejection_fraction: e.max_ejection_fraction,
        }
    }
}

impl GatewayConfig {
    /// The routing core's settings.
    pub fn core(&self) -> CoreConfig {
        CoreConfig {
            fresh_s: self.scrape.fresh_s,
            stale_s: self.scrape.stale_s,
            ejection: EjectionConfig {
                unhealthy_after: self.scrape.unhealthy_after,
                consecutive_failures: self.outlier.consecutive_failures,
                base_ejection_s: self.outlier.base_ejection_s,
                max_ejection_s: self.outlier.max_ejection_s,
                max_ejection_fraction: self.outlier.max_ejection_fraction,
            },
            remote_ttl_s: self.routing.sync.ttl_s,
        }
    }
}

/// Upstream behaviour.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProxyConfig {
    /// Largest request body accepted (413 above).
    pub max_body_bytes: usize,
    /// Most extra attempts (each on another pod) for a request that failed before any byte
    /// reached the client: a 5xx answer, a connect failure, a first-byte timeout.
    pub retries: u32,
    /// Retries may add at most this fraction of the requests of the last 10 s...
    pub retry_budget_ratio: f64,
    /// ...plus this many retries a second (the floor that lets a quiet gateway retry).
    pub retry_budget_min_per_s: f64,
    /// Milliseconds to establish an upstream connection.
    pub connect_timeout_ms: u64,
    /// Milliseconds a streaming request waits for the engine's response headers.
    pub first_byte_timeout_ms: u64,
    /// Milliseconds a stream may go without a byte from the engine before it is ended with
    /// an error event.
    pub stream_idle_timeout_ms: u64,
    /// Seconds a non-streaming request waits for the whole answer (vLLM sends its headers
    /// only with the finished body).
    pub response_timeout_s: u64,
    /// Largest non-streaming response body buffered (to read usage and normalise errors).
    pub max_response_bytes: usize,
    /// Largest SSE event (or line) buffered from an engine; a stream with a longer one is
    /// ended with an error event and its connection dropped.
    pub max_event_bytes: usize,
    /// Context length assumed for a model whose engines do not report `max_model_len`
    /// (TPM reserves up to it when a request omits `max_tokens`).
    pub default_max_model_len: u32,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 4 << 20,
            retries: 2,
            retry_budget_ratio: 0.2,
            retry_budget_min_per_s: 10.0,
            connect_timeout_ms: 2000,
            first_byte_timeout_ms: 60_000,
            stream_idle_timeout_ms: 60_000,
            response_timeout_s: 600,
            max_response_bytes: 64 << 20,
            max_event_bytes: 8 << 20,
            default_max_model_len: 8192,
        }
    }
}

impl ProxyConfig {
    /// Connect timeout as a duration.
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }

    /// How long a request waits for response headers: the first byte of a stream, or the
    /// whole answer of anything else.
    pub fn headers_timeout(&self, stream: bool) -> Duration {
        match stream {
            true => Duration::from_millis(self.first_byte_timeout_ms),
            false => Duration::from_secs(self.response_timeout_s),
        }
    }
}

/// A configuration that cannot run.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// Which file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid YAML for this schema.
    #[error("parsing {path}: {source}")]
    Parse {
        /// Which file.
        path: PathBuf,
        /// Why.
        source: serde_yaml_ng::Error,
    },
    /// The default strategy does not parse.
    #[error("routing.default_strategy: {0}")]
    Strategy(#[from] brix_router::StrategyParseError),
    /// The adapter strategy does not parse.
    #[error("routing.adapter_strategy: {0}")]
    AdapterStrategy(brix_router::StrategyParseError),
    /// A knob out of range.
    #[error("{0}")]
    Invalid(String),
    /// The admission settings are inconsistent.
    #[error("admission: {0}")]
    Admission(#[from] brix_admission::AdmissionError),
}

impl GatewayConfig {
    /// Reads a YAML file.
    pub fn from_file(path: &std::path::Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        serde_yaml_ng::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.into(),
            source,
        })
    }

    /// The parsed `routing.adapter_strategy`.
    pub fn adapter_strategy(&self) -> Result<Weighted, ConfigError> {
        self.routing
            .adapter_strategy
            .parse()
            .map_err(ConfigError::AdapterStrategy)
    }

    /// Checks every knob once; returns the parsed default strategy.
    pub fn validate(&self) -> Result<Weighted, ConfigError> {
        let strategy: Weighted = self.routing.default_strategy.parse()?;
        self.adapter_strategy()?;
        let bad = |m: &str| Err(ConfigError::Invalid(m.to_string()));
        let r = &self.routing;
        let cost_ok = |c: f64| (0.0..=1e6).contains(&c);
        if !cost_ok(r.lora_slot_cost) || !cost_ok(r.lora_wait_cost) {
            return bad("routing.lora_slot_cost and routing.lora_wait_cost must be in 0..=1e6");
        }
        let ad = &self.adapters;
        if ad.max_held == 0 || !(ad.wait_s > 0.0 && ad.wait_s <= 3600.0) {
            return bad("adapters.max_held must be at least 1 and adapters.wait_s in (0, 3600]");
        }
        if let Some(m) = self.routing.sync.problem() {
            return bad(m);
        }
        if self.routing.block_size == 0 {
            return bad("routing.block_size must be at least 1");
        }
        if self.routing.capacity_blocks == 0 {
            return bad("routing.capacity_blocks must be at least 1");
        }
        if self.routing.ttl_s.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater)
            || !self.routing.std_dev_factor.is_finite()
        {
            return bad("routing.ttl_s must be positive and routing.std_dev_factor finite");
        }
        if self.scrape.interval_ms == 0 || self.scrape.timeout_ms == 0 {
            return bad("scrape.interval_ms and scrape.timeout_ms must be positive");
        }
        if self.scrape.unhealthy_after == 0 || self.scrape.models_every == 0 {
            return bad("scrape.unhealthy_after and scrape.models_every must be at least 1");
        }
        let s = &self.scrape;
        if !(s.fresh_s >= 0.0 && s.stale_s > s.fresh_s && s.stale_s.is_finite()) {
            return bad("scrape.fresh_s must be ≥ 0 and scrape.stale_s finite and above it");
        }
        let o = &self.outlier;
        let outlier_ok = o.consecutive_failures > 0
            && o.base_ejection_s >= 0.0
            && o.max_ejection_s >= o.base_ejection_s
            && o.max_ejection_s.is_finite()
            && (0.0..=1.0).contains(&o.max_ejection_fraction);
        if !outlier_ok {
            return bad(
                "outlier: consecutive_failures ≥ 1, 0 ≤ base_ejection_s ≤ max_ejection_s (finite), max_ejection_fraction in 0..1",
            );
        }
        let p = &self.proxy;
        if p.max_body_bytes == 0 || p.max_response_bytes == 0 || p.max_event_bytes == 0 {
            return bad(
                "proxy.max_body_bytes, max_response_bytes and max_event_bytes must be positive",
            );
        }
        if p.first_byte_timeout_ms == 0
            || p.stream_idle_timeout_ms == 0
            || p.response_timeout_s == 0
        {
            return bad("proxy timeouts must be positive");
        }
        if !(0.0..=10.0).contains(&p.retry_budget_ratio)
            || !(0.0..=1e6).contains(&p.retry_budget_min_per_s)
        {
            return bad(
                "proxy.retry_budget_ratio must be in 0..=10 and retry_budget_min_per_s in 0..=1e6",
            );
        }
        if p.default_max_model_len == 0 {
            return bad("proxy.default_max_model_len must be positive");
        }
        let a = &self.activator;
        if a.max_held == 0 || !(a.timeout_s > 0.0 && a.timeout_s <= 3600.0) {
            return bad(
                "activator.max_held must be at least 1 and activator.timeout_s in (0, 3600]",
            );
        }
        if let Err(why) = self.server.validate() {
            return Err(ConfigError::Invalid(format!("server.{why}")));
        }
        self.admission.validate()?;
        self.kv_events.validate()?;
        Ok(strategy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_overrides_defaults_and_validation_catches_nonsense() {
        let cfg: GatewayConfig = serde_yaml_ng::from_str(
            "listen: 127.0.0.1:9000\nrouting:\n  default_strategy: prefix-cache:2,least-request\n  block_size: 64\n  block_unit: tokens\n",
        )
        .expect("parses");
        assert_eq!(cfg.listen.port(), 9000);
        assert_eq!(cfg.routing.block_size, 64);
        assert_eq!(cfg.routing.block_unit, BlockUnit::Tokens);
        assert_eq!(cfg.scrape.interval_ms, 500);
        assert!(cfg.validate().is_ok());

        let bad: Result<GatewayConfig, _> = serde_yaml_ng::from_str("listne: x");
        assert!(bad.is_err(), "unknown keys are refused");
        let mut cfg = GatewayConfig::default();
        cfg.routing.default_strategy = "fastest".into();
        assert!(matches!(cfg.validate(), Err(ConfigError::Strategy(_))));
        let mut cfg = GatewayConfig::default();
        cfg.routing.block_size = 0;
        assert!(matches!(cfg.validate(), Err(ConfigError::Invalid(_))));
        let cfg: GatewayConfig = serde_yaml_ng::from_str(
            "routing:\n  adapter_strategy: least-request\nadapters:\n  max_held: 5\n  wait_s: 2\n",
        )
        .expect("parses");
        assert_eq!(cfg.adapters.max_held, 5);
        assert_eq!(
            cfg.adapter_strategy().map(|s| s.to_string()).ok(),
            Some("least-request".into())
        );
        assert_eq!(
            GatewayConfig::default().routing.adapter_strategy,
            "lora-affinity"
        );
        let mut cfg = GatewayConfig::default();
        cfg.routing.adapter_strategy = "lora".into();
        assert!(matches!(
            cfg.validate(),
            Err(ConfigError::AdapterStrategy(_))
        ));
        let mut cfg = GatewayConfig::default();
        cfg.adapters.wait_s = 0.0;
        assert!(matches!(cfg.validate(), Err(ConfigError::Invalid(_))));
    }
}
