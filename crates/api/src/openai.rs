//! The error bodies Brix servers answer with, built and parsed in one place; pure: no I/O.
//!
//! [`ErrorEnvelope`] is OpenAI's `{"error":{"message","type","param","code"}}`, keys in the order
//! OpenAI and vLLM write them. vLLM puts the HTTP status in `code` (`400`); OpenAI, AIBrix and
//! the gateway put a name (`"model_not_found"`) or `null`: [`ErrorCode`] holds either.
//! [`AnthropicError`] is `{"type":"error","error":{"type","message"}}`, what vLLM answers on
//! `/v1/messages`. Each has its JSON and its server-sent-event form, so a stream that fails
//! midway tells the client in the same shape a whole body would.
//!
//! ```
//! use brix_api::openai::{ErrorCode, ErrorEnvelope};
//! let e = ErrorEnvelope::new("The model `x` does not exist.", "NotFoundError")
//!     .with_param(Some("model"))
//!     .with_code(Some(ErrorCode::Status(404)));
//! let json = e.to_json();
//! assert_eq!(
//!     json,
//!     r#"{"error":{"message":"The model `x` does not exist.","type":"NotFoundError","param":"model","code":404}}"#
//! );
//! assert_eq!(ErrorEnvelope::parse(json.as_bytes()), Some(e));
//! ```

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An OpenAI error body; the one type every Brix server builds it with, and clients parse it with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ErrorEnvelope {
    /// What went wrong, for a person.
    pub message: String,
    /// The `type` field: a class a client can branch on (`invalid_request_error`,
    /// vLLM's `BadRequestError`).
    pub kind: String,
    /// The request parameter to blame, when one is.
    pub param: Option<String>,
    /// vLLM's HTTP status or the OpenAI/AIBrix code name; `null` when absent.
    pub code: Option<ErrorCode>,
}

/// The envelope's `code`: vLLM writes the HTTP status, OpenAI and AIBrix a name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ErrorCode {
    /// The HTTP status, as vLLM writes it (`400`).
    Status(u16),
    /// A name, as OpenAI and AIBrix write it (`"model_not_found"`).
    Name(String),
}

impl From<&str> for ErrorCode {
    fn from(name: &str) -> Self {
        Self::Name(name.to_owned())
    }
}

impl From<u16> for ErrorCode {
    fn from(status: u16) -> Self {
        Self::Status(status)
    }
}

/// The envelope's wire form, borrowed for writing.
#[derive(Serialize)]
struct WireOut<'a> {
    error: ObjectOut<'a>,
}

#[derive(Serialize)]
struct ObjectOut<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    param: Option<&'a str>,
    code: Option<&'a ErrorCode>,
}

/// The envelope's wire form, owned for reading; lenient where servers differ (a missing
/// `type`, `param` or `code`).
#[derive(Deserialize)]
struct WireIn {
    error: ObjectIn,
}

#[derive(Deserialize)]
struct ObjectIn {
    message: String,
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    param: Option<String>,
    #[serde(default)]
    code: Option<ErrorCode>,
}

impl ErrorEnvelope {
    /// An error with this message and `type`, no `param` and a `null` code.
    pub fn new(message: impl Into<String>, kind: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            kind: kind.into(),
            param: None,
            code: None,
        }
    }

    /// Names the parameter to blame (or none).
    pub fn with_param(mut self, param: Option<&str>) -> Self {
        self.param = param.map(str::to_owned);
        self
    }

    /// Sets the code (or `null`).
    pub fn with_code(mut self, code: Option<ErrorCode>) -> Self {
        self.code = code;
        self
    }

    /// The body as JSON text.
    pub fn to_json(&self) -> String {
        json_text(self)
    }

    /// The body as one server-sent event (`data: {...}\n\n`), how vLLM and the gateway end a
    /// stream that failed after its headers.
    pub fn to_sse(&self) -> String {
        format!("data: {}\n\n", self.to_json())
    }

    /// The envelope in `body`, or `None` when `body` is not one.
    pub fn parse(body: &[u8]) -> Option<Self> {
        serde_json::from_slice(body).ok()
    }
}

