//! Shared-memory leases of the [`Store`]: read leases (a client copies a value out of its own
//! mapping) and two-phase writes (reserve → the client writes in place → commit). Each lease
//! belongs to one connection (`owner`) and lapses after `StoreConfig::lease`; lapsed or orphaned
//! read leases unpin, lapsed or orphaned reservations are freed.

use super::{Inner, Lease, LeaseEntry, Store, abort_locked, commit_locked, unpin_locked};
use crate::BlockKey;
use crate::proto::PutStatus;

impl Store {
    /// Leases `key` in place for `owner`: where its bytes are until [`Store::release`] or the
    /// lease lapses. `None` on a miss or when the lease table is full.
    pub fn lease_read(&self, key: BlockKey, owner: u64) -> Option<Lease> {
        let now = self.now_ms();
        let mut g = self.lock();
        let inner = &mut *g;
        self.sweep(inner, now);
        if inner.leases.len() >= self.cfg.max_leases {
            inner.misses += 1;
            return None;
        }
        let slot = match inner.slots.get_mut(&key) {
            Some(s) if s.ready => s,
            _ => {
                inner.misses += 1;
                return None;
            }
        };
        slot.pins += 1;
        let (offset, len) = (slot.offset, slot.len);
        inner.index.pin(key);
        inner.index.touch(key);
        inner.hits += 1;
        let id = self.add_lease(inner, key, offset, false, owner, now);
        Some(Lease { id, offset, len })
    }

    /// Ends a read lease of `owner`; `false` if unknown, lapsed, or someone else's.
    pub fn release(&self, id: u64, owner: u64) -> bool {
        let mut g = self.lock();
        match g.leases.get(&id) {
            Some(l) if l.owner == owner && !l.write => {}
            _ => return false,
        }
        let Some(l) = g.leases.remove(&id) else {
            return false;
        };
        unpin_locked(&mut g, l.key, l.offset);
        true
    }

    /// Reserves room for `len` bytes under `key` for `owner`, who writes them into its mapping
    /// at the returned offset and then calls [`Store::commit`]. The status says why not.
    pub fn reserve(&self, key: BlockKey, len: u64, owner: u64) -> (PutStatus, Option<Lease>) {
        let now = self.now_ms();
        {
            let mut g = self.lock();
            self.sweep(&mut g, now);
            if g.leases.len() >= self.cfg.max_leases {
                g.rejected += 1;
                return (PutStatus::NoSpace, None);
            }
        }
        let (status, offset) = self.reserve_locked(key, len);
        if status != PutStatus::Stored {
            return (status, None);
        }
        let mut g = self.lock();
        let id = self.add_lease(&mut g, key, offset, true, owner, now);
        (status, Some(Lease { id, offset, len }))
    }

    /// Publishes a reservation of `owner`; `false` if unknown, lapsed (the space was freed), or
    /// someone else's.
    pub fn commit(&self, id: u64, owner: u64) -> bool {
        let mut g = self.lock();
        match g.leases.get(&id) {
            Some(l) if l.owner == owner && l.write => {}
            _ => return false,
        }
        let Some(l) = g.leases.remove(&id) else {
            return false;
        };
        commit_locked(&mut g, l.key, l.offset)
    }

    /// Drops every lease of `owner` (its connection closed): reads unpin, reservations free.
    pub fn drop_owner(&self, owner: u64) {
        let mut g = self.lock();
        let ids: Vec<u64> = g
            .leases
            .iter()
            .filter(|(_, l)| l.owner == owner)
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            end_lease(&mut g, id);
        }
    }

    fn add_lease(
        &self,
        inner: &mut Inner,
        key: BlockKey,
        offset: u64,
        write: bool,
        owner: u64,
        now: u64,
    ) -> u64 {
        let id = inner.next_lease;
        inner.next_lease += 1;
        let until_ms = now + self.cfg.lease.as_millis() as u64;
        inner.leases.insert(
            id,
            LeaseEntry {
                key,
                offset,
                write,
                owner,
                until_ms,
            },
        );
        id
    }

    /// Ends lapsed leases; runs at most every quarter lease so lookups stay O(1) amortised.
    fn sweep(&self, inner: &mut Inner, now: u64) {
        if now < inner.next_sweep_ms {
            return;
        }
        inner.next_sweep_ms = now + self.cfg.lease.as_millis() as u64 / 4;
        let lapsed: Vec<u64> = inner
            .leases
            .iter()
            .filter(|(_, l)| l.until_ms <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in lapsed {
            end_lease(inner, id);
        }
    }
}

fn end_lease(inner: &mut Inner, id: u64) {
    if let Some(l) = inner.leases.remove(&id) {
        if l.write {
            abort_locked(inner, l.key, l.offset);
        } else {
            unpin_locked(inner, l.key, l.offset);
        }
    }
}
