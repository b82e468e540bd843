//! `brix bench sim` as a user runs it: one directory per strategy with the files `brix bench
//! run` writes, the same bytes again for the same seed, and flag errors named.
#![expect(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use brix_bench::report::Summary;

const BRIX: &str = env!("CARGO_BIN_EXE_brix");

fn sim(args: &[&str], output: &Path) -> Output {
    Command::new(BRIX)
        .args(["bench", "sim"])
        .args(args)
        .arg("--output")
        .arg(output)
        .output()
        .unwrap()
}

/// A directory under the system temp dir, removed on drop.
struct Dir(PathBuf);

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn writes_a_run_per_strategy_and_the_same_bytes_for_the_same_seed() {
    let dir = Dir(std::env::temp_dir().join(format!("brix-bench-sim-{}", std::process::id())));
    let args = [
        "--workload",
        "shared-prefix:groups=2,prefix=256,suffix=32,output=16,requests=40",
        "--arrival",
        "poisson:10",
        "--engines",
        "2",
        "--strategy",
        "least-request,prefix-cache:2+least-request,oracle",
    ];
    for run in ["a", "b"] {
        let out = sim(&args, &dir.0.join(run));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(dir.0.join("a/summary.md").is_file());
    for strategy in ["least-request", "prefix-cache:2+least-request:1", "oracle"] {
        for file in ["requests.jsonl", "summary.json", "sim.json"] {
            let read =
                |run: &str| std::fs::read(dir.0.join(run).join(strategy).join(file)).unwrap();
            assert_eq!(read("a"), read("b"), "{strategy}/{file}");
        }
        let text =
            std::fs::read_to_string(dir.0.join("a").join(strategy).join("summary.json")).unwrap();
        let summary: Summary = serde_json::from_str(&text).unwrap();
        assert_eq!((summary.completed, summary.failed), (40, 0));
        assert_eq!(summary.label, format!("vsim/{strategy}"));
        assert!(dir.0.join("a").join(strategy).join("run.json").is_file());
    }
}

const AUTOSCALERS: &str = "- apiVersion: autoscaling.aibrix.ai/v1alpha1
  kind: PodAutoscaler
  metadata:
    name: NAME
  spec:
    scalingStrategy: STRATEGY
    minReplicas: 1
    maxReplicas: 4
    metricsSources:
      - metricSourceType: pod
        protocolType: http
        port: \"8000\"
        path: metrics
        targetMetric: num_requests_running
        targetValue: \"4\"
    scaleTargetRef:
      apiVersion: apps/v1
      kind: Deployment
      name: any-model
";

#[test]
fn autoscaled_runs_are_named_by_their_documents_and_write_the_fleet() {
    let dir = Dir(std::env::temp_dir().join(format!("brix-bench-sim-as-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0).unwrap();
    let file = dir.0.join("autoscalers.yaml");
    let docs: String = [("kpa-run", "KPA"), ("apa-run", "APA")]
        .iter()
        .map(|(n, s)| AUTOSCALERS.replace("NAME", n).replace("STRATEGY", s))
        .collect();
    std::fs::write(&file, docs).unwrap();
    let args = [
        "--workload",
        "shared-prefix:groups=2,prefix=256,suffix=32,output=16,requests=120",
        "--arrival",
        "poisson:5",
        "--engines",
        "1",
        "--engine-start-s",
        "5",
        "--autoscaler",
        file.to_str().unwrap(),
    ];
    for run in ["a", "b"] {
        let out = sim(&args, &dir.0.join(run));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let table = std::fs::read_to_string(dir.0.join("a/summary.md")).unwrap();
    assert!(
        table.contains("| GPU-s | cost $ | scale events |"),
        "{table}"
    );
    for name in ["kpa-run", "apa-run"] {
        let files = [
            "requests.jsonl",
            "summary.json",
            "sim.json",
            "timeline.csv",
            "decisions.jsonl",
            "timeline.png",
        ];
        for f in files {
            let read = |run: &str| std::fs::read(dir.0.join(run).join(name).join(f)).unwrap();
            assert_eq!(read("a"), read("b"), "{name}/{f}");
        }
        let text =
            std::fs::read_to_string(dir.0.join("a").join(name).join("summary.json")).unwrap();
        let summary: Summary = serde_json::from_str(&text).unwrap();
        assert_eq!(summary.completed + summary.failed, 120);
        assert_eq!(summary.label, format!("vsim/{name}"));
        let fleet = summary.fleet.unwrap();
        assert!(fleet.decisions > 0 && fleet.gpu_seconds > 0.0, "{fleet:?}");
        assert!(
            fleet.replicas_min >= 1 && fleet.replicas_max <= 4,
            "{fleet:?}"
        );
        let decisions =
            std::fs::read_to_string(dir.0.join("a").join(name).join("decisions.jsonl")).unwrap();
        assert!(decisions.lines().all(|l| l.contains("\"reason\":")));
    }
}

#[test]
fn bad_flags_are_named() {
    let dir = Dir(std::env::temp_dir().join(format!("brix-bench-sim-bad-{}", std::process::id())));
    let cases: [(&[&str], &str); 9] = [
        (
            &["--workload", "shared-prefix", "--strategy", "least-busy"],
            "least-busy",
        ),
        (
            &["--workload", "shared-prefix", "--engines", "0"],
            "--engines",
        ),
        (&["--workload", "shared-prefix", "--gpu", "Z100"], "Z100"),
        (
            &[
                "--workload",
                "shared-prefix",
                "--autoscaler",
                "/no/such.yaml",
            ],
            "--autoscaler /no/such.yaml",
        ),
        (
            &[
                "--workload",
                "shared-prefix",
                "--autoscaler",
                "/dev/null",
                "--storage-gbps",
                "0",
            ],
            "--storage-gbps",
        ),
        (
            &["--workload", "shared-prefix", "--kv-pool-gib=-1"],
            "--kv-pool-gib",
        ),
        (
            &[
                "--workload",
                "shared-prefix",
                "--kv-pool-gib",
                "1",
                "--kv-pool-policy",
                "mru",
            ],
            "mru",
        ),
        (
            &[
                "--workload",
                "shared-prefix",
                "--kv-pool-gib",
                "1",
                "--kv-pool-chunk-tokens",
                "100",
            ],
            "--kv-pool-chunk-tokens",
        ),
        (
            &["--workload", "shared-prefix", "--scale-at", "5:0"],
            "--scale-at",
        ),
    ];
    for (args, needle) in cases {
        let out = sim(args, &dir.0);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert!(err.contains(needle), "{needle:?} not in {err}");
    }
}

#[test]
fn adapter_runs_write_per_adapter_counts_the_same_for_the_same_seed() {
    let dir = Dir(std::env::temp_dir().join(format!("brix-bench-sim-lora-{}", std::process::id())));
    let list = dir.0.join("adapters.csv");
    std::fs::create_dir_all(&dir.0).unwrap();
    std::fs::write(&list, "# name,weight\nsql,3\nchat,1\n").unwrap();
    let workload = "synthetic:requests=200,prompt=256,prompt_std=64,output=16,output_std=4";
    for (run, spec) in [
        ("a", "zipf:12:1".to_string()),
        ("b", "zipf:12:1".to_string()),
        ("f", format!("file:{}", list.display())),
    ] {
        let args = [
            "--workload",
            workload,
            "--arrival",
            "poisson:8",
            "--engines",
            "3",
            "--adapters",
            &spec,
            "--max-loras",
            "2",
            "--max-cpu-loras",
            "4",
            "--adapter-replicas",
            "all",
        ];
        let out = sim(&args, &dir.0.join(run));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let read = |run: &str, file: &str| {
        std::fs::read_to_string(dir.0.join(run).join("least-request").join(file)).unwrap()
    };
    for file in ["requests.jsonl", "adapters.json"] {
        assert_eq!(read("a", file), read("b", file), "{file}");
    }
    let rep: serde_json::Value = serde_json::from_str(&read("a", "adapters.json")).unwrap();
    let per = rep["per_adapter"].as_object().unwrap();
    assert_eq!(per.len(), 12);
    let requests: u64 = per.values().map(|c| c["requests"].as_u64().unwrap()).sum();
    assert_eq!(requests, 200);
    // Capacity 4 per engine, 3 engines, `all`: 4 copies each at most, never over capacity.
    assert!(
        rep["max_resident"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n.as_u64().unwrap() <= 4)
    );
    let file: serde_json::Value = serde_json::from_str(&read("f", "adapters.json")).unwrap();
    let (sql, chat) = (
        file["per_adapter"]["sql"]["requests"].as_u64().unwrap(),
        file["per_adapter"]["chat"]["requests"].as_u64().unwrap(),
    );
    assert_eq!(sql + chat, 200);
    assert!(sql > 2 * chat, "weights 3:1, got {sql}:{chat}");
    assert!(
        std::fs::read_to_string(dir.0.join("f/summary.md"))
            .unwrap()
            .contains("2 adapters (2 served)")
    );
    for (spec, needle) in [
        ("zipf:0:1", "--adapters: adapter count"),
        ("file:/no/such.csv", "/no/such.csv"),
    ] {
        let out = sim(
            &["--workload", workload, "--adapters", spec],
            &dir.0.join("bad"),
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{spec}");
        assert!(err.contains(needle), "{needle:?} not in {err}");
    }
}

#[test]
fn a_pool_run_reports_the_pool_and_its_hits() {
    let dir = Dir(std::env::temp_dir().join(format!("brix-bench-sim-pool-{}", std::process::id())));
    let args = [
        "--workload",
        "multi-turn:sessions=12,turns=4,system=256,context=1024,user=32,output=16,think=0.5",
        "--arrival",
        "poisson:4",
        "--engines",
        "2",
        "--strategy",
        "least-request",
        "--kv-pool-gib",
        "8",
        "--kv-pool-policy",
        "lru",
        "--kv-pool-transport",
        "tcp",
        "--scale-at",
        "2:1,2:2",
        "--engine-start-s",
        "1",
    ];
    let out = sim(&args, &dir.0);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = std::fs::read_to_string(dir.0.join("summary.md")).unwrap();
    assert!(table.contains("pool hit rate"), "{table}");
    let sim: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.0.join("least-request/sim.json")).unwrap())
            .unwrap();
    let pool = &sim["kv_pool"];
    assert_eq!(pool["policy"], "lru");
    assert_eq!(pool["transport"], "tcp");
    assert_eq!(pool["capacity_bytes"], 8u64 << 30);
    assert!(pool["hit_chunks"].as_u64().unwrap() > 0, "{pool}");
    assert!(sim["external_hit_rate"].as_f64().unwrap() > 0.0);
    let engines = sim["per_engine"].as_array().unwrap();
    assert_eq!(engines.len(), 3, "one engine restarted");
    let hits: u64 = engines
        .iter()
        .map(|e| e["external_hits"].as_u64().unwrap())
        .sum();
    assert!(hits > 0);
}

#[test]
fn a_mixed_fleet_reports_each_gpu_group() {
    let dir = Dir(std::env::temp_dir().join(format!("brix-bench-sim-mix-{}", std::process::id())));
    let args = [
        "--workload",
        "shared-prefix:groups=2,prefix=256,suffix=32,output=16,requests=40",
        "--arrival",
        "poisson:10",
        "--mix",
        "A10:2,H100:1",
        "--strategy",
        "least-request",
    ];
    let out = sim(&args, &dir.0);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = std::fs::read_to_string(dir.0.join("summary.md")).unwrap();
    assert!(
        table.contains("| vsim/least-request | A10 | A10 | 2 |"),
        "{table}"
    );
    assert!(
        table.contains("| vsim/least-request | H100 | H100 | 1 |"),
        "{table}"
    );
    let info: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.0.join("least-request/sim.json")).unwrap())
            .unwrap();
    assert_eq!(info["gpu"], "2 × A10 + 1 × H100");
    let groups = info["groups"].as_array().unwrap();
    let requests: u64 = groups.iter().map(|g| g["requests"].as_u64().unwrap()).sum();
    assert_eq!(requests, 40);
    let names: Vec<&str> = info["per_engine"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["A10-0", "A10-1", "H100-0"]);
    for (args, needle) in [
        (&["--mix", "A10:0"][..], "--mix"),
        (&["--mix", "A10:1", "--engines", "3"][..], "--engines"),
        (&["--mix", "Z100:1"][..], "Z100"),
        (&["--plan", "/no/such/plan.json"][..], "--plan"),
    ] {
        let mut all = vec!["--workload", "shared-prefix"];
        all.extend_from_slice(args);
        let out = sim(&all, &dir.0.join("bad"));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert!(err.contains(needle), "{needle:?} not in {err}");
    }
}

/// One cell (256 tokens in, 16 out) the plan sends all to its H100 option.
const PLAN: &str = r#"{
  "gpus": [
    {"name": "small", "gpu": "A10", "replicas": 1, "cost_per_replica": 1.0, "load": 0.0},
    {"name": "big", "gpu": "H100", "replicas": 1, "cost_per_replica": 4.0, "load": 1.0}
  ],
  "assign": [[0.0, 1.0]],
  "demand": {"grid": {"inputs": [256], "outputs": [16]}, "rates": [10.0]},
  "cost_per_hour": 5.0, "lower_bound": 5.0, "method": "optimal",
  "solve_ms": 0.0, "nodes": 0, "notes": []
}"#;

#[test]
fn a_plan_run_routes_by_the_plan_and_bills_its_prices() {
    let dir = Dir(std::env::temp_dir().join(format!("brix-bench-sim-plan-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0).unwrap();
    let plan = dir.0.join("plan.json");
    std::fs::write(&plan, PLAN).unwrap();
    let args = [
        "--workload",
        "shared-prefix:groups=2,prefix=224,suffix=32,output=16,requests=30",
        "--arrival",
        "poisson:10",
        "--plan",
        plan.to_str().unwrap(),
        "--strategy",
        "least-request",
    ];
    let out = sim(&args, &dir.0.join("run"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(dir.0.join("run/least-request/requests.jsonl")).unwrap();
    for line in text.lines() {
        let r: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(r["target_pod"], "big-0", "{line}");
    }
    let info: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.0.join("run/least-request/sim.json")).unwrap())
            .unwrap();
    let groups = info["groups"].as_array().unwrap();
    assert_eq!(groups[0]["cost_per_hour"], 1.0);
    assert_eq!(groups[1]["cost_per_hour"], 4.0);
    assert_eq!(groups[0]["requests"], 0);
}
