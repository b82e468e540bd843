//! Stage 1, parse: read from the body only what routing and accounting need, and build the
//! routing key text from the whole conversation in order.
//!
//! Under failure: a body that is not JSON, lacks `model`, or has the wrong shape for its path
//! is a 400 naming the offending `param`; nothing has been admitted or routed yet. The body
//! itself is forwarded unchanged, except that a streaming request gets
//! `stream_options.include_usage: true` so its tokens can be counted (see
//! [`with_include_usage`]).

use std::borrow::Cow;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;

/// The OpenAI paths the gateway proxies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// `/v1/chat/completions`.
    Chat,
    /// `/v1/completions`.
    Completions,
    /// `/v1/embeddings`.
    Embeddings,
}

impl Endpoint {
    /// The upstream path.
    pub fn path(self) -> &'static str {
        match self {
            Self::Chat => "/v1/chat/completions",
            Self::Completions => "/v1/completions",
            Self::Embeddings => "/v1/embeddings",
        }
    }
}

/// What the gateway read from one request body.
#[derive(Debug, PartialEq)]
pub struct Parsed {
    /// `model`: a base model or an adapter.
    pub model: String,
    /// `stream`.
    pub stream: bool,
    /// `stream_options.include_usage` as the client sent it.
    pub include_usage: bool,
    /// `max_completion_tokens` or `max_tokens`.
    pub max_tokens: Option<u32>,
    /// The routing key: every message (role and content) in order, or the prompt.
    pub key: String,
}

/// A body the gateway refuses (400).
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ParseError {
    /// Not JSON, or a field of the wrong type.
    #[error("invalid JSON body: {0}")]
    Json(String),
    /// A required field is missing or empty.
    #[error("'{0}' is required")]
    Missing(&'static str),
    /// A field has a value the path does not accept.
    #[error("{message}")]
    Invalid {
        /// The field.
        param: &'static str,
        /// Why.
        message: String,
    },
}

impl ParseError {
    /// The field to blame in the error envelope.
    pub fn param(&self) -> Option<&'static str> {
        match self {
            Self::Json(_) => None,
            Self::Missing(p) => Some(p),
            Self::Invalid { param, .. } => Some(param),
        }
    }
}

#[derive(Deserialize)]
struct Body<'a> {
    #[serde(borrow, default)]
    model: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    messages: Option<Vec<Message<'a>>>,
    #[serde(borrow, default)]
    prompt: Option<&'a RawValue>,
    #[serde(borrow, default)]
    input: Option<&'a RawValue>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
    #[serde(default)]
    max_tokens: Option<u32>,
    #[serde(default)]
    max_completion_tokens: Option<u32>,
}

#[derive(Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: Option<bool>,
}

#[derive(Deserialize)]
struct Message<'a> {
    #[serde(borrow, default)]
    role: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    content: Option<&'a RawValue>,
}

/// Parses `body` for `endpoint`.
pub fn parse(endpoint: Endpoint, body: &[u8]) -> Result<Parsed, ParseError> {
    let b: Body<'_> = serde_json::from_slice(body).map_err(|e| ParseError::Json(e.to_string()))?;
    let model = b
        .model
        .filter(|m| !m.trim().is_empty())
        .ok_or(ParseError::Missing("model"))?
        .into_owned();
    let stream = b.stream.unwrap_or(false);
    let key = match endpoint {
        Endpoint::Chat => {
            let messages = b
                .messages
                .filter(|m| !m.is_empty())
                .ok_or(ParseError::Missing("messages"))?;
            conversation_text(&messages)?
        }
        Endpoint::Completions => prompt_text(b.prompt.ok_or(ParseError::Missing("prompt"))?)?,
        Endpoint::Embeddings => {
            if stream {
                return Err(ParseError::Invalid {
                    param: "stream",
                    message: "embeddings cannot be streamed".into(),
                });
            }
            prompt_text(b.input.ok_or(ParseError::Missing("input"))?)?
        }
    };
    Ok(Parsed {
        model,
        stream,
        include_usage: b
            .stream_options
            .and_then(|o| o.include_usage)
            .unwrap_or(false),
        max_tokens: b.max_completion_tokens.or(b.max_tokens),
        key,
    })
}

