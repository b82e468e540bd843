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

/// A pool of `gib` GiB over shared memory, S3-FIFO, 256-token chunks.
fn pool(gib: u64) -> Option<KvPoolConfig> {
    Some(KvPoolConfig::new(gib << 30))
}

/// Request 0 (2,048 words, 200 tokens out) at 0 s; request 1, the same prompt and 100 more
/// words (its next turn), at 1 s while request 0 still decodes: least-request sends it to the
/// other engine, whose own cache is empty.
fn second_turn_elsewhere() -> Workload {
    let first = words(2048, 7);
    let mut second = first.clone();
    second.extend(words(100, 8));
    let req = |id: u64, at_s: f64, prompt: Vec<u32>, output_tokens: u32| WorkRequest {
        id,
        at_s,
        session: None,
        prompt,
        output_tokens,
    };
    Workload {
        requests: vec![req(0, 0.0, first, 200), req(1, 1.0, second, 8)],
    }
}

#[test]
fn a_second_turn_on_another_engine_loads_its_prefix_from_the_pool() {
    let w = second_turn_elsewhere();
    let mut cfg = config(2);
    let alone = sim(&w, &cfg, "least-request").unwrap_or_else(|e| panic!("{e}"));
    cfg.kv_pool = pool(64);
    let pooled = sim(&w, &cfg, "least-request").unwrap_or_else(|e| panic!("{e}"));
    for run in [&alone, &pooled] {
        let pods: Vec<_> = run.records.iter().map(|r| r.target_pod.clone()).collect();
        assert_ne!(pods[0], pods[1], "the second turn goes to the idle engine");
    }
    let second = |run: &SimRun| {
        let pod = run.records[1].target_pod.clone().unwrap_or_default();
        let e = run.engines.iter().find(|e| e.name == pod).cloned();
        (
            e.unwrap_or_default(),
            run.records[1].ttft_ms.unwrap_or(f64::NAN),
        )
    };
    let (e_alone, ttft_alone) = second(&alone);
    let (e_pool, ttft_pool) = second(&pooled);
    assert_eq!((e_alone.prefix_hits, e_alone.external_hits), (0, 0));
    // Eight whole 256-token chunks of the first prompt: everything but the new words.
    assert_eq!(e_pool.external_hits, 2048);
    assert_eq!(e_pool.external_loaded_bytes, 2048 * 128 * 1024);
    assert!(
        ttft_pool < ttft_alone / 2.0,
        "loading beats recomputing: {ttft_pool} ms vs {ttft_alone} ms"
    );
    let p = pooled.pool.clone().unwrap_or_default();
    assert_eq!((p.lookups, p.hit_chunks), (2, 8), "{p:?}");
    assert_eq!(p.chunks, 8, "request 1's tail chunk is partial");
    assert!(alone.pool.is_none());
    assert!(pooled.external_hit_rate() > 0.4);
}

#[test]
fn a_pool_of_zero_bytes_is_prefix_caching_alone() {
    let w = second_turn_elsewhere();
    let mut cfg = config(2);
    let alone = sim(&w, &cfg, "least-request").unwrap_or_else(|e| panic!("{e}"));
    cfg.kv_pool = pool(0);
    let empty = sim(&w, &cfg, "least-request").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(alone.records, empty.records);
    assert_eq!(alone.engines, empty.engines);
    let p = empty.pool.unwrap_or_default();
    assert_eq!((p.capacity_bytes, p.lookups, p.inserts), (0, 0, 0));
    // Any capacity at all changes the second turn.
    cfg.kv_pool = pool(1);
    let some = sim(&w, &cfg, "least-request").unwrap_or_else(|e| panic!("{e}"));
    assert_ne!(alone.records, some.records);
}

/// Sessions of a 1,500-word context growing by 64 words a turn, started 3 a second.
fn conversations() -> Workload {
    let spec = crate::workload::MultiTurn {
        sessions: 12,
        turns: 6,
        system: 256,
        systems: 1,
        context: 1500,
        user: 32,
        output: 32,
        think: 0.3,
    };
    crate::workload::schedule(
        spec.generate(3),
        &crate::workload::Arrival::Constant { rate: 3.0 },
        3,
        None,
        None,
    )
}

#[test]
fn a_restarted_engine_refills_from_the_pool() {
    let w = conversations();
    let mut cfg = config(2);
    cfg.schedule = Some(ScaleSchedule {
        steps: vec![(2.0, 1), (2.0, 2)],
        startup_s: 0.5,
    });
    let alone = sim(&w, &cfg, "least-request").unwrap_or_else(|e| panic!("{e}"));
    cfg.kv_pool = pool(64);
    let pooled = sim(&w, &cfg, "least-request").unwrap_or_else(|e| panic!("{e}"));
    let fresh = |run: &SimRun| run.engines.get(2).cloned().unwrap_or_default();
    let (a, p) = (fresh(&alone), fresh(&pooled));
    assert!(a.requests > 0 && p.requests > 0, "{a:?} {p:?}");
    assert_eq!(a.external_hits, 0);
    assert!(
        p.external_hits > 0,
        "the fresh engine loads what the old one stored: {p:?}"
    );
    let reuse =
        |e: &EngineReport| (e.prefix_hits + e.external_hits) as f64 / e.prefix_queries as f64;
    assert!(
        reuse(&p) > reuse(&a) + 0.2,
        "pool {:.2} vs alone {:.2}",
        reuse(&p),
        reuse(&a)
    );
    let mean_ttft = |run: &SimRun, pod: &str| {
        let t: Vec<f64> = run
            .records
            .iter()
            .filter(|r| r.target_pod.as_deref() == Some(pod))
            .filter_map(|r| r.ttft_ms)
            .collect();
        t.iter().sum::<f64>() / t.len().max(1) as f64
    };
    assert!(mean_ttft(&pooled, "engine-2") < mean_ttft(&alone, "engine-2"));
}
