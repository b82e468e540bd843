//! `POST /v1/completions` and `POST /v1/chat/completions`.
//!
//! Stages, in order: track load → refuse while starting → parse and check parameters →
//! tokenize → draw an injected fault → submit to the engine (unknown adapter → 404, prompt
//! too long → 400) → stream or collect the answer. A failure at any stage is an [`ApiError`].

use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use brix_sim::NewRequest;

use super::protocol::{ChatRequest, CompletionRequest, GenParams, Prompt};
use super::stream::{Api, Reply, SseBody, collect};
use super::{App, LoadGuard, unix_now};
use crate::error::{ApiError, JsonBody, ParamError};
use crate::tokenizer::Tokenizer;

/// `POST /v1/completions`.
pub(crate) async fn completions(
    State(app): State<Arc<App>>,
    JsonBody(req): JsonBody<CompletionRequest>,
) -> Result<Response, ApiError> {
    let load = app.load.track();
    app.faults.check_ready()?;
    let params = req.params()?;
    let prompt = prompt_tokens(&app.tokenizer, req.prompt)?;
    generate(&app, Api::Completions, req.model, prompt, params, load).await
}

/// `POST /v1/chat/completions`.
pub(crate) async fn chat(
    State(app): State<Arc<App>>,
    JsonBody(req): JsonBody<ChatRequest>,
) -> Result<Response, ApiError> {
    let load = app.load.track();
    app.faults.check_ready()?;
    let params = req.params()?;
    let messages = req.messages.iter().map(|m| (m.role.as_str(), m.text()));
    let prompt = app
        .tokenizer
        .encode_chat(&app.tokenizer.render_chat(messages, true));
    generate(&app, Api::Chat, req.model, prompt, params, load).await
}

/// One prompt's token ids; a batch of more than one is refused.
fn prompt_tokens(tokenizer: &Tokenizer, prompt: Prompt) -> Result<Vec<u32>, ApiError> {
    fn single<T>(mut v: Vec<T>) -> Result<T, ParamError> {
        match (v.len(), v.pop()) {
            (1, Some(one)) => Ok(one),
            (n, _) => Err(ParamError::PromptBatch(n)),
        }
    }
    Ok(match prompt {
        Prompt::Text(s) => tokenizer.encode(&s),
        Prompt::Tokens(ids) => ids,
        Prompt::Texts(v) => tokenizer.encode(&single(v)?),
        Prompt::TokenBatches(v) => single(v)?,
    })
}

async fn generate(
    app: &Arc<App>,
    api: Api,
    model: Option<String>,
    prompt: Vec<u32>,
    params: GenParams,
    load: LoadGuard,
) -> Result<Response, ApiError> {
    let (model, lora) = app.resolve(model);
    app.faults.draw().await?;
    let req = NewRequest {
        id: 0,
        prompt,
        max_tokens: params.max_tokens,
        min_tokens: params.min_tokens,
        ignore_eos: params.ignore_eos,
        lora,
    };
    let generation = app.engine.submit(req).await?;
    let prefix = match api {
        Api::Completions => "cmpl",
        Api::Chat => "chatcmpl",
    };
    let reply = Reply {
        api,
        id: app.ids.next(prefix),
        created: unix_now(),
        model,
        prompt_tokens: generation.prompt_tokens,
    };
    let die_after = app.faults.die_after();
    if params.stream {
        let body = SseBody::new(
            generation,
            reply,
            app.tokenizer.clone(),
            params,
            die_after,
            load,
        )
        .map_err(ApiError::Encode)?;
        return Ok(body.into_response());
    }
    let response = collect(generation, reply, &app.tokenizer, die_after).await;
    drop(load);
    response
}
