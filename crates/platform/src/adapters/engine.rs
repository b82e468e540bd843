//! The engine's LoRA API as vLLM serves it: `GET /v1/models` (adapters are the entries with a
//! `parent`), `POST /v1/load_lora_adapter {"lora_name", "lora_path"}` and
//! `POST /v1/unload_lora_adapter {"lora_name"}`.
//! AIBrix's runtime sidecar (`aibrix-runtime`, port 8080) takes the same adapter by its
//! artifact URL instead: `POST /v1/lora_adapter/load {"lora_name", "artifact_url",
//! "additional_config"}` and `POST /v1/lora_adapter/unload {"lora_name"}` (the Kubernetes
//! controller uses it when a pod has one).
//! Guardrails: every call has a timeout ([`LIST_TIMEOUT`], [`LOAD_TIMEOUT`]) and a 1 MiB body
//! limit; an engine's error text is cut to 300 bytes before it reaches a status or a log.

use std::collections::BTreeSet;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// `GET /v1/models` must answer within this.
pub const LIST_TIMEOUT: Duration = Duration::from_secs(5);
/// A load reads the weights from disk (and vLLM may build the adapter on the CPU): seconds.
pub const LOAD_TIMEOUT: Duration = Duration::from_secs(120);
const BODY_LIMIT: usize = 1 << 20;
const ERROR_TEXT: usize = 300;

/// A client for engines' LoRA endpoints.
#[derive(Clone)]
pub struct EngineClient {
    client: Client<HttpConnector, Full<Bytes>>,
}

/// Why an engine call failed, and whether trying again may help.
#[derive(Clone, Debug, PartialEq)]
pub struct CallError {
    /// One line: the HTTP status and the engine's message, or the transport error.
    pub why: String,
    /// Transport errors, timeouts and 5xx other than a refused rank may pass; 4xx will not.
    pub retryable: bool,
}

/// An engine's `/v1/models`: the adapters it has loaded and its base model's `root` (its path).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Listing {
    /// Adapters loaded (entries with a `parent`).
    pub adapters: BTreeSet<String>,
    /// The base models' `root` (the path or hub id served).
    pub roots: Vec<String>,
}

impl Default for EngineClient {
    fn default() -> Self {
        Self::new()
    }
}

impl EngineClient {
    /// A client with a 2 s connect timeout (calls have their own timeouts).
    pub fn new() -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(2)));
        Self {
            client: Client::builder(TokioExecutor::new()).build(connector),
        }
    }

    /// The adapters `address` lists.
    pub async fn list(&self, address: &str, key: Option<&str>) -> Result<Listing, CallError> {
        let (status, body) = self
            .call(Method::GET, address, "/v1/models", None, key, LIST_TIMEOUT)
            .await?;
        if !status.is_success() {
            return Err(http_error(status, &body));
        }
        parse_listing(&body).ok_or_else(|| CallError {
            why: "/v1/models: not an OpenAI model list".into(),
            retryable: true,
        })
    }

    /// Loads `name` from `path`; an engine that already has it counts as success.
    pub async fn load(
        &self,
        address: &str,
        name: &str,
        path: &str,
        key: Option<&str>,
    ) -> Result<(), CallError> {
        let body = serde_json::json!({"lora_name": name, "lora_path": path});
        self.post_load(address, "/v1/load_lora_adapter", body, key)
            .await
    }

    /// Unloads `name`; an engine that does not have it counts as success.
    pub async fn unload(
        &self,
        address: &str,
        name: &str,
        key: Option<&str>,
    ) -> Result<(), CallError> {
        self.post_unload(address, "/v1/unload_lora_adapter", name, key)
            .await
    }

    /// Loads `name` through AIBrix's runtime sidecar at `address`, which downloads
    /// `artifact_url` and loads it into its engine; "already loaded" counts as success.
    pub async fn sidecar_load(
        &self,
        address: &str,
        name: &str,
        artifact_url: &str,
        additional_config: &std::collections::BTreeMap<String, String>,
        key: Option<&str>,
    ) -> Result<(), CallError> {
        self.sidecar_load_with(address, name, artifact_url, additional_config, None, key)
            .await
    }

    /// [`Self::sidecar_load`] with the artifact store's `credentials` (the keys of a
    /// ModelAdapter's secret: `AWS_ACCESS_KEY_ID`, `HF_TOKEN`, ...), what `brix up` sends its
    /// runtime sidecars; never logged.
    pub async fn sidecar_load_with(
        &self,
        address: &str,
        name: &str,
        artifact_url: &str,
        additional_config: &std::collections::BTreeMap<String, String>,
        credentials: Option<&std::collections::BTreeMap<String, String>>,
        key: Option<&str>,
    ) -> Result<(), CallError> {
        let mut body = serde_json::json!({
            "lora_name": name,
            "artifact_url": artifact_url,
            "additional_config": additional_config,
        });
        if let Some(c) = credentials {
            body["credentials"] = serde_json::json!(c);
        }
        self.post_load(address, "/v1/lora_adapter/load", body, key)
            .await
    }

    /// Unloads `name` through AIBrix's runtime sidecar; one it does not have counts as success.
    pub async fn sidecar_unload(
        &self,
        address: &str,
        name: &str,
        key: Option<&str>,
    ) -> Result<(), CallError> {
        self.post_unload(address, "/v1/lora_adapter/unload", name, key)
            .await
    }

    /// POSTs a load to `path`; an engine that already has the adapter counts as success.
    async fn post_load(
        &self,
        address: &str,
        path: &str,
        body: serde_json::Value,
        key: Option<&str>,
    ) -> Result<(), CallError> {
        let (status, reply) = self
            .call(Method::POST, address, path, Some(body), key, LOAD_TIMEOUT)
            .await?;
        if status.is_success() || (status == StatusCode::BAD_REQUEST && already_loaded(&reply)) {
            return Ok(());
        }
        Err(http_error(status, &reply))
    }

    /// POSTs an unload of `name` to `path`; an engine without it counts as success.
    async fn post_unload(
        &self,
        address: &str,
        path: &str,
        name: &str,
        key: Option<&str>,
    ) -> Result<(), CallError> {
        let body = serde_json::json!({"lora_name": name});
        let (status, reply) = self
            .call(Method::POST, address, path, Some(body), key, LIST_TIMEOUT)
            .await?;
        if status.is_success() || status == StatusCode::NOT_FOUND {
            return Ok(());
        }
        Err(http_error(status, &reply))
    }

    async fn call(
        &self,
        method: Method,
        address: &str,
        path: &str,
        json: Option<serde_json::Value>,
        key: Option<&str>,
        timeout: Duration,
    ) -> Result<(StatusCode, Bytes), CallError> {
        let transport = |why: String| CallError {
            why,
            retryable: true,
        };
        let mut req = Request::builder()
            .method(method)
            .uri(format!("http://{address}{path}"));
        if let Some(k) = key {
            req = req.header(http::header::AUTHORIZATION, format!("Bearer {k}"));
        }
        let body = match json {
            Some(v) => {
                req = req.header(http::header::CONTENT_TYPE, "application/json");
                Full::new(Bytes::from(v.to_string()))
            }
            None => Full::new(Bytes::new()),
        };
        let req = req.body(body).map_err(|e| transport(e.to_string()))?;
        let exchange = async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| transport(format!("{path}: {e}")))?;
            let status = resp.status();
            let body = Limited::new(resp.into_body(), BODY_LIMIT)
                .collect()
                .await
                .map_err(|e| transport(format!("{path}: reading the reply: {e}")))?
                .to_bytes();
            Ok((status, body))
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| transport(format!("{path}: no reply within {} s", timeout.as_secs())))?
    }
}

