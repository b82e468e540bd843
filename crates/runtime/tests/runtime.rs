//! `brix runtime` in front of a real `brix sim` (vLLM's API, LoRA on), over sockets: direct
//! and delegated loads (HTTP and S3 sources), unload with cleanup, the key, bad bodies, an
//! engine that is down, and the standard metric names.
#![expect(
    clippy::unwrap_used,
    reason = "tests: a failed unwrap is a failed test"
)]

mod common;

use std::time::Duration;

use common::{Files, KEY, Moto, Rt, Scratch, adapter_files, envelope};
use serde_json::json;

async fn lora_sim() -> brix_testkit::SimServer {
    let mut cfg = brix_testkit::sim_config("llama-3-8b");
    cfg.engine.enable_lora = true;
    cfg.engine.max_loras = 4;
    cfg.engine.max_cpu_loras = 4;
    cfg.engine.max_lora_rank = 16;
    brix_testkit::start_sim(&cfg).await
}

#[tokio::test]
async fn direct_load_and_unload_go_to_the_engine() {
    let sim = lora_sim().await;
    let rt = Rt::start("direct", &format!("http://{}", sim.addr), Some(KEY)).await;
    let dir = rt.dir.path().join("mine");
    adapter_files(&dir, 8);
    let body = json!({"lora_name": "direct-a", "lora_path": dir.to_str().unwrap()});
    let (status, text) = rt.post("/v1/lora_adapter/load", &body).await;
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("added successfully"), "{text}");
    assert!(rt.model_ids().await.contains(&"direct-a".to_owned()));

    // The engine's own refusal keeps its 4xx and message.
    let (status, text) = rt.post("/v1/lora_adapter/load", &body).await;
    assert_eq!(status, 400, "{text}");
    assert!(envelope(&text).0.contains("already been loaded"), "{text}");

    let (status, text) = rt
        .post("/v1/lora_adapter/unload", &json!({"lora_name": "direct-a"}))
        .await;
    assert_eq!(status, 200, "{text}");
    assert!(
        dir.join("adapter_config.json").is_file(),
        "a direct path is never cleaned up"
    );
    assert!(!rt.model_ids().await.contains(&"direct-a".to_owned()));
    let (status, text) = rt
        .post("/v1/lora_adapter/unload", &json!({"lora_name": "direct-a"}))
        .await;
    assert_eq!(status, 404, "{text}");
    envelope(&text);

    // A local artifact_url is verified in place and never cleaned up either.
    let body = json!({"lora_name": "local-a", "artifact_url": dir.to_str().unwrap()});
    let (status, text) = rt.post("/v1/lora_adapter/load", &body).await;
    assert_eq!(status, 200, "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        v["local_path"].as_str(),
        std::fs::canonicalize(&dir).unwrap().to_str()
    );
    let (status, text) = rt
        .post(
            "/v1/lora_adapter/unload",
            &json!({"lora_name": "local-a", "cleanup_local": true}),
        )
        .await;
    assert_eq!(status, 200, "{text}");
    assert!(dir.join("adapter_model.safetensors").is_file());
}

#[tokio::test]
async fn delegated_http_loads_share_one_download_and_unload_cleans_up() {
    let sim = lora_sim().await;
    let rt = Rt::start("http", &format!("http://{}", sim.addr), Some(KEY)).await;
    let files = adapter_files(&rt.dir.path().join("src"), 8);
    let (addr, server) = Files::start(&files, "/a/").await;
    let body = json!({"lora_name": "http-a", "artifact_url": format!("http://{addr}/a/")});
    let load = || rt.post("/v1/lora_adapter/load", &body);
    let (a, b, c, d) = tokio::join!(load(), load(), load(), load());
    let replies = [a, b, c, d];
    let mut paths = Vec::new();
    for (status, text) in &replies {
        assert_eq!(*status, 200, "{text}");
        let v: serde_json::Value = serde_json::from_str(text).unwrap();
        assert_eq!(v["status"], "success", "{text}");
        paths.push(v["local_path"].as_str().unwrap().to_owned());
    }
    assert_eq!(
        server.gets("/a/adapter_model.safetensors"),
        1,
        "one download for four loads"
    );
    let local = std::path::PathBuf::from(&paths[0]);
    assert!(paths.iter().all(|p| *p == paths[0]));
    assert!(
        local.starts_with(rt.dir.path().join("models")),
        "{}",
        local.display()
    );
    assert!(local.join("adapter_model.safetensors").is_file());
    assert!(rt.model_ids().await.contains(&"http-a".to_owned()));

    let (status, text) = rt
        .post(
            "/v1/lora_adapter/unload",
            &json!({"lora_name": "http-a", "cleanup_local": true}),
        )
        .await;
    assert_eq!(status, 200, "{text}");
    assert!(!local.exists(), "cleanup_local removes the download");
    assert!(!rt.model_ids().await.contains(&"http-a".to_owned()));

    // A source that does not have it: 404 from the artifact, the engine never asked.
    let missing = json!({"lora_name": "http-b", "artifact_url": format!("http://{addr}/nope/")});
    let (status, text) = rt.post("/v1/lora_adapter/load", &missing).await;
    assert_eq!(status, 404, "{text}");
    assert_eq!(envelope(&text).1, "artifact_not_found");

    let (_, metrics) = rt.get("/metrics").await;
    let e = brix_testkit::Exposition::parse(&metrics);
    let loads = |result: &str| {
        e.samples
            .iter()
            .find(|s| {
                s.name == "brix_runtime_adapter_loads_total"
                    && s.labels.get("result").map(String::as_str) == Some(result)
            })
            .map(|s| s.value)
    };
    assert_eq!(loads("success"), Some(4.0));
    assert_eq!(loads("download_error"), Some(1.0));
}

