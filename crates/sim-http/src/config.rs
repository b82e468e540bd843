//! What one `brix sim` process serves, as one typed struct checked once at start-up.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use brix_kvevents::KvEventsConfig;
use brix_sim::{ConfigError, EngineConfig, GpuProfile, LoraError, ModelProfile};

use crate::kv_pool::KvPoolConfig;

/// Everything a simulated vLLM server needs; built by `brix sim` from its flags (or by tests
/// directly) and validated once by [`crate::run`] before the port is served.
#[derive(Clone, Debug, PartialEq)]
pub struct SimConfig {
    /// The name clients put in `model` (`--served-model-name`; vLLM defaults it to the model
    /// path, here the profile's Hugging Face id).
    pub served_model_name: String,
    /// The model simulated; its `hf_id` is reported as the model `root`.
    pub model: ModelProfile,
    /// The GPU simulated.
    pub gpu: GpuProfile,
    /// vLLM's engine arguments.
    pub engine: EngineConfig,
    /// Adapters loaded before serving (`--lora-modules name=path`).
    pub lora_modules: Vec<LoraModule>,
    /// `--show-hidden-metrics-for-version`: when set, deprecated metrics such as
    /// `vllm:gpu_cache_usage_perc` are exposed again, as vLLM does.
    pub show_hidden_metrics_for_version: Option<String>,
    /// Failures to inject, for resilience tests of whatever sits in front.
    pub faults: FaultConfig,
    /// A Hugging Face `tokenizer.json` (or its folder) to count tokens with, as the model
    /// imitated does (`--tokenizer`); `None`: the built-in `cl100k_base`.
    pub tokenizer: Option<PathBuf>,
    /// `--kv-events-config`: publish the engine's KV cache events as vLLM does (None: off).
    pub kv_events: Option<KvEventsConfig>,
    /// `--kv-pool`: a KV cache pool below the prefix cache (None: none).
    pub kv_pool: Option<KvPoolConfig>,
}

impl SimConfig {
    /// vLLM's defaults for this model on this GPU, served under the model's Hugging Face id.
    pub fn new(model: ModelProfile, gpu: GpuProfile) -> Self {
        Self {
            served_model_name: model.hf_id.clone(),
            engine: EngineConfig::vllm_defaults(&model, &gpu),
            model,
            gpu,
            lora_modules: Vec::new(),
            show_hidden_metrics_for_version: None,
            faults: FaultConfig::default(),
            tokenizer: None,
            kv_events: None,
            kv_pool: None,
        }
    }

    /// Checks what the engine itself does not: the served name and the fault settings.
    pub(crate) fn validate(&self) -> Result<(), SimError> {
        if self.served_model_name.trim().is_empty() {
            return Err(SimError::EmptyServedName);
        }
        self.faults.validate()
    }
}

/// A LoRA adapter given on the command line as `name=path`, as vLLM's `--lora-modules`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoraModule {
    /// The name clients use as `model`.
    pub name: String,
    /// Where its weights would be read from (reported as the model `root`).
    pub path: String,
}

/// Why a `--lora-modules` entry could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("bad LoRA module '{0}': expected name=path")]
pub struct LoraModuleParseError(String);

impl FromStr for LoraModule {
    type Err = LoraModuleParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once('=') {
            Some((name, path)) if !name.is_empty() && !path.is_empty() => Ok(Self {
                name: name.to_string(),
                path: path.to_string(),
            }),
            _ => Err(LoraModuleParseError(s.to_string())),
        }
    }
}

/// Injected failures; every draw comes from the engine seed, so a run repeats exactly.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FaultConfig {
    /// Fraction of generation requests answered 500 with an error body (`--fail-rate`).
    pub fail_rate: f64,
    /// Fraction of generation requests that never answer (`--hang-rate`).
    pub hang_rate: f64,
    /// Cut every generation after this many tokens: a stream closes without `[DONE]`, a plain
    /// response drops the connection (`--die-mid-stream-after`).
    pub die_mid_stream_after: Option<u32>,
    /// How long the server reports itself unready after start (`--startup-delay`).
    pub startup_delay: Duration,
}

impl FaultConfig {
    fn validate(&self) -> Result<(), SimError> {
        let ok = |r: f64| (0.0..=1.0).contains(&r);
        if !ok(self.fail_rate) || !ok(self.hang_rate) || self.fail_rate + self.hang_rate > 1.0 {
            return Err(SimError::FaultRates {
                fail: self.fail_rate,
                hang: self.hang_rate,
            });
        }
        Ok(())
    }
}

/// Why the server could not start; each variant names the step that failed.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The engine settings do not work for this model and GPU.
    #[error(transparent)]
    Engine(#[from] ConfigError),
    /// `--served-model-name` is empty.
    #[error("--served-model-name must not be empty")]
    EmptyServedName,
    /// Fault rates outside [0, 1] or summing past 1.
    #[error(
        "--fail-rate ({fail}) and --hang-rate ({hang}) must each be in [0, 1] and sum to at most 1"
    )]
    FaultRates {
        /// The fail rate given.
        fail: f64,
        /// The hang rate given.
        hang: f64,
    },
    /// A `--lora-modules` adapter was refused by the engine.
    #[error("--lora-modules {name}: {source}")]
    LoraModule {
        /// The adapter's name.
        name: String,
        /// The engine's reason.
        source: LoraError,
    },
    /// The KV events publisher cannot start (a port to bind is taken).
    #[error("--kv-events-config: {0}")]
    KvEvents(String),
    /// The KV pool settings cannot work (the message names the flag).
    #[error("{0}")]
    KvPool(String),
    /// The tokenizer could not be loaded (or exported).
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// A metric could not be registered (a bug: names are fixed).
    #[error("registering metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// The address could not be bound.
    #[error("binding {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The OS error.
        source: io::Error,
    },
    /// The HTTP server stopped with an I/O error.
    #[error("serving HTTP: {0}")]
    Serve(io::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lora_modules_parse_as_vllm_writes_them() {
        let m: Result<LoraModule, _> = "sql=/adapters/sql".parse();
        assert_eq!(
            m,
            Ok(LoraModule {
                name: "sql".into(),
                path: "/adapters/sql".into()
            })
        );
        for bad in ["sql", "=p", "n=", ""] {
            assert!(bad.parse::<LoraModule>().is_err(), "{bad}");
        }
    }

    #[test]
    fn fault_rates_are_checked() {
        let f = |fail, hang| FaultConfig {
            fail_rate: fail,
            hang_rate: hang,
            ..FaultConfig::default()
        };
        assert!(f(0.5, 0.5).validate().is_ok());
        for (fail, hang) in [(-0.1, 0.0), (0.0, 1.1), (0.6, 0.6), (f64::NAN, 0.0)] {
            assert!(f(fail, hang).validate().is_err(), "{fail} {hang}");
        }
    }
}
