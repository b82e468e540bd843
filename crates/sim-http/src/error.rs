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
use brix_api::openai::{ErrorCode, ErrorEnvelope};
use brix_sim::{AddError, LoraError};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::error::Category;

use crate::driver::DriverError;
use crate::pydantic::Pydantic;

/// Request parameters refused by checks that are not vLLM validation errors proper.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum ParamError {
    /// A token id the tokenizer does not know.
    #[error("Token id {0} is out of vocabulary")]
    TokenOutOfVocab(u32),
    /// `/tokenize` with neither `prompt` nor `messages`.
    #[error("Either `prompt` or `messages` must be provided.")]
    NothingToTokenize,
}

/// One of vLLM's `VLLMValidationError`s: its text, the parameter it names and the value. It
/// answers `BadRequestError` whether a body validator, serving or `SamplingParams` raised it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Invalid {
    pub(crate) message: String,
    pub(crate) param: Option<&'static str>,
    pub(crate) value: Option<String>,
}

impl Invalid {
    /// An error with this message and no parameter.
    pub(crate) fn serving(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            param: None,
            value: None,
        }
    }
    /// Names the parameter.
    pub(crate) fn param(mut self, param: &'static str) -> Self {
        self.param = Some(param);
        self
    }
    /// Names the value, as Python's `str()` prints it.
    pub(crate) fn value(mut self, value: impl std::fmt::Display) -> Self {
        self.value = Some(value.to_string());
        self
    }
}

impl std::fmt::Display for Invalid {
    /// `str(VLLMValidationError)`: the message and `(parameter=X, value=Y)` when known.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut extras = Vec::new();
        if let Some(p) = self.param {
            extras.push(format!("parameter={p}"));
        }
        if let Some(v) = &self.value {
            extras.push(format!("value={v}"));
        }
        match extras.is_empty() {
            true => f.write_str(&self.message),
            false => write!(f, "{} ({})", self.message, extras.join(", ")),
        }
    }
}

/// A request that could not be served, named for the stage that refused it.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApiError {
    /// The body could not be read (too large, broken connection).
    #[error("{}", .0.body_text())]
    Body(BytesRejection),
    /// The body is not valid JSON for this endpoint (a shape serde reports).
    #[error("{0}")]
    Json(serde_json::Error),
    /// The body is not JSON, lacks a field or has a wrongly typed one, as pydantic reports.
    #[error("{0}")]
    Pydantic(Pydantic),
    /// A parameter outside its domain (tokenizer routes).
    #[error(transparent)]
    Param(#[from] ParamError),
    /// One of vLLM's request validation errors.
    #[error("{0}")]
    Invalid(Invalid),
    /// The engine refused the request (a bug once the handlers checked it first).
    #[error(transparent)]
    Add(AddError),
    /// A `model` that is neither the served model nor a loaded adapter.
    #[error("The model `{model}` does not exist. Valid aliases: {served}.")]
    UnknownModel {
        /// What the client asked for.
        model: String,
        /// The served model name.
        served: String,
    },
    /// `/v1/load_lora_adapter` naming a local path that does not exist.
    #[error("Loading lora {name} failed: No adapter found for {path}")]
    LoraNotFound {
        /// The adapter's name.
        name: String,
        /// The path asked for.
        path: String,
    },
    /// `/v1/load_lora_adapter` naming the base model.
    #[error("The lora adapter '{0}' conflicts with a served base model.")]
    LoraNameConflict(String),
    /// `/v1/load_lora_adapter` without a name or a path.
    #[error("Both 'lora_name' and 'lora_path' must be provided.")]
    LoraFieldsMissing,
    /// `/v1/unload_lora_adapter` without a name.
    #[error("'lora_name' needs to be provided to unload a LoRA adapter.")]
    LoraNameMissing,
    /// The adapter registry refused a load or unload.
    #[error(transparent)]
    Lora(#[from] LoraError),
    /// The engine's worker refused to load the adapter (its rank), as vLLM relays it.
    #[error(
        "Call to add_lora method failed: Worker failed with error '{0}', please check the stack trace above for the root cause"
    )]
    LoraWorker(LoraError),
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
            DriverError::Rejected(AddError::EmptyPrompt) => {
                Self::Invalid(Invalid::serving("The decoder prompt cannot be empty"))
            }
            DriverError::Rejected(e) => Self::Add(e),
            DriverError::Gone => Self::EngineDead,
        }
    }
}

