//! Gateway replicas acting as one: each replica PUBLISHes, on one Redis channel per model, its
//! own load on every pod (absolute values: a repeated or lost batch does no harm) and the
//! prefix blocks it booked since the last batch (bounded), as soon as either changed (looking
//! every `min_interval_ms`) and at least every `interval_ms`; it
//! subscribes to every model's channel and applies its peers' batches to its pool
//! ([`brix_router::fleet::PodCore::set_remote`], [`crate::pool::Pool::peer_accepted`]).
//!
//! Nothing here runs on the request path: a request routes on what the pool holds now. A
//! change reaches the peers within `min_interval_ms` plus the transit time; a peer's load
//! counts for `ttl_s` after its batch arrived, so a replica that dies stops counting after it.
//! Redis down: each replica routes on its own view (what single-gateway Brix does), logs one
//! warning per outage, shows `brix_gateway_sync_up 0`, and reconnects with back-off. Every
//! Redis wait has a timeout (`timeout_ms`); a subscription that stops delivering (not even
//! this replica's own batches) is dropped and made again.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use brix_router::fleet::{MAX_GATEWAY_ID_LEN, MAX_PEERS, RemoteLoad};
use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
};
use serde::{Deserialize, Serialize};
use tokio_stream::StreamExt;

use crate::metrics::Metrics;
use crate::pool::Pool;

/// Largest batch accepted from a peer; a longer message is dropped unread.
pub const MAX_MESSAGE_BYTES: usize = 1 << 20;
/// Most pod entries applied from one batch.
pub const MAX_PODS_PER_BATCH: usize = 4096;
/// Longest wait between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// `routing.sync`: share load and prefix bookings with the other gateway replicas.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SyncConfig {
    /// Redis URL (`redis://host:port/db`); sync is off without it.
    pub redis: Option<String>,
    /// Longest milliseconds between two batches of this replica (a heartbeat when nothing
    /// changed).
    pub interval_ms: u64,
    /// Milliseconds between two looks at this replica's own loads and bookings: a change is
    /// published at the next look (so at most this stale, plus transit), at most one batch per
    /// look.
    pub min_interval_ms: u64,
    /// Seconds a peer's load counts after its batch arrived.
    pub ttl_s: f64,
    /// This replica's id in its batches; random at start when unset (at most 64 bytes).
    pub gateway_id: Option<String>,
    /// Channel prefix: a model's batches go to `<channel>:<model>`.
    pub channel: String,
    /// Most prefix blocks one batch carries (the rest are dropped and counted).
    pub max_blocks: usize,
    /// Milliseconds any Redis connect, subscribe or publish may take.
    pub timeout_ms: u64,
}

impl Default for SyncConfig {
    fn default() -> Self {
        Self {
            redis: None,
            interval_ms: 100,
            min_interval_ms: 5,
            ttl_s: brix_router::fleet::DEFAULT_REMOTE_TTL_S,
            gateway_id: None,
            channel: "brix:routing".into(),
            max_blocks: 4096,
            timeout_ms: 1000,
        }
    }
}

impl SyncConfig {
    /// The first problem with these settings, if any.
    pub fn problem(&self) -> Option<&'static str> {
        let interval_s = self.interval_ms as f64 / 1000.0;
        if !(10..=10_000).contains(&self.interval_ms) {
            return Some("routing.sync.interval_ms must be in 10..=10000");
        }
        if !(1..=self.interval_ms).contains(&self.min_interval_ms) {
            return Some("routing.sync.min_interval_ms must be in 1..=interval_ms");
        }
        if !(self.ttl_s.is_finite() && self.ttl_s > interval_s) {
            return Some("routing.sync.ttl_s must be finite and above interval_ms");
        }
        if self
            .gateway_id
            .as_ref()
            .is_some_and(|g| g.is_empty() || g.len() > MAX_GATEWAY_ID_LEN)
        {
            return Some("routing.sync.gateway_id must be 1 to 64 bytes");
        }
        if self.channel.is_empty() || self.max_blocks == 0 || self.timeout_ms == 0 {
            return Some("routing.sync.channel must be set, max_blocks and timeout_ms at least 1");
        }
        None
    }

    /// The id this replica publishes under.
    pub fn id(&self) -> String {
        self.gateway_id
            .clone()
            .unwrap_or_else(|| format!("gw-{:016x}", rand::random::<u64>()))
    }
}

