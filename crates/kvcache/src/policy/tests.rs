use super::*;

fn k(i: u128) -> BlockKey {
    BlockKey(i)
}

fn none(_: BlockKey) -> bool {
    false
}

/// Fills a policy with keys 0..n (weight 1), hits `hot`, then scans `scan` fresh keys one by one
/// (each insert evicting one key as an index at capacity would) and returns how many hot keys
/// survived.
fn hot_survivors(p: &mut dyn EvictionPolicy, n: u128, hot: &[u128], scan: u128) -> usize {
    for i in 0..n {
        p.insert(k(i), 1);
    }
    for &h in hot {
        p.access(k(h));
    }
    let mut evicted = Vec::new();
    for i in 0..scan {
        evicted.push(p.evict(&none).expect("victim"));
        p.insert(k(1000 + i), 1);
    }
    hot.iter().filter(|&&h| !evicted.contains(&k(h))).count()
}

#[test]
fn lru_evicts_least_recent_and_hits_protect() {
    let mut p = Lru::new();
    for i in 0..3 {
        p.insert(k(i), 1);
    }
    p.access(k(0));
    assert_eq!(p.evict(&none), Some(k(1)));
    assert_eq!(p.evict(&none), Some(k(2)));
    assert_eq!(p.evict(&none), Some(k(0)));
    assert_eq!(p.evict(&none), None);
    assert!(p.is_empty());
}

#[test]
fn s3fifo_is_scan_resistant_where_lru_is_not() {
    let hot: Vec<u128> = (0..10).collect();
    let mut s3 = S3Fifo::new(100, 0.1);
    let mut lru = Lru::new();
    assert_eq!(hot_survivors(&mut s3, 100, &hot, 300), hot.len());
    assert_eq!(hot_survivors(&mut lru, 100, &hot, 300), 0);
}

#[test]
fn s3fifo_ghost_hit_goes_to_main() {
    let mut p = S3Fifo::new(10, 0.1);
    p.insert(k(1), 1);
    p.insert(k(2), 1);
    assert_eq!(p.queue_bytes(), (2, 0));
    // S (2 bytes) is over its 1-byte share: the cold tail leaves to the ghost.
    assert_eq!(p.evict(&none), Some(k(1)));
    p.insert(k(1), 1);
    assert_eq!(p.queue_bytes(), (1, 1), "a ghost key comes back into main");
    // S is within its share: main's cold k1 goes.
    p.access(k(2));
    assert_eq!(p.evict(&none), Some(k(1)));
    assert_eq!(p.queue_bytes(), (1, 0));
    // S over its share again: the hit k2 moves to main, the cold newcomer k3 goes.
    p.insert(k(3), 1);
    assert_eq!(p.evict(&none), Some(k(3)));
    assert_eq!(p.queue_bytes(), (0, 1));
}

#[test]
fn s3fifo_main_reinserts_by_frequency_with_cap() {
    let mut p = S3Fifo::new(100, 0.0);
    // Small share 0: everything inserted is over it; hits move keys to main.
    for i in 0..3 {
        p.insert(k(i), 1);
        for _ in 0..10 {
            p.access(k(i));
        }
    }
    p.insert(k(9), 1);
    // k9 is cold: it is evicted first, the three hot keys move to main on the way.
    assert_eq!(p.evict(&none), Some(k(9)));
    assert_eq!(p.queue_bytes(), (0, 3));
    // Frequencies are capped at 3: three passes later the oldest goes.
    assert_eq!(p.evict(&none), Some(k(0)));
}

#[test]
fn pinned_keys_are_skipped_and_all_pinned_gives_none() {
    for mut p in [PolicyKind::Lru.build(10), PolicyKind::default().build(10)] {
        for i in 0..4 {
            p.insert(k(i), 1);
        }
        p.access(k(3));
        let pinned = |key: BlockKey| key.0 < 2;
        let mut got = Vec::new();
        while let Some(v) = p.evict(&pinned) {
            got.push(v);
        }
        got.sort();
        assert_eq!(got, vec![k(2), k(3)], "{p:?}");
        assert_eq!(p.len(), 2);
        assert_eq!(p.evict(&|_| true), None);
        assert_eq!(p.evict(&none).map(|v| v.0 < 2), Some(true));
    }
}

#[test]
fn remove_and_reweight_keep_queue_bytes() {
    let mut p = S3Fifo::new(100, 0.5);
    p.insert(k(1), 10);
    p.insert(k(2), 20);
    p.reweight(k(1), 5);
    assert_eq!(p.queue_bytes(), (25, 0));
    p.remove(k(2));
    assert_eq!(p.queue_bytes(), (5, 0));
    assert_eq!(p.len(), 1);
}

#[test]
fn policy_names_parse() {
    assert_eq!("lru".parse::<PolicyKind>(), Ok(PolicyKind::Lru));
    assert_eq!("S3FIFO".parse::<PolicyKind>(), Ok(PolicyKind::default()));
    assert_eq!(
        "s3fifo:0.3".parse::<PolicyKind>(),
        Ok(PolicyKind::S3Fifo { small_ratio: 0.3 })
    );
    assert!("s3fifo:1.5".parse::<PolicyKind>().is_err());
    assert!("arc".parse::<PolicyKind>().is_err());
    let round = PolicyKind::S3Fifo { small_ratio: 0.25 };
    assert_eq!(round.to_string().parse::<PolicyKind>(), Ok(round));
}

#[test]
fn s3fifo_small_queue_at_exactly_its_share_is_not_evicted_from() {
    let mut p = S3Fifo::new(10, 0.2);
    p.insert(k(1), 1);
    assert_eq!(p.evict(&none), Some(k(1)), "main empty: forced from small");
    p.insert(k(1), 1);
    p.insert(k(2), 1);
    p.insert(k(3), 1);
    assert_eq!(p.queue_bytes(), (2, 1));
    assert_eq!(
        p.evict(&none),
        Some(k(1)),
        "small holds exactly its share: main pays"
    );
}
