//! The server's block store: an [`Index`] (presence, eviction, pins) and the shared arena's
//! [`Allocator`] behind one mutex, with the data copies done outside the lock.
//!
//! Every value passes through three states: *reserved* (space allocated, key pinned, invisible
//! to readers), *ready* (visible), and gone (evicted, deleted). Readers pin a value while they
//! copy it (or hold a lease on it over shared memory), so eviction never frees bytes under them;
//! a delete of a pinned value unlinks the key at once and frees its bytes at the last unpin.
//! Keys are content addresses (a chained prefix hash), so a put of a present key writes nothing.
//!
//! Failure: a reservation or read lease whose owner disconnects, or whose lease lapses, is
//! dropped (reservations freed), so a dead client never leaks arena space.

use std::io;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rustc_hash::FxHashMap;

use crate::arena::{Allocator, footprint};
use crate::proto::{PutStatus, Stats};
use crate::shm::SharedRegion;
use crate::{BlockKey, Index, IndexConfig, PolicyKind};

/// A key the store inserts for a moment to make the policy evict more when the arena is
/// fragmented (real keys equal to it are refused).
const BALLAST: BlockKey = BlockKey(u128::MAX);
/// Rounds of extra eviction when no free extent fits although the index has room.
const FRAGMENTATION_ROUNDS: usize = 8;

/// Sizing of a [`Store`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StoreConfig {
    /// Arena bytes (the memory bound of the data).
    pub capacity_bytes: u64,
    /// Largest value accepted.
    pub max_value: u64,
    /// Eviction policy.
    pub policy: PolicyKind,
    /// How long a shared-memory read lease or write reservation lasts without release/commit.
    pub lease: Duration,
    /// Most live leases (bounds the lease table).
    pub max_leases: usize,
}

impl StoreConfig {
    /// `capacity_bytes` with defaults: 64 MiB values, S3-FIFO, 30 s leases, 65 536 leases.
    pub fn new(capacity_bytes: u64) -> Self {
        Self {
            capacity_bytes,
            max_value: 64 << 20,
            policy: PolicyKind::default(),
            lease: Duration::from_secs(30),
            max_leases: 1 << 16,
        }
    }
}

/// A value pinned for reading: where its bytes are. Give it back with [`Store::unpin`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pinned {
    /// The key read.
    pub key: BlockKey,
    /// Offset in the arena.
    pub offset: u64,
    /// Value length.
    pub len: u64,
}

/// A shared-memory lease handed to a client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lease {
    /// Lease id (valid only for the connection that got it).
    pub id: u64,
    /// Offset in the arena.
    pub offset: u64,
    /// Value length.
    pub len: u64,
}

#[derive(Debug)]
struct Slot {
    offset: u64,
    len: u64,
    ready: bool,
    pins: u32,
}

#[derive(Debug)]
struct LeaseEntry {
    key: BlockKey,
    offset: u64,
    write: bool,
    owner: u64,
    until_ms: u64,
}

#[derive(Debug)]
struct Inner {
    index: Index,
    alloc: Allocator,
    slots: FxHashMap<BlockKey, Slot>,
    /// Deleted values still pinned by readers, by offset: (len, pins).
    zombies: FxHashMap<u64, (u64, u32)>,
    leases: FxHashMap<u64, LeaseEntry>,
    next_lease: u64,
    next_sweep_ms: u64,
    puts: u64,
    hits: u64,
    misses: u64,
    rejected: u64,
}

/// The block store shared by every connection (binary protocol and RESP).
#[derive(Debug)]
pub struct Store {
    region: SharedRegion,
    inner: Mutex<Inner>,
    cfg: StoreConfig,
    high_bytes: u64,
    epoch: Instant,
}

