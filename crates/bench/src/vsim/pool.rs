//! The fleet's KV pool in virtual time (`brix bench sim --kv-pool-gib N`): one pool every
//! engine of the run shares, below each engine's own prefix cache.
//!
//! It is the server's own metadata, [`brix_kvcache::Index`] (the same keys, byte weights,
//! watermarks and S3-FIFO/LRU eviction as `brix kvcache serve`), behind a mutex, as a
//! [`brix_sim::KvTier`]: an engine asks it for the longest present run of a prompt's chunk
//! keys at admission and loads that run when the transfer beats recompute, and offers every
//! chunk it computes (write-through). A chunk weighs its real KV bytes (the model profile's
//! bytes per token × chunk tokens, every GPU of the replica). The transfer time is the
//! engine's business (`brix_sim::TierConfig`: shared memory at the GPU's PCIe bandwidth, or
//! TCP at a NIC's); the pool only answers what it holds and counts.
//!
//! Engines started during a run (a scale-up, a restart) get the same pool: their local cache
//! starts empty, the pool's does not. Pure: virtual seconds come in, milliseconds go to the
//! index, no clock is read.

use std::sync::{Arc, Mutex, PoisonError};

use brix_kvcache::{BlockKey, Index, IndexConfig, PolicyKind};
use brix_sim::{GpuProfile, KvTier, ModelProfile, TierConfig, Transport};
use serde::Serialize;

/// The pool of a run: size, eviction and how engines reach it.
#[derive(Clone, Debug, PartialEq)]
pub struct KvPoolConfig {
    /// Bytes of KV the pool holds (0: a pool that stores nothing, so engines do not use it:
    /// the run is prefix caching alone, its report all zeros).
    pub capacity_bytes: u64,
    /// Eviction order (S3-FIFO by default, as the server's).
    pub policy: PolicyKind,
    /// Shared memory on the engines' host, or TCP to another host: sets the defaults below.
    pub transport: Transport,
    /// Load bandwidth into one replica, GB/s (None: the transport's default).
    pub gbps: Option<f64>,
    /// Fixed seconds of one load (None: the transport's default).
    pub latency_s: Option<f64>,
    /// Tokens per pool chunk (a multiple of the engines' block size).
    pub chunk_tokens: u32,
}

impl KvPoolConfig {
    /// A pool of `capacity_bytes` with the server's policy, shared memory and 256-token chunks.
    pub fn new(capacity_bytes: u64) -> Self {
        Self {
            capacity_bytes,
            policy: PolicyKind::default(),
            transport: Transport::Shm,
            gbps: None,
            latency_s: None,
            chunk_tokens: TierConfig::DEFAULT_CHUNK_TOKENS,
        }
    }

    /// How every engine of the fleet uses the pool.
    pub fn tier_config(&self, model: &ModelProfile, gpu: &GpuProfile) -> TierConfig {
        let mut t = TierConfig::new(self.transport, model, gpu);
        t.chunk_tokens = self.chunk_tokens;
        if let Some(g) = self.gbps {
            t.bandwidth_bytes_per_s = g * 1e9;
        }
        if let Some(l) = self.latency_s {
            t.latency_s = l;
        }
        t
    }
}

/// What the pool did in a run (`sim.json`'s `kv_pool`).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct PoolReport {
    /// Configured bytes.
    pub capacity_bytes: u64,
    /// Bytes held at the end.
    pub used_bytes: u64,
    /// Chunks held at the end.
    pub chunks: usize,
    /// `s3fifo:0.1`, `lru`.
    pub policy: String,
    /// `shm` or `tcp`.
    pub transport: String,
    /// Load bandwidth into one replica, GB/s.
    pub gbps: f64,
    /// Fixed latency of one load, ms.
    pub latency_ms: f64,
    /// Tokens per chunk.
    pub chunk_tokens: u32,
    /// Admissions that asked the pool.
    pub lookups: u64,
    /// Chunk keys asked about.
    pub queried_chunks: u64,
    /// Of those, found (the leading run present).
    pub hit_chunks: u64,
    /// Chunks offered by write-through that were new to the pool.
    pub offered_new: u64,
    /// New chunks admitted.
    pub inserts: u64,
    /// Bytes of the admitted chunks.
    pub inserted_bytes: u64,
    /// Chunks evicted to make room.
    pub evictions: u64,
    /// Bytes those evictions freed.
    pub evicted_bytes: u64,
    /// Chunks refused (larger than the pool, or no room).
    pub rejected: u64,
}

/// The index and the counters the index does not keep.
#[derive(Debug)]
struct Inner {
    index: Index,
    lookups: u64,
    queried_chunks: u64,
    hit_chunks: u64,
    offered_new: u64,
    inserted_bytes: u64,
}

/// One pool that every engine of a run shares (a [`KvTier`]).
pub struct FleetPool {
    inner: Mutex<Inner>,
    cfg: KvPoolConfig,
}

impl std::fmt::Debug for FleetPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FleetPool").field("cfg", &self.cfg).finish()
    }
}

/// Virtual seconds as the index's milliseconds.
fn ms(now: f64) -> u64 {
    (now.max(0.0) * 1000.0) as u64
}

impl FleetPool {
    /// An empty pool.
    pub fn new(cfg: KvPoolConfig) -> Arc<Self> {
        let index = Index::new(IndexConfig::new(cfg.capacity_bytes).with_policy(cfg.policy));
        Arc::new(Self {
            inner: Mutex::new(Inner {
                index,
                lookups: 0,
                queried_chunks: 0,
                hit_chunks: 0,
                offered_new: 0,
                inserted_bytes: 0,
            }),
            cfg,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // The pool is touched only by the single-threaded event loop; a poisoned lock means a
        // panic already ends the run, so the data is as good as any.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The run's pool counters, with the transport engines on `model`/`gpu` use.
    pub fn report(&self, model: &ModelProfile, gpu: &GpuProfile) -> PoolReport {
        let g = self.lock();
        let st = g.index.stats();
        let tier = self.cfg.tier_config(model, gpu);
        PoolReport {
            capacity_bytes: g.index.capacity_bytes(),
            used_bytes: g.index.used_bytes(),
            chunks: g.index.len(),
            policy: self.cfg.policy.to_string(),
            transport: self.cfg.transport.as_str().to_string(),
            gbps: tier.bandwidth_bytes_per_s / 1e9,
            latency_ms: tier.latency_s * 1e3,
            chunk_tokens: tier.chunk_tokens,
            lookups: g.lookups,
            queried_chunks: g.queried_chunks,
            hit_chunks: g.hit_chunks,
            offered_new: g.offered_new,
            inserts: st.inserts,
            inserted_bytes: g.inserted_bytes,
            evictions: st.evictions,
            evicted_bytes: st.evicted_bytes,
            rejected: st.rejected,
        }
    }
}

impl KvTier for FleetPool {
    fn lookup(&self, keys: &[BlockKey], now: f64) -> usize {
        let mut g = self.lock();
        g.lookups += 1;
        g.queried_chunks += keys.len() as u64;
        let n = g.index.longest_prefix(keys, ms(now));
        g.hit_chunks += n as u64;
        n
    }

    fn store(&self, keys: &[BlockKey], bytes: u64, now: f64) {
        let mut g = self.lock();
        for &k in keys {
            // Another engine may have stored it since this one looked: a real client's
            // `exists` before `put` skips it too (and it is no access for the policy).
            if g.index.contains(k) {
                continue;
            }
            g.offered_new += 1;
            if g.index.insert(k, bytes, ms(now)).is_ok() {
                g.inserted_bytes += bytes;
            }
        }
    }
}
