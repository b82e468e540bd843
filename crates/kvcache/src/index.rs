//! The pool's metadata: which keys are present, their weights, pins and leases, and when to
//! evict. Pure and single threaded: time comes in as `now_ms`, the caller frees evicted data.
//!
//! Watermarks: an insert that would take usage above `high_watermark × capacity` first evicts
//! down to `low_watermark × capacity` (batch eviction, as Mooncake and InfiniStore do), then
//! admits. Pinned and leased keys are never evicted; an insert that cannot fit even after
//! evicting everything else unpinned fails before evicting anything.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use rustc_hash::FxHashMap;

use crate::BlockKey;
use crate::policy::{EvictionPolicy, PolicyKind};

/// Sizing and policy of an [`Index`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct IndexConfig {
    /// Most bytes the index admits (sum of weights); never exceeded.
    pub capacity_bytes: u64,
    /// Fraction of capacity above which an insert evicts first (in `(0, 1]`).
    pub high_watermark: f64,
    /// Fraction of capacity that eviction brings usage down to (≤ `high_watermark`).
    pub low_watermark: f64,
    /// Eviction order.
    pub policy: PolicyKind,
}

impl IndexConfig {
    /// Default high watermark: evict once usage passes 95 % of capacity.
    pub const DEFAULT_HIGH: f64 = 0.95;
    /// Default low watermark: evict down to 90 % (Mooncake evicts ~5 % per batch).
    pub const DEFAULT_LOW: f64 = 0.90;

    /// `capacity_bytes` with the default watermarks and policy.
    pub fn new(capacity_bytes: u64) -> Self {
        Self {
            capacity_bytes,
            high_watermark: Self::DEFAULT_HIGH,
            low_watermark: Self::DEFAULT_LOW,
            policy: PolicyKind::default(),
        }
    }

    /// The same with another eviction policy.
    pub fn with_policy(mut self, policy: PolicyKind) -> Self {
        self.policy = policy;
        self
    }

    /// Watermarks as byte counts: each clamped to `[0, 1]` (NaN → 1), low ≤ high.
    pub fn watermark_bytes(&self) -> (u64, u64) {
        let frac = |f: f64| if f.is_nan() { 1.0 } else { f.clamp(0.0, 1.0) };
        let cap = self.capacity_bytes as f64;
        let high = ((cap * frac(self.high_watermark)) as u64).min(self.capacity_bytes);
        let low = ((cap * frac(self.low_watermark)) as u64).min(high);
        (high, low)
    }
}

/// Why an insert was refused (the key is not admitted; nothing was evicted for it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IndexError {
    /// The value alone is larger than the whole index.
    #[error("value of {weight} bytes exceeds the capacity of {capacity} bytes")]
    TooLarge {
        /// Bytes asked for.
        weight: u64,
        /// The index's capacity.
        capacity: u64,
    },
    /// Everything that could make room is pinned or leased.
    #[error("no room for {weight} bytes: {pinned} of {capacity} bytes are pinned or leased")]
    NoRoom {
        /// Bytes asked for.
        weight: u64,
        /// Bytes that cannot be evicted now.
        pinned: u64,
        /// The index's capacity.
        capacity: u64,
    },
}

/// Counters since the index was created (all monotonic).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IndexStats {
    /// New keys admitted.
    pub inserts: u64,
    /// Inserts of a key already present (weight updated, counted as an access).
    pub refreshes: u64,
    /// Keys found by `touch` or `longest_prefix`.
    pub hits: u64,
    /// `touch` misses plus `longest_prefix` calls that stopped at a missing key.
    pub misses: u64,
    /// Keys evicted to make room.
    pub evictions: u64,
    /// Bytes those evictions freed.
    pub evicted_bytes: u64,
    /// Inserts refused ([`IndexError`]).
    pub rejected: u64,
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    weight: u64,
    pins: u32,
    lease_until: Option<u64>,
}

impl Entry {
    fn held(&self) -> bool {
        self.pins > 0 || self.lease_until.is_some()
    }
}

/// The pool's metadata: which keys are present, their weights, pins and leases.
#[derive(Debug)]
pub struct Index {
    capacity: u64,
    high: u64,
    low: u64,
    policy: Box<dyn EvictionPolicy>,
    entries: FxHashMap<BlockKey, Entry>,
    used: u64,
    /// Bytes of keys that are pinned or leased (cannot be evicted now).
    held_bytes: u64,
    leases: BinaryHeap<Reverse<(u64, BlockKey)>>,
    live_leases: usize,
    stats: IndexStats,
}

