//! What clients get through the gateway: bodies, SSE, headers, the model list and metrics.

use brix_testkit::sse_events;
use serde_json::json;

use crate::support::{MODEL, chat, header, plain};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_requests_carry_aibrix_headers() {
    let f = plain(2).await;
    let r = f
        .post(
            "/v1/chat/completions",
            &chat("hello"),
            &[
                ("routing-strategy", "least-request"),
                ("x-request-id", "abc-1"),
            ],
        )
        .await;
    assert_eq!(r.status(), 200);
    assert!(header(&r, "target-pod").starts_with("pod-"));
    let ip = header(&r, "target-pod-ip");
    assert!(f.sims.iter().any(|s| s.addr.to_string() == ip), "{ip}");
    assert_eq!(header(&r, "routing-strategy"), "least-request");
    assert_eq!(header(&r, "request-id"), "abc-1");
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["usage"]["completion_tokens"], 4);

    // No header: the configured default strategy routes, and a fresh request id is made.
    let r = f
        .post(
            "/v1/completions",
            &json!({"model": MODEL, "prompt": [1, 2, 3], "max_tokens": 4}),
            &[],
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "routing-strategy"), "least-request");
    assert_eq!(header(&r, "request-id").len(), 36);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_pass_through_and_usage_is_counted() {
    let f = plain(2).await;
    // The client did not ask for usage: it gets none, but the gateway still counts tokens.
    let body = json!({"model": MODEL, "prompt": "count me", "stream": true});
    let r = f.post("/v1/completions", &body, &[]).await;
    assert_eq!(r.status(), 200);
    assert!(header(&r, "content-type").starts_with("text/event-stream"));
    let events = sse_events(&r.text().await.unwrap());
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    assert_eq!(events.len(), 5, "4 tokens and [DONE]: {events:?}");
    assert!(
        events.iter().all(|e| !e.contains("\"usage\":{")),
        "{events:?}"
    );

    // The client asked: it gets the usage chunk, untouched.
    let body = json!({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": true, "stream_options": {"include_usage": true}});
    let r = f.post("/v1/chat/completions", &body, &[]).await;
    let events = sse_events(&r.text().await.unwrap());
    let usage: serde_json::Value = serde_json::from_str(&events[events.len() - 2]).unwrap();
    assert_eq!(usage["usage"]["completion_tokens"], 4);

    let m = f.metrics().await;
    let completion = m.value(
        "brix_gateway_tokens_total",
        &[("model", MODEL), ("kind", "completion")],
    );
    assert_eq!(completion, Some(8.0), "both streams counted exactly once");
    let ok: f64 = m
        .find(
            "brix_gateway_requests_total",
            &[("model", MODEL), ("status", "200")],
        )
        .map(|s| s.value)
        .sum();
    assert_eq!(ok, 2.0);
    assert!(
        m.find(
            "brix_gateway_time_to_first_token_seconds_count",
            &[("model", MODEL)]
        )
        .any(|s| s.value == 2.0)
    );
    let in_flight: f64 = m
        .find("brix_gateway_in_flight_requests", &[])
        .map(|s| s.value)
        .sum();
    assert_eq!(in_flight, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_lists_what_is_routable() {
    let f = plain(1).await;
    let r = f.http.get(f.url("/v1/models")).send().await.unwrap();
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["data"][0]["id"], MODEL);
    let r = f.http.get(f.url("/ready")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}
