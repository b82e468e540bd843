//! The response shapes vLLM 0.32 writes, field for field.
//!
//! Whole responses are pydantic `model_dump()`s: every declared field appears, `null` when
//! unset. Stream chunks are `model_dump_json(exclude_unset=True)`: only the fields vLLM's
//! serving code passes (some of them explicitly `None`). The usage chunk drops every `None`.
//! Chat messages and deltas omit an empty `tool_calls`, as vLLM's serializers do.

use serde::Serialize;

use super::choice::{ChatLogprobs, CompletionLogprobs};

/// `usage` in whole responses (`UsageInfo.model_dump()`).
#[derive(Clone, Copy, Debug, Serialize)]
pub(crate) struct Usage {
    pub(crate) prompt_tokens: u32,
    pub(crate) total_tokens: u32,
    pub(crate) completion_tokens: u32,
    pub(crate) prompt_tokens_details: Option<()>,
    pub(crate) completion_tokens_details: Option<()>,
}

/// `usage` in stream chunks: chat's per-chunk usage sets `completion_tokens_details` (to
/// `None`), the closing usage chunk drops every `None`.
#[derive(Clone, Copy, Debug, Serialize)]
pub(crate) struct StreamUsage {
    pub(crate) prompt_tokens: u32,
    pub(crate) total_tokens: u32,
    pub(crate) completion_tokens: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) completion_tokens_details: Option<Option<()>>,
}

impl Usage {
    pub(crate) fn new(prompt_tokens: u32, completion_tokens: u32) -> Self {
        Self {
            prompt_tokens,
            total_tokens: prompt_tokens.saturating_add(completion_tokens),
            completion_tokens,
            prompt_tokens_details: None,
            completion_tokens_details: None,
        }
    }
}

impl StreamUsage {
    pub(crate) fn new(prompt_tokens: u32, completion_tokens: u32) -> Self {
        Self {
            prompt_tokens,
            total_tokens: prompt_tokens.saturating_add(completion_tokens),
            completion_tokens,
            completion_tokens_details: None,
        }
    }

    /// Chat's continuous usage, which names `completion_tokens_details` as `null`.
    pub(crate) fn chat(prompt_tokens: u32, completion_tokens: u32) -> Self {
        Self {
            completion_tokens_details: Some(None),
            ..Self::new(prompt_tokens, completion_tokens)
        }
    }
}

/// A whole `/v1/completions` choice (`CompletionResponseChoice`).
#[derive(Debug, Serialize)]
pub(crate) struct CompletionChoice {
    pub(crate) index: u32,
    pub(crate) text: String,
    pub(crate) logprobs: Option<CompletionLogprobs>,
    pub(crate) finish_reason: Option<&'static str>,
    pub(crate) stop_reason: Option<String>,
    pub(crate) token_ids: Option<()>,
    pub(crate) prompt_logprobs: Option<()>,
    pub(crate) prompt_token_ids: Option<()>,
    pub(crate) routed_experts: Option<()>,
}

/// A `/v1/completions` stream choice (`CompletionResponseStreamChoice`, as serving sets it).
#[derive(Debug, Serialize)]
pub(crate) struct CompletionStreamChoice<'a> {
    pub(crate) index: u32,
    pub(crate) text: &'a str,
    pub(crate) logprobs: Option<CompletionLogprobs>,
    pub(crate) finish_reason: Option<&'static str>,
    pub(crate) stop_reason: Option<&'a str>,
    pub(crate) prompt_token_ids: Option<()>,
    pub(crate) token_ids: Option<()>,
}

/// The assistant's reply in a whole chat response (`ChatMessage`).
#[derive(Debug, Serialize)]
pub(crate) struct ChatMessageOut {
    pub(crate) role: &'static str,
    pub(crate) content: String,
    pub(crate) refusal: Option<()>,
    pub(crate) annotations: Option<()>,
    pub(crate) audio: Option<()>,
    pub(crate) function_call: Option<()>,
    pub(crate) reasoning: Option<()>,
}

/// A whole chat choice (`ChatCompletionResponseChoice`).
#[derive(Debug, Serialize)]
pub(crate) struct ChatChoice {
    pub(crate) index: u32,
    pub(crate) message: ChatMessageOut,
    pub(crate) logprobs: Option<ChatLogprobs>,
    pub(crate) finish_reason: &'static str,
    pub(crate) stop_reason: Option<String>,
    pub(crate) token_ids: Option<()>,
    pub(crate) routed_experts: Option<()>,
}

