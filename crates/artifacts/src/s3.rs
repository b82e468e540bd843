//! `s3://bucket/prefix`: every object under the prefix, from AWS or any S3-compatible server
//! (`AWS_ENDPOINT_URL`, path-style), listed with ListObjectsV2 and fetched with signed GETs.

use jiff::Timestamp;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::{Client, RequestBuilder, Url};
use rusty_s3::actions::ListObjectsV2;
use rusty_s3::{Bucket, UrlStyle};
use sha2::{Digest as _, Sha256};

use crate::error::ArtifactError;
use crate::remote::{Listing, RemoteFile, read_capped};
use crate::sigv4::Signer;
use crate::verify::{FILES_MAX, hex, safe_relative};
use crate::{Credentials, net};

/// What AWS leaves unencoded in a query value: the unreserved characters.
const AWS_QUERY: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Largest ListObjectsV2 page body read (1,000 keys of 1 KiB names fit easily).
const LIST_BODY_MAX: usize = 8 << 20;

/// One `s3://` artifact and the credentials to read it.
pub(crate) struct S3 {
    shown: String,
    bucket: Bucket,
    prefix: String,
    key_id: Option<String>,
    secret: Option<String>,
    token: Option<String>,
    page_size: u32,
}

impl S3 {
    /// `rest` is what follows `s3://`. Without `AWS_ENDPOINT_URL` the bucket is AWS's
    /// virtual host in `AWS_REGION`.
    pub(crate) fn new(
        shown: &str,
        rest: &str,
        creds: &Credentials,
        page_size: u32,
    ) -> Result<Self, ArtifactError> {
        let bad = |why: String| ArtifactError::BadUrl {
            url: shown.to_owned(),
            why,
        };
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let prefix = prefix.trim_matches('/');
        let prefix = if prefix.is_empty() {
            String::new()
        } else {
            format!("{prefix}/")
        };
        let region = creds.region().to_owned();
        let (endpoint, style) = match creds.get("AWS_ENDPOINT_URL") {
            Some(e) => (e.to_owned(), UrlStyle::Path),
            None => (
                format!("https://s3.{region}.amazonaws.com"),
                UrlStyle::VirtualHost,
            ),
        };
        let endpoint = Url::parse(&endpoint).map_err(|e| bad(format!("AWS_ENDPOINT_URL: {e}")))?;
        net::check_scheme(shown, &endpoint)?;
        let bucket = Bucket::new(endpoint, style, bucket.to_owned(), region)
            .map_err(|e| bad(format!("bucket '{bucket}': {e}")))?;
        Ok(Self {
            shown: shown.to_owned(),
            bucket,
            prefix,
            key_id: creds.get("AWS_ACCESS_KEY_ID").map(str::to_owned),
            secret: creds.get("AWS_SECRET_ACCESS_KEY").map(str::to_owned),
            token: creds.get("AWS_SESSION_TOKEN").map(str::to_owned),
            page_size: page_size.clamp(1, 1000),
        })
    }

    /// What the cache remembers this artifact by: endpoint, bucket and prefix.
    pub(crate) fn identity(&self) -> String {
        format!("s3 {} {}", self.bucket.base_url(), self.prefix)
    }

    /// A GET (or HEAD) of `url`, signed when credentials are given (else anonymous, for
    /// public buckets).
    pub(crate) fn request(
        &self,
        client: &Client,
        method: reqwest::Method,
        url: Url,
    ) -> RequestBuilder {
        let mut req = client.request(method.clone(), url.clone());
        if let (Some(key_id), Some(secret)) = (&self.key_id, &self.secret) {
            let signer = Signer {
                key_id,
                secret,
                token: self.token.as_deref(),
                region: self.bucket.region(),
            };
            for (k, v) in signer.headers(method.as_str(), &url, Timestamp::now()) {
                req = req.header(k, v);
            }
        }
        req
    }

    /// Every object under the prefix (all pages); the version is a hash of the keys, ETags
    /// and sizes, so a re-list tells whether anything changed.
    pub(crate) async fn list(&self, client: &Client) -> Result<Listing, ArtifactError> {
        let mut token: Option<String> = None;
        let mut files = Vec::new();
        let mut version = Sha256::new();
        loop {
            // The prefix goes without its trailing '/' (keys of sibling prefixes such as
            // `r8x/` are skipped below): signed query values must encode '/', and some
            // S3-compatible servers (moto) verify them unencoded, so one '/' fewer keeps a
            // one-segment prefix working with both.
            let mut query = format!(
                "list-type=2&encoding-type=url&max-keys={}&prefix={}",
                self.page_size,
                utf8_percent_encode(self.prefix.trim_end_matches('/'), AWS_QUERY)
            );
            if let Some(t) = &token {
                query.push_str(&format!(
                    "&continuation-token={}",
                    utf8_percent_encode(t, AWS_QUERY)
                ));
            }
            let mut url = self.bucket.base_url().clone();
            url.set_query(Some(&query));
            let what = "ListObjectsV2";
            let resp = self
                .request(client, reqwest::Method::GET, url)
                .send()
                .await
                .map_err(|e| net::network(&self.shown, what, e))?;
            let resp = net::success(&self.shown, what, resp).await?;
            let body = read_capped(&self.shown, what, resp, LIST_BODY_MAX).await?;
            let page =
                ListObjectsV2::parse_response(&String::from_utf8_lossy(&body)).map_err(|e| {
                    ArtifactError::Invalid {
                        url: self.shown.clone(),
                        why: format!("ListObjectsV2 response does not parse: {e}"),
                    }
                })?;
            for object in page.contents {
                let Some(name) = object.key.strip_prefix(&self.prefix) else {
                    continue;
                };
                if name.is_empty() || name.ends_with('/') {
                    continue; // the prefix itself or a "directory" marker
                }
                safe_relative(name).map_err(|why| self.invalid(why))?;
                version.update(format!("{} {} {}\n", object.key, object.etag, object.size));
                let url = self
                    .bucket
                    .object_url(&object.key)
                    .map_err(|e| self.invalid(e.to_string()))?;
                files.push(RemoteFile {
                    name: name.to_owned(),
                    url,
                    fallback: None,
                    size: Some(object.size),
                });
                if files.len() > FILES_MAX {
                    return Err(self.invalid(format!("more than {FILES_MAX} objects")));
                }
            }
            token = page.next_continuation_token.filter(|t| !t.is_empty());
            if token.is_none() {
                break;
            }
        }
        if files.is_empty() {
            return Err(ArtifactError::NoObjects {
                url: self.shown.clone(),
            });
        }
        Ok(Listing {
            files,
            version: Some(format!("s3 {}", hex(&version.finalize()))),
        })
    }

    /// The URL of object `key` in this bucket (for ranged reads of one object).
    pub(crate) fn object_url(&self, key: &str) -> Result<Url, String> {
        self.bucket.object_url(key).map_err(|e| e.to_string())
    }

    fn invalid(&self, why: String) -> ArtifactError {
        ArtifactError::Invalid {
            url: self.shown.clone(),
            why,
        }
    }
}
