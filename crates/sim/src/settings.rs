//! vLLM's engine flags as a user gives them, mapped onto [`EngineConfig`] in one place: `brix
//! sim`'s command line, `brix up`'s `sim:` engine blocks and `brix bench sim` all call
//! [`EngineSettings::apply`], so one flag means one thing everywhere.

use crate::config::EngineConfig;
use crate::hash::HashAlgo;
use crate::outlen::OutputLen;
use crate::profile::{GpuProfile, ModelProfile};

/// Engine flags given (None: vLLM's default for the model and GPU).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EngineSettings {
    /// `--max-num-seqs`.
    pub max_num_seqs: Option<u32>,
    /// `--max-num-batched-tokens`.
    pub max_num_batched_tokens: Option<u32>,
    /// `--block-size`.
    pub block_size: Option<u32>,
    /// `--gpu-memory-utilization`.
    pub gpu_memory_utilization: Option<f64>,
    /// `--max-model-len`.
    pub max_model_len: Option<u32>,
    /// `--enable-prefix-caching` (true) or `--no-enable-prefix-caching` (false).
    pub enable_prefix_caching: Option<bool>,
    /// `--enable-lora`.
    pub enable_lora: bool,
    /// `--max-loras`.
    pub max_loras: Option<u32>,
    /// `--max-lora-rank`.
    pub max_lora_rank: Option<u32>,
    /// `--max-cpu-loras` (vLLM: defaults to `--max-loras`).
    pub max_cpu_loras: Option<u32>,
    /// `--num-gpu-blocks-override`.
    pub num_gpu_blocks_override: Option<u32>,
    /// The simulator's seed.
    pub seed: Option<u64>,
    /// The simulator's natural output lengths.
    pub output_len: Option<OutputLen>,
    /// `--kv-events-config` with `enable_kv_cache_events: true`: record KV events.
    pub kv_events: bool,
    /// `--prefix-caching-hash-algo`.
    pub prefix_caching_hash_algo: Option<HashAlgo>,
    /// `PYTHONHASHSEED`: the seed of vLLM's first-block parent hash.
    pub hash_seed: Option<String>,
}

impl EngineSettings {
    /// `e` with every flag given set, and vLLM's derived defaults (`max_cpu_loras` follows
    /// `max_loras`) applied.
    pub fn apply(&self, mut e: EngineConfig) -> EngineConfig {
        let set = |dst: &mut u32, src: Option<u32>| {
            if let Some(v) = src {
                *dst = v;
            }
        };
        set(&mut e.max_num_seqs, self.max_num_seqs);
        set(&mut e.max_num_batched_tokens, self.max_num_batched_tokens);
        set(&mut e.block_size, self.block_size);
        set(&mut e.max_model_len, self.max_model_len);
        set(&mut e.max_loras, self.max_loras);
        set(&mut e.max_lora_rank, self.max_lora_rank);
        e.max_cpu_loras = self.max_cpu_loras.unwrap_or(e.max_loras);
        if let Some(u) = self.gpu_memory_utilization {
            e.gpu_memory_utilization = u;
        }
        e.enable_lora |= self.enable_lora;
        if let Some(on) = self.enable_prefix_caching {
            e.enable_prefix_caching = on;
        }
        e.num_gpu_blocks_override = self.num_gpu_blocks_override.or(e.num_gpu_blocks_override);
        e.seed = self.seed.unwrap_or(e.seed);
        if let Some(o) = self.output_len {
            e.output_len = o;
        }
        e.kv_events |= self.kv_events;
        if let Some(a) = self.prefix_caching_hash_algo {
            e.prefix_caching_hash_algo = a;
        }
        if self.hash_seed.is_some() {
            e.hash_seed.clone_from(&self.hash_seed);
        }
        e
    }

    /// vLLM's defaults for `model` on `gpu`, with these flags applied.
    pub fn engine_config(&self, model: &ModelProfile, gpu: &GpuProfile) -> EngineConfig {
        self.apply(EngineConfig::vllm_defaults(model, gpu))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::Catalog;

    #[test]
    fn flags_override_defaults_and_cpu_loras_follow_max_loras() {
        let c = Catalog::builtin();
        let (m, g) = (
            c.model("llama-3-8b").unwrap_or_else(|e| panic!("{e}")),
            c.gpu("H200").unwrap_or_else(|e| panic!("{e}")),
        );
        let base = EngineConfig::vllm_defaults(m, g);
        assert_eq!(EngineSettings::default().engine_config(m, g), base);
        let s = EngineSettings {
            max_num_seqs: Some(7),
            max_loras: Some(4),
            enable_lora: true,
            enable_prefix_caching: Some(false),
            num_gpu_blocks_override: Some(100),
            ..EngineSettings::default()
        };
        let e = s.engine_config(m, g);
        assert_eq!((e.max_num_seqs, e.max_loras, e.max_cpu_loras), (7, 4, 4));
        assert!(e.enable_lora && !e.enable_prefix_caching);
        assert_eq!(e.num_gpu_blocks_override, Some(100));
        assert_eq!(e.max_num_batched_tokens, base.max_num_batched_tokens);
        let s = EngineSettings {
            max_loras: Some(4),
            max_cpu_loras: Some(8),
            ..EngineSettings::default()
        };
        assert_eq!(s.engine_config(m, g).max_cpu_loras, 8);
    }
}
