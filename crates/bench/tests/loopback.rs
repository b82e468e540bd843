//! The mock and the load generator against each other on real sockets (`127.0.0.1:0`).
//! Runs stop after a fixed number of requests, so nothing here depends on how fast the
//! machine is; no latency is asserted, only that the numbers are consistent.

use std::net::SocketAddr;
use std::time::Duration;

use brix_bench::sse;
use brix_bench::{LoadConfig, LoadError, LoadReport, MockConfig, MockHandle, MockServer, Stop};

async fn start_mock() -> (SocketAddr, MockHandle) {
    let server = MockServer::bind("127.0.0.1:0".parse().expect("addr"), MockConfig::default())
        .await
        .expect("bind");
    let addr = server.local_addr().expect("local addr");
    let handle = server.handle();
    tokio::spawn(server.run());
    (addr, handle)
}

fn config(addr: SocketAddr, path: &str, concurrency: usize, n: u64, stream: bool) -> LoadConfig {
    let mut cfg = LoadConfig::new(&format!("http://{addr}"), path).expect("config");
    cfg.concurrency = concurrency;
    cfg.stop = Stop::Requests(n);
    cfg.warmup = Duration::ZERO;
    cfg.stream = stream;
    cfg.prefixes = 4;
    cfg
}

fn assert_consistent(r: &LoadReport, n: u64) {
    let l = &r.latency;
    assert_eq!(r.requests, n, "{r}");
    assert_eq!(r.errors, 0, "{r}");
    assert_eq!(l.count, n);
    assert!(l.p50_ms > 0.0, "{r}");
    assert!(
        l.p50_ms <= l.p90_ms && l.p90_ms <= l.p99_ms && l.p99_ms <= l.max_ms,
        "{r}"
    );
    assert!(l.mean_ms <= l.max_ms, "{r}");
    assert!(r.duration_s > 0.0 && r.rps > 0.0, "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_against_mock_every_shape() {
    let (addr, mock) = start_mock().await;
    let mut served = 0;
    for (path, stream) in [
        ("/v1/chat/completions", false),
        ("/v1/chat/completions", true),
        ("/v1/completions", false),
        ("/v1/completions", true),
    ] {
        let report = brix_bench::load::run(config(addr, path, 4, 200, stream))
            .await
            .expect("load runs");
        assert_consistent(&report, 200);
        assert_eq!(report.stream, stream);
        served += 200;
        assert_eq!(mock.generations(), served, "{path} stream={stream}");
    }
    let mut json = Vec::new();
    let report = brix_bench::load::run(config(addr, "/v1/chat/completions", 1, 3, false))
        .await
        .expect("load runs");
    report.write_json(&mut json).expect("json");
    let v: serde_json::Value = serde_json::from_slice(&json).expect("one JSON object");
    assert_eq!(v["requests"], 3);
    assert_eq!(v["errors"], 0);
    assert!(v["p99_ms"].as_f64().is_some() && v["rps"].as_f64().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_2xx_counts_as_errors_not_latency() {
    let (addr, mock) = start_mock().await;
    let report = brix_bench::load::run(config(addr, "/v1/nope", 2, 10, false))
        .await
        .expect("load runs");
    assert_eq!(report.requests, 0);
    assert_eq!(report.errors, 10);
    assert_eq!(report.errors_by_kind.status, 10);
    assert_eq!(mock.generations(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_listening_fails_before_the_run() {
    let (addr, _) = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        (l.local_addr().expect("addr"), l)
    };
    let err = brix_bench::load::run(config(addr, "/v1/chat/completions", 1, 1, false))
        .await
        .expect_err("no server");
    assert!(matches!(err, LoadError::Connect { .. }), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mock_answers_what_routers_ask() {
    let (addr, _) = start_mock().await;
    let base = format!("http://{addr}");
    let client = reqwest::Client::new();
    let get = |path: &'static str| client.get(format!("{base}{path}")).send();

    assert_eq!(get("/health").await.expect("health").status(), 200);
    for path in ["/v1/models", "/get_server_info", "/get_model_info"] {
        let r = get(path).await.expect(path);
        assert_eq!(r.status(), 200, "{path}");
        let v: serde_json::Value = r.json().await.expect(path);
        assert!(v.is_object(), "{path}");
    }
    let models: serde_json::Value = get("/v1/models")
        .await
        .expect("models")
        .json()
        .await
        .expect("json");
    assert_eq!(models["data"][0]["id"], "mock");
    let info: serde_json::Value = get("/get_server_info")
        .await
        .expect("info")
        .json()
        .await
        .expect("json");
    assert_eq!(info["dp_size"], 1);

    let metrics = get("/metrics")
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    for gauge in [
        "vllm:num_requests_running",
        "vllm:num_requests_waiting",
        "vllm:kv_cache_usage_perc",
    ] {
        assert!(
            metrics.contains(&format!("{gauge}{{model_name=\"mock\"}} ")),
            "{gauge} in {metrics}"
        );
    }

    let body = serde_json::json!({
        "model": "mock", "messages": [{"role": "user", "content": "hi"}], "stream": true,
    });
    let r = client
        .post(format!("{base}/v1/chat/completions"))
        .json(&body)
        .send()
        .await
        .expect("stream");
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let text = r.bytes().await.expect("body");
    let s = sse::summarize(&text);
    assert!(s.is_complete(), "{}", String::from_utf8_lossy(&text));
    let last_data = String::from_utf8_lossy(&text)
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .rfind(|d| *d != "[DONE]")
        .map(str::to_owned)
        .expect("a usage chunk");
    let usage: serde_json::Value = serde_json::from_str(&last_data).expect("chunk json");
    assert_eq!(usage["usage"]["completion_tokens"], 4);

    let plain = client
        .post(format!("{base}/v1/completions"))
        .json(&serde_json::json!({"model": "mock", "prompt": "hi"}))
        .send()
        .await
        .expect("completion");
    let v: serde_json::Value = plain.json().await.expect("json");
    assert_eq!(v["object"], "text_completion");
    assert_eq!(v["usage"]["total_tokens"], 5);
}
