//! The content-addressed cache: `<dir>/sha256-<hex>/` per artifact, `<dir>/index.json` for
//! url → digest, `<dir>/.tmp-*` while downloading.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use brix_api::Artifact;

use crate::error::{ArtifactError, redact};
use crate::hf::Hf;
use crate::http::Http;
use crate::index::{self, Entry, Index, TEMP_PREFIX};
use crate::remote::{Listing, Remote};
use crate::s3::S3;
use crate::verify::{self, Checked};
use crate::{Credentials, Expect, Fetched, Limits, download};

/// A fetched-once, verified cache of adapter artifacts in one directory, shared by every
/// adapter of the process (cheap to clone; concurrent fetches of one artifact download it once).
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
    s3_page_size: u32,
    files_only: bool,
}

struct Inner {
    dir: PathBuf,
    limits: Limits,
    client: reqwest::Client,
    index: Mutex<Index>,
    /// One lock per artifact being fetched, so a second fetch waits for the first and then
    /// finds it in the index.
    in_flight: Mutex<HashMap<String, Weak<tokio::sync::Mutex<()>>>>,
}

/// A process-wide counter for temporary names.
pub(crate) fn unique() -> String {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Store {
    /// Opens (creating) the cache in `dir` and removes what a crashed fetch left
    /// (`.tmp-*`): call it once per process, before any fetch.
    pub fn open(dir: PathBuf, limits: Limits) -> io::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            if entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
                match entry.file_type()?.is_dir() {
                    true => std::fs::remove_dir_all(entry.path())?,
                    false => std::fs::remove_file(entry.path())?,
                }
            }
        }
        let index = Index::load(&dir);
        Ok(Self {
            inner: Arc::new(Inner {
                client: crate::net::client(&limits)?,
                dir,
                limits,
                index: Mutex::new(index),
                in_flight: Mutex::new(HashMap::new()),
            }),
            s3_page_size: 1000,
            files_only: false,
        })
    }

    /// A store for whole models rather than adapters: a fetch checks only that the source
    /// holds at least one file (the download is still bounded, hashed and atomic), and
    /// [`Fetched::rank`] is 0. The runtime's `/v1/model/download` uses it.
    pub fn files_only(mut self) -> Self {
        self.files_only = true;
        self
    }

    /// Keys per ListObjectsV2 page (S3's maximum and default is 1,000; tests use fewer to
    /// exercise pagination).
    pub fn with_s3_page_size(mut self, keys: u32) -> Self {
        self.s3_page_size = keys.clamp(1, 1000);
        self
    }

    /// The cache directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The verified adapter at `url` (an `artifactURL`): from the cache when the source still
    /// has the same version (one listing or HEAD), else downloaded, verified against `expect`
    /// and stored. Local paths are verified in place.
    pub async fn fetch(
        &self,
        url: &str,
        creds: &Credentials,
        expect: &Expect,
    ) -> Result<Fetched, ArtifactError> {
        let shown = redact(url);
        let artifact = Artifact::parse(url).map_err(|why| ArtifactError::BadUrl {
            url: shown.clone(),
            why,
        })?;
        let remote = match artifact {
            Artifact::Local(path) => return self.fetch_local(&shown, path, expect).await,
            Artifact::Gcs(_) => return Err(unsupported(&shown, "gcs")),
            Artifact::Tos(_) => return Err(unsupported(&shown, "tos")),
            Artifact::S3(rest) => Remote::S3(S3::new(&shown, rest, creds, self.s3_page_size)?),
            Artifact::Http(url) => Remote::Http(Http::new(&shown, url)?),
            Artifact::HuggingFace(rest) => Remote::Hf(Hf::new(&shown, rest, creds)?),
        };
        let key = index::key(&remote.identity());
        let gate = self.gate(&key);
        let _one_at_a_time = gate.lock().await;

        let cached = lock(&self.inner.index)
            .get(&key)
            .filter(|e| self.inner.dir.join(&e.digest).is_dir())
            .cloned();
        let client = &self.inner.client;
        let listing = match (remote.list(client).await, &cached) {
            (Ok(listing), _) => listing,
            (Err(e), Some(entry)) if e.is_retryable() => {
                tracing::warn!(url = %shown, error = %e, "artifact source unreachable; using the cached copy");
                return self.open_cached(&shown, entry, expect).await;
            }
            (Err(e), _) => return Err(e),
        };
        if let Some(entry) = &cached {
            let current = match &listing.version {
                Some(v) => Some(v.clone()),
                None => match remote.head_version(client, &entry.files).await {
                    Ok(v) => v,
                    Err(e) if e.is_retryable() => {
                        tracing::warn!(url = %shown, error = %e, "artifact revalidation failed; using the cached copy");
                        return self.open_cached(&shown, entry, expect).await;
                    }
                    Err(e) => return Err(e),
                },
            };
            if current.is_some() && current == entry.version {
                return self.open_cached(&shown, entry, expect).await;
            }
        }
        self.download(&shown, &remote, listing, key, expect).await
    }

    /// Removes every cached artifact whose digest is not in `keep` (digests as in
    /// [`Fetched::digest`]); returns how many went. The caller keeps every adapter still
    /// wanted, including ones being fetched.
    pub fn retain(&self, keep: &[&str]) -> io::Result<usize> {
        let keeps = |digest: &str| keep.contains(&digest);
        let mut removed = 0;
        for entry in std::fs::read_dir(&self.inner.dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with("sha256-") && entry.file_type()?.is_dir() && !keeps(&name) {
                std::fs::remove_dir_all(entry.path())?;
                removed += 1;
            }
        }
        lock(&self.inner.index).retain(keeps)?;
        Ok(removed)
    }

    fn gate(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut map = lock(&self.inner.in_flight);
        map.retain(|_, w| w.strong_count() > 0);
        if let Some(gate) = map.get(key).and_then(Weak::upgrade) {
            return gate;
        }
        let gate = Arc::new(tokio::sync::Mutex::new(()));
        map.insert(key.to_owned(), Arc::downgrade(&gate));
        gate
    }

    /// A cached digest directory, re-checked against `expect` (no re-hashing).
    async fn open_cached(
        &self,
        shown: &str,
        entry: &Entry,
        expect: &Expect,
    ) -> Result<Fetched, ArtifactError> {
        let dir = self.inner.dir.join(&entry.digest);
        let (checked, bytes) =
            check_dir(shown, dir.clone(), expect.clone(), self.files_only).await?;
        Ok(fetched(dir, entry.digest.clone(), checked, bytes))
    }

    /// Streams every file of `listing` into a temporary directory, verifies it, and renames it
    /// to its digest; nothing is left behind on failure.
    async fn download(
        &self,
        shown: &str,
        remote: &Remote,
        listing: Listing,
        key: String,
        expect: &Expect,
    ) -> Result<Fetched, ArtifactError> {
        let inner = &self.inner;
        let tmp = download::TempDir::new(inner.dir.join(format!("{TEMP_PREFIX}{}", unique())))
            .map_err(|e| io_error(shown, "creating a temporary directory", e))?;
        let got = download::files(
            shown,
            &inner.client,
            remote,
            listing.files,
            inner.limits.max_bytes,
            tmp.path(),
        )
        .await?;
        let names: Vec<String> = got.hashes.iter().map(|(n, _)| n.clone()).collect();
        let (checked, bytes) = check_dir(
            shown,
            tmp.path().to_path_buf(),
            expect.clone(),
            self.files_only,
        )
        .await?;
        let mut hashes = got.hashes;
        let digest = verify::digest(&mut hashes);
        let dir = inner.dir.join(&digest);
        if dir.is_dir() {
            drop(tmp); // the same content is already here
        } else {
            tmp.persist(&dir)
                .map_err(|e| io_error(shown, "moving the download into the cache", e))?;
        }
        let version = listing
            .version
            .or_else(|| remote.version_after(&got.validators));
        let entry = Entry {
            url: shown.to_owned(),
            digest: digest.clone(),
            version,
            files: names,
        };
        lock(&inner.index)
            .insert(key, entry)
            .map_err(|e| io_error(shown, "writing the cache index", e))?;
        tracing::info!(url = %shown, %digest, bytes, "artifact downloaded");
        Ok(fetched(dir, digest, checked, bytes))
    }

    /// A local directory, verified where it is; its digest is re-computed only when a file's
    /// name, size or modification time changed.
    async fn fetch_local(
        &self,
        shown: &str,
        path: &str,
        expect: &Expect,
    ) -> Result<Fetched, ArtifactError> {
        let inner = Arc::clone(&self.inner);
        let url = shown.to_owned();
        let (shown, path, expect) = (shown.to_owned(), PathBuf::from(path), expect.clone());
        let files_only = self.files_only;
        tokio::task::spawn_blocking(move || local(&inner, &shown, &path, &expect, files_only))
            .await
            .map_err(|e| io_error(&url, "verifying", io::Error::other(e)))?
    }
}