/// Prefix blocks booked since the last batch, by model, bounded in blocks.
#[derive(Debug, Default)]
pub struct Outbox {
    max_blocks: usize,
    blocks: usize,
    /// Blocks not kept because the batch was full.
    pub dropped: u64,
    /// (model, pod address, blocks) in booking order.
    pub booked: Vec<(String, String, Vec<u64>)>,
}

impl Outbox {
    /// An empty outbox keeping at most `max_blocks` per batch.
    pub fn new(max_blocks: usize) -> Self {
        Self {
            max_blocks,
            ..Self::default()
        }
    }

    /// Keeps `blocks` booked on `address` for `model`, if they fit.
    pub fn push(&mut self, model: &str, address: &str, blocks: &[u64]) {
        if self.blocks + blocks.len() > self.max_blocks {
            self.dropped += blocks.len() as u64;
            return;
        }
        self.blocks += blocks.len();
        self.booked
            .push((model.to_string(), address.to_string(), blocks.to_vec()));
    }

    /// What was kept so far; the outbox starts over, with the same bound.
    pub fn take(&mut self) -> Self {
        std::mem::replace(self, Self::new(self.max_blocks))
    }
}

/// One pod's load in a batch.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PodLoad {
    /// The pod's address (`host:port`), as discovery lists it.
    #[serde(rename = "a")]
    pub address: String,
    /// Requests in flight from the publishing replica.
    #[serde(rename = "n", default)]
    pub in_flight: u32,
    /// Uncached prompt tokens it booked with no first token yet.
    #[serde(rename = "p", default)]
    pub pending_prefill: f64,
    /// Its requests past their first token.
    #[serde(rename = "d", default)]
    pub decoding: u32,
    /// Σ those requests' context tokens.
    #[serde(rename = "c", default)]
    pub decode_context: f64,
}

impl PodLoad {
    /// `load` on the pod at `address`.
    pub fn new(address: &str, load: RemoteLoad) -> Self {
        Self {
            address: address.to_string(),
            in_flight: load.in_flight,
            pending_prefill: load.pending_prefill,
            decoding: load.decoding,
            decode_context: load.decode_context,
        }
    }

    /// The load it carries.
    pub fn load(&self) -> RemoteLoad {
        RemoteLoad {
            in_flight: self.in_flight,
            pending_prefill: self.pending_prefill,
            decoding: self.decoding,
            decode_context: self.decode_context,
        }
    }
}

/// Blocks booked on one pod.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Booked {
    /// The pod's address.
    #[serde(rename = "a")]
    pub address: String,
    /// The prompt's chained block hashes, in order.
    #[serde(rename = "b")]
    pub blocks: Vec<u64>,
}

/// One replica's batch for one model (JSON on the wire; unknown fields ignored, so newer
/// replicas can add load fields).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Batch {
    /// The publishing replica.
    pub gw: String,
    /// Its batch counter (diagnostics only: loads are absolute).
    pub seq: u64,
    /// Unix seconds at publication (for the batch-age metric).
    pub ts: f64,
    /// Its load on every pod of the model.
    pub pods: Vec<PodLoad>,
    /// Blocks it booked since its previous batch.
    #[serde(default)]
    pub booked: Vec<Booked>,
}

/// Why a received message was not applied.
#[derive(Debug, PartialEq, Eq)]
pub enum Rejected {
    /// Over [`MAX_MESSAGE_BYTES`].
    TooLarge,
    /// Not a batch.
    Malformed,
    /// The gateway id is empty or too long.
    BadId,
}

/// Parses a peer's message.
pub fn decode(payload: &[u8]) -> Result<Batch, Rejected> {
    if payload.len() > MAX_MESSAGE_BYTES {
        return Err(Rejected::TooLarge);
    }
    let b: Batch = serde_json::from_slice(payload).map_err(|_| Rejected::Malformed)?;
    if b.gw.is_empty() || b.gw.len() > MAX_GATEWAY_ID_LEN {
        return Err(Rejected::BadId);
    }
    Ok(b)
}

