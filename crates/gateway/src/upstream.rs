//! Stages route and proxy: pick a pod with the pure policy, take its in-flight slot, send.
//!
//! Under failure: an attempt that fails before any byte reached the client — a 5xx answer
//! (500, 502, 503, 504), a refused or failed connection, no response headers within the
//! first-byte timeout (streams) or the response timeout (plain answers) — is reported
//! ([`report_upstream_failure`]: the pod's outlier ejection) and the request is routed again
//! over the pods not yet tried, at most `proxy.retries` times and only while the retry budget
//! ([`crate::retry::RetryBudget`]) has room. A 4xx is the client's error and never retried.
//! When no retry is left, a 5xx answer goes to the client as the engine sent it, a failed
//! connection becomes 502 and a timeout 504.
//! A 2xx answer (response headers) ends the pod's failure streak and books the prompt in the
//! prefix index: the engine accepted it.

use std::sync::Arc;

use axum::http::HeaderMap;
use brix_router::RouteRequest;
use brix_router::fleet::FailureKind;
use bytes::Bytes;
use http::{StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;

use crate::Gateway;
use crate::error::GatewayError;
use crate::handler::Ctx;
use crate::kv::KvSeen;
use crate::metrics::GaugeGuard;
use crate::pool::{InFlight, PodState};

/// An upstream response whose headers arrived, with the slot it holds.
pub(crate) struct Sent {
    /// The engine's response, body still streaming.
    pub(crate) resp: http::Response<Incoming>,
    /// The pod's in-flight slot (released when the relay finishes or is dropped).
    pub(crate) slot: InFlight,
    /// The in-flight gauge for (model, pod).
    pub(crate) gauge: GaugeGuard,
    /// The candidates' estimates, when the client asked (`x-brix-route-estimate`).
    pub(crate) explained: Option<String>,
}

/// How an engine failed a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The connection was refused or could not be made.
    Connect,
    /// The engine answered 500, 502, 503 or 504.
    Status(StatusCode),
    /// No response headers in time.
    FirstByteTimeout,
    /// A stream went silent for longer than `proxy.stream_idle_timeout_ms`.
    StreamStalled,
}

impl Failure {
    /// Metric label (a bounded set).
    pub(crate) fn as_label(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::Status(_) => "status_5xx",
            Self::FirstByteTimeout => "first_byte_timeout",
            Self::StreamStalled => "stream_stalled",
        }
    }

    /// The routing core's kind of failure.
    fn core(self) -> FailureKind {
        match self {
            Self::Connect => FailureKind::Connect,
            Self::Status(_) => FailureKind::Status5xx,
            Self::FirstByteTimeout | Self::StreamStalled => FailureKind::Timeout,
        }
    }
}

/// The one place an engine failure is reported: counted by kind, and fed to the pod's outlier
/// ejection (`brix_router::fleet`: failures in a row take it out until a good probe).
pub(crate) fn report_upstream_failure(gw: &Gateway, pod: &PodState, kind: Failure) {
    gw.metrics
        .upstream_failures
        .with_label_values(&[&pod.name, kind.as_label()])
        .inc();
    if pod.record_failure(kind.core()) {
        tracing::warn!(pod = %pod.name, kind = kind.as_label(), "pod ejected after engine failures in a row");
    }
}

/// Statuses worth another pod: the engine (or a proxy before it) failed, not the request.
fn retryable(status: StatusCode) -> bool {
    matches!(status.as_u16(), 500 | 502 | 503 | 504)
}

