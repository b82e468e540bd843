//! Exact prefix routing from KV events, live (issue 12): `brix up`'s platform gives each
//! `brix sim` replica (child process, or in process) its own event ports and
//! `--kv-events-config`, the gateway subscribes to each and routes on what the engines say
//! they cache. A prompt cached on one pod behind the
//! gateway's back (sent to the pod directly, so the approximate index knows nothing) is routed
//! there; a SIGKILLed pod comes back with an empty index.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use brix_gateway::Registry;
use brix_platform::{FleetFile, LocalConfig, LocalPlatform, Platform, ReplicaState};
use serde_json::json;

use crate::support::tempdir::Dir;
use crate::support::{BRIX, SMALL, eventually, metric, metrics_text};

const FLEET: &str = "gateway:
  routing: {default_strategy: prefix-cache}
  kv_events:
    models: [{name: m}]
models:
  - name: m
    replicas: 3
    engine:
      command:
        command: \"{brix} sim --port {port} --served-model-name {model} {small} {kv_events_config}\"
        stop_grace_s: 5
";

/// A long prompt of its own for `i` (about 700 cl100k tokens).
fn prompt(i: usize) -> String {
    (0..300)
        .map(|w| format!("conversation {i} word {w}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The fleet `yaml` started as `brix up` starts it: (platform, gateway URL, scratch dir).
async fn start(tag: &str, yaml: &str) -> (LocalPlatform, String, Dir) {
    let dir = Dir::new(tag);
    let yaml = yaml.replace("{brix}", BRIX).replace("{small}", SMALL);
    let file = FleetFile::parse("fleet.yaml", &yaml).unwrap();
    assert_eq!(file.kv_events_models(), BTreeSet::from(["m".to_string()]));
    let registry = Arc::new(Registry::new());
    let mut cfg = file.gateway.clone();
    cfg.scrape.interval_ms = 50;
    let (routes, gateway) = brix_gateway::app_with_handle(cfg, registry.as_ref())
        .await
        .unwrap();
    let in_flight = {
        let g = gateway.clone();
        Arc::new(move |a: &str| g.in_flight(a))
    };
    let platform = LocalPlatform::start(
        &file.models,
        registry,
        in_flight,
        LocalConfig {
            logs_dir: dir.0.join("logs"),
            health_interval: Duration::from_millis(100),
            startup_poll: Duration::from_millis(50),
            kv_events: file.kv_events_models(),
            ..LocalConfig::default()
        },
    );
    platform.wait_ready(Duration::from_secs(60)).await.unwrap();
    let base = crate::support::serve(routes).await;
    (platform, base, dir)
}

/// Sends each replica a prompt of its own directly, waits for the gateway to see their
/// blocks, then checks that through the gateway each prompt goes back to its replica.
async fn prompts_follow_their_blocks(platform: &LocalPlatform, base: &str, replicas: usize) {
    let http = reqwest::Client::new();
    let metrics = || metrics_text(&http, base);
    let pods = platform.replicas("m").await.unwrap();
    assert_eq!(pods.len(), replicas);
    for (i, r) in pods.iter().enumerate() {
        let resp = http
            .post(format!("http://{}/v1/completions", r.address))
            .json(&json!({"model": "m", "prompt": prompt(i), "max_tokens": 1}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    for r in &pods {
        eventually(&format!("{}'s events reach the gateway", r.id), || async {
            metric(
                &metrics().await,
                "brix_gateway_kv_index_blocks",
                &[("pod", &r.id)],
            ) >= 40.0
        })
        .await;
    }
    for round in 0..2 {
        for (i, r) in pods.iter().enumerate() {
            let resp = http
                .post(format!("{base}/v1/completions"))
                .json(&json!({"model": "m", "prompt": prompt(i), "max_tokens": 1}))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200);
            let pod = resp.headers()["target-pod"].to_str().unwrap().to_string();
            assert_eq!(pod, r.id, "round {round}: prompt {i}");
        }
    }
}

/// The in-process `sim:` engine publishes too when its model is under `kv_events`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_process_sim_replicas_publish_their_events_too() {
    let yaml = "gateway:
  routing: {default_strategy: prefix-cache}
  kv_events:
    models: [{name: m}]
models:
  - name: m
    replicas: 2
    engine:
      sim: {gpu: H200, num_gpu_blocks_override: 512, max_model_len: 4096}
";
    let (platform, base, _dir) = start("kvevents-insim", yaml).await;
    prompts_follow_their_blocks(&platform, &base, 2).await;
    platform.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_go_to_the_pod_whose_events_show_the_prompt_and_a_killed_pod_starts_empty() {
    let (platform, base, _dir) = start("kvevents", FLEET).await;
    let http = reqwest::Client::new();
    let metrics = || metrics_text(&http, &base);
    prompts_follow_their_blocks(&platform, &base, 3).await;
    let replicas = platform.replicas("m").await.unwrap();
    let text = metrics().await;
    let cached = metric(
        &text,
        "brix_gateway_kv_routed_prompt_tokens_total",
        &[("kind", "cached")],
    );
    let uncached = metric(
        &text,
        "brix_gateway_kv_routed_prompt_tokens_total",
        &[("kind", "uncached")],
    );
    assert!(
        cached > 10.0 * uncached,
        "cached {cached}, uncached {uncached}"
    );
    // The first round's guesses were all short of the truth (nothing went through the gateway).
    assert!(
        metric(
            &text,
            "brix_gateway_kv_predictions_total",
            &[("outcome", "under")]
        ) >= 3.0
    );
    assert!(metric(&text, "brix_gateway_kv_events_total", &[("kind", "stored")]) >= 3.0);

    // SIGKILL pod 0: it restarts on the same ports with an empty cache, and its index is
    // cleared while the others keep theirs.
    let victim = &replicas[0];
    let pid = victim.pid.unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap()),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    eventually("the killed replica is back", || async {
        let r = platform.replicas("m").await.unwrap().remove(0);
        r.restarts == 1 && r.state == ReplicaState::Ready && r.pid != Some(pid)
    })
    .await;
    eventually("its exact index is empty", || async {
        metric(
            &metrics().await,
            "brix_gateway_kv_index_blocks",
            &[("pod", &victim.id)],
        ) == 0.0
    })
    .await;
    let text = metrics().await;
    assert!(
        metric(
            &text,
            "brix_gateway_kv_index_blocks",
            &[("pod", &replicas[1].id)]
        ) >= 40.0,
        "the others keep theirs"
    );
    // Its prompt now goes anywhere but where the exact indexes say nothing is cached: pods 1
    // and 2 hold other prompts' blocks only, so prefix-cache finds no match and balances.
    let resp = http
        .post(format!("{base}/v1/completions"))
        .json(&json!({"model": "m", "prompt": prompt(0), "max_tokens": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    platform.shutdown().await;
}