/// This replica's batches now, one per model: (channel, JSON); `booked` is drained.
pub fn batches(
    pool: &Pool,
    cfg: &SyncConfig,
    id: &str,
    seq: u64,
    booked: Outbox,
) -> Vec<(String, Vec<u8>)> {
    let ts = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let mut by_model: HashMap<String, Vec<Booked>> = HashMap::new();
    for (model, address, blocks) in booked.booked {
        by_model
            .entry(model)
            .or_default()
            .push(Booked { address, blocks });
    }
    let mut out = Vec::new();
    let models = pool.models();
    for (model, pods) in &models {
        let batch = Batch {
            gw: id.to_string(),
            seq,
            ts,
            pods: pods
                .iter()
                .map(|p| PodLoad::new(&p.address, p.own_load()))
                .collect(),
            booked: by_model.remove(model).unwrap_or_default(),
        };
        if let Ok(json) = serde_json::to_vec(&batch) {
            out.push((format!("{}:{model}", cfg.channel), json));
        }
    }
    // Bookings under a name with no base-model pods (an adapter): their own channel.
    for (model, booked) in by_model {
        let batch = Batch {
            gw: id.to_string(),
            seq,
            ts,
            pods: Vec::new(),
            booked,
        };
        if let Ok(json) = serde_json::to_vec(&batch) {
            out.push((format!("{}:{model}", cfg.channel), json));
        }
    }
    out
}

/// What applying one peer batch did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// Pod loads stored.
    pub loads: usize,
    /// Pod loads for pods this replica does not list (discovery lag): skipped.
    pub unknown: usize,
    /// Pod loads refused (the pod's peer table full).
    pub refused: usize,
    /// Booked block runs indexed.
    pub booked: usize,
}

/// Applies a peer's batch for `model`: its loads on pods this replica knows, and its
/// bookings on them (for a model this replica knows).
pub fn apply(pool: &Pool, model: &str, batch: &Batch) -> Applied {
    let mut a = Applied::default();
    for p in batch.pods.iter().take(MAX_PODS_PER_BATCH) {
        match pool
            .pod(&p.address)
            .map(|pod| pod.set_remote(&batch.gw, p.load()))
        {
            Some(Ok(())) => a.loads += 1,
            Some(Err(_)) => a.refused += 1,
            None => a.unknown += 1,
        }
    }
    if !pool.knows(model) {
        return a;
    }
    let now = pool.now();
    for b in batch.booked.iter().take(MAX_PODS_PER_BATCH) {
        if pool.pod(&b.address).is_some() {
            pool.peer_accepted(model, &b.blocks, &b.address, now);
            a.booked += 1;
        }
    }
    a
}

/// The sync's metrics (registered on the gateway's `/metrics`).
#[derive(Clone, Debug)]
pub struct SyncMetrics {
    /// 1 while connected to Redis and subscribed.
    pub up: IntGauge,
    /// Peer replicas heard from within the TTL.
    pub peers: IntGauge,
    /// Age of received peer batches (publisher's clock to ours), seconds.
    pub batch_age: Histogram,
    /// Sync failures by kind: connect, subscribe, publish, stalled, decode, refused.
    pub errors: IntCounterVec,
    /// Batches sent and received.
    pub batches: IntCounterVec,
    /// Booked blocks left out of a full batch.
    pub dropped_blocks: IntCounter,
    /// Peers' booked block runs applied to this replica's prefix index.
    pub peer_booked: IntCounter,
    /// Requests the live peers have in flight per pod, as this replica counts them.
    pub peer_in_flight: IntGaugeVec,
}

