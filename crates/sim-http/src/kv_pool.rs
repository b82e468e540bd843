//! The live KV tier of `brix sim`: the engine model's [`KvTier`] over real pool servers
//! (`brix kvcache serve`), so a live run exercises the real protocol.
//!
//! Keys are placed on the servers by the pool's consistent-hash ring. A lookup is synchronous
//! (it runs in the scheduler's admission, as vLLM's `get_num_new_matched_tokens`): each server
//! is asked, in one round trip, for the longest present run of the keys it owns, and the
//! prompt's hit ends at the first key any server lacks. Every call has a short timeout; a
//! server that fails is a miss and is left alone for a backoff, so a dead pool costs one
//! timeout, not one per request. Stores go to a background thread through a bounded queue:
//! a full queue drops the batch (counted), never blocks a step. The payload stored per chunk
//! is `value_bytes` of filler: the real KV size by default, smaller on a laptop. The engine
//! model prices the transfer itself; the live tier reads no payload back.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use brix_kvcache::blocking::{Client, ClientConfig};
use brix_kvcache::{BlockKey, Ring};
use brix_sim::{KvTier, Transport};

/// How long one lookup may wait on one server (connect, or a reply): it holds up the engine's
/// step, so it is short; a few of AIBrix's 20 ms per-call L2 timeouts, to ride out a busy host.
pub const LOOKUP_TIMEOUT: Duration = Duration::from_millis(50);
/// How long a store may wait on one server (the payload is large).
const STORE_TIMEOUT: Duration = Duration::from_secs(2);
/// First pause after a server failed; doubles up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// Store batches queued for the writer before new ones are dropped.
const STORE_QUEUE: usize = 64;

/// Where and how `brix sim` reaches a KV pool (`--kv-pool*` flags).
#[derive(Clone, PartialEq)]
pub struct KvPoolConfig {
    /// Pool servers, `host:port`; several form one pool over a consistent-hash ring.
    pub servers: Vec<String>,
    /// Tokens per chunk (a multiple of the block size).
    pub chunk_tokens: u32,
    /// The transport the engine model prices loads with.
    pub transport: Transport,
    /// Overrides the transport's bandwidth into the replica, GB/s.
    pub bandwidth_gbps: Option<f64>,
    /// The pool's auth token (sent in HELLO; never printed).
    pub token: Option<String>,
    /// Payload bytes stored per chunk (None: the model's real KV bytes of a chunk).
    pub value_bytes: Option<u64>,
}

impl fmt::Debug for KvPoolConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KvPoolConfig")
            .field("servers", &self.servers)
            .field("chunk_tokens", &self.chunk_tokens)
            .field("transport", &self.transport)
            .field("bandwidth_gbps", &self.bandwidth_gbps)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("value_bytes", &self.value_bytes)
            .finish()
    }
}

impl KvPoolConfig {
    /// A pool at `servers` with LMCache's chunk size, priced as TCP.
    pub fn new(servers: Vec<String>) -> Self {
        Self {
            servers,
            chunk_tokens: brix_sim::TierConfig::DEFAULT_CHUNK_TOKENS,
            transport: Transport::Tcp,
            bandwidth_gbps: None,
            token: None,
            value_bytes: None,
        }
    }
}

/// What the live tier did, for `/metrics` (`brix_sim_kv_pool_*`).
#[derive(Debug, Default)]
pub(crate) struct PoolCounters {
    /// Server round trips that failed or timed out (each a miss).
    pub(crate) lookup_errors: AtomicU64,
    /// Chunks written to the pool.
    pub(crate) stored_chunks: AtomicU64,
    /// Chunks not written: queue full, server down or refused.
    pub(crate) dropped_chunks: AtomicU64,
}

/// One server: a lazily (re)connected client and its backoff.
#[derive(Debug)]
struct Server {
    addr: String,
    conn: Option<Client>,
    down_until: Option<Instant>,
    backoff: Duration,
}

impl Server {
    fn new(addr: String) -> Self {
        Self {
            addr,
            conn: None,
            down_until: None,
            backoff: MIN_BACKOFF,
        }
    }

