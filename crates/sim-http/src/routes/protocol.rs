//! The OpenAI request fields `brix sim` reads, as vLLM 0.32's `CompletionRequest` and
//! `ChatCompletionRequest` declare them.
//!
//! Unknown request fields are ignored, as vLLM does (it only logs them). Numbers that vLLM
//! range-checks are read as signed or float so an out-of-range value gets vLLM's message, not
//! a type error. Loosely typed fields (`tools`, `tool_choice`, `response_format`) stay JSON
//! values: vLLM checks them by hand, and so does `validate`.

use serde::Deserialize;
use serde_json::Value;

/// `stream_options`; `include_usage` defaults to true once the object is present, as in vLLM.
#[derive(Clone, Copy, Debug, Default, Deserialize)]
pub(crate) struct StreamOptions {
    #[serde(default)]
    pub(crate) include_usage: Option<bool>,
    #[serde(default)]
    pub(crate) continuous_usage_stats: Option<bool>,
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

/// `stop`: one string or a list.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum Stop {
    One(String),
    Many(Vec<String>),
}

impl Stop {
    pub(crate) fn to_vec(&self) -> Vec<String> {
        match self {
            Self::One(s) => vec![s.clone()],
            Self::Many(v) => v.clone(),
        }
    }
}

/// The sampling parameters completions and chat share, before any check.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Sampling {
    #[serde(default)]
    pub(crate) n: Option<i64>,
    #[serde(default)]
    pub(crate) temperature: Option<f64>,
    #[serde(default)]
    pub(crate) top_p: Option<f64>,
    #[serde(default)]
    pub(crate) top_k: Option<i64>,
    #[serde(default)]
    pub(crate) min_p: Option<f64>,
    #[serde(default)]
    pub(crate) presence_penalty: Option<f64>,
    #[serde(default)]
    pub(crate) frequency_penalty: Option<f64>,
    #[serde(default)]
    pub(crate) repetition_penalty: Option<f64>,
    #[serde(default)]
    pub(crate) seed: Option<i64>,
    #[serde(default)]
    pub(crate) stop: Option<Stop>,
    #[serde(default)]
    pub(crate) include_stop_str_in_output: Option<bool>,
    #[serde(default)]
    pub(crate) min_tokens: Option<i64>,
    #[serde(default)]
    pub(crate) ignore_eos: Option<bool>,
    #[serde(default)]
    pub(crate) stream: Option<bool>,
    #[serde(default)]
    pub(crate) stream_options: Option<StreamOptions>,
    #[serde(default)]
    pub(crate) echo: Option<bool>,
    #[serde(default)]
    pub(crate) response_format: Option<Value>,
    // `user` and every other OpenAI field are accepted and ignored, as vLLM does.
}

/// `POST /v1/completions`.
#[derive(Debug, Deserialize)]
pub(crate) struct CompletionRequest {
    #[serde(default)]
    pub(crate) model: Option<String>,
    #[serde(default)]
    pub(crate) prompt: Option<Prompt>,
    #[serde(default)]
    pub(crate) max_tokens: Option<i64>,
    /// An integer here (how many alternatives per token), unlike chat's boolean.
    #[serde(default)]
    pub(crate) logprobs: Option<i64>,
    #[serde(flatten)]
    pub(crate) sampling: Sampling,
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
    pub(crate) max_tokens: Option<i64>,
    #[serde(default)]
    pub(crate) max_completion_tokens: Option<i64>,
    #[serde(default)]
    pub(crate) logprobs: Option<bool>,
    #[serde(default)]
    pub(crate) top_logprobs: Option<i64>,
    #[serde(default)]
    pub(crate) tools: Option<Value>,
    #[serde(default)]
    pub(crate) tool_choice: Option<Value>,
    #[serde(flatten)]
    pub(crate) sampling: Sampling,
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let r: ChatRequest = serde_json::from_str(
            r#"{"messages":[],"stop":"x","n":3,"temperature":0.5,"logprobs":true,"top_logprobs":2}"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (r.sampling.n, r.sampling.temperature, r.top_logprobs),
            (Some(3), Some(0.5), Some(2))
        );
        assert_eq!(
            r.sampling.stop.as_ref().map(Stop::to_vec),
            Some(vec!["x".into()])
        );
    }
}
