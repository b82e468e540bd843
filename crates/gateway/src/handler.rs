//! One proxied request, in named stages: parse → authenticate → admit → route → proxy →
//! account. Each stage says below what it does under failure; every failure becomes an
//! answer in exactly one place ([`crate::error`]).

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Request};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use brix_router::{RouteRequest, Strategy, Weighted};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use tracing::Instrument;

use crate::Gateway;
use crate::activator;
use crate::adapters;
use crate::catalog;
use crate::error::GatewayError;
use crate::metrics::{model_label, strategy_label};
use crate::parse::{self, Endpoint, ParseError, Parsed};
use crate::relay::Finish;
use crate::upstream;

/// What later stages need to know about the request.
pub(crate) struct Ctx {
    pub(crate) endpoint: Endpoint,
    /// The path the client called (forwarded as is: aliases stay aliases).
    pub(crate) path: &'static str,
    pub(crate) request_id: String,
    pub(crate) start: Instant,
    pub(crate) parsed: Parsed,
    /// The model as metrics label it (a known model; see [`crate::metrics`]).
    pub(crate) model_label: String,
    pub(crate) strategy: Weighted,
    /// `strategy` as the `routing-strategy` response header spells it.
    pub(crate) strategy_label: String,
    /// `strategy` as metrics label it (canonical names, no weights).
    pub(crate) strategy_metric: String,
    pub(crate) user: Option<String>,
    /// The gateway added `include_usage`; the client did not ask for the usage chunk.
    pub(crate) strip_usage: bool,
    /// The client asked (`x-brix-explain: 1`) for the candidates' estimates in a header.
    pub(crate) explain: bool,
}

/// Axum entry point for every proxied path.
pub(crate) async fn proxy(
    gw: Arc<Gateway>,
    endpoint: Endpoint,
    path: &'static str,
    req: Request<Body>,
) -> Response {
    let start = Instant::now();
    let request_id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .map_or_else(new_request_id, str::to_string);
    let span = tracing::debug_span!("request", id = %request_id, path);
    let served = serve(&gw, endpoint, path, req, start, request_id.clone())
        .instrument(span)
        .await;
    let mut resp = match served {
        Ok(r) => r,
        Err((model, e)) => {
            tracing::debug!(error = %e, "request refused");
            let model = model_label(&model, gw.pool.knows(&model));
            gw.metrics
                .errors
                .with_label_values(&[&model, e.as_label()])
                .inc();
            let status = e.status();
            let strategy = match e {
                GatewayError::Strategy(_) => "invalid",
                _ => "none",
            };
            gw.metrics
                .requests
                .with_label_values(&[&model, status.as_str(), strategy])
                .inc();
            e.respond(endpoint.dialect())
        }
    };
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        resp.headers_mut().insert("request-id", v);
    }
    resp
}

type Refusal = (String, GatewayError);

