//! A consumer of one engine's KV events: SUB for the live stream, a DEALER for replays.
//!
//! [`Subscriber::spawn`] starts a task that connects (retrying forever with capped back-off),
//! subscribes to the topic and turns each `(topic, seq, payload)` message into
//! [`Update`]s, in sequence order:
//! - the next expected sequence number: `Update::Batch`;
//! - a jump ahead (missed batches; also the first batch after start-up, whose history starts
//!   at 0): the missing range is asked from the replay socket and delivered first; what the
//!   replay cannot supply (no replay socket, evicted from its ring, timeout, undecodable) is
//!   reported as `Update::Lost`, after which the consumer's view of the engine is incomplete
//!   and it should clear what it knows of it;
//! - a jump back (the engine restarted and counts from 0 again): `Update::Reset`, then the
//!   new history is recovered as above.
//!
//! Every wait on the peer has a timeout (`SubscriberConfig::timeout`). A live stream cannot
//! tell a restart that published more batches than were seen before from a network gap; the
//! consumer should also clear a pod's view when the pod is replaced.

use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use zeromq::{DealerSocket, Socket, SocketRecv, SocketSend, SubSocket, ZmqMessage};

use crate::publisher::frames;
use crate::wire::{Batch, decode};

/// Where and how to subscribe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubscriberConfig {
    /// The engine's PUB endpoint, e.g. `tcp://10.0.0.5:5557`.
    pub endpoint: String,
    /// The engine's replay (ROUTER) endpoint; None: gaps are reported, never filled.
    pub replay_endpoint: Option<String>,
    /// Topic prefix to subscribe to (vLLM's `topic`, `""` for all).
    pub topic: String,
    /// Longest wait for a connect or one replay reply.
    pub timeout: Duration,
    /// Longest pause between reconnect attempts (back-off doubles from 100 ms up to it).
    pub max_backoff: Duration,
    /// Updates buffered for a slow consumer before the task waits for it.
    pub queue: usize,
}

impl SubscriberConfig {
    /// Defaults for one engine: 2 s timeout, 5 s back-off cap, 1024 queued updates.
    pub fn new(endpoint: impl Into<String>, replay_endpoint: Option<String>) -> Self {
        Self {
            endpoint: endpoint.into(),
            replay_endpoint,
            topic: String::new(),
            timeout: Duration::from_secs(2),
            max_backoff: Duration::from_secs(5),
            queue: 1024,
        }
    }
}

/// What the subscriber tells its consumer, in order.
#[derive(Clone, Debug, PartialEq)]
pub enum Update {
    /// One batch, live or replayed, in sequence order.
    Batch {
        /// Its sequence number.
        seq: u64,
        /// Its events.
        batch: Batch,
    },
    /// Batches `from..to` are lost for good: the consumer's view is incomplete; clear it.
    Lost {
        /// First lost sequence number.
        from: u64,
        /// One past the last lost.
        to: u64,
    },
    /// The sequence went back to `seq` (the engine restarted): what was known is stale.
    Reset {
        /// The first sequence number of the new stream.
        seq: u64,
    },
}

/// A running subscription; dropping it stops the task and closes its sockets.
pub struct Subscriber {
    rx: mpsc::Receiver<Update>,
    task: JoinHandle<()>,
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Subscriber {
    /// Starts subscribing in the background (needs a tokio runtime).
    pub fn spawn(cfg: SubscriberConfig) -> Self {
        let (tx, rx) = mpsc::channel(cfg.queue.max(1));
        let task = tokio::spawn(run(cfg, tx));
        Self { rx, task }
    }

    /// The next update; None only if the task ended (it does not while the subscriber lives).
    pub async fn next(&mut self) -> Option<Update> {
        self.rx.recv().await
    }
}

async fn run(cfg: SubscriberConfig, tx: mpsc::Sender<Update>) {
    let mut expected: u64 = 0;
    let mut backoff = Duration::from_millis(100);
    loop {
        let mut sub = match connect(&cfg).await {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!("kv events {}: {e}", cfg.endpoint);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(cfg.max_backoff);
                continue;
            }
        };
        backoff = Duration::from_millis(100);
        loop {
            let msg = match sub.recv().await {
                Ok(m) => m,
                Err(e) => {
                    tracing::debug!("kv events {}: {e}; reconnecting", cfg.endpoint);
                    break;
                }
            };
            let Some((seq, payload)) = parse(msg) else {
                continue;
            };
            if seq < expected {
                if tx.send(Update::Reset { seq }).await.is_err() {
                    return;
                }
                expected = 0;
            }
            if seq > expected && !fill(&cfg, &tx, expected, seq).await {
                return;
            }
            let u = match decode(&payload) {
                Ok(batch) => Update::Batch { seq, batch },
                Err(e) => {
                    tracing::debug!("kv events {}: batch {seq}: {e}", cfg.endpoint);
                    Update::Lost {
                        from: seq,
                        to: seq + 1,
                    }
                }
            };
            if tx.send(u).await.is_err() {
                return;
            }
            expected = seq + 1;
        }
    }
}

