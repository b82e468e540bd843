//! Turning a [`Generation`] into vLLM's replies: SSE chunks as tokens arrive, or one JSON body.
//!
//! Under failure: when the client goes away hyper drops the body, which drops the
//! [`Generation`] and so aborts the request in the engine. `--die-mid-stream-after` ends the
//! body with an error, which makes hyper close the connection without `[DONE]`.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use axum::body::{Body, Bytes};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use brix_sim::Finished;
use serde::Serialize;
use tokio_stream::Stream;

use super::LoadGuard;
use super::protocol::{
    ChatChoice, ChatDelta, ChatMessageOut, ChatStreamChoice, CompletionChoice, Envelope, GenParams,
    Usage,
};
use crate::driver::{Event, Generation};
use crate::error::ApiError;
use crate::tokenizer::Tokenizer;

/// Which OpenAI API a reply belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Api {
    Completions,
    Chat,
}

/// Why a body stopped early; hyper closes the connection on any of these.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StreamError {
    #[error("connection dropped by --die-mid-stream-after")]
    Injected,
    #[error("the engine driver stopped mid-request")]
    EngineGone,
    #[error("encoding a chunk: {0}")]
    Encode(#[from] serde_json::Error),
}

/// The identity every body and chunk of one response repeats.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) api: Api,
    pub(crate) id: String,
    pub(crate) created: u64,
    pub(crate) model: String,
    pub(crate) prompt_tokens: u32,
}

impl Reply {
    fn envelope<C>(
        &self,
        object: &'static str,
        choices: Vec<C>,
        usage: Option<Usage>,
    ) -> Envelope<'_, C> {
        Envelope {
            id: &self.id,
            object,
            created: self.created,
            model: &self.model,
            choices,
            usage,
        }
    }

    /// One `data: {...}` frame carrying `text` (and the finish reason on the last).
    fn chunk(
        &self,
        text: &str,
        finish: Option<&str>,
        usage: Option<Usage>,
    ) -> Result<Bytes, serde_json::Error> {
        match self.api {
            Api::Completions => {
                let choice = CompletionChoice {
                    index: 0,
                    text,
                    logprobs: None,
                    finish_reason: finish,
                    stop_reason: None,
                };
                sse(&self.envelope("text_completion", vec![choice], usage))
            }
            Api::Chat => {
                let delta = ChatDelta {
                    role: None,
                    content: text,
                };
                let choice = ChatStreamChoice {
                    index: 0,
                    delta,
                    logprobs: None,
                    finish_reason: finish,
                };
                sse(&self.envelope("chat.completion.chunk", vec![choice], usage))
            }
        }
    }

    /// The chat stream's opening chunk: the assistant role with empty content.
    fn role_chunk(&self) -> Result<Bytes, serde_json::Error> {
        let delta = ChatDelta {
            role: Some("assistant"),
            content: "",
        };
        let choice = ChatStreamChoice {
            index: 0,
            delta,
            logprobs: None,
            finish_reason: None,
        };
        sse(&self.envelope("chat.completion.chunk", vec![choice], None))
    }

    /// The `include_usage` chunk: no choices, the request's usage.
    fn usage_chunk(&self, completion_tokens: u32) -> Result<Bytes, serde_json::Error> {
        let object = match self.api {
            Api::Completions => "text_completion",
            Api::Chat => "chat.completion.chunk",
        };
        let usage = Usage::new(self.prompt_tokens, completion_tokens);
        sse(&self.envelope::<()>(object, Vec::new(), Some(usage)))
    }

    /// The whole non-streaming body.
    fn full(
        &self,
        text: &str,
        finish: &str,
        completion_tokens: u32,
    ) -> Result<Vec<u8>, serde_json::Error> {
        let usage = Some(Usage::new(self.prompt_tokens, completion_tokens));
        match self.api {
            Api::Completions => {
                let choice = CompletionChoice {
                    index: 0,
                    text,
                    logprobs: None,
                    finish_reason: Some(finish),
                    stop_reason: None,
                };
                serde_json::to_vec(&self.envelope("text_completion", vec![choice], usage))
            }
            Api::Chat => {
                let message = ChatMessageOut {
                    role: "assistant",
                    reasoning_content: None,
                    content: text,
                    tool_calls: [],
                };
                let choice = ChatChoice {
                    index: 0,
                    message,
                    logprobs: None,
                    finish_reason: finish,
                    stop_reason: None,
                };
                serde_json::to_vec(&self.envelope("chat.completion", vec![choice], usage))
            }
        }
    }
}

