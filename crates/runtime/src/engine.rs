//! The one engine beside the runtime: its LoRA, model-list, health and metrics endpoints, each
//! call with a timeout and a bounded reply.

use std::time::Duration;

use axum::body::Bytes;
use axum::http::StatusCode;
use reqwest::header::{AUTHORIZATION, HeaderValue};

use crate::EngineKind;
use crate::error::ApiError;

/// Longest wait for a TCP connection to the engine.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait for an adapter load (the engine reads the weights from disk first).
const LOAD_TIMEOUT: Duration = Duration::from_secs(120);
/// Longest wait for any other engine call.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for the engine's `/health` when answering `/ready`.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(3);
/// Largest reply read from an engine's LoRA or model-list endpoints.
const MAX_REPLY: usize = 4 << 20;
/// Largest metrics exposition read from the engine.
pub(crate) const MAX_METRICS: usize = brix_metrics::MAX_EXPOSITION_BYTES;

/// A status and a bounded body from the engine.
pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) body: Bytes,
}

/// A client for one engine.
pub(crate) struct Engine {
    base: String,
    kind: EngineKind,
    key: Option<String>,
    client: reqwest::Client,
}

impl Engine {
    pub(crate) fn new(base: &str, kind: EngineKind, key: Option<String>) -> std::io::Result<Self> {
        let client = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(std::io::Error::other)?;
        Ok(Self {
            base: base.trim_end_matches('/').to_owned(),
            kind,
            key,
            client,
        })
    }

    /// Asks the engine to load the adapter at `path` (a directory it can read) as `name`.
    pub(crate) async fn load(
        &self,
        name: &str,
        path: &str,
        auth: Option<&HeaderValue>,
    ) -> Result<Reply, ApiError> {
        let body = serde_json::json!({"lora_name": name, "lora_path": path});
        let path = match self.kind {
            EngineKind::Vllm => "/v1/load_lora_adapter",
            EngineKind::Sglang => "/load_lora_adapter",
        };
        self.post(path, &body, auth, LOAD_TIMEOUT, "load_lora_adapter")
            .await
    }

    /// Asks the engine to unload `name`.
    pub(crate) async fn unload(
        &self,
        name: &str,
        auth: Option<&HeaderValue>,
    ) -> Result<Reply, ApiError> {
        let body = serde_json::json!({"lora_name": name});
        let path = match self.kind {
            EngineKind::Vllm => "/v1/unload_lora_adapter",
            EngineKind::Sglang => "/unload_lora_adapter",
        };
        self.post(path, &body, auth, CALL_TIMEOUT, "unload_lora_adapter")
            .await
    }

    /// The engine's `/v1/models`, as it answered.
    pub(crate) async fn models(&self, auth: Option<&HeaderValue>) -> Result<Reply, ApiError> {
        let req = self.authorised(self.client.get(self.url("/v1/models")), auth);
        self.send(req, CALL_TIMEOUT, MAX_REPLY, "models").await
    }

    /// Whether the engine's `/health` answers 200 in time; the reason when not.
    pub(crate) async fn healthy(&self) -> Result<(), String> {
        let req = self.authorised(self.client.get(self.url("/health")), None);
        match self.send(req, HEALTH_TIMEOUT, 64 << 10, "health").await {
            Ok(r) if r.status == StatusCode::OK => Ok(()),
            Ok(r) => Err(format!("engine /health answered {}", r.status.as_u16())),
            Err(e) => Err(e.message),
        }
    }

    /// The engine's `/metrics` text.
    pub(crate) async fn metrics(&self) -> Result<String, ApiError> {
        let req = self.authorised(self.client.get(self.url("/metrics")), None);
        let reply = self.send(req, CALL_TIMEOUT, MAX_METRICS, "metrics").await?;
        if reply.status != StatusCode::OK {
            return Err(ApiError::new(
                StatusCode::BAD_GATEWAY,
                "engine_unavailable",
                format!("engine /metrics answered {}", reply.status.as_u16()),
            ));
        }
        Ok(String::from_utf8_lossy(&reply.body).into_owned())
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The engine's own key when configured, else the caller's `Authorization` (as AIBrix's
    /// runtime forwards it).
    fn authorised(
        &self,
        req: reqwest::RequestBuilder,
        auth: Option<&HeaderValue>,
    ) -> reqwest::RequestBuilder {
        match (&self.key, auth) {
            (Some(k), _) => req.bearer_auth(k),
            (None, Some(h)) => req.header(AUTHORIZATION, h.clone()),
            (None, None) => req,
        }
    }

    async fn post(
        &self,
        path: &str,
        body: &serde_json::Value,
        auth: Option<&HeaderValue>,
        timeout: Duration,
        what: &str,
    ) -> Result<Reply, ApiError> {
        let req = self.authorised(self.client.post(self.url(path)).json(body), auth);
        self.send(req, timeout, MAX_REPLY, what).await
    }

    /// Sends `req`, reading at most `max` bytes of the reply, all within `timeout`.
    async fn send(
        &self,
        req: reqwest::RequestBuilder,
        timeout: Duration,
        max: usize,
        what: &str,
    ) -> Result<Reply, ApiError> {
        let exchange = async {
            let mut resp = req
                .send()
                .await
                .map_err(|e| ApiError::engine_unreachable(what, &e))?;
            let status = resp.status();
            let mut body = Vec::new();
            while let Some(chunk) = resp
                .chunk()
                .await
                .map_err(|e| ApiError::engine_unreachable(what, &e))?
            {
                if body.len() + chunk.len() > max {
                    return Err(ApiError::new(
                        StatusCode::BAD_GATEWAY,
                        "engine_unavailable",
                        format!("engine {what}: reply larger than {max} bytes"),
                    ));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(Reply {
                status,
                body: Bytes::from(body),
            })
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(r) => r,
            Err(_) => Err(ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                "engine_unavailable",
                format!("engine {what}: no reply within {} s", timeout.as_secs()),
            )),
        }
    }
}