async fn serve(
    gw: &Arc<Gateway>,
    endpoint: Endpoint,
    path: &'static str,
    req: Request<Body>,
    start: Instant,
    request_id: String,
) -> Result<Response, Refusal> {
    let unknown = |e: GatewayError| (String::new(), e);
    let (head, body) = req.into_parts();
    // Authenticate: a missing or wrong key ends here, before the body is read.
    gw.admission
        .authenticate(header(&head.headers, "authorization"))
        .map_err(|r| unknown(GatewayError::Admission(r)))?;
    // Parse: read at most max_body_bytes, then only the fields routing needs.
    let bytes = read_body(body, gw.cfg.proxy.max_body_bytes)
        .await
        .map_err(unknown)?;
    let mut parsed = parse::parse(endpoint, &bytes).map_err(|e| unknown(e.into()))?;
    if parsed.model.is_empty() {
        // As vLLM: a request without a model goes to the only model served, if one.
        parsed.model =
            only_model(gw).ok_or_else(|| unknown(ParseError::Missing("model").into()))?;
    }
    let model = parsed.model.clone();
    let refuse = |e: GatewayError| (model.clone(), e);
    let asked: Option<Weighted> = match header(&head.headers, "routing-strategy") {
        Some(s) if !s.trim().is_empty() => Some(
            s.parse()
                .map_err(|e: brix_router::StrategyParseError| refuse(e.into()))?,
        ),
        _ => None,
    };
    if !gw.pool.knows(&model) {
        return Err(refuse(GatewayError::ModelNotFound(model.clone())));
    }
    // A LoRA adapter: its own default strategy, and only pods holding it (not draining it).
    let is_adapter = gw.pool.is_adapter(&model);
    let strategy = asked.unwrap_or_else(|| match is_adapter {
        true => gw.adapter_strategy.clone(),
        false => gw.default_strategy.clone(),
    });
    if is_adapter && gw.pool.route(&model).is_some() {
        gw.adapter_rates.count(&model, gw.now());
    }
    // Counted for the autoscaler from here (a known model), in flight until it ends. An
    // adapter's requests run on its base model's replicas, so they load the base model.
    let load_model = match is_adapter {
        true => gw.pool.base_of(&model).unwrap_or_else(|| model.clone()),
        false => model.clone(),
    };
    let arrival = gw
        .loads
        .of(&load_model)
        .arrived(parsed.prompt_tokens_estimate());
    let mut candidates = gw.pool.candidates(&model);
    if candidates.is_empty() && is_adapter {
        // Wait for a holder while the adapter is being placed; else 503 naming it.
        candidates = adapters::hold(gw, &model, &gw.cfg.adapters)
            .await
            .map_err(refuse)?;
    } else if candidates.is_empty()
        && let Some(gate) = gw.activator.gate(&model)
    {
        // Scale from zero: wait for a replica instead of refusing.
        candidates = activator::hold(gw, gate, &model, &gw.cfg.activator)
            .await
            .map_err(refuse)?;
    }
    if !is_adapter && !candidates.is_empty() {
        // The optimizer's plan: the pods of the deployment drawn for this request's shape.
        let prompt = u32::try_from(parsed.prompt_tokens_estimate()).unwrap_or(u32::MAX);
        let narrowed = gw.optimized.narrow(
            &model,
            &mut candidates,
            prompt,
            match parsed.max_tokens {
                Some(m) if parsed.output_exact => brix_router::OutputHint::Exactly(m),
                m => m.into(),
            },
            &mut gw.rng(),
        );
        if narrowed != crate::optimizer::Narrowed::NoPlan {
            gw.metrics
                .plan_routing
                .with_label_values(&[&model, narrowed.as_label()])
                .inc();
        }
    }
    let Some(first) = candidates.first() else {
        return Err(refuse(GatewayError::NoReadyPod(model.clone())));
    };
    // Upstream body: streaming requests always ask for usage so tokens can be counted.
    let strip_usage = parsed.stream && !parsed.include_usage && endpoint.has_stream_options();
    let bytes_in = bytes.clone();
    let body = if strip_usage {
        parse::with_include_usage(&bytes).map_err(|e| refuse(e.into()))?
    } else {
        bytes
    };
    // Admit: RPM, TPM (reserving what the request may use) and model RPS. A `user` header
    // that is not UTF-8 names no user (refused when users are required).
    let user = head
        .headers
        .get("user")
        .and_then(|v| std::str::from_utf8(v.as_bytes()).ok())
        .map(str::to_string);
    let reserve = reservation(gw, endpoint, &parsed, &first.address).await;
    let ticket = gw
        .admission
        .admit(user.as_deref(), &model, reserve, unix_now())
        .await
        .map_err(|r| refuse(GatewayError::Admission(r)))?;
    let (blocks, prompt_units) = gw.blocks(&parsed.key);
    // With KV events, the prompt's token ids as the engine will see them (exact index).
    let tokens = crate::kv::request_tokens(&gw.kv, &load_model, endpoint, bytes_in).await;
    // The fairness view costs a pass over the users: only vtc-basic reads it.
    let vtc = user
        .as_deref()
        .filter(|_| strategy.0.iter().any(|(s, _)| *s == Strategy::VtcBasic))
        .map(|u| gw.vtc_view(u));
    let session_pod = header(&head.headers, "x-session-id").map(decode_session);
    let route_req = RouteRequest {
        user: user.as_deref(),
        session_pod: session_pod.as_deref(),
        session_key: header(&head.headers, "x-aibrix-session-key"),
        blocks: &blocks,
        prompt_units,
        max_tokens: parsed.max_tokens,
        output_exact: parsed.output_exact,
        vtc,
        adapter: is_adapter.then_some(model.as_str()),
        tokens: tokens.as_deref(),
        prompt_tokens: None,
    };
    let cx = Ctx {
        endpoint,
        path,
        request_id,
        start,
        parsed,
        model_label: model.clone(),
        strategy_label: strategy.to_string(),
        strategy_metric: strategy_label(&strategy),
        strategy,
        user: user.clone(),
        strip_usage,
        explain: crate::explain::asked(&head.headers),
    };
    let finish = Finish::new(gw.clone(), &cx, ticket, arrival);
    // Route and proxy, retrying on another pod when one fails before any response byte.
    match upstream::send(gw, &cx, &route_req, candidates, &head.headers, body).await {
        Ok(sent) => Ok(crate::relay::respond(gw, cx, sent, finish).await),
        Err(e) => {
            finish.refund();
            Err(refuse(e))
        }
    }
}

