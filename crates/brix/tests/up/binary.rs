//! The `brix up`, `brix status` and `brix scale` commands as a user runs them.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{BRIX, Child, SMALL, alive, status_json, tempdir::Dir};

fn write(dir: &Dir, name: &str, text: &str) -> String {
    let p = dir.0.join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

/// Runs `brix ARGS` to completion; returns (success, stderr).
fn run(args: &[&str]) -> (bool, String) {
    let out = Command::new(BRIX).args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_bad_file_gets_a_message_naming_the_field() {
    let dir = Dir::new("badfile");
    let cases = [
        (
            "models:\n  - name: m\n    replicas: 2\n    engine:\n      sim: {gpuu: H100}\n",
            "gpuu",
        ),
        (
            "models:\n  - name: m\n    replicas: lots\n    engine: {sim: {}}\n",
            "models[0].replicas",
        ),
        (
            "models:\n  - name: m\n    engine:\n      command: {command: vllm serve x}\n",
            "models[0].engine.command",
        ),
    ];
    for (i, (text, needle)) in cases.into_iter().enumerate() {
        let path = write(&dir, &format!("bad{i}.yaml"), text);
        let (ok, err) = run(&["up", &path]);
        assert!(!ok, "{text}");
        assert!(
            err.contains(needle) && err.contains(&path),
            "{needle:?} not in {err}"
        );
    }
}

#[test]
fn a_port_in_use_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (ok, err) = run(&["up", "--listen", &addr]);
    assert!(!ok);
    assert!(
        err.contains("cannot listen on") && err.contains(&addr),
        "{err}"
    );
}

#[test]
fn up_serves_status_shows_scale_resizes_and_ctrl_c_leaves_no_orphan() {
    let dir = Dir::new("up");
    let file = format!(
        "gateway:\n  listen: 127.0.0.1:0\n  scrape: {{interval_ms: 50}}\nmodels:\n  - name: cmd\n    replicas: 2\n    engine:\n      command:\n        command: \"{BRIX} sim --port {{port}} --served-model-name {{model}} {SMALL}\"\n        stop_grace_s: 5\n  - name: insim\n    replicas: 1\n    engine:\n      sim: {{gpu: H200, num_gpu_blocks_override: 512}}\n"
    );
    let path = write(&dir, "fleet.yaml", &file);
    let logs = dir.0.join("logs").display().to_string();
    // Where `brix up` writes the admin key it generates and `brix status` / `scale` read it.
    let state = dir.0.join("state");
    let brix = || {
        let mut c = Command::new(BRIX);
        c.env("BRIX_STATE_DIR", &state);
        c
    };
    let mut child = Child(
        brix()
            .args(["up", &path, "--logs-dir", &logs])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let stdout = child.0.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let endpoint = loop {
        let line = lines
            .next()
            .expect("brix up exited before listening")
            .unwrap();
        if let Some(url) = line.strip_prefix("brix gateway listening on ") {
            break url.to_string();
        }
    };

    let status = || status_json(&endpoint, &state);
    let s = status();
    let cmd = s
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "cmd")
        .unwrap();
    let pids: Vec<u32> = cmd["replicas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            assert_eq!(r["state"], "ready");
            u32::try_from(r["pid"].as_u64().unwrap()).unwrap()
        })
        .collect();
    assert_eq!(pids.len(), 2);
    assert!(pids.iter().all(|p| alive(*p)));

    // The table form names every replica.
    let out = brix()
        .args(["status", "--endpoint", &endpoint])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    for id in ["cmd-0", "cmd-1", "insim-0"] {
        assert!(table.contains(id), "{table}");
    }

    // No admin key in the file: the fleet API is not anonymous; `brix scale` uses the key
    // `brix up` wrote (owner-only) for this port.
    let port = endpoint.rsplit(':').next().unwrap();
    let key_file = state.join(format!("admin-{port}.key"));
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&key_file).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    let anonymous = raw_http(
        endpoint.trim_start_matches("http://"),
        "POST /brix/fleet/scale HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 31\r\nConnection: close\r\n\r\n{\"model\":\"insim\",\"replicas\":64}",
    );
    assert!(anonymous.starts_with("HTTP/1.1 401"), "{anonymous}");
    let out = Command::new(BRIX)
        .env("BRIX_STATE_DIR", dir.0.join("elsewhere"))
        .args(["status", "--endpoint", &endpoint])
        .output()
        .unwrap();
    assert!(!out.status.success(), "status without the key succeeded");
    let out = brix()
        .args(["scale", "insim", "2", "--endpoint", &endpoint])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = status();
        let insim = s
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == "insim")
            .unwrap()
            .clone();
        let ready = insim["replicas"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["state"] == "ready")
            .count();
        if ready == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "never scaled: {insim}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = brix()
        .args(["scale", "nope", "2", "--endpoint", &endpoint])
        .output()
        .unwrap();
    assert!(!out.status.success());

    // Ctrl-C: everything stops, no child left.
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.0.id()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    let status = child.0.wait().unwrap();
    assert!(status.success(), "{status}");
    for p in pids {
        assert!(!alive(p), "replica pid {p} outlived brix up");
    }
    assert!(!key_file.exists(), "the admin key outlived brix up");
}

