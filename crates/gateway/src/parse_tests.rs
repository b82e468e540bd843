//! Table tests for body parsing and the usage injection.

use super::*;

fn ok(endpoint: Endpoint, body: &str) -> Parsed {
    parse(endpoint, body.as_bytes()).unwrap_or_else(|e| panic!("{body}: {e}"))
}

#[test]
fn chat_key_is_the_whole_conversation_in_order() {
    let p = ok(
        Endpoint::Chat,
        r#"{"model":"m","messages":[{"role":"system","content":"be brief"},
            {"role":"user","content":[{"type":"text","text":"hi "},{"type":"text","text":"there"}]},
            {"role":"assistant","content":null}],"stream":true,"max_tokens":7}"#,
    );
    assert_eq!(p.model, "m");
    assert!(p.stream);
    assert!(!p.include_usage);
    assert_eq!(p.max_tokens, Some(7));
    assert_eq!(p.key, "system\nbe brief\nuser\nhi there\nassistant\n\n");

    // A later turn extends the earlier key: routing sees the growing conversation.
    let t1 = ok(
        Endpoint::Chat,
        r#"{"model":"m","messages":[{"role":"user","content":"q1"}]}"#,
    );
    let t2 = ok(
        Endpoint::Chat,
        r#"{"model":"m","messages":[{"role":"user","content":"q1"},{"role":"assistant","content":"a1"},{"role":"user","content":"q2"}]}"#,
    );
    assert!(t2.key.starts_with(&t1.key));
}

