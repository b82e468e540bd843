//! GPU and model profiles: plain data files, so a user adds hardware or a model without code.
//!
//! The built-in profiles live in `crates/sim/profiles/{gpus,models}/*.toml` and are compiled
//! in; [`Catalog::load_dir`] adds or overrides entries from a directory of the same shape.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

/// One accelerator: the numbers the roofline needs, the fitted efficiencies, and its price.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GpuProfile {
    /// Canonical name used on the command line (`--gpu A100-80GB`).
    pub name: String,
    /// Memory the driver reports, in GiB (nvidia-smi total / 1024).
    pub memory_gib: f64,
    /// Peak HBM/GDDR bandwidth in GB/s (10^9 bytes).
    pub bandwidth_gbps: f64,
    /// Dense BF16 (or FP16 where BF16 is missing) tensor TFLOPS.
    pub tflops_16bit: f64,
    /// GPU-to-GPU bandwidth per direction for tensor-parallel all-reduce, GB/s.
    pub interconnect_gbps: f64,
    /// Host-to-device bandwidth, GB/s; prices LoRA swaps into GPU slots.
    pub pcie_gbps: f64,
    /// On-demand price in USD per GPU-hour (configuration, not fact: prices move).
    pub price_per_hour: f64,
    /// Where and when the price was read.
    pub price_source: String,
    /// Achieved fraction of peak bandwidth on weight/KV streaming (fitted).
    pub mem_efficiency: f64,
    /// Achieved fraction of peak FLOPS on large matmuls (fitted).
    pub compute_efficiency: f64,
    /// Fixed cost of one engine step in ms: scheduling, launch, sampling (fitted).
    pub step_overhead_ms: f64,
    /// Extra cost per sequence in the batch, in microseconds (input prep, sampling).
    pub per_seq_overhead_us: f64,
    /// Latency of one all-reduce in microseconds (only with tensor parallelism).
    pub allreduce_latency_us: f64,
    /// Memory vLLM cannot use for KV besides weights and activations (CUDA context, graphs), GiB.
    pub runtime_overhead_gib: f64,
    /// API-server CPU time per request before the scheduler sees it (HTTP, chat template,
    /// tokenization, hand-off to the engine core), in ms. One API-server process handles
    /// requests one at a time, so a burst reaches the scheduler as a ramp (fitted).
    #[serde(default = "default_request_intake_ms")]
    pub request_intake_ms: f64,
    /// vLLM's API-server default `max_num_batched_tokens` on this GPU class.
    pub default_max_num_batched_tokens: u32,
    /// vLLM's API-server default `max_num_seqs` on this GPU class.
    pub default_max_num_seqs: u32,
}

/// One model architecture at one tensor-parallel size.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ModelProfile {
    /// Profile name used on the command line (`--model-profile llama-3-8b`).
    pub name: String,
    /// The Hugging Face id this profile describes; reported as the model `root`.
    pub hf_id: String,
    /// Total parameters.
    pub params: f64,
    /// Transformer layers.
    pub num_layers: u32,
    /// Hidden size d.
    pub hidden_size: u32,
    /// Query heads.
    pub num_heads: u32,
    /// Key/value heads (GQA).
    pub num_kv_heads: u32,
    /// Per-head dimension.
    pub head_dim: u32,
    /// MLP intermediate size.
    pub intermediate_size: u32,
    /// Vocabulary size (prices the logits buffer in the activation estimate).
    pub vocab_size: u32,
    /// Longest context the model supports; the default `max_model_len`.
    pub max_position_embeddings: u32,
    /// Bytes per weight and per KV element (2 for BF16/FP16).
    pub dtype_bytes: u32,
    /// GPUs one replica spans.
    pub tensor_parallel_size: u32,
}

