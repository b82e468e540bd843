//! The OpenAI request fields `brix sim` reads and the response shapes vLLM writes.
//!
//! Unknown request fields are ignored, as vLLM does (it only logs them). Numbers that vLLM
//! range-checks are read as signed so a negative value gets vLLM's message, not a type error.

use serde::{Deserialize, Serialize};

use crate::error::ParamError;

/// `stream_options`; `include_usage` defaults to true once the object is present, as in vLLM.
#[derive(Clone, Copy, Debug, Default, Deserialize)]
pub(crate) struct StreamOptions {
    #[serde(default)]
    include_usage: Option<bool>,
    #[serde(default)]
    continuous_usage_stats: Option<bool>,
}

/// A completions `prompt`: text, token ids, or a batch of either.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum Prompt {
    Text(String),
    Tokens(Vec<u32>),
    Texts(Vec<String>),
    TokenBatches(Vec<Vec<u32>>),
}

/// `POST /v1/completions`.
#[derive(Debug, Deserialize)]
pub(crate) struct CompletionRequest {
    #[serde(default)]
    pub(crate) model: Option<String>,
    pub(crate) prompt: Prompt,
    #[serde(default)]
    max_tokens: Option<i64>,
    #[serde(flatten)]
    common: CommonParams,
}

/// One chat message; `content` may be text or a list of parts (only text parts count).
#[derive(Debug, Deserialize)]
pub(crate) struct ChatMessage {
    pub(crate) role: String,
    #[serde(default)]
    content: Option<Content>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Content {
    Text(String),
    Parts(Vec<ContentPart>),
}

#[derive(Debug, Deserialize)]
struct ContentPart {
    #[serde(default)]
    text: Option<String>,
}

impl ChatMessage {
    /// The message's text, parts joined by newlines as vLLM's chat renderer does.
    pub(crate) fn text(&self) -> String {
        match &self.content {
            None => String::new(),
            Some(Content::Text(t)) => t.clone(),
            Some(Content::Parts(parts)) => {
                let texts: Vec<&str> = parts.iter().filter_map(|p| p.text.as_deref()).collect();
                texts.join("\n")
            }
        }
    }
}

/// `POST /v1/chat/completions`.
#[derive(Debug, Deserialize)]
pub(crate) struct ChatRequest {
    #[serde(default)]
    pub(crate) model: Option<String>,
    pub(crate) messages: Vec<ChatMessage>,
    #[serde(default)]
    max_tokens: Option<i64>,
    #[serde(default)]
    max_completion_tokens: Option<i64>,
    #[serde(flatten)]
    common: CommonParams,
}

/// Parameters completions and chat share.
#[derive(Debug, Default, Deserialize)]
struct CommonParams {
    #[serde(default)]
    min_tokens: Option<i64>,
    #[serde(default)]
    ignore_eos: Option<bool>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
    #[serde(default)]
    n: Option<i64>,
    // `user` and every other OpenAI field are accepted and ignored, as vLLM does.
}

/// Checked generation parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct GenParams {
    pub(crate) max_tokens: Option<u32>,
    pub(crate) min_tokens: u32,
    pub(crate) ignore_eos: bool,
    pub(crate) stream: bool,
    pub(crate) include_usage: bool,
    pub(crate) continuous_usage: bool,
}

impl CommonParams {
    fn check(&self, max_tokens: Option<i64>) -> Result<GenParams, ParamError> {
        let max_tokens = match max_tokens {
            Some(m) if m < 1 => return Err(ParamError::MaxTokens(m)),
            Some(m) => Some(u32::try_from(m).unwrap_or(u32::MAX)),
            None => None,
        };
        let min_tokens = match self.min_tokens {
            Some(m) if m < 0 => return Err(ParamError::MinTokens(m)),
            Some(m) => u32::try_from(m).unwrap_or(u32::MAX),
            None => 0,
        };
        match self.n {
            Some(n) if n < 1 => return Err(ParamError::NTooSmall(n)),
            Some(n) if n > 1 => return Err(ParamError::NUnsupported(n)),
            _ => {}
        }
        let stream = self.stream.unwrap_or(false);
        if self.stream_options.is_some() && !stream {
            return Err(ParamError::StreamOptionsWithoutStream);
        }
        let opts = self.stream_options.unwrap_or_default();
        let usage_on = self.stream_options.is_some();
        Ok(GenParams {
            max_tokens,
            min_tokens,
            ignore_eos: self.ignore_eos.unwrap_or(false),
            stream,
            include_usage: usage_on && opts.include_usage.unwrap_or(true),
            continuous_usage: usage_on && opts.continuous_usage_stats.unwrap_or(false),
        })
    }
}

impl CompletionRequest {
    /// The request's generation parameters, checked as vLLM checks them.
    pub(crate) fn params(&self) -> Result<GenParams, ParamError> {
        self.common.check(self.max_tokens)
    }
}

