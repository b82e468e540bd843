//! The cache's memory of which artifact (by resolved source) is which digest, with the version
//! it had, in `<dir>/index.json`, written atomically.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::verify::hex;

/// The file name inside the cache directory.
pub(crate) const INDEX: &str = "index.json";
/// Prefix of everything temporary in the cache directory (removed by `Store::open`).
pub(crate) const TEMP_PREFIX: &str = ".tmp-";

/// What one artifact resolved to last time.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct Entry {
    /// The artifact URL, redacted (for people reading the file).
    pub url: String,
    /// `sha256-<hex>`.
    pub digest: String,
    /// The source's version then (S3 listing hash, hub commit, http validators, local
    /// fingerprint); `None` means "always re-check the content".
    #[serde(default)]
    pub version: Option<String>,
    /// File names (http revalidates each with a HEAD).
    #[serde(default)]
    pub files: Vec<String>,
}

#[derive(Default, Serialize, Deserialize)]
struct IndexFile {
    #[serde(default)]
    entries: BTreeMap<String, Entry>,
}

/// The index in memory, mirrored to disk on every change.
pub(crate) struct Index {
    path: PathBuf,
    entries: BTreeMap<String, Entry>,
}

/// The index key of a resolved source: its sha256, so the file never holds a URL's secrets.
pub(crate) fn key(identity: &str) -> String {
    hex(&Sha256::digest(identity.as_bytes()))
}

impl Index {
    /// Loads `<dir>/index.json`; a missing or unreadable file starts an empty index (the
    /// cost is one more download, never a wrong answer: digests are re-verified).
    pub(crate) fn load(dir: &Path) -> Self {
        let path = dir.join(INDEX);
        let entries = match std::fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice::<IndexFile>(&bytes) {
                Ok(file) => file.entries,
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "artifact index unreadable; starting empty");
                    BTreeMap::new()
                }
            },
            Err(_) => BTreeMap::new(),
        };
        Self { path, entries }
    }

    pub(crate) fn get(&self, key: &str) -> Option<&Entry> {
        self.entries.get(key)
    }

    /// Records `entry` and writes the file.
    pub(crate) fn insert(&mut self, key: String, entry: Entry) -> io::Result<()> {
        if self.entries.get(&key) == Some(&entry) {
            return Ok(());
        }
        self.entries.insert(key, entry);
        self.save()
    }

    /// Keeps only entries whose digest `keep` accepts; writes the file if anything went.
    pub(crate) fn retain(&mut self, keep: impl Fn(&str) -> bool) -> io::Result<()> {
        let before = self.entries.len();
        self.entries.retain(|_, e| keep(&e.digest));
        match self.entries.len() == before {
            true => Ok(()),
            false => self.save(),
        }
    }

    fn save(&self) -> io::Result<()> {
        let file = IndexFile {
            entries: self.entries.clone(),
        };
        let bytes = serde_json::to_vec_pretty(&file).map_err(io::Error::other)?;
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let tmp = dir.join(format!(
            "{TEMP_PREFIX}index-{}.json",
            crate::store::unique()
        ));
        std::fs::write(&tmp, bytes)?;
        std::fs::rename(&tmp, &self.path)
    }
}
