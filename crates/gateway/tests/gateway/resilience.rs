//! Pods that die, streams that break, clients that leave, pods that come back.

use std::time::Duration;

use brix_testkit::{sim_config, start_sim_at};
use serde_json::json;

use crate::support::{MODEL, chat, eventually, fleet, gateway_config, header, plain, targets};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_connection_is_retried_on_another_pod() {
    let mut cfg = gateway_config();
    cfg.scrape.interval_ms = 60_000; // the probe will not notice: the proxy path must
    cfg.outlier.consecutive_failures = 1; // one refused connection ejects
    let f = fleet(2, cfg, |_| sim_config(MODEL)).await;
    f.sims[0].kill();
    tokio::time::sleep(Duration::from_millis(50)).await;
    for _ in 0..10 {
        let (status, pod, _) = f
            .call(
                "/v1/chat/completions",
                &chat("x"),
                &[("routing-strategy", "random")],
            )
            .await;
        assert_eq!((status, pod.as_str()), (200, "pod-1"));
    }
    assert_eq!(
        f.counter("brix_gateway_upstream_retries_total", &[("model", MODEL)])
            .await,
        1.0,
        "retried once, then the dead pod left rotation"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engine_dying_mid_stream_ends_the_stream_with_an_error_event() {
    let f = fleet(1, gateway_config(), |_| {
        let mut c = sim_config(MODEL);
        c.faults.die_mid_stream_after = Some(2);
        c
    })
    .await;
    let body = json!({"model": MODEL, "prompt": "x", "stream": true, "max_tokens": 4});
    let r = f.post("/v1/completions", &body, &[]).await;
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    let last = text.trim_end().rsplit("\n\n").next().unwrap();
    let err: serde_json::Value =
        serde_json::from_str(last.strip_prefix("data: ").unwrap()).unwrap();
    assert_eq!(err["error"]["code"], "upstream_disconnected", "{text}");
    assert!(!text.contains("[DONE]"));
    eventually("the broken stream is counted once", || async {
        f.counter(
            "brix_gateway_errors_total",
            &[("reason", "upstream_broke_mid_response")],
        )
        .await
            == 1.0
    })
    .await;
    assert_eq!(
        f.counter("brix_gateway_requests_total", &[("status", "502")])
            .await,
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_leaving_cancels_the_engine_request() {
    let f = fleet(1, gateway_config(), |_| {
        let mut c = sim_config(MODEL);
        c.engine.output_len = brix_sim::OutputLen::Fixed(1500);
        c
    })
    .await;
    let body = json!({"model": MODEL, "prompt": "x", "stream": true});
    let mut r = f.post("/v1/completions", &body, &[]).await;
    assert!(r.chunk().await.unwrap().is_some());
    drop(r);
    let engine = format!("http://{}/metrics", f.sims[0].addr);
    eventually("the engine aborts the request", || async {
        let text = f
            .http
            .get(&engine)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let m = brix_testkit::Exposition::parse(&text);
        m.find("vllm:num_requests_running", &[])
            .map(|s| s.value)
            .sum::<f64>()
            == 0.0
    })
    .await;
    eventually(
        "the slot is released and the request counted as 499",
        || async {
            f.counter("brix_gateway_in_flight_requests", &[]).await == 0.0
                && f.counter("brix_gateway_requests_total", &[("status", "499")])
                    .await
                    == 1.0
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_that_comes_back_on_its_address_rejoins() {
    let f = plain(1).await;
    let addr = f.sims[0].addr;
    f.sims[0].kill();
    eventually("the dead pod leaves rotation", || async {
        f.post("/v1/chat/completions", &chat("x"), &[])
            .await
            .status()
            == 503
    })
    .await;
    let _back = start_sim_at(&sim_config(MODEL), addr).await;
    eventually("the restarted pod rejoins", || async {
        f.post("/v1/chat/completions", &chat("x"), &[])
            .await
            .status()
            == 200
    })
    .await;
    let m = f.metrics().await;
    assert_eq!(
        m.value("brix_gateway_pod_healthy", &[("pod", "pod-0")]),
        Some(1.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_changes_take_effect() {
    let f = plain(1).await;
    let extra = brix_testkit::start_sim(&sim_config(MODEL)).await;
    let mut all = targets(&f.sims);
    all.push(brix_gateway::Target {
        name: "late".into(),
        address: extra.addr.to_string(),
        kv_events: None,
        metrics: None,
    });
    f.registry.set(MODEL, all);
    eventually("the new pod takes traffic", || async {
        let r = f
            .post(
                "/v1/chat/completions",
                &chat("x"),
                &[("routing-strategy", "random")],
            )
            .await;
        header(&r, "target-pod") == "late"
    })
    .await;
    f.registry.set(MODEL, vec![]);
    eventually("no pod: 503", || async {
        f.post("/v1/chat/completions", &chat("x"), &[])
            .await
            .status()
            == 503
    })
    .await;
    f.registry.remove(MODEL);
    eventually("the model is gone", || async {
        f.post("/v1/chat/completions", &chat("x"), &[])
            .await
            .status()
            == 400
    })
    .await;
}
