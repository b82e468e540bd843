//! Scenario tests of the replica schedule (`--scale-at`) and the fleet's KV pool: restarted
//! engines start cold, and with a pool they refill from it. Nothing here reads a clock.

use brix_sim::Catalog;

use super::*;
use crate::workload::WorkRequest;

fn config(engines: usize) -> SimConfig {
    let c = Catalog::builtin();
    match (c.model("llama-3-8b"), c.gpu("A100-80GB")) {
        (Ok(m), Ok(g)) => SimConfig::new(engines, m.clone(), g.clone()),
        _ => panic!("missing profile"),
    }
}

/// `n` words unique to `salt` (word ids below 2000).
fn words(n: usize, salt: u32) -> Vec<u32> {
    (0..n as u32)
        .map(|i| {
            i.wrapping_mul(2_654_435_761)
                .wrapping_add(salt.wrapping_mul(40_503))
                % 2000
        })
        .collect()
}

/// `n` independent requests of 600 words at `rate`/s.
fn singles(n: usize, rate: f64) -> Workload {
    let requests = (0..n)
        .map(|i| WorkRequest {
            id: i as u64,
            at_s: i as f64 / rate,
            session: None,
            prompt: words(600, i as u32),
            output_tokens: 16,
        })
        .collect();
    Workload { requests }
}

fn sim(w: &Workload, cfg: &SimConfig, s: &str) -> Result<SimRun, SimError> {
    let keys = route_keys(w, 128);
    let strategy: SimStrategy = s.parse().unwrap_or_else(|e| panic!("{s}: {e}"));
    run(w, &keys, Release::Open, cfg, &strategy)
}

fn sent_to(run: &SimRun, engine: &str) -> Vec<f64> {
    run.records
        .iter()
        .filter(|r| r.target_pod.as_deref() == Some(engine))
        .map(|r| r.sent_s)
        .collect()
}

#[test]
fn a_scheduled_restart_drains_one_engine_and_starts_a_fresh_one() {
    let w = singles(120, 30.0);
    let mut cfg = config(2);
    cfg.schedule = Some(ScaleSchedule {
        steps: vec![(1.0, 1), (1.0, 2)],
        startup_s: 0.5,
    });
    let run = sim(&w, &cfg, "least-request").unwrap_or_else(|e| panic!("{e}"));
    assert!(run.records.iter().all(|r| r.ok()));
    assert_eq!(run.engines.len(), 3, "one engine asked for");
    assert_eq!(run.fleet.scale_events, 2);
    let fresh = sent_to(&run, "engine-2");
    assert!(!fresh.is_empty(), "the new engine serves");
    assert!(fresh.iter().all(|&t| t >= 1.5), "not before it is ready");
    let old: Vec<Vec<f64>> = ["engine-0", "engine-1"]
        .iter()
        .map(|e| sent_to(&run, e))
        .collect();
    let stopped = old.iter().filter(|s| s.iter().all(|&t| t < 1.0)).count();
    assert_eq!(stopped, 1, "exactly one old engine gets nothing after 1 s");
    // Between 1 s and 1.5 s one engine serves alone.
    let alone = run
        .records
        .iter()
        .filter(|r| (1.0..1.5).contains(&r.sent_s))
        .filter_map(|r| r.target_pod.clone())
        .collect::<std::collections::BTreeSet<_>>();
    assert_eq!(alone.len(), 1, "{alone:?}");
}

#[test]
fn a_schedule_is_refused_out_of_order_or_with_extra_gateways() {
    assert_eq!(
        "600:2,600:4".parse::<ScaleSchedule>().map(|s| s.steps),
        Ok(vec![(600.0, 2), (600.0, 4)])
    );
    for bad in ["", "600", "600:0", "-1:2", "900:2,600:4", "x:2"] {
        assert!(bad.parse::<ScaleSchedule>().is_err(), "{bad}");
    }
    let w = singles(4, 10.0);
    let mut cfg = config(2);
    cfg.schedule = Some(ScaleSchedule {
        steps: vec![(2.0, 1), (1.0, 2)],
        startup_s: 0.0,
    });
    assert_eq!(sim(&w, &cfg, "random").err(), Some(SimError::Schedule));
    cfg.schedule = Some(ScaleSchedule {
        steps: vec![(1.0, 1)],
        startup_s: 0.0,
    });
    cfg.replicas.gateways = 2;
    assert_eq!(sim(&w, &cfg, "random").err(), Some(SimError::Schedule));
}
