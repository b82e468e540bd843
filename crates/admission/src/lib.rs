//! Admission for the Brix gateway: API keys, users, and per-user RPM/TPM and per-model RPS
//! limits, kept exact under concurrency in memory or in Redis shared with other replicas.
//!
//! The gateway calls [`Admission::authenticate`] with the `Authorization` header, then
//! [`Admission::admit`] with the `user` header, the model and a token reservation (prompt
//! tokens + `max_tokens`), and gets a [`Ticket`] or a typed [`Reject`] that it turns into the
//! OpenAI error envelope. When the response's `usage` is known it calls [`Admission::settle`];
//! when the request never reached an engine it calls [`Admission::refund`].
//!
//! Limits are fixed windows (60 s for users, 1 s for models) keyed exactly like AIBrix's
//! Redis limiter, but each check is one atomic check-and-add over all the request's counters
//! (one Lua script in Redis, one lock in memory): never more than the limit is admitted, and a
//! refused request books nothing. Time is passed in (`now_unix_s`), so windows are testable.
//! If the store fails, admission fails closed with [`Reject::Store`] (503).
//!
//! [`Admission::admin_router`] serves the users API (REST and AIBrix's metadata-service
//! routes) behind an admin key.

mod admin;
mod auth;
mod config;
mod error;
mod store;
mod ticket;
mod user;
mod window;

pub use auth::{AdminDenied, AdminGuard};
pub use config::AdmissionConfig;
pub use error::{AdmissionError, Reject, StoreError, UserError};
pub use ticket::Ticket;
pub use user::{MAX_USER_NAME_BYTES, User};

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use tokio::time::Instant;

use crate::auth::Keys;
use crate::store::{Charge, MemoryStore, RedisStore, Store, WriteMode};
use crate::window::{Kind, MAX_COUNT};

/// The admission stage: built once from [`AdmissionConfig`], shared by every request (wrap it
/// in an `Arc`).
pub struct Admission {
    api_keys: Keys,
    admin: AdminGuard,
    model_rps: BTreeMap<String, u64>,
    require_known_user: bool,
    store: Store,
}

impl Admission {
    /// Validates the configuration and, when `redis_url` is set, connects and pings Redis, so
    /// a bad setting fails at start-up.
    pub async fn connect(cfg: AdmissionConfig) -> Result<Self, AdmissionError> {
        cfg.validate()?;
        let store = match cfg.redis_url.as_deref() {
            Some(url) => Store::Redis(RedisStore::connect(url).await?),
            None => Store::Memory(MemoryStore::default()),
        };
        Ok(Self {
            api_keys: Keys::new(cfg.api_keys.iter().map(String::as_str)),
            admin: AdminGuard::new(cfg.admin_key.as_deref()),
            model_rps: cfg.model_rps,
            require_known_user: cfg.require_known_user,
            store,
        })
    }

