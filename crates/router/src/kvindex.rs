//! One pod's prefix cache as its engine's KV events tell it: exact, where the approximate
//! [`crate::PrefixIndex`] only guesses from what was routed where.
//!
//! The engine names a block by its own hash (vLLM: `sha256`, `sha256_cbor`, `xxhash`…, seeded
//! per process), which a router cannot reproduce in general. So, as llm-d does, the index keys
//! blocks by Brix's own chain over the token ids each `BlockStored` event carries:
//! `k_i = xxh64(s, LE64(k_{i−1}) ‖ LE32 tokens of block i)` with `k_{−1} = s`, the seed `s`
//! salted by the LoRA adapter's name ([`kv_seed`]); a request's keys ([`RequestKeys`]) are the
//! same chain over its prompt, so no engine hash seed has to match. The index maps each engine
//! hash to its own key, to resolve a stored block's `parent` and a `BlockRemoved`; a stored
//! block whose parent it does not hold is a [`StoreError::Gap`] (events were lost: the
//! consumer replays or clears). It holds at most `capacity` blocks and never evicts: the
//! engine decides what is cached, so a full index refuses the block and says so.

use rustc_hash::FxHashMap;
use xxhash_rust::xxh64::xxh64;

use crate::blocks::{DEFAULT_SEED, hash_tokens, link_tokens};

/// Blocks one pod's index holds at most by default: above any engine's KV cache (an 80 GB GPU
/// holds ~30,000 blocks of 16 tokens of an 8B model), ~40 MB at worst.
pub const DEFAULT_KV_CAPACITY: usize = 1 << 20;

/// The chain seed for a LoRA adapter (None: the base model), so an adapter's blocks never
/// match the base model's or another adapter's.
pub fn kv_seed(lora: Option<&str>) -> u64 {
    match lora {
        None => DEFAULT_SEED,
        Some(name) => xxh64(name.as_bytes(), DEFAULT_SEED),
    }
}

/// Why a `BlockStored` event was not applied (nothing of it was stored, or, for
/// [`StoreError::Full`], the blocks before the first refused one).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The parent block is unknown: events were lost (replay, or clear the index).
    #[error("parent block {0:#x} is unknown: events were lost")]
    Gap(u64),
    /// The index holds `capacity` blocks already.
    #[error("the index is full")]
    Full,
    /// Token ids are not `hashes × block_size` (sparse or sliding-window groups), or the
    /// block size is 0.
    #[error("token ids do not cover the blocks")]
    Malformed,
}

/// One KV event, borrowed from whatever decoded it (the gateway's ZMQ subscriber, the
/// simulator's engine), so the router needs neither.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KvUpdate<'a> {
    /// Full blocks entered the engine's prefix cache, in chain order.
    Stored {
        /// The engine hash of the block before the first one; None when it starts the prompt.
        parent: Option<u64>,
        /// Engine hashes of the blocks.
        hashes: &'a [u64],
        /// Their token ids, `block_size` per block.
        token_ids: &'a [u32],
        /// Tokens per block.
        block_size: u32,
        /// The LoRA adapter's name; None for the base model.
        lora: Option<&'a str>,
    },
    /// Blocks left the prefix cache (evicted for reuse).
    Removed {
        /// Engine hashes of the blocks.
        hashes: &'a [u64],
    },
    /// The engine's prefix cache was reset.
    Cleared,
}

/// A prompt's own block keys for one block size: the chain over the full blocks an engine
/// could serve from cache (the last prompt token is always computed, so a prompt of exactly
/// `n` blocks can hit `n − 1`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestKeys {
    block_size: u32,
    keys: Vec<u64>,
}

impl RequestKeys {
    /// The keys of `tokens` cut in `block_size` blocks, salted by `lora`.
    pub fn new(tokens: &[u32], block_size: u32, lora: Option<&str>) -> Self {
        let cacheable = &tokens[..tokens.len().saturating_sub(1)];
        Self {
            block_size,
            keys: hash_tokens(cacheable, block_size as usize, kv_seed(lora)),
        }
    }

    /// Tokens per block.
    pub fn block_size(&self) -> u32 {
        self.block_size
    }

    /// The chain, one key per block.
    pub fn keys(&self) -> &[u64] {
        &self.keys
    }
}

/// A request's keys for every block size the fleet's indexes use, computed once each on first
/// use (a fleet usually has one size): what a driver passes from pod to pod in one decision.
#[derive(Clone, Debug)]
pub struct PromptKeys<'a> {
    tokens: &'a [u32],
    lora: Option<&'a str>,
    sets: Vec<RequestKeys>,
}

impl<'a> PromptKeys<'a> {
    /// Keys of `tokens` for `lora` (None: the base model), none computed yet.
    pub fn new(tokens: &'a [u32], lora: Option<&'a str>) -> Self {
        Self {
            tokens,
            lora,
            sets: Vec::new(),
        }
    }

