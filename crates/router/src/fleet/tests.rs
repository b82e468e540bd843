use std::collections::HashMap;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::*;
use crate::pod::{EngineMetrics, Pod};
use crate::prefix::{PrefixConfig, PrefixIndex};

fn cfg() -> EjectionConfig {
    EjectionConfig::default()
}

#[test]
fn rates_and_ewmas() {
    let mut c = PodCore::default();
    c.response(0.5, 100, 10, Some(1.0), Some(0.1));
    c.response(5.0, 100, 10, Some(2.0), None);
    let cc = CoreConfig::default();
    let p = c.snapshot("a", "a", 5.5, &cc);
    assert_eq!((p.observed.prompt_tps, p.observed.output_tps), (20.0, 2.0));
    assert_eq!(p.observed.ttft_s, Some(1.2));
    assert_eq!(p.observed.tpot_s, Some(0.1));
    let p = c.snapshot("a", "a", 10.5, &cc);
    assert_eq!(p.observed.prompt_tps, 10.0, "second 0 left the window");
    assert_eq!(c.snapshot("a", "a", 30.0, &cc).observed.prompt_tps, 0.0);
}

#[test]
fn in_flight_counts_begin_and_end() {
    let mut c = PodCore::default();
    c.begin();
    c.begin();
    c.end();
    assert_eq!(c.in_flight(), 1);
    c.end();
    c.end();
    assert_eq!(c.in_flight(), 0, "never below zero");
}

fn gauges(waiting: f64) -> Scrape {
    Scrape {
        metrics: EngineMetrics {
            running: Some(2.0),
            waiting: Some(waiting),
            kv_usage: Some(0.5),
        },
        ..Scrape::default()
    }
}

#[test]
fn gauges_age_decay_then_drop() {
    let cc = CoreConfig::default();
    let mut c = PodCore::default();
    assert_eq!(
        c.snapshot("a", "a", 0.0, &cc).metrics,
        EngineMetrics::default()
    );
    c.scraped(10.0, gauges(8.0));
    // (age, waiting seen, kv seen)
    let table = [
        (10.0, Some(8.0), Some(0.5)),
        (12.0, Some(8.0), Some(0.5)),
        (16.0, Some(4.0), Some(0.5)),
        (20.0, None, None),
        (40.0, None, None),
    ];
    for (now, waiting, kv) in table {
        let m = c.snapshot("a", "a", now, &cc).metrics;
        assert_eq!((m.waiting, m.kv_usage), (waiting, kv), "at {now}");
    }
    assert_eq!(c.metrics_age(16.0), Some(6.0));
    // A failed scrape is no event: a good one later refreshes the age.
    c.scraped(30.0, gauges(1.0));
    assert_eq!(c.snapshot("a", "a", 30.5, &cc).metrics.waiting, Some(1.0));
}

#[test]
fn restarts_are_detected_by_start_time_or_counters() {
    let mut c = PodCore::default();
    let s = |start: Option<f64>, total: Option<f64>| Scrape {
        start_time: start,
        tokens_total: total,
        ..Scrape::default()
    };
    assert_eq!(c.scraped(1.0, s(Some(100.0), Some(50.0))), None);
    assert_eq!(c.scraped(2.0, s(Some(100.0), Some(80.0))), None);
    assert_eq!(
        c.scraped(3.0, s(Some(100.0), Some(10.0))),
        Some(Transition::Restarted),
        "counters went back"
    );
    assert_eq!(
        c.scraped(4.0, s(Some(200.0), Some(20.0))),
        Some(Transition::Restarted),
        "new start time"
    );
    assert_eq!(
        c.scraped(5.0, s(None, None)),
        None,
        "missing series say nothing"
    );
    assert_eq!(c.scraped(6.0, s(None, Some(30.0))), None);
}

/// One step of a health table: an event and the state after it.
enum Ev {
    Probe(bool),
    Fail(bool),
    Ok,
}

