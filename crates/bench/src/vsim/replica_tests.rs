//! N gateway replicas in virtual time: with the sync they route as one gateway; without it
//! (a sync slower than the run) they lose cache hits; one replica is exactly one gateway.

use brix_sim::Catalog;

use super::*;
use crate::workload::{WorkRequest, Workload};

fn config(engines: usize, gateways: usize, sync_s: f64) -> SimConfig {
    let c = Catalog::builtin();
    let mut cfg = match (c.model("llama-3-8b"), c.gpu("A100-80GB")) {
        (Ok(m), Ok(g)) => SimConfig::new(engines, m.clone(), g.clone()),
        _ => panic!("missing profile"),
    };
    cfg.replicas = ReplicaConfig {
        gateways,
        sync_s,
        min_sync_s: sync_s.min(0.005),
        assign: Assign::RoundRobin,
    };
    cfg
}

/// `n` requests at `rate`/s, each with one of `groups` 800-word shared prefixes.
fn shared_prefix(n: usize, rate: f64, groups: u32) -> Workload {
    let requests = (0..n)
        .map(|i| {
            let (group, salt) = (i as u32 % groups, i as u32);
            let prompt = (0..1000u32)
                .map(|x| {
                    let s = if x < 800 { group } else { salt + 1000 };
                    x.wrapping_mul(2_654_435_761)
                        .wrapping_add(s.wrapping_mul(40_503))
                        % 2000
                })
                .collect();
            WorkRequest {
                id: i as u64,
                at_s: i as f64 / rate,
                session: None,
                prompt,
                output_tokens: 20 + (i as u32 % 7) * 5,
            }
        })
        .collect();
    Workload { requests }
}

fn sim(w: &Workload, cfg: &SimConfig, s: &str) -> SimRun {
    let keys = route_keys(w, 128);
    let strategy: SimStrategy = s.parse().unwrap_or_else(|e| panic!("{s}: {e}"));
    run(w, &keys, Release::Open, cfg, &strategy).unwrap_or_else(|e| panic!("{s}: {e}"))
}

#[test]
fn synced_replicas_hit_the_cache_as_one_gateway_and_unsynced_ones_do_not() {
    let w = shared_prefix(240, 20.0, 8);
    for s in ["prefix-cache", "kv-cost"] {
        let one = sim(&w, &config(4, 1, 0.1), s).prefix_hit_rate();
        let synced = sim(&w, &config(4, 3, 0.1), s).prefix_hit_rate();
        let mut never = config(4, 3, 1e9);
        never.replicas.min_sync_s = 1e9;
        let blind = sim(&w, &never, s).prefix_hit_rate();
        assert!(synced >= one * 0.95, "{s}: 3 synced {synced} vs 1 {one}");
        assert!(
            blind < synced,
            "{s}: 3 without sync {blind} vs synced {synced}"
        );
    }
}

#[test]
fn one_replica_is_one_gateway_and_replicas_are_deterministic() {
    let w = shared_prefix(80, 40.0, 4);
    let plain = {
        let mut c = config(3, 1, 0.1);
        c.replicas = ReplicaConfig::default();
        c
    };
    assert_eq!(
        sim(&w, &plain, "kv-cost"),
        sim(&w, &config(3, 1, 0.5), "kv-cost")
    );
    let three = config(3, 3, 0.1);
    let a = sim(&w, &three, "prefix-cache");
    assert_eq!(a, sim(&w, &three, "prefix-cache"));
    assert_eq!(a.records.len(), 80);
    let mut hashed = three.clone();
    hashed.replicas.assign = Assign::Hash;
    assert_eq!(sim(&w, &hashed, "least-request").records.len(), 80);
}

#[test]
fn replicas_need_a_positive_sync_and_a_static_base_model_fleet() {
    let w = shared_prefix(4, 1.0, 1);
    let keys = route_keys(&w, 128);
    let strategy = SimStrategy::Oracle;
    let bad = config(2, 3, 0.0);
    assert_eq!(
        run(&w, &keys, Release::Open, &bad, &strategy).err(),
        Some(SimError::Replicas)
    );
}
