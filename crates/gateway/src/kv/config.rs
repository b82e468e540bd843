//! `kv_events:` in the gateway config: which models' engines publish KV events, with which
//! tokenizer the gateway reproduces their token ids, and where their sockets are.

use std::collections::HashSet;
use std::path::PathBuf;

use serde::Deserialize;

use crate::config::ConfigError;

/// Exact prefix routing from the engines' KV events (docs/gateway.md, "KV events").
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KvEventsConfig {
    /// Blocks one pod's exact index holds at most (a full index refuses new blocks and says
    /// so in `brix_gateway_kv_index_full_total`).
    pub capacity_blocks: usize,
    /// Milliseconds every wait on an engine's sockets may take (a replay's answer, a
    /// connect); the subscriber then retries with back-off.
    pub timeout_ms: u64,
    /// Models whose engines publish KV events.
    pub models: Vec<KvModelConfig>,
}

impl Default for KvEventsConfig {
    fn default() -> Self {
        Self {
            capacity_blocks: brix_router::DEFAULT_KV_CAPACITY,
            timeout_ms: 2000,
            models: Vec::new(),
        }
    }
}

/// One model whose engines publish KV events.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KvModelConfig {
    /// The model (as requests name it; its adapters use its tokenizer and index).
    pub name: String,
    /// Off: the model routes on the approximate index alone, as without this entry.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// The engine's Hugging Face tokenizer (a folder with `tokenizer.json` and the chat
    /// template, or the file): the gateway must produce the engine's token ids. None: the
    /// built-in `cl100k_base` with `brix sim`'s fixed chat template (`brix sim` without
    /// `--tokenizer`).
    #[serde(default)]
    pub tokenizer: Option<PathBuf>,
    /// The engines' PUB port on each pod's host (`--kv-events-config` `endpoint`), for pods
    /// whose discovery entry names no `kv_events` sockets of its own.
    #[serde(default)]
    pub port: Option<u16>,
    /// Their replay ROUTER port (`replay_endpoint`); None: no replay, a gap clears the index.
    #[serde(default)]
    pub replay_port: Option<u16>,
    /// The topic the engines publish under (vLLM's default: empty, every message).
    #[serde(default)]
    pub topic: String,
}

fn yes() -> bool {
    true
}

impl KvEventsConfig {
    /// The entry of `model`, when it is enabled.
    pub fn model(&self, model: &str) -> Option<&KvModelConfig> {
        self.models.iter().find(|m| m.name == model && m.enabled)
    }

    /// Refuses what cannot run: duplicate or empty names, a zero capacity or timeout.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(format!("kv_events: {m}")));
        if self.capacity_blocks == 0 || self.timeout_ms == 0 {
            return bad("capacity_blocks and timeout_ms must be positive".into());
        }
        let mut seen = HashSet::new();
        for m in &self.models {
            if m.name.trim().is_empty() {
                return bad("a model has an empty name".into());
            }
            if !seen.insert(m.name.as_str()) {
                return bad(format!("model '{}' is listed twice", m.name));
            }
            if m.port.is_some_and(|p| p == 0) || m.replay_port.is_some_and(|p| p == 0) {
                return bad(format!("model '{}': ports must be positive", m.name));
            }
        }
        Ok(())
    }
}
