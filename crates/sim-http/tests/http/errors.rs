//! Every refusal comes back in vLLM's error envelope with the right status and type.

use serde_json::{Value, json};

use crate::support::{MODEL, config, start};

fn envelope(message: &str, kind: &str, code: u16) -> Value {
    json!({"error": {"message": message, "type": kind, "param": null, "code": code}})
}

#[tokio::test]
async fn unknown_model_is_a_404_not_found_error() {
    let s = start(config()).await;
    for path in ["/v1/completions", "/v1/chat/completions"] {
        let body = json!({"model": "gpt-9", "prompt": "x", "messages": [{"role": "user", "content": "x"}]});
        let (status, r) = s.post_json(path, &body).await;
        assert_eq!(
            (status, r),
            (
                404,
                envelope("The model `gpt-9` does not exist.", "NotFoundError", 404)
            ),
            "{path}"
        );
    }
}

#[tokio::test]
async fn bad_input_is_a_400_bad_request_error() {
    let s = start(config()).await;
    let r = s
        .http
        .post(s.url("/v1/completions"))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        (v["error"]["type"].as_str(), v["error"]["code"].as_u64()),
        (Some("BadRequestError"), Some(400))
    );

    let long = "word ".repeat(3000);
    let cases = [
        (json!({"model": MODEL}), "missing field `prompt`"),
        (
            json!({"model": MODEL, "prompt": 7}),
            "did not match any variant",
        ),
        (
            json!({"model": MODEL, "prompt": "x", "max_tokens": -1}),
            "max_tokens must be at least 1, got -1.",
        ),
        (
            json!({"model": MODEL, "prompt": "x", "n": 2}),
            "n must be 1",
        ),
        (
            json!({"model": MODEL, "prompt": ["a", "b"]}),
            "one prompt per request, got 2",
        ),
        (
            json!({"model": MODEL, "prompt": long}),
            "maximum context length is 2048 tokens",
        ),
        (
            json!({"model": MODEL, "prompt": "x", "max_tokens": 5000}),
            "However, you requested",
        ),
        (
            json!({"model": MODEL, "prompt": []}),
            "The prompt cannot be empty",
        ),
        (
            json!({"model": MODEL, "prompt": "x", "stream_options": {}}),
            "only be defined when `stream=True`",
        ),
    ];
    for (body, want) in cases {
        let (status, v) = s.post_json("/v1/completions", &body).await;
        assert_eq!(status, 400, "{body} -> {v}");
        assert_eq!(v["error"]["type"], "BadRequestError", "{v}");
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(msg.contains(want), "{body}: want '{want}' in '{msg}'");
    }
    let (status, v) = s
        .post_json("/v1/chat/completions", &json!({"model": MODEL}))
        .await;
    assert_eq!((status, v["error"]["code"].as_u64()), (400, Some(400)));
    let (status, _) = s
        .post_json("/detokenize", &json!({"tokens": [4_000_000_000u32]}))
        .await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn unknown_routes_answer_like_fastapi() {
    let s = start(config()).await;
    let r = s.get("/v2/nothing").await;
    assert_eq!(r.status(), 404);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"detail": "Not Found"})
    );
    let r = s.get("/v1/completions").await;
    assert_eq!(r.status(), 405);
    // Without --enable-lora the runtime LoRA routes do not exist.
    let (status, _) = s
        .post_json(
            "/v1/load_lora_adapter",
            &json!({"lora_name": "a", "lora_path": "/a"}),
        )
        .await;
    assert_eq!(status, 404);
}