impl Store {
    /// A store with a fresh memfd arena of `cfg.capacity_bytes` (page rounded down).
    pub fn new(cfg: StoreConfig) -> io::Result<Self> {
        let alloc = Allocator::new(cfg.capacity_bytes);
        if alloc.capacity() == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "capacity below one page",
            ));
        }
        let icfg = IndexConfig::new(alloc.capacity()).with_policy(cfg.policy);
        let region = SharedRegion::create("brix-kvcache", alloc.capacity())?;
        let inner = Inner {
            index: Index::new(icfg),
            alloc,
            slots: FxHashMap::default(),
            zombies: FxHashMap::default(),
            leases: FxHashMap::default(),
            next_lease: 1,
            next_sweep_ms: 0,
            puts: 0,
            hits: 0,
            misses: 0,
            rejected: 0,
        };
        Ok(Self {
            region,
            inner: Mutex::new(inner),
            cfg,
            high_bytes: icfg.watermark_bytes().0,
            epoch: Instant::now(),
        })
    }

    /// The shared arena (its fd goes to same-host clients).
    pub fn region(&self) -> &SharedRegion {
        &self.region
    }

    /// The configuration.
    pub fn config(&self) -> &StoreConfig {
        &self.cfg
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves consistent maps (no multi-step invariant is
        // left half done across a panic point), so poisoning is ignored.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The value of `key`, copied out (a hit for the policy).
    pub fn get(&self, key: BlockKey) -> Option<Bytes> {
        let pin = self.pin(key)?;
        let mut buf = vec![0; pin.len as usize];
        let read = self.region.read(pin.offset, &mut buf);
        self.unpin(pin);
        read.ok().map(|()| Bytes::from(buf))
    }

    /// Pins `key` for reading (a hit for the policy); `None` on a miss.
    pub fn pin(&self, key: BlockKey) -> Option<Pinned> {
        let mut g = self.lock();
        let inner = &mut *g;
        match inner.slots.get_mut(&key) {
            Some(slot) if slot.ready => {
                slot.pins += 1;
                inner.index.pin(key);
                inner.index.touch(key);
                inner.hits += 1;
                Some(Pinned {
                    key,
                    offset: slot.offset,
                    len: slot.len,
                })
            }
            _ => {
                inner.misses += 1;
                None
            }
        }
    }

    /// Copies bytes of a pinned value (`at` is relative to the value).
    pub fn read_pinned(&self, pin: &Pinned, at: u64, out: &mut [u8]) -> io::Result<()> {
        if at + out.len() as u64 > pin.len {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "read past the value",
            ));
        }
        self.region.read(pin.offset + at, out)
    }

    /// Gives a pin back.
    pub fn unpin(&self, pin: Pinned) {
        let mut g = self.lock();
        unpin_locked(&mut g, pin.key, pin.offset);
    }

    /// Stores `data` under `key`.
    pub fn put(&self, key: BlockKey, data: &[u8]) -> PutStatus {
        let (status, offset) = self.reserve_locked(key, data.len() as u64);
        if status != PutStatus::Stored {
            return status;
        }
        if self.region.write(offset, data).is_err() {
            let mut g = self.lock();
            abort_locked(&mut g, key, offset);
            return PutStatus::NoSpace;
        }
        let mut g = self.lock();
        commit_locked(&mut g, key, offset);
        status
    }

    /// Allocates room for `len` bytes under `key` and pins it (not yet visible).
    fn reserve_locked(&self, key: BlockKey, len: u64) -> (PutStatus, u64) {
        if len > self.cfg.max_value {
            self.lock().rejected += 1;
            return (PutStatus::TooLarge, 0);
        }
        let now = self.now_ms();
        let mut g = self.lock();
        let inner = &mut *g;
        if inner.slots.contains_key(&key) {
            inner.index.touch(key);
            return (PutStatus::Exists, 0);
        }
        let weight = footprint(len);
        let Ok(evicted) = (if key == BALLAST {
            Err(())
        } else {
            inner.index.insert(key, weight, now).map_err(|_| ())
        }) else {
            inner.rejected += 1;
            return (PutStatus::NoSpace, 0);
        };
        free_evicted(inner, &evicted);
        inner.index.pin(key);
        let Some(offset) = self.alloc_with_eviction(inner, weight, now) else {
            inner.index.unpin(key);
            inner.index.remove(key);
            inner.rejected += 1;
            return (PutStatus::NoSpace, 0);
        };
        inner.slots.insert(
            key,
            Slot {
                offset,
                len,
                ready: false,
                pins: 1,
            },
        );
        (PutStatus::Stored, offset)
    }

    /// Allocates `weight` bytes; when the arena is too fragmented although the index has
    /// room, asks the policy for more room (a ballast insert evicts down to the low watermark)
    /// for a bounded number of rounds.
    fn alloc_with_eviction(&self, inner: &mut Inner, weight: u64, now: u64) -> Option<u64> {
        for _ in 0..FRAGMENTATION_ROUNDS {
            if let Some(offset) = inner.alloc.alloc(weight) {
                return Some(offset);
            }
            let used = inner.index.used_bytes();
            let ballast =
                (self.high_bytes.saturating_sub(used) + weight).min(inner.index.capacity_bytes());
            let evicted = inner.index.insert(BALLAST, ballast, now).ok()?;
            inner.index.remove(BALLAST);
            if evicted.is_empty() {
                return None;
            }
            free_evicted(inner, &evicted);
        }
        inner.alloc.alloc(weight)
    }

    /// Whether `key` is stored (no side effects).
    pub fn exists(&self, key: BlockKey) -> bool {
        self.lock().slots.get(&key).is_some_and(|s| s.ready)
    }

    /// Presence of each key (no side effects).
    pub fn exists_many(&self, keys: &[BlockKey]) -> Vec<bool> {
        let g = self.lock();
        keys.iter()
            .map(|k| g.slots.get(k).is_some_and(|s| s.ready))
            .collect()
    }

    /// Length of the longest stored prefix of `keys`; each key of it is a hit for the policy.
    pub fn longest_prefix(&self, keys: &[BlockKey]) -> usize {
        let now = self.now_ms();
        let mut g = self.lock();
        let n = keys
            .iter()
            .take_while(|k| g.slots.get(k).is_some_and(|s| s.ready))
            .count();
        g.index.longest_prefix(&keys[..n], now);
        g.hits += n as u64;
        if n < keys.len() {
            g.misses += 1;
        }
        n
    }

    /// Forgets `key`; its bytes are freed now, or at the last unpin if a reader holds it.
    pub fn delete(&self, key: BlockKey) -> bool {
        let mut g = self.lock();
        let inner = &mut *g;
        match inner.slots.get(&key) {
            Some(s) if s.ready => {}
            _ => return false,
        }
        let Some(slot) = inner.slots.remove(&key) else {
            return false;
        };
        inner.index.remove(key);
        if slot.pins == 0 {
            inner.alloc.free(slot.offset, slot.len);
        } else {
            inner.zombies.insert(slot.offset, (slot.len, slot.pins));
        }
        true
    }

    /// Counters and gauges (`connections` is the server's to fill).
    pub fn stats(&self) -> Stats {
        let g = self.lock();
        let idx = g.index.stats();
        Stats {
            capacity_bytes: g.alloc.capacity(),
            used_bytes: g.alloc.used(),
            entries: g.slots.values().filter(|s| s.ready).count() as u64,
            puts: g.puts,
            hits: g.hits,
            misses: g.misses,
            evictions: idx.evictions,
            rejected: g.rejected,
            leases: g.leases.len() as u64,
            connections: 0,
        }
    }
}

