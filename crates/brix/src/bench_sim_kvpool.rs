//! `brix bench sim --kv-pool-gib N`: the KV pool flags → a `KvPoolConfig` (one pool every
//! simulated engine shares below its prefix cache), and each run's pool line in the combined
//! summary.

use std::fmt::Write as _;

use brix_bench::vsim::{KvPoolConfig, PolicyKind, SimRun};
use brix_sim::{TierConfig, Transport};
use clap::Args;

use super::SimCliError;

/// Bytes in a GiB.
const GIB: f64 = (1u64 << 30) as f64;

/// The KV pool flags of `brix bench sim`.
#[derive(Debug, Args)]
pub(crate) struct KvPoolArgs {
    /// A KV pool of this many GiB that every engine shares below its own prefix cache
    /// (`brix kvcache`'s index and eviction, in virtual time); 0 is a pool that stores
    /// nothing. Without it, prefix caching alone.
    #[arg(long)]
    kv_pool_gib: Option<f64>,
    /// The pool's eviction policy: s3fifo (default, `s3fifo:RATIO` for the small queue) or lru.
    #[arg(long, default_value = "s3fifo")]
    kv_pool_policy: PolicyKind,
    /// How engines reach the pool: shm (same host: the GPU's PCIe bandwidth) or tcp (another
    /// host: 10 GB/s, 200 µs a load).
    #[arg(long, default_value = "shm")]
    kv_pool_transport: Transport,
    /// Load bandwidth into one replica, GB/s, instead of the transport's default.
    #[arg(long)]
    kv_pool_gbps: Option<f64>,
    /// Fixed milliseconds of one load, instead of the transport's default.
    #[arg(long)]
    kv_pool_latency_ms: Option<f64>,
    /// Tokens per pool chunk (a multiple of the engines' block size, 16).
    #[arg(long, default_value_t = TierConfig::DEFAULT_CHUNK_TOKENS)]
    kv_pool_chunk_tokens: u32,
}

impl KvPoolArgs {
    /// The pool of the run, or None without `--kv-pool-gib`.
    pub(crate) fn build(&self, block_size: u32) -> Result<Option<KvPoolConfig>, SimCliError> {
        let Some(gib) = self.kv_pool_gib else {
            return Ok(None);
        };
        let flag = |m: &str| Err(SimCliError::Flag(m.to_string()));
        if !(gib.is_finite() && gib >= 0.0) {
            return flag("--kv-pool-gib must be 0 or more");
        }
        if self
            .kv_pool_gbps
            .is_some_and(|g| !(g.is_finite() && g > 0.0))
        {
            return flag("--kv-pool-gbps must be positive");
        }
        if self
            .kv_pool_latency_ms
            .is_some_and(|l| !(l.is_finite() && l >= 0.0))
        {
            return flag("--kv-pool-latency-ms must be 0 or more");
        }
        if self.kv_pool_chunk_tokens == 0 || !self.kv_pool_chunk_tokens.is_multiple_of(block_size) {
            return Err(SimCliError::Flag(format!(
                "--kv-pool-chunk-tokens must be a positive multiple of the block size ({block_size})"
            )));
        }
        Ok(Some(KvPoolConfig {
            capacity_bytes: (gib * GIB) as u64,
            policy: self.kv_pool_policy,
            transport: self.kv_pool_transport,
            gbps: self.kv_pool_gbps,
            latency_s: self.kv_pool_latency_ms.map(|l| l / 1e3),
            chunk_tokens: self.kv_pool_chunk_tokens,
        }))
    }
}

/// The pool table of the combined summary: one row per run with a pool, or nothing.
pub(crate) fn table<'a>(rows: impl Iterator<Item = (&'a str, &'a SimRun)>) -> String {
    let mut out = String::new();
    for (label, r) in rows {
        let Some(p) = &r.pool else { continue };
        if out.is_empty() {
            out.push_str(
                "\n| run | local hit rate | pool hit rate | pool hits / queries (tokens) | loaded GiB | stored GiB | load s | pool used / capacity GiB | chunks | evictions | transport |\n|---|---|---|---|---|---|---|---|---|---|---|\n",
            );
        }
        let sum = |f: fn(&brix_bench::vsim::EngineReport) -> u64| -> u64 {
            r.engines.iter().map(f).sum()
        };
        let load_s: f64 = r.engines.iter().map(|e| e.external_load_s).sum();
        let _ = writeln!(
            out,
            "| {label} | {:.1} % | {:.1} % | {} / {} | {:.1} | {:.1} | {load_s:.1} | {:.1} / {:.1} | {} | {} | {} {:.1} GB/s |",
            100.0 * r.prefix_hit_rate(),
            100.0 * r.external_hit_rate(),
            sum(|e| e.external_hits),
            sum(|e| e.external_queries),
            sum(|e| e.external_loaded_bytes) as f64 / GIB,
            sum(|e| e.external_stored_bytes) as f64 / GIB,
            p.used_bytes as f64 / GIB,
            p.capacity_bytes as f64 / GIB,
            p.chunks,
            p.evictions,
            p.transport,
            p.gbps,
        );
    }
    out
}
