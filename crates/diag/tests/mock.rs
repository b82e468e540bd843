//! `brix_diag::diagnose` against the failure mock-up (`libbrix_nvml_mock.so`, built because
//! this crate dev-depends on brix-nvml-mock). The mock reads its TOML from an environment
//! variable at `nvmlInit`, and a test process cannot safely change its own environment while
//! other tests run, so each case re-runs this test binary's ignored `child` test in a child
//! process with its own `BRIX_NVML_MOCK_CONFIG`; the child prints the report as JSON.
#![expect(
    clippy::unwrap_used,
    clippy::panic,
    reason = "tests: a failed unwrap is a failed test"
)]

use std::path::PathBuf;
use std::process::Command;

use brix_diag::{DiagConfig, diagnose};
use brix_testkit::nvml_mock_library;
use serde_json::{Value, json};

const CHILD: &str = "BRIX_DIAG_TEST_CHILD";
const AIBRIX: &str = include_str!("../../nvml-mock/tests/data/gpu_mock_conf.toml");

/// Diagnoses the mock configured by `toml` in a child process; the report plus `gpu_ok` for
/// GPUs 0..4.
fn run(name: &str, toml: &str, expected_cards: Option<u32>, gpus: Option<&str>) -> Value {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("brix-diag-mock");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, toml).unwrap();
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "child",
        "--exact",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(CHILD, "1")
    .env("BRIX_NVML_MOCK_CONFIG", &path);
    if let Some(n) = expected_cards {
        cmd.env("BRIX_DIAG_TEST_EXPECTED", n.to_string());
    }
    if let Some(g) = gpus {
        cmd.env("BRIX_DIAG_TEST_GPUS", g);
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.split_once("REPORT ").map(|(_, json)| json))
        .unwrap_or_else(|| {
            panic!(
                "{name}: no report; stdout {stdout}; stderr {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    serde_json::from_str(line).unwrap()
}

#[test]
#[ignore = "the child half of the other tests: run with BRIX_DIAG_TEST_CHILD and a mock config"]
fn child() {
    assert!(
        std::env::var_os(CHILD).is_some(),
        "run by the other tests only"
    );
    let cfg = DiagConfig {
        nvml_lib: Some(nvml_mock_library()),
        expected_cards: std::env::var("BRIX_DIAG_TEST_EXPECTED")
            .ok()
            .map(|s| s.parse().unwrap()),
        gpus: std::env::var("BRIX_DIAG_TEST_GPUS")
            .ok()
            .map(|s| s.split(',').map(|g| g.parse().unwrap()).collect()),
    };
    let report = diagnose(&cfg);
    let ok: Vec<Value> = (0..4)
        .map(|i| match report.gpu_ok(i) {
            Ok(()) => json!("ok"),
            Err(e) => json!(e),
        })
        .collect();
    let out = json!({"report": report, "gpu_ok": ok});
    println!("REPORT {out}");
}

fn checks(findings: &Value, severity: &str) -> Vec<String> {
    findings
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["severity"] == severity)
        .map(|f| f["check"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn healthy_defaults_pass_with_not_applicable_checks_listed() {
    let v = run("healthy", "[gpus]\ncard_count = 2\n", Some(2), None);
    let r = &v["report"];
    assert_eq!(r["healthy"], true, "{r}");
    assert_eq!(r["card_count"], 2);
    assert_eq!(r["driver_version"], "550.54.15");
    for g in r["gpus"].as_array().unwrap() {
        assert_eq!(g["findings"], json!([]), "{g}");
        assert_eq!(g["arch"], "Ampere");
        // An Ampere card: retired pages are replaced by row remapping; no NVLink configured.
        assert_eq!(g["not_applicable"], json!(["retired_pages", "nvlink"]));
    }
    assert_eq!(
        v["gpu_ok"],
        json!([
            "ok",
            "ok",
            "GPU 2 was not diagnosed (not present or not requested)",
            "GPU 3 was not diagnosed (not present or not requested)"
        ])
    );
}

#[test]
fn aibrix_example_fails_the_node_with_nvml_s_error_name() {
    let v = run("aibrix", AIBRIX, None, None);
    let r = &v["report"];
    assert_eq!(r["healthy"], false);
    assert_eq!(checks(&r["node"], "fail"), ["driver"]);
    let msg = r["node"][0]["message"].as_str().unwrap();
    assert!(msg.contains("NVML_ERROR_DRIVER_NOT_LOADED"), "{msg}");
    assert_eq!(r["gpus"], json!([]));
    assert!(
        v["gpu_ok"][1]
            .as_str()
            .unwrap()
            .starts_with("node: nvmlInit failed")
    );
}

#[test]
fn aibrix_example_without_init_error_fails_gpu_0_only() {
    let toml = AIBRIX.replace("nvml_init_error = 9", "");
    let v = run("aibrix-no-init-error", &toml, Some(4), None);
    let r = &v["report"];
    assert_eq!(r["healthy"], false);
    let gpus = r["gpus"].as_array().unwrap();
    assert_eq!(gpus.len(), 4);
    assert_eq!(
        checks(&gpus[0]["findings"], "fail"),
        ["ecc_uncorrectable", "row_remap"]
    );
    assert!(
        gpus[0]["findings"][0]["message"]
            .as_str()
            .unwrap()
            .contains("DRAM (volatile) 7")
    );
    for g in &gpus[1..] {
        assert_eq!(g["healthy"], true, "{g}");
    }
    // GPU 1 is the fully written example: an A800, six active NVLinks, bus 00:00.
    assert_eq!(gpus[1]["name"], "A800");
    assert_eq!(gpus[1]["uuid"], "xxxxx");
    assert_eq!(gpus[1]["pci_bus_id"], "00000000:00:00.0");
    // Its retired-page fields are written (as zeros), so the mock answers them on Ampere too,
    // as AIBrix's injector does: every check applies.
    assert_eq!(gpus[1]["not_applicable"], json!([]));
    assert!(
        v["gpu_ok"][0]
            .as_str()
            .unwrap()
            .contains("row remapping pending")
    );
    assert_eq!(v["gpu_ok"][1], "ok");
}

#[test]
fn card_count_mismatch_fails_every_gpu() {
    let v = run("count", "[gpus]\ncard_count = 3\n", Some(4), None);
    let r = &v["report"];
    assert_eq!(checks(&r["node"], "fail"), ["card_count"]);
    assert_eq!(r["node"][0]["message"], "3 GPU cards present, 4 expected");
    assert!(
        r["gpus"]
            .as_array()
            .unwrap()
            .iter()
            .all(|g| g["healthy"] == true)
    );
    // A missing card may have shifted the indices: no GPU is OK to use.
    assert!(
        v["gpu_ok"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s.as_str().unwrap().starts_with("node: "))
    );
}

#[test]
fn selected_gpus_only_and_missing_ones_reported() {
    let toml = "[gpus]\ncard_count = 2\n[gpus.0]\ndram_ue = 1\n";
    let v = run("select", toml, None, Some("1"));
    assert_eq!(v["report"]["healthy"], true);
    assert_eq!(v["report"]["gpus"].as_array().unwrap().len(), 1);
    let v = run("select-missing", toml, None, Some("1,5"));
    assert_eq!(checks(&v["report"]["node"], "fail"), ["device"]);
}

#[test]
fn bad_config_fails_init_instead_of_crashing() {
    let v = run("bad", "[gpus.0]\ndram_ue = \"seven\"\n", None, None);
    let msg = v["report"]["node"][0]["message"].as_str().unwrap();
    assert!(msg.contains("NVML_ERROR_UNKNOWN"), "{msg}");
}

#[test]
fn missing_library_is_a_node_failure() {
    let r = diagnose(&DiagConfig {
        nvml_lib: Some(PathBuf::from("/nonexistent/libnvidia-ml.so.1")),
        ..DiagConfig::default()
    });
    assert!(!r.healthy);
    assert_eq!(r.node.len(), 1);
    assert!(
        r.node[0]
            .message
            .starts_with("cannot load NVML library /nonexistent/libnvidia-ml.so.1")
    );
    assert!(r.gpu_ok(0).is_err());
}
