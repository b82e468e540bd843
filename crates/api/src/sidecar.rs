//! What runs beside an engine replica under `brix up`: the runtime sidecar (`runtime:`) and the
//! GPUs a command engine uses (`gpus:`, checked by diagnostics before it starts).

use serde::Deserialize;

use crate::error::{FieldError, fail};

/// `engine.{sim,command}.runtime`: a `brix runtime` sidecar in `brix up`'s process, one per
/// replica, so the adapter controller and the gateway use one interface whatever the engine.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RuntimeSpec {
    /// The engine's API dialect (LoRA paths differ): `vllm` (default) or `sglang`.
    #[serde(default)]
    pub engine: RuntimeEngine,
    /// The first replica's runtime port on 127.0.0.1 (replica n takes `port + n`); unset
    /// picks a free port per replica (kept across restarts).
    #[serde(default)]
    pub port: Option<u16>,
    /// How the runtime re-exports the engine's `/metrics`.
    #[serde(default)]
    pub metrics_mode: MetricsMode,
}

/// The engine behind a runtime.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RuntimeEngine {
    /// vLLM (and `brix sim`): `/v1/load_lora_adapter`.
    #[default]
    Vllm,
    /// SGLang: `/load_lora_adapter`.
    Sglang,
}

impl RuntimeEngine {
    /// The word the file and `brix runtime --engine` use.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Vllm => "vllm",
            Self::Sglang => "sglang",
        }
    }
}

/// AIBrix's `METRICS_ENABLE_TRANSFORMATION` / `RAW_PASSTHROUGH`, as one key.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum MetricsMode {
    /// Engine series renamed to the standard names (default).
    #[default]
    Transform,
    /// Renamed, and the engine's original series kept beside them.
    TransformKeepOriginal,
    /// The engine's text as it is.
    Passthrough,
}

impl RuntimeSpec {
    /// The runtime port of replica `index`: `port + index`, or 0 (pick one) when unset.
    pub fn port_for(&self, index: u32) -> Result<u16, FieldError> {
        match self.port {
            None | Some(0) => Ok(0),
            Some(p) => u16::try_from(u32::from(p) + index).map_err(|_| {
                FieldError::new(
                    "runtime.port",
                    format!("{p} + replica {index} is past 65535"),
                )
            }),
        }
    }
}

/// The GPU indices in `CUDA_VISIBLE_DEVICES` when it is a comma-separated list of integers
/// (UUIDs, `MIG-…` names or an empty value give None: nothing Brix can check by index).
pub fn cuda_visible_devices(value: &str) -> Option<Vec<u32>> {
    let value = value.trim();
    if value.is_empty() {
        return None;
    }
    value
        .split(',')
        .map(|s| s.trim().parse::<u32>().ok())
        .collect()
}

pub(crate) fn validate_gpus(gpus: &[u32]) -> Result<(), FieldError> {
    let mut seen = std::collections::BTreeSet::new();
    for g in gpus {
        if !seen.insert(g) {
            return fail("command.gpus", format!("GPU {g} is listed twice"));
        }
    }
    if gpus.len() > 64 {
        return fail("command.gpus", "more than 64 GPUs");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuda_visible_devices_is_a_list_of_indices_or_nothing() {
        assert_eq!(cuda_visible_devices("0"), Some(vec![0]));
        assert_eq!(cuda_visible_devices(" 1, 3 "), Some(vec![1, 3]));
        assert_eq!(cuda_visible_devices(""), None);
        assert_eq!(cuda_visible_devices("GPU-8e0c"), None);
        assert_eq!(cuda_visible_devices("0,MIG-1"), None);
    }

    #[test]
    fn runtime_ports_follow_the_replica_index() {
        let spec = |port| RuntimeSpec {
            engine: RuntimeEngine::Vllm,
            port,
            metrics_mode: MetricsMode::Transform,
        };
        assert_eq!(spec(None).port_for(3).ok(), Some(0));
        assert_eq!(spec(Some(9000)).port_for(2).ok(), Some(9002));
        assert!(spec(Some(65535)).port_for(1).is_err());
    }
}
