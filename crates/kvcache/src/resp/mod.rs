//! A Redis-protocol (RESP2/RESP3) subset on the pool's port, so engine-side clients that already
//! speak to Redis or Valkey (LMCache's `redis://` and `resp://` remote backends, redis-py) store
//! and fetch KV chunks in Brix with no Brix code inside the engine.
//!
//! The server sniffs the first byte of a connection; RESP requests start with `*`, and the
//! connection is handed to [`serve`] with the bytes already read. Commands: `GET`, `SET` (`NX`,
//! `XX`), `MGET`, `MSET`, `EXISTS`, `DEL`, `UNLINK`, `DBSIZE`, `PING`, `ECHO`, `AUTH`, `HELLO`
//! (2 or 3, with `AUTH` and `SETNAME`), `SELECT 0`, `CLIENT SETNAME|SETINFO|GETNAME|ID`, `INFO`,
//! `COMMAND` (empty), `QUIT`. Anything else is `-ERR unknown command`.
//!
//! Keys: a Redis key is any byte string; it maps to a [`BlockKey`] by xxh3-128 over the RESP
//! namespace root ([`resp_root`]) followed by the key bytes ([`key_of`]), so RESP keys never meet
//! the chained chunk keys of the binary protocol and the pool stores 16 bytes per key whatever
//! its length. Values are opaque bytes of at most the store's `max_value`.
//!
//! Failure: a malformed request, an inline command or a length over a bound gets one `-ERR` line
//! and the connection is closed (RESP cannot resynchronise); the store is untouched by a command
//! that did not arrive whole. A peer that stalls mid-command for [`RespConfig::io_timeout`], stops
//! reading replies for as long, or stays idle for [`RespConfig::idle_timeout`] is dropped.

mod cmd;
pub mod codec;

use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{Semaphore, SemaphorePermit};
use xxhash_rust::xxh3::Xxh3;

use crate::BlockKey;
use crate::proto::PutStatus;
use crate::server::ServerConfig;
use crate::store::Store;
use codec::{Frame, Limits, Out, Proto};

/// Domain string of the RESP key namespace (versioned: changing the mapping changes it).
const RESP_DOMAIN: &[u8] = b"brix-kvcache/resp/v1";
/// Replies buffered before they are written out mid-pipeline.
const FLUSH_AT: usize = 256 << 10;
/// Values at least this large are written straight from the store's buffer, not copied.
const DIRECT_WRITE: usize = 16 << 10;
/// Bytes read from the socket at a time (at least).
const READ_CHUNK: usize = 64 << 10;
/// A read buffer larger than this is replaced by a fresh one between commands.
const SHRINK_ABOVE: usize = 1 << 20;
/// Most buffer growth ahead of the bytes received.
const GROW_STEP: usize = 4 << 20;
/// Longest key accepted.
pub const MAX_KEY: usize = 64 << 10;

/// The store operations RESP commands need; [`crate::store::Store`] implements it, tests may
/// implement it over a map.
pub trait RespStore: Send + Sync {
    /// The value of `key`, if stored.
    fn get(&self, key: BlockKey) -> Option<Bytes>;
    /// Stores `value` under `key`; a present key is left as it is ([`PutStatus::Exists`]).
    fn put(&self, key: BlockKey, value: &[u8]) -> PutStatus;
    /// Whether `key` is stored (no side effects on eviction order).
    fn exists(&self, key: BlockKey) -> bool;
    /// Removes `key`; whether it was there.
    fn delete(&self, key: BlockKey) -> bool;
    /// Number of values stored (`DBSIZE`).
    fn len(&self) -> u64;
    /// Whether nothing is stored.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Gauges and counters for `INFO` (name, value), names in `snake_case`.
    fn info(&self) -> Vec<(&'static str, u64)>;
}

/// How a RESP connection is served.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RespConfig {
    /// The password `AUTH` / `HELLO .. AUTH` must give (the server's `--token`); `None` = open.
    pub token: Option<String>,
    /// Largest value (`SET`'s bulk); a longer bulk closes the connection with an error.
    pub max_value: usize,
    /// Most elements in one command (bounds `MGET`/`MSET`/`DEL` fan-out).
    pub max_args: usize,
    /// Longest wait for the rest of a started command, or for a reply write to drain.
    pub io_timeout: Duration,
    /// Longest wait for the next command on an idle connection.
    pub idle_timeout: Duration,
}