/// The one base model the gateway serves, when there is exactly one.
fn only_model(gw: &Gateway) -> Option<String> {
    let mut bases = gw
        .pool
        .routable()
        .into_iter()
        .filter(|(_, parent)| parent.is_none());
    match (bases.next(), bases.next()) {
        (Some((m, _)), None) => Some(m),
        _ => None,
    }
}

/// Tokens TPM books before the request runs: the prompt's estimate (4 bytes a token) plus,
/// for a generating request, `n` × what it may generate — its `max_tokens`, or when it sends
/// none, the rest of the model's context (the engine's `max_model_len`), as vLLM allows.
async fn reservation(gw: &Gateway, endpoint: Endpoint, p: &Parsed, address: &str) -> u64 {
    if !endpoint.consumes_tokens() {
        return 0;
    }
    let prompt = p.prompt_tokens_estimate();
    if !endpoint.generates() {
        return prompt;
    }
    let room = |ctx: u32| u64::from(ctx).saturating_sub(prompt).max(1);
    let each = match p.max_tokens {
        Some(m) => u64::from(m),
        None => room(catalog::max_model_len(gw, &p.model, address).await),
    };
    prompt + u64::from(p.n) * each
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

async fn read_body(body: Body, limit: usize) -> Result<bytes::Bytes, GatewayError> {
    match Limited::new(body, limit).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
            Err(GatewayError::BodyTooLarge(limit))
        }
        Err(e) => Err(GatewayError::BodyRead(e.to_string())),
    }
}

/// `x-session-id` is base64 of the pinned pod's `ip:port` (AIBrix); a raw address works too.
fn decode_session(v: &str) -> String {
    base64::engine::general_purpose::STANDARD
        .decode(v.trim())
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .filter(|s| s.contains(':'))
        .unwrap_or_else(|| v.trim().to_string())
}

/// The `x-session-id` value that pins a session to `address`.
pub(crate) fn encode_session(address: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(address)
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// A random UUID v4 in its usual text form.
fn new_request_id() -> String {
    let b: u128 = rand::random();
    let b = (b & !(0xf << 76) | (0x4 << 76)) & !(0x3 << 62) | (0x2 << 62);
    let h = format!("{b:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// Answers a known path called with the wrong method.
pub(crate) async fn wrong_method(req: Request<Body>) -> Response {
    GatewayError::MethodNotAllowed(req.method().to_string()).into_response()
}

/// Answers every path the gateway does not serve.
pub(crate) async fn not_found(req: Request<Body>) -> Response {
    GatewayError::UnknownPath(req.uri().path().to_string()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_uuid_v4() {
        let id = new_request_id();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        assert!(matches!(&id[19..20], "8" | "9" | "a" | "b"), "{id}");
        assert_ne!(id, new_request_id());
    }

    #[test]
    fn session_ids_round_trip() {
        let s = encode_session("10.0.0.1:8000");
        assert_eq!(decode_session(&s), "10.0.0.1:8000");
        assert_eq!(decode_session("10.0.0.2:8000"), "10.0.0.2:8000");
    }
}