impl ChatRequest {
    /// The request's generation parameters; `max_completion_tokens` wins over `max_tokens`.
    pub(crate) fn params(&self) -> Result<GenParams, ParamError> {
        self.common
            .check(self.max_completion_tokens.or(self.max_tokens))
    }
}

/// `usage` in responses and in the final stream chunk.
#[derive(Clone, Copy, Debug, Serialize)]
pub(crate) struct Usage {
    pub(crate) prompt_tokens: u32,
    pub(crate) total_tokens: u32,
    pub(crate) completion_tokens: u32,
    pub(crate) prompt_tokens_details: Option<()>,
}

impl Usage {
    /// Usage of a request with these prompt and completion lengths.
    pub(crate) fn new(prompt_tokens: u32, completion_tokens: u32) -> Self {
        Self {
            prompt_tokens,
            total_tokens: prompt_tokens.saturating_add(completion_tokens),
            completion_tokens,
            prompt_tokens_details: None,
        }
    }
}

/// A completions choice, whole or as a stream delta.
#[derive(Debug, Serialize)]
pub(crate) struct CompletionChoice<'a> {
    pub(crate) index: u32,
    pub(crate) text: &'a str,
    pub(crate) logprobs: Option<()>,
    pub(crate) finish_reason: Option<&'a str>,
    pub(crate) stop_reason: Option<()>,
}

/// A chat `message` (whole responses) or `delta` (stream chunks).
#[derive(Debug, Serialize)]
pub(crate) struct ChatDelta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) role: Option<&'a str>,
    pub(crate) content: &'a str,
}

/// A chat choice in a stream chunk.
#[derive(Debug, Serialize)]
pub(crate) struct ChatStreamChoice<'a> {
    pub(crate) index: u32,
    pub(crate) delta: ChatDelta<'a>,
    pub(crate) logprobs: Option<()>,
    pub(crate) finish_reason: Option<&'a str>,
}

/// A chat choice in a whole response.
#[derive(Debug, Serialize)]
pub(crate) struct ChatChoice<'a> {
    pub(crate) index: u32,
    pub(crate) message: ChatMessageOut<'a>,
    pub(crate) logprobs: Option<()>,
    pub(crate) finish_reason: &'a str,
    pub(crate) stop_reason: Option<()>,
}

/// The assistant's reply in a whole chat response.
#[derive(Debug, Serialize)]
pub(crate) struct ChatMessageOut<'a> {
    pub(crate) role: &'a str,
    pub(crate) reasoning_content: Option<()>,
    pub(crate) content: &'a str,
    pub(crate) tool_calls: [(); 0],
}

/// The envelope every completions/chat body and chunk shares.
#[derive(Debug, Serialize)]
pub(crate) struct Envelope<'a, C> {
    pub(crate) id: &'a str,
    pub(crate) object: &'a str,
    pub(crate) created: u64,
    pub(crate) model: &'a str,
    pub(crate) choices: Vec<C>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) usage: Option<Usage>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat(json: &str) -> Result<GenParams, ParamError> {
        let req: ChatRequest = serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}"));
        req.params()
    }

    #[test]
    fn params_are_checked_like_vllm() {
        let base = r#""model":"m","messages":[{"role":"user","content":"hi"}]"#;
        let cases = [
            (r#""max_tokens":-1"#, Err(ParamError::MaxTokens(-1))),
            (r#""max_tokens":0"#, Err(ParamError::MaxTokens(0))),
            (r#""min_tokens":-2"#, Err(ParamError::MinTokens(-2))),
            (r#""n":2"#, Err(ParamError::NUnsupported(2))),
            (r#""n":0"#, Err(ParamError::NTooSmall(0))),
            (
                r#""stream_options":{"include_usage":true}"#,
                Err(ParamError::StreamOptionsWithoutStream),
            ),
        ];
        for (extra, want) in cases {
            assert_eq!(chat(&format!("{{{base},{extra}}}")), want, "{extra}");
        }
        let p = chat(&format!(
            r#"{{{base},"max_tokens":9,"max_completion_tokens":5,"stream":true,"stream_options":{{}}}}"#
        ));
        assert_eq!(
            p.map(|p| (p.max_tokens, p.include_usage)),
            Ok((Some(5), true))
        );
    }

    #[test]
    fn prompts_and_contents_take_every_openai_form() {
        let parse = |p: &str| serde_json::from_str::<Prompt>(p).map_err(|e| e.to_string());
        assert!(matches!(parse(r#""hi""#), Ok(Prompt::Text(_))));
        assert!(matches!(parse("[1,2]"), Ok(Prompt::Tokens(_))));
        assert!(matches!(parse(r#"["a","b"]"#), Ok(Prompt::Texts(_))));
        assert!(matches!(parse("[[1],[2]]"), Ok(Prompt::TokenBatches(_))));
        let m: ChatMessage = serde_json::from_str(
            r#"{"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(m.text(), "a\nb");
    }
}