fn sse<T: Serialize>(value: &T) -> Result<Bytes, serde_json::Error> {
    let mut out = b"data: ".to_vec();
    serde_json::to_writer(&mut out, value)?;
    out.extend_from_slice(b"\n\n");
    Ok(Bytes::from(out))
}

const DONE: &[u8] = b"data: [DONE]\n\n";

/// The SSE body: pulls engine events and turns each into frames.
pub(crate) struct SseBody {
    generation: Generation,
    reply: Reply,
    tokenizer: Tokenizer,
    params: GenParams,
    die_after: Option<u32>,
    emitted: u32,
    queue: VecDeque<Bytes>,
    done: bool,
    _load: LoadGuard,
}

impl SseBody {
    /// A stream for `generation`; chat streams open with the role chunk.
    pub(crate) fn new(
        generation: Generation,
        reply: Reply,
        tokenizer: Tokenizer,
        params: GenParams,
        die_after: Option<u32>,
        load: LoadGuard,
    ) -> Result<Self, serde_json::Error> {
        let mut queue = VecDeque::new();
        if reply.api == Api::Chat {
            queue.push_back(reply.role_chunk()?);
        }
        Ok(Self {
            generation,
            reply,
            tokenizer,
            params,
            die_after,
            emitted: 0,
            queue,
            done: false,
            _load: load,
        })
    }

    /// The HTTP response streaming this body.
    pub(crate) fn into_response(self) -> Response {
        let headers = [(header::CONTENT_TYPE, "text/event-stream; charset=utf-8")];
        (headers, Body::from_stream(self)).into_response()
    }

    fn usage(&self) -> Option<Usage> {
        self.params
            .continuous_usage
            .then(|| Usage::new(self.reply.prompt_tokens, self.emitted))
    }

    /// Queues the frames for one engine event.
    fn push(&mut self, ev: Option<Event>) -> Result<(), StreamError> {
        match ev {
            None => return Err(StreamError::EngineGone),
            Some(Event::Token(t)) => {
                self.emitted += 1;
                let frame = self
                    .reply
                    .chunk(&self.tokenizer.decode_one(t), None, self.usage())?;
                self.queue.push_back(frame);
            }
            Some(Event::Done { last, finished }) => {
                let text = last
                    .map(|t| self.tokenizer.decode_one(t))
                    .unwrap_or_default();
                self.emitted += u32::from(last.is_some());
                let frame =
                    self.reply
                        .chunk(&text, Some(finished.reason.as_str()), self.usage())?;
                self.queue.push_back(frame);
                if self.params.include_usage {
                    self.queue.push_back(self.reply.usage_chunk(self.emitted)?);
                }
                self.queue.push_back(Bytes::from_static(DONE));
                self.done = true;
            }
        }
        Ok(())
    }
}

impl Stream for SseBody {
    type Item = Result<Bytes, StreamError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if let Some(frame) = this.queue.pop_front() {
                return Poll::Ready(Some(Ok(frame)));
            }
            if this.done {
                return Poll::Ready(None);
            }
            let ev = ready!(this.generation.poll_recv(cx));
            // Cut when the event after the N-th token arrives, not right after yielding it:
            // hyper drops unflushed frames on error, and waiting lets it flush the N-th.
            if this.die_after.is_some_and(|n| this.emitted >= n) {
                this.done = true;
                return Poll::Ready(Some(Err(StreamError::Injected)));
            }
            if let Err(e) = this.push(ev) {
                this.done = true;
                return Poll::Ready(Some(Err(e)));
            }
        }
    }
}

/// Waits for the whole answer and renders it; with `die_after`, a generation that reaches that
/// many tokens gets a response whose body fails, so the client sees the connection drop.
pub(crate) async fn collect(
    mut generation: Generation,
    reply: Reply,
    tokenizer: &Tokenizer,
    die_after: Option<u32>,
) -> Result<Response, ApiError> {
    let mut tokens = Vec::new();
    let finished: Finished = loop {
        if die_after.is_some_and(|n| tokens.len() >= n as usize) {
            let broken = tokio_stream::once(Err::<Bytes, _>(StreamError::Injected));
            return Ok(Body::from_stream(broken).into_response());
        }
        match generation.recv().await {
            Some(Event::Token(t)) => tokens.push(t),
            Some(Event::Done { last, finished }) => {
                tokens.extend(last);
                break finished;
            }
            None => return Err(ApiError::EngineDead),
        }
    };
    let text = tokenizer.decode(&tokens).unwrap_or_default();
    let n = u32::try_from(tokens.len()).unwrap_or(u32::MAX);
    let body = reply
        .full(&text, finished.reason.as_str(), n)
        .map_err(ApiError::Encode)?;
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}
