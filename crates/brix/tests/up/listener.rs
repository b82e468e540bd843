//! The listener as the binary runs it (issue 9, sections 1 and 4): a burst of connections
//! above the open-files limit does not kill in-process replicas, `brix` raises its soft
//! open-files limit, and SIGTERM drains `brix sim` (the stream in flight ends with `[DONE]`,
//! new connections are refused).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{BRIX, Child, SMALL, eventually, status_json, tempdir::Dir};

/// Runs `script` with `sh -c` (so `ulimit` applies to the `exec`ed brix), waits for the line
/// starting with `prefix` on stdout and returns the child and the rest of that line.
fn spawn_sh(script: &str, env: &[(&str, &std::path::Path)], prefix: &str) -> (Child, String) {
    let mut cmd = Command::new("sh");
    cmd.args(["-c", script])
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = Child(cmd.spawn().unwrap());
    let mut lines = BufReader::new(child.0.stdout.take().unwrap()).lines();
    let rest = loop {
        let line = lines.next().expect("exited before listening").unwrap();
        if let Some(rest) = line.strip_prefix(prefix) {
            break rest.to_string();
        }
    };
    // Keep draining stdout so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (child, rest)
}

fn soft_and_hard_open_files(pid: u32) -> (String, String) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let mut f = line["Max open files".len()..].split_whitespace();
    (f.next().unwrap().into(), f.next().unwrap().into())
}

#[test]
fn brix_raises_its_soft_open_files_limit_to_the_hard_one() {
    let (child, _) = spawn_sh(
        &format!("ulimit -Sn 64 && exec {BRIX} sim --port 0 {SMALL}"),
        &[],
        "brix sim listening on ",
    );
    let (soft, hard) = soft_and_hard_open_files(child.0.id());
    assert_eq!(soft, hard, "soft limit not raised");
    assert_ne!(soft, "64");
}

async fn completion(http: &reqwest::Client, base: &str, model: &str) -> Option<u16> {
    let r = http
        .post(format!("{base}/v1/completions"))
        .json(&serde_json::json!({"model": model, "prompt": "hi", "max_tokens": 2}))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .ok()?;
    Some(r.status().as_u16())
}

#[tokio::test]
async fn a_connection_burst_over_the_fd_limit_does_not_kill_sim_replicas() {
    let dir = Dir::new("fdburst");
    let state = dir.0.join("state");
    let file = dir.0.join("fleet.yaml");
    std::fs::write(
        &file,
        "gateway:\n  listen: 127.0.0.1:0\n  scrape: {interval_ms: 50}\nmodels:\n  - name: m\n    replicas: 1\n    engine:\n      sim: {gpu: H200, num_gpu_blocks_override: 512}\n",
    )
    .unwrap();
    // Soft and hard limit 256: the burst below exhausts the process's descriptors.
    let (_child, endpoint) = spawn_sh(
        &format!(
            "ulimit -n 256 && exec {BRIX} up {} --logs-dir {}",
            file.display(),
            dir.0.join("logs").display()
        ),
        &[("BRIX_STATE_DIR", &state)],
        "brix gateway listening on ",
    );
    let http = reqwest::Client::new();
    assert_eq!(completion(&http, &endpoint, "m").await, Some(200));
    let replica = status_json(&endpoint, &state)[0]["replicas"][0].clone();
    let address = replica["address"].as_str().unwrap().to_string();

    // 400 connections held open at the replica: more than the process may open.
    // (A connect the kernel leaves hanging, its accept queue full, is given up after a
    // moment; a few in a row end the burst.)
    let mut burst = Vec::new();
    let mut hung = 0;
    for _ in 0..400 {
        match tokio::time::timeout(Duration::from_millis(300), TcpStream::connect(&address)).await {
            Ok(Ok(s)) => {
                burst.push(s);
                hung = 0;
            }
            _ if hung == 3 => break,
            _ => hung += 1,
        }
    }
    assert!(
        burst.len() > 256,
        "only {} connections: the replica stopped accepting (or the burst stayed under the limit)",
        burst.len()
    );
    drop(burst);

    // Afterwards the same replica serves again, and `brix status` says so truthfully.
    eventually("requests succeed after the burst", || async {
        completion(&http, &endpoint, "m").await == Some(200)
    })
    .await;
    eventually("the replica is ready, never restarted", || async {
        let r = &status_json(&endpoint, &state)[0]["replicas"][0];
        r["state"] == "ready" && r["address"] == replica["address"] && r["restarts"] == 0
    })
    .await;
}

#[tokio::test]
async fn sigterm_drains_brix_sim() {
    // Long answers: the stream is still going when the signal comes.
    let (mut child, base) = spawn_sh(
        &format!("exec {BRIX} sim --port 0 {SMALL} --output-len fixed:200"),
        &[],
        "brix sim listening on http://",
    );
    let mut c = TcpStream::connect(&base).await.unwrap();
    let body = r#"{"model":"meta-llama/Meta-Llama-3-8B-Instruct","prompt":"hi","max_tokens":200,"stream":true}"#;
    let req = format!(
        "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    c.write_all(req.as_bytes()).await.unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 8192];
    while !String::from_utf8_lossy(&seen).contains("data: {") {
        let n = c.read(&mut buf).await.unwrap();
        assert!(n > 0, "{}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    assert!(seen.starts_with(b"HTTP/1.1 200"));

    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.0.id()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    eventually("new connections are refused", || async {
        TcpStream::connect(&base).await.is_err()
    })
    .await;
    let rest = tokio::time::timeout(Duration::from_secs(30), async {
        let mut rest = Vec::new();
        c.read_to_end(&mut rest).await.map(|_| rest)
    })
    .await
    .expect("the stream never ended")
    .unwrap();
    seen.extend_from_slice(&rest);
    let text = String::from_utf8_lossy(&seen);
    assert!(text.contains("data: [DONE]"), "stream cut: {text}");
    let status = child.0.wait().unwrap();
    assert!(status.success(), "{status}");
}
