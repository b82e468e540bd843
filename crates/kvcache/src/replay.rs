//! Trace replay through [`Index`] for eviction studies, so the numbers come from the code the
//! server and the fleet run, not from a separate simulator.
//!
//! Method (reference study §6.3): requests in timestamp order; a request's hit is the longest
//! present prefix of its block ids ([`Index::longest_prefix`], which touches them); then every
//! later block of the request is touched if present or inserted if not (the pool stores
//! everything prefilled). Pure: the caller parses the trace.

use crate::{BlockKey, Index, IndexConfig, IndexStats, PolicyKind};

/// One request of a prefix-hash trace (Mooncake's `hash_ids` format).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceRequest {
    /// Arrival time in milliseconds (used as the index's clock).
    pub timestamp_ms: u64,
    /// Prompt length in tokens (sizes the partial last block).
    pub input_length: u64,
    /// Prefix-chained block ids: equal ids mean equal prefixes.
    pub hash_ids: Vec<u64>,
}

/// How much a block weighs in the index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Weighting {
    /// Every block weighs 1 (the reference study's unit-size blocks).
    Unit,
    /// A block weighs its tokens: `block_tokens`, except the last one of a request, which
    /// weighs what is left of `input_length` (clamped to `1..=block_tokens`).
    Tokens {
        /// Tokens per full block (512 for the Mooncake traces).
        block_tokens: u64,
    },
}

impl Weighting {
    /// Weight of block `i` of `req`.
    pub fn weight(self, req: &TraceRequest, i: usize) -> u64 {
        match self {
            Self::Unit => 1,
            Self::Tokens { block_tokens } => {
                if i + 1 < req.hash_ids.len() {
                    block_tokens
                } else {
                    let before = block_tokens * i as u64;
                    req.input_length
                        .saturating_sub(before)
                        .clamp(1, block_tokens.max(1))
                }
            }
        }
    }
}

/// What a replay measured.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ReplayResult {
    /// Block references in the trace.
    pub blocks: u64,
    /// References found as part of a request's present prefix.
    pub hit_blocks: u64,
    /// Weight of all references (tokens under [`Weighting::Tokens`]).
    pub weight: u64,
    /// Weight of the hit references.
    pub hit_weight: u64,
    /// The index's counters at the end.
    pub stats: IndexStats,
}

impl ReplayResult {
    /// Prefix-block hit ratio (the reference study's metric).
    pub fn block_hit_ratio(&self) -> f64 {
        ratio(self.hit_blocks, self.blocks)
    }

    /// Weighted hit ratio (token hit ratio under [`Weighting::Tokens`]).
    pub fn weight_hit_ratio(&self) -> f64 {
        ratio(self.hit_weight, self.weight)
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

/// Total weight of the distinct blocks of `requests` (first occurrence's weight): the basis
/// for "capacity as % of unique blocks".
pub fn unique_weight(requests: &[TraceRequest], weighting: Weighting) -> u64 {
    let mut seen = rustc_hash::FxHashSet::default();
    let mut total = 0;
    for req in requests {
        for (i, &id) in req.hash_ids.iter().enumerate() {
            if seen.insert(id) {
                total += weighting.weight(req, i);
            }
        }
    }
    total
}

/// Replays `requests` through an index of `capacity` under `policy` with per-insert eviction
/// (both watermarks at 1.0, as in the reference study).
pub fn replay(
    requests: &[TraceRequest],
    capacity: u64,
    policy: PolicyKind,
    weighting: Weighting,
) -> ReplayResult {
    let cfg = IndexConfig {
        capacity_bytes: capacity,
        high_watermark: 1.0,
        low_watermark: 1.0,
        policy,
    };
    replay_with(requests, cfg, weighting)
}

/// [`replay`] with any index configuration (watermarks included).
pub fn replay_with(
    requests: &[TraceRequest],
    cfg: IndexConfig,
    weighting: Weighting,
) -> ReplayResult {
    let mut index = Index::new(cfg);
    let mut out = ReplayResult::default();
    let mut keys = Vec::new();
    for req in requests {
        keys.clear();
        keys.extend(req.hash_ids.iter().map(|&id| BlockKey(u128::from(id))));
        let hit = index.longest_prefix(&keys, req.timestamp_ms);
        for (i, &key) in keys.iter().enumerate() {
            let w = weighting.weight(req, i);
            out.blocks += 1;
            out.weight += w;
            if i < hit {
                out.hit_blocks += 1;
                out.hit_weight += w;
            } else if index.contains(key) {
                index.touch(key);
            } else {
                // Weight ≤ capacity unless the capacity is below one block: then it is refused,
                // which a study at that size reports as no hits.
                let _ = index.insert(key, w, req.timestamp_ms);
            }
        }
    }
    out.stats = index.stats();
    out
}

#[cfg(test)]
mod tests;
