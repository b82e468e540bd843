//! `POST /v1/completions` and `POST /v1/chat/completions`.
//!
//! Stages, in vLLM 0.32's order: track load → refuse while starting → the body's model
//! validators → the model (404) → tools (chat) → lengths → `max_tokens` clamped to what fits
//! → sampling parameters → an injected fault → one engine request per prompt and choice →
//! stream or collect the answer. A failure at any stage is an [`ApiError`] with vLLM's text.

use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use brix_sim::NewRequest;
use serde_json::Value;

use super::choice::{ChoiceSpec, ChoiceText};
use super::protocol::{ChatRequest, CompletionRequest, Prompt};
use super::stream::{Api, PromptOut, Reply, SseBody, Sub, collect};
use super::validate::{self, COMPLETIONS_DEFAULT_MAX_TOKENS, Checked};
use super::{App, LoadGuard, unix_now};
use crate::error::{ApiError, Invalid, JsonBody};
use crate::pydantic::Pydantic;

/// Float fields both APIs declare, type-checked as pydantic checks them.
const FLOATS: &[&str] = &[
    "temperature",
    "top_p",
    "min_p",
    "presence_penalty",
    "frequency_penalty",
    "repetition_penalty",
];
/// Integer fields both APIs declare.
const INTS: &[&str] = &["max_tokens", "n", "min_tokens", "seed", "top_k"];

/// Tokens in cl100k_base, what `logprobs: -1` asks for.
const CL100K_VOCAB: u32 = 100_277;

/// The longest `x-request-id` taken as the response id; longer ones get a generated id.
const MAX_REQUEST_ID: usize = 256;

/// What the body looked like before typed parsing: vLLM's validators see the raw dict.
struct Raw {
    keys: usize,
    stream_options_empty: bool,
    /// Whether the body has a `max_tokens` key (possibly `null`).
    max_tokens_given: bool,
}

impl Raw {
    fn of(v: &Value) -> Self {
        Self {
            keys: v.as_object().map_or(0, |o| o.len()),
            stream_options_empty: v
                .get("stream_options")
                .is_some_and(|s| s.as_object().is_some_and(|o| o.is_empty())),
            max_tokens_given: v.get("max_tokens").is_some(),
        }
    }
}

/// One prompt, tokenized; `text` is what the client sent when it sent text.
struct PromptIn {
    tokens: Vec<u32>,
    from_text: bool,
    text: Option<String>,
}

/// `POST /v1/completions`.
pub(crate) async fn completions(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    JsonBody(raw): JsonBody<Value>,
) -> Result<Response, ApiError> {
    let load = app.load.track();
    app.faults.check_ready()?;
    let shape = Raw::of(&raw);
    Pydantic::check_types(&raw, FLOATS, &[INTS, &["logprobs"]].concat(), &[])
        .map_err(ApiError::Pydantic)?;
    let req: CompletionRequest = serde_json::from_value(raw).map_err(ApiError::Json)?;
    let json = validate::response_format(req.sampling.response_format.as_ref())?;
    let logprobs = validate::completion_logprobs(req.logprobs)?;
    validate::stream_options(&req.sampling, shape.stream_options_empty)?;
    let prompt = match req.prompt {
        None => None,
        Some(Prompt::Text(t)) if t.is_empty() => None,
        Some(p) => Some(p),
    };
    let Some(prompt) = prompt else {
        return Err(Invalid::serving(
            "Either prompt or prompt_embeds must be provided and non-empty.",
        )
        .param("prompt")
        .into());
    };
    let (model, lora) = app.check_model(req.model).await?;
    // Absent means vLLM's default of 16; an explicit null means "what fits", as in chat.
    let requested = match shape.max_tokens_given {
        false => Some(COMPLETIONS_DEFAULT_MAX_TOKENS),
        true => req.max_tokens,
    };
    validate::max_output(requested, "max_tokens", app.max_model_len)?;
    let tok = &app.tokenizer;
    let echo = req.sampling.echo.unwrap_or(false);
    let prompts: Vec<PromptIn> = match prompt {
        Prompt::Text(s) => vec![text_prompt(tok, s, echo)],
        Prompt::Texts(v) => v.into_iter().map(|s| text_prompt(tok, s, echo)).collect(),
        Prompt::Tokens(ids) => vec![ids_prompt(ids)],
        Prompt::TokenBatches(v) => v.into_iter().map(ids_prompt).collect(),
    };
    let plan = plan(&app, &req.sampling, requested, &prompts)?;
    let logprobs = validate::logprobs_allowed(logprobs, CL100K_VOCAB)?;
    let outs = prompts
        .iter()
        .map(|p| PromptOut {
            tokens: p.tokens.len() as u32,
            echo: echo.then(|| {
                let pieces: Vec<String> = p.tokens.iter().map(|&t| tok.decode_one(t)).collect();
                // vLLM echoes the prompt as sent; token prompts as their decoded text.
                let text = p
                    .text
                    .clone()
                    .unwrap_or_else(|| tok.decode(&p.tokens).unwrap_or_default());
                (text, pieces)
            }),
        })
        .collect();
    let target = Target {
        api: Api::Completions,
        model,
        lora,
        id: response_id(&app, &headers, "cmpl"),
        logprobs,
        json,
    };
    generate(&app, target, prompts, outs, plan, load).await
}

