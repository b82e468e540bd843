//! The async pool client (tokio): one connection to one server, TCP or Unix (+ shared memory).
//! Same operations and failure rules as [`crate::blocking::Client`]: every read and write has a
//! timeout, an error drops the connection and the next call reconnects.

use std::io;
use std::os::fd::AsFd;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpStream, UnixStream};

use crate::BlockKey;
use crate::blocking::{ClientConfig, Endpoint};
use crate::proto::{self, CAP_SHM, HEADER_LEN, Op, PutStatus, ServerInfo, Stats};
use crate::shm::{SharedRegion, recv_with_fd};
use crate::wire;

#[derive(Debug)]
enum Io {
    Tcp(BufReader<TcpStream>),
    Unix(BufReader<UnixStream>),
}

#[derive(Debug)]
struct Conn {
    io: Io,
    info: ServerInfo,
    region: Option<SharedRegion>,
}

/// An async connection to one pool server (reconnects lazily after an error).
#[derive(Debug)]
pub struct Client {
    endpoint: Endpoint,
    cfg: ClientConfig,
    conn: Option<Conn>,
}

async fn timed<T>(cfg: &ClientConfig, f: impl Future<Output = io::Result<T>>) -> io::Result<T> {
    tokio::time::timeout(cfg.io_timeout, f)
        .await
        .unwrap_or_else(|_| {
            Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "kvcache: timed out",
            ))
        })
}

impl Client {
    /// Connects and says HELLO (bounded by the connect and I/O timeouts).
    pub async fn connect(endpoint: &str, cfg: ClientConfig) -> io::Result<Self> {
        let mut c = Self {
            endpoint: Endpoint::parse(endpoint),
            cfg,
            conn: None,
        };
        c.ensure().await?;
        Ok(c)
    }

    /// A client that connects on first use.
    pub fn lazy(endpoint: &str, cfg: ClientConfig) -> Self {
        Self {
            endpoint: Endpoint::parse(endpoint),
            cfg,
            conn: None,
        }
    }

    /// Drops the connection (e.g. after a cancelled call); the next call reconnects.
    pub fn reset(&mut self) {
        self.conn = None;
    }

    /// What the server said in HELLO, once connected.
    pub fn info(&self) -> Option<ServerInfo> {
        self.conn.as_ref().map(|c| c.info)
    }

    /// Whether values move through shared memory.
    pub fn has_shm(&self) -> bool {
        self.conn.as_ref().is_some_and(|c| c.region.is_some())
    }

    async fn ensure(&mut self) -> io::Result<()> {
        if self.conn.is_none() {
            let t = self.cfg.connect_timeout + self.cfg.io_timeout;
            let c = tokio::time::timeout(t, open(&self.endpoint, &self.cfg))
                .await
                .unwrap_or_else(|_| Err(io::ErrorKind::TimedOut.into()))?;
            self.conn = Some(c);
        }
        Ok(())
    }

    /// One request, one reply; an error drops the connection.
    async fn call(&mut self, op: Op, body: &[u8]) -> io::Result<Vec<u8>> {
        self.ensure().await?;
        let Some(c) = self.conn.as_mut() else {
            return Err(io::ErrorKind::NotConnected.into());
        };
        let r = timed(&self.cfg, c.call(op, body)).await;
        if r.is_err() {
            self.conn = None;
        }
        r
    }

    /// Length of the longest stored prefix of `keys` (one round trip).
    pub async fn longest_prefix(&mut self, keys: &[BlockKey]) -> io::Result<usize> {
        let body = proto::keys_body(&keys[..keys.len().min(proto::MAX_BATCH)]);
        Ok(wire::decode_u32(&self.call(Op::ExistsPrefix, &body).await?)? as usize)
    }

    /// Presence of each key.
    pub async fn exists(&mut self, keys: &[BlockKey]) -> io::Result<Vec<bool>> {
        let mut out = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(proto::MAX_BATCH) {
            let got = self.call(Op::Exists, &proto::keys_body(chunk)).await?;
            out.extend(proto::parse_bitmap(&got).map_err(wire::invalid)?);
        }
        Ok(out)
    }

