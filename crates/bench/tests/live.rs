//! `brix bench run`'s live mode against `brix sim` on real sockets (`127.0.0.1:0`): every
//! request recorded and consistent, sessions' turns in order, failures recorded rather than
//! dropped, output files that parse, and a comparison that draws its plots. Runs are a fixed
//! number of requests; nothing here asserts how fast anything is.

use std::path::{Path, PathBuf};
use std::time::Duration;

use brix_bench::live::{self, LiveConfig, Pacing, RunInfo};
use brix_bench::report::{RequestRecord, Slo, Summary};
use brix_bench::workload::{self, Arrival, Workload};

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("brix-live-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn workload(spec: &str, arrival: &str, max: Option<usize>) -> Workload {
    let w = workload::load(spec, 7).expect("workload");
    let arrival: Arrival = arrival.parse().expect("arrival");
    workload::schedule(w, &arrival, 7, None, max)
}

fn config(addr: std::net::SocketAddr, pacing: Pacing) -> LiveConfig {
    let mut cfg = LiveConfig::new(&format!("http://{addr}"), "m").expect("config");
    cfg.pacing = pacing;
    cfg.progress = false;
    cfg.timeout = Duration::from_secs(60);
    cfg
}

/// Every record of a completed run agrees with itself and with the workload.
fn assert_consistent(w: &Workload, records: &[RequestRecord]) {
    assert_eq!(records.len(), w.requests.len(), "one record per request");
    for (r, req) in records.iter().zip(&w.requests) {
        assert_eq!(r.id, req.id);
        assert!(r.ok(), "{r:?}");
        assert_eq!(r.status, 200);
        assert_eq!(
            r.output_tokens, req.output_tokens,
            "ignore_eos: exact length"
        );
        assert_eq!(
            r.prompt_tokens as usize,
            req.prompt.len(),
            "one token per word"
        );
        assert_eq!(r.itl_ms.len() + 1, r.output_tokens as usize, "{r:?}");
        let (ttft, e2e) = (r.ttft_ms.expect("ttft"), r.e2e_ms.expect("e2e"));
        assert!(0.0 < ttft && ttft <= e2e, "{r:?}");
        assert!(r.itl_ms.iter().all(|g| *g >= 0.0));
        if r.output_tokens > 1 {
            let tpot = r.tpot_ms.expect("tpot");
            let gaps: f64 = r.itl_ms.iter().sum();
            assert!((tpot * f64::from(r.output_tokens - 1) - gaps).abs() < 1e-6);
        }
        assert!(r.sent_s >= r.scheduled_s, "{r:?}");
        assert!(r.target_pod.is_none(), "an engine sets no target-pod");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_closed_loop_against_sim_writes_consistent_records_and_plots() {
    let sim = brix_testkit::start_sim(&brix_testkit::sim_config("m")).await;
    let w = workload(
        "shared-prefix:groups=2,prefix=64,suffix=16,output=8,requests=20",
        "closed:4",
        None,
    );
    assert_eq!(w.requests.len(), 20);
    let cfg = config(sim.addr, Pacing::Closed { users: 4 });
    let records = live::run(&cfg, &w, workload::vocab::text)
        .await
        .expect("run");
    assert_consistent(&w, &records);

    let slo = Slo {
        ttft_ms: Some(f64::MAX),
        tpot_ms: None,
    };
    let summary = Summary::from_records("closed", &records, slo);
    assert_eq!((summary.completed, summary.failed), (20, 0));
    assert_eq!(summary.goodput_per_s, summary.requests_per_s);
    let dir = scratch("closed");
    let a = dir.join("a");
    let info = RunInfo {
        label: "closed".into(),
        ..RunInfo::default()
    };
    live::write_run(&a, &records, &summary, &info).expect("write");
    let text = std::fs::read_to_string(a.join("summary.json")).expect("summary.json");
    let back: Summary = serde_json::from_str(&text).expect("summary parses");
    assert_eq!(back, summary);
    let lines = std::fs::read_to_string(a.join("requests.jsonl")).expect("requests.jsonl");
    let parsed: Vec<RequestRecord> = lines
        .lines()
        .map(|l| serde_json::from_str(l).expect("record parses"))
        .collect();
    assert_eq!(parsed, records);
    for key in ["ttft_ms", "itl_ms", "tpot_ms", "e2e_ms"] {
        let v: serde_json::Value = serde_json::from_str(&text).expect("json");
        for stat in ["mean", "p50", "p90", "p99"] {
            assert!(v[key][stat].is_number(), "{key}.{stat}");
        }
    }

    // A second run (a sweep of one rate, in a subdirectory), then both side by side.
    let open = workload(
        "shared-prefix:groups=2,prefix=64,suffix=16,output=8,requests=10",
        "poisson:50",
        None,
    );
    let records = live::run(
        &config(sim.addr, Pacing::Open),
        &open,
        workload::vocab::text,
    )
    .await
    .expect("open run");
    assert_consistent(&open, &records);
    let summary = Summary::from_records("open @ 50/s", &records, Slo::default());
    let sweep = dir.join("sweep");
    let info = RunInfo {
        rate: Some(50.0),
        ..RunInfo::default()
    };
    live::write_run(&sweep.join("rate-50"), &records, &summary, &info).expect("write");
    let out = dir.join("compare");
    let table = live::compare(&[a, sweep], &out).expect("compare");
    assert!(table.contains("| closed | 20 | 0 |"), "{table}");
    assert!(table.contains("| open @ 50/s | 10 | 0 |"), "{table}");
    assert_plots(&out);
    let _ = std::fs::remove_dir_all(&dir);
}

fn assert_plots(out: &Path) {
    assert!(out.join("table.md").is_file());
    for stem in ["ttft_cdf", "latency_vs_load"] {
        let png = std::fs::read(out.join(format!("{stem}.png"))).expect("png");
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "{stem}.png is a PNG");
        let svg = std::fs::read_to_string(out.join(format!("{stem}.svg"))).expect("svg");
        assert!(
            svg.starts_with("<svg") && svg.contains("</svg>"),
            "{stem}.svg"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_open_loop_sends_a_sessions_turns_in_order_after_think_time() {
    let sim = brix_testkit::start_sim(&brix_testkit::sim_config("m")).await;
    let w = workload(
        "multi-turn:sessions=4,turns=3,system=32,user=8,output=4,think=0.01",
        "poisson:40",
        None,
    );
    assert_eq!(w.requests.len(), 12);
    let records = live::run(&config(sim.addr, Pacing::Open), &w, workload::vocab::text)
        .await
        .expect("run");
    assert_consistent(&w, &records);
    for session in 0..4 {
        let mut turns: Vec<&RequestRecord> = records
            .iter()
            .filter(|r| r.session == Some(session))
            .collect();
        turns.sort_by_key(|r| r.turn);
        assert_eq!(turns.len(), 3);
        for pair in turns.windows(2) {
            let end = pair[0].sent_s + pair[0].e2e_ms.expect("e2e") / 1000.0;
            // Released after the previous turn ended (think time is never negative).
            assert!(pair[1].scheduled_s >= end - 1e-3, "{pair:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_failures_are_recorded_not_dropped() {
    // A port nothing listens on: every request fails to connect.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    let w = workload(
        "shared-prefix:groups=1,prefix=8,suffix=8,output=4,requests=6",
        "closed:2",
        None,
    );
    let records = live::run(
        &config(port, Pacing::Closed { users: 2 }),
        &w,
        workload::vocab::text,
    )
    .await
    .expect("run");
    assert_eq!(records.len(), 6);
    for r in &records {
        assert!(!r.ok());
        assert_eq!(r.status, 0);
        assert!(
            r.error.as_deref().is_some_and(|e| e.starts_with("send")),
            "{r:?}"
        );
    }
    let s = Summary::from_records("down", &records, Slo::default());
    assert_eq!((s.completed, s.failed), (0, 6));

    // Injected faults: 500s, a stream cut after two tokens, and replies that never come.
    type Fault = fn(&mut brix_sim_http::SimConfig);
    let cases: [(Fault, &str); 3] = [
        (|c| c.faults.fail_rate = 1.0, "status 500"),
        (|c| c.faults.die_mid_stream_after = Some(2), "read"),
        (|c| c.faults.hang_rate = 1.0, "timeout"),
    ];
    for (set, error) in cases {
        let mut sim_cfg = brix_testkit::sim_config("m");
        set(&mut sim_cfg);
        let sim = brix_testkit::start_sim(&sim_cfg).await;
        let mut cfg = config(sim.addr, Pacing::Open);
        cfg.timeout = Duration::from_millis(300);
        let records = live::run(&cfg, &w, workload::vocab::text)
            .await
            .expect("run");
        assert_eq!(records.len(), 6, "{error}");
        for r in &records {
            assert!(!r.ok(), "{r:?}");
            assert!(
                r.error.as_deref().is_some_and(|e| e.starts_with(error)),
                "{error}: {r:?}"
            );
        }
        if error == "read" {
            // What arrived before the cut is kept.
            assert!(
                records
                    .iter()
                    .all(|r| r.status == 200 && r.ttft_ms.is_some())
            );
        }
    }
}