impl Serialize for ErrorEnvelope {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        WireOut {
            error: ObjectOut {
                message: &self.message,
                kind: &self.kind,
                param: self.param.as_deref(),
                code: self.code.as_ref(),
            },
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for ErrorEnvelope {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let WireIn { error: e } = WireIn::deserialize(d)?;
        Ok(Self {
            message: e.message,
            kind: e.kind,
            param: e.param,
            code: e.code,
        })
    }
}

/// Anthropic's error body, `{"type":"error","error":{"type","message"}}`, what vLLM answers on
/// `/v1/messages` and Anthropic's SDKs parse.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnthropicError {
    /// The inner `type` (`invalid_request_error`, `overloaded_error`, ...).
    pub kind: String,
    /// What went wrong, for a person.
    pub message: String,
}

#[derive(Serialize)]
struct AnthropicOut<'a> {
    #[serde(rename = "type")]
    tag: &'static str,
    error: AnthropicObjectOut<'a>,
}

#[derive(Serialize)]
struct AnthropicObjectOut<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    message: &'a str,
}

impl AnthropicError {
    /// An error of this inner `type`.
    pub fn new(kind: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            kind: kind.into(),
            message: message.into(),
        }
    }

    /// The body as JSON text.
    pub fn to_json(&self) -> String {
        json_text(self)
    }

    /// The body as Anthropic's `error` server-sent event (`event: error\ndata: {...}\n\n`).
    pub fn to_sse(&self) -> String {
        format!("event: error\ndata: {}\n\n", self.to_json())
    }
}

impl Serialize for AnthropicError {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        AnthropicOut {
            tag: "error",
            error: AnthropicObjectOut {
                kind: &self.kind,
                message: &self.message,
            },
        }
        .serialize(s)
    }
}

/// `value` as JSON text; these types hold only strings and integers, which always encode.
fn json_text(value: &impl Serialize) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_openais_key_order_with_either_code() {
        let vllm = ErrorEnvelope::new("bad", "BadRequestError").with_code(Some(400.into()));
        assert_eq!(
            vllm.to_json(),
            r#"{"error":{"message":"bad","type":"BadRequestError","param":null,"code":400}}"#
        );
        let gw = ErrorEnvelope::new("gone", "invalid_request_error")
            .with_param(Some("model"))
            .with_code(Some("model_not_found".into()));
        assert_eq!(
            gw.to_json(),
            r#"{"error":{"message":"gone","type":"invalid_request_error","param":"model","code":"model_not_found"}}"#
        );
        let none = ErrorEnvelope::new("x", "api_error");
        assert_eq!(
            none.to_sse(),
            "data: {\"error\":{\"message\":\"x\",\"type\":\"api_error\",\"param\":null,\"code\":null}}\n\n"
        );
    }

    #[test]
    fn parses_what_it_writes_and_what_others_send() {
        for e in [
            ErrorEnvelope::new("a \"quoted\" é", "t").with_code(Some(503.into())),
            ErrorEnvelope::new("b", "t")
                .with_param(Some("p"))
                .with_code(Some("c".into())),
            ErrorEnvelope::new("c", "t"),
        ] {
            assert_eq!(ErrorEnvelope::parse(e.to_json().as_bytes()), Some(e));
        }
        let sparse = ErrorEnvelope::parse(br#"{"error":{"message":"boom"}}"#);
        assert_eq!(sparse, Some(ErrorEnvelope::new("boom", "")));
        for not in [
            &b"{\"detail\":\"Not Found\"}"[..],
            b"{\"error\":\"text\"}",
            b"Internal Server Error",
        ] {
            assert_eq!(ErrorEnvelope::parse(not), None);
        }
    }

    #[test]
    fn anthropic_body_and_event() {
        let e = AnthropicError::new("overloaded_error", "busy");
        assert_eq!(
            e.to_json(),
            r#"{"type":"error","error":{"type":"overloaded_error","message":"busy"}}"#
        );
        assert_eq!(
            e.to_sse(),
            format!("event: error\ndata: {}\n\n", e.to_json())
        );
    }
}