/// Sends `request` as is and returns the whole answer.
fn raw_http(addr: &str, request: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

#[test]
fn status_shows_each_autoscaler_and_its_last_decisions() {
    let dir = Dir::new("up-autoscaler");
    let file = "gateway:\n  listen: 127.0.0.1:0\nmodels:\n  - name: m\n    replicas: 1\n    engine:\n      sim: {gpu: H200, num_gpu_blocks_override: 512}\nresources:\n  - apiVersion: autoscaling.aibrix.ai/v1alpha1\n    kind: PodAutoscaler\n    metadata:\n      name: m-apa\n      annotations:\n        autoscaling.brix.dev/sync-period: 1s\n    spec:\n      scaleTargetRef: {name: m}\n      minReplicas: 1\n      maxReplicas: 3\n      scalingStrategy: APA\n      metricsSources: [{metricSourceType: pod, targetMetric: gpu_cache_usage_perc, targetValue: '0.5'}]\n";
    let path = write(&dir, "fleet.yaml", file);
    let state = dir.0.join("state");
    let brix = || {
        let mut c = Command::new(BRIX);
        c.env("BRIX_STATE_DIR", &state);
        c
    };
    let mut child = Child(
        brix()
            .args([
                "up",
                &path,
                "--logs-dir",
                &dir.0.join("logs").display().to_string(),
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let stdout = child.0.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let endpoint = loop {
        let line = lines
            .next()
            .expect("brix up exited before listening")
            .unwrap();
        if let Some(url) = line.strip_prefix("brix gateway listening on ") {
            break url.to_string();
        }
    };
    let run = |json: bool| {
        let mut args = vec!["status", "--endpoint", &endpoint];
        if json {
            args.push("--json");
        }
        let out = brix().args(&args).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // The JSON keeps its shape (one entry per model), with the model's autoscaler.
    let deadline = Instant::now() + Duration::from_secs(30);
    let autoscaler = loop {
        let s: serde_json::Value = serde_json::from_str(&run(true)).unwrap();
        let a = s[0]["autoscaler"].clone();
        if a["decisions"].as_array().is_some_and(|d| d.len() >= 2) {
            break a;
        }
        assert!(Instant::now() < deadline, "no decisions shown: {s}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(autoscaler["name"], "m-apa");
    assert_eq!(autoscaler["strategy"], "APA");
    assert_eq!(autoscaler["desired"], 1);
    // The table: one line per autoscaler, then its last decisions with their reasons.
    let table = run(false);
    for needle in [
        "AUTOSCALER",
        "m-apa",
        "APA",
        "gpu_cache_usage_perc=0.5",
        "1/1",
        "(min 1, max 3, every 1 s):",
        "1 -> 1 (",
    ] {
        assert!(table.contains(needle), "{needle:?} not in\n{table}");
    }
    // `/metrics` on the gateway's port carries the autoscaler's series.
    let metrics = raw_http(
        endpoint.trim_start_matches("http://"),
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(
        metrics.contains("brix_autoscaler_desired_replicas{autoscaler=\"m-apa\",model=\"m\"} 1"),
        "{metrics}"
    );
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.0.id()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    assert!(child.0.wait().unwrap().success());
}

#[test]
fn up_runs_the_optimizer_from_the_file_and_status_prints_its_plan() {
    let dir = Dir::new("up-optimizer");
    let profile = |gpu: &str, cost: f64| {
        format!(
            "{{\"gpu\": \"{gpu}\", \"cost\": {cost}, \"indexes\": [[8, 64], [32, 4096]], \"tputs\": [[4, 1], [4, 1]]}}"
        )
    };
    write(&dir, "a.json", &profile("A10", 1.0));
    write(&dir, "b.json", &profile("H100", 4.0));
    let file = |profile_b: &str| {
        format!(
            "gateway:\n  listen: 127.0.0.1:0\nmodels:\n  - name: m-a\n    replicas: 1\n    labels: {{model.aibrix.ai/name: m}}\n    engine: {{sim: {{gpu: H200, num_gpu_blocks_override: 512}}}}\n  - name: m-b\n    replicas: 1\n    labels: {{model.aibrix.ai/name: m}}\n    engine: {{sim: {{gpu: H200, num_gpu_blocks_override: 512}}}}\noptimizer:\n  interval_s: 1\n  tick_s: 1\n  window_s: 2\n  models:\n    - name: m\n      deployments:\n        - {{name: m-a, gpu: A10, profile: a.json}}\n        - {{name: m-b, gpu: H100, profile: {profile_b}}}\n"
        )
    };
    // A missing profile stops `brix up` before anything starts, naming the field and file.
    let bad = write(&dir, "bad.yaml", &file("missing.json"));
    let (ok, err) = run(&["up", &bad]);
    assert!(!ok);
    assert!(
        err.contains("optimizer.models[0].deployments[1].profile") && err.contains("missing.json"),
        "{err}"
    );
    let path = write(&dir, "fleet.yaml", &file("b.json"));
    let state = dir.0.join("state");
    let brix = || {
        let mut c = Command::new(BRIX);
        c.env("BRIX_STATE_DIR", &state);
        c
    };
    let logs = dir.0.join("logs").display().to_string();
    let mut child = Child(
        brix()
            .args(["up", &path, "--logs-dir", &logs])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let stdout = child.0.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let endpoint = loop {
        let line = lines
            .next()
            .expect("brix up exited before listening")
            .unwrap();
        if let Some(url) = line.strip_prefix("brix gateway listening on ") {
            break url.to_string();
        }
    };
    let addr = endpoint.trim_start_matches("http://").to_string();
    let body = r#"{"model":"m","max_tokens":4,"messages":[{"role":"user","content":"hi"}]}"#;
    let chat = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let table = || {
        let out = brix()
            .args(["status", "--endpoint", &endpoint])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // Short prompts: cheaper on m-a (an A10 at $0.86/h vs an H100 at $2.99/h, the sim
    // catalog's prices, for the same 4 req/s), so the plan keeps m-a and asks none of m-b
    // (scaled directly: no autoscaler).
    let deadline = Instant::now() + Duration::from_secs(60);
    let shown = loop {
        let answer = raw_http(&addr, &chat);
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        let t = table();
        let planned_none = t.lines().any(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            w.len() >= 5 && w[0] == "m-b" && w[1] == "H100" && w[2] == "0" && w[4] == "optimizer"
        });
        if planned_none && !t.contains("OPTIMIZER m (0 plans") {
            break t;
        }
        assert!(Instant::now() < deadline, "no plan shown:\n{t}");
        std::thread::sleep(Duration::from_millis(100));
    };
    for needle in [
        "OPTIMIZER m (",
        "DEPLOYMENT",
        "m-a",
        "A10",
        "H100",
        "optimizer (direct)",
    ] {
        assert!(shown.contains(needle), "{needle:?} not in\n{shown}");
    }
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.0.id()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    assert!(child.0.wait().unwrap().success());
}
