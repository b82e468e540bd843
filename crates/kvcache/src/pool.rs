//! A client over several pool servers: keys are placed by the consistent-hash [`Ring`], each
//! call groups its keys per server and asks the servers in parallel.
//!
//! Failure semantics (it is a cache): a server that errors or does not answer within
//! `PoolConfig::timeout` contributes misses (and failed puts), never an error or a hang; it is
//! then skipped (immediate misses) for a backoff that doubles per failure from `retry_min` to
//! `retry_max`, and retried after. Membership is a list of addresses; changing it moves only the
//! keys of the servers that joined or left (the ring's property).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::task::JoinSet;

use crate::blocking::ClientConfig;
use crate::client::Client;
use crate::proto::PutStatus;
use crate::{BlockKey, DEFAULT_VNODES, Ring};

/// Pool client settings.
#[derive(Clone, Debug)]
pub struct PoolConfig {
    /// Per-server connection settings.
    pub client: ClientConfig,
    /// Virtual nodes per server on the ring.
    pub vnodes: u32,
    /// Longest wait for one server's part of a call (then its keys are misses).
    pub timeout: Duration,
    /// First backoff after a failure.
    pub retry_min: Duration,
    /// Longest backoff.
    pub retry_max: Duration,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            client: ClientConfig {
                shm: false,
                ..ClientConfig::default()
            },
            vnodes: DEFAULT_VNODES,
            timeout: Duration::from_secs(1),
            retry_min: Duration::from_millis(100),
            retry_max: Duration::from_secs(10),
        }
    }
}

#[derive(Debug)]
struct Member {
    addr: String,
    client: tokio::sync::Mutex<Client>,
    /// (skip calls until, current backoff).
    health: Mutex<(Option<Instant>, Duration)>,
}

impl Member {
    fn available(&self) -> bool {
        let h = self.health.lock().unwrap_or_else(|e| e.into_inner());
        h.0.is_none_or(|t| Instant::now() >= t)
    }

    fn record(&self, ok: bool, cfg: &PoolConfig) {
        let mut h = self.health.lock().unwrap_or_else(|e| e.into_inner());
        if ok {
            *h = (None, Duration::ZERO);
        } else {
            let next = if h.1.is_zero() {
                cfg.retry_min
            } else {
                (h.1 * 2).min(cfg.retry_max)
            };
            *h = (Some(Instant::now() + next), next);
        }
    }
}

/// A client over a pool of servers (see the module doc for failure semantics).
#[derive(Debug)]
pub struct PoolClient {
    cfg: PoolConfig,
    ring: Ring,
    members: Vec<Arc<Member>>,
}

impl PoolClient {
    /// A pool over `addrs` (connections open on first use).
    pub fn new(addrs: &[String], cfg: PoolConfig) -> Self {
        let mut p = Self {
            ring: Ring::new(&[], cfg.vnodes),
            members: Vec::new(),
            cfg,
        };
        p.set_members(addrs);
        p
    }

    /// Changes membership; connections to servers that stay are kept.
    pub fn set_members(&mut self, addrs: &[String]) {
        let old = std::mem::take(&mut self.members);
        self.members = addrs
            .iter()
            .map(|a| {
                old.iter()
                    .find(|m| &m.addr == a)
                    .cloned()
                    .unwrap_or_else(|| {
                        Arc::new(Member {
                            addr: a.clone(),
                            client: tokio::sync::Mutex::new(Client::lazy(
                                a,
                                self.cfg.client.clone(),
                            )),
                            health: Mutex::new((None, Duration::ZERO)),
                        })
                    })
            })
            .collect();
        self.ring = Ring::new(addrs, self.cfg.vnodes);
    }

    /// The members' addresses.
    pub fn members(&self) -> &[String] {
        self.ring.nodes()
    }

    /// The address that holds `key`.
    pub fn server_for(&self, key: BlockKey) -> Option<&str> {
        self.ring
            .node_for(key)
            .map(|i| self.ring.nodes()[i].as_str())
    }

    /// Keys per server: (member index, positions in `keys`).
    fn group(&self, n: usize, key: impl Fn(usize) -> BlockKey) -> Vec<(usize, Vec<usize>)> {
        let mut groups: Vec<Vec<usize>> = vec![Vec::new(); self.members.len()];
        for i in 0..n {
            if let Some(m) = self.ring.node_for(key(i)) {
                groups[m].push(i);
            }
        }
        groups
            .into_iter()
            .enumerate()
            .filter(|(_, g)| !g.is_empty())
            .collect()
    }