    /// Where counters and users live, for start-up logs: `"memory"` or `"redis"`.
    pub fn backend(&self) -> &'static str {
        match self.store {
            Store::Memory(_) => "memory",
            Store::Redis(_) => "redis",
        }
    }

    /// The users API (REST under `/admin/users` and AIBrix's `/CreateUser`, `/ReadUser`,
    /// `/UpdateUser`, `/DeleteUser`), guarded by `Authorization: Bearer <admin_key>`; the
    /// gateway merges it into its own router.
    pub fn admin_router(self: Arc<Self>) -> axum::Router {
        admin::router(self)
    }

    /// The admin-key check, for other admin APIs served beside the gateway (one check for all).
    pub fn admin_guard(&self) -> AdminGuard {
        self.admin.clone()
    }

    /// Checks `Authorization: Bearer <key>` against the configured keys (constant time); with
    /// no keys configured every request passes.
    pub fn authenticate(&self, authorization: Option<&str>) -> Result<(), Reject> {
        if self.api_keys.is_empty() || self.api_keys.accepts(authorization) {
            Ok(())
        } else {
            Err(Reject::InvalidApiKey)
        }
    }

    /// Admits one request of `user` (the `user` header; empty reads as absent) to `model`,
    /// booking 1 request against the user's RPM, `reserve_tokens` against the user's TPM and
    /// 1 request against the model's RPS, in that order, all or nothing.
    ///
    /// A user with no stored record has no per-user limit unless `require_known_user` is set,
    /// in which case it is refused, and so is a request without a user (the gateway passes a
    /// `user` header that is not UTF-8 as none). A reservation larger than the user's whole
    /// TPM is refused.
    pub async fn admit(
        &self,
        user: Option<&str>,
        model: &str,
        reserve_tokens: u64,
        now_unix_s: f64,
    ) -> Result<Ticket, Reject> {
        let mut charges = Vec::with_capacity(3);
        if let Some((name, record)) = self.user_record(user).await? {
            if let Some(rpm) = record.rpm.filter(|&l| l > 0) {
                charges.push(charge(Kind::Rpm, name, now_unix_s, 1, rpm));
            }
            if let Some(tpm) = record.tpm.filter(|&l| l > 0) {
                charges.push(charge(Kind::Tpm, name, now_unix_s, reserve_tokens, tpm));
            }
        }
        if let Some(&rps) = self.model_rps.get(model) {
            charges.push(charge(Kind::ModelRps, model, now_unix_s, 1, rps));
        }
        if !charges.is_empty() {
            let now_s = window::whole_secs(now_unix_s);
            match self.store.charge(&charges, now_s).await {
                Ok(None) => {}
                Ok(Some(i)) => {
                    let kind = charges.get(i).map_or(Kind::Rpm, |c| c.kind);
                    return Err(limit_reject(kind, now_unix_s));
                }
                Err(err) => {
                    tracing::warn!(%err, "admission store failed; refusing the request");
                    return Err(Reject::Store(err.to_string()));
                }
            }
        }
        Ok(Ticket {
            charges,
            issued: Instant::now(),
        })
    }

    /// Replaces the TPM reservation with the tokens really used, in the window the
    /// reservation went into (usage above the reservation can push a window over its limit;
    /// later requests then wait for the next window). Never fails the request: store errors
    /// are logged.
    pub async fn settle(&self, ticket: Ticket, used_tokens: u64) {
        let Some(tpm) = ticket.charge(Kind::Tpm) else {
            return;
        };
        let used = i64::try_from(used_tokens.min(MAX_COUNT)).unwrap_or(i64::MAX);
        let reserved = i64::try_from(tpm.cost).unwrap_or(i64::MAX);
        let delta = used - reserved;
        if delta != 0 && ticket.still_own_window(tpm) {
            self.adjust(&[(tpm, delta)], "settle").await;
        }
    }

    /// Gives back everything the ticket booked (RPM, TPM reservation, model RPS): for a
    /// request that never reached an engine (no pod, upstream refused the connection).
    pub async fn refund(&self, ticket: Ticket) {
        let back: Vec<(&Charge, i64)> = ticket
            .charges
            .iter()
            .filter(|c| ticket.still_own_window(c))
            .map(|c| (c, -i64::try_from(c.cost).unwrap_or(i64::MAX)))
            .filter(|(_, delta)| *delta != 0)
            .collect();
        if !back.is_empty() {
            self.adjust(&back, "refund").await;
        }
    }

    async fn adjust(&self, adjustments: &[(&Charge, i64)], what: &'static str) {
        if let Err(err) = self.store.adjust(adjustments).await {
            tracing::warn!(%err, what, "admission store failed; counters keep the booking");
        }
    }

    /// The stored record for the `user` header, or `None` when the request has no per-user
    /// limits; refuses unknown users when `require_known_user` is set.
    async fn user_record<'u>(
        &self,
        user: Option<&'u str>,
    ) -> Result<Option<(&'u str, User)>, Reject> {
        let Some(name) = user.filter(|u| !u.is_empty()) else {
            return match self.require_known_user {
                true => Err(Reject::MissingUser),
                false => Ok(None),
            };
        };
        if self.require_known_user && User::validate_name(name).is_err() {
            return Err(Reject::UnknownUser(cut(name, MAX_USER_NAME_BYTES)));
        }
        match self.store.get_user(name).await {
            Ok(Some(record)) => Ok(Some((name, record))),
            Ok(None) if self.require_known_user => Err(Reject::UnknownUser(name.to_owned())),
            Ok(None) => Ok(None),
            Err(err) => {
                tracing::warn!(%err, "user lookup failed; refusing the request");
                Err(Reject::Store(err.to_string()))
            }
        }
    }

    /// Creates or replaces a user (limits of 0 are stored as unlimited); returns the stored
    /// record.
    pub async fn put_user(&self, user: User) -> Result<User, UserError> {
        self.write_user(user, WriteMode::Upsert)
            .await
            .map(|(_, user)| user)
    }

    /// Writes as `mode` allows; returns whether it wrote and the normalised record.
    pub(crate) async fn write_user(
        &self,
        user: User,
        mode: WriteMode,
    ) -> Result<(bool, User), UserError> {
        if let Err(reason) = User::validate_name(&user.name) {
            return Err(UserError::InvalidName {
                name: user.name,
                reason,
            });
        }
        let user = user.normalised();
        let written = self.store.write_user(&user, mode).await?;
        Ok((written, user))
    }

    /// The stored user named `name`, if any.
    pub async fn get_user(&self, name: &str) -> Result<Option<User>, StoreError> {
        self.store.get_user(name).await
    }

    /// Removes a user; returns whether it existed. Its counters expire with their windows.
    pub async fn delete_user(&self, name: &str) -> Result<bool, StoreError> {
        self.store.delete_user(name).await
    }

    /// Every stored user, sorted by name.
    pub async fn list_users(&self) -> Result<Vec<User>, StoreError> {
        self.store.list_users().await
    }
}

/// Keys never reach logs.
impl fmt::Debug for Admission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Admission")
            .field("api_keys", &(!self.api_keys.is_empty()))
            .field("admin_api", &self.admin.enabled())
            .field("model_rps", &self.model_rps)
            .field("require_known_user", &self.require_known_user)
            .field("backend", &self.backend())
            .finish()
    }
}

/// `s` cut to at most `max` bytes on a character boundary (for echoing client text).
fn cut(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

/// A booking of `cost` against `limit` in the window of `kind` containing `now_unix_s`.
fn charge(kind: Kind, subject: &str, now_unix_s: f64, cost: u64, limit: u64) -> Charge {
    let index = window::index(now_unix_s, kind.window_secs());
    Charge {
        kind,
        key: kind.key(subject, index),
        index,
        cost: cost.min(MAX_COUNT),
        limit: limit.min(MAX_COUNT),
    }
}

/// The 429 for a full window of `kind`, with the seconds left in it.
fn limit_reject(kind: Kind, now_unix_s: f64) -> Reject {
    let retry_after_s = window::retry_after_s(now_unix_s, kind.window_secs());
    match kind {
        Kind::Rpm => Reject::RpmExceeded { retry_after_s },
        Kind::Tpm => Reject::TpmExceeded { retry_after_s },
        Kind::ModelRps => Reject::ModelRpsExceeded { retry_after_s },
    }
}
