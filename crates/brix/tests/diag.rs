//! `brix diag` against the failure mock-up: every failure field of AIBrix's GPU mock TOML
//! (and `nvml_init_error`, a card-count mismatch) gives the verdict, exit code and finding it
//! should. The real binary loads the real `libbrix_nvml_mock.so` as its NVML, one process per
//! case, each with its own `BRIX_NVML_MOCK_CONFIG`.
#![expect(
    clippy::unwrap_used,
    clippy::panic,
    reason = "tests: a failed unwrap is a failed test"
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use brix_testkit::nvml_mock_library;
use serde_json::Value;

const BRIX: &str = env!("CARGO_BIN_EXE_brix");
const AIBRIX: &str = include_str!("../../nvml-mock/tests/data/gpu_mock_conf.toml");

fn write_config(name: &str, toml: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("brix-diag-cli");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, toml).unwrap();
    path
}

fn brix_diag(config: &Path, args: &[&str]) -> Output {
    Command::new(BRIX)
        .arg("diag")
        .args(args)
        .env("BRIX_NVML_MOCK_CONFIG", config)
        .env("BRIX_NVML_LIBRARY", nvml_mock_library())
        .env_remove("GPU_CARD_COUNT")
        .output()
        .unwrap()
}

/// One row: a TOML, extra flags, the exit code, and per GPU (`None` = node) the check and
/// severity that must appear; `clean` GPUs must have no finding at all.
struct Case {
    name: &'static str,
    toml: &'static str,
    args: &'static [&'static str],
    exit: i32,
    expect: &'static [(Option<u64>, &'static str, &'static str, &'static str)],
    clean: &'static [u64],
}