#[test]
fn health_table() {
    use HealthState::*;
    let c = cfg();
    // (time, event, expected state after)
    let table: &[(f64, Ev, HealthState)] = &[
        (0.0, Ev::Probe(false), Starting),
        (0.5, Ev::Fail(true), Starting),
        (1.0, Ev::Probe(true), Up),
        (2.0, Ev::Fail(true), Up),
        (2.0, Ev::Fail(true), Up),
        (2.0, Ev::Ok, Up),
        (3.0, Ev::Fail(true), Up),
        (3.0, Ev::Fail(true), Up),
        (3.0, Ev::Fail(true), Up),
        (3.0, Ev::Fail(true), Up),
        (3.0, Ev::Fail(false), Up),
        (3.0, Ev::Fail(true), Ejected { until: 33.0 }),
        (10.0, Ev::Probe(true), Ejected { until: 33.0 }),
        (33.0, Ev::Probe(true), Up),
        (34.0, Ev::Fail(true), Up),
        (34.0, Ev::Fail(true), Up),
        (34.0, Ev::Fail(true), Up),
        (34.0, Ev::Fail(true), Up),
        (34.0, Ev::Fail(true), Ejected { until: 94.0 }),
        (94.0, Ev::Probe(false), Ejected { until: 94.0 }),
        (95.0, Ev::Probe(true), Up),
        (96.0, Ev::Probe(false), Up),
        (97.0, Ev::Probe(false), Down),
        (98.0, Ev::Probe(false), Down),
        (99.0, Ev::Probe(true), Up),
    ];
    let mut h = Health::default();
    for (i, (now, ev, want)) in table.iter().enumerate() {
        match ev {
            Ev::Probe(ok) => {
                h.probe(*ok, *now, &c);
            }
            Ev::Fail(allowed) => {
                h.failure(FailureKind::Status5xx, *now, *allowed, &c);
            }
            Ev::Ok => h.success(),
        }
        assert_eq!(h.state(), *want, "row {i}");
    }
    assert_eq!(h.ejections(), 2);
    // Calm time earns the multiplier back, one base period at a time.
    h.probe(true, 130.0, &c);
    assert_eq!(h.ejections(), 1);
    h.probe(true, 140.0, &c);
    assert_eq!(h.ejections(), 1);
    h.probe(true, 160.0, &c);
    assert_eq!(h.ejections(), 0);
}

#[test]
fn ejection_time_is_capped() {
    let c = EjectionConfig {
        consecutive_failures: 1,
        ..cfg()
    };
    let mut h = Health::default();
    h.probe(true, 0.0, &c);
    let mut now = 0.0;
    for _ in 0..20 {
        assert!(h.failure(FailureKind::Connect, now, true, &c));
        let HealthState::Ejected { until } = h.state() else {
            panic!("ejected")
        };
        assert!(until - now <= c.max_ejection_s);
        now = until;
        h.probe(true, now, &c);
    }
}

#[test]
fn never_the_whole_fleet() {
    let c = cfg();
    // (ejected, in rotation, pods) → may eject one more
    let table = [
        (0, 1, 1, false),
        (0, 2, 2, true),
        (1, 1, 2, false),
        (0, 1, 2, false),
        (0, 4, 4, true),
        (1, 3, 4, true),
        (2, 2, 4, false),
        (0, 10, 10, true),
        (5, 5, 10, false),
    ];
    for (ejected, rot, pods, want) in table {
        assert_eq!(
            may_eject(ejected, rot, pods, &c),
            want,
            "{ejected}/{rot}/{pods}"
        );
    }
}

fn fleet(n: usize) -> Fleet {
    let pods: Vec<(String, String)> = (0..n).map(|i| (format!("p{i}"), format!("p{i}"))).collect();
    Fleet::new(&pods, PrefixConfig::default(), CoreConfig::default())
}

