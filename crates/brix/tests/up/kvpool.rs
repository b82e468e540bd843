//! The fleet file's `kvcache:` line (issue 13): `brix up` starts a KV cache pool beside the
//! engines and points them at it over the real protocol. A prompt one replica computed is then
//! loaded from the pool by another replica, and by an in-process replica after it reset its own
//! prefix cache; each says so on its /metrics with vLLM's external-cache names.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;

use serde_json::json;

use crate::support::{
    BRIX, Child, SMALL, eventually, metric, metrics_text, status_json, tempdir::Dir,
};

/// 2,799 cl100k tokens of its own for `i`: ten full 256-token chunks (2,560 tokens).
fn prompt(i: usize) -> String {
    (0..400)
        .map(|w| format!("pool {i} word {w}"))
        .collect::<Vec<_>>()
        .join(", ")
}

const HITS: &str = "vllm:external_prefix_cache_hits_total";
const QUERIES: &str = "vllm:external_prefix_cache_queries_total";
const BY_SOURCE: &str = "vllm:prompt_tokens_by_source_total";
const CACHED_BY_SOURCE: &str = "vllm:prompt_tokens_cached_by_source_total";
const STORED: &str = "brix_sim_kv_pool_stored_chunks_total";
/// Full chunks in [`prompt`].
const CHUNKS: f64 = 10.0;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prompt_one_replica_computed_is_loaded_from_the_pool_by_another() {
    let dir = Dir::new("kvpool");
    let file = format!(
        "gateway:\n  listen: 127.0.0.1:0\nkvcache: {{capacity: 64MiB, value_bytes: 4KiB}}\nmodels:\n  - name: cmd\n    replicas: 2\n    engine:\n      command:\n        command: \"{BRIX} sim --port {{port}} --served-model-name {{model}} {SMALL} {{kv_pool}}\"\n        stop_grace_s: 5\n  - name: insim\n    replicas: 1\n    engine:\n      sim: {{gpu: H200, num_gpu_blocks_override: 512, max_model_len: 4096}}\n"
    );
    let path = dir.0.join("fleet.yaml");
    std::fs::write(&path, file).unwrap();
    let state = dir.0.join("state");
    let mut child = Child(
        Command::new(BRIX)
            .env("BRIX_STATE_DIR", &state)
            .args(["up", &path.display().to_string(), "--logs-dir"])
            .arg(dir.0.join("logs"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    // Both pipes are drained off-thread for the child's whole life (a closed pipe would kill
    // its next print); stderr carries the fleet's lines, the pool's among them.
    let lines = |pipe: Box<dyn std::io::Read + Send>| {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        rx
    };
    let stdout_lines = lines(Box::new(child.0.stdout.take().unwrap()));
    let stderr_lines = lines(Box::new(child.0.stderr.take().unwrap()));
    let endpoint = stdout_lines
        .iter()
        .find_map(|l| Some(l.strip_prefix("brix gateway listening on ")?.to_string()))
        .expect("brix up exited before listening");
    let pool_line = stderr_lines
        .iter()
        .take(50)
        .find(|l| l.contains("KV cache pool on"))
        .expect("brix up printed no pool line");
    assert!(
        pool_line.contains("127.0.0.1:") && pool_line.contains("64MiB"),
        "{pool_line}"
    );

    let fleet = status_json(&endpoint, &state);
    let address = |model: &str, i: usize| {
        let m = fleet
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == model)
            .unwrap();
        let r = &m["replicas"][i];
        assert_eq!(r["state"], "ready", "{m}");
        format!("http://{}", r["address"].as_str().unwrap())
    };
    let (a, b, c) = (address("cmd", 0), address("cmd", 1), address("insim", 0));

    let http = reqwest::Client::new();
    let complete = |base: String, model: &'static str, text: String| {
        let http = http.clone();
        async move {
            let resp = http
                .post(format!("{base}/v1/completions"))
                .json(&json!({"model": model, "prompt": text, "max_tokens": 1}))
                .send()
                .await
                .unwrap();
            let status = resp.status();
            assert_eq!(status, 200, "{base}: {}", resp.text().await.unwrap());
        }
    };

    // Replica a computes the prompt and writes its chunks through to the pool.
    complete(a.clone(), "cmd", prompt(0)).await;
    eventually("a's chunks reach the pool", || async {
        metric(&metrics_text(&http, &a).await, STORED, &[]) >= CHUNKS
    })
    .await;
    let text = metrics_text(&http, &a).await;
    assert_eq!(metric(&text, HITS, &[]), 0.0, "a found nothing there");
    assert!(metric(&text, QUERIES, &[]) > 1500.0);

    // Replica b has never seen it: it loads the pool's chunks instead of computing them.
    complete(b.clone(), "cmd", prompt(0)).await;
    let text = metrics_text(&http, &b).await;
    let hits = metric(&text, HITS, &[]);
    assert_eq!(hits, CHUNKS * 256.0, "b loads every chunk");
    assert_eq!(
        metric(&text, BY_SOURCE, &[("source", "external_kv_transfer")]),
        hits
    );
    assert_eq!(
        metric(
            &text,
            CACHED_BY_SOURCE,
            &[("source", "external_unspecified")]
        ),
        hits
    );
    assert_eq!(
        metric(&text, BY_SOURCE, &[("source", "local_cache_hit")]),
        0.0
    );
    let computed = metric(&text, BY_SOURCE, &[("source", "local_compute")]);
    assert!(computed < 256.0, "only the tail is computed: {computed}");

    // The in-process replica serves another model name: the cmd chunks are not its own. It
    // computes the prompt, forgets its prefix cache, and then loads it from the pool.
    complete(c.clone(), "insim", prompt(0)).await;
    eventually("c's chunks reach the pool", || async {
        metric(&metrics_text(&http, &c).await, STORED, &[]) >= CHUNKS
    })
    .await;
    assert_eq!(metric(&metrics_text(&http, &c).await, HITS, &[]), 0.0);
    eventually("c's prefix cache resets", || async {
        let reset = http
            .post(format!("{c}/reset_prefix_cache"))
            .send()
            .await
            .unwrap();
        reset.status() == 200 && reset.text().await.unwrap().contains("true")
    })
    .await;
    complete(c.clone(), "insim", prompt(0)).await;
    let text = metrics_text(&http, &c).await;
    assert_eq!(
        metric(&text, HITS, &[]),
        CHUNKS * 256.0,
        "c after its reset"
    );
    assert_eq!(
        metric(&text, CACHED_BY_SOURCE, &[("source", "device")]),
        0.0
    );

    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.0.id()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    let status = child.0.wait().unwrap();
    assert!(status.success(), "{status}");
}
