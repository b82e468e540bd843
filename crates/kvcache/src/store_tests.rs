use std::time::Duration;

use super::*;
use crate::arena::PAGE;

fn k(i: u128) -> BlockKey {
    BlockKey(i)
}

fn store(pages: u64) -> Store {
    let mut cfg = StoreConfig::new(pages * PAGE);
    cfg.max_value = 8 * PAGE;
    Store::new(cfg).expect("memfd")
}

#[test]
fn put_get_exists_delete_and_prefix() {
    let s = store(64);
    assert_eq!(s.put(k(1), b"one"), PutStatus::Stored);
    assert_eq!(s.put(k(1), b"ignored"), PutStatus::Exists);
    assert_eq!(s.put(k(2), &[7; 5000]), PutStatus::Stored);
    assert_eq!(s.get(k(1)).as_deref(), Some(&b"one"[..]));
    assert_eq!(s.get(k(2)).map(|b| b.len()), Some(5000));
    assert_eq!(s.get(k(3)), None);
    assert_eq!(s.exists_many(&[k(1), k(3), k(2)]), vec![true, false, true]);
    assert_eq!(s.longest_prefix(&[k(1), k(2), k(3), k(1)]), 2);
    assert_eq!(s.longest_prefix(&[k(3), k(1)]), 0);
    assert!(s.delete(k(1)));
    assert!(!s.delete(k(1)));
    assert!(!s.exists(k(1)));
    let st = s.stats();
    assert_eq!((st.entries, st.used_bytes, st.puts), (1, 2 * PAGE, 2));
    assert_eq!(
        s.put(k(9), &[0; 8 * PAGE as usize + 1]),
        PutStatus::TooLarge
    );
}

#[test]
fn a_flood_of_puts_stays_within_capacity_and_evicts() {
    let s = store(64);
    for i in 0..1000u128 {
        let len = 1 + (i as usize * 7919) % (3 * PAGE as usize);
        assert!(s.put(k(i), &vec![i as u8; len]).is_ok());
        let st = s.stats();
        assert!(st.used_bytes <= st.capacity_bytes);
    }
    let st = s.stats();
    assert!(st.evictions > 900, "{st:?}");
    // What is still there reads back intact.
    for i in 900..1000u128 {
        if let Some(v) = s.get(k(i)) {
            assert!(v.iter().all(|&b| b == i as u8));
        }
    }
}

#[test]
fn pinned_values_survive_eviction_and_a_deleted_pinned_value_is_freed_at_unpin() {
    let s = store(16);
    s.put(k(1), &[1; 4096]);
    let pin = s.pin(k(1)).expect("present");
    for i in 2..200u128 {
        s.put(k(i), &[2; 4096]);
    }
    let mut out = [0u8; 4096];
    s.read_pinned(&pin, 0, &mut out).expect("in range");
    assert!(
        out.iter().all(|&b| b == 1),
        "a pinned value was overwritten"
    );
    assert!(s.read_pinned(&pin, 1, &mut out).is_err());
    assert!(s.delete(k(1)));
    let used = s.stats().used_bytes;
    s.unpin(pin);
    assert_eq!(s.stats().used_bytes, used - PAGE);
}

#[test]
fn reservations_commit_or_are_freed_when_the_owner_leaves() {
    let s = store(16);
    let (st, lease) = s.reserve(k(1), 100, 7);
    let lease = lease.expect("reserved");
    assert_eq!(st, PutStatus::Stored);
    assert!(!s.exists(k(1)), "invisible before commit");
    s.region().write(lease.offset, &[5; 100]).expect("in range");
    assert!(!s.commit(lease.id, 8), "someone else's lease");
    assert!(s.commit(lease.id, 7));
    assert_eq!(s.get(k(1)).as_deref(), Some(&[5u8; 100][..]));
    assert!(!s.commit(lease.id, 7), "committed once");

    let (_, l2) = s.reserve(k(2), 3 * PAGE, 9);
    let r = s.lease_read(k(1), 9).expect("present");
    assert_eq!((r.offset, r.len), (lease.offset, 100));
    assert_eq!(s.stats().leases, 2);
    s.drop_owner(9);
    let st = s.stats();
    assert_eq!((st.leases, st.used_bytes, st.entries), (0, PAGE, 1));
    assert!(l2.is_some() && !s.exists(k(2)));
    assert!(!s.release(r.id, 9), "already dropped");
}

#[test]
fn lapsed_leases_are_swept() {
    let mut cfg = StoreConfig::new(16 * PAGE);
    cfg.lease = Duration::ZERO;
    let s = Store::new(cfg).expect("memfd");
    let (_, lease) = s.reserve(k(1), 10, 1);
    assert!(lease.is_some());
    // The next lease operation sweeps the lapsed reservation: its space is free again.
    let (_, other) = s.reserve(k(2), 10, 1);
    assert!(other.is_some());
    assert!(!s.commit(lease.map_or(0, |l| l.id), 1));
    assert_eq!(s.stats().used_bytes, PAGE);
}
