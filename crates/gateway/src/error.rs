//! The one place a failure becomes an HTTP answer: the OpenAI error envelope
//! `{"error":{"message","type","param","code"}}` with AIBrix's statuses, codes and debug
//! headers. Each variant is named for the stage that failed and doubles as a metric label.

use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use brix_admission::Reject;
use brix_api::openai::{AnthropicError, ErrorEnvelope};
use brix_router::StrategyParseError;

use crate::endpoint::Dialect;
use crate::parse::ParseError;

/// Longest client-chosen text (a model name) echoed into a message or header.
pub const MAX_ECHO_BYTES: usize = 128;

/// `s` cut to [`MAX_ECHO_BYTES`] on a character boundary, marked with `…` when cut: a client
/// must not be able to make the gateway echo unbounded text.
pub fn bounded(s: &str) -> std::borrow::Cow<'_, str> {
    if s.len() <= MAX_ECHO_BYTES {
        return s.into();
    }
    let mut end = MAX_ECHO_BYTES;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end]).into()
}

/// Why a request for an adapter that exists found no pod to serve it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum AdapterWhy {
    /// No ready pod holds it (and no placement is in progress, or it ended without one).
    NotPlaced,
    /// Its placement is in progress, but `adapters.max_held` requests already wait.
    HeldFull(u32),
    /// Its placement is in progress, but no pod held it within `adapters.wait_s` seconds.
    WaitedTooLong(f64),
}

impl std::fmt::Display for AdapterWhy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotPlaced => f.write_str("no ready pod holds it"),
            Self::HeldFull(n) => write!(
                f,
                "it is being placed, and {n} requests already wait for adapters"
            ),
            Self::WaitedTooLong(s) => {
                write!(f, "it is being placed, but no pod held it within {s} s")
            }
        }
    }
}

/// Why the gateway answered instead of an engine.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// No such route.
    #[error("unknown request path {0}")]
    UnknownPath(String),
    /// A known path with the wrong method.
    #[error("method {0} is not allowed on this path")]
    MethodNotAllowed(String),
    /// The body is larger than `proxy.max_body_bytes`.
    #[error("request body exceeds {0} bytes")]
    BodyTooLarge(usize),
    /// The body could not be read from the client.
    #[error("reading the request body: {0}")]
    BodyRead(String),
    /// The body is not a valid request for its path.
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// Refused by authentication or rate limits.
    #[error("{0}")]
    Admission(Reject),
    /// The `routing-strategy` header does not parse.
    #[error("incorrect routing strategy: {0}")]
    Strategy(#[from] StrategyParseError),
    /// No pod serves this model or adapter (the name is kept bounded, see [`bounded`]).
    #[error("The model `{}` does not exist.", bounded(.0))]
    ModelNotFound(String),
    /// The adapter exists, but no ready pod holds it (see [`AdapterWhy`]).
    #[error("adapter '{}' has no ready replica: {}", bounded(.0), .1)]
    NoAdapterReplica(String, AdapterWhy),
    /// The model exists but no pod is ready.
    #[error("no ready pod serves model {}", bounded(.0))]
    NoReadyPod(String),
    /// The model may scale from zero, but as many requests as the activator holds for it
    /// (`activator.max_held`) are already waiting.
    #[error("no ready pod serves model {}, and {} requests already wait for one to start", bounded(.0), .1)]
    ActivatorFull(String, u32),
    /// The request was held for a replica of a model scaling from zero, and none became ready
    /// within `activator.timeout_s`.
    #[error("no replica of model {} became ready within {} s", bounded(.0), .1)]
    ActivationTimeout(String, f64),
    /// Every pod tried refused the connection or failed before answering.
    #[error("upstream {pod} failed: {reason}")]
    Upstream {
        /// The last pod tried.
        pod: String,
        /// What went wrong.
        reason: String,
    },
    /// The pod did not answer within `proxy.response_timeout_s`.
    #[error("upstream {0} did not answer in time")]
    UpstreamTimeout(String),
}