/// A chat stream delta: the role chunk sets `role` and `content`, the others `content`.
#[derive(Debug, Serialize)]
pub(crate) struct ChatDelta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) role: Option<&'static str>,
    pub(crate) content: &'a str,
}

/// A chat stream choice. The role chunk sets no `token_ids`; token chunks set it (`None`);
/// the final chunk adds `stop_reason`.
#[derive(Debug, Serialize)]
pub(crate) struct ChatStreamChoice<'a> {
    pub(crate) index: u32,
    pub(crate) delta: ChatDelta<'a>,
    pub(crate) logprobs: Option<ChatLogprobs>,
    pub(crate) finish_reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) stop_reason: Option<Option<&'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) token_ids: Option<Option<()>>,
}

/// The envelope whole bodies share, with the vLLM-only trailing fields.
#[derive(Debug, Serialize)]
pub(crate) struct FullBody<'a, C> {
    pub(crate) id: &'a str,
    pub(crate) object: &'static str,
    pub(crate) created: u64,
    pub(crate) model: &'a str,
    pub(crate) choices: Vec<C>,
    pub(crate) service_tier: Option<()>,
    pub(crate) system_fingerprint: Option<&'a str>,
    pub(crate) usage: Usage,
    /// Chat only: `prompt_logprobs`, `prompt_token_ids`, `prompt_text`.
    #[serde(flatten)]
    pub(crate) chat_extra: Option<ChatExtra>,
    pub(crate) kv_transfer_params: Option<()>,
    pub(crate) ec_transfer_params: Option<()>,
    pub(crate) metrics: Option<()>,
}

/// The fields `ChatCompletionResponse` has and `CompletionResponse` lacks.
#[derive(Debug, Default, Serialize)]
pub(crate) struct ChatExtra {
    pub(crate) prompt_logprobs: Option<()>,
    pub(crate) prompt_token_ids: Option<()>,
    pub(crate) prompt_text: Option<()>,
}

/// A stream chunk's envelope.
#[derive(Debug, Serialize)]
pub(crate) struct ChunkBody<'a, C> {
    pub(crate) id: &'a str,
    pub(crate) object: &'static str,
    pub(crate) created: u64,
    pub(crate) model: &'a str,
    pub(crate) choices: Vec<C>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) usage: Option<StreamUsage>,
    /// On the closing chunk: each choice's last one, or the usage chunk when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) system_fingerprint: Option<&'a str>,
    /// The chat role chunk also carries these two, explicitly `None`.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub(crate) first: Option<FirstChunkExtra>,
}

/// `prompt_token_ids` and `prompt_text` on chat's first chunk.
#[derive(Debug, Default, Serialize)]
pub(crate) struct FirstChunkExtra {
    pub(crate) prompt_token_ids: Option<()>,
    pub(crate) prompt_text: Option<()>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn whole_bodies_carry_every_vllm_field() {
        let body = FullBody {
            id: "chatcmpl-1",
            object: "chat.completion",
            created: 1,
            model: "m",
            choices: vec![ChatChoice {
                index: 0,
                message: ChatMessageOut {
                    role: "assistant",
                    content: "hi".into(),
                    refusal: None,
                    annotations: None,
                    audio: None,
                    function_call: None,
                    reasoning: None,
                },
                logprobs: None,
                finish_reason: "stop",
                stop_reason: None,
                token_ids: None,
                routed_experts: None,
            }],
            service_tier: None,
            system_fingerprint: None,
            usage: Usage::new(3, 1),
            chat_extra: Some(ChatExtra::default()),
            kv_transfer_params: None,
            ec_transfer_params: None,
            metrics: None,
        };
        let v = serde_json::to_value(&body).unwrap_or_default();
        let keys: Vec<&str> = v
            .as_object()
            .map_or(vec![], |o| o.keys().map(String::as_str).collect());
        for k in [
            "id",
            "object",
            "created",
            "model",
            "choices",
            "service_tier",
            "system_fingerprint",
            "usage",
            "prompt_logprobs",
            "prompt_token_ids",
            "prompt_text",
            "kv_transfer_params",
            "ec_transfer_params",
            "metrics",
        ] {
            assert!(keys.contains(&k), "{k} in {v}");
        }
        let msg = &v["choices"][0]["message"];
        assert!(msg.get("tool_calls").is_none() && msg.get("reasoning_content").is_none());
        assert_eq!(msg["reasoning"], json!(null));
        assert_eq!(v["usage"]["completion_tokens_details"], json!(null));
    }
}
