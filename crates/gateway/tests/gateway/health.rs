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