/// `role\ncontent\n` per message, in order; non-text content parts keep their JSON.
fn conversation_text(messages: &[Message<'_>]) -> Result<String, ParseError> {
    let mut out = String::new();
    for m in messages {
        out.push_str(m.role.as_deref().unwrap_or(""));
        out.push('\n');
        if let Some(c) = m.content {
            push_content(&mut out, c)?;
        }
        out.push('\n');
    }
    Ok(out)
}

fn push_content(out: &mut String, raw: &RawValue) -> Result<(), ParseError> {
    #[derive(Deserialize)]
    struct Part<'a> {
        #[serde(borrow, default)]
        text: Option<Cow<'a, str>>,
    }
    let json = raw.get();
    let bad = |e: serde_json::Error| ParseError::Invalid {
        param: "messages",
        message: format!("message content must be a string or a list of parts: {e}"),
    };
    match json.as_bytes().first() {
        Some(b'"') => out.push_str(&serde_json::from_str::<Cow<'_, str>>(json).map_err(bad)?),
        Some(b'[') => {
            let parts: Vec<&RawValue> = serde_json::from_str(json).map_err(bad)?;
            for p in parts {
                match serde_json::from_str::<Part<'_>>(p.get()).map_err(bad)?.text {
                    Some(t) => out.push_str(&t),
                    None => out.push_str(p.get()),
                }
            }
        }
        Some(b'n') => {}
        _ => {
            return Err(bad(serde::de::Error::custom("found another type")));
        }
    }
    Ok(())
}

/// A prompt in any OpenAI form: a string, a list of strings (the first one keys routing), a
/// list of token ids, or a list of such lists.
fn prompt_text(raw: &RawValue) -> Result<String, ParseError> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Prompt<'a> {
        Text(#[serde(borrow)] Cow<'a, str>),
        Texts(#[serde(borrow)] Vec<Cow<'a, str>>),
        Tokens(Vec<u32>),
        TokenLists(Vec<Vec<u32>>),
    }
    let invalid = || ParseError::Invalid {
        param: "prompt",
        message: "prompt must be a string, a list of strings, or token ids".into(),
    };
    let tokens = |t: &[u32]| t.iter().map(|x| format!("{x} ")).collect::<String>();
    let p: Prompt<'_> = serde_json::from_str(raw.get()).map_err(|_| invalid())?;
    let text = match p {
        Prompt::Text(t) => t.into_owned(),
        Prompt::Texts(ts) => ts.into_iter().next().ok_or_else(invalid)?.into_owned(),
        Prompt::Tokens(t) => tokens(&t),
        Prompt::TokenLists(ts) => tokens(ts.first().ok_or_else(invalid)?),
    };
    Ok(text)
}

/// The body with `stream_options.include_usage` set to true (other fields untouched), so the
/// engine reports usage at the end of a stream.
pub fn with_include_usage(body: &[u8]) -> Result<Bytes, ParseError> {
    let mut v: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(body).map_err(|e| ParseError::Json(e.to_string()))?;
    let opts = v
        .entry("stream_options")
        .or_insert_with(|| serde_json::Value::Object(Default::default()));
    match opts {
        serde_json::Value::Object(o) => {
            o.insert("include_usage".into(), serde_json::Value::Bool(true));
        }
        _ => {
            return Err(ParseError::Invalid {
                param: "stream_options",
                message: "stream_options must be an object".into(),
            });
        }
    }
    serde_json::to_vec(&v)
        .map(Bytes::from)
        .map_err(|e| ParseError::Json(e.to_string()))
}

#[cfg(test)]
#[path = "parse_tests.rs"]
mod tests;
