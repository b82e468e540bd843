//! Completions and chat as an OpenAI client sees them, plus the informational routes.

use serde_json::{Value, json};

use crate::support::{MODEL, config, sse_events, start};

#[tokio::test]
async fn completion_reports_text_usage_and_finish_reason() {
    let s = start(config()).await;
    let (status, tok) = s
        .post_json("/tokenize", &json!({"prompt": "Hello there, engine"}))
        .await;
    assert_eq!(status, 200);
    let prompt_tokens = tok["count"].as_u64().unwrap();

    let body = json!({"model": MODEL, "prompt": "Hello there, engine", "max_tokens": 3, "ignore_eos": true});
    let (status, r) = s.post_json("/v1/completions", &body).await;
    assert_eq!(status, 200, "{r}");
    assert!(r["id"].as_str().unwrap().starts_with("cmpl-"));
    assert_eq!(
        (r["object"].as_str(), r["model"].as_str()),
        (Some("text_completion"), Some(MODEL))
    );
    assert!(r["created"].as_u64().unwrap() > 1_600_000_000);
    let choice = &r["choices"][0];
    assert_eq!(choice["finish_reason"], "length");
    assert!(!choice["text"].as_str().unwrap().is_empty());
    let usage = &r["usage"];
    assert_eq!(usage["prompt_tokens"].as_u64(), Some(prompt_tokens));
    assert_eq!(usage["completion_tokens"], 3);
    assert_eq!(usage["total_tokens"].as_u64(), Some(prompt_tokens + 3));

    // Without ignore_eos the simulated EOS (output_len fixed:4) ends it: "stop".
    let body = json!({"model": MODEL, "prompt": [1, 2, 3], "max_tokens": 10});
    let (_, r) = s.post_json("/v1/completions", &body).await;
    assert_eq!(
        (
            r["choices"][0]["finish_reason"].as_str(),
            r["usage"]["completion_tokens"].as_u64()
        ),
        (Some("stop"), Some(4))
    );
    assert_eq!(r["usage"]["prompt_tokens"], 3);
}

#[tokio::test]
async fn model_may_be_omitted_as_vllm_allows() {
    let s = start(config()).await;
    let (status, r) = s
        .post_json("/v1/completions", &json!({"prompt": "hi", "max_tokens": 1}))
        .await;
    assert_eq!((status, r["model"].as_str()), (200, Some(MODEL)));
}

#[tokio::test]
async fn chat_answers_as_the_assistant() {
    let s = start(config()).await;
    let body = json!({
        "model": MODEL,
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": [{"type": "text", "text": "Hi"}]}],
        "max_completion_tokens": 2, "ignore_eos": true, "user": "u1"
    });
    let (status, r) = s.post_json("/v1/chat/completions", &body).await;
    assert_eq!(status, 200, "{r}");
    assert!(r["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(r["object"], "chat.completion");
    let msg = &r["choices"][0]["message"];
    assert_eq!(msg["role"], "assistant");
    assert!(!msg["content"].as_str().unwrap().is_empty());
    assert_eq!(r["choices"][0]["finish_reason"], "length");
    assert_eq!(r["usage"]["completion_tokens"], 2);
}

async fn stream(s: &crate::support::Server, path: &str, body: Value) -> Vec<String> {
    let r = s.post(path, &body).await;
    assert_eq!(r.status(), 200);
    let ct = r.headers()["content-type"].to_str().unwrap().to_string();
    assert!(ct.starts_with("text/event-stream"), "{ct}");
    sse_events(&r.text().await.unwrap())
}

#[tokio::test]
async fn completion_stream_ends_with_done_and_no_usage_unless_asked() {
    let s = start(config()).await;
    let body = json!({"model": MODEL, "prompt": "Count", "max_tokens": 3, "ignore_eos": true, "stream": true});
    let events = stream(&s, "/v1/completions", body).await;
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    assert_eq!(chunks.len(), 3, "{events:?}");
    for (i, c) in chunks.iter().enumerate() {
        assert_eq!(c["object"], "text_completion");
        assert!(c.get("usage").is_none(), "{c}");
        let want = if i == 2 { json!("length") } else { Value::Null };
        assert_eq!(c["choices"][0]["finish_reason"], want);
    }
    let ids: Vec<&Value> = chunks.iter().map(|c| &c["id"]).collect();
    assert!(ids.windows(2).all(|w| w[0] == w[1]), "one id per stream");
}

#[tokio::test]
async fn chat_stream_opens_with_the_role_and_closes_with_usage() {
    let s = start(config()).await;
    let body = json!({
        "model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2, "ignore_eos": true,
        "stream": true, "stream_options": {"include_usage": true}
    });
    let events = stream(&s, "/v1/chat/completions", body).await;
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    // role chunk, 2 token chunks, usage chunk
    assert_eq!(chunks.len(), 4, "{events:?}");
    assert_eq!(
        chunks[0]["choices"][0]["delta"],
        json!({"role": "assistant", "content": ""})
    );
    assert!(
        chunks
            .iter()
            .all(|c| c["object"] == "chat.completion.chunk")
    );
    assert_eq!(chunks[2]["choices"][0]["finish_reason"], "length");
    let usage = &chunks[3];
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["completion_tokens"], 2);
    let total = usage["usage"]["prompt_tokens"].as_u64().unwrap() + 2;
    assert_eq!(usage["usage"]["total_tokens"].as_u64(), Some(total));
}

#[tokio::test]
async fn models_tokenizer_and_info_routes() {
    let s = start(config()).await;
    let (status, m) = s
        .post_json("/detokenize", &json!({"tokens": [15339, 1917]}))
        .await;
    assert_eq!((status, m["prompt"].as_str()), (200, Some("hello world")));

    let r = s.get("/v1/models").await;
    let models: Value = r.json().await.unwrap();
    assert_eq!(models["object"], "list");
    let base = &models["data"][0];
    assert_eq!(
        (base["id"].as_str(), base["owned_by"].as_str()),
        (Some(MODEL), Some("vllm"))
    );
    assert_eq!(
        (base["root"].as_str(), base["parent"].clone()),
        (Some("meta-llama/Meta-Llama-3-8B-Instruct"), Value::Null)
    );
    assert_eq!(base["max_model_len"], 2048);
    assert_eq!(base["permission"][0]["object"], "model_permission");

    let health = s.get("/health").await;
    assert_eq!(health.status(), 200);
    assert_eq!(health.text().await.unwrap(), "");
    assert_eq!(s.get("/ping").await.status(), 200);
    let v: Value = s.get("/version").await.json().await.unwrap();
    assert!(v["version"].is_string());
    let load: Value = s.get("/load").await.json().await.unwrap();
    assert_eq!(load["server_load"], 0);
    let info: Value = s.get("/get_server_info").await.json().await.unwrap();
    assert_eq!(
        (info["model_path"].as_str(), info["dp_size"].as_u64()),
        (Some("meta-llama/Meta-Llama-3-8B-Instruct"), Some(1))
    );
    let info: Value = s.get("/get_model_info").await.json().await.unwrap();
    assert_eq!(info["is_generation"], true);
    assert!(info["tokenizer_path"].is_string());
}