impl GatewayError {
    /// Metric label.
    pub fn as_label(&self) -> &'static str {
        match self {
            Self::UnknownPath(_) => "unknown_path",
            Self::MethodNotAllowed(_) => "method_not_allowed",
            Self::BodyTooLarge(_) => "body_too_large",
            Self::BodyRead(_) => "body_read",
            Self::Parse(_) => "invalid_body",
            Self::Admission(r) => r.as_label(),
            Self::Strategy(_) => "bad_strategy",
            Self::ModelNotFound(_) => "model_not_found",
            Self::NoReadyPod(_) => "no_ready_pod",
            Self::NoAdapterReplica(_, AdapterWhy::NotPlaced) => "adapter_not_placed",
            Self::NoAdapterReplica(_, AdapterWhy::HeldFull(_)) => "adapter_held_full",
            Self::NoAdapterReplica(_, AdapterWhy::WaitedTooLong(_)) => "adapter_wait_timeout",
            Self::ActivatorFull(..) => "activator_full",
            Self::ActivationTimeout(..) => "activation_timeout",
            Self::Upstream { .. } => "upstream_failed",
            Self::UpstreamTimeout(_) => "upstream_timeout",
        }
    }

    /// HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::UnknownPath(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::BodyTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BodyRead(_) | Self::Parse(_) | Self::Strategy(_) | Self::ModelNotFound(_) => {
                StatusCode::BAD_REQUEST
            }
            Self::Admission(r) => {
                StatusCode::from_u16(r.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
            }
            Self::NoReadyPod(_)
            | Self::NoAdapterReplica(..)
            | Self::ActivatorFull(..)
            | Self::ActivationTimeout(..) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Upstream { .. } => StatusCode::BAD_GATEWAY,
            Self::UpstreamTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    fn code(&self) -> Option<&'static str> {
        Some(match self {
            Self::UnknownPath(_) => "unknown_url",
            Self::BodyTooLarge(_) => "request_too_large",
            Self::Admission(r) => r.code(),
            Self::Strategy(_) => "invalid_routing_strategy",
            Self::ModelNotFound(_) => "model_not_found",
            Self::NoReadyPod(_)
            | Self::NoAdapterReplica(..)
            | Self::ActivatorFull(..)
            | Self::ActivationTimeout(..) => "service_unavailable",
            Self::Upstream { .. } => "upstream_unavailable",
            Self::UpstreamTimeout(_) => "upstream_timeout",
            _ => return None,
        })
    }

    fn param(&self) -> Option<&'static str> {
        match self {
            Self::Parse(e) => e.param(),
            Self::Admission(r) => r.param(),
            Self::Strategy(_) => Some("routing-strategy"),
            Self::ModelNotFound(_) => Some("model"),
            _ => None,
        }
    }

    fn debug_header(&self) -> Option<(&'static str, String)> {
        match self {
            Self::Admission(r) => r.debug_header().map(|(k, v)| (k, v.to_string())),
            Self::Strategy(_) => Some(("x-error-routing", "true".into())),
            Self::ModelNotFound(m) => Some(("x-error-no-model-backends", bounded(m).into_owned())),
            Self::NoReadyPod(_)
            | Self::NoAdapterReplica(..)
            | Self::ActivatorFull(..)
            | Self::ActivationTimeout(..) => Some(("x-error-no-model-backends", "true".into())),
            Self::Parse(_) | Self::BodyRead(_) | Self::BodyTooLarge(_) => {
                Some(("x-error-request-body-processing", "true".into()))
            }
            _ => None,
        }
    }
}

/// The envelope's `type` for a status, as OpenAI and AIBrix assign it.
pub fn error_type(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 | 404 | 405 | 413 => "invalid_request_error",
        401 => "authentication_error",
        429 => "rate_limit_error",
        503 => "overloaded_error",
        _ => "api_error",
    }
}

/// The Anthropic error `type` for a status, as Anthropic's API documents them.
pub fn anthropic_type(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 | 405 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        504 => "timeout_error",
        _ => "api_error",
    }
}

/// An error body in the shape one dialect's clients parse; both shapes are built by `brix-api`.
#[derive(serde::Serialize)]
#[serde(untagged)]
pub enum ErrorBody {
    /// The OpenAI envelope `{"error":{"message","type","param","code"}}`.
    OpenAi(ErrorEnvelope),
    /// Anthropic's `{"type":"error","error":{"type","message"}}` (what vLLM answers on
    /// `/v1/messages`).
    Anthropic(AnthropicError),
}

impl ErrorBody {
    /// The body for a failure with this status, message and code (Anthropic's shape has no code).
    pub fn for_status(
        dialect: Dialect,
        status: StatusCode,
        message: &str,
        code: Option<&str>,
    ) -> Self {
        match dialect {
            Dialect::OpenAi => Self::OpenAi(
                ErrorEnvelope::new(message, error_type(status)).with_code(code.map(Into::into)),
            ),
            Dialect::Anthropic => {
                Self::Anthropic(AnthropicError::new(anthropic_type(status), message))
            }
        }
    }

    /// The body as JSON text.
    pub fn to_json(&self) -> String {
        match self {
            Self::OpenAi(e) => e.to_json(),
            Self::Anthropic(e) => e.to_json(),
        }
    }

    /// The body as the server-sent event that ends a failed stream in this dialect.
    pub fn to_sse(&self) -> String {
        match self {
            Self::OpenAi(e) => e.to_sse(),
            Self::Anthropic(e) => e.to_sse(),
        }
    }
}

impl GatewayError {
    /// The answer in the error shape `dialect`'s clients parse.
    pub fn respond(self, dialect: Dialect) -> Response {
        let status = self.status();
        let kind = match (&self, dialect) {
            (_, Dialect::Anthropic) => anthropic_type(status),
            (Self::Admission(r), _) => r.error_type(),
            _ => error_type(status),
        };
        let body = match dialect {
            Dialect::OpenAi => ErrorBody::OpenAi(
                ErrorEnvelope::new(self.to_string(), kind)
                    .with_param(self.param())
                    .with_code(self.code().map(Into::into)),
            ),
            Dialect::Anthropic => ErrorBody::Anthropic(AnthropicError::new(kind, self.to_string())),
        };
        let mut resp = (status, axum::Json(body)).into_response();
        let headers = resp.headers_mut();
        if let Some((name, value)) = self.debug_header()
            && let Ok(v) = HeaderValue::from_str(&value)
        {
            headers.insert(HeaderName::from_static(name), v);
        }
        if let Self::Admission(r) = &self
            && let Some(s) = r.retry_after_s()
        {
            headers.insert(http::header::RETRY_AFTER, HeaderValue::from(s));
        }
        resp
    }
}

impl IntoResponse for GatewayError {
    fn into_response(self) -> Response {
        self.respond(Dialect::OpenAi)
    }
}
