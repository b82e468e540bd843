use super::*;

fn k(i: u128) -> BlockKey {
    BlockKey(i)
}

fn cfg(capacity: u64, high: f64, low: f64, policy: PolicyKind) -> IndexConfig {
    IndexConfig {
        capacity_bytes: capacity,
        high_watermark: high,
        low_watermark: low,
        policy,
    }
}

#[test]
fn evicts_in_batches_between_watermarks() {
    let mut ix = Index::new(cfg(100, 0.9, 0.5, PolicyKind::Lru));
    for i in 0..9 {
        assert_eq!(ix.insert(k(i), 10, 0), Ok(vec![]));
    }
    assert_eq!(ix.used_bytes(), 90);
    // 90 + 10 > 90: evict down to 50 − 10 for the newcomer: five keys, oldest first.
    let evicted = ix.insert(k(9), 10, 0).expect("fits");
    assert_eq!(evicted, (0..5).map(k).collect::<Vec<_>>());
    assert_eq!(ix.used_bytes(), 50);
    let s = ix.stats();
    assert_eq!((s.inserts, s.evictions, s.evicted_bytes), (10, 5, 50));
    assert!(evicted.iter().all(|v| !ix.contains(*v)));
}

#[test]
fn refuses_oversized_and_all_pinned_without_evicting() {
    let mut ix = Index::new(cfg(30, 1.0, 1.0, PolicyKind::default()));
    assert_eq!(
        ix.insert(k(0), 31, 0),
        Err(IndexError::TooLarge {
            weight: 31,
            capacity: 30
        })
    );
    for i in 0..3 {
        ix.insert(k(i), 10, 0).expect("fits");
    }
    assert!(ix.pin(k(0)) && ix.pin(k(1)));
    assert!(ix.lease(k(2), 100));
    assert_eq!(ix.held_bytes(), 30);
    let err = ix.insert(k(3), 10, 50);
    assert_eq!(
        err,
        Err(IndexError::NoRoom {
            weight: 10,
            pinned: 30,
            capacity: 30
        })
    );
    assert_eq!(ix.len(), 3);
    assert_eq!(ix.stats().rejected, 2);
    // The lease lapses at 100: k2 is evictable again, pins hold.
    assert_eq!(ix.insert(k(3), 10, 100), Ok(vec![k(2)]));
    ix.unpin(k(0));
    assert_eq!(ix.insert(k(4), 10, 100), Ok(vec![k(0)]));
    assert!(ix.contains(k(1)));
}

#[test]
fn leases_extend_never_shorten_and_count_pins() {
    let mut ix = Index::new(cfg(100, 1.0, 1.0, PolicyKind::Lru));
    ix.insert(k(1), 10, 0).expect("fits");
    assert!(!ix.lease(k(9), 10), "absent key");
    assert!(ix.lease(k(1), 50));
    assert!(ix.lease(k(1), 20));
    ix.expire_leases(49);
    assert!(ix.is_held(k(1)));
    ix.expire_leases(50);
    assert!(!ix.is_held(k(1)));
    ix.pin(k(1));
    ix.pin(k(1));
    ix.unpin(k(1));
    assert!(ix.is_held(k(1)));
    ix.unpin(k(1));
    assert!(!ix.is_held(k(1)));
    assert_eq!(ix.held_bytes(), 0);
}

#[test]
fn refresh_reweights_and_never_evicts_itself() {
    let mut ix = Index::new(cfg(100, 1.0, 1.0, PolicyKind::Lru));
    ix.insert(k(1), 40, 0).expect("fits");
    ix.insert(k(2), 40, 0).expect("fits");
    // k1 grows to 70: k2 must go, k1 (the oldest) stays.
    assert_eq!(ix.insert(k(1), 70, 0), Ok(vec![k(2)]));
    assert_eq!(ix.weight(k(1)), Some(70));
    assert_eq!(ix.used_bytes(), 70);
    assert_eq!(ix.stats().refreshes, 1);
    // Zero weight counts as one byte.
    ix.insert(k(3), 0, 0).expect("fits");
    assert_eq!(ix.weight(k(3)), Some(1));
}

#[test]
fn longest_prefix_stops_at_first_miss_and_touches() {
    let mut ix = Index::new(cfg(3, 1.0, 1.0, PolicyKind::Lru));
    for i in 0..3 {
        ix.insert(k(i), 1, 0).expect("fits");
    }
    ix.remove(k(1));
    assert_eq!(ix.longest_prefix(&[k(0), k(1), k(2)], 0), 1);
    assert_eq!(ix.longest_prefix(&[k(2), k(0)], 0), 2);
    assert_eq!(ix.longest_prefix(&[], 0), 0);
    let s = ix.stats();
    assert_eq!((s.hits, s.misses), (3, 1));
    // The side-effect-free form agrees and changes nothing.
    assert_eq!(ix.prefix_len(&[k(0), k(1), k(2)]), 1);
    assert_eq!(ix.prefix_len(&[k(2), k(0)]), 2);
    assert_eq!(ix.stats(), s);
    let mut present: Vec<BlockKey> = ix.keys().collect();
    present.sort();
    assert_eq!(present, vec![k(0), k(2)]);
    // k0 was touched last: k2 is the LRU victim.
    ix.insert(k(5), 1, 0).expect("fits");
    assert_eq!(ix.insert(k(6), 1, 0), Ok(vec![k(2)]));
}

#[test]
fn watermarks_are_normalised() {
    let c = cfg(1000, 0.5, 0.8, PolicyKind::Lru);
    assert_eq!(c.watermark_bytes(), (500, 500));
    let c = cfg(1000, f64::NAN, -1.0, PolicyKind::Lru);
    assert_eq!(c.watermark_bytes(), (1000, 0));
}

#[test]
fn huge_capacity_does_not_overflow() {
    let mut ix = Index::new(cfg(u64::MAX, 1.0, 1.0, PolicyKind::default()));
    ix.insert(k(1), u64::MAX - 1, 0).expect("fits");
    assert_eq!(ix.insert(k(2), 5, 0), Ok(vec![k(1)]));
    ix.pin(k(2));
    assert!(matches!(
        ix.insert(k(3), u64::MAX, 0),
        Err(IndexError::NoRoom { .. })
    ));
}

#[test]
fn index_can_be_shared_behind_a_mutex() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<std::sync::Mutex<Index>>();
}
