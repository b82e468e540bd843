//! The GPU diagnostics gate on the local platform, with a diagnosis the test controls (the
//! `brix up` binary with the NVML mock is `gate_binary.rs`): a replica on a failing GPU is
//! never started and says why, one whose GPU turns bad is drained (its streams finish) and
//! stopped, both start once their GPUs pass again, and a healthy GPU's replica is untouched.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use brix_gateway::{GatewayConfig, Registry};
use brix_platform::gate::{GateConfig, GpuVerdict};
use brix_platform::{LocalConfig, LocalPlatform, Platform, ReplicaState};
use serde_json::json;

use crate::support::{command_model, eventually, serve, sim_model, tempdir};

/// Per-GPU verdicts the test flips: None healthy, Some(reason) failing.
type Gpus = Arc<Mutex<BTreeMap<u32, String>>>;

fn diagnosis(gpus: &Gpus, runs: &Arc<AtomicBool>) -> brix_platform::gate::Diagnose {
    let (gpus, runs) = (gpus.clone(), runs.clone());
    Arc::new(move || {
        runs.store(true, Ordering::SeqCst);
        let now = gpus.lock().unwrap().clone();
        let verdict: GpuVerdict = Arc::new(move |g| match now.get(&g) {
            Some(why) => Err(why.clone()),
            None => Ok(()),
        });
        verdict
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_follow_their_gpus_verdicts() {
    let gpus: Gpus = Arc::default();
    gpus.lock()
        .unwrap()
        .insert(1, "ECC uncorrectable errors: 3 (volatile)".into());
    let runs = Arc::new(AtomicBool::new(false));
    let models = [
        command_model("on-bad", 1, "--output-len fixed:300"),
        command_model("on-good", 1, "--output-len fixed:300"),
        sim_model("free", 1, "fixed:4"),
    ];
    let registry = Arc::new(Registry::new());
    let mut cfg = GatewayConfig::default();
    cfg.scrape.interval_ms = 50;
    let (routes, gateway) = brix_gateway::app_with_handle(cfg, registry.as_ref())
        .await
        .unwrap();
    let base = serve(routes).await;
    let logs = tempdir::Dir::new("gate");
    let in_flight = {
        let g = gateway.clone();
        Arc::new(move |a: &str| g.in_flight(a))
    };
    let platform = LocalPlatform::start(
        &models,
        registry,
        in_flight,
        LocalConfig {
            logs_dir: logs.0.clone(),
            health_interval: Duration::from_millis(100),
            startup_poll: Duration::from_millis(50),
            gate: Some(GateConfig {
                models: [("on-bad".into(), vec![1]), ("on-good".into(), vec![0])].into(),
                interval: Duration::from_millis(200),
                diagnose: diagnosis(&gpus, &runs),
            }),
            ..LocalConfig::default()
        },
    );
    // `wait_ready` does not wait for the held-back replica.
    platform.wait_ready(Duration::from_secs(60)).await.unwrap();
    assert!(runs.load(Ordering::SeqCst), "diagnosed before starting");
    let one = |model: &'static str| {
        let p = platform.clone();
        async move { p.replicas(model).await.unwrap().remove(0) }
    };
    let held = one("on-bad").await;
    assert_eq!(held.state, ReplicaState::Failed);
    assert_eq!(
        held.reason.as_deref(),
        Some("GPU 1: ECC uncorrectable errors: 3 (volatile)")
    );
    assert_eq!(held.address, "127.0.0.1:0", "never started: no port");
    assert_eq!((held.pid, held.restarts), (None, 0));
    let good = one("on-good").await;
    assert_eq!(good.state, ReplicaState::Ready);
    assert_eq!(one("free").await.state, ReplicaState::Ready);
    eventually("on-good is in the gateway", || async {
        gateway
            .pods()
            .iter()
            .any(|p| p.address == good.address && p.healthy)
    })
    .await;

    // GPU 0 turns bad with streams in flight on its replica: they finish, then it stops.
    let http = reqwest::Client::new();
    let mut streams = Vec::new();
    for i in 0..3 {
        let (http, url) = (http.clone(), format!("{base}/v1/completions"));
        streams.push(tokio::spawn(async move {
            let r = http
                .post(url)
                .json(&json!({"model": "on-good", "prompt": format!("s{i}"), "stream": true}))
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }));
    }
    eventually("streams in flight", || async {
        gateway.in_flight(&good.address) == 3
    })
    .await;
    gpus.lock()
        .unwrap()
        .insert(0, "PCIe link width x4, max x16".into());
    for s in streams {
        let (status, body) = s.await.unwrap();
        assert_eq!(status, 200);
        assert!(body.trim_end().ends_with("data: [DONE]"), "cut short");
    }
    eventually("on-good is failed with the reason", || async {
        let r = one("on-good").await;
        r.state == ReplicaState::Failed
            && r.pid.is_none()
            && r.reason.as_deref() == Some("GPU 0: PCIe link width x4, max x16")
    })
    .await;
    assert!(
        !crate::support::alive(good.pid.unwrap()),
        "its engine stopped"
    );
    assert!(
        !gateway.pods().iter().any(|p| p.address == good.address),
        "out of the gateway"
    );
    let r = http
        .post(format!("{base}/v1/completions"))
        .json(&json!({"model": "free", "prompt": "hi", "max_tokens": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "the healthy model still serves");
    assert_eq!(one("free").await.state, ReplicaState::Ready);

    // Both GPUs pass again: both replicas start, neither counted as a crash.
    gpus.lock().unwrap().clear();
    for model in ["on-bad", "on-good"] {
        eventually(&format!("{model} ready again"), || async {
            let r = one(model).await;
            r.state == ReplicaState::Ready && r.reason.is_none() && r.restarts == 0
        })
        .await;
    }
    let r = http
        .post(format!("{base}/v1/completions"))
        .json(&json!({"model": "on-bad", "prompt": "hi", "max_tokens": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    platform.shutdown().await;
}
