//! Seeded differential test: random operation streams on [`Index`] and on the naive
//! [`RefIndex`]; after every operation both must agree on every return value, on presence of
//! every key, on usage and on the stats. Invariants checked on the way: usage never exceeds
//! capacity, and a pinned or leased key is never evicted.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::*;
use crate::policy::reference::RefIndex;

const UNIVERSE: u128 = 48;

fn policies() -> [PolicyKind; 5] {
    [
        PolicyKind::Lru,
        PolicyKind::S3Fifo { small_ratio: 0.1 },
        PolicyKind::S3Fifo { small_ratio: 0.3 },
        PolicyKind::S3Fifo { small_ratio: 0.0 },
        PolicyKind::S3Fifo { small_ratio: 1.0 },
    ]
}

/// One run: `ops` random operations under one configuration.
/// Returns the stats at the end so callers can check the run had real pressure.
fn run(
    seed: u64,
    policy: PolicyKind,
    capacity: u64,
    high: f64,
    low: f64,
    ops: usize,
) -> IndexStats {
    let mut rng = SmallRng::seed_from_u64(seed);
    let cfg = IndexConfig {
        capacity_bytes: capacity,
        high_watermark: high,
        low_watermark: low,
        policy,
    };
    let (hi, lo) = cfg.watermark_bytes();
    let mut ix = Index::new(cfg);
    let mut rf = RefIndex::new(capacity, hi, lo, policy);
    let mut now = 0u64;
    let ctx =
        |op: usize, what: &str| format!("seed {seed} {policy} cap {capacity} op {op}: {what}");
    for op in 0..ops {
        let key = BlockKey(rng.random_range(0..UNIVERSE));
        let what = match rng.random_range(0..100) {
            // Inserts dominate so the index runs under capacity pressure.
            0..=39 => {
                let weight = match rng.random_range(0..20) {
                    0 => rng.random_range(capacity - 5..capacity + 5),
                    1 => 0,
                    _ => rng.random_range(1..=capacity / 8),
                };
                let held: Vec<BlockKey> = (0..UNIVERSE)
                    .map(BlockKey)
                    .filter(|k| rf.held_at(*k, now))
                    .collect();
                let a = ix.insert(key, weight, now);
                let b = rf.insert(key, weight, now);
                assert_eq!(a, b, "{}", ctx(op, &format!("insert {key} {weight}")));
                for v in a.iter().flatten() {
                    assert!(
                        !held.contains(v),
                        "{}: evicted pinned/leased {v}",
                        ctx(op, "insert")
                    );
                    assert!(*v != key && !ix.contains(*v));
                }
                format!("insert {key} {weight}")
            }
            40..=54 => {
                assert_eq!(ix.touch(key), rf.touch(key), "{}", ctx(op, "touch"));
                "touch".into()
            }
            55..=69 => {
                // A chain-like run of consecutive keys, as a prompt's keys would be.
                let start = rng.random_range(0..UNIVERSE);
                let len = rng.random_range(0..12u128);
                let keys: Vec<BlockKey> = (start..start + len)
                    .map(|i| BlockKey(i % UNIVERSE))
                    .collect();
                let probe = ix.prefix_len(&keys);
                let a = ix.longest_prefix(&keys, now);
                assert_eq!(probe, a, "{}", ctx(op, "prefix_len"));
                assert_eq!(
                    a,
                    rf.longest_prefix(&keys, now),
                    "{}",
                    ctx(op, "longest_prefix")
                );
                "longest_prefix".into()
            }
            70..=76 => {
                assert_eq!(ix.remove(key), rf.remove(key), "{}", ctx(op, "remove"));
                "remove".into()
            }
            77..=83 => {
                assert_eq!(ix.pin(key), rf.pin(key), "{}", ctx(op, "pin"));
                "pin".into()
            }
            84..=89 => {
                ix.unpin(key);
                rf.unpin(key);
                "unpin".into()
            }
            90..=95 => {
                let until = now + rng.random_range(0..200);
                assert_eq!(
                    ix.lease(key, until),
                    rf.lease(key, until),
                    "{}",
                    ctx(op, "lease")
                );
                "lease".into()
            }
            _ => {
                now += rng.random_range(0..100);
                ix.expire_leases(now);
                rf.expire(now);
                "expire".into()
            }
        };
        if rng.random_range(0..4) == 0 {
            now += rng.random_range(0..20);
        }
        let at = ctx(op, &what);
        assert!(
            ix.used_bytes() <= capacity,
            "{at}: used {} > capacity",
            ix.used_bytes()
        );
        assert_eq!(ix.used_bytes(), rf.used(), "{at}: used");
        assert_eq!(ix.held_bytes(), rf.held_bytes(), "{at}: held");
        assert_eq!(ix.len(), rf.len(), "{at}: len");
        assert_eq!(ix.policy.len(), ix.len(), "{at}: policy tracks every key");
        assert_eq!(ix.stats(), rf.stats, "{at}: stats");
        for i in 0..UNIVERSE {
            let k = BlockKey(i);
            assert_eq!(ix.contains(k), rf.contains(k), "{at}: presence of {k}");
            assert_eq!(ix.is_held(k), rf.is_held(k), "{at}: held {k}");
        }
    }
    ix.stats()
}

#[test]
fn index_matches_reference_model() {
    for seed in 0..6u64 {
        for policy in policies() {
            for (capacity, high, low) in [
                (200, 1.0, 1.0),
                (400, 0.9, 0.6),
                (256, 0.8, 0.8),
                (30, 1.0, 1.0),
            ] {
                let s = run(seed, policy, capacity, high, low, 2_000);
                // Real pressure, so the comparison cannot pass vacuously.
                assert!(
                    s.evictions > 100 && s.rejected > 10 && s.hits > 100,
                    "{policy} {capacity}: {s:?}"
                );
            }
        }
    }
}

/// Every op is an insert or a hit, with a long pinned run: the rotation bound must end each
/// eviction and the all-pinned case must be an error, in both models.
#[test]
fn heavy_pinning_matches_reference_and_terminates() {
    for policy in policies() {
        let mut ix = Index::new(IndexConfig {
            capacity_bytes: 100,
            high_watermark: 1.0,
            low_watermark: 1.0,
            policy,
        });
        let mut rf = RefIndex::new(100, 100, 100, policy);
        for i in 0..10 {
            assert_eq!(ix.insert(BlockKey(i), 10, 0), rf.insert(BlockKey(i), 10, 0));
            ix.touch(BlockKey(i));
            rf.touch(BlockKey(i));
            ix.pin(BlockKey(i));
            rf.pin(BlockKey(i));
        }
        let err = Err(IndexError::NoRoom {
            weight: 10,
            pinned: 100,
            capacity: 100,
        });
        assert_eq!(ix.insert(BlockKey(50), 10, 0), err);
        assert_eq!(rf.insert(BlockKey(50), 10, 0), err);
        ix.unpin(BlockKey(7));
        rf.unpin(BlockKey(7));
        assert_eq!(
            ix.insert(BlockKey(50), 10, 0),
            Ok(vec![BlockKey(7)]),
            "{policy}"
        );
        assert_eq!(rf.insert(BlockKey(50), 10, 0), Ok(vec![BlockKey(7)]));
        assert_eq!(ix.stats(), rf.stats);
    }
}
