//! vLLM's `ZmqEventPublisher`: a PUB socket sending `(topic, seq, payload)` and an optional
//! ROUTER answering replay requests from a ring of the last `buffer_steps` batches.
//!
//! [`Publisher::publish`] never blocks: batches go through a bounded queue
//! (`max_queue_size`; a full queue drops the batch and counts it, where vLLM's would block
//! the engine) to one task that numbers them from 0, encodes and sends them. A replay request
//! `(identity, "", start_seq)` is answered with `(identity, "", topic, seq, payload)` for every
//! buffered batch from `start_seq` on, then `(identity, "", "", -1, "")`, as vLLM does.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use zeromq::{PubSocket, RouterSocket, Socket, SocketRecv, SocketSend, ZmqMessage};

use crate::config::{KvEventsConfig, bind_address, is_bind_endpoint};
use crate::wire::{Batch, encode};

/// Longest a send to one peer may take before the message is given up on.
const SEND_TIMEOUT: Duration = Duration::from_secs(1);
/// Longest start-up waits on a connect (PUB endpoints without `*` are connected, as in vLLM).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The 8-byte big-endian sequence number vLLM's replay socket ends a reply with.
pub const END_SEQ: [u8; 8] = (-1i64).to_be_bytes();

/// Why a publisher could not start.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// Bind or connect failed.
    #[error("kv events socket {endpoint}: {source}")]
    Socket {
        /// The endpoint.
        endpoint: String,
        /// What ZMQ said.
        source: zeromq::ZmqError,
    },
    /// The connect did not finish in time.
    #[error("kv events socket {0}: connect timed out")]
    Timeout(String),
}

/// A running publisher; dropping it stops its task.
pub struct Publisher {
    tx: mpsc::Sender<Batch>,
    dropped: Arc<AtomicU64>,
    endpoint: String,
    replay_endpoint: Option<String>,
    task: JoinHandle<()>,
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Publisher {
    /// Binds (or connects) the sockets of `cfg` and starts the publishing task.
    pub async fn start(cfg: &KvEventsConfig) -> Result<Self, PublishError> {
        let mut publ = PubSocket::new();
        let endpoint = open(&mut publ, &cfg.endpoint).await?;
        let (router, replay_endpoint) = match &cfg.replay_endpoint {
            Some(e) => {
                let mut r = RouterSocket::new();
                let bound = open(&mut r, e).await?;
                (Some(r), Some(bound))
            }
            None => (None, None),
        };
        let (tx, rx) = mpsc::channel(cfg.max_queue_size.max(1));
        let state = Task {
            publ,
            router,
            topic: Bytes::from(cfg.topic.clone().into_bytes()),
            ring: VecDeque::with_capacity(cfg.buffer_steps.min(1024)),
            cap: cfg.buffer_steps.max(1),
            next_seq: 0,
        };
        Ok(Self {
            tx,
            dropped: Arc::new(AtomicU64::new(0)),
            endpoint,
            replay_endpoint,
            task: tokio::spawn(state.run(rx)),
        })
    }

    /// Queues one batch; false (and counted) when the queue is full or the task has ended.
    pub fn publish(&self, batch: Batch) -> bool {
        let ok = self.tx.try_send(batch).is_ok();
        if !ok {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
        ok
    }

    /// Batches dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// The PUB endpoint as bound (a `:0` port resolved).
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The replay endpoint as bound, when replay is on.
    pub fn replay_endpoint(&self) -> Option<&str> {
        self.replay_endpoint.as_deref()
    }
}

async fn open<S: Socket>(s: &mut S, endpoint: &str) -> Result<String, PublishError> {
    let err = |source| PublishError::Socket {
        endpoint: endpoint.to_string(),
        source,
    };
    if is_bind_endpoint(endpoint) {
        let bound = s.bind(&bind_address(endpoint)).await.map_err(err)?;
        // Report the port actually bound, under the host the caller asked for.
        let port = bound
            .to_string()
            .rsplit(':')
            .next()
            .unwrap_or_default()
            .to_string();
        let host = endpoint.rsplit_once(':').map_or(endpoint, |(h, _)| h);
        return Ok(format!("{host}:{port}"));
    }
    match tokio::time::timeout(CONNECT_TIMEOUT, s.connect(endpoint)).await {
        Ok(r) => r.map_err(err)?,
        Err(_) => return Err(PublishError::Timeout(endpoint.to_string())),
    }
    Ok(endpoint.to_string())
}

struct Task {
    publ: PubSocket,
    router: Option<RouterSocket>,
    topic: Bytes,
    ring: VecDeque<(u64, Bytes)>,
    cap: usize,
    next_seq: u64,
}

impl Task {
    async fn run(mut self, mut rx: mpsc::Receiver<Batch>) {
        loop {
            let replay = async {
                match self.router.as_mut() {
                    Some(r) => r.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                b = rx.recv() => match b {
                    Some(b) => self.send(&b).await,
                    None => return,
                },
                m = replay => match m {
                    Ok(m) => self.replay(m).await,
                    Err(e) => tracing::debug!("kv events replay socket: {e}"),
                },
            }
        }
    }

    async fn send(&mut self, batch: &Batch) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let payload = Bytes::from(encode(batch));
        let msg = frames(vec![
            self.topic.clone(),
            Bytes::copy_from_slice(&seq.to_be_bytes()),
            payload.clone(),
        ]);
        match tokio::time::timeout(SEND_TIMEOUT, self.publ.send(msg)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!("kv events: publishing batch {seq}: {e}"),
            Err(_) => tracing::warn!("kv events: a subscriber stalled batch {seq}"),
        }
        if self.ring.len() == self.cap {
            self.ring.pop_front();
        }
        self.ring.push_back((seq, payload));
    }

    async fn replay(&mut self, m: ZmqMessage) {
        let f = m.into_vec();
        let start = match &f[..] {
            [_, empty, s] if empty.is_empty() && s.len() == 8 => {
                let mut b = [0u8; 8];
                b.copy_from_slice(s);
                u64::from_be_bytes(b)
            }
            _ => {
                tracing::debug!("kv events: invalid replay request of {} frames", f.len());
                return;
            }
        };
        let Some(router) = self.router.as_mut() else {
            return;
        };
        let id = f[0].clone();
        let replies = self.ring.iter().filter(|(s, _)| *s >= start);
        for (seq, payload) in replies {
            let msg = frames(vec![
                id.clone(),
                Bytes::new(),
                self.topic.clone(),
                Bytes::copy_from_slice(&seq.to_be_bytes()),
                payload.clone(),
            ]);
            if !matches!(
                tokio::time::timeout(SEND_TIMEOUT, router.send(msg)).await,
                Ok(Ok(()))
            ) {
                return; // the client is gone or stalled; it times out and asks again
            }
        }
        let end = frames(vec![
            id,
            Bytes::new(),
            Bytes::new(),
            Bytes::from_static(&END_SEQ),
            Bytes::new(),
        ]);
        let _ = tokio::time::timeout(SEND_TIMEOUT, router.send(end)).await;
    }
}

/// A multipart message of these frames (an empty list gives one empty frame).
pub(crate) fn frames(f: Vec<Bytes>) -> ZmqMessage {
    let mut it = f.into_iter();
    let mut m = ZmqMessage::from(it.next().unwrap_or_default());
    it.for_each(|b| m.push_back(b));
    m
}