#[test]
fn a_fleet_routes_only_to_pods_in_rotation_and_purges_claims_of_leavers() {
    let mut f = fleet(2);
    let s: crate::Weighted = "prefix-cache".parse().unwrap_or_else(|e| panic!("{e}"));
    let mut rng = SmallRng::seed_from_u64(1);
    let req = crate::RouteRequest {
        blocks: &[1, 2, 3],
        prompt_units: 384,
        ..crate::RouteRequest::default()
    };
    assert!(
        f.decide(&s, &req, 0.0, &mut rng).is_err(),
        "nobody probed yet"
    );
    f.probe(1, true, 0.0);
    assert_eq!(f.decide(&s, &req, 0.0, &mut rng).map(|d| d.pod), Ok(1));
    f.probe(0, true, 0.0);
    f.accepted(1, &[1, 2, 3], 0.0);
    let p: Vec<Pod> = (0..2).map(|i| f.snapshot(i, 1.0)).collect();
    assert_eq!(f.index().matched(&[1, 2, 3], &p, 1.0), vec![0, 3]);
    for _ in 0..5 {
        f.failure(1, FailureKind::Status5xx, 2.0);
    }
    assert!(f.core(1).health().is_ejected());
    assert_eq!(f.index().matched(&[1, 2, 3], &p, 2.0), vec![0, 0], "purged");
    assert!(f.index().is_empty());
    for _ in 0..5 {
        f.failure(0, FailureKind::Timeout, 2.0);
    }
    assert!(f.core(0).in_rotation(), "the last pod in rotation stays");
}

#[test]
fn added_pods_join_on_their_first_probe_and_retired_ones_take_no_new_requests() {
    let mut f = fleet(1);
    let s: crate::Weighted = "prefix-cache".parse().unwrap_or_else(|e| panic!("{e}"));
    let mut rng = SmallRng::seed_from_u64(1);
    let req = crate::RouteRequest {
        blocks: &[1, 2, 3],
        prompt_units: 384,
        ..crate::RouteRequest::default()
    };
    f.probe(0, true, 0.0);
    assert_eq!(f.add("p1", "p1"), 1);
    assert_eq!(f.len(), 2);
    assert!(!f.routable(1), "cold until probed");
    f.accepted(1, &[1, 2, 3], 0.0);
    for _ in 0..4 {
        assert_eq!(f.decide(&s, &req, 0.0, &mut rng).map(|d| d.pod), Ok(0));
    }
    f.probe(1, true, 1.0);
    assert_eq!(
        f.decide(&s, &req, 1.0, &mut rng).map(|d| d.pod),
        Ok(1),
        "prefix hit"
    );
    f.begin(1);
    f.retire(1);
    assert!(f.index().is_empty(), "a retired pod's claims are purged");
    assert!(!f.routable(1) && f.core(1).in_rotation());
    for _ in 0..4 {
        assert_eq!(f.decide(&s, &req, 2.0, &mut rng).map(|d| d.pod), Ok(0));
    }
    assert_eq!(f.core(1).in_flight(), 1, "its request still ends as usual");
    f.end(1);
    assert_eq!(f.core(1).in_flight(), 0);
    f.retire(0);
    assert!(
        f.decide(&s, &req, 3.0, &mut rng).is_err(),
        "nothing routable"
    );
}

/// The prefix index against a naive model: a list of claims with a touch tick per block.
#[derive(Default)]
struct Naive {
    blocks: HashMap<u64, (u64, Vec<(String, f64)>)>,
    tick: u64,
}

impl Naive {
    fn insert(&mut self, blocks: &[u64], addr: &str, now: f64, cap: usize, ttl: f64) {
        for &h in blocks {
            self.tick += 1;
            let e = self.blocks.entry(h).or_default();
            e.0 = self.tick;
            e.1.retain(|(a, t)| a != addr && now - t <= ttl);
            e.1.push((addr.to_string(), now));
        }
        while self.blocks.len() > cap {
            let oldest = self.blocks.iter().min_by_key(|(_, e)| e.0).map(|(h, _)| *h);
            if let Some(h) = oldest {
                self.blocks.remove(&h);
            }
        }
    }

