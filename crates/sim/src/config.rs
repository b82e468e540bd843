//! Engine settings with vLLM's names and defaults, validated once, and the KV capacity they imply.

use crate::hash::HashAlgo;
use crate::outlen::OutputLen;
use crate::profile::{GpuProfile, ModelProfile};

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

/// The knobs vLLM exposes as engine arguments, plus the simulator's own (`seed`, `output_len`).
#[derive(Clone, Debug, PartialEq)]
pub struct EngineConfig {
    /// Most requests in one batch (`--max-num-seqs`).
    pub max_num_seqs: u32,
    /// Token budget per step (`--max-num-batched-tokens`).
    pub max_num_batched_tokens: u32,
    /// Tokens per KV block (`--block-size`).
    pub block_size: u32,
    /// Fraction of GPU memory vLLM may use (`--gpu-memory-utilization`).
    pub gpu_memory_utilization: f64,
    /// Longest prompt + output (`--max-model-len`).
    pub max_model_len: u32,
    /// Automatic prefix caching (`--enable-prefix-caching`, on by default in V1).
    pub enable_prefix_caching: bool,
    /// Accept LoRA adapters (`--enable-lora`).
    pub enable_lora: bool,
    /// Distinct adapters in one batch (`--max-loras`).
    pub max_loras: u32,
    /// Largest adapter rank (`--max-lora-rank`); also the simulated rank of every adapter.
    pub max_lora_rank: u32,
    /// Adapters kept in host memory (`--max-cpu-loras`, defaults to `max_loras`).
    pub max_cpu_loras: u32,
    /// Chunk a prefill longer than this even when budget remains (0 = off).
    pub long_prefill_token_threshold: u32,
    /// Use exactly this many KV blocks instead of deriving them from memory.
    pub num_gpu_blocks_override: Option<u32>,
    /// Disk read bandwidth for adapters not in host memory, GB/s.
    pub lora_disk_gbps: f64,
    /// Natural output lengths when nothing forces them.
    pub output_len: OutputLen,
    /// Seed for every random draw.
    pub seed: u64,
    /// vLLM before V1 (0.5 and earlier) ran the API server and the engine loop on one event
    /// loop: no step starts while requests are still being taken in. V1 (the default, false)
    /// runs them in separate processes, so intake overlaps the steps.
    pub frontend_blocks_engine: bool,
    /// Record KV cache events for [`crate::Engine::take_kv_events`] (vLLM's
    /// `enable_kv_cache_events`); off by default so nothing is paid for them.
    pub kv_events: bool,
    /// Block hash algorithm (`--prefix-caching-hash-algo`).
    pub prefix_caching_hash_algo: HashAlgo,
    /// Seed of the first block's parent hash (vLLM reads `PYTHONHASHSEED`); None: vLLM's
    /// default (`"vllm-none-hash"` for sha256_cbor, a seed derived from `seed` for
    /// xxhash_cbor, where vLLM draws a random one).
    pub hash_seed: Option<String>,
}

/// Why an engine cannot start with the given settings; messages follow vLLM's where it has one.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ConfigError {
    /// A setting outside its domain.
    #[error("{0}")]
    Invalid(String),
    /// Weights and activations leave no room for KV.
    #[error(
        "No available memory for the cache blocks: weights {weights_gib:.2} GiB + activations {activation_gib:.2} GiB exceed {budget_gib:.2} GiB (gpu_memory_utilization x memory). Try increasing `gpu_memory_utilization` or using more GPUs."
    )]
    NoKvMemory {
        /// Weight bytes per GPU, GiB.
        weights_gib: f64,
        /// Activation and runtime estimate, GiB.
        activation_gib: f64,
        /// Usable memory, GiB.
        budget_gib: f64,
    },
    /// Not even one sequence of `max_model_len` fits.
    #[error(
        "The model's max seq len ({max_model_len}) is larger than the maximum number of tokens that can be stored in KV cache ({kv_tokens}). Try increasing `gpu_memory_utilization` or decreasing `max_model_len` when initializing the engine."
    )]
    ModelLenTooLong {
        /// Requested max model length.
        max_model_len: u32,
        /// KV capacity in tokens.
        kv_tokens: u64,
    },
}