const CASES: &[Case] = &[
    Case {
        name: "healthy",
        toml: "[gpus]\ncard_count = 2\n",
        args: &["--expected-cards", "2"],
        exit: 0,
        expect: &[],
        clean: &[0, 1],
    },
    Case {
        name: "init_error",
        toml: "[gpus]\nnvml_init_error = 9\n",
        args: &[],
        exit: 1,
        expect: &[(None, "driver", "fail", "NVML_ERROR_DRIVER_NOT_LOADED")],
        clean: &[],
    },
    Case {
        name: "init_error_no_permission",
        toml: "[gpus]\nnvml_init_error = 4\n",
        args: &[],
        exit: 1,
        expect: &[(None, "driver", "fail", "NVML_ERROR_NO_PERMISSION")],
        clean: &[],
    },
    Case {
        name: "init_error_zero_is_success",
        toml: "[gpus]\nnvml_init_error = 0\n",
        args: &[],
        exit: 0,
        expect: &[],
        clean: &[0],
    },
    Case {
        name: "card_count",
        toml: "[gpus]\ncard_count = 3\n",
        args: &["--expected-cards", "4"],
        exit: 1,
        expect: &[(
            None,
            "card_count",
            "fail",
            "3 GPU cards present, 4 expected",
        )],
        clean: &[0, 1, 2],
    },
    Case {
        name: "link_width",
        toml: "[gpus.0]\nlink_width_current = 8\nlink_width_max = 16\n",
        args: &[],
        exit: 1,
        expect: &[(Some(0), "pcie_width", "fail", "x8, max x16")],
        clean: &[],
    },
    Case {
        name: "link_width_max_only",
        toml: "[gpus.0]\nlink_width_max = 8\n",
        args: &[],
        exit: 0,
        expect: &[],
        clean: &[0],
    },
    Case {
        name: "link_gen",
        toml: "[gpus.0]\nlink_gen = 5\nlink_gen_current = 3\n",
        args: &[],
        exit: 0,
        expect: &[(Some(0), "pcie_gen", "warn", "generation 3, max 5")],
        clean: &[],
    },
    Case {
        name: "link_gen_max_only",
        toml: "[gpus.0]\nlink_gen = 5\n",
        args: &[],
        exit: 0,
        expect: &[],
        clean: &[0],
    },
    Case {
        name: "dram_ue",
        toml: "[gpus]\ncard_count = 2\n[gpus.1]\ndram_ue = 7\n",
        args: &[],
        exit: 1,
        expect: &[(Some(1), "ecc_uncorrectable", "fail", "DRAM (volatile) 7")],
        clean: &[0],
    },
    Case {
        name: "sram_ue",
        toml: "[gpus.0]\nsram_ue = 2\n",
        args: &[],
        exit: 1,
        expect: &[(Some(0), "ecc_uncorrectable", "fail", "SRAM (volatile) 2")],
        clean: &[],
    },
    Case {
        name: "agg_l1",
        toml: "[gpus.0]\nuncorrectable_agg_l1 = 1\n",
        args: &[],
        exit: 1,
        expect: &[(
            Some(0),
            "ecc_uncorrectable",
            "fail",
            "L1 cache (aggregate) 1",
        )],
        clean: &[],
    },
    Case {
        name: "agg_l2",
        toml: "[gpus.0]\nuncorrectable_agg_l2 = 3\n",
        args: &[],
        exit: 1,
        expect: &[(
            Some(0),
            "ecc_uncorrectable",
            "fail",
            "L2 cache (aggregate) 3",
        )],
        clean: &[],
    },
    Case {
        name: "agg_reg",
        toml: "[gpus.0]\nuncorrectable_agg_reg = 4\n",
        args: &[],
        exit: 1,
        expect: &[(
            Some(0),
            "ecc_uncorrectable",
            "fail",
            "register file (aggregate) 4",
        )],
        clean: &[],
    },
    Case {
        name: "dram_ce_over",
        toml: "[gpus.0]\ndram_ce = 101\n",
        args: &[],
        exit: 0,
        expect: &[(Some(0), "ecc_correctable", "warn", "101 correctable")],
        clean: &[],
    },
    Case {
        name: "dram_ce_under",
        toml: "[gpus.0]\ndram_ce = 100\n",
        args: &[],
        exit: 0,
        expect: &[],
        clean: &[0],
    },
    Case {
        name: "retired_dbe",
        toml: "[gpus.0]\narch = 5\nretired_page_dbe = 2\n",
        args: &[],
        exit: 1,
        expect: &[(Some(0), "retired_pages", "fail", "double-bit")],
        clean: &[],
    },
    Case {
        name: "retired_sbe",
        toml: "[gpus.0]\narch = 5\nretired_page_sbe = 3\n",
        args: &[],
        exit: 0,
        expect: &[(Some(0), "retired_pages", "warn", "single-bit")],
        clean: &[],
    },
    Case {
        name: "retired_pending",
        toml: "[gpus.0]\narch = 6\nretired_page_pending = true\n",
        args: &[],
        exit: 1,
        expect: &[(Some(0), "retired_pages", "fail", "pending retirement")],
        clean: &[],
    },
    Case {
        name: "remapping_failure",
        toml: "[gpus.0]\nremapping_failure = true\n",
        args: &[],
        exit: 1,
        expect: &[(Some(0), "row_remap", "fail", "row remapping failure")],
        clean: &[],
    },
    Case {
        name: "remapping_pending",
        toml: "[gpus.0]\narch = 9\nremapping_pending = true\n",
        args: &[],
        exit: 1,
        expect: &[(Some(0), "row_remap", "fail", "row remapping pending")],
        clean: &[],
    },
    Case {
        name: "nvlink_down",
        toml: "[gpus.0]\nnvlink_active = [true, false, true, false]\n",
        args: &[],
        exit: 1,
        expect: &[(
            Some(0),
            "nvlink",
            "fail",
            "links 1, 3 inactive (2 of 4 down)",
        )],
        clean: &[],
    },
    Case {
        name: "nvlink_all_down",
        toml: "[gpus.0]\nnvlink_active = [false, false]\n",
        args: &[],
        exit: 0,
        expect: &[(
            Some(0),
            "nvlink",
            "warn",
            "no NVLink active (all 2 links down",
        )],
        clean: &[],
    },
    Case {
        name: "nvlink_up",
        toml: "[gpus.0]\nnvlink_active = [true, true, true, true, true, true]\n",
        args: &[],
        exit: 0,
        expect: &[],
        clean: &[0],
    },
    Case {
        name: "only_selected_gpu",
        toml: "[gpus]\ncard_count = 2\n[gpus.0]\ndram_ue = 1\n",
        args: &["--gpus", "1"],
        exit: 0,
        expect: &[],
        clean: &[1],
    },
    Case {
        name: "selected_gpu_missing",
        toml: "[gpus]\ncard_count = 2\n",
        args: &["--gpus", "0,7"],
        exit: 1,
        expect: &[(None, "device", "fail", "GPU 7 requested but only 2 present")],
        clean: &[0],
    },
    // A count no node holds (a broken library): one node failure, no per-GPU walk (4294967295
    // cards used to take hours and a report of billions of entries).
    Case {
        name: "absurd_card_count",
        toml: "[gpus]\ncard_count = 5000\n",
        args: &[],
        exit: 1,
        expect: &[(None, "card_count", "fail", "5000 GPU cards reported")],
        clean: &[],
    },
    Case {
        name: "bad_toml",
        toml: "[gpus.0]\ndram_ue = -3\n",
        args: &[],
        exit: 1,
        expect: &[(None, "driver", "fail", "NVML_ERROR_UNKNOWN")],
        clean: &[],
    },
];

