//! Stage account, and the way back: the engine's answer goes to the client (SSE chunk by chunk
//! as it arrives, a plain body whole), while the gateway reads usage for accounting.
//!
//! Under failure: an engine error status is passed on with its body normalised to the error
//! envelope of the path's dialect (OpenAI, or Anthropic on `/v1/messages`); an engine that
//! dies mid-stream, goes silent for `proxy.stream_idle_timeout_ms` (reported as an engine
//! failure), or sends an event over `proxy.max_event_bytes` ends the client's stream with an
//! SSE error event and loses its connection; a client that goes away drops the relay, which drops the upstream body (closing the engine
//! connection, so the engine aborts the request) and releases the pod's slot. Every request is
//! accounted exactly once, by [`Finish`], whichever way it ends.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use brix_admission::Ticket;
use brix_router::Strategy;
use bytes::{Bytes, BytesMut};
use http::header;
use http_body::Frame;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;

use crate::Gateway;
use crate::endpoint::Dialect;
use crate::error::{ErrorBody, GatewayError, bounded};
use crate::handler::{Ctx, encode_session};
use crate::load::Arrival;
use crate::metrics::GaugeGuard;
use crate::pool::{InFlight, PodState};
use crate::sse::{SseTap, Usage, usage_of};
use crate::upstream::{Failure, Sent, report_upstream_failure};

/// How a proxied request ended.
#[derive(Clone, Copy, Debug)]
enum Outcome {
    /// The engine answered in full.
    Done(Option<Usage>),
    /// The engine answered with an error status.
    EngineError(StatusCode),
    /// The engine connection broke after the response started.
    UpstreamBroke,
    /// The engine went silent mid-stream for longer than the idle timeout.
    Stalled,
    /// The client went away first.
    ClientGone,
}

/// Books a request's end exactly once: metrics, pod observations, fairness counts, and the
/// TPM settlement. Dropping it unfinished books a client that went away.
pub(crate) struct Finish {
    gw: Arc<Gateway>,
    model: String,
    strategy: String,
    user: Option<String>,
    start: Instant,
    stream: bool,
    ticket: Option<Ticket>,
    slot: Option<(InFlight, GaugeGuard)>,
    first_byte: Option<Instant>,
    done: bool,
    /// The model's load counters; in flight until this drops.
    arrival: Arrival,
    /// The gateway's own counts, for the optimizer's monitor when the engine sends no
    /// usage: the prompt estimate (bytes / 4) and `max_tokens`.
    estimate: (u64, u64),
}

impl Finish {
    pub(crate) fn new(gw: Arc<Gateway>, cx: &Ctx, ticket: Ticket, arrival: Arrival) -> Self {
        Self {
            gw,
            model: cx.model_label.clone(),
            strategy: cx.strategy_metric.clone(),
            user: cx.user.clone(),
            start: cx.start,
            stream: cx.parsed.stream,
            ticket: Some(ticket),
            slot: None,
            first_byte: None,
            done: false,
            arrival,
            estimate: (
                cx.parsed.prompt_tokens_estimate(),
                cx.parsed.max_tokens.map_or(0, u64::from),
            ),
        }
    }

    /// The request never reached an engine: give back what admission counted.
    pub(crate) fn refund(mut self) {
        self.done = true;
        if let Some(t) = self.ticket.take() {
            let adm = self.gw.admission.clone();
            self.gw.accounting.spawn(async move { adm.refund(t).await });
        }
    }

    fn first_byte(&mut self) {
        if self.first_byte.is_none() {
            let now = Instant::now();
            self.first_byte = Some(now);
            // The pod's booked prefill is done: it decodes now. A plain answer arrives whole,
            // so only a stream's first byte is a TTFT sample for the correction.
            let ttft = self.stream.then(|| (now - self.start).as_secs_f64());
            if let Some((slot, _)) = &mut self.slot {
                slot.first_token(ttft);
            }
        }
    }

