//! Stages route and proxy: pick a pod with the pure policy, take its in-flight slot, send.
//!
//! Under failure: a pod that fails before any response byte (refused connection, reset before
//! the status line) is dropped from this request's candidates and the request is routed again
//! over the rest, at most `proxy.retries` times. Refused connections, 5xx answers and timeouts
//! count towards the pod's outlier ejection (`PodState::record_failure`); a 2xx answer ends
//! its failure streak and books the prompt in the prefix index (the engine accepted it). A pod
//! that does not send response headers within `proxy.response_timeout_s` is not retried (the
//! engine may be working on it): 504.

use std::sync::Arc;
use std::time::Duration;

use axum::http::HeaderMap;
use brix_router::RouteRequest;
use brix_router::fleet::FailureKind;
use bytes::Bytes;
use http::header;
use http_body_util::Full;
use hyper::body::Incoming;

use crate::Gateway;
use crate::error::GatewayError;
use crate::handler::Ctx;
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
    let model = &cx.parsed.model;
    let timeout = Duration::from_secs(gw.cfg.proxy.response_timeout_s);
    let mut last = GatewayError::NoReadyPod(model.clone());
    for attempt in 0..=gw.cfg.proxy.retries {
        if candidates.is_empty() {
            break;
        }
        if attempt > 0 {
            gw.metrics.retries.with_label_values(&[model]).inc();
        }
        let i = choose(gw, cx, req, &candidates)?;
        let pod = candidates.swap_remove(i);
        let slot = pod.acquire();
        let gauge = gw.metrics.in_flight_guard(model, &pod.name);
        let request = build(&pod.address, cx, headers, body.clone(), gw.strips_auth())?;
        match tokio::time::timeout(timeout, gw.client.request(request)).await {
            Ok(Ok(resp)) => {
                if resp.status().is_server_error() {
                    pod.record_failure(FailureKind::Status5xx);
                } else {
                    pod.record_success();
                }
                if resp.status().is_success() {
                    gw.pool.accepted(model, req.blocks, &pod.address, gw.now());
                }
                return Ok(Sent { resp, slot, gauge });
            }
            Ok(Err(e)) => {
                if pod.record_failure(FailureKind::Connect) {
                    tracing::warn!(request_id = %cx.request_id, pod = %pod.name, error = %e, "pod ejected after failures in a row");
                }
                tracing::debug!(pod = %pod.name, error = %e, attempt, "upstream failed before responding");
                last = GatewayError::Upstream {
                    pod: pod.name.clone(),
                    reason: e.to_string(),
                };
            }
            Err(_) => {
                pod.record_failure(FailureKind::Timeout);
                return Err(GatewayError::UpstreamTimeout(pod.name.clone()));
            }
        }
    }
    Err(last)
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
    let d = gw
        .pool
        .decide(
            &cx.parsed.model,
            candidates,
            &cx.strategy,
            req,
            gw.now(),
            &mut rng,
        )
        .map_err(|_| GatewayError::NoReadyPod(cx.parsed.model.clone()))?;
    let strategy = &cx.strategy_label;
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
    let mut b = http::Request::post(format!("http://{address}{}", cx.endpoint.path()));
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