/// The adapters and roots in a `/v1/models` body; `None` when it is not a model list.
pub(crate) fn parse_listing(body: &[u8]) -> Option<Listing> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let data = v.get("data")?.as_array()?;
    let mut listing = Listing::default();
    for m in data {
        let Some(id) = m.get("id").and_then(|i| i.as_str()) else {
            continue;
        };
        if m.get("parent").is_some_and(|p| !p.is_null()) {
            listing.adapters.insert(id.to_string());
        } else if let Some(root) = m.get("root").and_then(|r| r.as_str()) {
            listing.roots.push(root.to_string());
        }
    }
    Some(listing)
}

fn already_loaded(body: &[u8]) -> bool {
    String::from_utf8_lossy(body).contains("already been loaded")
}

fn http_error(status: StatusCode, body: &[u8]) -> CallError {
    let message = brix_api::openai::ErrorEnvelope::parse(body)
        .map_or_else(|| String::from_utf8_lossy(body).into_owned(), |e| e.message);
    let message = cut(message.trim(), ERROR_TEXT);
    CallError {
        why: format!("{}: {message}", status.as_u16()),
        // vLLM answers a rank above --max-lora-rank with 500; no retry changes that.
        retryable: (status.is_server_error() && !message.contains("max_lora_rank"))
            || status == StatusCode::TOO_MANY_REQUESTS,
    }
}

/// `s` cut to at most `max` bytes on a character boundary.
pub(crate) fn cut(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listing_takes_adapters_from_entries_with_a_parent() {
        let body = br#"{"object":"list","data":[
            {"id":"tiny","root":"/m/base","parent":null},
            {"id":"sql","root":"/a/sql","parent":"tiny"}]}"#;
        let l = parse_listing(body).expect("a list");
        assert_eq!(l.adapters.into_iter().collect::<Vec<_>>(), vec!["sql"]);
        assert_eq!(l.roots, vec!["/m/base"]);
        assert!(parse_listing(b"garbage").is_none());
        assert!(parse_listing(b"{}").is_none());
    }

    #[test]
    fn errors_say_whether_to_retry() {
        let e = http_error(StatusCode::NOT_FOUND, br#"{"error":{"message":"no such path","type":"NotFoundError","param":null,"code":404}}"#);
        assert_eq!(e.why, "404: no such path");
        assert!(!e.retryable);
        assert!(http_error(StatusCode::SERVICE_UNAVAILABLE, b"busy").retryable);
        let rank = br#"{"error":{"message":"LoRA rank 16 is greater than max_lora_rank 8.","type":"x","param":null,"code":500}}"#;
        assert!(!http_error(StatusCode::INTERNAL_SERVER_ERROR, rank).retryable);
        let long = "é".repeat(400);
        assert!(
            http_error(StatusCode::BAD_REQUEST, long.as_bytes())
                .why
                .len()
                < 320
        );
    }
}