    fn purge(&mut self, addr: &str) {
        for e in self.blocks.values_mut() {
            e.1.retain(|(a, _)| a != addr);
        }
        self.blocks.retain(|_, e| !e.1.is_empty());
    }

    fn matched(&self, blocks: &[u64], pods: &[&str], now: f64, ttl: f64) -> Vec<usize> {
        pods.iter()
            .map(|p| {
                blocks
                    .iter()
                    .take_while(|h| {
                        self.blocks
                            .get(h)
                            .is_some_and(|e| e.1.iter().any(|(a, t)| a == p && now - t <= ttl))
                    })
                    .count()
            })
            .collect()
    }
}

#[test]
fn prefix_index_matches_a_naive_model() {
    let names = ["a", "b", "c"];
    let pods: Vec<Pod> = names
        .iter()
        .map(|a| Pod {
            name: a.to_string(),
            address: a.to_string(),
            ..Pod::default()
        })
        .collect();
    for seed in 0..20u64 {
        let cfg = PrefixConfig {
            capacity_blocks: 24,
            ttl_s: 30.0,
            ..PrefixConfig::default()
        };
        let mut idx = PrefixIndex::new(cfg.clone());
        let mut naive = Naive::default();
        let mut rng = SmallRng::seed_from_u64(seed);
        let mut now = 0.0;
        for step in 0..400 {
            now += rng.random_range(0.0..2.0);
            // Prompts share prefixes: block i of conversation c is c * 100 + i.
            let conv = rng.random_range(0..6u64);
            let len = rng.random_range(0..8u64);
            let blocks: Vec<u64> = (0..len).map(|i| conv * 100 + i).collect();
            let pod = names[rng.random_range(0..names.len())];
            match rng.random_range(0..10) {
                0 => {
                    idx.purge(pod);
                    naive.purge(pod);
                }
                1..=5 => {
                    idx.insert(&blocks, pod, now);
                    naive.insert(&blocks, pod, now, cfg.capacity_blocks, cfg.ttl_s);
                }
                _ => {}
            }
            assert_eq!(idx.len(), naive.blocks.len(), "seed {seed} step {step}");
            assert_eq!(
                idx.matched(&blocks, &pods, now),
                naive.matched(&blocks, &names, now, cfg.ttl_s),
                "seed {seed} step {step}"
            );
        }
    }
}

fn lora(running: &[&str]) -> Scrape {
    Scrape {
        lora: Some(crate::LoraState {
            max_lora: 1,
            running: running.iter().map(|s| s.to_string()).collect(),
            waiting: Vec::new(),
        }),
        ..gauges(0.0)
    }
}

#[test]
fn adapter_requests_go_only_to_holders_not_draining_it() {
    let mut f = fleet(3);
    let s: crate::Weighted = "lora-affinity".parse().unwrap_or_else(|e| panic!("{e}"));
    let mut rng = SmallRng::seed_from_u64(3);
    let sql = crate::RouteRequest {
        adapter: Some("sql"),
        ..crate::RouteRequest::default()
    };
    for i in 0..3 {
        f.probe(i, true, 0.0);
    }
    assert!(
        f.decide(&s, &sql, 0.0, &mut rng).is_err(),
        "nobody holds it"
    );
    f.set_adapters(1, vec!["sql".into()]);
    f.set_adapters(2, vec!["sql".into(), "chat".into()]);
    // Pod 1's batch is busy with another adapter (one slot): pod 2 runs sql.
    f.scraped(1, 0.0, lora(&["chat"]));
    f.scraped(2, 0.0, lora(&["sql"]));
    for _ in 0..5 {
        assert_eq!(f.decide(&s, &sql, 0.1, &mut rng).map(|d| d.pod), Ok(2));
    }
    // Base-model requests still see every pod.
    let base = crate::RouteRequest::default();
    let mut seen = [false; 3];
    for _ in 0..40 {
        if let Ok(d) = f.decide(
            &"random".parse().unwrap_or_else(|e| panic!("{e}")),
            &base,
            0.1,
            &mut rng,
        ) {
            seen[d.pod] = true;
        }
    }
    assert_eq!(seen, [true; 3]);
    // Draining pod 2 sends sql to pod 1, whatever its affinity.
    f.set_draining(2, "sql", true);
    assert!(f.core(2).is_draining("sql"));
    for _ in 0..5 {
        assert_eq!(f.decide(&s, &sql, 0.2, &mut rng).map(|d| d.pod), Ok(1));
    }
    // A drain mark needs the adapter held, and ends when it is unloaded.
    f.set_draining(0, "sql", true);
    assert!(!f.core(0).is_draining("sql"));
    f.set_adapters(2, vec!["chat".into()]);
    f.set_adapters(2, vec!["sql".into(), "chat".into()]);
    assert!(!f.core(2).is_draining("sql"), "reloaded: serving");
    f.set_draining(1, "sql", true);
    f.set_draining(1, "sql", false);
    assert!(f.core(1).serves(Some("sql")));
}