impl RespConfig {
    /// Defaults for values up to `max_value`: no token, 4 097 arguments, 30 s I/O, 1 h idle.
    pub fn new(max_value: usize) -> Self {
        Self {
            token: None,
            max_value,
            max_args: 4097,
            io_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(3600),
        }
    }

    /// The RESP side of a pool server: its token, value limit and timeouts.
    pub fn for_server(cfg: &ServerConfig) -> Self {
        Self {
            token: cfg.token.clone().filter(|t| !t.is_empty()),
            max_value: usize::try_from(cfg.store.max_value).unwrap_or(usize::MAX),
            io_timeout: cfg.io_timeout,
            idle_timeout: cfg.idle_timeout,
            ..Self::new(0)
        }
    }

    fn limits(&self) -> Limits {
        // A command holds at most one value plus keys and names (MSET of several values must fit
        // in one value's budget): the connection's memory stays bounded by one max_value.
        let slack = (self.max_args * 64).max(MAX_KEY);
        Limits {
            max_args: self.max_args,
            max_bulk: self.max_value.max(MAX_KEY),
            max_command: self.max_value + slack,
        }
    }
}

impl RespStore for Store {
    fn get(&self, key: BlockKey) -> Option<Bytes> {
        Store::get(self, key)
    }

    fn put(&self, key: BlockKey, value: &[u8]) -> PutStatus {
        Store::put(self, key, value)
    }

    fn exists(&self, key: BlockKey) -> bool {
        Store::exists(self, key)
    }

    fn delete(&self, key: BlockKey) -> bool {
        Store::delete(self, key)
    }

    fn len(&self) -> u64 {
        self.stats().entries
    }

    fn info(&self) -> Vec<(&'static str, u64)> {
        let s = self.stats();
        vec![
            ("capacity_bytes", s.capacity_bytes),
            ("used_bytes", s.used_bytes),
            ("entries", s.entries),
            ("puts", s.puts),
            ("hits", s.hits),
            ("misses", s.misses),
            ("evictions", s.evictions),
            ("rejected", s.rejected),
        ]
    }
}

/// The root every RESP key hashes under.
pub fn resp_root() -> BlockKey {
    BlockKey(xxhash_rust::xxh3::xxh3_128(RESP_DOMAIN))
}

/// The pool key of a Redis key: xxh3-128 of the root's 16 bytes followed by the key bytes.
pub fn key_of(key: &[u8]) -> BlockKey {
    let mut h = Xxh3::new();
    h.update(&resp_root().to_bytes());
    h.update(key);
    BlockKey(h.digest128())
}

/// Per-connection state.
#[derive(Debug)]
struct Conn {
    id: u64,
    proto: Proto,
    authed: bool,
    name: Option<Bytes>,
    quit: bool,
}

/// Replies waiting to be written: encoded lines in `buf`, large values queued by reference so a
/// `GET` of a big chunk is not copied a second time.
#[derive(Debug, Default)]
struct Replies {
    queue: Vec<Bytes>,
    queued: usize,
    buf: BytesMut,
}

impl Replies {
    fn out(&mut self, proto: Proto) -> Out<'_> {
        Out {
            buf: &mut self.buf,
            proto,
        }
    }

    /// A bulk reply whose bytes are `value`.
    fn value(&mut self, proto: Proto, value: Bytes) {
        if value.len() < DIRECT_WRITE {
            self.out(proto).bulk(&value);
            return;
        }
        self.out(proto).bulk_header(value.len());
        let head = self.buf.split().freeze();
        self.queued += head.len() + value.len();
        self.queue.push(head);
        self.queue.push(value);
        self.buf.extend_from_slice(b"\r\n");
    }

    fn pending(&self) -> usize {
        self.queued + self.buf.len()
    }

    async fn flush<W: AsyncWrite + Unpin>(
        &mut self,
        wr: &mut W,
        limit: Duration,
    ) -> io::Result<()> {
        let write = async {
            for chunk in self.queue.drain(..) {
                wr.write_all(&chunk).await?;
            }
            wr.write_all(&self.buf).await
        };
        let res = match tokio::time::timeout(limit, write).await {
            Ok(r) => r,
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "RESP peer not reading replies",
            )),
        };
        self.queued = 0;
        self.buf.clear();
        res
    }
}