impl Index {
    /// An empty index; watermarks are normalised by [`IndexConfig::watermark_bytes`].
    pub fn new(cfg: IndexConfig) -> Self {
        let (high, low) = cfg.watermark_bytes();
        Self {
            capacity: cfg.capacity_bytes,
            high,
            low,
            policy: cfg.policy.build(cfg.capacity_bytes),
            entries: FxHashMap::default(),
            used: 0,
            held_bytes: 0,
            leases: BinaryHeap::new(),
            live_leases: 0,
            stats: IndexStats::default(),
        }
    }

    /// Inserts (or refreshes) `key` with `weight` bytes (0 counts as 1, so the number of keys
    /// stays bounded by capacity); evicts per watermarks and returns the evicted keys (the
    /// caller frees their data). Errors: weight > capacity, or no room because everything
    /// left is pinned/leased; on error nothing changed but the `rejected` counter.
    pub fn insert(
        &mut self,
        key: BlockKey,
        weight: u64,
        now_ms: u64,
    ) -> Result<Vec<BlockKey>, IndexError> {
        self.expire_leases(now_ms);
        let weight = weight.max(1);
        let existing = self.entries.get(&key).copied();
        let (old, old_held) =
            existing.map_or((0, 0), |e| (e.weight, if e.held() { e.weight } else { 0 }));
        if weight > self.capacity {
            self.stats.rejected += 1;
            return Err(IndexError::TooLarge {
                weight,
                capacity: self.capacity,
            });
        }
        let others_held = self.held_bytes - old_held;
        if u128::from(others_held) + u128::from(weight) > u128::from(self.capacity) {
            self.stats.rejected += 1;
            return Err(IndexError::NoRoom {
                weight,
                pinned: others_held,
                capacity: self.capacity,
            });
        }
        let mut evicted = Vec::new();
        let base = self.used - old;
        // u128 sums: capacities near u64::MAX must not overflow.
        let fits =
            |used: u64, limit: u64| u128::from(used) + u128::from(weight) <= u128::from(limit);
        if !fits(base, self.high) {
            let entries = &self.entries;
            let pinned = |k: BlockKey| k == key || entries.get(&k).is_some_and(Entry::held);
            let mut freed = 0;
            while !fits(base - freed, self.low) {
                let Some(victim) = self.policy.evict(&pinned) else {
                    break;
                };
                let w = entries.get(&victim).map_or(0, |e| e.weight);
                freed += w;
                evicted.push(victim);
            }
            for victim in &evicted {
                if let Some(e) = self.entries.remove(victim) {
                    self.used -= e.weight;
                    self.stats.evictions += 1;
                    self.stats.evicted_bytes += e.weight;
                }
            }
        }
        debug_assert!(fits(self.used - old, self.capacity));
        match self.entries.get_mut(&key) {
            Some(e) => {
                e.weight = weight;
                if e.held() {
                    self.held_bytes = self.held_bytes - old + weight;
                }
                self.used = self.used - old + weight;
                self.policy.reweight(key, weight);
                self.policy.access(key);
                self.stats.refreshes += 1;
            }
            None => {
                self.entries.insert(
                    key,
                    Entry {
                        weight,
                        pins: 0,
                        lease_until: None,
                    },
                );
                self.used += weight;
                self.policy.insert(key, weight);
                self.stats.inserts += 1;
            }
        }
        Ok(evicted)
    }

    /// Whether `key` is present (no side effects: not a hit for the policy or the stats).
    pub fn contains(&self, key: BlockKey) -> bool {
        self.entries.contains_key(&key)
    }

    /// A hit: the policy sees an access. Returns whether `key` is present.
    pub fn touch(&mut self, key: BlockKey) -> bool {
        if self.entries.contains_key(&key) {
            self.policy.access(key);
            self.stats.hits += 1;
            true
        } else {
            self.stats.misses += 1;
            false
        }
    }

    /// Length of the longest present prefix of `keys` (stops at the first missing), touching
    /// each present key once. One call answers a whole prompt.
    pub fn longest_prefix(&mut self, keys: &[BlockKey], now_ms: u64) -> usize {
        self.expire_leases(now_ms);
        for (i, &key) in keys.iter().enumerate() {
            if !self.entries.contains_key(&key) {
                self.stats.hits += i as u64;
                self.stats.misses += 1;
                return i;
            }
            self.policy.access(key);
        }
        self.stats.hits += keys.len() as u64;
        keys.len()
    }

