//! Naive reference models of the index and both policies for the differential test: vectors,
//! linear scans, sums recomputed on every call — obviously correct, O(n) per operation.
//!
//! Semantics written out once more, from the module docs of `s3fifo.rs`, `lru.rs` and
//! `index.rs`, without sharing any code with them. Queues are `Vec`s with the oldest entry
//! first.

use crate::index::{IndexError, IndexStats};
use crate::{BlockKey, PolicyKind};

#[derive(Clone, Copy, Debug)]
struct Item {
    key: BlockKey,
    weight: u64,
    freq: u8,
}

/// The reference policy: LRU as one list, S3-FIFO as three.
#[derive(Debug)]
enum RefPolicy {
    Lru(Vec<Item>),
    S3 {
        small: Vec<Item>,
        main: Vec<Item>,
        ghost: Vec<Item>,
        small_cap: u64,
        ghost_cap: u64,
    },
}

fn sum(q: &[Item]) -> u64 {
    q.iter().map(|i| i.weight).sum()
}

fn take(q: &mut Vec<Item>, key: BlockKey) -> Option<Item> {
    let pos = q.iter().position(|i| i.key == key)?;
    Some(q.remove(pos))
}

impl RefPolicy {
    fn new(kind: PolicyKind, capacity: u64) -> Self {
        match kind {
            PolicyKind::Lru => Self::Lru(Vec::new()),
            PolicyKind::S3Fifo { small_ratio } => {
                let small_cap = (capacity as f64 * small_ratio.clamp(0.0, 1.0)) as u64;
                let ghost_cap = capacity - small_cap;
                Self::S3 {
                    small: vec![],
                    main: vec![],
                    ghost: vec![],
                    small_cap,
                    ghost_cap,
                }
            }
        }
    }

    fn insert(&mut self, key: BlockKey, weight: u64) {
        let item = Item {
            key,
            weight,
            freq: 0,
        };
        match self {
            Self::Lru(q) => q.push(item),
            Self::S3 {
                small, main, ghost, ..
            } => match take(ghost, key) {
                Some(_) => main.push(item),
                None => small.push(item),
            },
        }
    }

    fn find(&mut self, key: BlockKey) -> Option<&mut Item> {
        match self {
            Self::Lru(q) => q.iter_mut().find(|i| i.key == key),
            Self::S3 { small, main, .. } => small
                .iter_mut()
                .chain(main.iter_mut())
                .find(|i| i.key == key),
        }
    }

    fn access(&mut self, key: BlockKey) {
        match self {
            Self::Lru(q) => {
                if let Some(i) = take(q, key) {
                    q.push(i);
                }
            }
            Self::S3 { .. } => {
                if let Some(i) = self.find(key) {
                    i.freq = (i.freq + 1).min(3);
                }
            }
        }
    }

    fn reweight(&mut self, key: BlockKey, weight: u64) {
        if let Some(i) = self.find(key) {
            i.weight = weight;
        }
    }

    fn remove(&mut self, key: BlockKey) {
        match self {
            Self::Lru(q) => drop(take(q, key)),
            Self::S3 { small, main, .. } => {
                if take(small, key).is_none() {
                    take(main, key);
                }
            }
        }
    }