    /// Runs `op` on a connection (connecting first), or None while backing off or on failure.
    fn call<T>(
        &mut self,
        token: Option<&str>,
        timeout: Duration,
        op: impl FnOnce(&mut Client) -> std::io::Result<T>,
    ) -> Option<T> {
        let now = Instant::now();
        if self.down_until.is_some_and(|t| now < t) {
            return None;
        }
        if self.conn.is_none() {
            let cfg = ClientConfig {
                token: token.map(str::to_string),
                connect_timeout: timeout,
                io_timeout: timeout,
                shm: false,
            };
            match Client::connect(&self.addr, cfg) {
                Ok(c) => self.conn = Some(c),
                Err(e) => return self.failed(&e),
            }
        }
        let conn = self.conn.as_mut()?;
        match op(conn) {
            Ok(v) => {
                self.down_until = None;
                self.backoff = MIN_BACKOFF;
                Some(v)
            }
            Err(e) => self.failed(&e),
        }
    }

    fn failed<T>(&mut self, e: &std::io::Error) -> Option<T> {
        tracing::debug!(server = %self.addr, error = %e, backoff = ?self.backoff, "KV pool call failed");
        self.conn = None;
        self.down_until = Some(Instant::now() + self.backoff);
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        None
    }
}

/// The live pool tier: lookups on the caller's thread, stores on a writer thread.
pub(crate) struct NetTier {
    ring: Ring,
    token: Option<String>,
    /// Lookup connections, one per server.
    lookup: Vec<Mutex<Server>>,
    writer: SyncSender<Vec<BlockKey>>,
    counters: Arc<PoolCounters>,
}

impl fmt::Debug for NetTier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NetTier")
            .field("servers", &self.ring.nodes())
            .finish_non_exhaustive()
    }
}

impl NetTier {
    /// Starts the writer thread; nothing connects until the first call.
    pub(crate) fn start(
        cfg: &KvPoolConfig,
        value_bytes: u64,
        counters: Arc<PoolCounters>,
    ) -> std::io::Result<Self> {
        let ring = Ring::new(&cfg.servers, brix_kvcache::DEFAULT_VNODES);
        let (writer, queue) = std::sync::mpsc::sync_channel(STORE_QUEUE);
        let w = Writer {
            ring: ring.clone(),
            token: cfg.token.clone(),
            servers: cfg.servers.iter().cloned().map(Server::new).collect(),
            value: vec![0u8; usize::try_from(value_bytes).unwrap_or(usize::MAX)],
            counters: counters.clone(),
        };
        std::thread::Builder::new()
            .name("kv-pool-writer".into())
            .spawn(move || w.run(queue))?;
        Ok(Self {
            lookup: cfg
                .servers
                .iter()
                .cloned()
                .map(|a| Mutex::new(Server::new(a)))
                .collect(),
            ring,
            token: cfg.token.clone(),
            writer,
            counters,
        })
    }

    fn lookup_blocking(&self, keys: &[BlockKey]) -> usize {
        let mut owned: Vec<Vec<(usize, BlockKey)>> = vec![Vec::new(); self.lookup.len()];
        for (i, k) in keys.iter().enumerate() {
            match self.ring.node_for(*k) {
                Some(n) if n < owned.len() => owned[n].push((i, *k)),
                _ => return i,
            }
        }
        let mut hit = keys.len();
        for (n, mine) in owned.iter().enumerate() {
            // Keys past an earlier server's first miss cannot extend the hit.
            let mine: Vec<BlockKey> = mine
                .iter()
                .take_while(|(i, _)| *i < hit)
                .map(|(_, k)| *k)
                .collect();
            if mine.is_empty() {
                continue;
            }
            let mut server = self.lookup[n].lock().unwrap_or_else(|e| e.into_inner());
            let present = server
                .call(self.token.as_deref(), LOOKUP_TIMEOUT, |c| {
                    c.longest_prefix(&mine)
                })
                .unwrap_or_else(|| {
                    self.counters.lookup_errors.fetch_add(1, Ordering::Relaxed);
                    0
                });
            if let Some((i, _)) = owned[n].get(present) {
                hit = hit.min(*i);
            }
        }
        hit
    }
}

