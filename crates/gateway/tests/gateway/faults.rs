//! Faults a production gateway survives: a pod that answers 500, an engine that never
//! answers, a stream that stalls, a line that never ends, client-chosen label values.

use std::sync::atomic::Ordering;

use brix_testkit::sim_config;
use serde_json::json;

use crate::support::{
    MODEL, Misbehave, chat, eventually, fleet, gateway_config, gateway_over, header, raw_engine,
};

/// One of two pods answers 500 to everything: the least loaded pod is the broken one (it
/// fails fast), yet at concurrency 16 every request succeeds, retried on the other pod.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_answering_500_does_not_take_the_traffic() {
    let f = fleet(2, gateway_config(), |i| {
        let mut c = sim_config(MODEL);
        if i == 0 {
            c.faults.fail_rate = 1.0;
        }
        c
    })
    .await;
    let (n, concurrency) = (160, 16);
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (http, url, next) = (f.http.clone(), f.url("/v1/chat/completions"), next.clone());
            tokio::spawn(async move {
                let mut ok = 0;
                while next.fetch_add(1, Ordering::Relaxed) < n {
                    let r = http.post(&url).json(&chat("x")).send().await.unwrap();
                    ok += usize::from(r.status() == 200);
                }
                ok
            })
        })
        .collect();
    let mut ok = 0;
    for w in workers {
        ok += w.await.unwrap();
    }
    let retries = f
        .counter("brix_gateway_upstream_retries_total", &[("model", MODEL)])
        .await;
    let failures = f
        .counter(
            "brix_gateway_upstream_failures_total",
            &[("pod", "pod-0"), ("kind", "status_5xx")],
        )
        .await;
    assert!(ok >= n * 99 / 100, "{ok} of {n} succeeded");
    assert!(
        retries >= 1.0 && failures >= retries,
        "{retries} retries, {failures} failures"
    );
}

/// A 4xx is the client's fault: never retried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_error_is_not_retried() {
    let f = fleet(2, gateway_config(), |_| sim_config(MODEL)).await;
    let body = json!({"model": MODEL, "messages": [{"role": "user", "content": "x"}], "max_tokens": 100000});
    assert_eq!(
        f.post("/v1/chat/completions", &body, &[]).await.status(),
        400
    );
    assert_eq!(
        f.counter("brix_gateway_upstream_retries_total", &[]).await,
        0.0
    );
}

/// An engine that accepts requests and never answers: a stream moves to the other pod
/// after the first-byte timeout; with no other pod, a plain request gets a 504 envelope.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_engine_times_out_and_the_request_moves() {
    let mut cfg = gateway_config();
    cfg.proxy.first_byte_timeout_ms = 300;
    cfg.proxy.response_timeout_s = 1;
    let f = fleet(2, cfg, |i| {
        let mut c = sim_config(MODEL);
        if i == 0 {
            c.faults.hang_rate = 1.0;
        }
        c
    })
    .await;
    // Pin the first attempt to the hung pod.
    let hung = f.sims[0].addr.to_string();
    let body =
        json!({"model": MODEL, "messages": [{"role": "user", "content": "x"}], "stream": true});
    let r = f
        .post(
            "/v1/chat/completions",
            &body,
            &[
                ("routing-strategy", "session-affinity"),
                ("x-session-id", &hung),
            ],
        )
        .await;
    assert_eq!(
        (r.status().as_u16(), header(&r, "target-pod").as_str()),
        (200, "pod-1")
    );
    assert!(r.text().await.unwrap().contains("[DONE]"));
    assert_eq!(
        f.counter(
            "brix_gateway_upstream_failures_total",
            &[("pod", "pod-0"), ("kind", "first_byte_timeout")]
        )
        .await,
        1.0
    );
    // Only the hung pod left: a plain request ends in 504, in the OpenAI envelope.
    f.registry.set(MODEL, crate::support::targets(&f.sims[..1]));
    eventually("the hung pod is the only one, back in rotation", || async {
        let r = f.post("/v1/chat/completions", &chat("x"), &[]).await;
        let status = r.status();
        let v: serde_json::Value = r.json().await.unwrap();
        status == 504 && v["error"]["code"] == "upstream_timeout"
    })
    .await;
}

