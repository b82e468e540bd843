//! Stages route and proxy: pick a pod with the pure policy, take its in-flight slot, send.
//!
//! Under failure: a pod that fails before any response byte (refused connection, reset before
//! the status line) is dropped from this request's candidates and the request is routed again
//! over the rest, at most `proxy.retries` times; a refused connection also takes the pod out of
//! rotation until its probe succeeds again. A pod that does not send response headers within
//! `proxy.response_timeout_s` is not retried (the engine may be working on it): 504.

use std::sync::Arc;
use std::time::Duration;

use axum::http::HeaderMap;
use brix_router::{Pod, RouteRequest, route};
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
            Ok(Ok(resp)) => return Ok(Sent { resp, slot, gauge }),
            Ok(Err(e)) => {
                if e.is_connect() && pod.set_healthy(false) {
                    tracing::warn!(request_id = %cx.request_id, pod = %pod.name, error = %e, "pod refused a connection; out of rotation until its probe succeeds");
                }
                tracing::debug!(pod = %pod.name, error = %e, attempt, "upstream failed before responding");
                last = GatewayError::Upstream {
                    pod: pod.name.clone(),
                    reason: e.to_string(),
                };
            }
            Err(_) => return Err(GatewayError::UpstreamTimeout(pod.name.clone())),
        }
    }
    Err(last)
}

/// Runs the routing policy over the candidates' snapshots and books the prompt's blocks.
fn choose(
    gw: &Gateway,
    cx: &Ctx,
    req: &RouteRequest<'_>,
    candidates: &[Arc<PodState>],
) -> Result<usize, GatewayError> {
    let now = gw.now();
    let pods: Vec<Pod> = candidates.iter().map(|p| p.snapshot(now)).collect();
    let index = gw.pool.index(&cx.parsed.model);
    let mut index = index.lock().unwrap_or_else(|p| p.into_inner());
    let mut rng = gw.rng();
    let d = route(&cx.strategy, req, &pods, &index, now, &mut rng)
        .map_err(|_| GatewayError::NoReadyPod(cx.parsed.model.clone()))?;
    // The engine will cache this prompt whatever the strategy: record it for prefix routing.
    if !req.blocks.is_empty() {
        index.insert(req.blocks, &pods[d.pod].address, now);
    }
    drop(index);
    let strategy = &cx.strategy_label;
    let fallback = d.fallback.map_or("none", |f| f.as_str());
    gw.metrics
        .decisions
        .with_label_values(&[strategy, &pods[d.pod].name, fallback])
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