/// `POST /v1/chat/completions`.
pub(crate) async fn chat(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    JsonBody(raw): JsonBody<Value>,
) -> Result<Response, ApiError> {
    let load = app.load.track();
    app.faults.check_ready()?;
    let shape = Raw::of(&raw);
    if raw.get("messages").is_none() {
        return Err(ApiError::Pydantic(Pydantic::missing(
            "messages", shape.keys,
        )));
    }
    let ints = [INTS, &["max_completion_tokens", "top_logprobs"]].concat();
    Pydantic::check_types(&raw, FLOATS, &ints, &["messages"]).map_err(ApiError::Pydantic)?;
    let req: ChatRequest = serde_json::from_value(raw).map_err(ApiError::Json)?;
    let json = validate::response_format(req.sampling.response_format.as_ref())?;
    validate::stream_options(&req.sampling, shape.stream_options_empty)?;
    let logprobs = validate::chat_logprobs(req.logprobs, req.top_logprobs)?;
    let tool_choice = validate::tool_usage(req.tools.as_ref(), req.tool_choice.as_ref())?;
    let (model, lora) = app.check_model(req.model).await?;
    validate::tool_choice_served(tool_choice.as_ref())?;
    let (requested, param) = match req.max_completion_tokens {
        Some(m) => (Some(m), "max_completion_tokens"),
        None => (req.max_tokens, "max_tokens"),
    };
    validate::max_output(requested, param, app.max_model_len)?;
    if req.messages.is_empty() {
        return Err(Invalid::serving(
            "Cannot apply chat template to an empty conversation. Provide at least one message.",
        )
        .into());
    }
    let tok = &app.tokenizer;
    let messages = req.messages.iter().map(|m| (m.role.as_str(), m.text()));
    let prompt = tok.encode_chat(&tok.render_chat(messages, true));
    let echo = match (req.sampling.echo, req.messages.last()) {
        (Some(true), Some(last)) if last.role == "assistant" => Some(last.text()),
        _ => None,
    };
    let prompts = vec![PromptIn {
        tokens: prompt,
        from_text: true,
        text: None,
    }];
    let plan = plan(&app, &req.sampling, requested, &prompts)?;
    let logprobs = validate::logprobs_allowed(logprobs, CL100K_VOCAB)?;
    let outs = vec![PromptOut {
        tokens: prompts[0].tokens.len() as u32,
        echo: echo.filter(|e| !e.is_empty()).map(|e| (e, Vec::new())),
    }];
    let target = Target {
        api: Api::Chat,
        model,
        lora,
        id: response_id(&app, &headers, "chatcmpl"),
        logprobs,
        json,
    };
    generate(&app, target, prompts, outs, plan, load).await
}

/// A text prompt; its text is kept only when it will be echoed.
fn text_prompt(tok: &crate::tokenizer::Tokenizer, s: String, keep: bool) -> PromptIn {
    PromptIn {
        tokens: tok.encode(&s),
        from_text: true,
        text: keep.then_some(s),
    }
}