    /// Values of `keys` (shared memory when mapped, else through the socket).
    pub async fn get(&mut self, keys: &[BlockKey]) -> io::Result<Vec<Option<Bytes>>> {
        let mut out = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(proto::MAX_BATCH) {
            self.ensure().await?;
            if !self.has_shm() {
                let body = self.call(Op::Get, &proto::keys_body(chunk)).await?;
                out.extend(wire::decode_get(Bytes::from(body), chunk.len())?);
                continue;
            }
            let got = self.call(Op::GetShm, &proto::keys_body(chunk)).await?;
            let leases = wire::decode_leases(&got, chunk.len())?;
            let mut ids = Vec::new();
            let mut vals = Vec::with_capacity(chunk.len());
            let region = self.conn.as_ref().and_then(|c| c.region.as_ref());
            for l in leases {
                vals.push(match (l, region) {
                    (Some((off, len, id)), Some(region)) => {
                        ids.push(id);
                        let mut v = vec![0u8; len as usize];
                        region.read(off, &mut v)?;
                        Some(Bytes::from(v))
                    }
                    _ => None,
                });
            }
            if !ids.is_empty() {
                self.call(Op::Release, &proto::u64s_body(&ids)).await?;
            }
            out.extend(vals);
        }
        Ok(out)
    }

    /// Stores values; a status per item (values over the server's limit are refused locally).
    pub async fn put(&mut self, items: &[(BlockKey, &[u8])]) -> io::Result<Vec<PutStatus>> {
        self.ensure().await?;
        let info = self.info().unwrap_or_default();
        if self.has_shm() {
            return self.put_shm(items).await;
        }
        let plan = wire::PutPlan::new(items, info.max_value);
        let mut got = Vec::with_capacity(plan.send.len());
        for batch in wire::put_batches(&plan.send, info.max_frame) {
            let n = batch.len();
            let mut frame = Vec::new();
            wire::write_put(&mut frame, &plan.send[batch])?;
            got.extend(wire::put_statuses(
                &self.call(Op::Put, &frame[HEADER_LEN..]).await?,
                n,
            )?);
        }
        Ok(plan.merge(got))
    }

    async fn put_shm(&mut self, items: &[(BlockKey, &[u8])]) -> io::Result<Vec<PutStatus>> {
        let mut out = Vec::with_capacity(items.len());
        for chunk in items.chunks(proto::MAX_BATCH) {
            let req: Vec<(BlockKey, u64)> =
                chunk.iter().map(|(k, v)| (*k, v.len() as u64)).collect();
            let body = self.call(Op::PutAlloc, &wire::alloc_body(&req)).await?;
            let got = wire::decode_alloc(&body, chunk.len())?;
            let mut ids = Vec::new();
            if let Some(region) = self.conn.as_ref().and_then(|c| c.region.as_ref()) {
                for ((_, v), &(status, off, id)) in chunk.iter().zip(&got) {
                    if status == PutStatus::Stored {
                        region.write(off, v)?;
                        ids.push(id);
                    }
                }
            }
            let mut failed = Vec::new().into_iter();
            if !ids.is_empty() {
                let body = self.call(Op::PutCommit, &proto::u64s_body(&ids)).await?;
                failed = wire::decode_statuses(&body)?.into_iter();
            }
            for &(status, _, _) in &got {
                let stored = status == PutStatus::Stored;
                let lapsed = stored && failed.next() != Some(PutStatus::Stored);
                out.push(if lapsed { PutStatus::NoSpace } else { status });
            }
        }
        Ok(out)
    }

    /// Deletes keys; returns how many were present.
    pub async fn delete(&mut self, keys: &[BlockKey]) -> io::Result<usize> {
        let body = proto::keys_body(&keys[..keys.len().min(proto::MAX_BATCH)]);
        Ok(wire::decode_u32(&self.call(Op::Delete, &body).await?)? as usize)
    }

