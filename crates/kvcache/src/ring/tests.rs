use super::*;

fn names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("10.0.0.{i}:7400")).collect()
}

fn keys(n: u128) -> impl Iterator<Item = BlockKey> {
    (0..n).map(BlockKey)
}

fn counts(place: impl Fn(BlockKey) -> usize, nodes: usize, n: u128) -> Vec<usize> {
    let mut c = vec![0; nodes];
    for key in keys(n) {
        c[place(key)] += 1;
    }
    c
}

fn max_over_mean(c: &[usize]) -> f64 {
    let mean = c.iter().sum::<usize>() as f64 / c.len() as f64;
    *c.iter().max().expect("nodes") as f64 / mean
}

#[test]
fn ring_balances_with_100_vnodes() {
    for n in [2, 4, 8] {
        let ring = Ring::new(&names(n), DEFAULT_VNODES);
        let c = counts(|k| ring.node_for(k).expect("nodes"), n, 100_000);
        eprintln!(
            "ring, {n} nodes × {DEFAULT_VNODES} vnodes: max/mean {:.3}",
            max_over_mean(&c)
        );
        assert!(max_over_mean(&c) < 1.3, "{n} nodes: {c:?}");
    }
    // One vnode per node is much worse: the reason for vnodes.
    let ring = Ring::new(&names(8), 1);
    let c = counts(|k| ring.node_for(k).expect("nodes"), 8, 100_000);
    eprintln!("ring, 8 nodes × 1 vnode: max/mean {:.3}", max_over_mean(&c));
    assert!(max_over_mean(&c) > 1.5, "{c:?}");
}

#[test]
fn rendezvous_balances() {
    let nodes = names(8);
    let c = counts(|k| rendezvous(&nodes, k).expect("nodes"), 8, 100_000);
    eprintln!("rendezvous, 8 nodes: max/mean {:.3}", max_over_mean(&c));
    assert!(max_over_mean(&c) < 1.05, "{c:?}");
}

/// Checks join: keys only move to the new node, about 1/(n+1) of them; then leave (the
/// reverse): only the removed node's keys move.
fn check_join(place: impl Fn(&[String], BlockKey) -> usize, n: usize, tolerance: f64) {
    let old = names(n);
    let new = names(n + 1);
    let total = 50_000u128;
    let mut moved = 0;
    for key in keys(total) {
        let a = place(&old, key);
        let b = place(&new, key);
        if a != b {
            assert_eq!(b, n, "key {key} moved between two old nodes ({a} → {b})");
            moved += 1;
        }
    }
    let share = moved as f64 / total as f64;
    let want = 1.0 / (n + 1) as f64;
    eprintln!(
        "join {n} → {}: {share:.3} of keys moved (ideal {want:.3}), all to the new node",
        n + 1
    );
    assert!(
        (share - want).abs() < tolerance * want,
        "moved {share:.3}, want ≈ {want:.3}"
    );
}

fn check_leave(place: impl Fn(&[String], BlockKey) -> usize, n: usize) {
    let all = names(n);
    let gone = 1;
    let rest: Vec<String> = all
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != gone)
        .map(|(_, s)| s.clone())
        .collect();
    let mut spread = vec![0usize; n];
    for key in keys(50_000) {
        let a = &all[place(&all, key)];
        let b = &rest[place(&rest, key)];
        if a != &all[gone] {
            assert_eq!(a, b, "key {key} moved off a node that stayed");
        } else {
            spread[all.iter().position(|s| s == b).expect("known")] += 1;
        }
    }
    // The removed node's keys spread over the others, none left behind.
    assert_eq!(spread[gone], 0);
    let takers = spread.iter().filter(|&&c| c > 0).count();
    let moved: usize = spread.iter().sum();
    let takers_spread: Vec<usize> = spread.iter().copied().filter(|&c| c > 0).collect();
    eprintln!(
        "leave {n} → {}: {moved} of 50000 keys moved, spread {takers_spread:?}",
        n - 1
    );
    assert_eq!(takers, n - 1, "{spread:?}");
}

#[test]
fn ring_join_and_leave_move_only_their_share() {
    let place = |nodes: &[String], key| {
        Ring::new(nodes, DEFAULT_VNODES)
            .node_for(key)
            .expect("nodes")
    };
    // Build rings once per membership (Ring::new per key would be slow).
    let rings: Vec<Ring> = (0..=5)
        .map(|n| Ring::new(&names(n), DEFAULT_VNODES))
        .collect();
    let cached = |nodes: &[String], key| {
        rings
            .iter()
            .find(|r| r.nodes() == nodes)
            .map_or_else(|| place(nodes, key), |r| r.node_for(key).expect("nodes"))
    };
    check_join(cached, 4, 0.3);
    check_leave(cached, 5);
}

#[test]
fn rendezvous_join_and_leave_move_only_their_share() {
    let place = |nodes: &[String], key| rendezvous(nodes, key).expect("nodes");
    check_join(place, 4, 0.05);
    check_leave(place, 5);
}

#[test]
fn empty_and_single() {
    assert_eq!(Ring::new(&[], 100).node_for(BlockKey(1)), None);
    assert_eq!(rendezvous(&[], BlockKey(1)), None);
    let one = names(1);
    assert_eq!(Ring::new(&one, 0).node_for(BlockKey(7)), Some(0));
    assert_eq!(rendezvous(&one, BlockKey(7)), Some(0));
}
