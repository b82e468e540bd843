//! The paged KV block pool with vLLM's prefix-cache semantics.
//!
//! Blocks are ref-counted. A block whose count drops to zero goes to the tail of an LRU free
//! queue but keeps its hash, so a later request can still hit it ("touch" takes it back out of
//! the queue); allocation takes from the head and only then forgets the hash. Usage counts
//! cached-but-free blocks as free, as vLLM's `kv_cache_usage_perc` does.

use rustc_hash::FxHashMap;

use crate::events::KvEvent;
use crate::hash::BlockHash;

const NIL: u32 = u32::MAX;

/// Paged KV cache blocks: ref counts, an intrusive LRU free queue, and the hash → block map.
#[derive(Clone, Debug)]
pub struct BlockPool {
    ref_cnt: Vec<u32>,
    hash: Vec<Option<BlockHash>>,
    prev: Vec<u32>,
    next: Vec<u32>,
    head: u32,
    tail: u32,
    num_free: u32,
    cached: FxHashMap<BlockHash, u32>,
    caching: bool,
    /// Whether prefix-cache changes are recorded in `events`.
    emit: bool,
    /// Recorded KV events, oldest first (empty unless `emit`).
    pub(crate) events: Vec<KvEvent>,
}

impl BlockPool {
    /// A pool of `num_blocks` free blocks; `caching` turns automatic prefix caching on.
    pub fn new(num_blocks: u32, caching: bool) -> Self {
        let n = num_blocks as usize;
        let mut pool = Self {
            ref_cnt: vec![0; n],
            hash: vec![None; n],
            prev: vec![NIL; n],
            next: vec![NIL; n],
            head: NIL,
            tail: NIL,
            num_free: 0,
            cached: FxHashMap::default(),
            caching,
            emit: false,
            events: Vec::new(),
        };
        for b in 0..num_blocks {
            pool.push_tail(b);
        }
        pool
    }

    /// Records KV events (vLLM's `enable_kv_cache_events`) from now on.
    pub fn with_events(mut self, on: bool) -> Self {
        self.emit = on && self.caching;
        self
    }

    /// Whether KV events are recorded.
    pub fn emits_events(&self) -> bool {
        self.emit
    }

    /// Total blocks.
    pub fn num_blocks(&self) -> u32 {
        self.ref_cnt.len() as u32
    }

    /// Blocks with no owner (cached or not).
    pub fn num_free(&self) -> u32 {
        self.num_free
    }

    /// Fraction of blocks held by requests: vLLM's `kv_cache_usage_perc`.
    pub fn usage(&self) -> f64 {
        match self.num_blocks() {
            0 => 0.0,
            n => 1.0 - f64::from(self.num_free) / f64::from(n),
        }
    }

    /// Blocks whose contents are registered for prefix hits.
    pub fn num_cached(&self) -> usize {
        self.cached.len()
    }

    /// The block holding `hash`, if it is still cached.
    pub fn lookup(&self, hash: BlockHash) -> Option<u32> {
        if !self.caching {
            return None;
        }
        self.cached.get(&hash).copied()
    }

    /// Whether `block` currently has no owner (touching it would take it off the free queue).
    pub fn is_free(&self, block: u32) -> bool {
        self.ref_cnt[block as usize] == 0
    }

    /// Takes one more reference on a cached block found by [`Self::lookup`].
    pub fn touch(&mut self, block: u32) {
        let b = block as usize;
        if self.ref_cnt[b] == 0 {
            self.unlink(block);
        }
        self.ref_cnt[b] += 1;
    }

    /// Appends `n` fresh blocks to `out`, evicting the least recently freed; false (and no
    /// change) when fewer than `n` are free.
    pub fn allocate(&mut self, n: u32, out: &mut Vec<u32>) -> bool {
        if n > self.num_free {
            return false;
        }
        for _ in 0..n {
            let b = self.head;
            self.unlink(b);
            if let Some(h) = self.hash[b as usize].take()
                && self.cached.get(&h) == Some(&b)
            {
                self.cached.remove(&h);
                if self.emit {
                    // vLLM's BlockPool emits one BlockRemoved per evicted block.
                    self.events.push(KvEvent::Removed { hashes: vec![h] });
                }
            }
            self.ref_cnt[b as usize] = 1;
            out.push(b);
        }
        true
    }

    /// Drops one reference on each block, last block first, so a sequence's tail is evicted
    /// before its (more shareable) head.
    pub fn free(&mut self, blocks: &[u32]) {
        for &b in blocks.iter().rev() {
            let r = &mut self.ref_cnt[b as usize];
            debug_assert!(*r > 0, "double free of block {b}");
            *r = r.saturating_sub(1);
            if *r == 0 {
                self.push_tail(b);
            }
        }
    }

    /// Registers a full block's contents so later requests can hit it; false when the block
    /// already has a hash or another block holds this one.
    pub fn cache(&mut self, block: u32, hash: BlockHash) -> bool {
        if !self.caching || self.hash[block as usize].is_some() || self.cached.contains_key(&hash) {
            return false;
        }
        self.hash[block as usize] = Some(hash);
        self.cached.insert(hash, block);
        true
    }

    /// Forgets every cached hash (vLLM's `reset_prefix_cache`); owned blocks stay owned.
    pub fn reset_cache(&mut self) {
        self.cached.clear();
        self.hash.iter_mut().for_each(|h| *h = None);
        if self.emit {
            self.events.push(KvEvent::Cleared);
        }
    }

    fn push_tail(&mut self, b: u32) {
        self.prev[b as usize] = self.tail;
        self.next[b as usize] = NIL;
        if self.tail == NIL {
            self.head = b;
        } else {
            self.next[self.tail as usize] = b;
        }
        self.tail = b;
        self.num_free += 1;
    }

    fn unlink(&mut self, b: u32) {
        let (p, n) = (self.prev[b as usize], self.next[b as usize]);
        if p == NIL {
            self.head = n;
        } else {
            self.next[p as usize] = n;
        }
        if n == NIL {
            self.tail = p;
        } else {
            self.prev[n as usize] = p;
        }
        self.prev[b as usize] = NIL;
        self.next[b as usize] = NIL;
        self.num_free -= 1;
    }
}

#[cfg(test)]
#[path = "kv_tests.rs"]
mod tests;