    fn complete(&mut self, outcome: Outcome) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        let m = &self.gw.metrics;
        let end = Instant::now();
        let status = match outcome {
            Outcome::Done(_) => "200".to_string(),
            Outcome::EngineError(s) => s.as_str().to_string(),
            Outcome::UpstreamBroke => "502".to_string(),
            Outcome::Stalled => "504".to_string(),
            Outcome::ClientGone => "499".to_string(),
        };
        m.requests
            .with_label_values(&[&self.model, &status, &self.strategy])
            .inc();
        // Unknown usage keeps the reservation: the engine may have done the work.
        let reserved = self.ticket.as_ref().map_or(0, Ticket::reserved_tokens);
        let used = match outcome {
            Outcome::Done(Some(u)) => {
                self.record(u, end);
                u.prompt_tokens + u.completion_tokens
            }
            Outcome::Done(None) => {
                let (input, output) = self.estimate;
                self.gw
                    .optimized
                    .observe(&self.model, input, output, self.gw.now());
                reserved
            }
            Outcome::EngineError(_) => 0,
            Outcome::UpstreamBroke | Outcome::ClientGone | Outcome::Stalled => {
                let reason = match outcome {
                    Outcome::ClientGone => "client_disconnected",
                    Outcome::Stalled => "upstream_stalled",
                    _ => "upstream_broke_mid_response",
                };
                m.errors.with_label_values(&[&self.model, reason]).inc();
                reserved
            }
        };
        if let Some(t) = self.ticket.take() {
            let adm = self.gw.admission.clone();
            self.gw
                .accounting
                .spawn(async move { adm.settle(t, used).await });
        }
        // Releases the pod's in-flight slot and gauge.
        self.slot = None;
    }

    fn record(&self, u: Usage, end: Instant) {
        let m = &self.gw.metrics;
        let e2e = end - self.start;
        m.e2e
            .with_label_values(&[&self.model])
            .observe(e2e.as_secs_f64());
        m.tokens
            .with_label_values(&[&self.model, "prompt"])
            .inc_by(u.prompt_tokens);
        m.tokens
            .with_label_values(&[&self.model, "completion"])
            .inc_by(u.completion_tokens);
        self.gw.optimized.observe(
            &self.model,
            u.prompt_tokens,
            u.completion_tokens,
            self.gw.now(),
        );
        let (ttft, tpot) = match (self.stream, self.first_byte) {
            (true, Some(first)) => {
                let ttft = (first - self.start).as_secs_f64();
                let tpot = (u.completion_tokens > 1)
                    .then(|| (end - first).as_secs_f64() / (u.completion_tokens - 1) as f64);
                (Some(ttft), tpot)
            }
            // A plain response arrives whole: its per-token time is an upper bound.
            _ => (
                None,
                (u.completion_tokens > 0).then(|| e2e.as_secs_f64() / u.completion_tokens as f64),
            ),
        };
        self.arrival
            .counters()
            .finished(u.completion_tokens, ttft, tpot);
        if let Some(t) = ttft {
            m.ttft.with_label_values(&[&self.model]).observe(t);
        }
        if let Some(t) = tpot {
            m.tpot.with_label_values(&[&self.model]).observe(t);
        }
        if let Some((slot, _)) = &self.slot {
            slot.prompt_tokens(u.prompt_tokens);
            slot.pod().observe(
                self.gw.now(),
                u.prompt_tokens,
                u.completion_tokens,
                ttft,
                tpot,
            );
        }
        if let Some(user) = &self.user {
            self.gw.vtc_add(user, u.prompt_tokens, u.completion_tokens);
        }
    }
}

impl Drop for Finish {
    fn drop(&mut self) {
        self.complete(Outcome::ClientGone);
    }
}