/// Why a profile could not be loaded or found.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// A profile file is not valid TOML for its kind.
    #[error("profile {file}: {source}")]
    Parse {
        /// File (or built-in name) that failed.
        file: String,
        /// The TOML error.
        source: toml::de::Error,
    },
    /// A profile directory could not be read.
    #[error("reading profiles from {dir}: {source}")]
    Io {
        /// The directory.
        dir: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// No profile of that kind has that name.
    #[error("unknown {kind} profile '{name}' (known: {known})")]
    Unknown {
        /// "gpu" or "model".
        kind: &'static str,
        /// The name asked for.
        name: String,
        /// Comma-joined known names.
        known: String,
    },
    /// A profile has a value that would break the model (zero, negative, NaN).
    #[error("profile {name}: {field} must be positive")]
    Invalid {
        /// Profile name.
        name: String,
        /// Offending field.
        field: &'static str,
    },
}

const BUILTIN_GPUS: &[(&str, &str)] = &[
    ("A10", include_str!("../profiles/gpus/a10.toml")),
    ("L4", include_str!("../profiles/gpus/l4.toml")),
    ("L20", include_str!("../profiles/gpus/l20.toml")),
    ("L40S", include_str!("../profiles/gpus/l40s.toml")),
    ("V100", include_str!("../profiles/gpus/v100.toml")),
    ("A100-40GB", include_str!("../profiles/gpus/a100-40gb.toml")),
    ("A100-80GB", include_str!("../profiles/gpus/a100-80gb.toml")),
    ("H100", include_str!("../profiles/gpus/h100.toml")),
    ("H200", include_str!("../profiles/gpus/h200.toml")),
];

const BUILTIN_MODELS: &[(&str, &str)] = &[
    (
        "llama-3-8b",
        include_str!("../profiles/models/llama-3-8b.toml"),
    ),
    (
        "llama-2-7b",
        include_str!("../profiles/models/llama-2-7b.toml"),
    ),
    (
        "qwen2.5-7b",
        include_str!("../profiles/models/qwen2.5-7b.toml"),
    ),
    (
        "llama-3-70b-tp4",
        include_str!("../profiles/models/llama-3-70b-tp4.toml"),
    ),
    (
        "llama-3-70b-tp8",
        include_str!("../profiles/models/llama-3-70b-tp8.toml"),
    ),
];

/// Every GPU and model profile known to this process, looked up case-insensitively.
#[derive(Clone, Debug, Default)]
pub struct Catalog {
    gpus: BTreeMap<String, GpuProfile>,
    models: BTreeMap<String, ModelProfile>,
}

impl Catalog {
    /// The profiles shipped with Brix.
    pub fn builtin() -> Self {
        let mut catalog = Self::default();
        for (file, text) in BUILTIN_GPUS {
            // Built-ins are checked by a unit test; a parse failure is a build bug.
            if let Ok(gpu) = parse_gpu(file, text) {
                catalog.gpus.insert(gpu.name.to_ascii_lowercase(), gpu);
            }
        }
        for (file, text) in BUILTIN_MODELS {
            if let Ok(model) = parse_model(file, text) {
                catalog
                    .models
                    .insert(model.name.to_ascii_lowercase(), model);
            }
        }
        catalog
    }

    /// Adds `dir/gpus/*.toml` and `dir/models/*.toml`, replacing built-ins of the same name.
    pub fn load_dir(&mut self, dir: &Path) -> Result<(), ProfileError> {
        for (sub, is_gpu) in [("gpus", true), ("models", false)] {
            let path = dir.join(sub);
            if !path.is_dir() {
                continue;
            }
            let io = |source| ProfileError::Io {
                dir: path.display().to_string(),
                source,
            };
            let mut files: Vec<_> = std::fs::read_dir(&path)
                .map_err(io)?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                .collect();
            files.sort();
            for file in files {
                let text = std::fs::read_to_string(&file).map_err(io)?;
                let name = file.display().to_string();
                if is_gpu {
                    let gpu = parse_gpu(&name, &text)?;
                    self.gpus.insert(gpu.name.to_ascii_lowercase(), gpu);
                } else {
                    let model = parse_model(&name, &text)?;
                    self.models.insert(model.name.to_ascii_lowercase(), model);
                }
            }
        }
        Ok(())
    }

    /// The GPU profile called `name` (case-insensitive).
    pub fn gpu(&self, name: &str) -> Result<&GpuProfile, ProfileError> {
        self.gpus
            .get(&name.to_ascii_lowercase())
            .ok_or_else(|| unknown("gpu", name, self.gpus.values().map(|g| g.name.as_str())))
    }