fn free_evicted(inner: &mut Inner, evicted: &[BlockKey]) {
    for key in evicted {
        if let Some(slot) = inner.slots.remove(key) {
            debug_assert_eq!(slot.pins, 0, "the index never evicts a pinned key");
            inner.alloc.free(slot.offset, slot.len);
        }
    }
}

fn unpin_locked(inner: &mut Inner, key: BlockKey, offset: u64) {
    if let Some(slot) = inner.slots.get_mut(&key)
        && slot.offset == offset
    {
        slot.pins = slot.pins.saturating_sub(1);
        inner.index.unpin(key);
        return;
    }
    if let Some((len, pins)) = inner.zombies.get_mut(&offset) {
        *pins -= 1;
        if *pins == 0 {
            let len = *len;
            inner.zombies.remove(&offset);
            inner.alloc.free(offset, len);
        }
    }
}

fn commit_locked(inner: &mut Inner, key: BlockKey, offset: u64) -> bool {
    match inner.slots.get_mut(&key) {
        Some(slot) if slot.offset == offset && !slot.ready => {
            slot.ready = true;
            slot.pins -= 1;
            inner.index.unpin(key);
            inner.puts += 1;
            true
        }
        _ => false,
    }
}

fn abort_locked(inner: &mut Inner, key: BlockKey, offset: u64) {
    if let Some(slot) = inner.slots.get(&key)
        && slot.offset == offset
        && !slot.ready
    {
        let len = slot.len;
        inner.slots.remove(&key);
        inner.index.unpin(key);
        inner.index.remove(key);
        inner.alloc.free(offset, len);
    }
}

#[path = "store_shm.rs"]
mod shm_leases;

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;