fn findings(report: &Value, gpu: Option<u64>) -> &Vec<Value> {
    match gpu {
        None => report["node"].as_array().unwrap(),
        Some(i) => {
            let g = report["gpus"]
                .as_array()
                .unwrap()
                .iter()
                .find(|g| g["index"] == i);
            g.unwrap_or_else(|| panic!("GPU {i} missing from {report}"))["findings"]
                .as_array()
                .unwrap()
        }
    }
}

#[test]
fn every_mock_failure_gives_its_verdict() {
    for case in CASES {
        let config = write_config(case.name, case.toml);
        let mut args = vec!["--json"];
        args.extend_from_slice(case.args);
        let out = brix_diag(&config, &args);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let ctx = format!(
            "case {}: stdout {stdout} stderr {}",
            case.name,
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.status.code(), Some(case.exit), "{ctx}");
        let report: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{ctx}: {e}"));
        assert_eq!(report["healthy"], case.exit == 0, "{ctx}");
        for &(gpu, check, severity, text) in case.expect {
            let hit = findings(&report, gpu).iter().any(|f| {
                f["check"] == check
                    && f["severity"] == severity
                    && f["message"].as_str().unwrap().contains(text)
            });
            assert!(
                hit,
                "{ctx}: no {severity} {check} containing {text:?} on {gpu:?}"
            );
        }
        let total: usize = report["gpus"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g["findings"].as_array().unwrap().len())
            .sum::<usize>()
            + report["node"].as_array().unwrap().len();
        assert_eq!(total, case.expect.len(), "{ctx}: unexpected findings");
        for &i in case.clean {
            assert!(
                findings(&report, Some(i)).is_empty(),
                "{ctx}: GPU {i} not clean"
            );
        }
    }
}

#[test]
fn aibrix_example_verbatim_fails_init_and_then_gpu_0() {
    let config = write_config("aibrix", AIBRIX);
    let out = brix_diag(&config, &["--json"]);
    assert_eq!(out.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["node"][0]["check"], "driver");
    assert!(
        report["node"][0]["message"]
            .as_str()
            .unwrap()
            .contains("NVML_ERROR_DRIVER_NOT_LOADED")
    );
    // Without its nvml_init_error, the example's GPU 0 (pending remap, 7 DRAM UEs) fails.
    let config = write_config("aibrix-init-ok", &AIBRIX.replace("nvml_init_error = 9", ""));
    let out = Command::new(BRIX)
        .args(["diag", "--json", "--nvml-lib"])
        .arg(nvml_mock_library())
        .env("BRIX_NVML_MOCK_CONFIG", &config)
        .env("GPU_CARD_COUNT", "4")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let verdicts: Vec<&Value> = report["gpus"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| &g["healthy"])
        .collect();
    assert_eq!(verdicts, [false, true, true, true]);
    let checks: Vec<&Value> = report["gpus"][0]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| &f["check"])
        .collect();
    assert_eq!(checks, ["ecc_uncorrectable", "row_remap"]);
    // GPU_CARD_COUNT is AIBrix's expected-count variable: 5 fails the node.
    let out = Command::new(BRIX)
        .args(["diag", "--json", "--nvml-lib"])
        .arg(nvml_mock_library())
        .env("BRIX_NVML_MOCK_CONFIG", &config)
        .env("GPU_CARD_COUNT", "5")
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        report["node"][0]["message"],
        "4 GPU cards present, 5 expected"
    );
}