    /// The model profile called `name` (case-insensitive).
    pub fn model(&self, name: &str) -> Result<&ModelProfile, ProfileError> {
        self.models
            .get(&name.to_ascii_lowercase())
            .ok_or_else(|| unknown("model", name, self.models.values().map(|m| m.name.as_str())))
    }

    /// All GPU profiles, by name.
    pub fn gpus(&self) -> impl Iterator<Item = &GpuProfile> {
        self.gpus.values()
    }

    /// All model profiles, by name.
    pub fn models(&self) -> impl Iterator<Item = &ModelProfile> {
        self.models.values()
    }
}

fn unknown<'a>(
    kind: &'static str,
    name: &str,
    known: impl Iterator<Item = &'a str>,
) -> ProfileError {
    ProfileError::Unknown {
        kind,
        name: name.to_string(),
        known: known.collect::<Vec<_>>().join(", "),
    }
}

/// Prior for profiles that do not set `request_intake_ms`: between the two fitted hosts.
fn default_request_intake_ms() -> f64 {
    3.0
}

fn parse_gpu(file: &str, text: &str) -> Result<GpuProfile, ProfileError> {
    let gpu: GpuProfile = toml::from_str(text).map_err(|source| ProfileError::Parse {
        file: file.to_string(),
        source,
    })?;
    let positive = [
        ("memory_gib", gpu.memory_gib),
        ("bandwidth_gbps", gpu.bandwidth_gbps),
        ("tflops_16bit", gpu.tflops_16bit),
        ("interconnect_gbps", gpu.interconnect_gbps),
        ("pcie_gbps", gpu.pcie_gbps),
        ("mem_efficiency", gpu.mem_efficiency),
        ("compute_efficiency", gpu.compute_efficiency),
        (
            "default_max_num_batched_tokens",
            f64::from(gpu.default_max_num_batched_tokens),
        ),
        ("default_max_num_seqs", f64::from(gpu.default_max_num_seqs)),
    ];
    check_positive(&gpu.name, &positive)?;
    // Zero is allowed (an offline `LLM` run has no API server), negative or NaN is not.
    if !(gpu.request_intake_ms >= 0.0 && gpu.request_intake_ms.is_finite()) {
        return Err(ProfileError::Invalid {
            name: gpu.name.clone(),
            field: "request_intake_ms",
        });
    }
    Ok(gpu)
}

fn parse_model(file: &str, text: &str) -> Result<ModelProfile, ProfileError> {
    let model: ModelProfile = toml::from_str(text).map_err(|source| ProfileError::Parse {
        file: file.to_string(),
        source,
    })?;
    let positive = [
        ("params", model.params),
        ("num_layers", f64::from(model.num_layers)),
        ("hidden_size", f64::from(model.hidden_size)),
        ("num_heads", f64::from(model.num_heads)),
        ("num_kv_heads", f64::from(model.num_kv_heads)),
        ("head_dim", f64::from(model.head_dim)),
        (
            "max_position_embeddings",
            f64::from(model.max_position_embeddings),
        ),
        ("dtype_bytes", f64::from(model.dtype_bytes)),
        (
            "tensor_parallel_size",
            f64::from(model.tensor_parallel_size),
        ),
    ];
    check_positive(&model.name, &positive)?;
    Ok(model)
}

