//! Downloading an artifact's files into a temporary directory that removes itself unless
//! persisted.

use std::io;
use std::path::{Path, PathBuf};

use reqwest::{Client, Method, StatusCode};

use crate::error::ArtifactError;
use crate::net;
use crate::remote::{Remote, RemoteFile, validator};
use crate::verify::safe_relative;

/// A directory removed on drop unless [`TempDir::persist`]ed.
pub(crate) struct TempDir {
    path: Option<PathBuf>,
}

impl TempDir {
    pub(crate) fn new(path: PathBuf) -> io::Result<Self> {
        std::fs::create_dir(&path)?;
        Ok(Self { path: Some(path) })
    }

    pub(crate) fn path(&self) -> &Path {
        self.path.as_deref().unwrap_or(Path::new(""))
    }

    /// Renames the directory to `to` (atomic on one filesystem) and keeps it.
    pub(crate) fn persist(mut self, to: &Path) -> io::Result<()> {
        let from = self.path.take().unwrap_or_default();
        match std::fs::rename(&from, to) {
            Ok(()) => Ok(()),
            Err(e) => {
                let _ = std::fs::remove_dir_all(&from);
                // Another process may have stored the same digest meanwhile.
                if to.is_dir() { Ok(()) } else { Err(e) }
            }
        }
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if let Some(path) = self.path.take() {
            let _ = std::fs::remove_dir_all(path);
        }
    }
}

/// What [`files`] stored.
pub(crate) struct Downloaded {
    /// (name, sha256 hex) per file.
    pub hashes: Vec<(String, String)>,
    /// (name, ETag or Last-Modified) per file.
    pub validators: Vec<(String, Option<String>)>,
}

/// Downloads `files` into `dir`, one after another, within `limit` bytes in all.
pub(crate) async fn files(
    shown: &str,
    client: &Client,
    remote: &Remote,
    files: Vec<RemoteFile>,
    limit: u64,
    dir: &Path,
) -> Result<Downloaded, ArtifactError> {
    let announced: u64 = files.iter().filter_map(|f| f.size).sum();
    if announced > limit {
        return Err(ArtifactError::TooLarge {
            url: shown.to_owned(),
            limit,
        });
    }
    let mut budget = limit;
    let mut out = Downloaded {
        hashes: Vec::with_capacity(files.len()),
        validators: Vec::with_capacity(files.len()),
    };
    for file in files {
        let (name, resp) = get(shown, client, remote, file).await?;
        let path = dir.join(safe_relative(&name).map_err(|why| ArtifactError::Invalid {
            url: shown.to_owned(),
            why,
        })?);
        let validator = validator(&resp);
        let saved = net::save(
            shown,
            &format!("GET {name}"),
            limit,
            &mut budget,
            resp,
            &path,
        )
        .await?;
        out.hashes.push((name.clone(), saved.sha256));
        out.validators.push((name, validator));
    }
    Ok(out)
}

/// GET one file, or its fallback when the first answers 404.
async fn get(
    shown: &str,
    client: &Client,
    remote: &Remote,
    file: RemoteFile,
) -> Result<(String, reqwest::Response), ArtifactError> {
    let what = format!("GET {}", file.name);
    let resp = remote
        .request(client, Method::GET, file.url)
        .send()
        .await
        .map_err(|e| net::network(shown, &what, e))?;
    if resp.status() == StatusCode::NOT_FOUND
        && let Some((name, url)) = file.fallback
    {
        let what = format!("GET {name}");
        let resp = remote
            .request(client, Method::GET, url)
            .send()
            .await
            .map_err(|e| net::network(shown, &what, e))?;
        return Ok((name, net::success(shown, &what, resp).await?));
    }
    Ok((file.name, net::success(shown, &what, resp).await?))
}