impl EngineConfig {
    /// vLLM's API-server defaults for this model on this GPU class.
    pub fn vllm_defaults(model: &ModelProfile, gpu: &GpuProfile) -> Self {
        Self {
            max_num_seqs: gpu.default_max_num_seqs,
            max_num_batched_tokens: gpu.default_max_num_batched_tokens,
            block_size: 16,
            gpu_memory_utilization: 0.9,
            max_model_len: model.max_position_embeddings,
            enable_prefix_caching: true,
            enable_lora: false,
            max_loras: 1,
            max_lora_rank: 16,
            max_cpu_loras: 1,
            long_prefill_token_threshold: 0,
            num_gpu_blocks_override: None,
            lora_disk_gbps: 2.0,
            output_len: OutputLen::default(),
            seed: 0,
            frontend_blocks_engine: false,
            kv_events: false,
            prefix_caching_hash_algo: HashAlgo::Builtin,
            hash_seed: None,
        }
    }

    /// Checks every setting against the model, then derives the number of KV blocks.
    pub fn validate(&self, model: &ModelProfile, gpu: &GpuProfile) -> Result<u32, ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        if ![1, 8, 16, 32, 64, 128].contains(&self.block_size) {
            return invalid(format!(
                "block_size must be one of 1, 8, 16, 32, 64, 128, got {}",
                self.block_size
            ));
        }
        if !(self.gpu_memory_utilization > 0.0 && self.gpu_memory_utilization <= 1.0) {
            return invalid(format!(
                "gpu_memory_utilization must be in (0, 1], got {}",
                self.gpu_memory_utilization
            ));
        }
        if self.max_num_seqs == 0 || self.max_num_batched_tokens == 0 || self.max_model_len == 0 {
            return invalid(
                "max_num_seqs, max_num_batched_tokens and max_model_len must be positive".into(),
            );
        }
        if self.max_model_len > model.max_position_embeddings {
            return invalid(format!(
                "User-specified max_model_len ({}) is greater than the derived max_model_len (max_position_embeddings={} in model's config.json).",
                self.max_model_len, model.max_position_embeddings
            ));
        }
        if self.enable_lora && (self.max_loras == 0 || self.max_cpu_loras < self.max_loras) {
            return invalid(format!(
                "max_cpu_loras ({}) must be >= max_loras ({}) and max_loras must be positive",
                self.max_cpu_loras, self.max_loras
            ));
        }
        if self.enable_lora && ![1, 8, 16, 32, 64, 128, 256, 320, 512].contains(&self.max_lora_rank)
        {
            return invalid(format!(
                "max_lora_rank ({}) must be one of (1, 8, 16, 32, 64, 128, 256, 320, 512).",
                self.max_lora_rank
            ));
        }
        if self.lora_disk_gbps.is_nan() || self.lora_disk_gbps <= 0.0 {
            return invalid("lora_disk_gbps must be positive".into());
        }
        let blocks = match self.num_gpu_blocks_override {
            Some(0) => return invalid("num_gpu_blocks_override must be positive".into()),
            Some(n) => n,
            None => self.blocks_from_memory(model, gpu)?,
        };
        let kv_tokens = u64::from(blocks) * u64::from(self.block_size);
        if kv_tokens < u64::from(self.max_model_len) {
            return Err(ConfigError::ModelLenTooLong {
                max_model_len: self.max_model_len,
                kv_tokens,
            });
        }
        Ok(blocks)
    }

    /// Memory vLLM's profiling run would see as taken by activations and the runtime, bytes.
    pub fn activation_bytes(&self, model: &ModelProfile, gpu: &GpuProfile) -> f64 {
        let tp = f64::from(model.tensor_parallel_size);
        let w = f64::from(model.dtype_bytes);
        let per_token = (4.0 * f64::from(model.hidden_size)
            + 2.0 * f64::from(model.intermediate_size) / tp)
            * w;
        let logits = f64::from(self.max_num_seqs) * f64::from(model.vocab_size) * 4.0;
        f64::from(self.max_num_batched_tokens) * per_token + logits + gpu.runtime_overhead_gib * GIB
    }

    fn blocks_from_memory(
        &self,
        model: &ModelProfile,
        gpu: &GpuProfile,
    ) -> Result<u32, ConfigError> {
        let budget = gpu.memory_gib * GIB * self.gpu_memory_utilization;
        let weights = model.weight_bytes_per_gpu();
        let act = self.activation_bytes(model, gpu);
        let free = budget - weights - act;
        if free <= 0.0 {
            return Err(ConfigError::NoKvMemory {
                weights_gib: weights / GIB,
                activation_gib: act / GIB,
                budget_gib: budget / GIB,
            });
        }
        let per_block = model.kv_bytes_per_token_per_gpu() * f64::from(self.block_size);
        Ok((free / per_block).floor().min(f64::from(u32::MAX - 1)) as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::Catalog;

    fn setup(model: &str, gpu: &str) -> (ModelProfile, GpuProfile) {
        let c = Catalog::builtin();
        match (c.model(model), c.gpu(gpu)) {
            (Ok(m), Ok(g)) => (m.clone(), g.clone()),
            _ => panic!("missing profile"),
        }
    }

    #[test]
    fn kv_capacity_matches_the_reference_table() {
        // Reference (engine-and-scaling.md §5): Llama-3-8B KV ≈ 31k tokens on A10, 141k on
        // A100-40GB, 415k on A100-80GB and H100, 834k on H200; within 15 %.
        for (gpu, want) in [
            ("A10", 31e3),
            ("A100-40GB", 141e3),
            ("A100-80GB", 415e3),
            ("H100", 415e3),
            ("H200", 834e3),
        ] {
            let (m, g) = setup("llama-3-8b", gpu);
            let cfg = EngineConfig::vllm_defaults(&m, &g);
            let blocks = cfg
                .validate(&m, &g)
                .unwrap_or_else(|e| panic!("{gpu}: {e}"));
            let tokens = f64::from(blocks) * 16.0;
            assert!(
                (tokens / want - 1.0).abs() < 0.15,
                "{gpu}: {tokens} tokens vs {want}"
            );
        }
    }

    #[test]
    fn defaults_follow_the_gpu_class() {
        let (m, g) = setup("llama-3-8b", "H100");
        let cfg = EngineConfig::vllm_defaults(&m, &g);
        assert_eq!((cfg.max_num_batched_tokens, cfg.max_num_seqs), (8192, 1024));
        let (m, g) = setup("llama-3-8b", "A100-80GB");
        let cfg = EngineConfig::vllm_defaults(&m, &g);
        assert_eq!((cfg.max_num_batched_tokens, cfg.max_num_seqs), (2048, 256));
    }

    #[test]
    fn bad_settings_are_rejected_with_reasons() {
        let (m, g) = setup("llama-3-8b", "A100-80GB");
        let base = EngineConfig::vllm_defaults(&m, &g);
        let cases: Vec<(EngineConfig, &str)> = vec![
            (
                EngineConfig {
                    block_size: 17,
                    ..base.clone()
                },
                "block_size",
            ),
            (
                EngineConfig {
                    gpu_memory_utilization: 1.5,
                    ..base.clone()
                },
                "gpu_memory_utilization",
            ),
            (
                EngineConfig {
                    max_model_len: 100_000,
                    ..base.clone()
                },
                "max_position_embeddings",
            ),
            (
                EngineConfig {
                    gpu_memory_utilization: 0.1,
                    ..base.clone()
                },
                "No available memory",
            ),
            (
                EngineConfig {
                    num_gpu_blocks_override: Some(4),
                    ..base.clone()
                },
                "larger than the maximum number of tokens",
            ),
            (
                EngineConfig {
                    enable_lora: true,
                    max_lora_rank: 7,
                    ..base.clone()
                },
                "max_lora_rank",
            ),
        ];
        for (cfg, want) in cases {
            let err = cfg
                .validate(&m, &g)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(err.contains(want), "want '{want}' in '{err}'");
        }
        // 70B does not fit one A10 at all.
        let (m, g) = setup("llama-3-70b-tp4", "A10");
        let err = EngineConfig::vllm_defaults(&m, &g).validate(&m, &g);
        assert!(
            matches!(err, Err(ConfigError::NoKvMemory { .. })),
            "{err:?}"
        );
    }
}