    /// Runs `op` on each server's share in parallel; a server that fails or exceeds the timeout
    /// yields `None` for its share.
    async fn fan_out<T, F, Fut>(
        &self,
        groups: Vec<(usize, Vec<usize>)>,
        op: F,
    ) -> Vec<(Vec<usize>, Option<T>)>
    where
        T: Send + 'static,
        F: Fn(Arc<Member>, Vec<usize>) -> Fut,
        Fut: Future<Output = std::io::Result<T>> + Send + 'static,
    {
        let mut set = JoinSet::new();
        for (m, idx) in groups {
            let member = self.members[m].clone();
            if !member.available() {
                set.spawn(async move { (idx, None) });
                continue;
            }
            let (cfg, fut) = (self.cfg.clone(), op(member.clone(), idx.clone()));
            set.spawn(async move {
                let got = match tokio::time::timeout(cfg.timeout, fut).await {
                    Ok(Ok(v)) => Some(v),
                    Ok(Err(e)) => {
                        tracing::debug!(server = %member.addr, error = %e, "kvcache pool: server failed");
                        None
                    }
                    Err(_) => {
                        // The cancelled call may have left a half-read reply: start afresh.
                        member.client.lock().await.reset();
                        None
                    }
                };
                member.record(got.is_some(), &cfg);
                (idx, got)
            });
        }
        let mut out = Vec::new();
        while let Some(r) = set.join_next().await {
            if let Ok(r) = r {
                out.push(r);
            }
        }
        out
    }

    /// Runs `op` on each server's share of `keys` (its keys, in order) in parallel; see
    /// [`Self::fan_out`] for failures.
    async fn fan_out_keys<T, F, Fut>(
        &self,
        keys: &[BlockKey],
        op: F,
    ) -> Vec<(Vec<usize>, Option<T>)>
    where
        T: Send + 'static,
        F: Fn(Arc<Member>, Vec<BlockKey>) -> Fut,
        Fut: Future<Output = std::io::Result<T>> + Send + 'static,
    {
        let groups = self.group(keys.len(), |i| keys[i]);
        self.fan_out(groups, |m, idx| {
            op(m, idx.iter().map(|&i| keys[i]).collect())
        })
        .await
    }

    /// Puts each server's per-key answers back at their positions in a result of `n` items;
    /// positions of a server that failed keep `miss`.
    fn scatter<V, T: Clone>(
        n: usize,
        miss: T,
        got: Vec<(Vec<usize>, Option<Vec<V>>)>,
        f: impl Fn(V) -> T,
    ) -> Vec<T> {
        let mut out = vec![miss; n];
        for (idx, vals) in got {
            for (i, v) in idx.into_iter().zip(vals.unwrap_or_default()) {
                out[i] = f(v);
            }
        }
        out
    }

    /// Length of the longest prefix of `keys` stored in the pool: each server answers the
    /// prefix of its own keys in one round trip, in parallel; the first miss anywhere ends it.
    pub async fn longest_prefix(&self, keys: &[BlockKey]) -> usize {
        let got = self
            .fan_out_keys(keys, |m, mine| async move {
                m.client.lock().await.longest_prefix(&mine).await
            })
            .await;
        let mut first_miss = keys.len();
        for (idx, n) in got {
            let n = n.unwrap_or(0);
            if let Some(&pos) = idx.get(n) {
                first_miss = first_miss.min(pos);
            }
        }
        first_miss
    }

    /// Values of `keys` (misses for unreachable servers).
    pub async fn get(&self, keys: &[BlockKey]) -> Vec<Option<Bytes>> {
        let got = self
            .fan_out_keys(keys, |m, mine| async move {
                m.client.lock().await.get(&mine).await
            })
            .await;
        Self::scatter(keys.len(), None, got, |v| v)
    }

    /// Presence of each key (absent for unreachable servers).
    pub async fn exists(&self, keys: &[BlockKey]) -> Vec<bool> {
        let got = self
            .fan_out_keys(keys, |m, mine| async move {
                m.client.lock().await.exists(&mine).await
            })
            .await;
        Self::scatter(keys.len(), false, got, |b| b)
    }

    /// Stores values on their servers; whether each is in the pool after the call.
    pub async fn put(&self, items: &[(BlockKey, Bytes)]) -> Vec<bool> {
        let groups = self.group(items.len(), |i| items[i].0);
        let got = self
            .fan_out(groups, |m, idx| {
                // Bytes clones share the buffer: each server's task owns only its items.
                let mine: Vec<(BlockKey, Bytes)> = idx.iter().map(|&i| items[i].clone()).collect();
                async move {
                    let mine: Vec<(BlockKey, &[u8])> =
                        mine.iter().map(|(k, v)| (*k, &v[..])).collect();
                    m.client.lock().await.put(&mine).await
                }
            })
            .await;
        Self::scatter(items.len(), false, got, PutStatus::is_ok)
    }
}
