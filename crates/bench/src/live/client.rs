//! One streamed completion, timed: send, first token, every later token, end; tokens from the
//! engine's usage; status, `target-pod` and any failure. Every outcome is a [`RequestRecord`]:
//! a request that fails or times out is recorded with its error, never dropped.

use std::time::Duration;

use http::HeaderValue;
use reqwest::{Client, Url};
use serde_json::json;
use tokio::time::{Instant, timeout_at};

use super::stream::{self, Event, SseSplitter};
use crate::report::RequestRecord;

/// Where and how every request of a run is sent.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    /// `…/v1/completions`.
    pub(crate) url: Url,
    /// The `model` field.
    pub(crate) model: String,
    /// Sent as the `routing-strategy` header when set.
    pub(crate) routing_strategy: Option<HeaderValue>,
    /// Longest a request may take, send to last byte.
    pub(crate) timeout: Duration,
}

/// Why one request failed; its `Display` is what the record's `error` holds.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RequestError {
    /// No response: connecting or sending failed.
    #[error("send: {0}")]
    Send(reqwest::Error),
    /// A non-2xx status; the start of the body says why.
    #[error("status {status}: {body}")]
    Status {
        /// The status code.
        status: u16,
        /// Up to 200 bytes of the body.
        body: String,
    },
    /// The body broke off while streaming.
    #[error("read: {0}")]
    Read(reqwest::Error),
    /// The whole reply did not arrive within the per-request timeout.
    #[error("timeout after {0:.1} s")]
    Timeout(f64),
    /// The body ended without `data: [DONE]`.
    #[error("stream ended without [DONE]")]
    Incomplete,
    /// A `data:` payload was not JSON.
    #[error("bad chunk: {0}")]
    Chunk(serde_json::Error),
    /// The stream carried an error object.
    #[error("engine: {0}")]
    Engine(String),
}

/// What the stream showed, filled in as bytes arrive so a failure keeps what came before it.
#[derive(Debug, Default)]
struct Seen {
    tokens_at: Vec<Instant>,
    usage: Option<(u32, u32)>,
    done: bool,
}

/// Sends one request now and times it against `t0` (the run's start).
pub(crate) async fn send(
    client: &Client,
    target: &Target,
    prompt: String,
    workload_prompt_tokens: u32,
    output_tokens: u32,
    t0: Instant,
    mut record: RequestRecord,
) -> RequestRecord {
    let body = json!({
        "model": target.model,
        "prompt": prompt,
        "max_tokens": output_tokens,
        "ignore_eos": true,
        "stream": true,
        "stream_options": {"include_usage": true},
    });
    let mut builder = client.post(target.url.clone()).json(&body);
    if let Some(s) = &target.routing_strategy {
        builder = builder.header("routing-strategy", s.clone());
    }
    let sent = Instant::now();
    let deadline = sent + target.timeout;
    record.sent_s = sent.duration_since(t0).as_secs_f64();
    let mut seen = Seen::default();
    let outcome = exchange(builder, deadline, target.timeout, &mut record, &mut seen).await;
    let end = Instant::now();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    record.e2e_ms = Some(ms(end.duration_since(sent)));
    if let Some(first) = seen.tokens_at.first() {
        record.ttft_ms = Some(ms(first.duration_since(sent)));
    }
    record.itl_ms = seen
        .tokens_at
        .windows(2)
        .map(|w| ms(w[1].duration_since(w[0])))
        .collect();
    let (prompt_tokens, output) = seen.usage.unwrap_or((
        workload_prompt_tokens,
        u32::try_from(seen.tokens_at.len()).unwrap_or(u32::MAX),
    ));
    record.prompt_tokens = prompt_tokens;
    record.output_tokens = output;
    if let (Some(first), Some(last)) = (seen.tokens_at.first(), seen.tokens_at.last())
        && output > 1
    {
        record.tpot_ms = Some(ms(last.duration_since(*first)) / f64::from(output - 1));
    }
    if let Err(e) = outcome {
        record.error = Some(e.to_string());
    }
    record
}

/// The HTTP exchange itself; fills `record.status`, `record.target_pod` and `seen`.
async fn exchange(
    builder: reqwest::RequestBuilder,
    deadline: Instant,
    timeout: Duration,
    record: &mut RequestRecord,
    seen: &mut Seen,
) -> Result<(), RequestError> {
    let timed_out = || RequestError::Timeout(timeout.as_secs_f64());
    let mut resp = timeout_at(deadline, builder.send())
        .await
        .map_err(|_| timed_out())?
        .map_err(RequestError::Send)?;
    record.status = resp.status().as_u16();
    record.target_pod = resp
        .headers()
        .get("target-pod")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if !resp.status().is_success() {
        let body = timeout_at(deadline, resp.bytes())
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        let end = body.len().min(200);
        return Err(RequestError::Status {
            status: record.status,
            body: String::from_utf8_lossy(&body[..end]).into_owned(),
        });
    }
    let mut splitter = SseSplitter::default();
    let mut failure = None;
    loop {
        let chunk = timeout_at(deadline, resp.chunk())
            .await
            .map_err(|_| timed_out())?
            .map_err(RequestError::Read)?;
        let Some(bytes) = chunk else { break };
        let now = Instant::now();
        splitter.push(&bytes, |payload| {
            if failure.is_some() {
                return;
            }
            match stream::parse(payload) {
                Ok(Event::Done) => seen.done = true,
                Ok(Event::Chunk { text, usage }) => {
                    if text {
                        seen.tokens_at.push(now);
                    }
                    if usage.is_some() {
                        seen.usage = usage;
                    }
                }
                Ok(Event::Error(m)) => failure = Some(RequestError::Engine(m)),
                Err(e) => failure = Some(RequestError::Chunk(e)),
            }
        });
        if let Some(f) = failure {
            return Err(f);
        }
    }
    if seen.done {
        Ok(())
    } else {
        Err(RequestError::Incomplete)
    }
}