fn local(
    inner: &Inner,
    shown: &str,
    path: &Path,
    expect: &Expect,
    files_only: bool,
) -> Result<Fetched, ArtifactError> {
    let invalid = |why: String| ArtifactError::Invalid {
        url: shown.to_owned(),
        why,
    };
    let dir = std::fs::canonicalize(path)
        .map_err(|e| invalid(format!("cannot open the directory: {e}")))?;
    if !dir.is_dir() {
        return Err(invalid("not a directory".into()));
    }
    let files = verify::list_files(&dir).map_err(|e| invalid(format!("cannot list: {e}")))?;
    let bytes: u64 = files.iter().map(|(_, size)| size).sum();
    if bytes > inner.limits.max_bytes {
        return Err(ArtifactError::TooLarge {
            url: shown.to_owned(),
            limit: inner.limits.max_bytes,
        });
    }
    let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    let checked = verify::check(&dir, &names, expect, files_only).map_err(invalid)?;
    let fingerprint = verify::fingerprint(&dir, &files).map_err(|e| invalid(e.to_string()))?;
    let key = index::key(&format!("local {}", dir.display()));
    let known = lock(&inner.index)
        .get(&key)
        .filter(|e| e.version.as_deref() == Some(fingerprint.as_str()))
        .map(|e| e.digest.clone());
    let digest = match known {
        Some(digest) => digest,
        None => {
            let mut hashes = Vec::with_capacity(files.len());
            for (name, _) in &files {
                let sha = verify::hash_file(&dir.join(name))
                    .map_err(|e| invalid(format!("{name}: {e}")))?;
                hashes.push((name.clone(), sha));
            }
            let digest = verify::digest(&mut hashes);
            let entry = Entry {
                url: shown.to_owned(),
                digest: digest.clone(),
                version: Some(fingerprint),
                files: Vec::new(),
            };
            lock(&inner.index)
                .insert(key, entry)
                .map_err(|e| io_error(shown, "writing the cache index", e))?;
            digest
        }
    };
    Ok(fetched(dir, digest, checked, bytes))
}