/// Turns the engine's response into the client's.
pub(crate) async fn respond(
    gw: &Arc<Gateway>,
    cx: Ctx,
    sent: Sent,
    mut finish: Finish,
) -> Response {
    let Sent {
        resp,
        slot,
        gauge,
        explained,
    } = sent;
    let pod = slot.pod().clone();
    finish.slot = Some((slot, gauge));
    let (mut head, body) = resp.into_parts();
    for h in [
        header::CONNECTION,
        header::TRANSFER_ENCODING,
        header::CONTENT_LENGTH,
    ] {
        head.headers.remove(h);
    }
    head.headers.remove("keep-alive");
    let h = &mut head.headers;
    let set = |h: &mut http::HeaderMap, k: &'static str, v: &str| {
        if let Ok(v) = HeaderValue::from_str(v) {
            h.insert(k, v);
        }
    };
    set(h, "target-pod", &pod.name);
    set(h, "target-pod-ip", &pod.address);
    set(h, "routing-strategy", &cx.strategy_label);
    if let Some(text) = &explained {
        set(h, "x-brix-route-estimate", text);
    }
    if cx
        .strategy
        .0
        .iter()
        .any(|(s, _)| *s == Strategy::SessionAffinity)
    {
        set(h, "x-session-id", &encode_session(&pod.address));
    }
    let limit = gw.cfg.proxy.max_response_bytes;
    let timeout = Duration::from_secs(gw.cfg.proxy.response_timeout_s);
    let dialect = cx.endpoint.dialect();
    let is_sse = head
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    if head.status.is_success() && is_sse {
        let idle = Duration::from_millis(gw.cfg.proxy.stream_idle_timeout_ms);
        let body = Relay {
            inner: Some(body),
            tap: SseTap::new(cx.strip_usage, gw.cfg.proxy.max_event_bytes),
            finish: Some(finish),
            gw: gw.clone(),
            pod,
            dialect,
            idle,
            timer: Box::pin(tokio::time::sleep(idle)),
            waiting: false,
        };
        return Response::from_parts(head, Body::new(body));
    }
    let bytes = match tokio::time::timeout(timeout, Limited::new(body, limit).collect()).await {
        Ok(Ok(c)) => c.to_bytes(),
        Ok(Err(e)) => {
            finish.complete(Outcome::UpstreamBroke);
            return GatewayError::Upstream {
                pod: pod.name.clone(),
                reason: format!("reading the response: {e}"),
            }
            .respond(dialect);
        }
        Err(_) => {
            finish.complete(Outcome::UpstreamBroke);
            report_upstream_failure(gw, &pod, Failure::FirstByteTimeout);
            return GatewayError::UpstreamTimeout(pod.name.clone()).respond(dialect);
        }
    };
    finish.first_byte();
    if !head.status.is_success() {
        finish.complete(Outcome::EngineError(head.status));
        let body = normalise_error(head.status, bytes, dialect);
        head.headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        return Response::from_parts(head, Body::from(body));
    }
    finish.complete(Outcome::Done(usage_of(&bytes)));
    Response::from_parts(head, Body::from(bytes))
}

/// An engine's error body in the dialect's envelope: kept when it already is one (has an
/// `error` object), wrapped otherwise (vLLM's plain-text and `{"detail":..}` answers included).
fn normalise_error(status: StatusCode, body: Bytes, dialect: Dialect) -> Bytes {
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body)
        && v.get("error").is_some_and(serde_json::Value::is_object)
    {
        return body;
    }
    let text = String::from_utf8_lossy(&body);
    let message = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| {
            let m = v.get("detail").or(v.get("message"))?;
            Some(m.as_str().map_or_else(|| m.to_string(), str::to_owned))
        })
        .unwrap_or_else(|| text.trim().to_string());
    Bytes::from(ErrorBody::for_status(dialect, status, &message, None).to_json())
}

/// The SSE body on its way to the client: forwards chunks as they come, taps usage, ends a
/// silent stream after the idle timeout, and books the end exactly once.
struct Relay {
    /// The engine's body; `None` once dropped (the connection closes with it).
    inner: Option<Incoming>,
    tap: SseTap,
    finish: Option<Finish>,
    gw: Arc<Gateway>,
    pod: Arc<PodState>,
    dialect: Dialect,
    idle: Duration,
    timer: Pin<Box<tokio::time::Sleep>>,
    /// Whether the timer runs: it counts only time spent waiting on the engine, never time
    /// the client took to read (a slow reader is not a stalled engine).
    waiting: bool,
}

impl Relay {
    /// An SSE error event in the path's dialect.
    fn error_event(&self, status: StatusCode, code: &str, why: &str) -> Bytes {
        let message = format!("upstream pod {} {why}", bounded(&self.pod.name));
        Bytes::from(ErrorBody::for_status(self.dialect, status, &message, Some(code)).to_sse())
    }

