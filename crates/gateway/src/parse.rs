//! Stage 1, parse: read from the body only what routing and accounting need, and build the
//! routing key text from the whole conversation in order.
//!
//! Under failure: a body that is not JSON, lacks `model`, or has the wrong shape for its path
//! is a 400 naming the offending `param`; nothing has been admitted or routed yet. The body
//! itself is forwarded unchanged, except that a streaming request gets
//! `stream_options.include_usage: true` so its tokens can be counted (see
//! [`with_include_usage`]).

use std::borrow::Cow;

use brix_tokenizer::Prompt;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;

pub use crate::endpoint::Endpoint;

/// What the gateway read from one request body.
#[derive(Debug, PartialEq)]
pub struct Parsed {
    /// `model`: a base model or an adapter.
    pub model: String,
    /// `stream`.
    pub stream: bool,
    /// Whether the client gets usage from vLLM: `stream_options.include_usage: true` (vLLM
    /// 0.32's default is false).
    pub include_usage: bool,
    /// `stream_options.continuous_usage_stats` as the client sent it.
    pub continuous_usage: bool,
    /// `max_completion_tokens`, `max_tokens` or `max_output_tokens` (Responses).
    pub max_tokens: Option<u32>,
    /// The output will be exactly `max_tokens` long: vLLM's `ignore_eos: true`, or
    /// `min_tokens` ≥ `max_tokens` (plan routing then knows the request's output bucket).
    pub output_exact: bool,
    /// `n`: choices generated per prompt (1 when absent).
    pub n: u32,
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

impl Parsed {
    /// The prompt's tokens as estimated before any tokenizer runs: its routing key's bytes at
    /// [`brix_router::BYTES_PER_TOKEN`] a token, rounded up (TPM booking, the autoscaler's
    /// prompt counts, plan routing, demand when the answer carries no usage).
    pub fn prompt_tokens_estimate(&self) -> u64 {
        (self.key.len() as u64).div_ceil(u64::from(brix_router::BYTES_PER_TOKEN))
    }
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
    #[serde(default)]
    max_output_tokens: Option<u32>,
    #[serde(default)]
    n: Option<u32>,
    #[serde(default)]
    ignore_eos: Option<bool>,
    #[serde(default)]
    min_tokens: Option<u32>,
    #[serde(borrow, default)]
    system: Option<&'a RawValue>,
    #[serde(borrow, default)]
    instructions: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    query: Option<&'a RawValue>,
    #[serde(borrow, default)]
    text_1: Option<&'a RawValue>,
    #[serde(borrow, default)]
    queries: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: Option<bool>,
    #[serde(default)]
    continuous_usage_stats: Option<bool>,
}

#[derive(Deserialize)]
struct Message<'a> {
    #[serde(borrow, default)]
    role: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    content: Option<&'a RawValue>,
}

/// Parses `body` for `endpoint`. A missing `model` parses as empty: the handler then uses
/// the gateway's only model, as vLLM does, or refuses.
pub fn parse(endpoint: Endpoint, body: &[u8]) -> Result<Parsed, ParseError> {
    let b: Body<'_> = serde_json::from_slice(body).map_err(|e| ParseError::Json(e.to_string()))?;
    let model = b
        .model
        .as_deref()
        .map(str::trim)
        .unwrap_or_default()
        .to_string();
    let stream = b.stream.unwrap_or(false) && endpoint.generates();
    if b.stream == Some(true) && endpoint == Endpoint::Embeddings {
        return Err(ParseError::Invalid {
            param: "stream",
            message: "embeddings cannot be streamed".into(),
        });
    }
    let key = key_text(endpoint, &b)?;
    // vLLM 0.32's `StreamOptions` defaults `include_usage` to false (`should_include_usage`).
    let (include_usage, continuous_usage) = b.stream_options.map_or((false, false), |o| {
        (
            o.include_usage.unwrap_or(false),
            o.continuous_usage_stats.unwrap_or(false),
        )
    });
    let max_tokens = b
        .max_completion_tokens
        .or(b.max_tokens)
        .or(b.max_output_tokens);
    let output_exact = max_tokens.is_some_and(|m| {
        endpoint.generates() && (b.ignore_eos == Some(true) || b.min_tokens.is_some_and(|n| n >= m))
    });
    Ok(Parsed {
        model,
        stream,
        include_usage,
        continuous_usage,
        max_tokens,
        output_exact,
        n: b.n.unwrap_or(1).max(1),
        key,
    })
}

