//! Turning the generations of one request (one per prompt and choice) into vLLM's replies:
//! SSE chunks as tokens arrive, or one JSON body at the end.
//!
//! Choices are numbered as vLLM numbers them, `prompt_index * n + choice`. Usage sums the
//! completion tokens of every choice and counts each prompt once.
//!
//! Under failure: when the client goes away hyper drops the body, which drops every
//! [`Generation`] and so aborts its request in the engine (not booked as a finished request,
//! as vLLM). A choice ended by a stop string tells the engine to finish it as `stop`.
//! `--die-mid-stream-after` ends the body with an error, which makes hyper close the
//! connection without `[DONE]`.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tokio_stream::Stream;

use super::LoadGuard;
use super::choice::{ChatLogprobs, ChoiceText, CompletionLogprobs, Delta};
use super::render::{
    ChatChoice, ChatDelta, ChatExtra, ChatMessageOut, ChatStreamChoice, ChunkBody,
    CompletionChoice, CompletionStreamChoice, FirstChunkExtra, FullBody, StreamUsage, Usage,
};
use crate::driver::{Event, Generation};
use crate::error::ApiError;
use crate::metrics::Metrics;
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

/// What each prompt of a request contributes to the reply.
#[derive(Debug)]
pub(crate) struct PromptOut {
    pub(crate) tokens: u32,
    /// Text echoed before each of its choices (`echo`), with its tokens' pieces for logprobs.
    pub(crate) echo: Option<(String, Vec<String>)>,
}

/// The identity and options every body and chunk of one response repeats.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) api: Api,
    pub(crate) id: String,
    pub(crate) created: u64,
    pub(crate) model: String,
    pub(crate) prompts: Vec<PromptOut>,
    pub(crate) n: u32,
    pub(crate) logprobs: Option<u32>,
    pub(crate) include_usage: bool,
    pub(crate) continuous_usage: bool,
    pub(crate) metrics: Arc<Metrics>,
    /// `system_fingerprint`: `vllm-<version>-<config hash>`.
    pub(crate) fingerprint: String,
}

/// One choice: its generation and its text.
#[derive(Debug)]
pub(crate) struct Sub {
    pub(crate) generation: Generation,
    pub(crate) text: ChoiceText,
    /// Characters already sent (for completions' `text_offset`).
    offset: usize,
    echoed: bool,
}

impl Sub {
    pub(crate) fn new(generation: Generation, text: ChoiceText) -> Self {
        Self {
            generation,
            text,
            offset: 0,
            echoed: false,
        }
    }

    /// Applies one engine event; a stop string tells the engine to finish the request.
    fn apply(&mut self, tok: &Tokenizer, ev: Option<Event>) -> Result<Delta, StreamError> {
        let delta = match ev {
            None => return Err(StreamError::EngineGone),
            Some(Event::Token(t)) => self.text.push(tok, Some(t), None),
            Some(Event::Done { last, finished }) => {
                self.text.push(tok, last, Some(finished.reason.as_str()))
            }
        };
        if delta.finish.is_some() {
            self.generation.finish();
        }
        Ok(delta)
    }
}

