//! The `brix up` binary with its engines' neighbours: GPU diagnostics through the real NVML
//! mock library (`libbrix_nvml_mock.so`, its TOML rewritten between checks) and a runtime
//! sidecar beside a `brix sim` command replica, through which a ModelAdapter from an HTTP
//! artifact server is loaded (delegated) and whose metrics carry the standard names.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::routing::get;
use brix_testkit::nvml_mock_library;
use serde_json::{Value, json};

use crate::support::{BRIX, Child, SMALL, alive, eventually, serve, status_json, tempdir::Dir};

/// GETs per file name.
type Gets = Arc<Mutex<BTreeMap<String, u32>>>;
/// The files served and their GET counts.
type Served = (Arc<BTreeMap<String, Vec<u8>>>, Gets);

/// Serves `files` under `/a/NAME`, counting GETs per name.
async fn artifact_server(files: BTreeMap<String, Vec<u8>>) -> (String, Gets) {
    let gets: Gets = Arc::default();
    let state: Served = (Arc::new(files), gets.clone());
    let app = axum::Router::new()
        .route(
            "/a/{name}",
            get(
                |State((files, gets)): State<Served>, Path(name): Path<String>| async move {
                    *gets.lock().unwrap().entry(name.clone()).or_default() += 1;
                    match files.get(&name) {
                        Some(b) => (axum::http::StatusCode::OK, b.clone()),
                        None => (axum::http::StatusCode::NOT_FOUND, Vec::new()),
                    }
                },
            ),
        )
        .with_state(state);
    (serve(app).await, gets)
}

