//! Turning an `artifactURL` into a verified directory on this machine that engines can load.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A verified adapter on local disk.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Fetched {
    /// What `lora_path` gets.
    pub dir: PathBuf,
    /// Content digest.
    pub digest: String,
    /// `r` of its `adapter_config.json`.
    pub rank: u32,
}

/// Why an artifact could not be had.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct FetchError {
    /// One line, naming the artifact and why (never a secret).
    pub why: String,
    /// A network error may pass; a bad artifact will not.
    pub retryable: bool,
}

/// Fetches artifacts (relative local paths are taken from `base_dir`).
#[derive(Clone)]
pub(crate) struct Fetcher {
    base_dir: PathBuf,
}

impl Fetcher {
    pub(crate) fn new(base_dir: PathBuf, _cache_dir: PathBuf) -> Self {
        Self { base_dir }
    }

    /// Fetches and verifies `url`, with `secret`'s keys over the environment's.
    pub(crate) async fn fetch(
        &self,
        url: &str,
        _secret: Option<&BTreeMap<String, String>>,
        max_rank: Option<u32>,
    ) -> Result<Fetched, FetchError> {
        let bad = |why: String| FetchError {
            why,
            retryable: false,
        };
        match brix_api::Artifact::parse(url) {
            Ok(brix_api::Artifact::Local(p)) => {
                let dir = self.base_dir.join(p);
                let rank = verify_local(&dir).map_err(|e| bad(format!("{url}: {e}")))?;
                if let Some(max) = max_rank
                    && rank > max
                {
                    return Err(bad(format!(
                        "{url}: rank {rank} is above the engine's max_lora_rank {max}"
                    )));
                }
                Ok(Fetched {
                    dir,
                    digest: "local".into(),
                    rank,
                })
            }
            Ok(_) => Err(bad(format!("{url}: scheme not supported yet"))),
            Err(e) => Err(bad(e)),
        }
    }

    /// Removes cached artifacts no adapter needs.
    pub(crate) fn retain(&self, _keep: &[&str]) {}
}

fn verify_local(dir: &Path) -> Result<u32, String> {
    let config = std::fs::read(dir.join("adapter_config.json"))
        .map_err(|e| format!("adapter_config.json: {e}"))?;
    let v: serde_json::Value =
        serde_json::from_slice(&config).map_err(|e| format!("adapter_config.json: {e}"))?;
    v.get("r")
        .and_then(serde_json::Value::as_u64)
        .filter(|r| *r > 0)
        .and_then(|r| u32::try_from(r).ok())
        .ok_or_else(|| "adapter_config.json has no positive rank `r`".into())
}