impl Reply {
    fn object(&self, chunk: bool) -> &'static str {
        match (self.api, chunk) {
            (Api::Completions, _) => "text_completion",
            (Api::Chat, true) => "chat.completion.chunk",
            (Api::Chat, false) => "chat.completion",
        }
    }

    fn prompt_tokens(&self) -> u32 {
        self.prompts.iter().map(|p| p.tokens).sum()
    }

    fn prompt_of(&self, index: usize) -> &PromptOut {
        &self.prompts[index / self.n.max(1) as usize]
    }

    fn chunk<C: Serialize>(
        &self,
        choices: Vec<C>,
        usage: Option<StreamUsage>,
        last: bool,
    ) -> Result<Bytes, serde_json::Error> {
        self.chunk_with(choices, usage, None, last)
    }

    fn chunk_with<C: Serialize>(
        &self,
        choices: Vec<C>,
        usage: Option<StreamUsage>,
        first: Option<FirstChunkExtra>,
        last: bool,
    ) -> Result<Bytes, serde_json::Error> {
        sse(&ChunkBody {
            id: &self.id,
            object: self.object(true),
            created: self.created,
            model: &self.model,
            choices,
            usage,
            system_fingerprint: last.then_some(self.fingerprint.as_str()),
            first,
        })
    }

    /// Per-chunk usage (`continuous_usage_stats`), in each API's shape.
    fn continuous(&self, prompt: u32, completion: u32) -> Option<StreamUsage> {
        match (self.continuous_usage, self.api) {
            (false, _) => None,
            (true, Api::Completions) => Some(StreamUsage::new(prompt, completion)),
            (true, Api::Chat) => Some(StreamUsage::chat(prompt, completion)),
        }
    }

    /// The chunk for one choice's delta.
    fn delta_chunk(
        &self,
        index: usize,
        sub: &mut Sub,
        d: &Delta,
    ) -> Result<Bytes, serde_json::Error> {
        let k = self.logprobs.unwrap_or(0);
        let usage = self.continuous(self.prompt_of(index).tokens, sub.text.tokens());
        let stop_reason = d.finish.as_ref().and_then(|f| f.stop_reason.as_deref());
        // The fingerprint goes on each choice's closing chunk unless a usage chunk follows.
        let last = d.finish.is_some() && !self.include_usage;
        match self.api {
            Api::Completions => {
                let mut text = String::new();
                let mut lp = self.logprobs.map(|_| CompletionLogprobs::default());
                if !sub.echoed {
                    sub.echoed = true;
                    if let Some((echo, pieces)) = &self.prompt_of(index).echo {
                        text.push_str(echo);
                        if let Some(lp) = lp.as_mut() {
                            lp.push_prompt(&mut sub.offset, pieces);
                        }
                    }
                }
                text.push_str(&d.text);
                if let Some(lp) = lp.as_mut() {
                    lp.push(&mut sub.offset, &d.logprobs, k);
                }
                let choice = CompletionStreamChoice {
                    index: index as u32,
                    text: &text,
                    logprobs: lp,
                    finish_reason: d.finish.as_ref().map(|f| f.reason),
                    stop_reason,
                    prompt_token_ids: None,
                    token_ids: None,
                };
                self.chunk(vec![choice], usage, last)
            }
            Api::Chat => {
                let logprobs = self.logprobs.map(|k| {
                    let mut l = ChatLogprobs::default();
                    l.push(&d.logprobs, k);
                    l
                });
                let choice = ChatStreamChoice {
                    index: index as u32,
                    delta: ChatDelta {
                        role: None,
                        content: &d.text,
                    },
                    logprobs,
                    finish_reason: d.finish.as_ref().map(|f| f.reason),
                    stop_reason: d.finish.as_ref().map(|_| stop_reason),
                    token_ids: Some(None),
                };
                self.chunk(vec![choice], usage, last)
            }
        }
    }

    /// Chat's opening chunks: the role for each choice, then the echoed assistant prefix.
    fn opening(&self, choices: usize) -> Result<Vec<Bytes>, serde_json::Error> {
        let mut out = Vec::new();
        if self.api != Api::Chat {
            return Ok(out);
        }
        let usage = self.continuous(self.prompt_tokens(), 0);
        for i in 0..choices {
            let choice = ChatStreamChoice {
                index: i as u32,
                delta: ChatDelta {
                    role: Some("assistant"),
                    content: "",
                },
                logprobs: None,
                finish_reason: None,
                stop_reason: None,
                token_ids: None,
            };
            out.push(self.chunk_with(
                vec![choice],
                usage,
                Some(FirstChunkExtra::default()),
                false,
            )?);
        }
        if let Some((echo, _)) = self.prompts.first().and_then(|p| p.echo.as_ref()) {
            for i in 0..choices {
                let choice = ChatStreamChoice {
                    index: i as u32,
                    delta: ChatDelta {
                        role: None,
                        content: echo,
                    },
                    logprobs: None,
                    finish_reason: None,
                    stop_reason: None,
                    token_ids: None,
                };
                out.push(self.chunk(vec![choice], usage, false)?);
            }
        }
        Ok(out)
    }

    /// The `include_usage` chunk: no choices, the request's usage.
    fn usage_chunk(&self, completion_tokens: u32) -> Result<Bytes, serde_json::Error> {
        let usage = StreamUsage::new(self.prompt_tokens(), completion_tokens);
        self.chunk::<()>(Vec::new(), Some(usage), true)
    }

    /// Books vLLM's per-request (parent) histograms: `n` and the longest choice, per prompt.
    fn record_parents(&self, subs: &[Sub]) {
        for group in subs.chunks(self.n.max(1) as usize) {
            let longest = group.iter().map(|s| s.text.tokens()).max().unwrap_or(0);
            self.metrics.record_parent(self.n, longest);
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

/// The SSE body: pulls every choice's engine events and turns each into frames.
pub(crate) struct SseBody {
    subs: Vec<Sub>,
    reply: Reply,
    tokenizer: Tokenizer,
    die_after: Option<u32>,
    emitted: u32,
    queue: std::collections::VecDeque<Bytes>,
    /// Round-robin start, so no choice starves the others.
    next: usize,
    done: bool,
    _load: LoadGuard,
}

impl SseBody {
    /// A stream over `subs`; chat streams open with the role chunks.
    pub(crate) fn new(
        subs: Vec<Sub>,
        reply: Reply,
        tokenizer: Tokenizer,
        die_after: Option<u32>,
        load: LoadGuard,
    ) -> Result<Self, serde_json::Error> {
        let queue = reply.opening(subs.len())?.into();
        Ok(Self {
            subs,
            reply,
            tokenizer,
            die_after,
            emitted: 0,
            queue,
            next: 0,
            done: false,
            _load: load,
        })
    }

    /// The HTTP response streaming this body.
    pub(crate) fn into_response(self) -> Response {
        let headers = [(header::CONTENT_TYPE, "text/event-stream; charset=utf-8")];
        (headers, Body::from_stream(self)).into_response()
    }

    /// Queues the frames for one event of choice `i`, and the closing ones after the last.
    fn push(&mut self, i: usize, ev: Option<Event>) -> Result<(), StreamError> {
        let sub = &mut self.subs[i];
        let before = sub.text.tokens();
        let delta = sub.apply(&self.tokenizer, ev)?;
        self.emitted += sub.text.tokens() - before;
        let frame = self.reply.delta_chunk(i, sub, &delta)?;
        self.queue.push_back(frame);
        if self.subs.iter().all(|s| s.text.is_done()) {
            let total = self.subs.iter().map(|s| s.text.tokens()).sum();
            if self.reply.include_usage {
                self.queue.push_back(self.reply.usage_chunk(total)?);
            }
            self.queue.push_back(Bytes::from_static(DONE));
            self.reply.record_parents(&self.subs);
            self.done = true;
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
            let n = this.subs.len();
            let mut got = None;
            for k in 0..n {
                let i = (this.next + k) % n;
                if this.subs[i].text.is_done() {
                    continue;
                }
                if let Poll::Ready(ev) = this.subs[i].generation.poll_recv(cx) {
                    got = Some((i, ev));
                    break;
                }
            }
            let Some((i, ev)) = got else {
                return Poll::Pending;
            };
            this.next = (i + 1) % n;
            // Cut when the event after the N-th token arrives, not right after yielding it:
            // hyper drops unflushed frames on error, and waiting lets it flush the N-th.
            if this.die_after.is_some_and(|n| this.emitted >= n) {
                this.done = true;
                return Poll::Ready(Some(Err(StreamError::Injected)));
            }
            if let Err(e) = this.push(i, ev) {
                this.done = true;
                return Poll::Ready(Some(Err(e)));
            }
        }
    }
}

/// Waits for every choice and renders the whole body; with `die_after`, a request that
/// reaches that many tokens gets a response whose body fails, so the client sees the
/// connection drop.
pub(crate) async fn collect(
    mut subs: Vec<Sub>,
    reply: Reply,
    tokenizer: &Tokenizer,
    die_after: Option<u32>,
) -> Result<Response, ApiError> {
    let k = reply.logprobs.unwrap_or(0);
    let mut completion = Vec::new();
    let mut chat = Vec::new();
    let mut emitted = 0u32;
    for (i, sub) in subs.iter_mut().enumerate() {
        let mut text = String::new();
        let mut clp = reply.logprobs.map(|_| CompletionLogprobs::default());
        let mut hlp = reply.logprobs.map(|_| ChatLogprobs::default());
        let echo = reply.prompt_of(i).echo.as_ref();
        if let Some((e, pieces)) = echo {
            text.push_str(e);
            if let (Api::Completions, Some(lp)) = (reply.api, clp.as_mut()) {
                lp.push_prompt(&mut sub.offset, pieces);
            }
        }
        let finish = loop {
            if die_after.is_some_and(|n| emitted >= n) {
                let broken = tokio_stream::once(Err::<Bytes, _>(StreamError::Injected));
                return Ok(Body::from_stream(broken).into_response());
            }
            let ev = sub.generation.recv().await;
            let before = sub.text.tokens();
            let d = sub.apply(tokenizer, ev).map_err(|_| ApiError::EngineDead)?;
            emitted += sub.text.tokens() - before;
            text.push_str(&d.text);
            if let Some(lp) = clp.as_mut() {
                lp.push(&mut sub.offset, &d.logprobs, k);
            }
            if let Some(lp) = hlp.as_mut() {
                lp.push(&d.logprobs, k);
            }
            if let Some(f) = d.finish {
                break f;
            }
        };
        match reply.api {
            Api::Completions => completion.push(CompletionChoice {
                index: i as u32,
                text,
                logprobs: clp,
                finish_reason: Some(finish.reason),
                stop_reason: finish.stop_reason,
                token_ids: None,
                prompt_logprobs: None,
                prompt_token_ids: None,
                routed_experts: None,
            }),
            Api::Chat => chat.push(ChatChoice {
                index: i as u32,
                message: ChatMessageOut {
                    role: "assistant",
                    content: text,
                    refusal: None,
                    annotations: None,
                    audio: None,
                    function_call: None,
                    reasoning: None,
                },
                logprobs: hlp,
                finish_reason: finish.reason,
                stop_reason: finish.stop_reason,
                token_ids: None,
                routed_experts: None,
            }),
        }
    }
    reply.record_parents(&subs);
    let total = subs.iter().map(|s| s.text.tokens()).sum();
    let usage = Usage::new(reply.prompt_tokens(), total);
    let body = match reply.api {
        Api::Completions => serde_json::to_vec(&full(&reply, completion, usage, None)),
        Api::Chat => serde_json::to_vec(&full(&reply, chat, usage, Some(ChatExtra::default()))),
    }
    .map_err(ApiError::Encode)?;
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

fn full<'a, C>(
    reply: &'a Reply,
    choices: Vec<C>,
    usage: Usage,
    chat_extra: Option<ChatExtra>,
) -> FullBody<'a, C> {
    FullBody {
        id: &reply.id,
        object: reply.object(false),
        created: reply.created,
        model: &reply.model,
        choices,
        service_tier: None,
        system_fingerprint: Some(&reply.fingerprint),
        usage,
        chat_extra,
        kv_transfer_params: None,
        ec_transfer_params: None,
        metrics: None,
    }
}
