//! S3-FIFO (Yang et al., SOSP'23) as AIBrix and foyer run it, byte-weighted.
//!
//! - Small FIFO `S` (`small_ratio` × capacity bytes), main FIFO `M`, ghost FIFO `G` of evicted
//!   keys only, sized like `M` in bytes.
//! - Insert: a key found in `G` goes to `M`, any other to `S`; frequency starts at 0.
//! - Hit: frequency += 1, capped at 3; no queue movement (why S3-FIFO scales).
//! - Evict: from `S` when it holds more than its share, else from `M`, else (M all pinned or
//!   empty) from `S` regardless of its share. `S`'s tail moves to `M` if it was hit
//!   (frequency ≥ 1, keeping its frequency) or leaves to `G`. `M`'s tail with frequency > 0 is
//!   reinserted at the head with frequency − 1, otherwise evicted.
//! - Pinned tails are rotated to their queue's head unchanged; a run of pinned tails as long as
//!   the queue means the queue is all pinned.

use std::collections::VecDeque;

use rustc_hash::FxHashMap;

use super::EvictionPolicy;
use super::list::{Queue, Slab};
use crate::BlockKey;

const SMALL: u8 = 0;
const MAIN: u8 = 1;
/// Frequency cap (2 bits, as in the paper).
pub(crate) const MAX_FREQ: u8 = 3;

/// Byte-weighted S3-FIFO with a ghost queue.
#[derive(Clone, Debug)]
pub struct S3Fifo {
    slab: Slab,
    small: Queue,
    main: Queue,
    small_cap: u64,
    ghost: Ghost,
}

impl S3Fifo {
    /// S3-FIFO for `capacity` bytes with a small queue of `small_ratio` × capacity (clamped to
    /// `[0, 1]`); the ghost remembers as many bytes as the main queue's share.
    pub fn new(capacity: u64, small_ratio: f64) -> Self {
        let ratio = if small_ratio.is_finite() {
            small_ratio.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let small_cap = (capacity as f64 * ratio) as u64;
        Self {
            slab: Slab::default(),
            small: Queue::default(),
            main: Queue::default(),
            small_cap,
            ghost: Ghost::new(capacity - small_cap.min(capacity)),
        }
    }

    /// Bytes in the small and main queues.
    pub fn queue_bytes(&self) -> (u64, u64) {
        (self.small.bytes, self.main.bytes)
    }

    fn queue_mut(&mut self, which: u8) -> (&mut Slab, &mut Queue) {
        if which == SMALL {
            (&mut self.slab, &mut self.small)
        } else {
            (&mut self.slab, &mut self.main)
        }
    }

    /// Evicts from `S`: hit tails move to `M` unless `force`; the first unpinned cold tail (any
    /// unpinned tail when `force`) leaves to the ghost.
    fn evict_small(&mut self, pinned: &dyn Fn(BlockKey) -> bool, force: bool) -> Option<BlockKey> {
        let mut skipped = 0;
        while skipped < self.small.len {
            let slot = self.slab.pop_tail(&mut self.small)?;
            let node = self.slab.node(slot);
            if pinned(node.key) {
                self.slab.push_head(&mut self.small, slot);
                skipped += 1;
            } else if node.freq >= 1 && !force {
                self.slab.node_mut(slot).queue = MAIN;
                self.slab.push_head(&mut self.main, slot);
                skipped = 0;
            } else {
                let weight = node.weight;
                let key = self.slab.release(slot);
                self.ghost.push(key, weight);
                return Some(key);
            }
        }
        None
    }

    /// Evicts from `M`: hit tails are reinserted with one less frequency.
    fn evict_main(&mut self, pinned: &dyn Fn(BlockKey) -> bool) -> Option<BlockKey> {
        let mut skipped = 0;
        while skipped < self.main.len {
            let slot = self.slab.pop_tail(&mut self.main)?;
            let node = self.slab.node_mut(slot);
            if pinned(node.key) {
                self.slab.push_head(&mut self.main, slot);
                skipped += 1;
            } else if node.freq > 0 {
                node.freq -= 1;
                self.slab.push_head(&mut self.main, slot);
                skipped = 0;
            } else {
                return Some(self.slab.release(slot));
            }
        }
        None
    }
}

impl EvictionPolicy for S3Fifo {
    fn insert(&mut self, key: BlockKey, weight: u64) {
        if self.slab.slot(key).is_some() {
            return self.reweight(key, weight);
        }
        let which = if self.ghost.take(key) { MAIN } else { SMALL };
        let slot = self.slab.alloc(key, weight, which);
        let (slab, q) = self.queue_mut(which);
        slab.push_head(q, slot);
    }

