//! Runtime LoRA management, byte for byte as vLLM answers it.

use brix_sim_http::LoraModule;
use serde_json::{Value, json};

use crate::support::{MODEL, Server, adapter_dir, config, start};

async fn lora_server() -> Server {
    let mut cfg = config();
    cfg.engine.enable_lora = true;
    cfg.engine.max_loras = 2;
    cfg.engine.max_cpu_loras = 2;
    cfg.engine.max_lora_rank = 8;
    cfg.lora_modules = vec![LoraModule {
        name: "pre".into(),
        path: adapter_dir("pre", 8, 1 << 20),
    }];
    start(cfg).await
}

async fn post_text(s: &Server, path: &str, body: Value) -> (u16, String) {
    let r = s.post(path, &body).await;
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test]
async fn load_and_unload_reply_as_vllm_does() {
    let s = lora_server().await;
    let path = adapter_dir("sql", 4, 1 << 20);
    let load = json!({"lora_name": "sql", "lora_path": path});
    let r = s.post("/v1/load_lora_adapter", &load).await;
    assert_eq!(r.status(), 200);
    assert!(
        r.headers().get("content-type").is_none(),
        "vLLM's reply has no media type"
    );
    assert_eq!(
        r.text().await.unwrap(),
        "Success: LoRA adapter 'sql' added successfully."
    );
    assert_eq!(
        post_text(&s, "/v1/load_lora_adapter", load.clone()).await,
        (
            400,
            r#"{"error":{"message":"The lora adapter 'sql' has already been loaded. If you want to load the adapter in place, set 'load_inplace' to True.","type":"InvalidUserInput","param":null,"code":400}}"#.into()
        )
    );
    let mut inplace = load;
    inplace["load_inplace"] = json!(true);
    assert_eq!(
        post_text(&s, "/v1/load_lora_adapter", inplace).await,
        (
            200,
            "Success: LoRA adapter 'sql' added successfully.".into()
        )
    );
    let missing = json!({"lora_name": "gone", "lora_path": "/no/such/adapter"});
    assert_eq!(
        post_text(&s, "/v1/load_lora_adapter", missing).await,
        (
            404,
            r#"{"error":{"message":"Loading lora gone failed: No adapter found for /no/such/adapter","type":"NotFoundError","param":null,"code":404}}"#.into()
        )
    );
    let big = json!({"lora_name": "big", "lora_path": adapter_dir("big", 16, 1 << 20)});
    assert_eq!(
        post_text(&s, "/v1/load_lora_adapter", big).await,
        (
            500,
            r#"{"error":{"message":"Call to add_lora method failed: Worker failed with error 'LoRA rank 16 is greater than max_lora_rank 8.', please check the stack trace above for the root cause","type":"InternalServerError","param":null,"code":500}}"#.into()
        )
    );
    let base = json!({"lora_name": MODEL, "lora_path": adapter_dir("base", 4, 1)});
    assert_eq!(post_text(&s, "/v1/load_lora_adapter", base).await.0, 400);
    // A hub id is not a local path: the simulator stands in for the download.
    let hub = json!({"lora_name": "hub", "lora_path": "org/some-adapter"});
    assert_eq!(post_text(&s, "/v1/load_lora_adapter", hub).await.0, 200);
    assert_eq!(
        post_text(&s, "/v1/load_lora_adapter", json!({"lora_name": "x"})).await,
        (
            400,
            r#"{"error":{"message":"Both 'lora_name' and 'lora_path' must be provided.","type":"InvalidUserInput","param":null,"code":400}}"#.into()
        )
    );
    assert_eq!(
        post_text(&s, "/v1/unload_lora_adapter", json!({"lora_name": "sql"})).await,
        (
            200,
            "Success: LoRA adapter 'sql' removed successfully.".into()
        )
    );
    assert_eq!(
        post_text(&s, "/v1/unload_lora_adapter", json!({"lora_name": "sql"})).await,
        (
            404,
            r#"{"error":{"message":"The lora adapter 'sql' cannot be found.","type":"NotFoundError","param":null,"code":404}}"#.into()
        )
    );
    assert_eq!(
        post_text(&s, "/v1/unload_lora_adapter", json!({})).await,
        (
            400,
            r#"{"error":{"message":"'lora_name' needs to be provided to unload a LoRA adapter.","type":"InvalidUserInput","param":null,"code":400}}"#.into()
        )
    );
}

#[tokio::test]
async fn adapters_are_models_with_the_base_as_parent() {
    let s = lora_server().await;
    let path = adapter_dir("sql-models", 8, 1 << 20);
    let (status, _) = post_text(
        &s,
        "/v1/load_lora_adapter",
        json!({"lora_name": "sql", "lora_path": path}),
    )
    .await;
    assert_eq!(status, 200);
    let models: Value = s.get("/v1/models").await.json().await.unwrap();
    let data = models["data"].as_array().unwrap();
    let ids: Vec<&str> = data.iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [MODEL, "pre", "sql"]);
    assert_eq!(
        (data[2]["root"].as_str(), data[2]["parent"].as_str()),
        (Some(path.as_str()), Some(MODEL))
    );

    let (status, r) = s
        .post_json(
            "/v1/completions",
            &json!({"model": "sql", "prompt": "SELECT", "max_tokens": 2}),
        )
        .await;
    assert_eq!((status, r["model"].as_str()), (200, Some("sql")));
    let (status, _) = s
        .post_json("/tokenize", &json!({"model": "sql", "prompt": "x"}))
        .await;
    assert_eq!(status, 200);

    post_text(&s, "/v1/unload_lora_adapter", json!({"lora_name": "sql"})).await;
    let (status, r) = s
        .post_json(
            "/v1/completions",
            &json!({"model": "sql", "prompt": "SELECT"}),
        )
        .await;
    assert_eq!(
        (status, r["error"]["type"].as_str()),
        (404, Some("NotFoundError"))
    );

    let m = s.metrics().await;
    let info: Vec<_> = m
        .find("vllm:lora_requests_info", &[("max_lora", "2")])
        .collect();
    assert_eq!(
        info.len(),
        1,
        "{:?}",
        m.samples
            .iter()
            .filter(|s| s.name.contains("lora"))
            .collect::<Vec<_>>()
    );
    assert!(
        info[0].value > 1_600_000_000.0,
        "value is the Unix time of the update"
    );
}