impl KvTier for NetTier {
    fn lookup(&self, keys: &[BlockKey], _now: f64) -> usize {
        // The engine runs inside the driver task: let the runtime move other tasks off this
        // worker while it waits (a current-thread runtime just waits, bounded by the timeout).
        match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
            Ok(tokio::runtime::RuntimeFlavor::MultiThread) => {
                tokio::task::block_in_place(|| self.lookup_blocking(keys))
            }
            _ => self.lookup_blocking(keys),
        }
    }

    fn store(&self, keys: &[BlockKey], _bytes: u64, _now: f64) {
        match self.writer.try_send(keys.to_vec()) {
            Ok(()) => {}
            Err(TrySendError::Full(batch) | TrySendError::Disconnected(batch)) => {
                self.counters
                    .dropped_chunks
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
            }
        }
    }
}

/// The store side: its own connections, fed by the bounded queue, ends with the tier.
struct Writer {
    ring: Ring,
    token: Option<String>,
    servers: Vec<Server>,
    value: Vec<u8>,
    counters: Arc<PoolCounters>,
}

impl Writer {
    fn run(mut self, queue: Receiver<Vec<BlockKey>>) {
        while let Ok(batch) = queue.recv() {
            for key in batch {
                let ok = match self.ring.node_for(key) {
                    Some(n) if n < self.servers.len() => {
                        let value = &self.value;
                        self.servers[n]
                            .call(self.token.as_deref(), STORE_TIMEOUT, |c| {
                                c.put(&[(key, value)])
                            })
                            .is_some_and(|s| s.first().is_some_and(|s| s.is_ok()))
                    }
                    _ => false,
                };
                let counter = match ok {
                    true => &self.counters.stored_chunks,
                    false => &self.counters.dropped_chunks,
                };
                counter.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Largest payload per chunk `brix sim` stores (a 70B model's 256-token chunk is 80 MiB).
const MAX_VALUE_BYTES: u64 = 1 << 30;

/// The live tier, the engine's settings for it, and the counters `/metrics` reads.
pub(crate) type LiveTier = (Arc<dyn KvTier>, brix_sim::TierConfig, Arc<PoolCounters>);

/// The engine's tier settings and the live tier for `config`'s pool, checked.
pub(crate) fn tier(
    config: &crate::SimConfig,
    p: &KvPoolConfig,
) -> Result<LiveTier, crate::SimError> {
    let bad = |m: String| crate::SimError::KvPool(m);
    if p.servers.is_empty() || p.servers.iter().any(|s| s.trim().is_empty()) {
        return Err(bad("--kv-pool needs at least one host:port".into()));
    }
    let mut cfg = brix_sim::TierConfig::new(p.transport, &config.model, &config.gpu);
    cfg.model = config.served_model_name.clone();
    cfg.chunk_tokens = p.chunk_tokens;
    if let Some(gbps) = p.bandwidth_gbps {
        cfg.bandwidth_bytes_per_s = gbps * 1e9;
    }
    cfg.validate(config.engine.block_size)
        .map_err(|e| bad(format!("--kv-pool: {e}")))?;
    let m = &config.model;
    let real = m.kv_bytes_per_token_per_gpu()
        * f64::from(m.tensor_parallel_size)
        * f64::from(cfg.chunk_tokens);
    let value_bytes = p.value_bytes.unwrap_or(real.round() as u64);
    if value_bytes == 0 || value_bytes > MAX_VALUE_BYTES {
        return Err(bad(format!(
            "--kv-pool-value-bytes must be in 1..={MAX_VALUE_BYTES}, got {value_bytes}"
        )));
    }
    let counters = Arc::new(PoolCounters::default());
    let tier = NetTier::start(p, value_bytes, counters.clone())
        .map_err(|e| bad(format!("--kv-pool: starting the writer: {e}")))?;
    Ok((Arc::new(tier), cfg, counters))
}