    fn access(&mut self, key: BlockKey) {
        if let Some(slot) = self.slab.slot(key) {
            let n = self.slab.node_mut(slot);
            n.freq = (n.freq + 1).min(MAX_FREQ);
        }
    }

    fn reweight(&mut self, key: BlockKey, weight: u64) {
        if let Some(slot) = self.slab.slot(key) {
            let node = self.slab.node_mut(slot);
            let old = std::mem::replace(&mut node.weight, weight);
            let q = if node.queue == SMALL {
                &mut self.small
            } else {
                &mut self.main
            };
            q.bytes = q.bytes - old + weight;
        }
    }

    fn remove(&mut self, key: BlockKey) {
        if let Some(slot) = self.slab.slot(key) {
            let which = self.slab.node(slot).queue;
            let (slab, q) = self.queue_mut(which);
            slab.unlink(q, slot);
            slab.release(slot);
        }
    }

    fn evict(&mut self, pinned: &dyn Fn(BlockKey) -> bool) -> Option<BlockKey> {
        if self.small.bytes > self.small_cap
            && let Some(k) = self.evict_small(pinned, false)
        {
            return Some(k);
        }
        if let Some(k) = self.evict_main(pinned) {
            return Some(k);
        }
        self.evict_small(pinned, true)
    }

    fn len(&self) -> usize {
        self.slab.len()
    }
}

/// Keys recently evicted from `S`, FIFO, bounded in bytes. Re-inserting a ghost key removes it
/// from the ghost (its queue entry goes stale and is skipped; the deque is compacted when stale
/// entries outnumber live ones, so memory stays bounded).
#[derive(Clone, Debug)]
struct Ghost {
    cap: u64,
    bytes: u64,
    seq: u64,
    live: FxHashMap<BlockKey, (u64, u64)>,
    order: VecDeque<(u64, BlockKey)>,
}

impl Ghost {
    fn new(cap: u64) -> Self {
        Self {
            cap,
            bytes: 0,
            seq: 0,
            live: FxHashMap::default(),
            order: VecDeque::new(),
        }
    }

    fn push(&mut self, key: BlockKey, weight: u64) {
        self.seq += 1;
        if let Some((_, old)) = self.live.insert(key, (self.seq, weight)) {
            self.bytes -= old;
        }
        self.order.push_back((self.seq, key));
        self.bytes += weight;
        while self.bytes > self.cap {
            let Some((seq, k)) = self.order.pop_front() else {
                break;
            };
            if self.live.get(&k).is_some_and(|&(s, _)| s == seq)
                && let Some((_, w)) = self.live.remove(&k)
            {
                self.bytes -= w;
            }
        }
        if self.order.len() > 2 * self.live.len() + 64 {
            let live = &self.live;
            self.order
                .retain(|(s, k)| live.get(k).is_some_and(|&(ls, _)| ls == *s));
        }
    }

    /// Whether `key` was a ghost (and forgets it).
    fn take(&mut self, key: BlockKey) -> bool {
        match self.live.remove(&key) {
            Some((_, w)) => {
                self.bytes -= w;
                true
            }
            None => false,
        }
    }
}
