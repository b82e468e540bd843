//! Scenario tests of the fleet simulator: sane records, determinism, release rules, refusals,
//! and the oracle's use of the true caches. Nothing here reads a clock.

use brix_sim::Catalog;

use super::*;
use crate::report::{Slo, Summary};
use crate::workload::{Turn, WorkRequest};

fn config(engines: usize) -> SimConfig {
    let c = Catalog::builtin();
    match (c.model("llama-3-8b"), c.gpu("A100-80GB")) {
        (Ok(m), Ok(g)) => SimConfig::new(engines, m.clone(), g.clone()),
        _ => panic!("missing profile"),
    }
}

/// `n` words: the first `shared` from group `group`'s stream, the rest unique to `salt`.
fn prompt(n: usize, shared: usize, group: u32, salt: u32) -> Vec<u32> {
    (0..n as u32)
        .map(|i| {
            let (s, x) = if (i as usize) < shared {
                (group, i)
            } else {
                (salt + 1000, i)
            };
            x.wrapping_mul(2_654_435_761)
                .wrapping_add(s.wrapping_mul(40_503))
                % 2000
        })
        .collect()
}

/// `n` requests at `rate`/s, each with one of `groups` 800-word shared prefixes.
fn shared_prefix(n: usize, rate: f64, groups: u32) -> Workload {
    let requests = (0..n)
        .map(|i| WorkRequest {
            id: i as u64,
            at_s: i as f64 / rate,
            session: None,
            prompt: prompt(1000, 800, i as u32 % groups, i as u32),
            output_tokens: 20 + (i as u32 % 7) * 5,
        })
        .collect();
    Workload { requests }
}