impl SyncMetrics {
    /// Makes the families and registers them on `m`.
    pub fn register(m: &Metrics) -> Result<Self, prometheus::Error> {
        let s = Self {
            up: IntGauge::new(
                "brix_gateway_sync_up",
                "1 while the replica sync is connected to Redis and subscribed; 0 means this replica routes on its own view.",
            )?,
            peers: IntGauge::new(
                "brix_gateway_sync_peers",
                "Other gateway replicas heard from within the sync TTL.",
            )?,
            batch_age: Histogram::with_opts(
                HistogramOpts::new(
                    "brix_gateway_sync_batch_age_seconds",
                    "Age of a peer's batch when it arrived (its clock to ours).",
                )
                .buckets(vec![
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                ]),
            )?,
            errors: IntCounterVec::new(
                Opts::new(
                    "brix_gateway_sync_errors_total",
                    "Replica sync failures: connect, subscribe, publish, stalled, decode, refused.",
                ),
                &["kind"],
            )?,
            batches: IntCounterVec::new(
                Opts::new(
                    "brix_gateway_sync_batches_total",
                    "Replica sync batches sent and received (peers' only).",
                ),
                &["direction"],
            )?,
            dropped_blocks: IntCounter::new(
                "brix_gateway_sync_dropped_blocks_total",
                "Booked prefix blocks left out of a full sync batch.",
            )?,
            peer_booked: IntCounter::new(
                "brix_gateway_sync_peer_booked_total",
                "Peers' booked prompts (block runs) applied to this replica's prefix index.",
            )?,
            peer_in_flight: IntGaugeVec::new(
                Opts::new(
                    "brix_gateway_sync_peer_in_flight_requests",
                    "Requests the live peer replicas have in flight, by pod, as this replica counts them.",
                ),
                &["pod"],
            )?,
        };
        m.register(Box::new(s.peer_booked.clone()))?;
        m.register(Box::new(s.peer_in_flight.clone()))?;
        m.register(Box::new(s.up.clone()))?;
        m.register(Box::new(s.peers.clone()))?;
        m.register(Box::new(s.batch_age.clone()))?;
        m.register(Box::new(s.errors.clone()))?;
        m.register(Box::new(s.batches.clone()))?;
        m.register(Box::new(s.dropped_blocks.clone()))?;
        Ok(s)
    }
}

/// Starts the sync task when `cfg.redis` is set; returns this replica's id.
pub fn spawn(pool: Arc<Pool>, cfg: SyncConfig, metrics: SyncMetrics) -> Option<String> {
    let url = cfg.redis.clone()?;
    let id = cfg.id();
    pool.keep_booked(cfg.max_blocks);
    tracing::info!(gateway_id = %id, interval_ms = cfg.interval_ms, "replica sync on");
    tokio::spawn(run(pool, cfg, url, id.clone(), metrics));
    Some(id)
}

