//! LoRA adapters: the registry behind `/v1/load_lora_adapter`, host-memory residency
//! (`max_cpu_loras`) and GPU batch slots (`max_loras`), each an LRU, priced in bytes moved.

use std::collections::{BTreeMap, HashMap};

use crate::hash::LoraKey;
use crate::latency::LoraItem;
use crate::profile::ModelProfile;

/// Why a LoRA operation was refused; the HTTP layer maps each to vLLM's reply.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LoraError {
    /// The engine was started without `--enable-lora`.
    #[error("LoRA is not enabled. Use --enable-lora to enable LoRA.")]
    Disabled,
    /// An adapter with this name is already loaded (and `load_inplace` was not asked for).
    #[error(
        "The lora adapter '{0}' has already been loaded. If you want to load the adapter in place, set 'load_inplace' to True."
    )]
    AlreadyLoaded(String),
    /// The adapter's rank exceeds `--max-lora-rank`.
    #[error("LoRA rank {rank} is greater than max_lora_rank {max}.")]
    RankTooLarge {
        /// The adapter's rank (`r` in its `adapter_config.json`).
        rank: u32,
        /// The engine's `--max-lora-rank`.
        max: u32,
    },
    /// No adapter with this name is loaded.
    #[error("The lora adapter '{0}' cannot be found.")]
    NotFound(String),
}

#[derive(Clone, Debug)]
struct Adapter {
    id: u32,
    path: String,
    /// Bytes of its weights: what a load from disk or a move to the GPU costs.
    bytes: f64,
}

/// What is known of an adapter's weights when it is loaded; unknown parts are taken at the
/// engine's `--max-lora-rank`, as vLLM sizes its slots.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LoraWeights {
    /// `r` from `adapter_config.json`.
    pub rank: Option<u32>,
    /// Bytes of the weights file (from its safetensors header).
    pub bytes: Option<u64>,
}

/// Registered adapters and where their weights currently are.
#[derive(Clone, Debug)]
pub(crate) struct LoraManager {
    by_name: HashMap<String, Adapter>,
    names: HashMap<u32, String>,
    next_id: u32,
    /// Host-resident adapter ids (`max_cpu_loras`, least recently used evicted).
    cpu: Lru,
    /// GPU slot holders (`max_loras`, least recently used evicted).
    gpu: Lru,
    enabled: bool,
    max_rank: u32,
    /// Bytes of one adapter at the configured rank.
    pub(crate) adapter_bytes: f64,
    /// Activation bytes the LoRA kernels move per token (all adapted projections, all
    /// layers): the shrink reads the input, the expand reads and writes the output.
    pub(crate) io_bytes_per_token: f64,
}

/// Bytes that one batch's adapters had to move before the step could run.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Swap {
    pub(crate) from_disk: f64,
    pub(crate) to_gpu: f64,
}

impl LoraManager {
    pub(crate) fn new(
        enabled: bool,
        max_loras: u32,
        max_cpu_loras: u32,
        rank: u32,
        model: &ModelProfile,
    ) -> Self {
        // q, k, v, o projections: rank × (d_in + d_out) per matrix per layer.
        let d = f64::from(model.hidden_size);
        let q = f64::from(model.num_heads * model.head_dim);
        let kv = f64::from(model.num_kv_heads * model.head_dim);
        let per_layer = (d + q) + 2.0 * (d + kv) + (q + d);
        let layers = f64::from(model.num_layers);
        let w = f64::from(model.dtype_bytes);
        let adapter_bytes = f64::from(rank) * layers * per_layer * w;
        let io_per_layer = (d + 2.0 * q) + 2.0 * (d + 2.0 * kv) + (q + 2.0 * d);
        Self {
            by_name: HashMap::new(),
            names: HashMap::new(),
            next_id: 1,
            cpu: Lru::new(max_cpu_loras as usize),
            gpu: Lru::new(max_loras as usize),
            enabled,
            max_rank: rank,
            adapter_bytes,
            io_bytes_per_token: io_per_layer * layers * w,
        }
    }

    /// Registers an adapter and reads it into host memory, evicting the least recent.
    pub(crate) fn load(&mut self, name: &str, path: &str) -> Result<u32, LoraError> {
        self.load_with(name, path, LoraWeights::default(), false)
    }

