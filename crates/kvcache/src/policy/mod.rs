//! Eviction policies: pure, byte-weighted, chosen at run time ([`PolicyKind`]).
//!
//! A policy only orders keys; the [`Index`](crate::Index) owns weights' accounting against
//! capacity, watermarks, pins and leases, and asks the policy for one victim at a time. A
//! victim must not be pinned: the policy skips (rotates) keys the index says are pinned and
//! gives up after a full pass that found only pinned keys, so an all-pinned index is an error,
//! never a spin.

use std::str::FromStr;

use crate::BlockKey;

mod list;
mod lru;
#[cfg(test)]
pub(crate) mod reference;
mod s3fifo;

pub use lru::Lru;
pub use s3fifo::S3Fifo;

/// Eviction policy: pure, byte-weighted, chosen at run time. All operations are O(1) amortised.
pub trait EvictionPolicy: Send + std::fmt::Debug {
    /// Admits a key that is not tracked yet, weighing `weight` bytes.
    fn insert(&mut self, key: BlockKey, weight: u64);
    /// Records a hit on a tracked key (no-op for an unknown key).
    fn access(&mut self, key: BlockKey);
    /// Changes a tracked key's weight (a refresh with a value of another size).
    fn reweight(&mut self, key: BlockKey, weight: u64);
    /// Forgets a tracked key without counting it as an eviction (an explicit delete).
    fn remove(&mut self, key: BlockKey);
    /// Picks, forgets and returns one victim for which `pinned` is false; `None` when every
    /// tracked key is pinned (or none is tracked).
    fn evict(&mut self, pinned: &dyn Fn(BlockKey) -> bool) -> Option<BlockKey>;
    /// Number of tracked keys.
    fn len(&self) -> usize;
    /// Whether no key is tracked.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Default size of S3-FIFO's small queue as a fraction of capacity: 0.3 (AIBrix's value). On
/// the Mooncake conversation trace it keeps nearly all of 0.1's gain over LRU at 1–2 %
/// capacity (+39 %/+28 % vs +45 %/+37 %) and loses far less at 10–20 % (−3 to −6 % vs −11 to
/// −13 %); see `bench/results/kvcache-eviction-2026-11-30/`.
pub const DEFAULT_SMALL_RATIO: f64 = 0.3;

/// Which policy an [`Index`](crate::Index) runs: S3-FIFO (scan resistant, the default) or LRU.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum PolicyKind {
    /// S3-FIFO (SOSP'23) with a small queue of `small_ratio` × capacity bytes.
    S3Fifo {
        /// Fraction of capacity for the small (probationary) FIFO, in `[0, 1]`.
        small_ratio: f64,
    },
    /// Least recently used.
    Lru,
}

impl Default for PolicyKind {
    fn default() -> Self {
        Self::S3Fifo {
            small_ratio: DEFAULT_SMALL_RATIO,
        }
    }
}

impl PolicyKind {
    /// Builds the policy for an index of `capacity_bytes`.
    pub fn build(self, capacity_bytes: u64) -> Box<dyn EvictionPolicy> {
        match self {
            Self::S3Fifo { small_ratio } => Box::new(S3Fifo::new(capacity_bytes, small_ratio)),
            Self::Lru => Box::new(Lru::new()),
        }
    }
}

impl std::fmt::Display for PolicyKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::S3Fifo { small_ratio } => write!(f, "s3fifo:{small_ratio}"),
            Self::Lru => f.write_str("lru"),
        }
    }
}

/// Why a policy name did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown eviction policy {0:?}: expected \"s3fifo\", \"s3fifo:<small ratio in [0,1]>\" or \"lru\""
)]
pub struct ParsePolicyError(String);

impl FromStr for PolicyKind {
    type Err = ParsePolicyError;

    /// `"s3fifo"` (default small ratio), `"s3fifo:0.3"`, or `"lru"`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParsePolicyError(s.chars().take(64).collect());
        match s.trim().to_ascii_lowercase().as_str() {
            "lru" => Ok(Self::Lru),
            "s3fifo" | "s3-fifo" => Ok(Self::default()),
            other => {
                let ratio = other
                    .strip_prefix("s3fifo:")
                    .and_then(|r| r.parse::<f64>().ok())
                    .filter(|r| (0.0..=1.0).contains(r))
                    .ok_or_else(err)?;
                Ok(Self::S3Fifo { small_ratio: ratio })
            }
        }
    }
}

#[cfg(test)]
mod tests;
