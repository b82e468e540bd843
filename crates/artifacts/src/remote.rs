//! The remote sources behind one interface: what files an artifact has, how to request one,
//! and whether a cached copy is still current.

use reqwest::{Client, Method, RequestBuilder, Response, Url};

use crate::error::ArtifactError;
use crate::hf::Hf;
use crate::http::Http;
use crate::s3::S3;

/// One file to download.
pub(crate) struct RemoteFile {
    /// Its name inside the artifact (`/`-separated, checked with `verify::safe_relative`).
    pub name: String,
    pub url: Url,
    /// Tried when `url` answers 404 (`adapter_model.bin` after `.safetensors`).
    pub fallback: Option<(String, Url)>,
    /// Size announced by the listing, when it has one.
    pub size: Option<u64>,
}

/// What an artifact holds right now.
pub(crate) struct Listing {
    pub files: Vec<RemoteFile>,
    /// A token that changes when the content does (S3 ETags, the hub's commit), when the
    /// source has one before downloading.
    pub version: Option<String>,
}

/// An `s3://`, `http(s)://` or `huggingface://` artifact.
pub(crate) enum Remote {
    S3(S3),
    Http(Http),
    Hf(Hf),
}

impl Remote {
    /// What the cache index remembers the artifact by (resolved endpoint included, so the
    /// same URL against another endpoint or revision is another artifact).
    pub(crate) fn identity(&self) -> String {
        match self {
            Self::S3(s) => s.identity(),
            Self::Http(h) => h.identity(),
            Self::Hf(h) => h.identity(),
        }
    }

    /// The files to fetch (one S3 listing or hub API call; nothing for http).
    pub(crate) async fn list(&self, client: &Client) -> Result<Listing, ArtifactError> {
        match self {
            Self::S3(s) => s.list(client).await,
            Self::Http(h) => Ok(h.list()),
            Self::Hf(h) => h.list(client).await,
        }
    }

    /// A request for one of the artifact's URLs, with its authentication.
    pub(crate) fn request(&self, client: &Client, method: Method, url: Url) -> RequestBuilder {
        match self {
            Self::S3(s) => s.request(client, method, url),
            Self::Http(_) => client.request(method, url),
            Self::Hf(h) => h.request(client, method, url),
        }
    }

    /// The version of a downloaded artifact when the listing had none: http's validators
    /// (`ETag`, else `Last-Modified`) of every file, if all have one.
    pub(crate) fn version_after(&self, validators: &[(String, Option<String>)]) -> Option<String> {
        match self {
            Self::Http(_) => validators_version(validators),
            Self::S3(_) | Self::Hf(_) => None,
        }
    }

    /// The current version of an http artifact whose files are `names` (HEAD each); `None`
    /// when a file has no validator.
    pub(crate) async fn head_version(
        &self,
        client: &Client,
        names: &[String],
    ) -> Result<Option<String>, ArtifactError> {
        let Self::Http(h) = self else {
            return Ok(None);
        };
        let mut validators = Vec::new();
        for name in names {
            let what = format!("HEAD {name}");
            let resp = client
                .head(h.file_url(name))
                .send()
                .await
                .map_err(|e| crate::net::network(h.shown(), &what, e))?;
            let resp = crate::net::success(h.shown(), &what, resp).await?;
            validators.push((name.clone(), validator(&resp)));
        }
        Ok(validators_version(&validators))
    }
}

/// `ETag`, else `Last-Modified`, of a response.
pub(crate) fn validator(resp: &Response) -> Option<String> {
    let headers = resp.headers();
    headers
        .get(reqwest::header::ETAG)
        .or_else(|| headers.get(reqwest::header::LAST_MODIFIED))
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

fn validators_version(validators: &[(String, Option<String>)]) -> Option<String> {
    let mut lines: Vec<String> = Vec::new();
    for (name, v) in validators {
        lines.push(format!("{name} {}", v.as_deref()?));
    }
    lines.sort_unstable();
    Some(format!("http {}", lines.join(" | ")))
}

/// The body of a small response (a listing, an API answer), refusing more than `cap` bytes.
pub(crate) async fn read_capped(
    shown: &str,
    what: &str,
    mut resp: Response,
    cap: usize,
) -> Result<Vec<u8>, ArtifactError> {
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| crate::net::network(shown, what, e))?
    {
        if body.len() + chunk.len() > cap {
            return Err(ArtifactError::Invalid {
                url: shown.to_owned(),
                why: format!("{what} answered more than {cap} bytes"),
            });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