    /// [`Index::longest_prefix`] without side effects: no access for the policy, no stats, no
    /// lease expiry (for scoring or probing, e.g. a router asking where a prefix lives).
    pub fn prefix_len(&self, keys: &[BlockKey]) -> usize {
        keys.iter()
            .take_while(|k| self.entries.contains_key(k))
            .count()
    }

    /// Present keys, in no particular order (for flushing or listing a pool).
    pub fn keys(&self) -> impl Iterator<Item = BlockKey> + '_ {
        self.entries.keys().copied()
    }

    /// Forgets `key` (an explicit delete: not an eviction; pins and leases go with it).
    pub fn remove(&mut self, key: BlockKey) -> bool {
        let Some(e) = self.entries.remove(&key) else {
            return false;
        };
        self.used -= e.weight;
        if e.held() {
            self.held_bytes -= e.weight;
        }
        if e.lease_until.is_some() {
            self.live_leases -= 1;
        }
        self.policy.remove(key);
        true
    }

    /// Pins `key` (counted: each pin needs an unpin) so it is never evicted, e.g. while its data
    /// is being read. Returns whether `key` is present.
    pub fn pin(&mut self, key: BlockKey) -> bool {
        let Some(e) = self.entries.get_mut(&key) else {
            return false;
        };
        if !e.held() {
            self.held_bytes += e.weight;
        }
        e.pins = e.pins.saturating_add(1);
        true
    }

    /// Drops one pin of `key` (no-op when absent or unpinned).
    pub fn unpin(&mut self, key: BlockKey) {
        if let Some(e) = self.entries.get_mut(&key)
            && e.pins > 0
        {
            e.pins -= 1;
            if !e.held() {
                self.held_bytes -= e.weight;
            }
        }
    }

    /// A pin that lapses at `until_ms` (extends an existing lease, never shortens it), so a
    /// reader that dies cannot hold a block forever. Returns whether `key` is present.
    pub fn lease(&mut self, key: BlockKey, until_ms: u64) -> bool {
        let Some(e) = self.entries.get_mut(&key) else {
            return false;
        };
        match e.lease_until {
            Some(t) if t >= until_ms => return true,
            Some(_) => {}
            None => {
                if e.pins == 0 {
                    self.held_bytes += e.weight;
                }
                self.live_leases += 1;
            }
        }
        e.lease_until = Some(until_ms);
        self.leases.push(Reverse((until_ms, key)));
        if self.leases.len() > 2 * self.live_leases + 64 {
            self.leases = self
                .entries
                .iter()
                .filter_map(|(k, e)| e.lease_until.map(|t| Reverse((t, *k))))
                .collect();
        }
        true
    }

    /// Ends every lease whose time has come (`until_ms <= now_ms`); also done inside `insert`
    /// and `longest_prefix`.
    pub fn expire_leases(&mut self, now_ms: u64) {
        while let Some(&Reverse((until, key))) = self.leases.peek() {
            if until > now_ms {
                break;
            }
            self.leases.pop();
            if let Some(e) = self.entries.get_mut(&key)
                && e.lease_until == Some(until)
            {
                e.lease_until = None;
                self.live_leases -= 1;
                if e.pins == 0 {
                    self.held_bytes -= e.weight;
                }
            }
        }
    }

    /// Whether `key` is pinned or leased now (cannot be evicted).
    pub fn is_held(&self, key: BlockKey) -> bool {
        self.entries.get(&key).is_some_and(Entry::held)
    }

    /// Weight of `key` in bytes, if present.
    pub fn weight(&self, key: BlockKey) -> Option<u64> {
        self.entries.get(&key).map(|e| e.weight)
    }

    /// Sum of present keys' weights.
    pub fn used_bytes(&self) -> u64 {
        self.used
    }

    /// Bytes of pinned or leased keys.
    pub fn held_bytes(&self) -> u64 {
        self.held_bytes
    }

    /// Number of present keys.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no key is present.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The configured capacity in bytes.
    pub fn capacity_bytes(&self) -> u64 {
        self.capacity
    }

    /// Counters since creation.
    pub fn stats(&self) -> IndexStats {
        self.stats
    }
}

#[cfg(test)]
mod differential;
#[cfg(test)]
mod tests;
