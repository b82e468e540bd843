//! The HTTP client every remote source shares: timeouts, error mapping, and streaming a response
//! body to a file under a byte budget while hashing it.

use std::error::Error as _;
use std::path::Path;

use reqwest::{Response, Url};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::error::{ArtifactError, one_line};
use crate::{Limits, verify};

/// Longest error body read to name an S3 error code.
const ERROR_BODY_MAX: usize = 4096;

/// The client with the connect and per-read timeouts of `limits` (redirects followed, at most
/// 10; reqwest drops `Authorization` when a redirect changes host).
pub(crate) fn client(limits: &Limits) -> std::io::Result<reqwest::Client> {
    reqwest::Client::builder()
        .connect_timeout(limits.connect_timeout)
        .read_timeout(limits.read_idle_timeout)
        .user_agent(concat!("brix-artifacts/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(std::io::Error::other)
}

/// Refuses an `https` URL when the `https` feature (TLS) is compiled out, with a clear reason
/// instead of reqwest's.
pub(crate) fn check_scheme(shown: &str, url: &Url) -> Result<(), ArtifactError> {
    match url.scheme() {
        "http" => Ok(()),
        "https" if cfg!(feature = "https") => Ok(()),
        "https" => Err(ArtifactError::BadUrl {
            url: shown.to_owned(),
            why: "https needs brix-artifacts built with its `https` feature".into(),
        }),
        other => Err(ArtifactError::BadUrl {
            url: shown.to_owned(),
            why: format!("endpoint scheme '{other}' is not http or https"),
        }),
    }
}

/// A request that got no response (or whose body broke off), as one line.
pub(crate) fn network(shown: &str, what: &str, err: reqwest::Error) -> ArtifactError {
    let timeout = err.is_timeout();
    let err = err.without_url();
    let mut why = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !why.contains(&text) {
            why.push_str(": ");
            why.push_str(&text);
        }
        source = cause.source();
    }
    if timeout && !why.contains("timed out") {
        why.push_str(" (timed out)");
    }
    ArtifactError::Network {
        url: shown.to_owned(),
        what: what.to_owned(),
        why: one_line(&why),
    }
}

/// `resp` if its status is a success, else [`ArtifactError::Status`] naming it (and the S3
/// error code from the body, when there is one).
pub(crate) async fn success(
    shown: &str,
    what: &str,
    mut resp: Response,
) -> Result<Response, ArtifactError> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let mut body = Vec::new();
    while body.len() < ERROR_BODY_MAX {
        match resp.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            _ => break,
        }
    }
    let body = String::from_utf8_lossy(&body);
    let code = s3_error_code(&body)
        .map(|c| format!(" ({c})"))
        .unwrap_or_default();
    let reason = status.canonical_reason().unwrap_or("");
    Err(ArtifactError::Status {
        url: shown.to_owned(),
        what: what.to_owned(),
        status: status.as_u16(),
        detail: one_line(&format!(" {reason}{code}")),
    })
}

/// `SignatureDoesNotMatch` from `<Error><Code>SignatureDoesNotMatch</Code>...`, if short and
/// plain (a bounded label, not arbitrary server text).
fn s3_error_code(body: &str) -> Option<&str> {
    let start = body.find("<Code>")? + "<Code>".len();
    let len = body[start..].find("</Code>")?;
    let code = &body[start..start + len];
    (code.len() <= 64 && code.chars().all(|c| c.is_ascii_alphanumeric() || c == '.'))
        .then_some(code)
}

/// A file written by [`save`].
pub(crate) struct Saved {
    /// Lowercase hex sha256 of the contents.
    pub sha256: String,
}

/// Streams `resp`'s body to `path`, hashing it; fails as soon as the body would take the
/// artifact past `budget` bytes (counting down what is left), without buffering the file.
pub(crate) async fn save(
    shown: &str,
    what: &str,
    limit: u64,
    budget: &mut u64,
    mut resp: Response,
    path: &Path,
) -> Result<Saved, ArtifactError> {
    let too_large = || ArtifactError::TooLarge {
        url: shown.to_owned(),
        limit,
    };
    if resp.content_length().is_some_and(|n| n > *budget) {
        return Err(too_large());
    }
    let io = |source| ArtifactError::Io {
        url: shown.to_owned(),
        what: format!("writing {}", path.display()),
        source,
    };
    if let Some(parent) = path.parent() {
        tokio::fs::create_dir_all(parent).await.map_err(io)?;
    }
    let mut file = tokio::fs::File::create(path).await.map_err(io)?;
    let mut hash = Sha256::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| network(shown, what, e))? {
        let n = chunk.len() as u64;
        if n > *budget {
            return Err(too_large());
        }
        *budget -= n;
        hash.update(&chunk);
        file.write_all(&chunk).await.map_err(io)?;
    }
    file.sync_all().await.map_err(io)?;
    Ok(Saved {
        sha256: verify::hex(&hash.finalize()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_codes_are_bounded() {
        let body = "<?xml?><Error><Code>SignatureDoesNotMatch</Code><Message>x</Message></Error>";
        assert_eq!(s3_error_code(body), Some("SignatureDoesNotMatch"));
        assert_eq!(s3_error_code("<Code>a b <script></Code>"), None);
        assert_eq!(s3_error_code("{\"error\":\"x\"}"), None);
    }
}
