//! Every way a request can fail, and the one place each becomes vLLM's error reply.
//!
//! vLLM answers errors with `{"error": {"message", "type", "param", "code"}}` where `code` is
//! the HTTP status; the OpenAI SDK picks its exception class from the status (400 →
//! `BadRequestError`, 404 → `NotFoundError`, 500 → `InternalServerError`). Routes that do not
//! exist get FastAPI's `{"detail": "Not Found"}`, as vLLM's FastAPI app does.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use brix_sim::{AddError, LoraError};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::driver::DriverError;

/// Request parameters vLLM's sampling-parameter checks refuse.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum ParamError {
    /// `max_tokens` (or `max_completion_tokens`) below 1.
    #[error("max_tokens must be at least 1, got {0}.")]
    MaxTokens(i64),
    /// Negative `min_tokens`.
    #[error("min_tokens must be greater than or equal to 0, got {0}.")]
    MinTokens(i64),
    /// `n` below 1.
    #[error("n must be at least 1, got {0}.")]
    NTooSmall(i64),
    /// `n` above 1: the simulator generates one choice per request.
    #[error("n must be 1 for brix sim (one choice per request), got {0}.")]
    NUnsupported(i64),
    /// A batch of prompts in one completions request.
    #[error(
        "brix sim serves one prompt per request, got {0}; send each prompt as its own request."
    )]
    PromptBatch(usize),
    /// `stream_options` on a non-streaming request.
    #[error("Stream options can only be defined when `stream=True`.")]
    StreamOptionsWithoutStream,
    /// A token id the tokenizer does not know.
    #[error("Token id {0} is out of vocabulary")]
    TokenOutOfVocab(u32),
    /// `/tokenize` with neither `prompt` nor `messages`.
    #[error("Either `prompt` or `messages` must be provided.")]
    NothingToTokenize,
}

/// A request that could not be served, named for the stage that refused it.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApiError {
    /// The body could not be read (too large, broken connection).
    #[error("{}", .0.body_text())]
    Body(BytesRejection),
    /// The body is not valid JSON for this endpoint.
    #[error("{0}")]
    Json(serde_json::Error),
    /// A parameter outside its domain.
    #[error(transparent)]
    Param(#[from] ParamError),
    /// The engine refused the request (too long, empty, unknown adapter).
    #[error(transparent)]
    Add(AddError),
    /// A `model` that is neither the served model nor a loaded adapter.
    #[error("The model `{0}` does not exist.")]
    UnknownModel(String),
    /// `/v1/load_lora_adapter` without a name or a path.
    #[error("Both 'lora_name' and 'lora_path' must be provided.")]
    LoraFieldsMissing,
    /// `/v1/unload_lora_adapter` without a name.
    #[error("either 'lora_name' and 'lora_int_id' needs to be provided.")]
    LoraNameMissing,
    /// The adapter registry refused a load or unload.
    #[error(transparent)]
    Lora(#[from] LoraError),
    /// `--startup-delay` has not elapsed.
    #[error("The server is starting up; try again shortly.")]
    Starting,
    /// `--fail-rate` picked this request.
    #[error("Injected failure (brix sim --fail-rate).")]
    InjectedFailure,
    /// The engine task is gone.
    #[error("The engine loop has stopped.")]
    EngineDead,
    /// A response could not be encoded (a bug: every shape is plain data).
    #[error("encoding the response: {0}")]
    Encode(serde_json::Error),
    /// No route has this path.
    #[error("Not Found")]
    NoRoute,
    /// The path exists but not with this method.
    #[error("Method Not Allowed")]
    MethodNotAllowed,
}

impl From<DriverError> for ApiError {
    fn from(e: DriverError) -> Self {
        match e {
            DriverError::Rejected(AddError::UnknownLora(name)) => Self::UnknownModel(name),
            DriverError::Rejected(e) => Self::Add(e),
            DriverError::Gone => Self::EngineDead,
        }
    }
}

impl ApiError {
    /// The HTTP status and vLLM's error `type` for this failure.
    fn status_and_type(&self) -> (StatusCode, &'static str) {
        const BAD: (StatusCode, &str) = (StatusCode::BAD_REQUEST, "BadRequestError");
        const NOT_FOUND: (StatusCode, &str) = (StatusCode::NOT_FOUND, "NotFoundError");
        const USER: (StatusCode, &str) = (StatusCode::BAD_REQUEST, "InvalidUserInput");
        match self {
            Self::Body(r) if r.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                (r.status(), "PayloadTooLargeError")
            }
            Self::Body(_) | Self::Json(_) | Self::Param(_) | Self::Add(_) => BAD,
            Self::UnknownModel(_) | Self::NoRoute => NOT_FOUND,
            Self::LoraFieldsMissing | Self::LoraNameMissing => USER,
            Self::Lora(LoraError::AlreadyLoaded(_)) => USER,
            Self::Lora(LoraError::NotFound(_)) => NOT_FOUND,
            Self::Lora(LoraError::Disabled) => BAD,
            Self::Starting => (StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailableError"),
            Self::InjectedFailure | Self::EngineDead | Self::Encode(_) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "InternalServerError")
            }
            Self::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed"),
        }
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorInfo<'a>,
}

