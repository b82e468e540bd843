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
        "Verified best single type",
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

/// The built-in A10 profile of llama-3-8b with every capacity × `lie`, written as
/// `dir/A10.json`: a profile that overstates (or understates) what a replica sustains.
fn lying_profile(dir: &Dir, lie: f64) -> PathBuf {
    let mut p = brix_optimizer::builtin_profile("llama-3-8b", "A10").unwrap();
    for v in p.tputs.iter_mut().flatten() {
        *v *= lie;
    }
    std::fs::write(dir.join("A10.json"), serde_json::to_string(&p).unwrap()).unwrap();
    dir.0.clone()
}

fn plan_notes(json: &Path) -> Vec<String> {
    let plan: Plan = serde_json::from_str(&std::fs::read_to_string(json).unwrap()).unwrap();
    plan.notes
}

#[test]
fn verify_derates_a_profile_that_overstates_until_the_replay_meets_the_slo() {
    let dir = Dir::new("verify");
    let json = dir.join("plan.json");
    let profiles = lying_profile(&dir, 10.0);
    // 600 generated requests (distinct prompts: no prefix cache to hide the overload) at
    // 10 req/s.
    let out = brix(&[
        "optimize",
        "plan",
        "--workload",
        "synthetic:requests=600",
        "--arrival",
        "poisson:10",
        "--gpus",
        "A10",
        "--profiles",
        profiles.to_str().unwrap(),
        "--verify-rounds",
        "8",
        "--json",
        json.to_str().unwrap(),
    ]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}\n{stdout}");
    // Round 1 trusts the 10× profile and misses; a later round, derated, meets the SLO.
    assert!(stdout.contains("mix round 1:"), "{stdout}");
    let round1 = stdout.lines().find(|l| l.contains("mix round 1:")).unwrap();
    assert!(round1.contains("misses P90"), "{round1}");
    assert!(stdout.contains("mix round 2:"), "{stdout}");
    assert!(stdout.contains("verified: meets P90"), "{stdout}");
    let notes = plan_notes(&json);
    assert!(
        notes
            .iter()
            .any(|n| n.contains("derated") && n.contains("A10 ×")),
        "{notes:?}"
    );
    assert!(notes.iter().any(|n| n.starts_with("verified")), "{notes:?}");
    // The JSON is the verified plan: more replicas than round 1's.
    let plan: Plan = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let first: u32 = round1
        .split_once("round 1: ")
        .and_then(|(_, r)| r.split('×').next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap();
    assert!(
        plan.gpus[0].replicas > first,
        "{} vs {first}",
        plan.gpus[0].replicas
    );
}

#[test]
fn no_verify_prints_the_plan_as_solved() {
    let dir = Dir::new("noverify");
    let (w, json) = (dir.join("w.jsonl"), dir.join("plan.json"));
    mixed_workload(&w);
    let profiles = lying_profile(&dir, 3.0);
    let out = brix(&[
        "optimize",
        "plan",
        "--workload",
        w.to_str().unwrap(),
        "--gpus",
        "A10",
        "--profiles",
        profiles.to_str().unwrap(),
        "--no-verify",
        "--json",
        json.to_str().unwrap(),
    ]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(!stdout.contains("Verification"), "{stdout}");
    assert!(stdout.contains("Best single type"), "{stdout}");
    let notes = plan_notes(&json);
    assert!(!notes.iter().any(|n| n.contains("verified")), "{notes:?}");
}

#[test]
fn a_plan_no_derate_can_fix_exits_2_with_the_verdict() {
    let dir = Dir::new("unverified");
    let (d, json) = (dir.join("demand.json"), dir.join("plan.json"));
    // A profile that claims a thousand times what an A10 sustains: two rounds of derating
    // (× 0.6 each) still leave one replica for 30 req/s of long prompts.
    let profiles = lying_profile(&dir, 1000.0);
    let reqs = (0..300).map(|i| if i % 3 == 0 { (4000, 200) } else { (1000, 300) });
    let demand = Demand::from_requests(Grid::default(), reqs, 10.0);
    std::fs::write(&d, serde_json::to_string(&demand).unwrap()).unwrap();
    let out = brix(&[
        "optimize",
        "plan",
        "--demand",
        d.to_str().unwrap(),
        "--verify",
        "--verify-duration-s",
        "30",
        "--verify-rounds",
        "2",
        "--gpus",
        "A10",
        "--profiles",
        profiles.to_str().unwrap(),
        "--json",
        json.to_str().unwrap(),
    ]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}\n{stdout}");
    assert!(stdout.contains("NOT verified after 2 round(s)"), "{stdout}");
    assert!(stderr.contains("NOT verified"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let notes = plan_notes(&json);
    assert!(
        notes.iter().any(|n| n.starts_with("NOT verified")),
        "{notes:?}"
    );
    // Bad verification flags are bad input (exit 1), not an unverified plan.
    let out = brix(&[
        "optimize",
        "plan",
        "--demand",
        d.to_str().unwrap(),
        "--verify",
        "--verify-duration-s=-5",
    ]);
    assert_eq!(out.status.code(), Some(1));
    fails_with(&out, "--verify-duration-s");
}
