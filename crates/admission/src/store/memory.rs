//! Counters and users in this process: one mutex makes check-and-add atomic.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard, PoisonError, RwLock};

use super::{Charge, WriteMode, fits};
use crate::user::User;

/// In-memory store; counters are keyed like Redis (AIBrix key with the bin) and also remember
/// their absolute window, so a bin reused 64 windows later starts from zero.
#[derive(Default)]
pub(crate) struct MemoryStore {
    counters: Mutex<Counters>,
    users: RwLock<BTreeMap<String, User>>,
}

#[derive(Default)]
struct Counters {
    slots: HashMap<String, Slot>,
    /// The second of the last sweep; old windows are dropped at most once per second.
    swept_at_s: u64,
}

struct Slot {
    index: u64,
    window_s: u64,
    count: u64,
}

impl MemoryStore {
    fn counters(&self) -> MutexGuard<'_, Counters> {
        // A panic while holding the lock cannot leave a half-applied charge (all checks run
        // before any add), so a poisoned lock is still consistent.
        self.counters.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Atomic all-or-nothing check-and-add under one lock.
    pub(crate) fn charge(&self, charges: &[Charge], now_s: u64) -> Option<usize> {
        let mut counters = self.counters();
        counters.sweep(now_s);
        for (i, charge) in charges.iter().enumerate() {
            let current = counters
                .slots
                .get(&charge.key)
                .filter(|slot| slot.index == charge.index)
                .map_or(0, |slot| slot.count);
            if !fits(current, charge.cost, charge.limit) {
                return Some(i);
            }
        }
        for charge in charges {
            let window_s = charge.kind.window_secs();
            let slot = counters.slots.entry(charge.key.clone()).or_insert(Slot {
                index: charge.index,
                window_s,
                count: 0,
            });
            if slot.index != charge.index {
                *slot = Slot {
                    index: charge.index,
                    window_s,
                    count: 0,
                };
            }
            slot.count = slot.count.saturating_add(charge.cost);
        }
        None
    }

    /// Applies deltas to counters still in the charged window.
    pub(crate) fn adjust(&self, adjustments: &[(&Charge, i64)]) {
        let mut counters = self.counters();
        for (charge, delta) in adjustments {
            if let Some(slot) = counters.slots.get_mut(&charge.key)
                && slot.index == charge.index
            {
                slot.count = slot.count.saturating_add_signed(*delta);
            }
        }
    }

    /// The current count of a key in window `index` (tests and diagnostics).
    #[cfg(test)]
    pub(crate) fn count(&self, key: &str, index: u64) -> u64 {
        self.counters()
            .slots
            .get(key)
            .filter(|s| s.index == index)
            .map_or(0, |s| s.count)
    }

    /// Number of live counters (tests: memory stays bounded).
    #[cfg(test)]
    pub(crate) fn slots(&self) -> usize {
        self.counters().slots.len()
    }

    pub(crate) fn get_user(&self, name: &str) -> Option<User> {
        self.users
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .cloned()
    }

    pub(crate) fn write_user(&self, user: &User, mode: WriteMode) -> bool {
        let mut users = self.users.write().unwrap_or_else(PoisonError::into_inner);
        let exists = users.contains_key(&user.name);
        let write = match mode {
            WriteMode::Upsert => true,
            WriteMode::CreateOnly => !exists,
            WriteMode::UpdateOnly => exists,
        };
        if write {
            users.insert(user.name.clone(), user.clone());
        }
        write
    }

    pub(crate) fn delete_user(&self, name: &str) -> bool {
        self.users
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(name)
            .is_some()
    }

    pub(crate) fn list_users(&self) -> Vec<User> {
        self.users
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }
}

impl Counters {
    /// Drops counters whose window has ended, bounding memory by the keys active now.
    fn sweep(&mut self, now_s: u64) {
        if now_s == self.swept_at_s {
            return;
        }
        self.swept_at_s = now_s;
        self.slots
            .retain(|_, slot| slot.index.saturating_add(1).saturating_mul(slot.window_s) > now_s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::window::Kind;

    fn charge(kind: Kind, key: &str, index: u64, cost: u64, limit: u64) -> Charge {
        Charge {
            kind,
            key: key.to_owned(),
            index,
            cost,
            limit,
        }
    }

    #[test]
    fn all_or_nothing_and_windows() {
        let m = MemoryStore::default();
        let rpm = charge(Kind::Rpm, "r", 10, 1, 2);
        let tpm = charge(Kind::Tpm, "t", 10, 60, 100);
        assert_eq!(m.charge(&[rpm.clone(), tpm.clone()], 600), None);
        // TPM does not fit (60 + 60 > 100): nothing is added, RPM included.
        assert_eq!(m.charge(&[rpm.clone(), tpm.clone()], 601), Some(1));
        assert_eq!((m.count("r", 10), m.count("t", 10)), (1, 60));
        // The next window starts from zero, and the old one is swept.
        let next = charge(Kind::Rpm, "r", 11, 1, 2);
        assert_eq!(m.charge(&[next], 660), None);
        assert_eq!((m.count("r", 11), m.slots()), (1, 1));
        // A late adjustment for the swept window is ignored.
        m.adjust(&[(&tpm, -60)]);
        assert_eq!(m.count("t", 10), 0);
        // Counts never go below zero.
        m.adjust(&[(&charge(Kind::Rpm, "r", 11, 1, 2), -5)]);
        assert_eq!(m.count("r", 11), 0);
    }

    #[test]
    fn a_bin_reused_64_windows_later_starts_from_zero() {
        let m = MemoryStore::default();
        // Same key (bin 3), windows 3 and 67: the adjustment for window 3 must not touch 67.
        let old = charge(Kind::Rpm, "aibrix:u_RPM_CURRENT:3", 3, 1, 1);
        let new = charge(Kind::Rpm, "aibrix:u_RPM_CURRENT:3", 67, 1, 1);
        assert_eq!(m.charge(std::slice::from_ref(&old), 3 * 60), None);
        assert_eq!(m.charge(std::slice::from_ref(&new), 67 * 60), None);
        m.adjust(&[(&old, -1)]);
        assert_eq!(m.count(&new.key, 67), 1);
    }
}