fn row<'a>(status: &'a Value, model: &str) -> &'a Value {
    status
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == model)
        .map(|m| &m["replicas"][0])
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gpus_gate_replicas_and_a_runtime_loads_adapters_beside_its_engine() {
    let dir = Dir::new("up-neighbours");
    let src = dir.0.join("src");
    brix_testkit::lora::write_adapter(&src, 8, "on-good", 4096).unwrap();
    let files = std::fs::read_dir(&src)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().into_string().unwrap(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    let (artifacts, gets) = artifact_server(files).await;
    let mock = dir.0.join("gpus.toml");
    std::fs::write(&mock, "[gpus]\ncard_count = 2\n[gpus.1]\ndram_ue = 7\n").unwrap();
    let sim = format!("{BRIX} sim --port {{port}} --served-model-name {{model}} {SMALL}");
    let file = format!(
        "gateway:\n  listen: 127.0.0.1:0\n  scrape: {{interval_ms: 50}}\ndiag: {{interval_s: 0.3, expected_cards: 2}}\nmodels:
  - name: on-bad
    engine: {{command: {{command: '{sim}', gpus: [1], stop_grace_s: 5}}}}
  - name: on-good
    engine:
      command:
        command: '{sim} --output-len fixed:300 --enable-lora --max-loras 2 --max-lora-rank 16'
        env: {{CUDA_VISIBLE_DEVICES: '0'}}
        stop_grace_s: 5
        runtime: {{engine: vllm}}
resources:
  - apiVersion: model.aibrix.ai/v1alpha1
    kind: ModelAdapter
    metadata: {{name: sql-lora}}
    spec: {{baseModel: on-good, artifactURL: '{artifacts}/a/'}}
"
    );
    let path = dir.0.join("fleet.yaml");
    std::fs::write(&path, file).unwrap();
    let state = dir.0.join("state");
    let brix = || {
        let mut c = Command::new(BRIX);
        c.env("BRIX_STATE_DIR", &state);
        c
    };
    let mut child = Child(
        brix()
            .args(["up", path.to_str().unwrap(), "--logs-dir"])
            .arg(dir.0.join("logs"))
            .env("BRIX_NVML_LIBRARY", nvml_mock_library())
            .env("BRIX_NVML_MOCK_CONFIG", &mock)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut lines = BufReader::new(child.0.stdout.take().unwrap()).lines();
    let endpoint = loop {
        let line = lines.next().expect("brix up exited").unwrap();
        if let Some(url) = line.strip_prefix("brix gateway listening on ") {
            break url.to_string();
        }
    };
    let status = || status_json(&endpoint, &state);
    let table = || {
        let out = brix()
            .args(["status", "--endpoint", &endpoint])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };

    // GPU 1's uncorrectable ECC errors: on-bad is never started, and says why.
    let s = status();
    let bad = row(&s, "on-bad");
    assert_eq!(bad["state"], "failed", "{s}");
    assert_eq!(bad["address"], "127.0.0.1:0", "never started");
    let reason = bad["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("GPU 1: ") && reason.contains("DRAM (volatile) 7"),
        "{reason}"
    );
    let good = row(&s, "on-good").clone();
    assert_eq!(good["state"], "ready");
    let t = table();
    assert!(t.contains(&format!("reason: {reason}")), "{t}");
    let runtime = good["runtime"]
        .as_str()
        .expect("a runtime beside on-good")
        .to_string();
    assert!(t.contains(&format!("runtime: {runtime}")), "{t}");

    // The runtime re-exports the engine's metrics under the standard names.
    let http = reqwest::Client::new();
    let metrics = http
        .get(format!("http://{runtime}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("aibrix:num_requests_running"), "{metrics}");

    // The adapter is loaded through the runtime: downloaded into its models dir, listed by
    // the engine, served through the gateway.
    let engine = good["address"].as_str().unwrap().to_string();
    let runtime_dir = state.join("runtime").join("on-good-0");
    eventually(
        "the engine lists sql-lora from the runtime's download",
        || async {
            let Ok(r) = http.get(format!("http://{engine}/v1/models")).send().await else {
                return false;
            };
            let v: Value = r.json().await.unwrap_or_default();
            v["data"].as_array().is_some_and(|d| {
                d.iter().any(|m| {
                    m["id"] == "sql-lora"
                        && m["root"]
                            .as_str()
                            .is_some_and(|r| std::path::Path::new(r).starts_with(&runtime_dir))
                })
            })
        },
    )
    .await;
    assert!(
        gets.lock()
            .unwrap()
            .get("adapter_model.safetensors")
            .copied()
            .unwrap_or(0)
            >= 1
    );
    let r = http
        .post(format!("{endpoint}/v1/completions"))
        .json(&json!({"model": "sql-lora", "prompt": "hi", "max_tokens": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // GPU 0 turns bad and GPU 1 is repaired: on-good is drained and stopped (its stream
    // finishes), on-bad starts.
    let stream = {
        let (http, url) = (http.clone(), format!("{endpoint}/v1/completions"));
        tokio::spawn(async move {
            let r = http
                .post(url)
                .json(&json!({"model": "on-good", "prompt": "long", "stream": true}))
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        })
    };
    eventually("the stream is in flight", || async {
        row(&status(), "on-good")["in_flight"].as_u64() == Some(1)
    })
    .await;
    std::fs::write(&mock, "[gpus]\ncard_count = 2\n[gpus.0]\nsram_ue = 2\n").unwrap();
    let (code, body) = stream.await.unwrap();
    assert_eq!(code, 200);
    assert!(body.trim_end().ends_with("data: [DONE]"), "cut short");
    let pid = u32::try_from(good["pid"].as_u64().unwrap()).unwrap();
    eventually(
        "on-good failed with GPU 0's reason, on-bad ready",
        || async {
            let s = status();
            let g = row(&s, "on-good");
            g["state"] == "failed"
                && g["reason"]
                    .as_str()
                    .is_some_and(|r| r.contains("SRAM (volatile) 2"))
                && row(&s, "on-bad")["state"] == "ready"
        },
    )
    .await;
    assert!(!alive(pid), "on-good's engine stopped");

    let up = child.0.id();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(up).unwrap()),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let exit = child.0.wait().unwrap();
    assert!(exit.success(), "{exit}");
    assert!(
        std::net::TcpStream::connect(&runtime).is_err(),
        "the runtime stopped with brix up"
    );
}
