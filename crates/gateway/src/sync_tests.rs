//! Table tests of the replica sync's pure parts: config checks, the bounded outbox, the wire
//! format and how a peer's batch lands in the pool.

use std::time::Instant;

use brix_router::fleet::CoreConfig;
use brix_router::{Pod, PrefixConfig};

use super::*;
use crate::discovery::targets;

fn pool(models: &[(&str, &[&str])]) -> Pool {
    let pool = Pool::new(
        PrefixConfig::default(),
        CoreConfig::default(),
        Instant::now(),
    );
    pool.apply(&targets(models));
    for p in pool.all() {
        p.probe_health(true);
    }
    pool
}

#[test]
fn config_problems() {
    let ok = SyncConfig::default();
    assert_eq!(ok.problem(), None);
    let cases: &[(SyncConfig, &str)] = &[
        (
            SyncConfig {
                interval_ms: 0,
                ..ok.clone()
            },
            "interval_ms",
        ),
        (
            SyncConfig {
                min_interval_ms: 0,
                ..ok.clone()
            },
            "min_interval_ms",
        ),
        (
            SyncConfig {
                min_interval_ms: 101,
                ..ok.clone()
            },
            "min_interval_ms",
        ),
        (
            SyncConfig {
                ttl_s: 0.05,
                ..ok.clone()
            },
            "ttl_s",
        ),
        (
            SyncConfig {
                ttl_s: f64::NAN,
                ..ok.clone()
            },
            "ttl_s",
        ),
        (
            SyncConfig {
                gateway_id: Some(String::new()),
                ..ok.clone()
            },
            "gateway_id",
        ),
        (
            SyncConfig {
                gateway_id: Some("x".repeat(65)),
                ..ok.clone()
            },
            "gateway_id",
        ),
        (
            SyncConfig {
                max_blocks: 0,
                ..ok.clone()
            },
            "max_blocks",
        ),
        (
            SyncConfig {
                timeout_ms: 0,
                ..ok.clone()
            },
            "timeout_ms",
        ),
    ];
    for (cfg, needle) in cases {
        let p = cfg.problem().unwrap_or_default();
        assert!(p.contains(needle), "{cfg:?}: {p}");
    }
    let a = SyncConfig::default().id();
    let b = SyncConfig::default().id();
    assert_ne!(a, b, "random ids differ");
    let named = SyncConfig {
        gateway_id: Some("gw-a".into()),
        ..ok
    };
    assert_eq!(named.id(), "gw-a");
}

#[test]
fn outbox_is_bounded_per_batch_and_counts_what_it_drops() {
    let mut o = Outbox::new(5);
    o.push("m", "a:1", &[1, 2, 3]);
    o.push("m", "b:1", &[4, 5, 6]);
    o.push("m", "b:1", &[7, 8]);
    assert_eq!(o.booked.len(), 2);
    assert_eq!(o.dropped, 3);
    let taken = o.take();
    assert_eq!(taken.booked.len(), 2);
    assert!(o.booked.is_empty() && o.dropped == 0);
    o.push("m", "a:1", &[1, 2, 3, 4, 5]);
    assert_eq!(o.booked.len(), 1, "the bound applies again after take");
}

#[test]
fn decode_refuses_what_is_not_a_bounded_batch() {
    let b = Batch {
        gw: "g".into(),
        seq: 3,
        ts: 1.5,
        pods: vec![PodLoad {
            address: "a:1".into(),
            in_flight: 2,
            pending_prefill: 300.0,
            decoding: 1,
            decode_context: 40.0,
        }],
        booked: vec![Booked {
            address: "a:1".into(),
            blocks: vec![u64::MAX, 1],
        }],
    };
    let json = serde_json::to_vec(&b).unwrap_or_default();
    assert_eq!(decode(&json), Ok(b));
    // Unknown fields (a newer replica's extra load fields) are ignored.
    let newer = br#"{"gw":"g","seq":1,"ts":0,"pods":[{"a":"a:1","n":1,"z":12.5}],"x":1}"#;
    assert_eq!(decode(newer).map(|b| b.pods[0].in_flight), Ok(1));
    assert_eq!(decode(b"not json"), Err(Rejected::Malformed));
    assert_eq!(
        decode(br#"{"gw":"","seq":1,"ts":0,"pods":[]}"#),
        Err(Rejected::BadId)
    );
    let long = format!(r#"{{"gw":"{}","seq":1,"ts":0,"pods":[]}}"#, "g".repeat(65));
    assert_eq!(decode(long.as_bytes()), Err(Rejected::BadId));
    let huge = vec![b' '; MAX_MESSAGE_BYTES + 1];
    assert_eq!(decode(&huge), Err(Rejected::TooLarge));
}

#[test]
fn a_peers_batch_counts_here_as_load_and_prefix_but_is_not_republished() {
    let cfg = SyncConfig::default();
    let a = pool(&[("m", &["a:1", "b:1"])]);
    let b = pool(&[("m", &["a:1", "b:1"])]);
    a.keep_booked(cfg.max_blocks);
    let pods = a.all();
    let on_a = pods.iter().find(|p| p.address == "a:1").cloned();
    let slots: Vec<_> = on_a
        .iter()
        .flat_map(|p| [p.acquire(), p.acquire()])
        .collect();
    a.accepted("m", &[7, 8, 9], "a:1", a.now());
    let out = batches(&a, &cfg, "gw-a", 1, a.take_booked());
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, "brix:routing:m");
    let batch = decode(&out[0].1).unwrap_or_default();
    assert_eq!(batch.booked.len(), 1);

    let applied = apply(&b, "m", &batch);
    assert_eq!(
        applied,
        Applied {
            loads: 2,
            unknown: 0,
            refused: 0,
            booked: 1
        }
    );
    let view = |addr: &str| -> Pod { b.pod(addr).map(|p| p.snapshot_now()).unwrap_or_default() };
    assert_eq!(
        view("a:1").in_flight,
        2,
        "the peer's two requests count here"
    );
    assert_eq!(
        b.pod("a:1").map(|p| p.in_flight()),
        Some(0),
        "not as b's own"
    );
    let idx = b.index("m");
    let snap = [view("a:1"), view("b:1")];
    assert_eq!(
        idx.lock()
            .map(|i| i.matched(&[7, 8, 9], &snap, b.now()))
            .ok(),
        Some(vec![3, 0])
    );
    // Bookings heard from a peer are not published again.
    assert!(b.take_booked().booked.is_empty());
    // A later absolute batch replaces the count.
    drop(slots);
    let out = batches(&a, &cfg, "gw-a", 2, a.take_booked());
    apply(&b, "m", &decode(&out[0].1).unwrap_or_default());
    assert_eq!(view("a:1").in_flight, 0);
    // Pods and models this replica does not list are skipped, not indexed.
    let stray = Batch {
        gw: "gw-c".into(),
        pods: vec![PodLoad {
            address: "z:9".into(),
            in_flight: 5,
            ..PodLoad::default()
        }],
        booked: vec![Booked {
            address: "z:9".into(),
            blocks: vec![1],
        }],
        ..Batch::default()
    };
    let applied = apply(&b, "m", &stray);
    assert_eq!((applied.unknown, applied.booked), (1, 0));
    assert_eq!(apply(&b, "nope", &stray).booked, 0);
}

#[test]
fn redacts_passwords() {
    assert_eq!(redact("redis://u:pw@h:1/0"), "redis://***@h:1/0");
    assert_eq!(redact("redis://h:1/0"), "redis://h:1/0");
}
