//! The prefix index behind `prefix-cache`: which pods recently served which prompt blocks.
//!
//! Entries map a block hash to the pods that were sent it and when. The index is bounded two
//! ways, fixing AIBrix's unbounded growth: at most `capacity_blocks` entries (least recently
//! touched evicted first) and a TTL after which a pod's claim on a block no longer counts.
//! It is plain data: the caller passes `now` and inserts after routing.

use std::collections::BTreeMap;

use rustc_hash::FxHashMap;

use crate::pod::Pod;

/// Knobs of `prefix-cache`, with the values AIBrix ships in its manifest.
#[derive(Clone, Debug, PartialEq)]
pub struct PrefixConfig {
    /// Most block entries kept (AIBrix: 200,000).
    pub capacity_blocks: usize,
    /// Seconds a pod's claim on a block lasts (AIBrix: 20 min).
    pub ttl_s: f64,
    /// Route least-request when max − min in-flight exceeds this (AIBrix manifest: 16).
    pub imbalance_abs: u32,
    /// Skip a matching pod loaded above mean + k·σ (AIBrix manifest: k = 2).
    pub std_dev_factor: f64,
    /// Units (bytes or tokens) per block; `kv-cost` turns matched blocks into cached units.
    pub block_units: u32,
    /// `kv-cost`: prefill units one queued or running request is worth.
    pub load_units_per_request: f64,
    /// `lora-affinity`: what a pod with a free GPU slot (the adapter joins the batch) costs
    /// over one whose running batch has the adapter, in queued requests.
    pub lora_slot_cost: f64,
    /// `lora-affinity`: what a pod whose GPU slots are all taken by other adapters (the request
    /// waits for one to drain) costs over one whose running batch has the adapter, in queued
    /// requests.
    pub lora_wait_cost: f64,
    /// `ttft`: the engines' step-cost profile and the correction's bounds.
    pub ttft: crate::strategies::ttft::TtftProfile,
}

impl Default for PrefixConfig {
    fn default() -> Self {
        Self {
            capacity_blocks: 200_000,
            ttl_s: 1200.0,
            imbalance_abs: 16,
            std_dev_factor: 2.0,
            block_units: 128,
            load_units_per_request: 256.0,
            lora_slot_cost: 1.0,
            lora_wait_cost: 8.0,
            ttft: crate::strategies::ttft::TtftProfile::default(),
        }
    }
}

#[derive(Clone, Debug)]
struct Entry {
    tick: u64,
    /// (pod address, last time it was routed this block).
    pods: Vec<(String, f64)>,
}

/// Block hash → pods, bounded by count and age.
#[derive(Clone, Debug)]
pub struct PrefixIndex {
    cfg: PrefixConfig,
    map: FxHashMap<u64, Entry>,
    /// Touch order: tick → block hash, oldest first.
    order: BTreeMap<u64, u64>,
    tick: u64,
}

impl PrefixIndex {
    /// An empty index.
    pub fn new(cfg: PrefixConfig) -> Self {
        Self {
            cfg,
            map: FxHashMap::default(),
            order: BTreeMap::new(),
            tick: 0,
        }
    }

    /// Its settings.
    pub fn config(&self) -> &PrefixConfig {
        &self.cfg
    }

    /// Block entries held.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// For each pod, how many leading blocks of `blocks` it holds (claims younger than the TTL);
    /// a pod stops matching at its first miss.
    pub fn matched(&self, blocks: &[u64], pods: &[Pod], now: f64) -> Vec<usize> {
        let mut matched = vec![0; pods.len()];
        let mut live: Vec<usize> = (0..pods.len()).collect();
        for (i, h) in blocks.iter().enumerate() {
            let Some(entry) = self.map.get(h) else { break };
            live.retain(|&p| {
                entry
                    .pods
                    .iter()
                    .any(|(a, t)| *a == pods[p].address && now - t <= self.cfg.ttl_s)
            });
            if live.is_empty() {
                break;
            }
            for &p in &live {
                matched[p] = i + 1;
            }
        }
        matched
    }

    /// Records that `address` was sent `blocks` at `now`, evicting the least recent beyond capacity.
    pub fn insert(&mut self, blocks: &[u64], address: &str, now: f64) {
        for &h in blocks {
            self.tick += 1;
            let tick = self.tick;
            let entry = self.map.entry(h).or_insert_with(|| Entry {
                tick,
                pods: Vec::new(),
            });
            self.order.remove(&entry.tick);
            entry.tick = tick;
            self.order.insert(tick, h);
            entry
                .pods
                .retain(|(a, t)| a != address && now - t <= self.cfg.ttl_s);
            entry.pods.push((address.to_string(), now));
        }
        while self.map.len() > self.cfg.capacity_blocks {
            let Some((_, h)) = self.order.pop_first() else {
                break;
            };
            self.map.remove(&h);
        }
    }

    /// Drops every claim of `address` (its pod left, or its engine restarted with an empty
    /// cache); blocks no pod claims any more go too.
    pub fn purge(&mut self, address: &str) {
        let order = &mut self.order;
        self.map.retain(|_, e| {
            e.pods.retain(|(a, _)| a != address);
            if e.pods.is_empty() {
                order.remove(&e.tick);
            }
            !e.pods.is_empty()
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pods(addrs: &[&str]) -> Vec<Pod> {
        addrs
            .iter()
            .map(|a| Pod {
                name: a.to_string(),
                address: a.to_string(),
                ..Pod::default()
            })
            .collect()
    }

    #[test]
    fn matches_leading_blocks_per_pod() {
        let mut idx = PrefixIndex::new(PrefixConfig::default());
        let ps = pods(&["a", "b", "c"]);
        idx.insert(&[1, 2, 3, 4], "a", 0.0);
        idx.insert(&[1, 2, 9], "b", 0.0);
        assert_eq!(idx.matched(&[1, 2, 3, 4, 5], &ps, 1.0), vec![4, 2, 0]);
        assert_eq!(idx.matched(&[7, 1, 2], &ps, 1.0), vec![0, 0, 0]);
        // Past the TTL nothing counts.
        assert_eq!(idx.matched(&[1, 2], &ps, 1201.0), vec![0, 0, 0]);
    }

    #[test]
    fn stays_within_capacity_evicting_least_recent() {
        let cfg = PrefixConfig {
            capacity_blocks: 3,
            ..PrefixConfig::default()
        };
        let mut idx = PrefixIndex::new(cfg);
        let ps = pods(&["a"]);
        idx.insert(&[1, 2], "a", 0.0);
        idx.insert(&[1], "a", 1.0); // touch 1: 2 is now the oldest
        idx.insert(&[3, 4], "a", 2.0);
        assert_eq!(idx.len(), 3);
        assert_eq!(idx.matched(&[1], &ps, 3.0), vec![1]);
        assert_eq!(idx.matched(&[2], &ps, 3.0), vec![0]);
        for i in 0..10_000 {
            idx.insert(&[100 + i], "a", 4.0);
        }
        assert_eq!(idx.len(), 3);
    }
}