fn ids_prompt(tokens: Vec<u32>) -> PromptIn {
    PromptIn {
        tokens,
        from_text: false,
        text: None,
    }
}

/// Each prompt's clamped `max_tokens`, and the sampling parameters checked against them.
struct Plan {
    max_tokens: Vec<u32>,
    checked: Checked,
}

/// Length checks per prompt, then `max_tokens` clamped to what fits and `SamplingParams`.
fn plan(
    app: &App,
    sampling: &super::protocol::Sampling,
    requested: Option<i64>,
    prompts: &[PromptIn],
) -> Result<Plan, ApiError> {
    let mut max_tokens = Vec::with_capacity(prompts.len());
    let mut checked = None;
    for p in prompts {
        validate::prompt_len(p.tokens.len(), p.from_text, app.max_model_len)?;
        let max = validate::clamp_max_tokens(requested, p.tokens.len(), app.max_model_len);
        checked = Some(validate::sampling(sampling, max)?);
        max_tokens.push(max as u32);
    }
    let checked = match checked {
        Some(c) => c,
        None => validate::sampling(sampling, requested.unwrap_or(1))?,
    };
    Ok(Plan {
        max_tokens,
        checked,
    })
}

/// Who answers and how the reply is shaped.
struct Target {
    api: Api,
    model: String,
    lora: Option<String>,
    id: String,
    logprobs: Option<u32>,
    json: bool,
}

/// `<prefix>-<x-request-id>` when the client sent a usable one, else `<prefix>-<16 hex>`.
fn response_id(app: &App, headers: &HeaderMap, prefix: &str) -> String {
    let given = headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= MAX_REQUEST_ID);
    match given {
        Some(v) => format!("{prefix}-{v}"),
        None => app.ids.next(prefix),
    }
}

async fn generate(
    app: &Arc<App>,
    target: Target,
    prompts: Vec<PromptIn>,
    outs: Vec<PromptOut>,
    plan: Plan,
    load: LoadGuard,
) -> Result<Response, ApiError> {
    app.faults.draw().await?;
    let c = plan.checked;
    let spec = Arc::new(ChoiceSpec {
        stop: c.stop.clone(),
        include_stop: c.include_stop,
        logprobs: target.logprobs,
        json: target.json,
        vocab: app.vocab.clone(),
    });
    let mut subs = Vec::with_capacity(prompts.len() * c.n as usize);
    for (p, max_tokens) in prompts.into_iter().zip(plan.max_tokens) {
        // As with a model, the answer to a seed depends on the prompt too.
        let prompt_hash = p.tokens.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &t| {
            (h ^ u64::from(t)).wrapping_mul(0x0100_0000_01b3)
        });
        for j in 0..c.n {
            let seed = c
                .seed
                .map(|s| s.wrapping_add(u64::from(j)) ^ prompt_hash.rotate_left(1));
            let req = NewRequest {
                id: 0,
                prompt: p.tokens.clone(),
                max_tokens: Some(max_tokens),
                min_tokens: c.min_tokens,
                ignore_eos: c.ignore_eos,
                lora: target.lora.clone(),
                seed,
            };
            let generation = app.engine.submit(req).await?;
            let text_seed = seed.unwrap_or_else(|| generation.id());
            subs.push(Sub::new(
                generation,
                ChoiceText::new(spec.clone(), text_seed),
            ));
        }
    }
    let reply = Reply {
        api: target.api,
        id: target.id,
        created: unix_now(),
        model: target.model,
        prompts: outs,
        n: c.n,
        logprobs: target.logprobs,
        include_usage: c.include_usage,
        continuous_usage: c.continuous_usage,
        metrics: app.metrics.clone(),
        fingerprint: app.fingerprint.clone(),
    };
    let die_after = app.faults.die_after();
    if c.stream {
        let body = SseBody::new(subs, reply, app.tokenizer.clone(), die_after, load)
            .map_err(ApiError::Encode)?;
        return Ok(body.into_response());
    }
    let response = collect(subs, reply, &app.tokenizer, die_after).await;
    drop(load);
    response
}