#[test]
fn in_flight_is_counted_per_adapter_and_lora_state_ages_out() {
    let mut c = PodCore::default();
    c.begin_for(Some("sql"));
    c.begin_for(Some("sql"));
    c.begin_for(None);
    c.end_for(Some("sql"));
    assert_eq!((c.in_flight(), c.adapter_in_flight("sql")), (2, 1));
    c.end_for(Some("sql"));
    c.end_for(Some("sql"));
    c.end_for(Some("other"));
    assert_eq!((c.in_flight(), c.adapter_in_flight("sql")), (0, 0));
    let cc = CoreConfig::default();
    c.scraped(10.0, lora(&["sql"]));
    assert!(c.snapshot("a", "a", 15.0, &cc).lora.is_some(), "aging");
    assert_eq!(c.snapshot("a", "a", 20.0, &cc).lora, None, "stale");
    c.scraped(21.0, gauges(0.0));
    assert_eq!(c.snapshot("a", "a", 21.0, &cc).lora, None, "LoRA off");
}

#[test]
fn peers_loads_and_prefix_bookings_route_as_one_router_until_they_expire() {
    let mut f = fleet(3);
    for i in 0..3 {
        f.probe(i, true, 0.0);
    }
    let s: crate::Weighted = "least-request".parse().unwrap_or_else(|e| panic!("{e}"));
    let mut rng = SmallRng::seed_from_u64(7);
    let req = crate::RouteRequest::default();
    // Peers have 4 on p0 and 2 on p1; this router has 1 on p2.
    assert_eq!(
        f.set_remote(
            0,
            "g1",
            RemoteLoad {
                in_flight: 4,
                ..RemoteLoad::default()
            },
            0.0
        ),
        Ok(())
    );
    assert_eq!(
        f.set_remote(
            1,
            "g2",
            RemoteLoad {
                in_flight: 2,
                ..RemoteLoad::default()
            },
            0.0
        ),
        Ok(())
    );
    f.begin(2);
    assert_eq!(f.snapshot(0, 0.5).in_flight, 4);
    assert_eq!(f.core(2).own_load().in_flight, 1);
    assert_eq!(f.decide(&s, &req, 0.5, &mut rng).map(|d| d.pod), Ok(2));
    f.begin(2);
    f.begin(2);
    // p2 now 3 (own), p1 2 (peer), p0 4 (peer).
    assert_eq!(f.decide(&s, &req, 0.5, &mut rng).map(|d| d.pod), Ok(1));
    // A newer report is absolute: g1 has drained p0.
    assert_eq!(f.set_remote(0, "g1", RemoteLoad::default(), 0.8), Ok(()));
    assert_eq!(f.decide(&s, &req, 0.9, &mut rng).map(|d| d.pod), Ok(0));
    // g2 goes silent: past the TTL its load on p1 no longer counts.
    assert_eq!(f.core(1).remote_peers(0.9, &CoreConfig::default()), 1);
    assert_eq!(f.snapshot(1, 1.5).in_flight, 0);
    assert_eq!(f.core(1).remote_peers(1.5, &CoreConfig::default()), 0);

    // A peer's booked prefix counts as this router's own.
    let pc: crate::Weighted = "prefix-cache".parse().unwrap_or_else(|e| panic!("{e}"));
    let blocks = [11, 12, 13];
    f.peer_accepted(1, &blocks, 2.0);
    let req = crate::RouteRequest {
        blocks: &blocks,
        prompt_units: 384,
        ..crate::RouteRequest::default()
    };
    assert_eq!(f.decide(&pc, &req, 2.0, &mut rng).map(|d| d.pod), Ok(1));
}

