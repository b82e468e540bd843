//! Scale from zero (Knative's activator): a model declared scalable from zero with no pod in
//! rotation holds requests, rings the autoscaler's doorbell, and lets them go on when a pod
//! joins; the queue is bounded, the wait is timed, and every refusal is the OpenAI envelope.

use std::sync::Arc;

use brix_gateway::{GatewayConfig, GatewayHandle, Registry};
use brix_testkit::{Exposition, start_sim};
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::support::{MODEL, chat, eventually, gateway_config, targets};

struct Gated {
    registry: Arc<Registry>,
    handle: GatewayHandle,
    base: String,
    http: reqwest::Client,
}

/// A gateway where [`MODEL`] is known, has no pod, and may scale from zero; `other` is known
/// with no pod and may not.
async fn gated(cfg: GatewayConfig) -> Gated {
    let registry = Arc::new(Registry::new());
    registry.set(MODEL, vec![]);
    registry.set("other", vec![]);
    let (app, handle) = brix_gateway::app_with_handle(cfg, registry.as_ref())
        .await
        .unwrap();
    handle.enable_activation(MODEL);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    Gated {
        registry,
        handle,
        base: format!("http://{addr}"),
        http: reqwest::Client::new(),
    }
}

impl Gated {
    /// Sends `body` in a task; the status and the body text when it ends.
    fn send(&self, body: Value) -> tokio::task::JoinHandle<(u16, String)> {
        let r = self
            .http
            .post(format!("{}/v1/chat/completions", self.base))
            .json(&body);
        tokio::spawn(async move {
            let resp = r.send().await.unwrap();
            (resp.status().as_u16(), resp.text().await.unwrap())
        })
    }

    fn held(&self) -> u32 {
        self.handle.activation(MODEL).unwrap().held()
    }

    async fn held_gauge(&self) -> Option<f64> {
        let text = self
            .http
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        Exposition::parse(&text).value("brix_activator_held_requests", &[("model", MODEL)])
    }
}

fn streaming() -> Value {
    let mut body = chat("cold start, streamed");
    body["stream"] = json!(true);
    body
}

#[tokio::test]
async fn held_requests_go_on_when_a_pod_joins_streaming_too() {
    let g = gated(gateway_config()).await;
    let activation = g.handle.activation(MODEL).unwrap();
    let plain = g.send(chat("cold start"));
    let stream = g.send(streaming());
    eventually("both requests held", || async { g.held() == 2 }).await;
    // The autoscaler's doorbell rang (a permit waits for it).
    tokio::time::timeout(std::time::Duration::from_secs(5), activation.requested())
        .await
        .expect("the activator pokes the autoscaler");
    assert_eq!(g.held_gauge().await, Some(2.0));
    let load = g.handle.load(MODEL);
    assert_eq!((load.requests, load.in_flight, load.completed), (2, 2, 0));
    assert!(load.prompt_tokens > 0, "{load:?}");

    // A replica becomes ready: both go on, no error reaches the client.
    let sim = start_sim(&brix_testkit::sim_config(MODEL)).await;
    g.registry.set(MODEL, targets(std::slice::from_ref(&sim)));
    let (status, body) = plain.await.unwrap();
    assert_eq!(status, 200, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert!(
        body["choices"][0]["message"]["content"].is_string(),
        "{body}"
    );
    let (status, body) = stream.await.unwrap();
    assert_eq!(status, 200, "{body}");
    let events = brix_testkit::sse_events(&body);
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"), "{body}");
    assert!(!body.contains("\"error\""), "{body}");
    assert_eq!(g.held(), 0);
    assert_eq!(g.held_gauge().await, Some(0.0));
    eventually("both counted as completed with their tokens", || async {
        let l = g.handle.load(MODEL);
        l.completed == 2 && l.output_tokens > 0 && l.in_flight == 0
    })
    .await;
}

#[tokio::test]
async fn a_full_queue_is_refused_at_once_and_a_timeout_says_why() {
    let mut cfg = gateway_config();
    cfg.activator.max_held = 2;
    cfg.activator.timeout_s = 1.0;
    let g = gated(cfg).await;
    let first = g.send(chat("a"));
    let second = g.send(streaming());
    eventually("two requests held", || async { g.held() == 2 }).await;
    // One more than the bound: 503 at once, in the envelope, saying so.
    let (status, body) = g.send(chat("c")).await.unwrap();
    assert_eq!(status, 503, "{body}");
    let e: Value = serde_json::from_str(&body).unwrap();
    let message = e["error"]["message"].as_str().unwrap();
    assert!(message.contains("2 requests already wait"), "{message}");
    assert_eq!(e["error"]["code"], "service_unavailable");
    // No replica ever comes: the held ones get 503 naming the wait.
    for task in [first, second] {
        let (status, body) = task.await.unwrap();
        assert_eq!(status, 503, "{body}");
        let e: Value = serde_json::from_str(&body).unwrap();
        let message = e["error"]["message"].as_str().unwrap();
        assert_eq!(
            message, "no replica of model sim became ready within 1 s",
            "{body}"
        );
        assert_eq!(e["error"]["type"], "overloaded_error");
    }
    assert_eq!(g.held(), 0);
}

#[tokio::test]
async fn a_client_that_leaves_frees_its_place_and_undeclared_models_are_refused_at_once() {
    let mut cfg = gateway_config();
    cfg.activator.max_held = 1;
    let g = gated(cfg).await;
    let gone = g.send(chat("leaving"));
    eventually("held", || async { g.held() == 1 }).await;
    gone.abort();
    eventually("its place is free again", || async { g.held() == 0 }).await;
    assert_eq!(g.handle.load(MODEL).in_flight, 0);

    // A model not declared scalable from zero keeps today's answer: 503 at once.
    let mut body = chat("x");
    body["model"] = json!("other");
    let (status, body) = g.send(body).await.unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("no ready pod serves model other"), "{body}");
}