/// Connects, syncs until the connection fails, and starts again, forever.
async fn run(pool: Arc<Pool>, cfg: SyncConfig, url: String, id: String, m: SyncMetrics) {
    let mut backoff = Duration::from_millis(cfg.interval_ms);
    let mut warned = false;
    let mut seq = 0u64;
    let mut peers: HashMap<String, Instant> = HashMap::new();
    loop {
        let Err((kind, e)) = session(
            &pool,
            &cfg,
            &url,
            &id,
            &m,
            &mut seq,
            &mut peers,
            &mut warned,
        )
        .await;
        m.errors.with_label_values(&[kind]).inc();
        let why = format!("{kind}: {e}");
        if m.up.get() == 1 {
            // It was up: start the back-off over.
            backoff = Duration::from_millis(cfg.interval_ms);
        }
        m.up.set(0);
        m.peers.set(0);
        // Bookings made while down are not replayed: peers learn them from later traffic.
        let _ = pool.take_booked();
        if !warned {
            tracing::warn!(redis = %redact(&url), error = %why, "replica sync lost; routing on this replica's own view until Redis is back");
            warned = true;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
        // Peers' loads expire while down; the gauge follows.
        show_peer_loads(&pool, &m);
    }
}

/// This replica's own load on every pod of every model, in a fixed order (what a batch
/// would carry), to tell whether anything changed since the last batch.
fn own_loads(pool: &Pool) -> Vec<RemoteLoad> {
    pool.models()
        .iter()
        .flat_map(|(_, pods)| pods.iter().map(|p| p.own_load()))
        .collect()
}

/// Sets the per-pod peer in-flight gauge to what the pool counts now (pods that left drop out).
fn show_peer_loads(pool: &Pool, m: &SyncMetrics) {
    m.peer_in_flight.reset();
    for p in pool.all() {
        m.peer_in_flight
            .with_label_values(&[p.name.as_str()])
            .set(i64::from(p.remote_load().in_flight));
    }
}

/// The URL without its password, for logs.
fn redact(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((_, host)) => format!("{scheme}://***@{host}"),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

type SessionError = (&'static str, String);

/// Awaits a Redis call for at most `limit`.
async fn bounded<T>(
    what: &'static str,
    limit: Duration,
    fut: impl Future<Output = redis::RedisResult<T>>,
) -> Result<T, SessionError> {
    match tokio::time::timeout(limit, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err((what, e.to_string())),
        Err(_) => Err((what, format!("no answer within {limit:?}"))),
    }
}

/// One connection's life: subscribe, then publish every interval and apply what arrives.
#[allow(clippy::too_many_arguments)]
async fn session(
    pool: &Pool,
    cfg: &SyncConfig,
    url: &str,
    id: &str,
    m: &SyncMetrics,
    seq: &mut u64,
    peers: &mut HashMap<String, Instant>,
    warned: &mut bool,
) -> Result<std::convert::Infallible, SessionError> {
    let timeout = Duration::from_millis(cfg.timeout_ms);
    let client = redis::Client::open(url).map_err(|e| ("connect", e.to_string()))?;
    let conn_cfg = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout));
    let mut publisher = bounded(
        "connect",
        timeout,
        client.get_multiplexed_async_connection_with_config(&conn_cfg),
    )
    .await?;
    let mut sub = bounded("connect", timeout, client.get_async_pubsub()).await?;
    let pattern = format!("{}:*", cfg.channel);
    bounded("subscribe", timeout, sub.psubscribe(&pattern)).await?;
    let mut messages = sub.into_on_message();
    m.up.set(1);
    if *warned {
        tracing::info!("replica sync back: sharing load with peers again");
        *warned = false;
    }
    let interval = Duration::from_millis(cfg.interval_ms);
    // Our own batches come back through the subscription: silence this long means it died.
    let stall = interval * 3 + timeout;
    let mut last_heard = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(cfg.min_interval_ms));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // What was last published, and when: unchanged loads and no booking wait for the heartbeat.
    let mut last_loads: Vec<RemoteLoad> = Vec::new();
    let mut last_sent: Option<Instant> = None;
    let prefix = format!("{}:", cfg.channel);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if last_heard.elapsed() > stall {
                    return Err(("stalled", format!("nothing received for {stall:?}")));
                }
                let loads = own_loads(pool);
                let booked = pool.take_booked();
                if booked.dropped > 0 {
                    m.dropped_blocks.inc_by(booked.dropped);
                }
                let due = last_sent.is_none_or(|t| t.elapsed() >= interval);
                if !due && booked.booked.is_empty() && loads == last_loads {
                    continue;
                }
                last_loads = loads;
                last_sent = Some(Instant::now());
                *seq += 1;
                let mut pipe = redis::pipe();
                for (channel, json) in batches(pool, cfg, id, *seq, booked) {
                    pipe.cmd("PUBLISH").arg(channel).arg(json).ignore();
                }
                bounded("publish", timeout, pipe.query_async::<()>(&mut publisher)).await?;
                m.batches.with_label_values(&["sent"]).inc();
                peers.retain(|_, t| t.elapsed().as_secs_f64() <= cfg.ttl_s);
                m.peers.set(i64::try_from(peers.len()).unwrap_or(i64::MAX));
                show_peer_loads(pool, m);
            }
            msg = messages.next() => {
                let Some(msg) = msg else {
                    return Err(("subscribe", "subscription ended".into()));
                };
                last_heard = Instant::now();
                let Some(model) = msg.get_channel_name().strip_prefix(&prefix) else { continue };
                let batch = match decode(msg.get_payload_bytes()) {
                    Ok(b) => b,
                    Err(_) => {
                        m.errors.with_label_values(&["decode"]).inc();
                        continue;
                    }
                };
                if batch.gw == id {
                    continue;
                }
                if !peers.contains_key(&batch.gw) && peers.len() >= MAX_PEERS {
                    m.errors.with_label_values(&["refused"]).inc();
                    continue;
                }
                peers.insert(batch.gw.clone(), Instant::now());
                m.batches.with_label_values(&["received"]).inc();
                let now_unix = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0.0, |d| d.as_secs_f64());
                if batch.ts.is_finite() {
                    m.batch_age.observe((now_unix - batch.ts).clamp(0.0, 3600.0));
                }
                let a = apply(pool, model, &batch);
                m.peer_booked.inc_by(a.booked as u64);
                if a.refused > 0 {
                    m.errors.with_label_values(&["refused"]).inc_by(a.refused as u64);
                }
            }
        }
    }
}

#[cfg(test)]
#[path = "sync_tests.rs"]
mod tests;