/// Routes and sends, retrying on another pod when one fails before any response byte.
pub(crate) async fn send(
    gw: &Arc<Gateway>,
    cx: &Ctx,
    req: &RouteRequest<'_>,
    mut candidates: Vec<Arc<PodState>>,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<Sent, GatewayError> {
    let model = &cx.model_label;
    let timeout = gw.cfg.proxy.headers_timeout(cx.parsed.stream);
    gw.retry_budget.deposit(gw.now());
    let mut attempt = 0;
    // Whether another attempt may go: attempts left, a pod left, room in the budget.
    let may_retry = |attempt: u32, left: usize| {
        if attempt >= gw.cfg.proxy.retries || left == 0 {
            return false;
        }
        let ok = gw.retry_budget.try_withdraw(gw.now());
        let counter = if ok {
            &gw.metrics.retries
        } else {
            &gw.metrics.retry_budget_exhausted
        };
        counter.with_label_values(&[model]).inc();
        ok
    };
    loop {
        if candidates.is_empty() {
            return Err(GatewayError::NoReadyPod(cx.parsed.model.clone()));
        }
        // The explanation is computed only when asked for or logged.
        let explained = (cx.explain || tracing::enabled!(tracing::Level::DEBUG))
            .then(|| crate::explain::estimates(gw, &cx.parsed.model, req, &candidates));
        let i = choose(gw, cx, req, &candidates)?;
        let pod = candidates.swap_remove(i);
        if let Some(text) = &explained {
            tracing::debug!(model = %cx.model_label, strategy = %cx.strategy_label, pod = %pod.name, estimates = %text, "routed");
        }
        let explained = explained.filter(|_| cx.explain);
        let e = gw.pool.estimate(&cx.parsed.model, &pod, req, gw.now());
        let slot = pod.acquire_booked(req.adapter, &e, f64::from(req.prompt_units));
        let gauge = gw.metrics.in_flight_guard(model, &pod.name);
        let request = build(&pod.address, cx, headers, body.clone(), gw.strips_auth())?;
        let last = match tokio::time::timeout(timeout, gw.client.request(request)).await {
            Ok(Ok(resp)) if !retryable(resp.status()) => {
                pod.record_success();
                if resp.status().is_success() {
                    gw.pool
                        .accepted(&cx.parsed.model, req.blocks, &pod.address, gw.now());
                }
                return Ok(Sent {
                    resp,
                    slot,
                    gauge,
                    explained,
                });
            }
            Ok(Ok(resp)) => {
                report_upstream_failure(gw, &pod, Failure::Status(resp.status()));
                if !may_retry(attempt, candidates.len()) {
                    return Ok(Sent {
                        resp,
                        slot,
                        gauge,
                        explained,
                    });
                }
                tracing::debug!(pod = %pod.name, status = %resp.status(), attempt, "engine failed; retrying");
                attempt += 1;
                continue;
            }
            Ok(Err(e)) => {
                if e.is_connect() {
                    report_upstream_failure(gw, &pod, Failure::Connect);
                }
                tracing::debug!(pod = %pod.name, error = %e, attempt, "upstream failed before responding");
                GatewayError::Upstream {
                    pod: pod.name.clone(),
                    reason: e.to_string(),
                }
            }
            Err(_) => {
                report_upstream_failure(gw, &pod, Failure::FirstByteTimeout);
                GatewayError::UpstreamTimeout(pod.name.clone())
            }
        };
        if !may_retry(attempt, candidates.len()) {
            return Err(last);
        }
        attempt += 1;
    }
}

/// Runs the routing policy over the candidates' snapshots (the prompt is booked in the prefix
/// index only once the engine accepts it).
fn choose(
    gw: &Gateway,
    cx: &Ctx,
    req: &RouteRequest<'_>,
    candidates: &[Arc<PodState>],
) -> Result<usize, GatewayError> {
    let mut rng = gw.rng();
    let mut seen = KvSeen::default();
    let d = gw
        .pool
        .decide_measured(
            &cx.parsed.model,
            candidates,
            &cx.strategy,
            req,
            gw.now(),
            &mut rng,
            &mut seen,
        )
        .map_err(|_| GatewayError::NoReadyPod(cx.parsed.model.clone()))?;
    crate::kv::record(gw, &cx.model_label, req, &seen, d.pod);
    let strategy = &cx.strategy_metric;
    let fallback = d.fallback.map_or("none", |f| f.as_str());
    gw.metrics
        .decisions
        .with_label_values(&[strategy, &candidates[d.pod].name, fallback])
        .inc();
    if let Some(f) = d.fallback {
        gw.warn_once(strategy, f.as_str());
    }
    Ok(d.pod)
}

/// Headers never forwarded: hop-by-hop ones, and those the gateway sets itself.
const DROPPED: [header::HeaderName; 8] = [
    header::HOST,
    header::CONTENT_LENGTH,
    header::CONNECTION,
    header::TRANSFER_ENCODING,
    header::TE,
    header::UPGRADE,
    header::PROXY_AUTHORIZATION,
    header::TRAILER,
];

fn build(
    address: &str,
    cx: &Ctx,
    headers: &HeaderMap,
    body: Bytes,
    strip_auth: bool,
) -> Result<http::Request<Full<Bytes>>, GatewayError> {
    let mut b = http::Request::post(format!("http://{address}{}", cx.path));
    if let Some(h) = b.headers_mut() {
        for (k, v) in headers {
            if DROPPED.contains(k)
                || k == "keep-alive"
                || (strip_auth && k == header::AUTHORIZATION)
            {
                continue;
            }
            h.append(k, v.clone());
        }
        if let Ok(v) = cx.request_id.parse() {
            h.insert("x-request-id", v);
        }
        if let Ok(v) = address.parse() {
            h.insert("target-pod", v);
        }
        h.insert(header::CONTENT_LENGTH, body.len().into());
        h.entry(header::CONTENT_TYPE)
            .or_insert(header::HeaderValue::from_static("application/json"));
    }
    b.body(Full::new(body)).map_err(|e| GatewayError::Upstream {
        pod: address.to_string(),
        reason: format!("building the request: {e}"),
    })
}