#[derive(Serialize)]
struct ErrorInfo<'a> {
    message: String,
    #[serde(rename = "type")]
    kind: &'a str,
    param: Option<&'a str>,
    code: u16,
}

#[derive(Serialize)]
struct Detail {
    detail: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, kind) = self.status_and_type();
        if matches!(self, Self::NoRoute | Self::MethodNotAllowed) {
            return (
                status,
                Json(Detail {
                    detail: self.to_string(),
                }),
            )
                .into_response();
        }
        if status.is_server_error() {
            tracing::warn!(%status, error = %self, "request failed");
        }
        let body = ErrorBody {
            error: ErrorInfo {
                message: self.to_string(),
                kind,
                param: None,
                code: status.as_u16(),
            },
        };
        (status, Json(body)).into_response()
    }
}

/// A JSON body whose every failure (unreadable, not JSON, wrong shape) is an [`ApiError`], so
/// axum's own rejections never reach the client in their plain-text form.
pub(crate) struct JsonBody<T>(pub(crate) T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(ApiError::Body)?;
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(ApiError::Json)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_failure_gets_vllms_status_and_type() {
        let cases: Vec<(ApiError, u16, &str)> = vec![
            (
                ApiError::Param(ParamError::MaxTokens(-1)),
                400,
                "BadRequestError",
            ),
            (ApiError::Add(AddError::EmptyPrompt), 400, "BadRequestError"),
            (ApiError::UnknownModel("x".into()), 404, "NotFoundError"),
            (ApiError::LoraFieldsMissing, 400, "InvalidUserInput"),
            (
                ApiError::Lora(LoraError::AlreadyLoaded("a".into())),
                400,
                "InvalidUserInput",
            ),
            (
                ApiError::Lora(LoraError::NotFound("a".into())),
                404,
                "NotFoundError",
            ),
            (ApiError::Starting, 503, "ServiceUnavailableError"),
            (ApiError::InjectedFailure, 500, "InternalServerError"),
            (ApiError::EngineDead, 500, "InternalServerError"),
        ];
        for (err, status, kind) in cases {
            let (s, k) = err.status_and_type();
            assert_eq!((s.as_u16(), k), (status, kind), "{err}");
        }
    }

    #[test]
    fn unknown_adapters_read_as_unknown_models() {
        let e = ApiError::from(DriverError::Rejected(AddError::UnknownLora("m".into())));
        assert_eq!(e.to_string(), "The model `m` does not exist.");
        assert_eq!(e.status_and_type().0, StatusCode::NOT_FOUND);
    }
}
