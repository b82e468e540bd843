//! `brix up` with a runtime beside an in-process `brix sim` replica (`engine.sim.runtime`): a
//! ModelAdapter in a local S3-compatible server (moto) is loaded through the runtime with the
//! credentials of the fleet's `secrets` entry, the only place the store's endpoint is given.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use brix_testkit::moto::Moto;
use serde_json::{Value, json};

use crate::support::{BRIX, Child, eventually, status_json, tempdir::Dir};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_s3_adapter_loads_through_a_sim_replicas_runtime_with_the_fleets_secret() {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let Some(moto) = Moto::start().await else {
        return;
    };
    let dir = Dir::new("up-runtime-s3");
    let src = dir.0.join("src");
    brix_testkit::lora::write_adapter(&src, 8, "m", 4096).unwrap();
    moto.put("/adapters", Vec::new()).await;
    for e in std::fs::read_dir(&src).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().into_string().unwrap();
        let path = format!("/adapters/lora/{name}");
        moto.put(&path, std::fs::read(e.path()).unwrap()).await;
    }
    let file = format!(
        "gateway:\n  listen: 127.0.0.1:0\nmodels:
  - name: m
    engine: {{sim: {{gpu: H200, num_gpu_blocks_override: 512, enable_lora: true, max_loras: 2, runtime: {{}}}}}}
secrets:
  store: {{AWS_ACCESS_KEY_ID: test, AWS_SECRET_ACCESS_KEY: test, AWS_REGION: us-east-1, AWS_ENDPOINT_URL: '{}'}}
resources:
  - apiVersion: model.aibrix.ai/v1alpha1
    kind: ModelAdapter
    metadata: {{name: s3-lora}}
    spec: {{baseModel: m, artifactURL: 's3://adapters/lora/', credentialsSecretRef: {{name: store}}}}
",
        moto.endpoint()
    );
    let path = dir.0.join("fleet.yaml");
    std::fs::write(&path, file).unwrap();
    let state = dir.0.join("state");
    let mut child = Child(
        Command::new(BRIX)
            .env("BRIX_STATE_DIR", &state)
            .env_remove("AWS_ENDPOINT_URL")
            .args(["up", path.to_str().unwrap()])
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
    let s = status_json(&endpoint, &state);
    let replica = &s[0]["replicas"][0];
    let engine = replica["address"].as_str().unwrap().to_string();
    assert!(replica["runtime"].is_string(), "{s}");
    let runtime_dir = state.join("runtime").join("m-0");
    eventually(
        "the engine lists s3-lora from the runtime's download",
        || async {
            let Ok(r) = http.get(format!("http://{engine}/v1/models")).send().await else {
                return false;
            };
            let v: Value = r.json().await.unwrap_or_default();
            v["data"].as_array().is_some_and(|d| {
                d.iter().any(|m| {
                    m["id"] == "s3-lora"
                        && m["root"]
                            .as_str()
                            .is_some_and(|r| std::path::Path::new(r).starts_with(&runtime_dir))
                })
            })
        },
    )
    .await;
    let r = http
        .post(format!("{endpoint}/v1/completions"))
        .json(&json!({"model": "s3-lora", "prompt": "hi", "max_tokens": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let up = nix::unistd::Pid::from_raw(i32::try_from(child.0.id()).unwrap());
    nix::sys::signal::kill(up, nix::sys::signal::Signal::SIGINT).unwrap();
    assert!(child.0.wait().unwrap().success());
}