#[tokio::test]
async fn delegated_s3_load_from_moto() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    let sim = lora_sim().await;
    let rt = Rt::start("s3", &format!("http://{}", sim.addr), Some(KEY)).await;
    moto.put("/adapters", Vec::new()).await;
    for (name, bytes) in adapter_files(&rt.dir.path().join("src"), 8) {
        moto.put(&format!("/adapters/lora-s3/{name}"), bytes).await;
    }
    let body = json!({
        "lora_name": "s3-a",
        "artifact_url": "s3://adapters/lora-s3/",
        "credentials": {"AWS_ACCESS_KEY_ID": "AKIATEST", "AWS_SECRET_ACCESS_KEY": "x"},
        "additional_config": {"AWS_ENDPOINT_URL": moto.endpoint(), "api-key": KEY},
    });
    let (status, text) = rt.post("/v1/lora_adapter/load", &body).await;
    assert_eq!(status, 200, "{text}");
    assert!(rt.model_ids().await.contains(&"s3-a".to_owned()));
    let (status, text) = rt
        .post("/v1/lora_adapter/unload", &json!({"lora_name": "s3-a"}))
        .await;
    assert_eq!(status, 200, "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["cleaned_local"], true, "{text}");
}

#[tokio::test]
async fn changes_need_the_key_and_bad_bodies_get_the_envelope() {
    let sim = lora_sim().await;
    let rt = Rt::start("auth", &format!("http://{}", sim.addr), Some(KEY)).await;
    let body = json!({"lora_name": "x", "lora_path": "/tmp/x"}).to_string();
    for path in [
        "/v1/lora_adapter/load",
        "/v1/lora_adapter/unload",
        "/v1/model/download",
    ] {
        for key in [None, Some("wrong")] {
            let (status, text) = rt.post_raw(path, body.clone(), key).await;
            assert_eq!(status, 401, "{path} {key:?}: {text}");
            assert_eq!(envelope(&text).1, "authentication_error");
        }
    }
    // Reads need no key.
    assert_eq!(rt.get("/v1/models").await.0, 200);
    assert_eq!(rt.get("/v1/model/list").await.0, 200);

    let cases = [
        ("{not json", 400),
        (r#"{"lora_name": "x"}"#, 400),
        (r#"{"lora_name": "../../etc", "lora_path": "/tmp/x"}"#, 400),
        (r#"{"lora_name": "a/b", "artifact_url": "s3://b/k/"}"#, 400),
        (
            r#"{"lora_name": "x", "lora_path": "/a", "artifact_url": "s3://b/k/"}"#,
            400,
        ),
        (
            r#"{"lora_name": "x", "lora_path": "/a", "surprise": 1}"#,
            400,
        ),
        (r#"{"lora_name": "x", "artifact_url": "ftp://h/x"}"#, 400),
    ];
    for (body, want) in cases {
        let (status, text) = rt
            .post_raw("/v1/lora_adapter/load", body.into(), Some(KEY))
            .await;
        assert_eq!(status, want, "{body}: {text}");
        envelope(&text);
    }
    let big = format!(
        r#"{{"lora_name": "x", "lora_path": "{}"}}"#,
        "a".repeat(100_000)
    );
    let (status, text) = rt.post_raw("/v1/lora_adapter/load", big, Some(KEY)).await;
    assert_eq!(status, 413, "{text}");
    let (status, text) = rt
        .post_raw(
            "/v1/lora_adapter/unload",
            r#"{"lora_name": ".."}"#.into(),
            Some(KEY),
        )
        .await;
    assert_eq!(status, 400, "{text}");
    let (status, text) = rt
        .post_raw("/v1/runtime/models/activate", "{}".into(), Some(KEY))
        .await;
    assert_eq!(status, 501, "{text}");
    assert!(envelope(&text).0.contains("ModelClaim"), "{text}");
    let resp = rt
        .http
        .get(rt.url("/v1/lora_adapter/load"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 405);
    envelope(&resp.text().await.unwrap());
    let (status, text) = rt.get("/nowhere").await;
    assert_eq!(status, 404, "{text}");
    envelope(&text);
}

#[tokio::test]
async fn an_engine_that_is_down_is_not_ready_and_loads_are_502() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let rt = Rt::start("down", &url, Some(KEY)).await;
    assert_eq!(rt.get("/healthz").await.0, 200);
    let (status, text) = rt.get("/ready").await;
    assert_eq!(status, 503, "{text}");
    let body = json!({"lora_name": "x", "lora_path": "/tmp/x"});
    let (status, text) = rt.post("/v1/lora_adapter/load", &body).await;
    assert_eq!(status, 502, "{text}");
    assert_eq!(envelope(&text).1, "engine_unavailable");
    let (status, text) = rt.get("/v1/models").await;
    assert_eq!(status, 502, "{text}");
    let (status, metrics) = rt.get("/metrics").await;
    assert_eq!(status, 200);
    let e = brix_testkit::Exposition::parse(&metrics);
    let up = e
        .samples
        .iter()
        .find(|s| s.name == "brix_runtime_engine_up");
    assert_eq!(up.map(|s| s.value), Some(0.0), "{metrics}");
}

#[tokio::test]
async fn metrics_carry_the_standard_names_and_ready_follows_the_engine() {
    let sim = lora_sim().await;
    let rt = Rt::start("metrics", &format!("http://{}", sim.addr), Some(KEY)).await;
    assert_eq!(rt.get("/ready").await.0, 200);
    let (status, metrics) = rt.get("/metrics").await;
    assert_eq!(status, 200);
    let e = brix_testkit::Exposition::parse(&metrics);
    for name in [
        "aibrix:queue_size",
        "aibrix:num_requests_running",
        "aibrix:kv_cache_usage_perc",
        "brix_runtime_engine_up",
    ] {
        assert!(
            e.samples.iter().any(|s| s.name == name),
            "{name} missing:\n{metrics}"
        );
    }
    sim.kill();
    brix_testkit::eventually("ready turns 503", Duration::from_secs(10), || {
        let r = rt.get("/ready");
        async move { r.await.0 == 503 }
    })
    .await;
}

#[tokio::test]
async fn models_download_in_the_background_and_list() {
    let sim = lora_sim().await;
    let rt = Rt::start("models", &format!("http://{}", sim.addr), Some(KEY)).await;
    let src = Scratch::new("models-src");
    std::fs::create_dir_all(src.path().join("tiny")).unwrap();
    std::fs::write(src.path().join("tiny/config.json"), b"{}").unwrap();
    let uri = src.path().join("tiny");
    let (status, text) = rt
        .post(
            "/v1/model/download",
            &json!({"model_uri": uri.to_str().unwrap()}),
        )
        .await;
    assert_eq!(status, 200, "{text}");
    let card: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(card["model_name"], "tiny");
    brix_testkit::eventually("the model is downloaded", Duration::from_secs(10), || {
        let r = rt.get("/v1/model/list");
        async move {
            let v: serde_json::Value = serde_json::from_str(&r.await.1).unwrap();
            v["data"][0]["model_status"] == "downloaded"
        }
    })
    .await;
    let (status, text) = rt
        .post(
            "/v1/model/download",
            &json!({"model_uri": "s3://b/..", "model_name": ".."}),
        )
        .await;
    assert_eq!(status, 400, "{text}");
}

#[tokio::test]
async fn a_second_load_joins_the_first_and_another_source_meanwhile_is_409() {
    let sim = lora_sim().await;
    let rt = Rt::start("coalesce", &format!("http://{}", sim.addr), Some(KEY)).await;
    let files = two_sources(&rt.dir.path().join("src"));
    let (addr, server) = Files::start(&files, "/").await;
    server.hold("/a/");
    let first = json!({"lora_name": "c", "artifact_url": format!("http://{addr}/a/")});
    let elsewhere = json!({"lora_name": "c", "artifact_url": format!("http://{addr}/b/")});
    let started = || async { server.total.load(std::sync::atomic::Ordering::Relaxed) >= 1 };
    let coalesced = || async {
        let (_, text) = rt.get("/metrics").await;
        text.contains("brix_runtime_adapter_loads_coalesced_total 1")
    };
    let (a, b, conflict) = tokio::join!(
        rt.post("/v1/lora_adapter/load", &first),
        async {
            brix_testkit::eventually(
                "the first load reaches the source",
                Duration::from_secs(10),
                started,
            )
            .await;
            rt.post("/v1/lora_adapter/load", &first).await
        },
        async {
            brix_testkit::eventually(
                "the first load reaches the source",
                Duration::from_secs(10),
                started,
            )
            .await;
            let conflict = rt.post("/v1/lora_adapter/load", &elsewhere).await;
            brix_testkit::eventually(
                "the second load joins the first",
                Duration::from_secs(10),
                coalesced,
            )
            .await;
            server.open();
            conflict
        },
    );
    assert_eq!(conflict.0, 409, "{}", conflict.1);
    assert_eq!(envelope(&conflict.1).1, "conflict");
    assert_eq!((a.0, b.0), (200, 200), "{a:?} {b:?}");
    assert_eq!(a.1, b.1, "both answered by the one load");
    assert_eq!(server.gets("/a/adapter_model.safetensors"), 1);
}

#[tokio::test]
async fn a_load_whose_caller_left_does_not_block_the_name() {
    let sim = lora_sim().await;
    let rt = Rt::start("left", &format!("http://{}", sim.addr), Some(KEY)).await;
    let files = two_sources(&rt.dir.path().join("src"));
    let (addr, server) = Files::start(&files, "/").await;
    server.hold("/a/");
    let held = json!({"lora_name": "d", "artifact_url": format!("http://{addr}/a/")});
    let elsewhere = json!({"lora_name": "d", "artifact_url": format!("http://{addr}/b/")});
    tokio::select! {
        r = rt.post("/v1/lora_adapter/load", &held) => panic!("the held load answered: {r:?}"),
        () = brix_testkit::eventually("the load reaches the source", Duration::from_secs(10), || async {
            server.total.load(std::sync::atomic::Ordering::Relaxed) >= 1
        }) => {}
    }
    // The caller went away (its connection closed): the name is free for another source.
    let (status, text) = brix_testkit::eventually_some(
        "a load from another source is accepted",
        Duration::from_secs(10),
        || async {
            let r = rt.post("/v1/lora_adapter/load", &elsewhere).await;
            (r.0 != 409).then_some(r)
        },
    )
    .await;
    assert_eq!(status, 200, "{text}");
    server.open();
}

/// One adapter served under both `/a/` and `/b/`.
fn two_sources(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    adapter_files(dir, 8)
        .into_iter()
        .flat_map(|(n, b)| [(format!("a/{n}"), b.clone()), (format!("b/{n}"), b)])
        .collect()
}

/// Each scrape of a large engine exposition takes a copy and a parse of up to 16 MiB; clients
/// scraping at once (`/metrics` needs no key) must share one engine scrape, not multiply it.
#[tokio::test]
async fn concurrent_metrics_requests_share_one_engine_scrape() {
    let expo = b"# TYPE vllm:num_requests_waiting gauge\nvllm:num_requests_waiting 2\n".to_vec();
    let (addr, engine) = Files::start(&[("metrics".to_owned(), expo)], "/").await;
    engine.hold("/metrics");
    let rt = Rt::start("scrapes", &format!("http://{addr}"), Some(KEY)).await;
    let scrape = || async {
        let (status, text) = rt.get("/metrics").await;
        assert_eq!(status, 200);
        assert!(text.contains("aibrix:queue_size 2"), "{text}");
        assert!(text.contains("brix_runtime_engine_up 1"), "{text}");
    };
    tokio::join!(scrape(), scrape(), scrape(), scrape(), scrape(), async {
        brix_testkit::eventually(
            "the first scrape reaches the engine",
            Duration::from_secs(10),
            || async { engine.gets("/metrics") >= 1 },
        )
        .await;
        // Unshared, all five reach the (held) engine at once; give them the chance to.
        let _ = tokio::time::timeout(
            Duration::from_secs(2),
            brix_testkit::eventually("five engine scrapes", Duration::from_secs(10), || async {
                engine.gets("/metrics") >= 5
            }),
        )
        .await;
        engine.open();
    });
    assert_eq!(
        engine.gets("/metrics"),
        1,
        "one engine scrape for five clients"
    );
}
