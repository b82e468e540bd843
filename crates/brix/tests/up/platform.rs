//! The local platform: restarts, crash reports, draining, readiness.

use std::time::Duration;

use brix_platform::{Platform, PlatformError, ReplicaState};
use serde_json::json;

use crate::support::{alive, command_model, eventually, sim_model, up};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_command_replica_is_restarted_on_its_address() {
    let u = up("restart", &[command_model("m", 1, "")]).await;
    u.platform
        .wait_ready(Duration::from_secs(60))
        .await
        .unwrap();
    let before = u.replicas("m").await.remove(0);
    let pid = before.pid.unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap()),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    eventually("the replica is back", || async {
        let r = u.replicas("m").await.remove(0);
        r.restarts == 1 && r.state == ReplicaState::Ready && r.pid != Some(pid)
    })
    .await;
    let after = u.replicas("m").await.remove(0);
    assert_eq!(after.address, before.address, "restarted on the same port");
    assert!(after.last_exit.unwrap().contains("signal"));
    let r = u
        .http
        .post(format!("{}/v1/completions", u.base))
        .json(&json!({"model": "m", "prompt": "hi", "max_tokens": 2}))
        .send()
        .await
        .unwrap();
    eventually_ok(&u, r.status().as_u16()).await;
    u.platform.shutdown().await;
    assert!(!alive(after.pid.unwrap()), "no orphan after shutdown");
}

/// The first request may race the gateway's probe of the restarted replica: retry until 200.
async fn eventually_ok(u: &crate::support::Up, first: u16) {
    if first == 200 {
        return;
    }
    eventually("requests succeed again", || async {
        u.http
            .post(format!("{}/v1/completions", u.base))
            .json(&json!({"model": "m", "prompt": "hi", "max_tokens": 2}))
            .send()
            .await
            .unwrap()
            .status()
            == 200
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engine_command_that_exits_at_once_is_a_clear_error() {
    let mut m = command_model("bad", 1, "");
    if let brix_api::EngineSpec::Command(c) = &mut m.engine {
        c.command = "sh -c 'echo cannot open model weights on port {port} >&2; exit 3'".into();
    }
    let u = up("exits", &[m]).await;
    let e = u
        .platform
        .wait_ready(Duration::from_secs(30))
        .await
        .unwrap_err();
    let text = e.to_string();
    assert!(matches!(e, PlatformError::Engine { .. }), "{text}");
    assert!(text.contains("cannot open model weights"), "{text}");
    assert!(text.contains("exit status: 3"), "{text}");
    u.platform.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scaling_down_fails_no_request_in_flight() {
    let u = up("drain", &[sim_model("m", 2, "fixed:300")]).await;
    u.platform
        .wait_ready(Duration::from_secs(30))
        .await
        .unwrap();
    eventually("both replicas are in the gateway", || async {
        u.gateway.pods().iter().filter(|p| p.healthy).count() == 2
    })
    .await;
    let mut streams = Vec::new();
    for i in 0..8 {
        let (http, url) = (u.http.clone(), format!("{}/v1/completions", u.base));
        streams.push(tokio::spawn(async move {
            let r = http
                .post(url)
                .header("routing-strategy", "least-request")
                .json(&json!({"model": "m", "prompt": format!("stream {i}"), "stream": true}))
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let pod = r.headers()["target-pod"].to_str().unwrap().to_string();
            (status, pod, r.text().await.unwrap())
        }));
    }
    eventually("requests in flight on both replicas", || async {
        let pods = u.gateway.pods();
        pods.iter().all(|p| p.in_flight > 0) && pods.len() == 2
    })
    .await;
    u.platform.scale("m", 1).await.unwrap();
    let mut pods = std::collections::BTreeSet::new();
    for s in streams {
        let (status, pod, body) = s.await.unwrap();
        assert_eq!(status, 200);
        assert!(
            body.trim_end().ends_with("data: [DONE]"),
            "cut short on {pod}"
        );
        pods.insert(pod);
    }
    assert_eq!(
        pods.len(),
        2,
        "the drained replica was serving some of them"
    );
    eventually("one replica left", || async {
        u.replicas("m").await.len() == 1
    })
    .await;
    u.platform.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scaling_down_never_removes_a_starting_replica() {
    let mut spec = sim_model("m", 1, "fixed:4");
    if let brix_api::EngineSpec::Sim(sim) = &mut spec.engine {
        // Long enough that the replica asked for below is still starting when scaled down.
        sim.startup_delay_s = Some(5.0);
    }
    let u = up("starting", &[spec]).await;
    u.platform
        .wait_ready(Duration::from_secs(30))
        .await
        .unwrap();
    u.platform.scale("m", 2).await.unwrap();
    eventually("a second replica is starting", || async {
        u.replicas("m")
            .await
            .iter()
            .any(|r| r.id == "m-1" && r.state == ReplicaState::Starting)
    })
    .await;
    // Down to 1 while it starts: neither is stopped (the ready one is all the capacity
    // there is; the starting one is kept), so nothing drains yet.
    u.platform.scale("m", 1).await.unwrap();
    let states: Vec<(String, ReplicaState)> = u
        .replicas("m")
        .await
        .into_iter()
        .map(|r| (r.id, r.state))
        .collect();
    assert_eq!(
        states,
        [
            ("m-0".to_string(), ReplicaState::Ready),
            ("m-1".to_string(), ReplicaState::Starting)
        ]
    );
    // Once it is ready, the surplus is trimmed to the count asked for, and what is left
    // is ready and reports its start-up time.
    eventually("one ready replica left", || async {
        let r = u.replicas("m").await;
        r.len() == 1 && r[0].state == ReplicaState::Ready
    })
    .await;
    let r = u.replicas("m").await;
    assert!(r[0].startup_ms.is_some(), "{r:?}");
    u.platform.shutdown().await;
}
