//! Least recently used: one queue, hits move a key to the head, victims come from the tail.

use super::EvictionPolicy;
use super::list::{Queue, Slab};
use crate::BlockKey;

/// Least recently used, byte-weighted only through the index's accounting (order is pure
/// recency). A pinned tail key is rotated to the head, as if used.
#[derive(Clone, Debug, Default)]
pub struct Lru {
    slab: Slab,
    queue: Queue,
}

impl Lru {
    /// An empty LRU.
    pub fn new() -> Self {
        Self::default()
    }
}

impl EvictionPolicy for Lru {
    fn insert(&mut self, key: BlockKey, weight: u64) {
        if self.slab.slot(key).is_some() {
            return self.reweight(key, weight);
        }
        let slot = self.slab.alloc(key, weight, 0);
        self.slab.push_head(&mut self.queue, slot);
    }

    fn access(&mut self, key: BlockKey) {
        if let Some(slot) = self.slab.slot(key) {
            self.slab.unlink(&mut self.queue, slot);
            self.slab.push_head(&mut self.queue, slot);
        }
    }

    fn reweight(&mut self, key: BlockKey, weight: u64) {
        if let Some(slot) = self.slab.slot(key) {
            let old = std::mem::replace(&mut self.slab.node_mut(slot).weight, weight);
            self.queue.bytes = self.queue.bytes - old + weight;
        }
    }

    fn remove(&mut self, key: BlockKey) {
        if let Some(slot) = self.slab.slot(key) {
            self.slab.unlink(&mut self.queue, slot);
            self.slab.release(slot);
        }
    }

    fn evict(&mut self, pinned: &dyn Fn(BlockKey) -> bool) -> Option<BlockKey> {
        let mut skipped = 0;
        while skipped < self.queue.len {
            let slot = self.slab.pop_tail(&mut self.queue)?;
            if pinned(self.slab.node(slot).key) {
                self.slab.push_head(&mut self.queue, slot);
                skipped += 1;
                continue;
            }
            return Some(self.slab.release(slot));
        }
        None
    }

    fn len(&self) -> usize {
        self.slab.len()
    }
}