/// Serves one RESP connection until the peer closes, sends `QUIT`, breaks the protocol or times
/// out. `first` holds the bytes the caller already read while sniffing the protocol; `budget`
/// is the server's request-body budget in KiB (a command over one read holds its size in it).
pub async fn serve<S, B>(
    stream: S,
    store: Arc<B>,
    first: Vec<u8>,
    cfg: &RespConfig,
    budget: Option<&Semaphore>,
) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
    B: RespStore + ?Sized,
{
    let (mut rd, mut wr) = tokio::io::split(stream);
    let limits = cfg.limits();
    let mut inbuf = BytesMut::from(&first[..]);
    inbuf.reserve(READ_CHUNK);
    let mut replies = Replies::default();
    let mut held: Option<SemaphorePermit<'_>> = None;
    let mut conn = Conn {
        id: cmd::next_id(),
        proto: Proto::Resp2,
        authed: cfg.token.is_none(),
        name: None,
        quit: false,
    };
    loop {
        // Answer every whole command already buffered (a pipeline), then flush once.
        loop {
            match codec::parse(&inbuf, &limits) {
                Ok(Frame::Command { len, args }) => {
                    let args = codec::take_command(&mut inbuf, len, &args);
                    cmd::run(&mut conn, &*store, cfg, &args, &mut replies, &mut wr).await?;
                    // Served: its budget goes back (the next large command takes its own).
                    drop(args);
                    held = None;
                    if conn.quit {
                        replies.flush(&mut wr, cfg.io_timeout).await?;
                        return wr.shutdown().await;
                    }
                    if replies.pending() >= FLUSH_AT {
                        replies.flush(&mut wr, cfg.io_timeout).await?;
                    }
                }
                Ok(Frame::Incomplete { need }) => {
                    // A command larger than one read holds its size in the server-wide request
                    // budget while it arrives, as binary-protocol bodies do.
                    if let (Some(b), true) = (budget, need > READ_CHUNK) {
                        let want = u32::try_from(need.div_ceil(1024)).unwrap_or(u32::MAX);
                        let have = held.as_ref().map_or(0, |p| p.num_permits() as u32);
                        if want > have {
                            match tokio::time::timeout(cfg.io_timeout, b.acquire_many(want - have))
                                .await
                            {
                                Ok(Ok(p)) => match held.as_mut() {
                                    Some(h) => h.merge(p),
                                    None => held = Some(p),
                                },
                                _ => {
                                    replies.out(conn.proto).error(
                                        "ERR server busy: the request memory budget is in use",
                                    );
                                    replies.flush(&mut wr, cfg.io_timeout).await?;
                                    return wr.shutdown().await;
                                }
                            }
                        }
                    }
                    // Grow with what arrives (at most a step ahead), not with what the header claims:
                    // a client that announces a large value and stalls costs one step, not max_value.
                    inbuf.reserve(
                        need.saturating_sub(inbuf.len())
                            .clamp(READ_CHUNK, GROW_STEP),
                    );
                    break;
                }
                Err(e) => {
                    replies.out(conn.proto).error(&format!("ERR {e}"));
                    replies.flush(&mut wr, cfg.io_timeout).await?;
                    return wr.shutdown().await;
                }
            }
        }
        if replies.pending() > 0 {
            replies.flush(&mut wr, cfg.io_timeout).await?;
        }
        // After a large command, give its buffer back instead of keeping a max-value buffer
        // for the life of an idle pooled connection.
        if inbuf.capacity() > SHRINK_ABOVE && inbuf.len() <= READ_CHUNK {
            let mut fresh = BytesMut::with_capacity(READ_CHUNK);
            fresh.extend_from_slice(&inbuf);
            inbuf = fresh;
        }
        let wait = if inbuf.is_empty() {
            cfg.idle_timeout
        } else {
            cfg.io_timeout
        };
        match tokio::time::timeout(wait, rd.read_buf(&mut inbuf)).await {
            Ok(Ok(0)) => return Ok(()),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "RESP peer timed out",
                ));
            }
        }
    }
}
