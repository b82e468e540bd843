//! Why a load failed, in one line naming the source (never a credential).

use std::io;

use brix_artifacts::ArtifactError;

/// Why a load failed. `Display` is one line naming the source (redacted) and the reason.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// `LoadOptions` that cannot work (a zero chunk size or concurrency).
    #[error("invalid load options: {0}")]
    Options(String),
    /// The header is malformed, inconsistent or over a limit; nothing was loaded.
    #[error("{src}: bad safetensors header: {why}")]
    Header {
        /// The source, redacted.
        src: String,
        /// What is wrong.
        why: String,
    },
    /// The server answered but not as a ranged read must: ignored `Range`, a `Content-Length`
    /// or `Content-Range` that does not match the request, a body shorter or longer than
    /// asked, a total size that disagrees with the header.
    #[error("{src}: {what}: {why}")]
    Protocol {
        /// The source, redacted.
        src: String,
        /// The request (`GET bytes=0-1023`).
        what: String,
        /// What was wrong.
        why: String,
    },
    /// A remote request failed: no connection, timeout (a stalled server), error status.
    #[error(transparent)]
    Remote(#[from] ArtifactError),
    /// Reading a local file failed (including a file shorter than its header says).
    #[error("{src}: {what}: {err}")]
    Io {
        /// The path.
        src: String,
        /// What was being read.
        what: String,
        /// The error.
        #[source]
        err: io::Error,
    },
    /// The destination refused the bytes (out of memory, device error).
    #[error("sink: {0}")]
    Sink(#[source] io::Error),
}

impl LoadError {
    /// Whether reading the same range again may succeed: network errors, timeouts (a stalled
    /// or reset connection, a body cut short), HTTP 5xx/408/429.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Remote(e) if e.is_retryable())
    }

    /// A fixed name for the kind of failure (a log field or metric label).
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Options(_) => "Options",
            Self::Header { .. } => "BadHeader",
            Self::Protocol { .. } => "Protocol",
            Self::Remote(e) => e.reason(),
            Self::Io { .. } => "IO",
            Self::Sink(_) => "Sink",
        }
    }
}
