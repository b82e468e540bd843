//! One remote object read by byte ranges, for readers that stream a file (brix-loader) instead
//! of caching an artifact: the same client, timeouts, S3 addressing, credentials, SigV4 signing
//! and error mapping as [`crate::Store::fetch`], so there is one S3 client in Brix.

use reqwest::{Client, Method, RequestBuilder, Response, Url};

use crate::error::{ArtifactError, redact};
use crate::s3::S3;
use crate::{Credentials, Limits, net};

/// The HTTP client remote reads share: connect timeout and per-read idle timeout from `limits`
/// (a stalled server is an error after `read_idle_timeout`, never a hang).
pub fn client(limits: &Limits) -> std::io::Result<Client> {
    net::client(limits)
}

/// One object: an `http(s)://` URL, or `s3://bucket/key` on AWS or any S3-compatible server
/// (`AWS_ENDPOINT_URL`), requested signed when credentials are given.
pub struct RemoteObject {
    shown: String,
    url: Url,
    s3: Option<S3>,
}

impl RemoteObject {
    /// Parses `url` (`http://`, `https://` or `s3://bucket/key`); `creds` are used for `s3://`
    /// only.
    pub fn new(url: &str, creds: &Credentials) -> Result<Self, ArtifactError> {
        let shown = redact(url);
        let bad = |why: String| ArtifactError::BadUrl {
            url: shown.clone(),
            why,
        };
        if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, key) = rest
                .split_once('/')
                .filter(|(b, k)| !b.is_empty() && !k.is_empty() && !k.ends_with('/'))
                .ok_or_else(|| bad("expected s3://bucket/key".into()))?;
            let s3 = S3::new(&shown, bucket, creds, 1)?;
            let url = s3.object_url(key).map_err(bad)?;
            return Ok(Self {
                shown,
                url,
                s3: Some(s3),
            });
        }
        let parsed = Url::parse(url).map_err(|e| bad(e.to_string()))?;
        net::check_scheme(&shown, &parsed)?;
        Ok(Self {
            shown,
            url: parsed,
            s3: None,
        })
    }

    /// The object's URL without user info or query, safe to show and log.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// A `method` request for the object, signed for S3 when credentials are given; add a
    /// `Range` header freely (SigV4 here does not sign it).
    pub fn request(&self, client: &Client, method: Method) -> RequestBuilder {
        match &self.s3 {
            Some(s3) => s3.request(client, method, self.url.clone()),
            None => client.request(method, self.url.clone()),
        }
    }
}

/// `resp` if its status is a success, else [`ArtifactError::Status`] naming the status (and
/// the S3 error code from the body, bounded).
pub async fn ensure_success(
    shown: &str,
    what: &str,
    resp: Response,
) -> Result<Response, ArtifactError> {
    net::success(shown, what, resp).await
}

/// A request that got no response, or whose body broke off or timed out, as one line.
pub fn network_error(shown: &str, what: &str, err: reqwest::Error) -> ArtifactError {
    net::network(shown, what, err)
}
