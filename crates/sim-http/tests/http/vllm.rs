//! The answers vLLM 0.32 gives that a client can tell apart: clamping, defaults, choices,
//! stop strings, echo, logprobs, seeds, ids and the exact field lists of bodies and chunks.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::support::{MODEL, Server, config, sse_events, start};

fn keys(v: &Value) -> BTreeSet<&str> {
    v.as_object()
        .map(|o| o.keys().map(String::as_str).collect())
        .unwrap_or_default()
}

fn set(names: &[&'static str]) -> BTreeSet<&'static str> {
    names.iter().copied().collect()
}

/// A server whose answers are long (EOS after 40 tokens), for stop strings and clamping.
async fn talkative() -> Server {
    let mut cfg = config();
    cfg.engine.output_len = brix_sim::OutputLen::Fixed(40);
    start(cfg).await
}

async fn chunks(s: &Server, path: &str, body: Value) -> Vec<Value> {
    let r = s.post(path, &body).await;
    assert_eq!(r.status(), 200);
    let events = sse_events(&r.text().await.unwrap());
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect()
}

#[tokio::test]
async fn max_tokens_is_clamped_to_what_fits_and_defaults_like_vllm() {
    let s = talkative().await;
    // 2040 prompt tokens + 100 requested > 2048: clamped to 8, answered 200 with "length".
    let prompt: Vec<u32> = (1..=2040).collect();
    let body = json!({"model": MODEL, "prompt": prompt, "max_tokens": 100});
    let (status, r) = s.post_json("/v1/completions", &body).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["choices"][0]["finish_reason"], "length");
    assert_eq!(r["usage"]["completion_tokens"], 8);
    // Completions without max_tokens generate at most 16 (the answer would be 40).
    let (_, r) = s
        .post_json("/v1/completions", &json!({"model": MODEL, "prompt": "x"}))
        .await;
    assert_eq!(
        (
            r["usage"]["completion_tokens"].as_u64(),
            r["choices"][0]["finish_reason"].as_str()
        ),
        (Some(16), Some("length"))
    );
    // Chat without max_tokens may use what fits: the natural 40-token answer ends with "stop".
    let chat = json!({"model": MODEL, "messages": [{"role": "user", "content": "hi"}]});
    let (_, r) = s.post_json("/v1/chat/completions", &chat).await;
    assert_eq!(
        (
            r["usage"]["completion_tokens"].as_u64(),
            r["choices"][0]["finish_reason"].as_str()
        ),
        (Some(40), Some("stop"))
    );
}

#[tokio::test]
async fn n_and_prompt_lists_give_one_choice_each_with_usage_summed() {
    let s = start(config()).await;
    let body = json!({"model": MODEL, "prompt": [[1, 2, 3], [4, 5, 6, 7]], "n": 2, "max_tokens": 3, "ignore_eos": true});
    let (status, r) = s.post_json("/v1/completions", &body).await;
    assert_eq!(status, 200, "{r}");
    let idx: Vec<u64> = r["choices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["index"].as_u64().unwrap())
        .collect();
    assert_eq!(idx, [0, 1, 2, 3]);
    // Each prompt counted once, every choice's tokens summed.
    assert_eq!(r["usage"]["prompt_tokens"], 7);
    assert_eq!(r["usage"]["completion_tokens"], 12);

    let mut stream = body.clone();
    stream["stream"] = json!(true);
    stream["stream_options"] = json!({"include_usage": true});
    let cs = chunks(&s, "/v1/completions", stream).await;
    let mut per_index = [0; 4];
    for c in &cs[..cs.len() - 1] {
        let choices = c["choices"].as_array().unwrap();
        assert_eq!(choices.len(), 1);
        per_index[choices[0]["index"].as_u64().unwrap() as usize] += 1;
    }
    assert_eq!(per_index, [3, 3, 3, 3]);
    assert_eq!(cs.last().unwrap()["usage"]["completion_tokens"], 12);

    let chat = json!({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "n": 3, "max_tokens": 2, "ignore_eos": true});
    let (_, r) = s.post_json("/v1/chat/completions", &chat).await;
    assert_eq!(r["choices"].as_array().unwrap().len(), 3);
    assert_eq!(r["usage"]["completion_tokens"], 6);
    let m = s.metrics().await;
    let common = [("model_name", MODEL), ("engine", "0")];
    // 2 completions requests × 2 prompts, 1 chat request: n observed per prompt.
    assert_eq!(m.value("vllm:request_params_n_count", &common), Some(5.0));
    assert_eq!(
        m.value("vllm:request_params_n_sum", &common),
        Some(2.0 * 4.0 + 3.0)
    );
}

#[tokio::test]
async fn stop_strings_end_the_text_with_stop_reason_also_when_streamed() {
    let s = talkative().await;
    // The filler paragraph has " the" at least every 30 tokens, wherever an answer starts.
    let body = json!({"model": MODEL, "prompt": [1, 2], "max_tokens": 39, "stop": [" the", "zzz"], "seed": 0});
    let (_, r) = s.post_json("/v1/completions", &body).await;
    let c = &r["choices"][0];
    assert_eq!(
        (c["finish_reason"].as_str(), c["stop_reason"].as_str()),
        (Some("stop"), Some(" the"))
    );
    let text = c["text"].as_str().unwrap();
    assert!(!text.contains(" the"), "{text}");
    let completion_tokens = r["usage"]["completion_tokens"].as_u64().unwrap();
    assert!(completion_tokens < 39, "{completion_tokens}");

    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let cs = chunks(&s, "/v1/completions", streamed).await;
    let joined: String = cs
        .iter()
        .map(|c| c["choices"][0]["text"].as_str().unwrap())
        .collect();
    assert_eq!(joined, text, "the stream holds back a partial stop string");
    let last = &cs.last().unwrap()["choices"][0];
    assert_eq!(
        (last["finish_reason"].as_str(), last["stop_reason"].as_str()),
        (Some("stop"), Some(" the"))
    );

    let chat = json!({"model": MODEL, "messages": [{"role": "user", "content": "x"}], "stop": " the", "stream": true, "seed": 0});
    let cs = chunks(&s, "/v1/chat/completions", chat).await;
    let last = &cs.last().unwrap()["choices"][0];
    assert_eq!(
        (last["finish_reason"].as_str(), last["stop_reason"].as_str()),
        (Some("stop"), Some(" the"))
    );
    // Finished by the front end, booked by the engine as a success with reason stop.
    // (The gauge is set after the counter within one step: under load a scrape can fall
    // between them, so both are waited for.)
    s.metrics_eventually("three stops and nothing running", |m| {
        m.value("vllm:request_success_total", &[("finished_reason", "stop")]) == Some(3.0)
            && m.value("vllm:num_requests_running", &[("engine", "0")]) == Some(0.0)
    })
    .await;
}

#[tokio::test]
async fn echo_logprobs_and_seed_behave_as_vllm() {
    let s = talkative().await;
    let body = json!({"model": MODEL, "prompt": "Hello there", "max_tokens": 4, "echo": true, "logprobs": 2, "seed": 42});
    let (_, a) = s.post_json("/v1/completions", &body).await;
    let (_, b) = s.post_json("/v1/completions", &body).await;
    let text = a["choices"][0]["text"].as_str().unwrap();
    assert!(
        text.starts_with("Hello there") && text.len() > "Hello there".len(),
        "{text}"
    );
    assert_eq!(
        a["choices"][0]["text"], b["choices"][0]["text"],
        "same seed, same text"
    );
    assert_eq!(a["choices"][0]["logprobs"], b["choices"][0]["logprobs"]);
    let lp = &a["choices"][0]["logprobs"];
    assert_eq!(
        keys(lp),
        set(&["text_offset", "token_logprobs", "tokens", "top_logprobs"])
    );
    let tokens = lp["tokens"].as_array().unwrap();
    // "Hello there" is 2 tokens, then the 4 generated.
    assert_eq!(tokens.len(), 6);
    assert_eq!(
        lp["token_logprobs"][0],
        Value::Null,
        "the first prompt token has none"
    );
    let offsets: Vec<u64> = lp["text_offset"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!(offsets[0], 0);
    assert!(offsets.windows(2).all(|w| w[0] < w[1]));
    for i in 2..6 {
        let l = lp["token_logprobs"][i].as_f64().unwrap();
        assert!(l < 0.0 && l > -1.0, "{l}");
        let top = lp["top_logprobs"][i].as_object().unwrap();
        assert_eq!(top.len(), 2);
        assert_eq!(
            top.get(tokens[i].as_str().unwrap()).and_then(Value::as_f64),
            Some(l)
        );
    }
    let two = json!({"model": MODEL, "prompt": ["Hello there", "Something else"], "max_tokens": 8, "seed": 42});
    let (_, t) = s.post_json("/v1/completions", &two).await;
    assert_ne!(
        t["choices"][0]["text"], t["choices"][1]["text"],
        "a seed answers each prompt its own way"
    );
    let other = json!({"model": MODEL, "prompt": "Hello there", "max_tokens": 4, "seed": 43});
    let (_, c) = s.post_json("/v1/completions", &other).await;
    assert_ne!(
        c["choices"][0]["text"],
        json!(text.trim_start_matches("Hello there"))
    );

    let chat = json!({"model": MODEL, "messages": [{"role": "user", "content": "x"}], "max_tokens": 3, "logprobs": true, "top_logprobs": 3});
    let (_, r) = s.post_json("/v1/chat/completions", &chat).await;
    let content = r["choices"][0]["logprobs"]["content"].as_array().unwrap();
    assert_eq!(content.len(), 3);
    for e in content {
        assert_eq!(keys(e), set(&["token", "logprob", "bytes", "top_logprobs"]));
        let tok = e["token"].as_str().unwrap();
        let bytes: Vec<u8> = e["bytes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b.as_u64().unwrap() as u8)
            .collect();
        assert_eq!(bytes, tok.as_bytes());
        let top = e["top_logprobs"].as_array().unwrap();
        assert_eq!(top.len(), 3);
        assert_eq!(top[0]["token"], e["token"]);
        assert_eq!(keys(&top[0]), set(&["token", "logprob", "bytes"]));
    }
}

#[tokio::test]
async fn bodies_and_chunks_carry_exactly_vllms_fields() {
    let s = start(config()).await;
    let chat = json!({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2, "ignore_eos": true});
    let r = s
        .http
        .post(s.url("/v1/chat/completions"))
        .header("x-request-id", "trace-7")
        .json(&chat)
        .send()
        .await
        .unwrap();
    let r: Value = r.json().await.unwrap();
    assert_eq!(r["id"], "chatcmpl-trace-7");
    let fingerprint = r["system_fingerprint"].as_str().unwrap();
    assert!(
        fingerprint.starts_with("vllm-0.32.0-") && fingerprint.len() == "vllm-0.32.0-".len() + 8,
        "{fingerprint}"
    );
    assert_eq!(
        keys(&r),
        set(&[
            "id",
            "object",
            "created",
            "model",
            "choices",
            "service_tier",
            "system_fingerprint",
            "usage",
            "prompt_logprobs",
            "prompt_token_ids",
            "prompt_text",
            "kv_transfer_params",
            "ec_transfer_params",
            "metrics"
        ])
    );
    assert_eq!(
        keys(&r["choices"][0]),
        set(&[
            "index",
            "message",
            "logprobs",
            "finish_reason",
            "stop_reason",
            "token_ids",
            "routed_experts"
        ])
    );
    assert_eq!(
        keys(&r["choices"][0]["message"]),
        set(&[
            "role",
            "content",
            "refusal",
            "annotations",
            "audio",
            "function_call",
            "reasoning"
        ])
    );
    assert_eq!(
        keys(&r["usage"]),
        set(&[
            "prompt_tokens",
            "total_tokens",
            "completion_tokens",
            "prompt_tokens_details",
            "completion_tokens_details"
        ])
    );

    let (_, c) = s
        .post_json(
            "/v1/completions",
            &json!({"model": MODEL, "prompt": "x", "max_tokens": 1}),
        )
        .await;
    let id = c["id"].as_str().unwrap();
    assert!(
        id.len() == "cmpl-".len() + 16 && id.starts_with("cmpl-"),
        "{id}"
    );
    assert_eq!(
        keys(&c["choices"][0]),
        set(&[
            "index",
            "text",
            "logprobs",
            "finish_reason",
            "stop_reason",
            "token_ids",
            "prompt_logprobs",
            "prompt_token_ids",
            "routed_experts"
        ])
    );

    let mut streamed = chat.clone();
    streamed["stream"] = json!(true);
    streamed["stream_options"] = json!({"include_usage": true});
    let cs = chunks(&s, "/v1/chat/completions", streamed).await;
    let top = set(&["id", "object", "created", "model", "choices"]);
    let mut first = top.clone();
    first.extend(["prompt_token_ids", "prompt_text"]);
    assert_eq!(keys(&cs[0]), first);
    assert_eq!(
        keys(&cs[0]["choices"][0]),
        set(&["index", "delta", "logprobs", "finish_reason"])
    );
    assert_eq!(keys(&cs[1]), top);
    assert_eq!(
        keys(&cs[1]["choices"][0]),
        set(&["index", "delta", "logprobs", "finish_reason", "token_ids"])
    );
    assert_eq!(keys(&cs[1]["choices"][0]["delta"]), set(&["content"]));
    assert_eq!(
        keys(&cs[2]["choices"][0]),
        set(&[
            "index",
            "delta",
            "logprobs",
            "finish_reason",
            "stop_reason",
            "token_ids"
        ]),
        "stop_reason on the last chat chunk"
    );
    let mut usage = top.clone();
    usage.extend(["usage", "system_fingerprint"]);
    assert_eq!(keys(&cs[3]), usage);
    assert_eq!(
        keys(&cs[3]["usage"]),
        set(&["prompt_tokens", "total_tokens", "completion_tokens"])
    );

    let cs = chunks(
        &s,
        "/v1/completions",
        json!({"model": MODEL, "prompt": "x", "max_tokens": 2, "stream": true}),
    )
    .await;
    assert_eq!(
        keys(&cs[0]["choices"][0]),
        set(&[
            "index",
            "text",
            "logprobs",
            "finish_reason",
            "stop_reason",
            "prompt_token_ids",
            "token_ids"
        ])
    );

    let v: Value = s.get("/version").await.json().await.unwrap();
    assert_eq!(v, json!({"version": "0.32.0"}));
    // An overlong request id is not echoed.
    let r: Value = s
        .http
        .post(s.url("/v1/completions"))
        .header("x-request-id", "x".repeat(300))
        .json(&json!({"model": MODEL, "prompt": "x", "max_tokens": 1}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["id"].as_str().map(str::len), Some("cmpl-".len() + 16));
}

#[tokio::test]
async fn response_format_json_object_gives_json_text() {
    let s = talkative().await;
    let body = json!({"model": MODEL, "messages": [{"role": "user", "content": "json please"}], "response_format": {"type": "json_object"}});
    let (_, r) = s.post_json("/v1/chat/completions", &body).await;
    let content = r["choices"][0]["message"]["content"].as_str().unwrap();
    let parsed: Value = serde_json::from_str(content).unwrap_or_else(|e| panic!("{content}: {e}"));
    assert!(parsed["text"].as_str().is_some_and(|t| !t.is_empty()));
    assert_eq!(r["usage"]["completion_tokens"], 40);
}