    /// Registers an adapter of known size; `inplace` replaces one of the same name (its
    /// weights are read again, so it leaves host and GPU memory until next used).
    pub(crate) fn load_with(
        &mut self,
        name: &str,
        path: &str,
        weights: LoraWeights,
        inplace: bool,
    ) -> Result<u32, LoraError> {
        if !self.enabled {
            return Err(LoraError::Disabled);
        }
        if let Some(rank) = weights.rank.filter(|&r| r > self.max_rank) {
            return Err(LoraError::RankTooLarge {
                rank,
                max: self.max_rank,
            });
        }
        let bytes = match (weights.bytes, weights.rank) {
            (Some(b), _) => b as f64,
            (None, Some(r)) => self.adapter_bytes * f64::from(r) / f64::from(self.max_rank.max(1)),
            (None, None) => self.adapter_bytes,
        };
        if let Some(old) = self.by_name.get_mut(name) {
            if !inplace {
                return Err(LoraError::AlreadyLoaded(name.to_string()));
            }
            old.path = path.to_string();
            old.bytes = bytes;
            let id = old.id;
            self.cpu.remove(id);
            self.gpu.remove(id);
            self.cpu.touch(id);
            return Ok(id);
        }
        let id = self.next_id;
        self.next_id += 1;
        self.by_name.insert(
            name.to_string(),
            Adapter {
                id,
                path: path.to_string(),
                bytes,
            },
        );
        self.names.insert(id, name.to_string());
        self.cpu.touch(id);
        Ok(id)
    }

    /// Each distinct adapter of a batch of (adapter, tokens) with its tokens summed and its
    /// bytes, in adapter-id order: what the LoRA kernels work on in one step.
    pub(crate) fn batch_items(&self, batch: &[(u32, u32)]) -> Vec<LoraItem> {
        let mut tokens: Vec<(u32, u32)> = Vec::with_capacity(batch.len());
        for &(id, t) in batch {
            match tokens.iter_mut().find(|(a, _)| *a == id) {
                Some((_, sum)) => *sum = sum.saturating_add(t),
                None => tokens.push((id, t)),
            }
        }
        tokens.sort_unstable();
        tokens
            .into_iter()
            .map(|(id, tokens)| LoraItem {
                tokens,
                bytes: self.bytes(id),
            })
            .collect()
    }

    fn bytes(&self, id: u32) -> f64 {
        self.names
            .get(&id)
            .and_then(|n| self.by_name.get(n))
            .map_or(self.adapter_bytes, |a| a.bytes)
    }

    pub(crate) fn unload(&mut self, name: &str) -> Result<(), LoraError> {
        if !self.enabled {
            return Err(LoraError::Disabled);
        }
        let a = self
            .by_name
            .remove(name)
            .ok_or_else(|| LoraError::NotFound(name.to_string()))?;
        self.names.remove(&a.id);
        self.cpu.remove(a.id);
        self.gpu.remove(a.id);
        Ok(())
    }

    pub(crate) fn id(&self, name: &str) -> Option<u32> {
        self.by_name.get(name).map(|a| a.id)
    }

    pub(crate) fn name(&self, id: u32) -> Option<&str> {
        self.names.get(&id).map(String::as_str)
    }

    /// What block hashes of adapter `id` are salted with (vLLM: its name and path).
    pub(crate) fn key(&self, id: u32) -> Option<LoraKey<'_>> {
        let name = self.names.get(&id)?;
        let a = self.by_name.get(name)?;
        Some(LoraKey {
            id,
            name,
            path: &a.path,
        })
    }

    /// (name, path) of every registered adapter, in load order.
    pub(crate) fn list(&self) -> Vec<(String, String)> {
        let mut v: Vec<_> = self
            .by_name
            .iter()
            .map(|(n, a)| (a.id, n.clone(), a.path.clone()))
            .collect();
        v.sort_unstable();
        v.into_iter().map(|(_, n, p)| (n, p)).collect()
    }

    /// Makes the batch's adapters GPU-resident and says what that moved.
    pub(crate) fn activate(&mut self, batch: &[u32]) -> Swap {
        let mut swap = Swap::default();
        for &id in batch {
            if !self.gpu.contains(id) {
                let bytes = self.bytes(id);
                swap.to_gpu += bytes;
                if !self.cpu.contains(id) {
                    swap.from_disk += bytes;
                }
            }
            self.cpu.touch(id);
            self.gpu.touch(id);
        }
        swap
    }
}

/// A capped least-recently-used set of adapter ids; O(log n) per use, so engines holding
/// thousands of adapters step as fast as those holding a few.
#[derive(Clone, Debug)]
struct Lru {
    cap: usize,
    clock: u64,
    /// id → its last use.
    stamp: HashMap<u32, u64>,
    /// last use → id, oldest first.
    order: BTreeMap<u64, u32>,
}