fn strategy(s: &str) -> SimStrategy {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn sim(w: &Workload, release: Release, cfg: &SimConfig, s: &str) -> SimRun {
    let keys = route_keys(w, 128);
    run(w, &keys, release, cfg, &strategy(s)).unwrap_or_else(|e| panic!("{s}: {e}"))
}

#[test]
fn a_small_workload_on_two_engines_completes_with_sane_records() {
    let w = shared_prefix(60, 20.0, 3);
    let cfg = config(2);
    for s in [
        "random",
        "least-request",
        "prefix-cache",
        "kv-cost",
        "oracle",
    ] {
        let run = sim(&w, Release::Open, &cfg, s);
        assert_eq!(run.records.len(), w.requests.len(), "{s}");
        for (r, req) in run.records.iter().zip(&w.requests) {
            assert_eq!(r.id, req.id);
            assert!(r.ok(), "{s}: {r:?}");
            assert_eq!(r.output_tokens, req.output_tokens);
            assert_eq!(r.prompt_tokens as usize, req.prompt.len());
            assert_eq!(r.itl_ms.len() as u32, req.output_tokens - 1);
            assert_eq!((r.scheduled_s, r.sent_s), (req.at_s, req.at_s));
            let (ttft, e2e) = (r.ttft_ms.unwrap_or(-1.0), r.e2e_ms.unwrap_or(-1.0));
            assert!(ttft > 0.0 && ttft <= e2e, "{s}: ttft {ttft} e2e {e2e}");
            let itl: f64 = r.itl_ms.iter().sum();
            assert!((ttft + itl - e2e).abs() < 1e-6, "{s}: ttft + Σitl = e2e");
            assert!(matches!(
                r.target_pod.as_deref(),
                Some("engine-0" | "engine-1")
            ));
        }
        let per_engine: u64 = run.engines.iter().map(|e| e.requests).sum();
        assert_eq!(per_engine, 60);
        assert!(run.prefix_hit_rate() > 0.0, "{s}: shared prefixes hit");
        let summary = Summary::from_records(s, &run.records, Slo::default());
        assert_eq!((summary.completed, summary.failed), (60, 0));
    }
}

#[test]
fn same_seed_gives_the_same_report_and_the_seed_matters() {
    let w = shared_prefix(80, 40.0, 4);
    let mut cfg = config(3);
    cfg.seed = 7;
    for s in [
        "random",
        "prefix-cache",
        "kv-cost",
        "least-latency",
        "oracle",
    ] {
        let a = sim(&w, Release::Open, &cfg, s);
        let b = sim(&w, Release::Open, &cfg, s);
        assert_eq!(a, b, "{s}");
        let (sa, sb) = (
            Summary::from_records(s, &a.records, Slo::default()),
            Summary::from_records(s, &b.records, Slo::default()),
        );
        assert_eq!(sa, sb, "{s}");
    }
    let a = sim(&w, Release::Open, &cfg, "random");
    cfg.seed = 8;
    let b = sim(&w, Release::Open, &cfg, "random");
    let pods = |r: &SimRun| -> Vec<Option<String>> {
        r.records.iter().map(|x| x.target_pod.clone()).collect()
    };
    assert_ne!(pods(&a), pods(&b));
}

#[test]
fn session_turns_wait_for_the_previous_turn_and_think_time() {
    let mut requests = Vec::new();
    for s in 0..4u64 {
        for t in 0..3u32 {
            requests.push(WorkRequest {
                id: requests.len() as u64,
                at_s: s as f64 * 0.1,
                session: Some(Turn {
                    session: s,
                    turn: t,
                    think_s: if t == 0 { 0.0 } else { 0.5 },
                }),
                prompt: prompt(300 + 100 * t as usize, 300, s as u32, t),
                output_tokens: 10,
            });
        }
    }
    let w = Workload { requests };
    let run = sim(&w, Release::Open, &config(2), "prefix-cache");
    assert_eq!(run.records.len(), 12);
    for pair in run.records.chunks(3) {
        for k in 1..3 {
            let (prev, next) = (&pair[k - 1], &pair[k]);
            let end = prev.sent_s + prev.e2e_ms.unwrap_or(0.0) / 1000.0;
            assert!(
                (next.scheduled_s - (end + 0.5)).abs() < 1e-9,
                "{prev:?} {next:?}"
            );
        }
        // Turns of a session share their head: prefix-cache keeps them on one engine.
        assert!(pair.iter().all(|r| r.target_pod == pair[0].target_pod));
    }
}

#[test]
fn a_closed_loop_keeps_at_most_n_in_flight_and_stops() {
    let w = shared_prefix(40, 1.0, 2);
    let run = sim(
        &w,
        Release::Closed {
            users: 3,
            stop_s: None,
        },
        &config(2),
        "least-request",
    );
    assert_eq!(run.records.len(), 40);
    let spans: Vec<(f64, f64)> = run
        .records
        .iter()
        .map(|r| (r.sent_s, r.sent_s + r.e2e_ms.unwrap_or(0.0) / 1000.0))
        .collect();
    for &(start, _) in &spans {
        let open = spans
            .iter()
            .filter(|(s, e)| *s <= start && start < *e - 1e-9)
            .count();
        assert!(open <= 3, "{open} in flight at {start}");
    }
    assert_eq!(spans.iter().filter(|(s, _)| *s == 0.0).count(), 3);
    let stopped = sim(
        &w,
        Release::Closed {
            users: 3,
            stop_s: Some(0.5),
        },
        &config(2),
        "least-request",
    );
    assert!(stopped.records.len() < 40 && stopped.records.len() >= 3);
    assert!(stopped.records.iter().all(|r| r.sent_s < 0.5));
}

#[test]
fn refused_requests_are_400s_and_do_not_stall() {
    let mut w = shared_prefix(6, 10.0, 1);
    w.requests[2].prompt = prompt(8190, 0, 0, 9);
    w.requests[4].output_tokens = 0;
    let run = sim(&w, Release::Open, &config(2), "kv-cost");
    assert_eq!(run.records.len(), 6);
    let failed: Vec<u64> = run
        .records
        .iter()
        .filter(|r| !r.ok())
        .map(|r| r.id)
        .collect();
    assert_eq!(failed, vec![2, 4]);
    assert!(
        run.records[2]
            .error
            .as_deref()
            .is_some_and(|e| e.contains("maximum context length"))
    );
    assert_eq!(run.records[2].status, 400);
    let mut fitted = w.clone();
    assert_eq!(fit_context(&mut fitted, 8192), 1);
    assert_eq!(fitted.requests[2].prompt.len(), 8192 - 30);
    assert_eq!(
        fitted.requests[2].prompt[..],
        w.requests[2].prompt[..8192 - 30]
    );
    let run = sim(&fitted, Release::Open, &config(2), "kv-cost");
    assert_eq!(run.records.iter().filter(|r| !r.ok()).count(), 1);
}

#[test]
fn the_oracle_uses_true_caches_at_least_as_well_as_random() {
    let w = shared_prefix(200, 8.0, 8);
    let cfg = config(4);
    let random = sim(&w, Release::Open, &cfg, "random");
    let oracle = sim(&w, Release::Open, &cfg, "oracle");
    assert!(
        oracle.prefix_hit_rate() > random.prefix_hit_rate(),
        "oracle {} random {}",
        oracle.prefix_hit_rate(),
        random.prefix_hit_rate()
    );
    let mean_ttft = |r: &SimRun| {
        Summary::from_records("x", &r.records, Slo::default())
            .ttft_ms
            .mean
    };
    assert!(mean_ttft(&oracle) < mean_ttft(&random));
}

#[test]
fn strategy_lists_parse_and_print() {
    let list = SimStrategy::parse_list("random, oracle,prefix-cache:2+least-request")
        .unwrap_or_else(|e| panic!("{e}"));
    let printed: Vec<String> = list.iter().map(ToString::to_string).collect();
    assert_eq!(
        printed,
        ["random", "oracle", "prefix-cache:2+least-request:1"]
    );
    assert!(SimStrategy::parse_list("random,bogus").is_err());
    assert!(SimStrategy::parse_list(" , ").is_err());
}

#[test]
fn bad_configs_are_typed_errors() {
    let w = shared_prefix(2, 1.0, 1);
    let keys = route_keys(&w, 128);
    let s = SimStrategy::Oracle;
    assert_eq!(
        run(&w, &keys, Release::Open, &config(0), &s),
        Err(SimError::NoEngines)
    );
    assert_eq!(
        run(&w, &keys[..1], Release::Open, &config(1), &s),
        Err(SimError::KeysMismatch {
            keys: 1,
            requests: 2
        })
    );
    let closed = Release::Closed {
        users: 0,
        stop_s: None,
    };
    assert_eq!(
        run(&w, &keys, closed, &config(1), &s),
        Err(SimError::NoUsers)
    );
    let mut cfg = config(1);
    cfg.scrape_interval_s = 0.0;
    assert_eq!(
        run(&w, &keys, Release::Open, &cfg, &s),
        Err(SimError::ScrapeInterval(0.0))
    );
}
