//! LoRA adapter artifacts: fetches an adapter named by a ModelAdapter's `artifactURL` (a local
//! path, `s3://`, `http(s)://` or `huggingface://`) once per machine into a content-addressed
//! cache (`<dir>/sha256-<hex>/`), verifies it (config, rank, base model, weights header, size)
//! and says where it is. The controller calls [`Store::fetch`]; nothing here loads an engine.
//!
//! Downloads stream to a temporary directory inside the cache, are verified there and renamed
//! into place, so a crash or a bad artifact never leaves a half-written digest directory.

mod creds;
mod download;
mod error;
mod hf;
mod http;
mod index;
mod net;
pub mod object;
mod remote;
mod s3;
mod sigv4;
mod store;
mod verify;

pub use creds::Credentials;
pub use error::ArtifactError;
pub use store::Store;

use std::path::PathBuf;
use std::time::Duration;

/// Bounds on one fetch, so a bad or hostile source cannot fill the disk or hang the controller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Most bytes one artifact may hold (all files together); downloading stops as soon as it
    /// is exceeded. Default 4 GiB.
    pub max_bytes: u64,
    /// Longest wait for a TCP (and TLS) connection. Default 10 s.
    pub connect_timeout: Duration,
    /// Longest wait for the next bytes of a response (not the whole download). Default 60 s.
    pub read_idle_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_bytes: 4 << 30,
            connect_timeout: Duration::from_secs(10),
            read_idle_timeout: Duration::from_secs(60),
        }
    }
}

/// What the adapter must be compatible with, checked on every fetch (also from the cache).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Expect {
    /// Base models the adapter may name in `base_model_name_or_path` (compared by last path
    /// segment, case-insensitively); empty accepts any.
    pub base_models: Vec<String>,
    /// Largest LoRA rank `r` the engines accept (vLLM's `--max-lora-rank`); `None` accepts any.
    pub max_rank: Option<u32>,
}

/// A verified adapter, ready to hand to an engine as `lora_path`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fetched {
    /// The directory holding `adapter_config.json` and the weights (the local path itself for
    /// local artifacts).
    pub dir: PathBuf,
    /// `sha256-<hex>` over the sorted file names and contents (see docs/lora.md, "Artifacts").
    pub digest: String,
    /// The LoRA rank `r` from `adapter_config.json`.
    pub rank: u32,
    /// `base_model_name_or_path` from `adapter_config.json`, when set and non-empty.
    pub base_model: Option<String>,
    /// Total size of the artifact's files.
    pub bytes: u64,
}
