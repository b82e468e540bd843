//! Counters and users in Redis: each check-and-add is one Lua script, so it is atomic across
//! every gateway replica; users are AIBrix's JSON records.

use std::collections::BTreeMap;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, Script};

use super::{Charge, WriteMode};
use crate::config::redact_url;
use crate::user::User;
use crate::window::user_key;
use crate::{AdmissionError, StoreError};

/// Each connection attempt gives up after this long; admission then fails closed (503).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// A command unanswered this long fails; a stalled Redis must not stall every request.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(1);
/// Reconnection attempts per failure before the error reaches the request.
const RECONNECT_RETRIES: usize = 3;
/// Keys asked for per `SCAN` step and per `MGET` when listing users.
const LIST_BATCH: usize = 200;

/// Check every counter, then add to all of them or to none. `current >= limit` also refuses,
/// so a full window admits nothing, even a zero-token reservation. Mirrors `store::fits`.
/// ARGV per key: cost, limit, TTL. Returns 0, or the 1-based index of the refusing counter.
const CHARGE_LUA: &str = r"
for i = 1, #KEYS do
  local current = tonumber(redis.call('GET', KEYS[i]) or '0')
  local cost = tonumber(ARGV[3 * i - 2])
  local limit = tonumber(ARGV[3 * i - 1])
  if current >= limit or current + cost > limit then
    return i
  end
end
for i = 1, #KEYS do
  redis.call('INCRBY', KEYS[i], ARGV[3 * i - 2])
  redis.call('EXPIRE', KEYS[i], ARGV[3 * i])
end
return 0
";

/// Add a delta to counters that still exist (an expired window is over and left alone);
/// INCRBY keeps the TTL; never leave a count below zero.
const ADJUST_LUA: &str = r"
for i = 1, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    local v = redis.call('INCRBY', KEYS[i], ARGV[i])
    if v < 0 then
      redis.call('INCRBY', KEYS[i], -v)
    end
  end
end
return 0
";

/// The Redis backend; cloning the connection manager is cheap and shares one multiplexed
/// connection that reconnects by itself.
pub(crate) struct RedisStore {
    conn: ConnectionManager,
    charge: Script,
    adjust: Script,
}

impl RedisStore {
    /// Connects and pings, so a wrong URL fails at start-up rather than on the first request.
    pub(crate) async fn connect(url: &str) -> Result<Self, AdmissionError> {
        let redacted = redact_url(url);
        let client = redis::Client::open(url).map_err(|source| AdmissionError::RedisUrl {
            url: redacted.clone(),
            source,
        })?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_number_of_retries(RECONNECT_RETRIES);
        let connect_err = |source| AdmissionError::RedisConnect {
            url: redacted.clone(),
            source,
        };
        let mut conn = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(connect_err)?;
        let () = redis::cmd("PING")
            .query_async(&mut conn)
            .await
            .map_err(connect_err)?;
        Ok(Self {
            conn,
            charge: Script::new(CHARGE_LUA),
            adjust: Script::new(ADJUST_LUA),
        })
    }

    pub(crate) async fn charge(&self, charges: &[Charge]) -> Result<Option<usize>, StoreError> {
        let mut invocation = self.charge.prepare_invoke();
        for charge in charges {
            invocation.key(&charge.key);
        }
        for charge in charges {
            invocation
                .arg(charge.cost)
                .arg(charge.limit)
                .arg(ttl_secs(charge));
        }
        let failed: usize = invocation.invoke_async(&mut self.conn.clone()).await?;
        Ok(failed.checked_sub(1))
    }

    pub(crate) async fn adjust(&self, adjustments: &[(&Charge, i64)]) -> Result<(), StoreError> {
        if adjustments.is_empty() {
            return Ok(());
        }
        let mut invocation = self.adjust.prepare_invoke();
        for (charge, _) in adjustments {
            invocation.key(&charge.key);
        }
        for (_, delta) in adjustments {
            invocation.arg(*delta);
        }
        let () = invocation.invoke_async(&mut self.conn.clone()).await?;
        Ok(())
    }

    pub(crate) async fn get_user(&self, name: &str) -> Result<Option<User>, StoreError> {
        let key = user_key(name);
        let json: Option<String> = self.conn.clone().get(&key).await?;
        json.map(|json| parse_user(key, &json)).transpose()
    }

    pub(crate) async fn write_user(
        &self,
        user: &User,
        mode: WriteMode,
    ) -> Result<bool, StoreError> {
        let json = serde_json::to_string(user).map_err(|source| StoreError::CorruptUser {
            key: user_key(&user.name),
            source,
        })?;
        let mut cmd = redis::cmd("SET");
        cmd.arg(user_key(&user.name)).arg(json);
        match mode {
            WriteMode::Upsert => {}
            WriteMode::CreateOnly => {
                cmd.arg("NX");
            }
            WriteMode::UpdateOnly => {
                cmd.arg("XX");
            }
        }
        let reply: Option<String> = cmd.query_async(&mut self.conn.clone()).await?;
        Ok(reply.is_some())
    }

    pub(crate) async fn delete_user(&self, name: &str) -> Result<bool, StoreError> {
        let removed: u64 = self.conn.clone().del(user_key(name)).await?;
        Ok(removed > 0)
    }

    /// `SCAN` (never `KEYS`, which blocks Redis) then `MGET` in batches; a record that does not
    /// parse is skipped with a warning so one bad record cannot hide the others.
    pub(crate) async fn list_users(&self) -> Result<Vec<User>, StoreError> {
        let mut conn = self.conn.clone();
        let mut keys = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(user_key("*"))
                .arg("COUNT")
                .arg(LIST_BATCH)
                .query_async(&mut conn)
                .await?;
            keys.extend(batch);
            if next == 0 {
                break;
            }
            cursor = next;
        }
        keys.sort_unstable();
        keys.dedup();
        let mut users = BTreeMap::new();
        for chunk in keys.chunks(LIST_BATCH) {
            let values: Vec<Option<String>> =
                redis::cmd("MGET").arg(chunk).query_async(&mut conn).await?;
            for (key, json) in chunk.iter().zip(values) {
                let Some(json) = json else { continue };
                match parse_user(key.clone(), &json) {
                    Ok(user) => {
                        users.insert(user.name.clone(), user);
                    }
                    Err(err) => tracing::warn!(%err, "skipping unreadable user record"),
                }
            }
        }
        Ok(users.into_values().collect())
    }
}

/// A counter lives two windows after its last booking (AIBrix: one), so a booking delayed in
/// flight cannot reset a window early; its bin only comes back 64 windows later.
fn ttl_secs(charge: &Charge) -> u64 {
    2 * charge.kind.window_secs()
}

fn parse_user(key: String, json: &str) -> Result<User, StoreError> {
    serde_json::from_str::<User>(json)
        .map(User::normalised)
        .map_err(|source| StoreError::CorruptUser { key, source })
}
