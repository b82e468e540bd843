//! Why a fetch failed, in one line that names the artifact (never a credential).

use std::io;

/// Why a fetch failed. `Display` is one line naming the artifact (without user info or query
/// string) and the reason; the controller shows it in the adapter's condition as is.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    /// The URL's scheme is known to `brix-api` but not fetched yet (`gcs://`, `tos://`).
    #[error(
        "{url}: {scheme}:// artifacts are not supported yet (use s3://, huggingface://, http(s):// or a local path)"
    )]
    Unsupported {
        /// The artifact URL, redacted.
        url: String,
        /// The scheme.
        scheme: &'static str,
    },
    /// The URL does not parse or names nothing fetchable.
    #[error("{url}: invalid artifact URL: {why}")]
    BadUrl {
        /// The artifact URL, redacted.
        url: String,
        /// What is wrong with it.
        why: String,
    },
    /// No response: connect, TLS, reset or timeout. Retryable.
    #[error("{url}: {what}: {why}")]
    Network {
        /// The artifact URL, redacted.
        url: String,
        /// The request (`GET adapter_config.json`).
        what: String,
        /// The cause chain, one line.
        why: String,
    },
    /// The server answered with an error status; retryable for 5xx, 408 and 429.
    #[error("{url}: {what}: HTTP {status}{detail}")]
    Status {
        /// The artifact URL, redacted.
        url: String,
        /// The request (`GET adapter_config.json`).
        what: String,
        /// The HTTP status code.
        status: u16,
        /// The reason phrase and, for S3, the error code (` Forbidden (SignatureDoesNotMatch)`).
        detail: String,
    },
    /// An `s3://` prefix with no objects under it.
    #[error("{url}: no objects under this prefix")]
    NoObjects {
        /// The artifact URL, redacted.
        url: String,
    },
    /// The artifact holds more than `Limits::max_bytes`.
    #[error("{url}: larger than the limit of {limit} bytes")]
    TooLarge {
        /// The artifact URL, redacted.
        url: String,
        /// `Limits::max_bytes`.
        limit: u64,
    },
    /// The files arrived but are not a usable adapter (config, rank, base model, weights, names).
    #[error("{url}: invalid adapter: {why}")]
    Invalid {
        /// The artifact URL, redacted.
        url: String,
        /// What failed verification.
        why: String,
    },
    /// Writing the cache failed (disk full, permissions). Retryable.
    #[error("{url}: {what}: {source}")]
    Io {
        /// The artifact URL, redacted.
        url: String,
        /// What was being done.
        what: String,
        /// The error.
        source: io::Error,
    },
}

impl ArtifactError {
    /// Whether trying again later may succeed: network errors, timeouts, 5xx/408/429 and cache
    /// I/O. A missing object, a refused credential or an invalid adapter stay as they are.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Network { .. } | Self::Io { .. } => true,
            Self::Status { status, .. } => *status >= 500 || *status == 408 || *status == 429,
            Self::Unsupported { .. }
            | Self::BadUrl { .. }
            | Self::NoObjects { .. }
            | Self::TooLarge { .. }
            | Self::Invalid { .. } => false,
        }
    }

    /// A fixed name for the kind of failure (a condition reason or a metric label).
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Unsupported { .. } => "Unsupported",
            Self::BadUrl { .. } => "BadURL",
            Self::Network { .. } => "NetworkError",
            Self::Status { .. } => "HTTPError",
            Self::NoObjects { .. } => "NoObjects",
            Self::TooLarge { .. } => "TooLarge",
            Self::Invalid { .. } => "InvalidAdapter",
            Self::Io { .. } => "CacheIOError",
        }
    }
}

/// The URL without user info, query string or fragment, safe to show and log.
pub(crate) fn redact(url: &str) -> String {
    let cut = url.find(['?', '#']).unwrap_or(url.len());
    let url = &url[..cut];
    let Some((scheme, rest)) = url.split_once("://") else {
        return one_line(url);
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    one_line(&format!("{scheme}://{host}{path}"))
}

/// `s` with line breaks and other control characters replaced, so a message stays one line.
pub(crate) fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_drops_user_info_and_query() {
        for (raw, shown) in [
            (
                "https://user:pw@host:8443/a/b?X-Amz-Signature=zz#f",
                "https://host:8443/a/b",
            ),
            ("s3://bucket/key/prefix", "s3://bucket/key/prefix"),
            ("huggingface://org/repo@v1", "huggingface://org/repo@v1"),
            ("http://tok@host", "http://host"),
            ("/var/lib/x\ny", "/var/lib/x y"),
        ] {
            assert_eq!(redact(raw), shown, "{raw}");
        }
    }

    #[test]
    fn retryable_follows_the_status() {
        let status = |status| ArtifactError::Status {
            url: "u".into(),
            what: "GET".into(),
            status,
            detail: String::new(),
        };
        assert!(status(503).is_retryable());
        assert!(status(429).is_retryable());
        assert!(!status(403).is_retryable());
        assert!(!status(404).is_retryable());
    }
}
