//! The gateway as a drop-in in front of vLLM: every model-addressed path is routed, errors
//! come in the dialect the path's clients parse, `/v1/models` keeps the engines' fields, and
//! a stream carries exactly the usage vLLM would have sent.

use brix_testkit::sse_events;
use serde_json::{Value, json};

use crate::support::{MODEL, Misbehave, gateway_config, gateway_over, header, plain, raw_engine};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_model_addressed_path_is_routed() {
    let f = plain(2).await;
    // Paths the sim serves answer as the sim does, through a chosen pod.
    let r = f
        .post(
            "/tokenize",
            &json!({"model": MODEL, "prompt": "hello there"}),
            &[],
        )
        .await;
    assert_eq!(r.status(), 200);
    assert!(header(&r, "target-pod").starts_with("pod-"));
    let tokens = r.json::<Value>().await.unwrap()["tokens"].clone();
    assert!(tokens.as_array().is_some_and(|t| !t.is_empty()), "{tokens}");
    let r = f
        .post(
            "/detokenize",
            &json!({"model": MODEL, "tokens": tokens}),
            &[],
        )
        .await;
    assert_eq!(r.status(), 200);
    // The others reach an engine too (the sim answers 404 where vLLM would serve them): the
    // gateway routed them by the body's model, under the path the client used.
    let cases = [
        ("/v1/responses", json!({"model": MODEL, "input": "hi"})),
        ("/v1/embeddings", json!({"model": MODEL, "input": "hi"})),
        (
            "/v1/score",
            json!({"model": MODEL, "text_1": "a", "text_2": "b"}),
        ),
        (
            "/score",
            json!({"model": MODEL, "text_1": "a", "text_2": "b"}),
        ),
        (
            "/v1/rerank",
            json!({"model": MODEL, "query": "q", "documents": ["d"]}),
        ),
        (
            "/rerank",
            json!({"model": MODEL, "query": "q", "documents": ["d"]}),
        ),
        (
            "/v2/rerank",
            json!({"model": MODEL, "query": "q", "documents": ["d"]}),
        ),
        ("/pooling", json!({"model": MODEL, "input": "hi"})),
        ("/classify", json!({"model": MODEL, "input": "hi"})),
    ];
    for (path, body) in cases {
        let r = f.post(path, &body, &[]).await;
        assert!(header(&r, "target-pod").starts_with("pod-"), "{path}");
        assert_eq!(r.status(), 404, "{path}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["type"], "invalid_request_error", "{path}: {v}");
    }
    // Unknown models on those paths are the gateway's 400, not an engine's.
    let r = f
        .post("/v2/rerank", &json!({"model": "nope", "query": "q"}), &[])
        .await;
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "model_not_found"
    );
}

/// vLLM answers `/v1/messages` errors in Anthropic's envelope; so does the gateway, for
/// its own refusals and for engine errors it wraps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_clients_get_anthropic_errors() {
    let f = plain(1).await;
    let msg = |model: &str| json!({"model": model, "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]});
    let r = f.post("/v1/messages", &msg("nope"), &[]).await;
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["type"], "error", "{v}");
    assert_eq!(v["error"]["type"], "invalid_request_error", "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("nope"));
    let r = f.post("/v1/messages", &json!({"model": MODEL}), &[]).await;
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["type"], "error");
    // The sim has no Messages API: its plain 404 comes back wrapped for Anthropic clients.
    let r = f.post("/v1/messages", &msg(MODEL), &[]).await;
    assert_eq!(r.status(), 404);
    assert!(header(&r, "target-pod").starts_with("pod-"));
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        (v["type"].as_str(), v["error"]["type"].as_str()),
        (Some("error"), Some("not_found_error")),
        "{v}"
    );
}

/// `/v1/models` lists the engines' own entries, every field kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_pass_the_engines_fields_through() {
    let f = plain(2).await;
    let engine: Value = f
        .http
        .get(format!("http://{}/v1/models", f.sims[0].addr))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ours: Value = f.get_json("/v1/models").await;
    let (e, o) = (&engine["data"][0], &ours["data"][0]);
    assert_eq!(o["id"], MODEL);
    for field in ["root", "max_model_len", "parent", "permission", "owned_by"] {
        assert!(o.get(field).is_some(), "{field} missing: {o}");
        if field != "permission" {
            assert_eq!(o[field], e[field], "{field}");
        }
    }
}

fn usage_per_chunk(text: &str) -> Vec<bool> {
    sse_events(text)
        .iter()
        .filter(|e| *e != "[DONE]")
        .map(|e| {
            let v: Value = serde_json::from_str(e).unwrap();
            v.get("usage").is_some_and(|u| !u.is_null())
        })
        .collect()
}

/// The client sees the usage the engine would have sent it directly, whatever the gateway
/// asked the engine for (it injects `include_usage` to count tokens).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_carry_the_usage_vllm_would_send() {
    let f = plain(1).await;
    let direct = format!("http://{}/v1/chat/completions", f.sims[0].addr);
    // vLLM 0.32: `include_usage` defaults to false, and per-chunk usage needs both flags
    // (`should_include_usage`); `brix sim` answers the same (tests/conformance checks it).
    let options = [
        json!({"continuous_usage_stats": true}),
        json!({"continuous_usage_stats": true, "include_usage": true}),
        json!({"continuous_usage_stats": true, "include_usage": false}),
        json!({"include_usage": true}),
        json!({"include_usage": false}),
        json!({}),
    ];
    for opts in options {
        let body = json!({"model": MODEL, "messages": [{"role": "user", "content": "x"}], "stream": true, "stream_options": opts});
        let via = f
            .post("/v1/chat/completions", &body, &[])
            .await
            .text()
            .await
            .unwrap();
        let want = f
            .http
            .post(&direct)
            .json(&body)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let usage = usage_per_chunk(&via);
        assert_eq!(usage, usage_per_chunk(&want), "{opts}: {via}");
        if opts.get("include_usage") != Some(&json!(true)) {
            assert!(usage.len() > 2 && usage.iter().all(|u| !u), "{opts}: {via}");
        }
    }
    let counted = f
        .counter("brix_gateway_tokens_total", &[("kind", "completion")])
        .await;
    assert_eq!(counted, 6.0 * 4.0, "the gateway counted every stream");
}

/// An Anthropic stream ends at `message_stop` (no `[DONE]`): it passes through untouched,
/// is counted as a success, and its usage (`input_tokens`, `output_tokens`) is read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_streams_pass_and_are_counted() {
    let engine = raw_engine(Misbehave::AnthropicStream).await;
    let f = gateway_over(gateway_config(), &[engine.addr]).await;
    let body = json!({"model": MODEL, "max_tokens": 8, "stream": true, "messages": [{"role": "user", "content": "hi"}]});
    let r = f.post("/v1/messages", &body, &[]).await;
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert!(
        text.trim_end()
            .ends_with(r#"data: {"type":"message_stop"}"#),
        "{text}"
    );
    assert!(!text.contains("error"), "{text}");
    crate::support::eventually(
        "the stream is booked as a success with its usage",
        || async {
            f.counter("brix_gateway_requests_total", &[("status", "200")])
                .await
                == 1.0
                && f.counter("brix_gateway_tokens_total", &[("kind", "prompt")])
                    .await
                    == 5.0
                && f.counter("brix_gateway_tokens_total", &[("kind", "completion")])
                    .await
                    == 4.0
        },
    )
    .await;
}
