//! Rotation from `/health`, outlier ejection from proxied answers (the routing core's rules,
//! driven by the live gateway).

use std::time::Duration;

use brix_testkit::sim_config;

use crate::support::{MODEL, fleet, gateway_config};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_still_starting_is_not_in_rotation() {
    // pod-1 answers 503 on /health (and on requests) while its /metrics already answers.
    let f = fleet(2, gateway_config(), |i| {
        let mut c = sim_config(MODEL);
        if i == 1 {
            c.faults.startup_delay = Duration::from_secs(600);
        }
        c
    })
    .await;
    let metrics = f
        .http
        .get(format!("http://{}/metrics", f.sims[1].addr))
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status(), 200, "the starting pod's /metrics answers");
    for _ in 0..20 {
        let (status, pod) = f.chat_via("random").await;
        assert_eq!((status, pod.as_str()), (200, "pod-0"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_answering_500_is_ejected() {
    // pod-1 fails every request fast: under least-request it would look least loaded forever.
    let f = fleet(2, gateway_config(), |i| {
        let mut c = sim_config(MODEL);
        if i == 1 {
            c.faults.fail_rate = 1.0;
        }
        c
    })
    .await;
    let mut failed = 0;
    let mut last = Vec::new();
    for n in 0..40 {
        let (status, pod) = f.chat_via("least-request").await;
        if status != 200 {
            failed += 1;
        }
        if n >= 20 {
            last.push((status, pod));
        }
    }
    let consecutive = gateway_config().outlier.consecutive_failures;
    assert!(
        failed <= consecutive,
        "{failed} failed: the broken pod goes after {consecutive} failures in a row"
    );
    assert!(
        last.iter().all(|(s, p)| *s == 200 && p == "pod-0"),
        "{last:?}"
    );
}

/// A pod with a metrics address (a runtime sidecar's) is scraped there, not on its engine:
/// the load gauges come from that exposition, and moving the address re-probes the pod.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_read_from_the_pods_metrics_address() {
    let f = fleet(1, gateway_config(), |_| sim_config(MODEL)).await;
    let exposition = "# TYPE aibrix:kv_cache_usage_perc gauge\naibrix:kv_cache_usage_perc 0.42\n";
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || async move { exposition }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sidecar = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let engine = f.sims[0].addr.to_string();
    let kv = || {
        f.handle
            .pods()
            .into_iter()
            .find(|p| p.address == engine)
            .and_then(|p| p.kv_usage)
    };
    brix_testkit::eventually(
        "the engine's own gauge",
        Duration::from_secs(10),
        || async { kv() == Some(0.0) },
    )
    .await;
    f.registry.set(
        MODEL,
        vec![brix_gateway::Target {
            name: "pod-0".into(),
            address: engine.clone(),
            kv_events: None,
            metrics: Some(sidecar),
        }],
    );
    brix_testkit::eventually("the sidecar's gauge", Duration::from_secs(10), || async {
        kv() == Some(0.42)
    })
    .await;
    let (status, pod) = f.chat_via("random").await;
    assert_eq!(
        (status, pod.as_str()),
        (200, "pod-0"),
        "requests still go to the engine"
    );
}