#[test]
fn prompts_in_every_openai_form() {
    let cases = [
        (r#"{"model":"m","prompt":"hello"}"#, "hello"),
        (r#"{"model":"m","prompt":["first","second"]}"#, "first"),
        (r#"{"model":"m","prompt":[1,2,3]}"#, "1 2 3 "),
        (r#"{"model":"m","prompt":[[4,5],[6]]}"#, "4 5 "),
        (r#"{"model":"m","prompt":"esc\u00e9\"q"}"#, "escé\"q"),
    ];
    for (body, key) in cases {
        assert_eq!(ok(Endpoint::Completions, body).key, key, "{body}");
    }
    let p = ok(
        Endpoint::Completions,
        r#"{"model":"m","prompt":"x","max_completion_tokens":3,"max_tokens":9,"stream":true,"stream_options":{"include_usage":true}}"#,
    );
    assert_eq!(p.max_tokens, Some(3));
    assert!(p.include_usage);
    assert_eq!(
        ok(Endpoint::Embeddings, r#"{"model":"e","input":["a","b"]}"#).key,
        "a"
    );
}

#[test]
fn bad_bodies_name_the_field() {
    // A missing model is the handler's call (the only model, or 400), not the parser's.
    assert_eq!(
        ok(Endpoint::Chat, r#"{"messages":[{"role":"user"}]}"#).model,
        ""
    );
    assert_eq!(
        ok(Endpoint::Tokenize, r#"{"model":" ","prompt":"x"}"#).model,
        ""
    );
    let cases: [(Endpoint, &str, Option<&str>); 8] = [
        (Endpoint::Chat, "not json", None),
        (Endpoint::Messages, r#"{"model":"m"}"#, Some("messages")),
        (Endpoint::Responses, r#"{"model":"m"}"#, Some("input")),
        (
            Endpoint::Chat,
            r#"{"model":"m","messages":[]}"#,
            Some("messages"),
        ),
        (
            Endpoint::Chat,
            r#"{"model":"m","messages":[{"role":"user","content":5}]}"#,
            Some("messages"),
        ),
        (Endpoint::Completions, r#"{"model":"m"}"#, Some("prompt")),
        (
            Endpoint::Completions,
            r#"{"model":"m","prompt":{}}"#,
            Some("prompt"),
        ),
        (
            Endpoint::Embeddings,
            r#"{"model":"m","input":"x","stream":true}"#,
            Some("stream"),
        ),
    ];
    for (endpoint, body, param) in cases {
        let e = parse(endpoint, body.as_bytes()).expect_err(body);
        assert_eq!(e.param(), param, "{body}: {e}");
    }
}

#[test]
fn include_usage_is_injected_without_touching_other_fields() {
    let out = with_include_usage(br#"{"model":"m","stream":true,"stream_options":{"x":1},"n":2}"#)
        .expect("valid");
    let v: serde_json::Value = serde_json::from_slice(&out).expect("json");
    assert_eq!(v["stream_options"]["include_usage"], true);
    assert_eq!(v["stream_options"]["x"], 1);
    assert_eq!(v["n"], 2);
    assert!(with_include_usage(br#"{"stream_options":3}"#).is_err());
}

/// vLLM 0.32 defaults `include_usage` to false and sends per-chunk usage only with it: a
/// client without `include_usage: true` gets none, so the engine is asked for the final chunk
/// only.
#[test]
fn continuous_usage_without_include_usage_is_turned_off() {
    let chat = |opts: &str| {
        let body = format!(
            r#"{{"model":"m","messages":[{{"role":"user","content":"x"}}],"stream":true,"stream_options":{opts}}}"#
        );
        ok(Endpoint::Chat, &body)
    };
    assert!(!chat("{}").include_usage, "vLLM's default");
    assert!(!chat("null").include_usage);
    assert!(chat(r#"{"include_usage":true}"#).include_usage);
    let p = chat(r#"{"continuous_usage_stats":true}"#);
    assert!(p.continuous_usage && !p.include_usage);
    let p = chat(r#"{"continuous_usage_stats":true,"include_usage":false}"#);
    assert!(p.continuous_usage && !p.include_usage);
    let body = br#"{"model":"m","stream":true,"stream_options":{"continuous_usage_stats":true,"include_usage":false}}"#;
    let v: serde_json::Value =
        serde_json::from_slice(&with_include_usage(body).expect("valid")).expect("json");
    assert_eq!(v["stream_options"]["include_usage"], true);
    assert_eq!(v["stream_options"]["continuous_usage_stats"], false);
}

#[test]
fn every_vllm_path_yields_model_and_key() {
    let cases = [
        (
            Endpoint::Messages,
            r#"{"model":"m","max_tokens":5,"system":"be brief","messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}]}"#,
            "system\nbe brief\nuser\nhi\n",
        ),
        (
            Endpoint::Responses,
            r#"{"model":"m","instructions":"sys","input":"hello","max_output_tokens":9}"#,
            "system\nsys\nhello",
        ),
        (
            Endpoint::Responses,
            r#"{"model":"m","input":[{"role":"user","content":[{"type":"input_text","text":"q"}]},{"type":"function_call_output","output":{"a":1}}]}"#,
            "user\nq\n\n\n",
        ),
        (Endpoint::Tokenize, r#"{"model":"m","prompt":"abc"}"#, "abc"),
        (
            Endpoint::Tokenize,
            r#"{"model":"m","messages":[{"role":"user","content":"x"}]}"#,
            "user\nx\n",
        ),
        (Endpoint::Detokenize, r#"{"model":"m","tokens":[1,2]}"#, ""),
        (
            Endpoint::Score,
            r#"{"model":"m","text_1":"a","text_2":["b"]}"#,
            "a",
        ),
        (
            Endpoint::Rerank,
            r#"{"model":"m","query":"q","documents":["d"]}"#,
            "q",
        ),
        (
            Endpoint::Embeddings,
            r#"{"model":"m","messages":[{"role":"user","content":"e"}]}"#,
            "user\ne\n",
        ),
    ];
    for (endpoint, body, key) in cases {
        let p = ok(endpoint, body);
        assert_eq!((p.model.as_str(), p.key.as_str()), ("m", key), "{body}");
    }
    let p = ok(
        Endpoint::Responses,
        r#"{"model":"m","input":"x","max_output_tokens":9}"#,
    );
    assert_eq!(p.max_tokens, Some(9));
    let p = ok(
        Endpoint::Chat,
        r#"{"model":"m","messages":[{"role":"user"}],"n":3}"#,
    );
    assert_eq!(p.n, 3);
    assert!(
        !ok(
            Endpoint::Rerank,
            r#"{"model":"m","query":"q","stream":true}"#
        )
        .stream
    );
}

#[test]
fn ignore_eos_or_min_tokens_make_the_output_length_exact() {
    let exact = |body: &str| ok(Endpoint::Completions, body).output_exact;
    assert!(exact(
        r#"{"model":"m","prompt":"p","max_tokens":64,"ignore_eos":true}"#
    ));
    assert!(exact(
        r#"{"model":"m","prompt":"p","max_tokens":64,"min_tokens":64}"#
    ));
    assert!(!exact(
        r#"{"model":"m","prompt":"p","max_tokens":64,"min_tokens":8}"#
    ));
    assert!(!exact(r#"{"model":"m","prompt":"p","max_tokens":64}"#));
    assert!(!exact(r#"{"model":"m","prompt":"p","ignore_eos":true}"#));
}
