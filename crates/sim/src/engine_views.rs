//! What callers read of an [`Engine`] and the adapter registry they change, apart from the
//! scheduler loop in `engine.rs`.

use super::{Engine, EngineSnapshot, EngineStats, KvEvent, RequestId};
use crate::config::EngineConfig;
use crate::lora::{LoraError, LoraWeights};
use crate::profile::{GpuProfile, ModelProfile};

impl Engine {
    /// The settings it runs with.
    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }
    /// The model it simulates.
    pub fn model(&self) -> &ModelProfile {
        &self.model
    }
    /// The GPU it simulates.
    pub fn gpu(&self) -> &GpuProfile {
        &self.gpu
    }
    /// KV blocks in total.
    pub fn num_gpu_blocks(&self) -> u32 {
        self.pool.num_blocks()
    }
    /// Cumulative counters.
    pub fn stats(&self) -> &EngineStats {
        &self.stats
    }
    /// Whether a step would do anything.
    pub fn has_work(&self) -> bool {
        !self.running.is_empty() || !self.waiting.is_empty()
    }

    /// Gauges now.
    pub fn snapshot(&self) -> EngineSnapshot {
        EngineSnapshot {
            num_running: self.running.len(),
            num_waiting: self.waiting.len(),
            kv_usage: self.pool.usage(),
            num_gpu_blocks: self.pool.num_blocks(),
            running_loras: self.lora_names(self.running.iter()),
            waiting_loras: self.lora_names(self.waiting.iter()),
        }
    }

    fn lora_names<'a>(&self, ids: impl Iterator<Item = &'a RequestId>) -> Vec<String> {
        let mut names: Vec<String> = ids
            .filter_map(|id| self.reqs.get(id)?.lora)
            .filter_map(|l| self.lora.name(l).map(str::to_string))
            .collect();
        names.sort_unstable();
        names.dedup();
        names
    }

    /// Leading tokens of `prompt` (under adapter `lora`) that the prefix cache would serve if
    /// the prompt were scheduled now, with the same cap as admission (full blocks, never the
    /// last token); changes nothing. The fleet simulator's `oracle` router reads it to see
    /// each engine's true cache, which a live gateway can only estimate from its own index.
    pub fn cached_prefix_tokens(&self, prompt: &[u32], lora: Option<&str>) -> u32 {
        if !self.cfg.enable_prefix_caching || prompt.is_empty() {
            return 0;
        }
        let lora = match lora {
            Some(name) => match self.lora.id(name).and_then(|id| self.lora.key(id)) {
                Some(key) => Some(key),
                None => return 0,
            },
            None => None,
        };
        let bs = self.cfg.block_size as usize;
        let max_hit = (prompt.len() - 1) / bs;
        let mut parent = None;
        let mut hits = 0usize;
        // Hash block by block and stop at the first miss: cheap on engines that hold little.
        for block in prompt.chunks_exact(bs).take(max_hit) {
            let d = self.hasher.hash(parent.as_ref(), block, lora);
            if self.pool.lookup(d.key()).is_none() {
                break;
            }
            hits += 1;
            parent = Some(d);
        }
        (hits * bs).min(u32::MAX as usize) as u32
    }

    /// Prompt tokens a live request got from the prefix cache when first scheduled (None when
    /// it is unknown or finished); vLLM's prompt-token-by-source counters book this split at
    /// the first token.
    pub fn cached_tokens_of(&self, id: RequestId) -> Option<u32> {
        self.reqs.get(&id).map(|r| r.cached_tokens)
    }

    /// KV events recorded since the last call, oldest first (always empty unless
    /// `EngineConfig::kv_events`): what a `brix sim` publishes after each step.
    pub fn take_kv_events(&mut self) -> Vec<KvEvent> {
        std::mem::take(&mut self.pool.events)
    }

    /// vLLM's `reset_prefix_cache`: forgets every cached block hash (an `AllBlocksCleared`
    /// event); refused (false) while requests hold blocks, as vLLM refuses.
    pub fn reset_prefix_cache(&mut self) -> bool {
        if self.pool.num_free() < self.pool.num_blocks() {
            return false;
        }
        self.pool.reset_cache();
        true
    }

    /// Registers a LoRA adapter (`/v1/load_lora_adapter`).
    pub fn load_lora(&mut self, name: &str, path: &str) -> Result<(), LoraError> {
        self.lora.load(name, path).map(|_| ())
    }
    /// Registers an adapter whose rank and size were read from its files; `inplace` reloads
    /// one already registered under `name` (`load_inplace`).
    pub fn load_lora_with(
        &mut self,
        name: &str,
        path: &str,
        weights: LoraWeights,
        inplace: bool,
    ) -> Result<(), LoraError> {
        self.lora
            .load_with(name, path, weights, inplace)
            .map(|_| ())
    }
    /// Removes a LoRA adapter (`/v1/unload_lora_adapter`).
    pub fn unload_lora(&mut self, name: &str) -> Result<(), LoraError> {
        self.lora.unload(name)
    }
    /// (name, path) of loaded adapters, in load order.
    pub fn loras(&self) -> Vec<(String, String)> {
        self.lora.list()
    }
    /// Bytes of an adapter of unknown size (rank `max_lora_rank` on q, k, v, o): what a
    /// controller's load of it reads.
    pub fn lora_default_bytes(&self) -> f64 {
        self.lora.adapter_bytes
    }
    /// Whether `name` is a loaded adapter.
    pub fn has_lora(&self, name: &str) -> bool {
        self.lora.id(name).is_some()
    }
}
