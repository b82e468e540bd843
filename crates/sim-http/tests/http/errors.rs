//! Every refusal comes back in vLLM's error envelope with the right status and type.

use serde_json::{Value, json};

use crate::support::{MODEL, config, start};

fn envelope(message: &str, kind: &str, param: Option<&str>, code: u16) -> Value {
    json!({"error": {"message": message, "type": kind, "param": param, "code": code}})
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
                envelope(
                    &format!("The model `gpt-9` does not exist. Valid aliases: {MODEL}."),
                    "NotFoundError",
                    Some("model"),
                    404
                )
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
        v,
        json!({"error": {"message": "1 validation error:\n  {'type': 'json_invalid', 'loc': 'body.1', 'msg': 'JSON decode error', 'input': '<dict of 0 items>', 'ctx': {'error': 'Expecting property name enclosed in double quotes'}}", "type": "Bad Request", "param": "body.1", "code": 400}}),
        "FastAPI's report of a body that is not JSON"
    );
    // Wrong types and missing fields: pydantic's entries, as vLLM 0.32 prints them.
    let pydantic = [
        (
            "/v1/chat/completions",
            json!({"model": MODEL}),
            "1 validation error:\n  {'type': 'missing', 'loc': 'body.messages', 'msg': 'Field required', 'input': '<dict of 1 items>'}",
            "body.messages",
        ),
        (
            "/v1/chat/completions",
            json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": "hot"}),
            "1 validation error:\n  {'type': 'float_parsing', 'loc': 'body.temperature', 'msg': 'Input should be a valid number, unable to parse string as a number', 'input': 'hot'}",
            "body.temperature",
        ),
        (
            "/v1/completions",
            json!({"model": "m", "prompt": "x", "n": "two"}),
            "1 validation error:\n  {'type': 'int_parsing', 'loc': 'body.n', 'msg': 'Input should be a valid integer, unable to parse string as an integer', 'input': 'two'}",
            "body.n",
        ),
        (
            "/v1/chat/completions",
            json!({"model": "m", "messages": "hi"}),
            "1 validation error:\n  {'type': 'list_type', 'loc': 'body.messages', 'msg': 'Input should be a valid list', 'input': 'hi'}",
            "body.messages",
        ),
    ];
    for (path, body, message, param) in pydantic {
        let (status, v) = s.post_json(path, &body).await;
        assert_eq!(
            (status, v),
            (400, envelope(message, "Bad Request", Some(param), 400)),
            "{body}"
        );
    }

    // (body, message, param) as vLLM 0.32 answers them with max_model_len 2048.
    let long = "word ".repeat(3000);
    let serving: Vec<(Value, String, Option<&str>)> = vec![
        (
            json!({"model": MODEL, "prompt": "x", "max_tokens": -1}),
            "max_tokens must be at least 1, got -1. (parameter=max_tokens, value=-1)".into(),
            Some("max_tokens"),
        ),
        (
            json!({"model": MODEL, "prompt": "x", "n": 0}),
            "n must be at least 1, got 0.".into(),
            None,
        ),
        (
            json!({"model": MODEL, "prompt": "x", "temperature": -0.5}),
            "temperature must be non-negative, got -0.5. (parameter=temperature, value=-0.5)".into(),
            Some("temperature"),
        ),
        (
            json!({"model": MODEL, "prompt": "x", "top_p": 1.5}),
            "top_p must be in (0, 1], got 1.5. (parameter=top_p, value=1.5)".into(),
            Some("top_p"),
        ),
        (
            json!({"model": MODEL, "prompt": "x", "presence_penalty": 2.5}),
            "presence_penalty must be in [-2, 2], got 2.5.".into(),
            None,
        ),
        (
            json!({"model": MODEL, "prompt": "x", "n": 2, "temperature": 0}),
            "n must be 1 when using greedy sampling, got 2.".into(),
            None,
        ),
        (
            json!({"model": MODEL, "prompt": "x", "stop": ["a", ""]}),
            "stop cannot contain an empty string.".into(),
            None,
        ),
        (
            json!({"model": MODEL, "prompt": long}),
            "This model's maximum context length is 2048 tokens. However, your prompt contains at least 2049 input tokens, which exceeds this limit even without any output tokens. Please reduce the length of the input prompt. (parameter=input_tokens, value=2049)".into(),
            Some("input_tokens"),
        ),
        (
            json!({"model": MODEL, "prompt": (0..3000).collect::<Vec<u32>>()}),
            "This model's maximum context length is 2048 tokens. However, your prompt contains 3000 input tokens, which exceeds this limit even without any output tokens. Please reduce the length of the input prompt. (parameter=input_tokens, value=3000)".into(),
            Some("input_tokens"),
        ),
        (
            json!({"model": MODEL, "prompt": "x", "max_tokens": 5000}),
            "max_tokens=5000 cannot be greater than max_model_len=2048. Please request fewer output tokens. (parameter=max_tokens, value=5000)".into(),
            Some("max_tokens"),
        ),
        (
            json!({"model": MODEL, "prompt": (0..2048).collect::<Vec<u32>>()}),
            "max_tokens must be at least 1, got 0. (parameter=max_tokens, value=0)".into(),
            Some("max_tokens"),
        ),
        (
            json!({"model": MODEL, "prompt": []}),
            "The decoder prompt cannot be empty".into(),
            None,
        ),
        (
            json!({"model": MODEL, "prompt": "x", "logprobs": 21}),
            "Requested sample logprobs of 21, which is greater than max allowed: 20 (parameter=logprobs, value=21)".into(),
            Some("logprobs"),
        ),
    ];
    for (body, message, param) in serving {
        let (status, v) = s.post_json("/v1/completions", &body).await;
        assert_eq!(
            (status, v),
            (400, envelope(&message, "BadRequestError", param, 400)),
            "{body}"
        );
    }
    // The body's own validators raise VLLMValidationError too, which passes through pydantic.
    let validators = [
        (
            json!({"model": MODEL, "prompt": "x", "stream_options": {"include_usage": true}}),
            "Stream options can only be defined when `stream=True`. (parameter=stream_options)",
            "stream_options",
        ),
        (
            json!({"model": MODEL}),
            "Either prompt or prompt_embeds must be provided and non-empty. (parameter=prompt)",
            "prompt",
        ),
        (
            json!({"model": MODEL, "prompt": "x", "logprobs": -3}),
            "`logprobs` must be a positive value or -1. (parameter=logprobs, value=-3)",
            "logprobs",
        ),
    ];
    for (body, message, param) in validators {
        let (status, v) = s.post_json("/v1/completions", &body).await;
        assert_eq!(
            (status, v),
            (400, envelope(message, "BadRequestError", Some(param), 400)),
            "{body}"
        );
    }
    let chat = |extra: Value| {
        let mut body = json!({"model": MODEL, "messages": [{"role": "user", "content": "hi"}]});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        body
    };
    let tool = json!([{"type": "function", "function": {"name": "f", "parameters": {}}}]);
    let chat_cases: Vec<(Value, &str, Option<&str>, &str)> = vec![
        (
            json!({"model": MODEL, "messages": []}),
            "BadRequestError",
            None,
            "Cannot apply chat template to an empty conversation. Provide at least one message.",
        ),
        (
            chat(json!({"temperature": -1})),
            "BadRequestError",
            Some("temperature"),
            "temperature must be non-negative, got -1.0. (parameter=temperature, value=-1.0)",
        ),
        (
            chat(json!({"max_completion_tokens": 4096})),
            "BadRequestError",
            Some("max_completion_tokens"),
            "max_completion_tokens=4096 cannot be greater than max_model_len=2048. Please request fewer output tokens. (parameter=max_completion_tokens, value=4096)",
        ),
        (
            chat(json!({"tools": tool.clone()})),
            "BadRequestError",
            None,
            "\"auto\" tool choice requires --enable-auto-tool-choice and --tool-call-parser to be set",
        ),
        (
            chat(json!({"tools": tool.clone(), "tool_choice": "required"})),
            "BadRequestError",
            None,
            "tool_choice=\"required\" requires --tool-call-parser to be set",
        ),
        (
            chat(json!({"top_logprobs": 2})),
            "BadRequestError",
            Some("top_logprobs"),
            "when using `top_logprobs`, `logprobs` must be set to true. (parameter=top_logprobs)",
        ),
        (
            chat(json!({"tool_choice": "auto"})),
            "BadRequestError",
            Some("tool_choice"),
            "When using `tool_choice`, `tools` must be set. (parameter=tool_choice)",
        ),
        (
            chat(json!({"response_format": {"type": "json_schema"}})),
            "BadRequestError",
            Some("response_format"),
            "When response_format type is 'json_schema', the 'json_schema' field must be provided. (parameter=response_format)",
        ),
        (
            chat(json!({"tools": []})),
            "BadRequestError",
            Some("tools"),
            "`tools` must not be an empty array. Either provide at least one tool or omit the field entirely. (parameter=tools)",
        ),
    ];
    for (body, kind, param, text) in chat_cases {
        let (status, v) = s.post_json("/v1/chat/completions", &body).await;
        assert_eq!(status, 400, "{body}");
        let e = &v["error"];
        assert_eq!(
            (e["type"].as_str(), e["param"].as_str()),
            (Some(kind), param),
            "{v}"
        );
        assert_eq!(e["message"].as_str(), Some(text));
    }
    // tool_choice "none" keeps tools out of the way, as vLLM serves it.
    let (status, _) = s
        .post_json(
            "/v1/chat/completions",
            &chat(json!({"tools": tool, "tool_choice": "none", "max_tokens": 1})),
        )
        .await;
    assert_eq!(status, 200);
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