async fn connect(cfg: &SubscriberConfig) -> Result<SubSocket, String> {
    let mut sub = SubSocket::new();
    match tokio::time::timeout(cfg.timeout, sub.connect(&cfg.endpoint)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(e.to_string()),
        Err(_) => return Err("connect timed out".into()),
    }
    sub.subscribe(&cfg.topic).await.map_err(|e| e.to_string())?;
    Ok(sub)
}

/// `(seq, payload)` of a `(topic, seq, payload)` message; None for anything else.
fn parse(m: ZmqMessage) -> Option<(u64, Bytes)> {
    match <[Bytes; 3]>::try_from(m.into_vec()) {
        Ok([_, seq, payload]) if seq.len() == 8 => {
            let mut b = [0u8; 8];
            b.copy_from_slice(&seq);
            Some((u64::from_be_bytes(b), payload))
        }
        _ => None,
    }
}

/// Delivers batches `from..to` from the replay socket, and `Lost` for what it lacks; false
/// when the consumer is gone.
async fn fill(cfg: &SubscriberConfig, tx: &mpsc::Sender<Update>, from: u64, to: u64) -> bool {
    let mut next = from;
    if let Some(ep) = &cfg.replay_endpoint {
        match replay(ep, from, to, cfg.timeout).await {
            Ok(batches) => {
                for (seq, payload) in batches {
                    if seq < next || seq >= to {
                        continue;
                    }
                    let u = match decode(&payload) {
                        Ok(batch) => Update::Batch { seq, batch },
                        Err(_) => Update::Lost {
                            from: seq,
                            to: seq + 1,
                        },
                    };
                    if seq > next
                        && tx
                            .send(Update::Lost {
                                from: next,
                                to: seq,
                            })
                            .await
                            .is_err()
                    {
                        return false;
                    }
                    if tx.send(u).await.is_err() {
                        return false;
                    }
                    next = seq + 1;
                }
            }
            Err(e) => tracing::debug!("kv events replay {ep} from {from}: {e}"),
        }
    }
    next >= to || tx.send(Update::Lost { from: next, to }).await.is_ok()
}

/// Asks the replay socket for batches `start..end`; those it sent, in order.
async fn replay(
    endpoint: &str,
    start: u64,
    end: u64,
    timeout: Duration,
) -> Result<Vec<(u64, Bytes)>, String> {
    let mut d = DealerSocket::new();
    match tokio::time::timeout(timeout, d.connect(endpoint)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(e.to_string()),
        Err(_) => return Err("connect timed out".into()),
    }
    let req = frames(vec![
        Bytes::new(),
        Bytes::copy_from_slice(&start.to_be_bytes()),
    ]);
    match tokio::time::timeout(timeout, d.send(req)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(e.to_string()),
        Err(_) => return Err("request timed out".into()),
    }
    let mut out = Vec::new();
    loop {
        let m = match tokio::time::timeout(timeout, d.recv()).await {
            Ok(Ok(m)) => m,
            Ok(Err(e)) => return Err(e.to_string()),
            Err(_) => return Err(format!("no reply within {timeout:?}")),
        };
        match <[Bytes; 4]>::try_from(m.into_vec()) {
            Ok([_, _, seq, _]) if seq[..] == crate::publisher::END_SEQ => return Ok(out),
            Ok([_, _, seq, payload]) if seq.len() == 8 => {
                let mut b = [0u8; 8];
                b.copy_from_slice(&seq);
                let seq = u64::from_be_bytes(b);
                if seq >= end {
                    return Ok(out); // newer batches arrive live; the rest of the reply is dropped
                }
                out.push((seq, payload));
                if seq + 1 == end {
                    return Ok(out);
                }
            }
            _ => return Err("malformed replay reply".into()),
        }
    }
}
