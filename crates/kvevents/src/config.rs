//! `--kv-events-config`: vLLM's `KVEventsConfig` JSON, with its keys and defaults.

use serde::Deserialize;

/// vLLM's KV events settings (`vllm/config/kv_events.py`).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct KvEventsConfig {
    /// Record and publish KV cache events.
    pub enable_kv_cache_events: bool,
    /// `"zmq"` or `"null"`; unset: `"zmq"` when events are enabled, else `"null"`.
    pub publisher: Option<String>,
    /// PUB endpoint: bound when it has `*` (or `::`, `ipc://`), connected otherwise.
    pub endpoint: String,
    /// ROUTER endpoint answering replay requests; None: no replay.
    pub replay_endpoint: Option<String>,
    /// Batches kept for replay.
    pub buffer_steps: usize,
    /// ZMQ high-water mark of the PUB socket (messages).
    pub hwm: usize,
    /// Batches queued for the publisher before new ones are dropped.
    pub max_queue_size: usize,
    /// Topic frame of every message; subscribers filter on its prefix.
    pub topic: String,
}

impl Default for KvEventsConfig {
    fn default() -> Self {
        Self {
            enable_kv_cache_events: false,
            publisher: None,
            endpoint: "tcp://*:5557".into(),
            replay_endpoint: None,
            buffer_steps: 10_000,
            hwm: 100_000,
            max_queue_size: 100_000,
            topic: String::new(),
        }
    }
}

/// Why a `--kv-events-config` value cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Not JSON of the right shape (unknown keys included).
    #[error("invalid --kv-events-config: {0}")]
    Json(#[from] serde_json::Error),
    /// A value outside its domain.
    #[error("invalid --kv-events-config: {0}")]
    Invalid(String),
}

impl KvEventsConfig {
    /// Parses and checks vLLM's JSON.
    pub fn from_json(s: &str) -> Result<Self, ConfigError> {
        let c: Self = serde_json::from_str(s)?;
        c.check()?;
        Ok(c)
    }

    /// The publisher in effect: vLLM's `__post_init__` default.
    pub fn publisher(&self) -> &str {
        match &self.publisher {
            Some(p) => p,
            None if self.enable_kv_cache_events => "zmq",
            None => "null",
        }
    }

    /// Whether a ZMQ publisher runs.
    pub fn publishes(&self) -> bool {
        self.enable_kv_cache_events && self.publisher() == "zmq"
    }

    fn check(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        if !matches!(self.publisher(), "zmq" | "null") {
            return invalid(format!(
                "publisher must be \"zmq\" or \"null\", got {:?}",
                self.publisher()
            ));
        }
        for e in std::iter::once(&self.endpoint).chain(&self.replay_endpoint) {
            if !e.starts_with("tcp://") {
                return invalid(format!("only tcp:// endpoints are supported, got {e:?}"));
            }
        }
        if self.buffer_steps == 0 || self.max_queue_size == 0 {
            return invalid("buffer_steps and max_queue_size must be positive".into());
        }
        Ok(())
    }
}

/// Whether vLLM binds (rather than connects) `endpoint`.
pub fn is_bind_endpoint(endpoint: &str) -> bool {
    endpoint.contains('*') || endpoint.contains("::")
}

/// `endpoint` with vLLM's wildcard host (`*`) spelled as an address a socket can bind.
pub fn bind_address(endpoint: &str) -> String {
    endpoint.replacen("tcp://*:", "tcp://0.0.0.0:", 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vllm_keys_and_defaults() {
        let c = KvEventsConfig::from_json(
            r#"{"enable_kv_cache_events": true, "endpoint": "tcp://*:5557",
                "replay_endpoint": "tcp://*:5558", "topic": "kv"}"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.publisher(), "zmq");
        assert!(c.publishes());
        assert_eq!(
            (c.buffer_steps, c.hwm, c.max_queue_size),
            (10_000, 100_000, 100_000)
        );
        assert!(
            !KvEventsConfig::from_json("{}")
                .map(|c| c.publishes())
                .unwrap_or(true)
        );
        let null = r#"{"enable_kv_cache_events": true, "publisher": "null"}"#;
        assert!(
            !KvEventsConfig::from_json(null)
                .map(|c| c.publishes())
                .unwrap_or(true)
        );
        for bad in [
            r#"{"enable_kv_cache_events": true, "publisher": "kafka"}"#,
            r#"{"endpont": "tcp://*:1"}"#,
            r#"{"endpoint": "ipc:///tmp/x"}"#,
            r#"{"buffer_steps": 0}"#,
            "[1]",
        ] {
            assert!(KvEventsConfig::from_json(bad).is_err(), "{bad}");
        }
        assert_eq!(bind_address("tcp://*:5557"), "tcp://0.0.0.0:5557");
        assert!(is_bind_endpoint("tcp://*:1") && !is_bind_endpoint("tcp://10.0.0.1:1"));
    }
}