    /// Ends the stream: books `outcome`, drops the engine connection, returns the last bytes.
    fn end(
        &mut self,
        outcome: Outcome,
        mut out: BytesMut,
    ) -> Poll<Option<Result<Frame<Bytes>, std::convert::Infallible>>> {
        self.inner = None;
        if let Some(mut f) = self.finish.take() {
            f.complete(outcome);
        }
        if out.is_empty() {
            return Poll::Ready(None);
        }
        Poll::Ready(Some(Ok(Frame::data(std::mem::take(&mut out).freeze()))))
    }
}

impl http_body::Body for Relay {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        loop {
            let (Some(finish), Some(inner)) = (this.finish.as_mut(), this.inner.as_mut()) else {
                return Poll::Ready(None);
            };
            if !this.waiting {
                this.waiting = true;
                let deadline = tokio::time::Instant::now() + this.idle;
                this.timer.as_mut().reset(deadline);
            }
            let polled = Pin::new(inner).poll_frame(cx);
            let Poll::Ready(polled) = polled else {
                if this.timer.as_mut().poll(cx).is_ready() {
                    tracing::warn!(pod = %this.pod.name, "engine stream went silent; ending it");
                    report_upstream_failure(&this.gw, &this.pod, Failure::StreamStalled);
                    let e = this.error_event(
                        StatusCode::GATEWAY_TIMEOUT,
                        "upstream_timeout",
                        &format!("sent nothing for {} ms", this.idle.as_millis()),
                    );
                    return this.end(Outcome::Stalled, BytesMut::from(&e[..]));
                }
                return Poll::Pending;
            };
            match polled {
                Some(Ok(frame)) => {
                    let Ok(data) = frame.into_data() else {
                        continue;
                    };
                    finish.first_byte();
                    match this.tap.on_chunk(data) {
                        Ok(out) if out.is_empty() => {
                            // Bytes came: the engine is alive; wait afresh.
                            this.waiting = false;
                        }
                        Ok(out) => {
                            this.waiting = false;
                            return Poll::Ready(Some(Ok(Frame::data(out))));
                        }
                        Err(e) => {
                            tracing::warn!(pod = %this.pod.name, error = %e, "engine stream line too long; ending it");
                            let ev = this.error_event(
                                StatusCode::BAD_GATEWAY,
                                "upstream_event_too_large",
                                &e.to_string(),
                            );
                            return this.end(Outcome::UpstreamBroke, BytesMut::from(&ev[..]));
                        }
                    }
                }
                end => {
                    let mut out = BytesMut::from(&this.tap.finish()[..]);
                    let outcome = match end {
                        None if this.tap.done => Outcome::Done(this.tap.usage),
                        None => {
                            let e = this.error_event(
                                StatusCode::BAD_GATEWAY,
                                "upstream_disconnected",
                                "ended the stream early",
                            );
                            out.extend_from_slice(&e);
                            Outcome::UpstreamBroke
                        }
                        Some(Err(e)) => {
                            tracing::warn!(pod = %this.pod.name, error = %e, "engine died mid-stream");
                            let e = this.error_event(
                                StatusCode::BAD_GATEWAY,
                                "upstream_disconnected",
                                "failed mid-stream",
                            );
                            out.extend_from_slice(&e);
                            Outcome::UpstreamBroke
                        }
                        Some(Ok(_)) => continue,
                    };
                    return this.end(outcome, out);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_errors_become_the_dialects_envelope() {
        let kept = Bytes::from_static(
            br#"{"error":{"message":"m","type":"BadRequestError","param":null,"code":400}}"#,
        );
        assert_eq!(
            normalise_error(StatusCode::BAD_REQUEST, kept.clone(), Dialect::OpenAi),
            kept
        );
        let detail = normalise_error(
            StatusCode::NOT_FOUND,
            Bytes::from_static(br#"{"detail":"Not Found"}"#),
            Dialect::OpenAi,
        );
        assert_eq!(
            &detail[..],
            br#"{"error":{"message":"Not Found","type":"invalid_request_error","param":null,"code":null}}"#
        );
        let text = normalise_error(
            StatusCode::SERVICE_UNAVAILABLE,
            Bytes::from_static(b"  busy\n"),
            Dialect::Anthropic,
        );
        assert_eq!(
            &text[..],
            br#"{"type":"error","error":{"type":"overloaded_error","message":"busy"}}"#
        );
    }
}