fn check_positive(name: &str, fields: &[(&'static str, f64)]) -> Result<(), ProfileError> {
    match fields.iter().find(|(_, v)| !(v.is_finite() && *v > 0.0)) {
        Some((field, _)) => Err(ProfileError::Invalid {
            name: name.to_string(),
            field,
        }),
        None => Ok(()),
    }
}

impl ModelProfile {
    /// KV bytes one token occupies on one GPU of the tensor-parallel group.
    pub fn kv_bytes_per_token_per_gpu(&self) -> f64 {
        let kv_heads_per_gpu =
            (f64::from(self.num_kv_heads) / f64::from(self.tensor_parallel_size)).max(1.0);
        2.0 * f64::from(self.num_layers)
            * kv_heads_per_gpu
            * f64::from(self.head_dim)
            * f64::from(self.dtype_bytes)
    }

    /// Weight bytes held by one GPU of the tensor-parallel group.
    pub fn weight_bytes_per_gpu(&self) -> f64 {
        self.params * f64::from(self.dtype_bytes) / f64::from(self.tensor_parallel_size)
    }

    /// Seconds from starting a replica to its first request: its GPU's weights
    /// ([`Self::weight_bytes_per_gpu`]) over `load_gbps` (10⁹ B/s; every GPU of a
    /// tensor-parallel group loads its shard in parallel) plus `engine_init_s`. The one
    /// cold-start formula: the autoscaler's estimate, the virtual-time simulator and a live
    /// sim replica's unready window all use it. Callers validate the inputs.
    pub fn cold_start_s(&self, load_gbps: f64, engine_init_s: f64) -> f64 {
        self.weight_bytes_per_gpu() / (load_gbps * 1e9) + engine_init_s
    }
}

/// Weights-load throughput (GB/s) a sim replica's cold start assumes by default: what
/// brix-loader measured streaming a 2 GiB safetensors file into host memory on the 2-core
/// development machine (bench/results/loader.md; docs/sim.md, "Cold start").
pub const DEFAULT_LOAD_GBPS: f64 = 1.0;

/// Seconds of engine start-up besides loading weights a sim replica's cold start assumes by
/// default (CUDA graphs, profiling run, server start; the autoscaler's
/// `DEFAULT_ENGINE_START_S` is the same).
pub const DEFAULT_ENGINE_INIT_S: f64 = 60.0;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_parses() {
        for (file, text) in BUILTIN_GPUS {
            parse_gpu(file, text).unwrap_or_else(|e| panic!("{e}"));
        }
        for (file, text) in BUILTIN_MODELS {
            parse_model(file, text).unwrap_or_else(|e| panic!("{e}"));
        }
        let c = Catalog::builtin();
        assert_eq!(c.gpus().count(), BUILTIN_GPUS.len());
        assert_eq!(c.models().count(), BUILTIN_MODELS.len());
    }

    #[test]
    fn lookup_is_case_insensitive_and_unknown_lists_known() {
        let c = Catalog::builtin();
        assert_eq!(
            c.gpu("a100-80gb").map(|g| g.name.as_str()).ok(),
            Some("A100-80GB")
        );
        let err = c
            .gpu("B300")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("unknown gpu profile 'B300'") && err.contains("H100"),
            "{err}"
        );
    }

    #[test]
    fn llama3_8b_kv_is_128_kib_per_token() {
        let c = Catalog::builtin();
        let m = c
            .model("llama-3-8b")
            .cloned()
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(m.kv_bytes_per_token_per_gpu(), 131_072.0);
    }

    #[test]
    fn load_dir_overrides_and_rejects_bad_values() {
        let dir = std::env::temp_dir().join(format!("brix-profiles-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("gpus")).unwrap_or_else(|e| panic!("{e}"));
        let mut text = BUILTIN_GPUS[0].1.replace("name = \"A10\"", "name = \"X1\"");
        std::fs::write(dir.join("gpus/x1.toml"), &text).unwrap_or_else(|e| panic!("{e}"));
        let mut c = Catalog::builtin();
        c.load_dir(&dir).unwrap_or_else(|e| panic!("{e}"));
        assert!(c.gpu("x1").is_ok());
        text = text.replace("mem_efficiency = ", "mem_efficiency = -");
        std::fs::write(dir.join("gpus/x1.toml"), &text).unwrap_or_else(|e| panic!("{e}"));
        let err = Catalog::builtin()
            .load_dir(&dir)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("mem_efficiency must be positive"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn request_intake_defaults_when_absent_and_must_not_be_negative() {
        let a10 = BUILTIN_GPUS[0].1;
        assert!(
            !a10.contains("request_intake_ms"),
            "A10 is meant to use the prior"
        );
        let gpu = parse_gpu("a10", a10).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(gpu.request_intake_ms, default_request_intake_ms());
        for (value, ok) in [("0.0", true), ("-1.0", false), ("nan", false)] {
            let text = format!("{a10}\nrequest_intake_ms = {value}\n");
            assert_eq!(parse_gpu("a10", &text).is_ok(), ok, "{value}");
        }
    }
}