/// The routing key text of each kind of body.
fn key_text(endpoint: Endpoint, b: &Body<'_>) -> Result<String, ParseError> {
    let opt_text = |raw: Option<&RawValue>| raw.map_or(Ok(String::new()), prompt_text);
    Ok(match endpoint {
        Endpoint::Chat => {
            let messages = b
                .messages
                .as_deref()
                .filter(|m| !m.is_empty())
                .ok_or(ParseError::Missing("messages"))?;
            conversation_text(messages, false)?
        }
        Endpoint::Completions => prompt_text(b.prompt.ok_or(ParseError::Missing("prompt"))?)?,
        Endpoint::Messages | Endpoint::CountTokens => {
            let messages = b
                .messages
                .as_deref()
                .ok_or(ParseError::Missing("messages"))?;
            let mut out = String::new();
            if let Some(system) = b.system {
                out.push_str("system\n");
                push_content(&mut out, system, true)?;
                out.push('\n');
            }
            out.push_str(&conversation_text(messages, true)?);
            out
        }
        Endpoint::Responses => {
            let input = b.input.ok_or(ParseError::Missing("input"))?;
            let mut out = String::new();
            if let Some(i) = &b.instructions {
                out.push_str("system\n");
                out.push_str(i);
                out.push('\n');
            }
            match serde_json::from_str::<Vec<Message<'_>>>(input.get()) {
                Ok(items) => out.push_str(&conversation_text(&items, true)?),
                Err(_) => push_content(&mut out, input, true)?,
            }
            out
        }
        Endpoint::Tokenize => match (&b.messages, b.prompt) {
            (Some(m), _) => conversation_text(m, true)?,
            (None, p) => opt_text(p)?,
        },
        Endpoint::Detokenize => String::new(),
        Endpoint::Embeddings => match (b.input, &b.messages) {
            (Some(i), _) => prompt_text(i)?,
            (None, Some(m)) => conversation_text(m, true)?,
            (None, None) => return Err(ParseError::Missing("input")),
        },
        Endpoint::Score => opt_text(b.text_1.or(b.queries)).unwrap_or_default(),
        Endpoint::Rerank => opt_text(b.query).unwrap_or_default(),
    })
}

/// `role\ncontent\n` per message, in order; non-text content parts keep their JSON.
fn conversation_text(messages: &[Message<'_>], lenient: bool) -> Result<String, ParseError> {
    let mut out = String::new();
    for m in messages {
        out.push_str(m.role.as_deref().unwrap_or(""));
        out.push('\n');
        if let Some(c) = m.content {
            push_content(&mut out, c, lenient)?;
        }
        out.push('\n');
    }
    Ok(out)
}

/// Appends a content value's text; `lenient` keeps any other JSON as it is (Anthropic and
/// Responses bodies carry typed blocks the gateway need not understand).
fn push_content(out: &mut String, raw: &RawValue, lenient: bool) -> Result<(), ParseError> {
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
                match serde_json::from_str::<Part<'_>>(p.get()).map(|p| p.text) {
                    Ok(Some(t)) => out.push_str(&t),
                    Ok(None) => out.push_str(p.get()),
                    Err(_) if lenient => out.push_str(p.get()),
                    Err(e) => return Err(bad(e)),
                }
            }
        }
        Some(b'n') => {}
        _ if lenient => out.push_str(json),
        _ => {
            return Err(bad(serde::de::Error::custom("found another type")));
        }
    }
    Ok(())
}

/// A prompt in any OpenAI form: a string, a list of strings (the first one keys routing), a
/// list of token ids, or a list of such lists.
fn prompt_text(raw: &RawValue) -> Result<String, ParseError> {
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

/// The body with `stream_options.include_usage` set to true, so the engine reports usage at
/// the end of a stream. Called only for a client that gets no usage from vLLM (no
/// `stream_options`, or `include_usage` absent or false); a `continuous_usage_stats: true` it sent is
/// turned off, since vLLM sends per-chunk usage only with `include_usage`, so the one usage
/// event left to strip is the final usage-only chunk.
pub fn with_include_usage(body: &[u8]) -> Result<Bytes, ParseError> {
    let mut v: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(body).map_err(|e| ParseError::Json(e.to_string()))?;
    let opts = v
        .entry("stream_options")
        .or_insert_with(|| serde_json::Value::Object(Default::default()));
    match opts {
        serde_json::Value::Object(o) => {
            o.insert("include_usage".into(), serde_json::Value::Bool(true));
            if let Some(c) = o.get_mut("continuous_usage_stats") {
                *c = serde_json::Value::Bool(false);
            }
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