/// An engine that sends its headers and one event, then nothing: the client gets an SSE
/// error event after the idle timeout, and the request is counted as a 504.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_stream_ends_with_an_error_event() {
    let engine = raw_engine(Misbehave::StallAfterFirstEvent).await;
    let mut cfg = gateway_config();
    cfg.proxy.stream_idle_timeout_ms = 300;
    let f = gateway_over(cfg, &[engine.addr]).await;
    let body =
        json!({"model": MODEL, "messages": [{"role": "user", "content": "x"}], "stream": true});
    let r = f.post("/v1/chat/completions", &body, &[]).await;
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    let events = brix_testkit::sse_events(&text);
    assert!(events[0].contains("\"hi\""), "{text}");
    let last: serde_json::Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert_eq!(last["error"]["code"], "upstream_timeout", "{text}");
    eventually("the engine connection is dropped", || async {
        engine.dropped.load(Ordering::SeqCst)
    })
    .await;
    eventually("the stall is counted and reported", || async {
        f.counter("brix_gateway_requests_total", &[("status", "504")])
            .await
            == 1.0
            && f.counter(
                "brix_gateway_upstream_failures_total",
                &[("kind", "stream_stalled")],
            )
            .await
                == 1.0
    })
    .await;
}

/// An event stream with no delimiter cannot grow the gateway: the line buffer is capped,
/// the client gets an error event and the engine connection is dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_event_line_is_capped() {
    let engine = raw_engine(Misbehave::EndlessLine).await;
    let mut cfg = gateway_config();
    cfg.proxy.max_event_bytes = 64 << 10;
    let f = gateway_over(cfg, &[engine.addr]).await;
    let body =
        json!({"model": MODEL, "messages": [{"role": "user", "content": "x"}], "stream": true});
    let r = f.post("/v1/chat/completions", &body, &[]).await;
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert!(
        text.len() < 1 << 20,
        "{} bytes reached the client",
        text.len()
    );
    let last = text.trim_end().rsplit("\n\n").next().unwrap();
    let err: serde_json::Value =
        serde_json::from_str(last.trim_start().strip_prefix("data: ").unwrap()).unwrap();
    assert_eq!(err["error"]["code"], "upstream_event_too_large");
    eventually("the engine connection is dropped", || async {
        engine.dropped.load(Ordering::SeqCst)
    })
    .await;
}

/// Client-chosen values never become label values or unbounded headers: unknown model
/// names are `unknown`, strategy mixes lose their weights, a pod's series leave with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labels_come_from_bounded_sets() {
    let f = fleet(2, gateway_config(), |_| sim_config(MODEL)).await;
    for i in 0..100 {
        let model = format!("{i}-{}", "m".repeat(100 << 10));
        let body = json!({"model": model, "messages": [{"role": "user", "content": "x"}]});
        let r = f.post("/v1/chat/completions", &body, &[]).await;
        assert_eq!(r.status(), 400);
        let echoed = r.headers()["x-error-no-model-backends"].as_bytes().len();
        assert!(echoed <= 200, "{echoed} bytes echoed into a header");
        assert!(r.bytes().await.unwrap().len() < 1024);
    }
    for mix in [
        "random:3,least-request:5",
        "least-request:1,random:9",
        "random",
    ] {
        let (status, _, _) = f
            .call(
                "/v1/chat/completions",
                &chat("x"),
                &[("routing-strategy", mix)],
            )
            .await;
        assert_eq!(status, 200);
    }
    let text = f.get_text("/metrics").await;
    assert!(text.len() < 64 << 10, "/metrics is {} bytes", text.len());
    let m = f.metrics().await;
    assert_eq!(
        m.value(
            "brix_gateway_requests_total",
            &[("model", "unknown"), ("status", "400")]
        ),
        Some(100.0)
    );
    let mixes: Vec<String> = m
        .find("brix_gateway_routing_decisions_total", &[])
        .filter_map(|s| s.labels.get("strategy").cloned())
        .collect();
    assert!(
        mixes
            .iter()
            .all(|s| s == "least-request+random" || s == "random"),
        "{mixes:?}"
    );
    // pod-0 leaves: its series go with it.
    let pod1 = brix_gateway::Target {
        name: "pod-1".into(),
        address: f.sims[1].addr.to_string(),
        kv_events: None,
        metrics: None,
    };
    f.registry.set(MODEL, vec![pod1]);
    eventually("pod-0's series are gone", || async {
        let text = f.get_text("/metrics").await;
        !text.contains("pod=\"pod-0\"")
    })
    .await;
}
