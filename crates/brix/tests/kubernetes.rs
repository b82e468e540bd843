//! `brix kubernetes ...` and `brix gateway --kubernetes` as a user runs them: the RBAC table
//! the chart is checked against, and a clear failure where no cluster can be reached.
#![cfg(feature = "kubernetes")]
#![allow(clippy::unwrap_used, clippy::panic)]

use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{Value, json};

const BRIX: &str = env!("CARGO_BIN_EXE_brix");

/// Runs `brix args` with no cluster configured (no in-cluster variables, KUBECONFIG naming a
/// missing file, an empty HOME), killing it after 60 s (a hang guard).
fn brix_without_cluster(args: &[&str]) -> Output {
    let home = std::env::temp_dir().join(format!("brix-kube-home-{}", std::process::id()));
    std::fs::create_dir_all(&home).unwrap();
    let child = Command::new(BRIX)
        .args(args)
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("KUBERNETES_SERVICE_PORT")
        .env("KUBECONFIG", home.join("missing-kubeconfig"))
        .env("HOME", &home)
        .env("POD_NAME", "brix-test")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            let pid = nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap());
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            panic!("brix {args:?} did not exit within 60 s");
        }
    }
}

#[test]
fn rbac_prints_the_gateway_table() {
    let out = brix_without_cluster(&["kubernetes", "rbac", "--component", "gateway"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        got,
        json!({"": {"pods": ["list", "watch"]}, "model.aibrix.ai": {"modeladapters": ["list", "watch"]}})
    );
    assert_eq!(
        got,
        serde_json::to_value(brix_k8s::rbac::component("gateway")).unwrap()
    );
}

#[test]
fn rbac_for_the_controllers_includes_the_lease() {
    let out = brix_without_cluster(&["kubernetes", "rbac", "--component", "controllers"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        got["coordination.k8s.io"]["leases"],
        json!(["create", "get", "update"])
    );
    assert_eq!(
        got,
        serde_json::to_value(brix_k8s::rbac::component("controllers")).unwrap()
    );
}

#[test]
fn controllers_without_a_cluster_fail_clearly() {
    let out = brix_without_cluster(&[
        "kubernetes",
        "controllers",
        "--leader-elect",
        "--health-listen",
        "127.0.0.1:0",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("no Kubernetes cluster to talk to"), "{err}");
    assert!(err.contains("KUBECONFIG"), "{err}");
}

#[test]
fn an_unknown_controller_is_refused_by_name() {
    let out = brix_without_cluster(&["kubernetes", "controllers", "--controllers", "hpa"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("unknown controller 'hpa'"), "{err}");
}

#[test]
fn the_gateway_on_kubernetes_without_a_cluster_fails_clearly() {
    let out = brix_without_cluster(&["gateway", "--kubernetes", "--listen", "127.0.0.1:0"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("no Kubernetes cluster to talk to"), "{err}");
}