impl From<Invalid> for ApiError {
    fn from(e: Invalid) -> Self {
        Self::Invalid(e)
    }
}

impl ApiError {
    /// The parameter vLLM names in the error body.
    fn param(&self) -> Option<&str> {
        match self {
            Self::Invalid(i) => i.param,
            Self::Pydantic(p) => Some(p.loc()),
            Self::UnknownModel { .. } => Some("model"),
            _ => None,
        }
    }

    /// The HTTP status and vLLM's error `type` for this failure.
    fn status_and_type(&self) -> (StatusCode, &'static str) {
        const BAD: (StatusCode, &str) = (StatusCode::BAD_REQUEST, "BadRequestError");
        const NOT_FOUND: (StatusCode, &str) = (StatusCode::NOT_FOUND, "NotFoundError");
        const USER: (StatusCode, &str) = (StatusCode::BAD_REQUEST, "InvalidUserInput");
        match self {
            Self::Body(r) if r.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                (r.status(), "PayloadTooLargeError")
            }
            Self::Pydantic(_) => (StatusCode::BAD_REQUEST, "Bad Request"),
            Self::Body(_) | Self::Json(_) | Self::Param(_) | Self::Add(_) | Self::Invalid(_) => BAD,
            Self::UnknownModel { .. } | Self::NoRoute | Self::LoraNotFound { .. } => NOT_FOUND,
            Self::LoraFieldsMissing | Self::LoraNameMissing | Self::LoraNameConflict(_) => USER,
            Self::Lora(LoraError::AlreadyLoaded(_)) => USER,
            Self::Lora(LoraError::NotFound(_)) => NOT_FOUND,
            Self::Lora(LoraError::Disabled) => BAD,
            Self::Lora(LoraError::RankTooLarge { .. }) | Self::LoraWorker(_) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "InternalServerError")
            }
            Self::Starting => (StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailableError"),
            Self::InjectedFailure | Self::EngineDead | Self::Encode(_) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "InternalServerError")
            }
            Self::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed"),
        }
    }
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
        // As vLLM's `create_error_response`: file paths in the message become `<path>`.
        let body = ErrorEnvelope::new(crate::sanitize::sanitize_message(&self.to_string()), kind)
            .with_param(self.param())
            .with_code(Some(ErrorCode::Status(status.as_u16())));
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
            .map_err(|e| match e.classify() {
                Category::Syntax | Category::Eof => ApiError::Pydantic(Pydantic::json(&e)),
                Category::Data | Category::Io => ApiError::Json(e),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_failure_gets_vllms_status_and_type() {
        let cases: Vec<(ApiError, u16, &str)> = vec![
            (
                ApiError::Invalid(Invalid::serving("x").param("max_tokens")),
                400,
                "BadRequestError",
            ),
            (
                ApiError::Pydantic(Pydantic::missing("messages", 1)),
                400,
                "Bad Request",
            ),
            (
                ApiError::UnknownModel {
                    model: "x".into(),
                    served: "m".into(),
                },
                404,
                "NotFoundError",
            ),
            (
                ApiError::Lora(LoraError::RankTooLarge { rank: 16, max: 8 }),
                500,
                "InternalServerError",
            ),
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
    fn validation_errors_read_as_vllms() {
        let e = Invalid::serving("temperature must be non-negative, got -1.0.")
            .param("temperature")
            .value("-1.0");
        assert_eq!(
            e.to_string(),
            "temperature must be non-negative, got -1.0. (parameter=temperature, value=-1.0)"
        );
        let e = Invalid::serving("Stream options can only be defined when `stream=True`.")
            .param("stream_options");
        assert_eq!(
            e.to_string(),
            "Stream options can only be defined when `stream=True`. (parameter=stream_options)"
        );
    }
}