    /// The prompt's length in tokens.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// Whether the prompt is empty.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The keys cut in `block_size` blocks.
    pub fn for_block_size(&mut self, block_size: u32) -> &RequestKeys {
        let at = match self.sets.iter().position(|k| k.block_size == block_size) {
            Some(at) => at,
            None => {
                self.sets
                    .push(RequestKeys::new(self.tokens, block_size, self.lora));
                self.sets.len() - 1
            }
        };
        &self.sets[at]
    }

    /// Prompt tokens `index`'s pod holds in cache for this request (0 before any store).
    pub fn cached_tokens(&mut self, index: &KvIndex) -> u32 {
        match index.block_size() {
            0 => 0,
            bs => index.matched_tokens(self.for_block_size(bs)),
        }
    }
}

/// One pod's cached blocks, keyed by Brix's own chain (see the module docs).
#[derive(Clone, Debug, PartialEq)]
pub struct KvIndex {
    capacity: usize,
    /// Engine hash → own key.
    blocks: FxHashMap<u64, u64>,
    /// Own key → how many engine hashes name it (the same tokens under another salt or
    /// extra key the router does not see).
    keys: FxHashMap<u64, u32>,
    /// Largest block size stored since the last clear (0 before any).
    block_size: u32,
}

impl Default for KvIndex {
    fn default() -> Self {
        Self::new(DEFAULT_KV_CAPACITY)
    }
}

impl KvIndex {
    /// An empty index holding at most `capacity` blocks.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            blocks: FxHashMap::default(),
            keys: FxHashMap::default(),
            block_size: 0,
        }
    }

    /// Blocks held.
    pub fn len(&self) -> usize {
        self.blocks.len()
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }

    /// The most blocks it holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Tokens per block of the engine's cache (the largest stored since the last clear; 0
    /// before any).
    pub fn block_size(&self) -> u32 {
        self.block_size
    }

    /// Applies one event; `removed` and `cleared` never fail.
    pub fn apply(&mut self, update: KvUpdate<'_>) -> Result<(), StoreError> {
        match update {
            KvUpdate::Stored {
                parent,
                hashes,
                token_ids,
                block_size,
                lora,
            } => self.stored(parent, hashes, token_ids, block_size, lora),
            KvUpdate::Removed { hashes } => {
                self.removed(hashes);
                Ok(())
            }
            KvUpdate::Cleared => {
                self.cleared();
                Ok(())
            }
        }
    }

    /// Blocks `hashes` (with `token_ids`, `block_size` each) following `parent` entered the
    /// cache. A hash already held is kept as is (vLLM reports reused blocks again).
    pub fn stored(
        &mut self,
        parent: Option<u64>,
        hashes: &[u64],
        token_ids: &[u32],
        block_size: u32,
        lora: Option<&str>,
    ) -> Result<(), StoreError> {
        if block_size == 0 || token_ids.len() != hashes.len() * block_size as usize {
            return Err(StoreError::Malformed);
        }
        let seed = kv_seed(lora);
        let mut prev = match parent {
            None => seed,
            Some(p) => *self.blocks.get(&p).ok_or(StoreError::Gap(p))?,
        };
        if !hashes.is_empty() {
            self.block_size = self.block_size.max(block_size);
        }
        let mut buf = Vec::with_capacity(block_size as usize * 4);
        for (&h, chunk) in hashes
            .iter()
            .zip(token_ids.chunks_exact(block_size as usize))
        {
            let key = link_tokens(prev, chunk, seed, &mut buf);
            match self.blocks.get(&h) {
                Some(&old) if old == key => {}
                Some(&old) => {
                    // The engine reused a hash for other tokens: the newest wins.
                    self.release(old);
                    self.blocks.insert(h, key);
                    *self.keys.entry(key).or_default() += 1;
                }
                None if self.blocks.len() >= self.capacity => return Err(StoreError::Full),
                None => {
                    self.blocks.insert(h, key);
                    *self.keys.entry(key).or_default() += 1;
                }
            }
            prev = key;
        }
        Ok(())
    }

    /// Blocks `hashes` left the cache; returns how many the index held (the rest it never
    /// saw, or lost in a gap).
    pub fn removed(&mut self, hashes: &[u64]) -> usize {
        let mut known = 0;
        for h in hashes {
            if let Some(key) = self.blocks.remove(h) {
                self.release(key);
                known += 1;
            }
        }
        known
    }

    /// The engine's cache was reset (or its events lost for good): forget every block.
    pub fn cleared(&mut self) {
        self.blocks.clear();
        self.keys.clear();
        self.block_size = 0;
    }

    /// Tokens of the request's leading blocks the pod holds (it stops at the first miss, as
    /// the engine's lookup does).
    pub fn matched_tokens(&self, keys: &RequestKeys) -> u32 {
        let held = keys
            .keys
            .iter()
            .take_while(|k| self.keys.contains_key(k))
            .count();
        u32::try_from(held)
            .unwrap_or(u32::MAX)
            .saturating_mul(keys.block_size)
    }

    fn release(&mut self, key: u64) {
        if let Some(n) = self.keys.get_mut(&key) {
            *n -= 1;
            if *n == 0 {
                self.keys.remove(&key);
            }
        }
    }
}

#[cfg(test)]
#[path = "kvindex_tests.rs"]
mod tests;
