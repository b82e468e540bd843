//! The model-addressed paths the gateway proxies, as vLLM serves them: which body fields name
//! the model and the routing text, which may stream, which reserve generated tokens, and in
//! which error dialect (OpenAI or Anthropic) their clients expect refusals.

/// What kind of request a proxied path carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// `/v1/chat/completions`.
    Chat,
    /// `/v1/completions`.
    Completions,
    /// `/v1/responses` (OpenAI Responses API).
    Responses,
    /// `/v1/messages` (Anthropic Messages API).
    Messages,
    /// `/v1/messages/count_tokens` (Anthropic).
    CountTokens,
    /// `/tokenize`.
    Tokenize,
    /// `/detokenize`.
    Detokenize,
    /// `/v1/embeddings`, `/pooling`, `/classify`: an `input` to encode.
    Embeddings,
    /// `/score`, `/v1/score`.
    Score,
    /// `/rerank`, `/v1/rerank`, `/v2/rerank`.
    Rerank,
}

/// Every proxied path and its kind; the upstream gets the path the client used.
pub const PATHS: &[(&str, Endpoint)] = &[
    ("/v1/chat/completions", Endpoint::Chat),
    ("/v1/completions", Endpoint::Completions),
    ("/v1/responses", Endpoint::Responses),
    ("/v1/messages", Endpoint::Messages),
    ("/v1/messages/count_tokens", Endpoint::CountTokens),
    ("/tokenize", Endpoint::Tokenize),
    ("/detokenize", Endpoint::Detokenize),
    ("/v1/embeddings", Endpoint::Embeddings),
    ("/pooling", Endpoint::Embeddings),
    ("/classify", Endpoint::Embeddings),
    ("/score", Endpoint::Score),
    ("/v1/score", Endpoint::Score),
    ("/rerank", Endpoint::Rerank),
    ("/v1/rerank", Endpoint::Rerank),
    ("/v2/rerank", Endpoint::Rerank),
];

/// How refusals are shaped for a path's clients.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// `{"error":{"message","type","param","code"}}`.
    OpenAi,
    /// `{"type":"error","error":{"type","message"}}`, as vLLM answers on `/v1/messages`.
    Anthropic,
}

impl Endpoint {
    /// Whether the request generates tokens (may stream; TPM reserves its output).
    pub fn generates(self) -> bool {
        matches!(
            self,
            Self::Chat | Self::Completions | Self::Responses | Self::Messages
        )
    }

    /// Whether the body takes OpenAI `stream_options` (so usage can be asked for).
    pub fn has_stream_options(self) -> bool {
        matches!(self, Self::Chat | Self::Completions)
    }

    /// The error shape this path's clients parse.
    pub fn dialect(self) -> Dialect {
        match self {
            Self::Messages | Self::CountTokens => Dialect::Anthropic,
            _ => Dialect::OpenAi,
        }
    }

    /// Whether the body's prompt is engine work worth counting against TPM.
    pub fn consumes_tokens(self) -> bool {
        !matches!(self, Self::Tokenize | Self::Detokenize | Self::CountTokens)
    }
}