impl Lru {
    fn new(cap: usize) -> Self {
        Self {
            cap,
            clock: 0,
            stamp: HashMap::new(),
            order: BTreeMap::new(),
        }
    }

    fn contains(&self, id: u32) -> bool {
        self.stamp.contains_key(&id)
    }

    /// Marks `id` most recently used, evicting the least recent beyond the cap.
    fn touch(&mut self, id: u32) {
        self.clock += 1;
        if let Some(old) = self.stamp.insert(id, self.clock) {
            self.order.remove(&old);
        }
        self.order.insert(self.clock, id);
        while self.stamp.len() > self.cap {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            self.stamp.remove(&oldest);
        }
    }

    fn remove(&mut self, id: u32) {
        if let Some(old) = self.stamp.remove(&id) {
            self.order.remove(&old);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::Catalog;

    fn manager(max_loras: u32, max_cpu: u32) -> LoraManager {
        let c = Catalog::builtin();
        let m = c
            .model("llama-3-8b")
            .cloned()
            .unwrap_or_else(|e| panic!("{e}"));
        LoraManager::new(true, max_loras, max_cpu, 16, &m)
    }

    #[test]
    fn registry_errors_match_vllm() {
        let mut l = manager(1, 1);
        assert_eq!(l.load("a", "/p/a"), Ok(1));
        assert_eq!(
            l.load("a", "/p/a"),
            Err(LoraError::AlreadyLoaded("a".into()))
        );
        assert_eq!(l.unload("b"), Err(LoraError::NotFound("b".into())));
        assert_eq!(l.unload("a"), Ok(()));
        assert_eq!(l.id("a"), None);
        let c = Catalog::builtin();
        let m = c
            .model("llama-3-8b")
            .cloned()
            .unwrap_or_else(|e| panic!("{e}"));
        let mut off = LoraManager::new(false, 1, 1, 16, &m);
        assert_eq!(off.load("a", "p"), Err(LoraError::Disabled));
    }

    #[test]
    fn swaps_cost_bytes_only_when_not_resident() {
        let mut l = manager(1, 2);
        // Rank 16 on Llama-3-8B attention projections ≈ 27 MB.
        assert!(
            (l.adapter_bytes / 1e6 - 27.3).abs() < 0.5,
            "{}",
            l.adapter_bytes
        );
        let a = l.load("a", "pa").unwrap_or(0);
        let b = l.load("b", "pb").unwrap_or(0);
        let c = l.load("c", "pc").unwrap_or(0); // evicts a from host memory
        let s = l.activate(&[a]);
        assert_eq!((s.from_disk > 0.0, s.to_gpu > 0.0), (true, true));
        assert_eq!(l.activate(&[a]), Swap::default());
        let s = l.activate(&[c]);
        assert_eq!((s.from_disk > 0.0, s.to_gpu > 0.0), (false, true));
        assert_eq!(l.list().len(), 3);
        let _ = b;
    }

    #[test]
    fn rank_and_size_price_the_load_and_inplace_reloads() {
        let mut l = manager(2, 2);
        let big = LoraWeights {
            rank: Some(32),
            bytes: None,
        };
        assert_eq!(
            l.load_with("x", "p", big, false),
            Err(LoraError::RankTooLarge { rank: 32, max: 16 })
        );
        let small = LoraWeights {
            rank: Some(8),
            bytes: None,
        };
        let a = l.load_with("a", "p", small, false).unwrap_or(0);
        let s = l.activate(&[a]);
        assert!((s.to_gpu / l.adapter_bytes - 0.5).abs() < 1e-9, "{s:?}");
        let sized = LoraWeights {
            rank: Some(8),
            bytes: Some(1_000),
        };
        assert_eq!(
            l.load_with("a", "q", sized, false),
            Err(LoraError::AlreadyLoaded("a".into()))
        );
        assert_eq!(l.load_with("a", "q", sized, true), Ok(a));
        // Reloaded in place: read again, at its new size, on next use.
        assert_eq!(l.activate(&[a]).to_gpu, 1_000.0);
        let items = l.batch_items(&[(a, 3), (a, 1)]);
        assert_eq!(
            items,
            vec![LoraItem {
                tokens: 4,
                bytes: 1_000.0
            }]
        );
        assert_eq!(l.list(), vec![("a".to_string(), "q".to_string())]);
    }
}
