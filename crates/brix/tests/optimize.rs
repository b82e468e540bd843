//! `brix optimize` as a user runs it: a plan for a small workload file (table and plan JSON),
//! the demand of a live gateway (a real HTTP server on loopback), profiles measured by the
//! command, and bad input refused with a message and a non-zero exit, never a panic.
#![expect(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use brix_bench::workload::{WorkRequest, Workload, save};
use brix_optimizer::{Demand, Grid, Plan, Profile};

const BRIX: &str = env!("CARGO_BIN_EXE_brix");

fn brix(args: &[&str]) -> Output {
    Command::new(BRIX).args(args).output().unwrap()
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A directory under the system temp dir, removed on drop.
struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Self {
        let d = std::env::temp_dir().join(format!("brix-optimize-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        Self(d)
    }
    fn join(&self, p: &str) -> PathBuf {
        self.0.join(p)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// 600 requests over 60 s: most short chat turns, a fifth long-prompt summaries.
fn mixed_workload(path: &Path) {
    let requests = (0..600u64)
        .map(|id| {
            let long = id % 5 == 0;
            WorkRequest {
                id,
                at_s: id as f64 * 0.1,
                session: None,
                prompt: vec![7; if long { 4000 } else { 200 }],
                output_tokens: if long { 100 } else { 300 },
            }
        })
        .collect();
    save(&Workload { requests }, path).unwrap();
}

fn fails_with(out: &Output, want: &str) {
    let (_, err) = text(out);
    assert!(!out.status.success(), "should fail: {err}");
    assert!(err.contains(want), "want {want:?} in {err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn plans_a_workload_file_and_writes_the_plan_json() {
    let dir = Dir::new("plan");
    let (w, json) = (dir.join("w.jsonl"), dir.join("plan.json"));
    mixed_workload(&w);
    let out = brix(&[
        "optimize",
        "plan",
        "--workload",
        w.to_str().unwrap(),
        "--rate",
        "20",
        "--json",
        json.to_str().unwrap(),
    ]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    for want in [
        "Demand: 20.000 req/s",
        "REPLICAS",
        "Best single type",
        "Cost: $",
    ] {
        assert!(stdout.contains(want), "want {want:?} in\n{stdout}");
    }
    let plan: Plan = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(plan.gpus.len(), 5);
    let cost: f64 = plan
        .gpus
        .iter()
        .map(|g| f64::from(g.replicas) * g.cost_per_replica)
        .sum();
    assert!(
        (cost - plan.cost_per_hour).abs() < 1e-6,
        "{cost} vs {plan:?}"
    );
    assert!(plan.gpus.iter().map(|g| g.replicas).sum::<u32>() >= 1);
    assert!((plan.demand.total() - 20.0).abs() < 1e-6);
    // Every bucket with demand is fully assigned.
    for (row, r) in plan.assign.iter().zip(&plan.demand.rates) {
        if *r > 0.0 {
            assert!((row.iter().sum::<f64>() - 1.0).abs() < 1e-6, "{row:?}");
        }
    }
    // A cap of zero replicas on every type but one forces that type.
    let out = brix(&[
        "optimize",
        "plan",
        "--workload",
        w.to_str().unwrap(),
        "--gpus",
        "A10,H100",
        "--max",
        "A10=0",
    ]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let a10 = stdout.lines().find(|l| l.starts_with("A10 ")).unwrap();
    assert!(a10.split_whitespace().nth(1) == Some("0"), "{a10}");
}

/// Serves one Demand on `/brix/optimizer/demand` for model `m` to the bearer `key`.
async fn gateway(demand: Demand) -> std::net::SocketAddr {
    use axum::extract::RawQuery;
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::get;
    let app = axum::Router::new().route(
        "/brix/optimizer/demand",
        get(move |headers: HeaderMap, RawQuery(q): RawQuery| {
            let d = demand.clone();
            async move {
                let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
                if auth != Some("Bearer key") {
                    return (StatusCode::UNAUTHORIZED, "admin key required".to_string());
                }
                if q.as_deref() != Some("model=m") {
                    return (StatusCode::NOT_FOUND, "no optimizer for that model".into());
                }
                (StatusCode::OK, serde_json::to_string(&d).unwrap())
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plans_for_a_live_gateways_demand() {
    let grid = Grid::default();
    let reqs = (0..50).map(|i| if i % 2 == 0 { (100, 50) } else { (3000, 200) });
    let demand = Demand::from_requests(grid, reqs, 10.0);
    let addr = gateway(demand).await;
    let url = format!("http://{addr}");
    let run = move |key: &'static str, model: &'static str| {
        let url = url.clone();
        tokio::task::spawn_blocking(move || {
            brix(&[
                "optimize",
                "plan",
                "--gateway",
                &url,
                "--model",
                model,
                "--admin-key",
                key,
            ])
        })
    };
    let out = run("key", "m").await.unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("Demand: 5.000 req/s"), "{stdout}");
    assert!(stdout.contains("gateway http://"), "{stdout}");
    fails_with(&run("wrong", "m").await.unwrap(), "401");
    fails_with(&run("key", "other").await.unwrap(), "404");
}

#[test]
fn bad_input_is_refused_with_a_reason() {
    let dir = Dir::new("bad");
    let w = dir.join("w.jsonl");
    mixed_workload(&w);
    let ws = w.to_str().unwrap();
    let plan = |extra: &[&str]| {
        let mut args = vec!["optimize", "plan", "--workload", ws];
        args.extend_from_slice(extra);
        brix(&args)
    };
    fails_with(
        &plan(&["--gpus", "TPU-v5"]),
        "no built-in profile for llama-3-8b on TPU-v5",
    );
    fails_with(&plan(&["--slo", "ttft=fast"]), "--slo");
    fails_with(&plan(&["--slo", "ttft=1s,tpot=50ms"]), "was measured for");
    fails_with(&plan(&["--max", "B200=2"]), "not one of the GPU types");
    fails_with(&plan(&["--rate=-3"]), "--rate");
    fails_with(&plan(&["--arrival", "closed:8"]), "closed");
    fails_with(
        &brix(&["optimize", "plan", "--workload", "/no/such/file.jsonl"]),
        "/no/such/file.jsonl",
    );
    // A profile on another grid than the others.
    let small = Profile {
        gpu: "A10".into(),
        cost: 1.0,
        tputs: vec![vec![1.0, 1.0]],
        indexes: vec![vec![64], vec![128, 256]],
        created: 0.0,
        slos: None,
        model: None,
        method: None,
    };
    let profiles = dir.join("profiles");
    std::fs::create_dir_all(&profiles).unwrap();
    std::fs::write(
        profiles.join("A10.json"),
        serde_json::to_string(&small).unwrap(),
    )
    .unwrap();
    let l4 = brix_optimizer::builtin_profile("llama-3-8b", "L4").unwrap();
    std::fs::write(
        profiles.join("L4.json"),
        serde_json::to_string(&l4).unwrap(),
    )
    .unwrap();
    fails_with(
        &plan(&["--profiles", profiles.to_str().unwrap(), "--gpus", "L4,A10"]),
        "another bucket grid",
    );
    fails_with(
        &plan(&["--profiles", profiles.to_str().unwrap(), "--gpus", "L40S"]),
        "no profile for L40S",
    );
    std::fs::write(profiles.join("A10.json"), "{\"gpu\": 1}").unwrap();
    fails_with(
        &plan(&["--profiles", profiles.to_str().unwrap(), "--gpus", "A10"]),
        "A10.json",
    );
    let demand = dir.join("d.json");
    std::fs::write(
        &demand,
        "{\"grid\": {\"inputs\": [1], \"outputs\": [1]}, \"rates\": [-1]}",
    )
    .unwrap();
    fails_with(
        &brix(&["optimize", "plan", "--demand", demand.to_str().unwrap()]),
        "finite values",
    );
    std::fs::write(
        &demand,
        "{\"grid\": {\"inputs\": [1], \"outputs\": [1]}, \"rates\": [2]}",
    )
    .unwrap();
    fails_with(
        &brix(&["optimize", "plan", "--demand", demand.to_str().unwrap()]),
        "bucket grid differs",
    );
    fails_with(
        &brix(&[
            "optimize",
            "profile",
            "--gpu",
            "A10",
            "--grid",
            "inputs=100..200",
            "-o",
            "x",
        ]),
        "power of two",
    );
    fails_with(
        &brix(&["optimize", "profile", "--gpu", "Z9", "-o", "x"]),
        "Z9",
    );
}

#[test]
fn profiles_measured_by_the_command_load_and_rank_gpus() {
    let dir = Dir::new("profile");
    let grid = "inputs=128..1024,outputs=16..64";
    let mut made = Vec::new();
    for (method, gpu) in [("analytic", "A10"), ("analytic", "H100"), ("sim", "A10")] {
        let path = dir.join(&format!("{method}-{gpu}.json"));
        let out = brix(&[
            "optimize",
            "profile",
            "--method",
            method,
            "--gpu",
            gpu,
            "--grid",
            grid,
            "--tolerance",
            "0.1",
            "-o",
            path.to_str().unwrap(),
        ]);
        let (_, stderr) = text(&out);
        assert!(out.status.success(), "{stderr}");
        let p = Profile::load(&path).unwrap();
        assert_eq!(p.indexes, vec![vec![16, 32, 64], vec![128, 256, 512, 1024]]);
        assert_eq!(p.method.as_deref(), Some(method));
        assert!(p.tputs.iter().flatten().all(|r| *r > 0.0), "{p:?}");
        made.push(p);
    }
    let cell = made[0].grid().cell(128, 16);
    assert!(
        made[1].capacity(cell) > made[0].capacity(cell),
        "H100 > A10"
    );
    // The A10 costs its price (TP 1).
    assert!((made[0].cost - 0.86).abs() < 1e-9, "{}", made[0].cost);
    let out = brix(&["optimize", "compare", "--gpus", "L4,H100"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains("MEDIAN") && stdout.contains("H100"),
        "{stdout}"
    );
}
