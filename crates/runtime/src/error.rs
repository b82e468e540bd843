//! Every failure the runtime answers, as an OpenAI error envelope with the status that says
//! whose fault it is (the client's 4xx, the engine's or the artifact source's 502/504).

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use brix_api::openai::{ErrorCode, ErrorEnvelope};
use brix_artifacts::ArtifactError;

/// Longest error text passed on from an engine or an artifact source (bytes).
pub(crate) const ERROR_TEXT: usize = 512;

/// A failed request: status, envelope `type` and one line of message.
#[derive(Clone, Debug)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) kind: &'static str,
    pub(crate) message: String,
    pub(crate) param: Option<&'static str>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            kind,
            message: cut(&message.into(), ERROR_TEXT),
            param: None,
        }
    }

    /// A malformed or invalid request body (400).
    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", message)
    }

    /// Blames one field of the body.
    pub(crate) fn param(mut self, name: &'static str) -> Self {
        self.param = Some(name);
        self
    }

    /// The engine could not be reached or answered garbage (502), or did not answer in time (504).
    pub(crate) fn engine_unreachable(what: &str, e: &reqwest::Error) -> Self {
        let status = match e.is_timeout() {
            true => StatusCode::GATEWAY_TIMEOUT,
            false => StatusCode::BAD_GATEWAY,
        };
        Self::new(
            status,
            "engine_unavailable",
            format!("engine {what}: {}", one_line(e)),
        )
    }

    /// Why an artifact could not be fetched, with the status that says whose fault it is.
    pub(crate) fn artifact(e: &ArtifactError) -> Self {
        let (status, kind) = match e {
            ArtifactError::BadUrl { .. } | ArtifactError::Unsupported { .. } => {
                (StatusCode::BAD_REQUEST, "invalid_request_error")
            }
            ArtifactError::NoObjects { .. } => (StatusCode::NOT_FOUND, "artifact_not_found"),
            ArtifactError::Status { status: 404, .. } => {
                (StatusCode::NOT_FOUND, "artifact_not_found")
            }
            ArtifactError::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "artifact_too_large"),
            ArtifactError::Invalid { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_artifact"),
            ArtifactError::Network { why, .. } if why.contains("timed out") => {
                (StatusCode::GATEWAY_TIMEOUT, "artifact_unavailable")
            }
            ArtifactError::Io { .. } => (StatusCode::INTERNAL_SERVER_ERROR, "internal_error"),
            _ => (StatusCode::BAD_GATEWAY, "artifact_unavailable"),
        };
        Self::new(status, kind, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorEnvelope::new(self.message, self.kind)
            .with_param(self.param)
            .with_code(Some(ErrorCode::Status(self.status.as_u16())))
            .to_json();
        (
            self.status,
            [(header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response()
    }
}

/// An error and its causes on one line.
pub(crate) fn one_line(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

/// `s` cut to at most `max` bytes on a character boundary, on one line.
pub(crate) fn cut(s: &str, max: usize) -> String {
    let s = s.trim();
    let mut out = if s.len() <= max {
        s.to_owned()
    } else {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}…", &s[..end])
    };
    out.retain(|c| c != '\r');
    out.replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cut_keeps_short_text_and_bounds_long_text_on_a_char_boundary() {
        assert_eq!(cut(" ok\n", 10), "ok");
        let long = "é".repeat(600);
        let c = cut(&long, ERROR_TEXT);
        assert!(c.len() <= ERROR_TEXT + "…".len(), "{}", c.len());
        assert!(c.ends_with('…'));
        assert_eq!(cut("a\nb", 10), "a b");
    }
}