/// Lists and checks a directory on a blocking thread: (what it is, total bytes).
async fn check_dir(
    shown: &str,
    dir: PathBuf,
    expect: Expect,
    files_only: bool,
) -> Result<(Checked, u64), ArtifactError> {
    let shown = shown.to_owned();
    let url = shown.clone();
    tokio::task::spawn_blocking(move || {
        let invalid = |why: String| ArtifactError::Invalid {
            url: shown.clone(),
            why,
        };
        let files = verify::list_files(&dir).map_err(|e| invalid(format!("cannot list: {e}")))?;
        let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
        let checked = verify::check(&dir, &names, &expect, files_only).map_err(invalid)?;
        Ok((checked, files.iter().map(|(_, s)| s).sum()))
    })
    .await
    .map_err(|e| io_error(&url, "verifying", io::Error::other(e)))?
}

fn fetched(dir: PathBuf, digest: String, checked: Checked, bytes: u64) -> Fetched {
    Fetched {
        dir,
        digest,
        rank: checked.rank,
        base_model: checked.base_model,
        bytes,
    }
}

fn unsupported(shown: &str, scheme: &'static str) -> ArtifactError {
    ArtifactError::Unsupported {
        url: shown.to_owned(),
        scheme,
    }
}

fn io_error(shown: &str, what: &str, source: io::Error) -> ArtifactError {
    ArtifactError::Io {
        url: shown.to_owned(),
        what: what.to_owned(),
        source,
    }
}
