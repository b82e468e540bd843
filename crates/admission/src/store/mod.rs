//! Where counters and users live: this process's memory, or Redis shared with other gateway
//! replicas and AIBrix tools. Both keep the same shape (AIBrix's keys, one counter per
//! window bin) and the same contract: a set of charges is checked and added atomically,
//! all or nothing.

mod memory;
mod redis;

pub(crate) use self::memory::MemoryStore;
pub(crate) use self::redis::RedisStore;

use crate::StoreError;
use crate::user::User;
use crate::window::Kind;

/// One counter a request books into: `cost` more in window `index`, refused if it would
/// pass `limit`.
#[derive(Debug, Clone)]
pub(crate) struct Charge {
    /// Which limit; decides the window length and the rejection.
    pub(crate) kind: Kind,
    /// AIBrix's key, carrying the window's bin.
    pub(crate) key: String,
    /// Absolute window index (not the bin), so memory never mistakes an old window for this one.
    pub(crate) index: u64,
    /// What the request adds: 1 request, or its reserved tokens.
    pub(crate) cost: u64,
    /// The window's budget.
    pub(crate) limit: u64,
}

/// Whether `cost` more fits a window already at `current`: it must not pass the limit, and a
/// full window admits nothing, not even a zero-token reservation.
pub(crate) fn fits(current: u64, cost: u64, limit: u64) -> bool {
    current < limit && current.saturating_add(cost) <= limit
}

/// How a user write treats an existing record (REST `PUT` vs AIBrix's Create/Update).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WriteMode {
    /// Create or replace.
    Upsert,
    /// Only if no record exists (AIBrix `/CreateUser`).
    CreateOnly,
    /// Only if a record exists (AIBrix `/UpdateUser`).
    UpdateOnly,
}

/// The configured backend.
pub(crate) enum Store {
    /// Counters and users in this process; lost on restart, not shared.
    Memory(MemoryStore),
    /// Counters and users in Redis, shared and surviving restarts.
    Redis(RedisStore),
}

impl Store {
    /// Books every charge if all fit; otherwise books none and returns the position of the
    /// first one (in order) that does not fit.
    pub(crate) async fn charge(
        &self,
        charges: &[Charge],
        now_s: u64,
    ) -> Result<Option<usize>, StoreError> {
        match self {
            Store::Memory(m) => Ok(m.charge(charges, now_s)),
            Store::Redis(r) => r.charge(charges).await,
        }
    }

    /// Adds `delta` to each counter that still holds the charged window; a window that has
    /// ended (memory) or expired (Redis) is left alone. Counts never go below zero.
    pub(crate) async fn adjust(&self, adjustments: &[(&Charge, i64)]) -> Result<(), StoreError> {
        match self {
            Store::Memory(m) => {
                m.adjust(adjustments);
                Ok(())
            }
            Store::Redis(r) => r.adjust(adjustments).await,
        }
    }

    /// The stored user, if any.
    pub(crate) async fn get_user(&self, name: &str) -> Result<Option<User>, StoreError> {
        match self {
            Store::Memory(m) => Ok(m.get_user(name)),
            Store::Redis(r) => r.get_user(name).await,
        }
    }

    /// Writes the user as `mode` allows; returns whether it was written.
    pub(crate) async fn write_user(
        &self,
        user: &User,
        mode: WriteMode,
    ) -> Result<bool, StoreError> {
        match self {
            Store::Memory(m) => Ok(m.write_user(user, mode)),
            Store::Redis(r) => r.write_user(user, mode).await,
        }
    }

    /// Removes the user; returns whether it existed.
    pub(crate) async fn delete_user(&self, name: &str) -> Result<bool, StoreError> {
        match self {
            Store::Memory(m) => Ok(m.delete_user(name)),
            Store::Redis(r) => r.delete_user(name).await,
        }
    }

    /// Every stored user, sorted by name.
    pub(crate) async fn list_users(&self) -> Result<Vec<User>, StoreError> {
        match self {
            Store::Memory(m) => Ok(m.list_users()),
            Store::Redis(r) => r.list_users().await,
        }
    }
}