    fn evict(&mut self, pinned: &dyn Fn(BlockKey) -> bool) -> Option<BlockKey> {
        match self {
            Self::Lru(q) => {
                // Rotate pinned entries to the newest end until a full pass finds only pins.
                let mut skipped = 0;
                while skipped < q.len() {
                    let i = q.remove(0);
                    if !pinned(i.key) {
                        return Some(i.key);
                    }
                    q.push(i);
                    skipped += 1;
                }
                None
            }
            Self::S3 {
                small,
                main,
                ghost,
                small_cap,
                ghost_cap,
            } => {
                let mut from_small = |force: bool, small: &mut Vec<Item>, main: &mut Vec<Item>| {
                    let mut skipped = 0;
                    while skipped < small.len() {
                        let i = small.remove(0);
                        if pinned(i.key) {
                            small.push(i);
                            skipped += 1;
                        } else if i.freq >= 1 && !force {
                            main.push(i);
                            skipped = 0;
                        } else {
                            ghost.push(i);
                            while sum(ghost) > *ghost_cap {
                                ghost.remove(0);
                            }
                            return Some(i.key);
                        }
                    }
                    None
                };
                if sum(small) > *small_cap
                    && let Some(k) = from_small(false, small, main)
                {
                    return Some(k);
                }
                let mut skipped = 0;
                while skipped < main.len() {
                    let mut i = main.remove(0);
                    if pinned(i.key) {
                        main.push(i);
                        skipped += 1;
                    } else if i.freq > 0 {
                        i.freq -= 1;
                        main.push(i);
                        skipped = 0;
                    } else {
                        return Some(i.key);
                    }
                }
                from_small(true, small, main)
            }
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct RefEntry {
    key: BlockKey,
    weight: u64,
    pins: u32,
    lease: Option<u64>,
}

impl RefEntry {
    fn held(&self) -> bool {
        self.pins > 0 || self.lease.is_some()
    }
}

/// The reference index: a vector of entries, sums recomputed on every call.
#[derive(Debug)]
pub(crate) struct RefIndex {
    capacity: u64,
    high: u64,
    low: u64,
    policy: RefPolicy,
    entries: Vec<RefEntry>,
    pub stats: IndexStats,
}

impl RefIndex {
    pub fn new(capacity: u64, high: u64, low: u64, kind: PolicyKind) -> Self {
        let policy = RefPolicy::new(kind, capacity);
        Self {
            capacity,
            high,
            low,
            policy,
            entries: vec![],
            stats: IndexStats::default(),
        }
    }

    fn get(&self, key: BlockKey) -> Option<RefEntry> {
        self.entries.iter().find(|e| e.key == key).copied()
    }

    fn get_mut(&mut self, key: BlockKey) -> Option<&mut RefEntry> {
        self.entries.iter_mut().find(|e| e.key == key)
    }

    pub fn used(&self) -> u64 {
        self.entries.iter().map(|e| e.weight).sum()
    }

    pub fn held_bytes(&self) -> u64 {
        self.entries
            .iter()
            .filter(|e| e.held())
            .map(|e| e.weight)
            .sum()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn contains(&self, key: BlockKey) -> bool {
        self.get(key).is_some()
    }

    /// Held at `now`: pinned, or leased past `now` (what insert at `now` must not evict).
    pub fn held_at(&self, key: BlockKey, now: u64) -> bool {
        self.get(key)
            .is_some_and(|e| e.pins > 0 || e.lease.is_some_and(|t| t > now))
    }

    pub fn is_held(&self, key: BlockKey) -> bool {
        self.get(key).is_some_and(|e| e.held())
    }

    pub fn insert(
        &mut self,
        key: BlockKey,
        weight: u64,
        now: u64,
    ) -> Result<Vec<BlockKey>, IndexError> {
        self.expire(now);
        let weight = weight.max(1);
        if weight > self.capacity {
            self.stats.rejected += 1;
            return Err(IndexError::TooLarge {
                weight,
                capacity: self.capacity,
            });
        }
        let others_held: u64 = self
            .entries
            .iter()
            .filter(|e| e.key != key && e.held())
            .map(|e| e.weight)
            .sum();
        if others_held + weight > self.capacity {
            self.stats.rejected += 1;
            return Err(IndexError::NoRoom {
                weight,
                pinned: others_held,
                capacity: self.capacity,
            });
        }
        let mut evicted = vec![];
        let others = |me: &Self| {
            me.entries
                .iter()
                .filter(|e| e.key != key)
                .map(|e| e.weight)
                .sum::<u64>()
        };
        if others(self) + weight > self.high {
            while others(self) + weight > self.low {
                let snapshot = self.entries.clone();
                let pinned =
                    |k: BlockKey| k == key || snapshot.iter().any(|e| e.key == k && e.held());
                let Some(victim) = self.policy.evict(&pinned) else {
                    break;
                };
                let pos = self
                    .entries
                    .iter()
                    .position(|e| e.key == victim)
                    .expect("victim is present");
                let e = self.entries.remove(pos);
                self.stats.evictions += 1;
                self.stats.evicted_bytes += e.weight;
                evicted.push(victim);
            }
        }
        assert!(others(self) + weight <= self.capacity);
        if let Some(e) = self.get_mut(key) {
            e.weight = weight;
            self.policy.reweight(key, weight);
            self.policy.access(key);
            self.stats.refreshes += 1;
        } else {
            self.entries.push(RefEntry {
                key,
                weight,
                pins: 0,
                lease: None,
            });
            self.policy.insert(key, weight);
            self.stats.inserts += 1;
        }
        Ok(evicted)
    }

    pub fn touch(&mut self, key: BlockKey) -> bool {
        let found = self.contains(key);
        if found {
            self.policy.access(key);
            self.stats.hits += 1;
        } else {
            self.stats.misses += 1;
        }
        found
    }

    pub fn longest_prefix(&mut self, keys: &[BlockKey], now: u64) -> usize {
        self.expire(now);
        let mut n = 0;
        for &k in keys {
            if !self.touch(k) {
                break;
            }
            n += 1;
        }
        n
    }

    pub fn remove(&mut self, key: BlockKey) -> bool {
        let Some(pos) = self.entries.iter().position(|e| e.key == key) else {
            return false;
        };
        self.entries.remove(pos);
        self.policy.remove(key);
        true
    }

    pub fn pin(&mut self, key: BlockKey) -> bool {
        self.get_mut(key).map(|e| e.pins += 1).is_some()
    }

    pub fn unpin(&mut self, key: BlockKey) {
        if let Some(e) = self.get_mut(key) {
            e.pins = e.pins.saturating_sub(1);
        }
    }

    pub fn lease(&mut self, key: BlockKey, until: u64) -> bool {
        self.get_mut(key)
            .map(|e| e.lease = Some(e.lease.map_or(until, |t| t.max(until))))
            .is_some()
    }

    pub fn expire(&mut self, now: u64) {
        for e in &mut self.entries {
            if e.lease.is_some_and(|t| t <= now) {
                e.lease = None;
            }
        }
    }
}