    /// Server counters.
    pub async fn stats(&mut self) -> io::Result<Stats> {
        let got = self.call(Op::Stats, &[]).await?;
        let v = proto::Reader::new(&got).u64s().map_err(wire::invalid)?;
        Ok(Stats::from_slice(&v))
    }
}

async fn open(endpoint: &Endpoint, cfg: &ClientConfig) -> io::Result<Conn> {
    let caps = if cfg.shm { CAP_SHM } else { 0 };
    let hello = wire::frame(Op::Hello, &proto::hello_body(cfg.token.as_deref(), caps));
    let (mut io, fd) = match endpoint {
        Endpoint::Tcp(addr) => {
            let s = tokio::time::timeout(cfg.connect_timeout, TcpStream::connect(addr.as_str()))
                .await
                .unwrap_or_else(|_| Err(io::ErrorKind::TimedOut.into()))?;
            s.set_nodelay(true)?;
            let mut s = BufReader::with_capacity(64 << 10, s);
            s.get_mut().write_all(&hello).await?;
            (Io::Tcp(s), None)
        }
        Endpoint::Unix(path) => {
            let mut s = UnixStream::connect(path).await?;
            s.write_all(&hello).await?;
            // The arena fd rides on the reply's first byte: read exactly that byte by recvmsg.
            let mut first = [0u8; 1];
            let fd = loop {
                s.readable().await?;
                match s.try_io(tokio::io::Interest::READABLE, || {
                    recv_with_fd(s.as_fd(), &mut first)
                }) {
                    Ok((0, _)) => return Err(io::ErrorKind::UnexpectedEof.into()),
                    Ok((_, fd)) => break fd,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    Err(e) => return Err(e),
                }
            };
            let mut rest = [0u8; HEADER_LEN - 1];
            s.read_exact(&mut rest).await?;
            let mut hdr = [0u8; HEADER_LEN];
            hdr[0] = first[0];
            hdr[1..].copy_from_slice(&rest);
            let body = read_body(&mut s, &hdr, 1 << 20).await?;
            let info = ServerInfo::decode(&body).map_err(wire::invalid)?;
            let region = match fd {
                Some(fd) if info.caps & CAP_SHM != 0 => Some(SharedRegion::from_fd(fd)?),
                _ => None,
            };
            let io = Io::Unix(BufReader::with_capacity(64 << 10, s));
            return Ok(Conn { io, info, region });
        }
    };
    let body = io.recv().await?;
    let info = ServerInfo::decode(&body).map_err(wire::invalid)?;
    Ok(Conn {
        io,
        info,
        region: fd,
    })
}

async fn read_body<R: AsyncReadExt + Unpin>(
    io: &mut R,
    hdr: &[u8; HEADER_LEN],
    max: u64,
) -> io::Result<Vec<u8>> {
    let h = wire::reply_header(hdr, max)?;
    let mut body = vec![0u8; h.len as usize];
    io.read_exact(&mut body).await?;
    wire::reply_body(h.status, body)
}

impl Io {
    async fn recv(&mut self) -> io::Result<Vec<u8>> {
        let mut hdr = [0u8; HEADER_LEN];
        let max = u64::from(u32::MAX);
        match self {
            Io::Tcp(s) => {
                s.read_exact(&mut hdr).await?;
                read_body(s, &hdr, max).await
            }
            Io::Unix(s) => {
                s.read_exact(&mut hdr).await?;
                read_body(s, &hdr, max).await
            }
        }
    }

    async fn send(&mut self, frame: &[u8]) -> io::Result<()> {
        match self {
            Io::Tcp(s) => s.get_mut().write_all(frame).await,
            Io::Unix(s) => s.get_mut().write_all(frame).await,
        }
    }
}

impl Conn {
    async fn call(&mut self, op: Op, body: &[u8]) -> io::Result<Vec<u8>> {
        self.io.send(&wire::frame(op, body)).await?;
        self.io.recv().await
    }
}
