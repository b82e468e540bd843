//! Turning an `artifactURL` into a verified directory on this machine that engines can load:
//! `brix_artifacts::Store` (download once into a content-addressed cache, verify) with the
//! adapter's Secret over the environment, relative local paths taken from the fleet file's
//! directory.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use brix_artifacts::{Credentials, Expect, Limits, Store};

/// A verified adapter on local disk.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Fetched {
    /// What `lora_path` gets.
    pub dir: PathBuf,
    /// Content digest (`sha256-…`).
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

/// Fetches artifacts into the machine's cache.
#[derive(Clone)]
pub(crate) struct Fetcher {
    base_dir: PathBuf,
    store: Result<Store, String>,
    env: Credentials,
}

impl Fetcher {
    pub(crate) fn new(base_dir: PathBuf, cache_dir: PathBuf) -> Self {
        let store = Store::open(cache_dir.clone(), Limits::default())
            .map_err(|e| format!("adapter cache {}: {e}", cache_dir.display()));
        if let Err(e) = &store {
            tracing::error!(error = %e, "adapter cache");
        }
        Self {
            base_dir,
            store,
            env: Credentials::from_env(),
        }
    }

    /// Fetches and verifies `url`, with `secret`'s keys over the environment's; `base_models`
    /// are the names the adapter's `base_model_name_or_path` may have (the served name, the
    /// engines' roots).
    pub(crate) async fn fetch(
        &self,
        url: &str,
        secret: Option<&BTreeMap<String, String>>,
        max_rank: Option<u32>,
        base_models: Vec<String>,
    ) -> Result<Fetched, FetchError> {
        let store = self.store.as_ref().map_err(|e| FetchError {
            why: e.clone(),
            retryable: true,
        })?;
        let creds = match secret {
            Some(s) => Credentials::from_map(s).or(self.env.clone()),
            None => self.env.clone(),
        };
        let url = match brix_api::Artifact::parse(url) {
            Ok(brix_api::Artifact::Local(p)) if Path::new(p).is_relative() => {
                self.base_dir.join(p).to_string_lossy().into_owned()
            }
            _ => url.to_string(),
        };
        let expect = Expect {
            base_models,
            max_rank,
        };
        match store.fetch(&url, &creds, &expect).await {
            Ok(f) => Ok(Fetched {
                dir: f.dir,
                digest: f.digest,
                rank: f.rank,
            }),
            Err(e) => Err(FetchError {
                why: e.to_string(),
                retryable: e.is_retryable(),
            }),
        }
    }

    /// Removes cached artifacts no adapter needs.
    pub(crate) fn retain(&self, keep: &[&str]) {
        if let Ok(store) = &self.store {
            match store.retain(keep) {
                Ok(0) => {}
                Ok(n) => tracing::info!(removed = n, "adapter cache cleaned"),
                Err(e) => tracing::warn!(error = %e, "cleaning the adapter cache"),
            }
        }
    }
}
