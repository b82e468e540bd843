//! KV cache events: what the engine's prefix cache gained and lost, in vLLM's terms.
//!
//! With `EngineConfig::kv_events` on, the engine records a [`KvEvent`] whenever full blocks
//! are registered in the prefix cache (`Stored`), a cached block's hash is forgotten because
//! the block is reused (`Removed`), or the whole cache is reset (`Cleared`), exactly where
//! vLLM's `BlockPool` queues `BlockStored`, `BlockRemoved` and `AllBlocksCleared`. Callers drain
//! them with [`crate::Engine::take_kv_events`] after each step; off (the default), nothing is
//! recorded and nothing is allocated.

use crate::hash::BlockHash;

/// One change to the engine's prefix cache (vLLM's `KVCacheEvent`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KvEvent {
    /// Consecutive full blocks of one request were registered (`BlockStored`).
    Stored {
        /// Hash of each block, in order (vLLM's integer block hashes).
        hashes: Vec<BlockHash>,
        /// Hash of the block before the first one; None when the first is the prompt's first.
        parent: Option<BlockHash>,
        /// The blocks' token ids (`hashes.len() * block_size` of them).
        token_ids: Vec<u32>,
        /// Tokens per block.
        block_size: u32,
        /// Engine id of the LoRA adapter the blocks were computed under.
        lora_id: Option<u32>,
        /// Name of that adapter (vLLM's `lora_name`).
        lora_name: Option<String>,
    },
    /// Blocks' hashes were forgotten: their blocks were reused (`BlockRemoved`).
    Removed {
        /// The forgotten hashes.
        hashes: Vec<BlockHash>,
    },
    /// The whole prefix cache was reset (`AllBlocksCleared`).
    Cleared,
}