#[test]
fn table_output_usage_errors_and_missing_library() {
    let config = write_config(
        "table",
        "[gpus]\ncard_count = 2\n[gpus.1]\ndevice_name = \"H100\"\nremapping_failure = true\n",
    );
    let out = brix_diag(&config, &[]);
    assert_eq!(out.status.code(), Some(1));
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(table.contains("GPU  VERDICT  NAME"), "{table}");
    let row = table.lines().find(|l| l.starts_with("1 ")).unwrap();
    assert!(row.contains("FAIL") && row.contains("H100"), "{table}");
    assert!(
        table.contains("fail row_remap: row remapping failure"),
        "{table}"
    );
    assert!(table.ends_with("verdict: UNHEALTHY\n"), "{table}");
    // Usage errors exit 2 (clap), before any NVML call.
    for bad in [
        &["--gpus", "zero"][..],
        &["--expected-cards", "-1"],
        &["--no-such-flag"],
    ] {
        let out = brix_diag(&config, bad);
        assert_eq!(out.status.code(), Some(2), "{bad:?}");
    }
    // No NVML library: the node fails, it does not crash.
    let out = Command::new(BRIX)
        .args([
            "diag",
            "--json",
            "--nvml-lib",
            "/nonexistent/libnvidia-ml.so.1",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        report["node"][0]["message"]
            .as_str()
            .unwrap()
            .starts_with("cannot load NVML library")
    );
}

#[test]
fn mock_dropped_in_as_libnvidia_ml_on_ld_library_path() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("brix-diag-ldpath");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(nvml_mock_library(), dir.join("libnvidia-ml.so.1")).unwrap();
    let config = write_config("ldpath", "[gpus]\ncard_count = 3\n[gpus.2]\nsram_ue = 1\n");
    let out = Command::new(BRIX)
        .args(["diag", "--json"])
        .env("BRIX_NVML_MOCK_CONFIG", &config)
        .env("LD_LIBRARY_PATH", &dir)
        .env_remove("BRIX_NVML_LIBRARY")
        .env_remove("GPU_CARD_COUNT")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["card_count"], 3);
    assert_eq!(
        report["gpus"][2]["findings"][0]["check"],
        "ecc_uncorrectable"
    );
}

#[test]
fn help_describes_diag_and_only_diag() {
    let out = Command::new(BRIX)
        .args(["diag", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.starts_with("Accelerator diagnostics through NVML"),
        "{help}"
    );
    assert!(!help.contains("Kubernetes"), "{help}");
}

/// `brix diag 2>&1 | head -1`: stdout and stderr both a closed pipe. Exit 2 (report not
/// written), never a panic (101) from printing the error to the same closed pipe.
#[test]
fn closed_output_pipe_exits_2_without_a_panic() {
    let config = write_config("many_cards", "[gpus]\ncard_count = 1000\n");
    let (reader, writer) = std::io::pipe().unwrap();
    let mut child = Command::new(BRIX)
        .arg("diag")
        .env("BRIX_NVML_MOCK_CONFIG", &config)
        .env("BRIX_NVML_LIBRARY", nvml_mock_library())
        .env_remove("GPU_CARD_COUNT")
        .stdout(writer.try_clone().unwrap())
        .stderr(writer)
        .spawn()
        .unwrap();
    // 1000 cards are ~100 KB of table, more than a pipe holds: the write meets the closed end.
    drop(reader);
    assert_eq!(child.wait().unwrap().code(), Some(2));
}