#[test]
fn bookings_move_from_prefill_to_decoding_and_are_released_once() {
    let mut c = PodCore::default();
    let snap = |c: &PodCore| {
        let p = c.snapshot("p", "a", 0.0, &CoreConfig::default());
        (p.pending_prefill, p.decoding, p.decode_context)
    };
    let mut a = c.book(1000.0, 1200.0, 0.5);
    let mut b = c.book(300.0, 400.0, 0.1);
    // Bad estimates book nothing rather than a NaN that would poison the sums.
    let mut bad = c.book(f64::NAN, -5.0, f64::INFINITY);
    assert_eq!(snap(&c), (1300.0, 0, 0.0));
    c.first_token(&mut a, Some(1.0));
    assert_eq!(snap(&c), (300.0, 1, 1200.0));
    // A second first token, or a release after a release, changes nothing.
    c.first_token(&mut a, Some(9.0));
    c.release(&mut bad);
    c.release(&mut bad);
    assert_eq!(snap(&c), (300.0, 1, 1200.0));
    // A request that never produced a token gives back its prefill.
    c.release(&mut b);
    assert_eq!(snap(&c), (0.0, 1, 1200.0));
    c.release(&mut a);
    c.release(&mut a);
    assert_eq!(snap(&c), (0.0, 0, 0.0));
    // The correction: measured 1.0 s over predicted 0.5 s.
    let p = c.snapshot("p", "a", 0.0, &CoreConfig::default());
    assert_eq!(p.observed.ttft_ratio, Some(2.0));
    // A ratio of means: a near-zero prediction moves it by its share of the means only.
    let mut d = c.book(10.0, 10.0, 1e-6);
    c.first_token(&mut d, Some(1.0));
    let r = c
        .snapshot("p", "a", 0.0, &CoreConfig::default())
        .observed
        .ttft_ratio
        .unwrap_or(0.0);
    let m = 1.0;
    let p = 0.5 + EWMA_ALPHA * (1e-6 - 0.5);
    assert!((r - m / p).abs() < 1e-9, "{r}");
}

#[test]
fn float_drift_never_leaves_a_phantom_queue() {
    let mut c = PodCore::default();
    let mut rng = SmallRng::seed_from_u64(3);
    let mut open: Vec<Booking> = Vec::new();
    for _ in 0..5000 {
        if open.is_empty() || rng.random_range(0..3) > 0 {
            open.push(c.book(rng.random_range(0.0..1e4) / 7.0, 100.0, 0.0));
        } else {
            let i = rng.random_range(0..open.len());
            let mut b = open.swap_remove(i);
            if rng.random_range(0..2) == 0 {
                c.first_token(&mut b, None);
            }
            c.release(&mut b);
        }
        let want: f64 = open.iter().map(|b| b.prefill).sum();
        assert!((c.pending_prefill() - want).abs() < 1e-6 * want.max(1.0));
    }
    for mut b in open {
        c.release(&mut b);
    }
    assert_eq!((c.pending_prefill(), c.decoding()), (0.0, 0));
}
