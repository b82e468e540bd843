//! `huggingface://org/repo[@revision]`: every file of a model repository at a revision, from
//! the hub or a mirror (`HF_ENDPOINT`), with the hub's API and `resolve` layout.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::{Client, Method, RequestBuilder, Url};
use serde::Deserialize;

use crate::error::ArtifactError;
use crate::remote::{Listing, RemoteFile, read_capped};
use crate::verify::{FILES_MAX, safe_relative};
use crate::{Credentials, net};

/// Characters kept as they are in one path segment.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Largest API answer read (a repository listing).
const API_BODY_MAX: usize = 8 << 20;

/// One hub repository at one revision.
pub(crate) struct Hf {
    shown: String,
    endpoint: String,
    repo: String,
    revision: String,
    token: Option<String>,
}

/// The part of `GET /api/models/{repo}/revision/{rev}` used here.
#[derive(Deserialize)]
struct ModelInfo {
    #[serde(default)]
    sha: Option<String>,
    #[serde(default)]
    siblings: Vec<Sibling>,
}

#[derive(Deserialize)]
struct Sibling {
    rfilename: String,
}

impl Hf {
    /// `rest` is what follows `huggingface://`: `org/repo`, optionally `@revision`; else
    /// `HF_REVISION`, else `main`. The endpoint is `HF_ENDPOINT`, else the hub.
    pub(crate) fn new(shown: &str, rest: &str, creds: &Credentials) -> Result<Self, ArtifactError> {
        let bad = |why: &str| ArtifactError::BadUrl {
            url: shown.to_owned(),
            why: why.to_owned(),
        };
        let (repo, revision) = match rest.split_once('@') {
            Some((repo, rev)) if !rev.is_empty() => (repo, rev.to_owned()),
            Some(_) => return Err(bad("empty revision after '@'")),
            None => (rest, creds.get("HF_REVISION").unwrap_or("main").to_owned()),
        };
        let repo = repo.trim_matches('/');
        if repo.is_empty() || safe_relative(repo).is_err() || repo.split('/').count() > 2 {
            return Err(bad("expected huggingface://org/repo[@revision]"));
        }
        let endpoint = creds
            .get("HF_ENDPOINT")
            .unwrap_or("https://huggingface.co")
            .trim_end_matches('/')
            .to_owned();
        let url = Url::parse(&endpoint).map_err(|e| bad(&format!("HF_ENDPOINT: {e}")))?;
        net::check_scheme(shown, &url)?;
        Ok(Self {
            shown: shown.to_owned(),
            endpoint,
            repo: repo.to_owned(),
            revision,
            token: creds.get("HF_TOKEN").map(str::to_owned),
        })
    }

    /// What the cache remembers this artifact by: endpoint, repository and revision.
    pub(crate) fn identity(&self) -> String {
        format!("hf {} {} {}", self.endpoint, self.repo, self.revision)
    }

    /// A request with `Authorization: Bearer $HF_TOKEN` when a token is given.
    pub(crate) fn request(&self, client: &Client, method: Method, url: Url) -> RequestBuilder {
        let req = client.request(method, url);
        match &self.token {
            Some(token) => req.bearer_auth(token),
            None => req,
        }
    }

    fn url(&self, path: &str) -> Result<Url, ArtifactError> {
        Url::parse(&format!("{}/{path}", self.endpoint)).map_err(|e| ArtifactError::BadUrl {
            url: self.shown.clone(),
            why: e.to_string(),
        })
    }

    /// The repository's files at the revision; the version is the commit the hub resolved.
    pub(crate) async fn list(&self, client: &Client) -> Result<Listing, ArtifactError> {
        let rev = utf8_percent_encode(&self.revision, SEGMENT).to_string();
        let what = "GET model info";
        let api = self.url(&format!("api/models/{}/revision/{rev}", self.repo))?;
        let resp = self
            .request(client, Method::GET, api)
            .send()
            .await
            .map_err(|e| net::network(&self.shown, what, e))?;
        let resp = net::success(&self.shown, what, resp).await?;
        let body = read_capped(&self.shown, what, resp, API_BODY_MAX).await?;
        let info: ModelInfo =
            serde_json::from_slice(&body).map_err(|e| ArtifactError::Invalid {
                url: self.shown.clone(),
                why: format!("model info does not parse: {e}"),
            })?;
        if info.siblings.len() > FILES_MAX {
            return Err(self.invalid(format!("more than {FILES_MAX} files")));
        }
        let mut files = Vec::with_capacity(info.siblings.len());
        for sibling in info.siblings {
            let name = sibling.rfilename;
            safe_relative(&name).map_err(|why| self.invalid(why))?;
            let encoded: Vec<String> = name
                .split('/')
                .map(|s| utf8_percent_encode(s, SEGMENT).to_string())
                .collect();
            let url = self.url(&format!(
                "{}/resolve/{rev}/{}",
                self.repo,
                encoded.join("/")
            ))?;
            files.push(RemoteFile {
                name,
                url,
                fallback: None,
                size: None,
            });
        }
        if files.is_empty() {
            return Err(self.invalid("the repository lists no files".into()));
        }
        Ok(Listing {
            files,
            version: info
                .sha
                .filter(|s| !s.is_empty())
                .map(|s| format!("hf {s}")),
        })
    }

    fn invalid(&self, why: String) -> ArtifactError {
        ArtifactError::Invalid {
            url: self.shown.clone(),
            why,
        }
    }
}
