//! A synchronous pool client (std::net, no tokio) for engine threads: connect, read and write
//! timeouts on every call; over a Unix socket it maps the server's arena and moves values with
//! one memcpy (GET_SHM / PUT_ALLOC + PUT_COMMIT) instead of through the socket.
//!
//! Under failure: any I/O or protocol error is returned and drops the connection; the next call
//! reconnects (bounded by the connect timeout), so a restarted server is picked up.

use std::io::{self, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;

use crate::BlockKey;
use crate::proto::{self, CAP_SHM, HEADER_LEN, Op, PutStatus, ServerInfo, Stats};
use crate::shm::{SharedRegion, recv_with_fd};
use crate::wire;

/// Where a server listens: `host:port`, or `unix:/path` for the same-host socket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// TCP `host:port`.
    Tcp(String),
    /// Unix socket path.
    Unix(PathBuf),
}

impl Endpoint {
    /// Parses `unix:/path` or `host:port`.
    pub fn parse(s: &str) -> Self {
        match s.strip_prefix("unix:") {
            Some(p) => Self::Unix(PathBuf::from(p)),
            None => Self::Tcp(s.to_string()),
        }
    }
}

/// Client settings.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Token for HELLO (when the server has one).
    pub token: Option<String>,
    /// Longest wait to connect.
    pub connect_timeout: Duration,
    /// Longest wait for any read or write to progress.
    pub io_timeout: Duration,
    /// Ask for the shared arena on Unix sockets.
    pub shm: bool,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            token: None,
            connect_timeout: Duration::from_secs(2),
            io_timeout: Duration::from_secs(10),
            shm: true,
        }
    }
}

#[derive(Debug)]
enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Read for Stream {
    fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(b),
            Stream::Unix(s) => s.read(b),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(b),
            Stream::Unix(s) => s.write(b),
        }
    }

    fn write_vectored(&mut self, b: &[io::IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write_vectored(b),
            Stream::Unix(s) => s.write_vectored(b),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[derive(Debug)]
struct Conn {
    io: BufReader<Stream>,
    info: ServerInfo,
    region: Option<SharedRegion>,
    /// Replies to RELEASE and PUT_COMMIT frames sent without waiting; read before the next.
    owed: usize,
    /// Shared-memory puts whose deferred commit failed (lease lapsed): stored, then lost.
    lost_commits: u64,
}

/// A synchronous connection to one pool server (reconnects lazily after an error).
#[derive(Debug)]
pub struct Client {
    endpoint: Endpoint,
    cfg: ClientConfig,
    conn: Option<Conn>,
}

impl Client {
    /// Connects and says HELLO.
    pub fn connect(endpoint: &str, cfg: ClientConfig) -> io::Result<Self> {
        let mut c = Self {
            endpoint: Endpoint::parse(endpoint),
            cfg,
            conn: None,
        };
        c.conn()?;
        Ok(c)
    }

    /// What the server said in HELLO (after a successful connect).
    pub fn info(&self) -> Option<ServerInfo> {
        self.conn.as_ref().map(|c| c.info)
    }

    /// Whether values move through shared memory.
    pub fn has_shm(&self) -> bool {
        self.conn.as_ref().is_some_and(|c| c.region.is_some())
    }

    fn conn(&mut self) -> io::Result<&mut Conn> {
        if self.conn.is_none() {
            self.conn = Some(open(&self.endpoint, &self.cfg)?);
        }
        self.conn
            .as_mut()
            .ok_or_else(|| io::Error::other("unreachable"))
    }

    /// Runs `f` on the connection; an error drops it so the next call reconnects.
    fn with<T>(&mut self, f: impl FnOnce(&mut Conn) -> io::Result<T>) -> io::Result<T> {
        let r = f(self.conn()?);
        if r.is_err() {
            self.conn = None;
        }
        r
    }

    /// Length of the longest stored prefix of `keys` (one round trip).
    pub fn longest_prefix(&mut self, keys: &[BlockKey]) -> io::Result<usize> {
        let mut n = 0;
        for chunk in keys.chunks(proto::MAX_BATCH) {
            let got = self.with(|c| c.call(Op::ExistsPrefix, &proto::keys_body(chunk)))?;
            let m = wire::decode_u32(&got)? as usize;
            n += m;
            if m < chunk.len() {
                break;
            }
        }
        Ok(n)
    }

    /// Presence of each key.
    pub fn exists(&mut self, keys: &[BlockKey]) -> io::Result<Vec<bool>> {
        let mut out = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(proto::MAX_BATCH) {
            let got = self.with(|c| c.call(Op::Exists, &proto::keys_body(chunk)))?;
            out.extend(proto::parse_bitmap(&got).map_err(wire::invalid)?);
        }
        Ok(out)
    }

    /// Values of `keys` (shared memory when mapped, else through the socket).
    pub fn get(&mut self, keys: &[BlockKey]) -> io::Result<Vec<Option<Bytes>>> {
        let mut out = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(proto::MAX_BATCH) {
            out.extend(self.with(|c| c.get(chunk))?);
        }
        Ok(out)
    }

    /// One value.
    pub fn get_one(&mut self, key: BlockKey) -> io::Result<Option<Bytes>> {
        Ok(self.get(&[key])?.pop().flatten())
    }

    /// Copies one value into `out` (no allocation: what an engine does into its own buffers);
    /// returns its length, `None` on a miss. Fails if `out` is too small. Shared memory when
    /// mapped, else through the socket.
    pub fn get_into(&mut self, key: BlockKey, out: &mut [u8]) -> io::Result<Option<usize>> {
        self.with(|c| c.get_into(key, out))
    }

    /// Values through the socket even when shared memory is mapped.
    pub fn get_tcp(&mut self, keys: &[BlockKey]) -> io::Result<Vec<Option<Bytes>>> {
        self.with(|c| c.get_socket(keys))
    }

    /// Sends one GET per key before reading any reply (pipelining), then reads them in order.
    pub fn get_pipelined(&mut self, keys: &[BlockKey]) -> io::Result<Vec<Option<Bytes>>> {
        self.with(|c| {
            let mut frames = Vec::with_capacity(keys.len() * 28);
            for k in keys {
                frames.extend_from_slice(&wire::frame(Op::Get, &proto::keys_body(&[*k])));
            }
            c.io.get_mut().write_all(&frames)?;
            let mut out = Vec::with_capacity(keys.len());
            for _ in keys {
                out.extend(wire::decode_get(Bytes::from(c.recv()?), 1)?);
            }
            Ok(out)
        })
    }

    /// Stores values; a status per item (values over the server's limit are refused locally).
    pub fn put(&mut self, items: &[(BlockKey, &[u8])]) -> io::Result<Vec<PutStatus>> {
        self.with(|c| {
            if c.region.is_some() {
                return c.put_shm(items);
            }
            c.put_socket(items)
        })
    }

    /// Stores values through the socket even when shared memory is mapped.
    pub fn put_tcp(&mut self, items: &[(BlockKey, &[u8])]) -> io::Result<Vec<PutStatus>> {
        self.with(|c| c.put_socket(items))
    }

    /// Deletes keys; returns how many were present.
    pub fn delete(&mut self, keys: &[BlockKey]) -> io::Result<usize> {
        let got = self.with(|c| c.call(Op::Delete, &proto::keys_body(keys)))?;
        Ok(wire::decode_u32(&got)? as usize)
    }

    /// Shared-memory puts reported stored whose deferred commit then failed (their lease
    /// lapsed before the commit arrived): on this connection, as far as replies were read.
    pub fn lost_commits(&self) -> u64 {
        self.conn.as_ref().map_or(0, |c| c.lost_commits)
    }

    /// Server counters.
    pub fn stats(&mut self) -> io::Result<Stats> {
        let got = self.with(|c| c.call(Op::Stats, &[]))?;
        let mut r = proto::Reader::new(&got);
        let v = r.u64s().map_err(wire::invalid)?;
        Ok(Stats::from_slice(&v))
    }
}

fn open(endpoint: &Endpoint, cfg: &ClientConfig) -> io::Result<Conn> {
    let stream = match endpoint {
        Endpoint::Tcp(addr) => {
            let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
            let mut got = None;
            for a in addr.to_socket_addrs()? {
                match TcpStream::connect_timeout(&a, cfg.connect_timeout) {
                    Ok(s) => {
                        got = Some(s);
                        break;
                    }
                    Err(e) => last = e,
                }
            }
            let s = got.ok_or(last)?;
            s.set_nodelay(true)?;
            s.set_read_timeout(Some(cfg.io_timeout))?;
            s.set_write_timeout(Some(cfg.io_timeout))?;
            Stream::Tcp(s)
        }
        Endpoint::Unix(path) => {
            let s = UnixStream::connect(path)?;
            s.set_read_timeout(Some(cfg.io_timeout))?;
            s.set_write_timeout(Some(cfg.io_timeout))?;
            Stream::Unix(s)
        }
    };
    let want_shm = cfg.shm && matches!(stream, Stream::Unix(_));
    let caps = if want_shm { CAP_SHM } else { 0 };
    let mut io = BufReader::with_capacity(64 << 10, stream);
    io.get_mut().write_all(&wire::frame(
        Op::Hello,
        &proto::hello_body(cfg.token.as_deref(), caps),
    ))?;
    // The arena fd rides on the first byte of the reply: read that byte with recvmsg.
    let mut fd = None;
    let mut first = [0u8; 1];
    if let Stream::Unix(s) = io.get_ref() {
        let (n, got) = recv_with_fd(s.as_fd(), &mut first)?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        fd = got;
    } else {
        io.read_exact(&mut first)?;
    }
    let mut hdr = [0u8; HEADER_LEN];
    hdr[0] = first[0];
    io.read_exact(&mut hdr[1..])?;
    let body = read_body(&mut io, &hdr, 1 << 20)?;
    let info = ServerInfo::decode(&body).map_err(wire::invalid)?;
    let region = match fd {
        Some(fd) if info.caps & CAP_SHM != 0 => Some(SharedRegion::from_fd(fd)?),
        _ => None,
    };
    Ok(Conn {
        io,
        info,
        region,
        owed: 0,
        lost_commits: 0,
    })
}

fn read_body(io: &mut impl Read, hdr: &[u8; HEADER_LEN], max: u64) -> io::Result<Vec<u8>> {
    let h = wire::reply_header(hdr, max)?;
    let mut body = vec![0u8; h.len as usize];
    io.read_exact(&mut body)?;
    wire::reply_body(h.status, body)
}

impl Conn {
    fn max_reply(&self) -> u64 {
        u64::from(u32::MAX)
    }

    fn recv(&mut self) -> io::Result<Vec<u8>> {
        while self.owed > 0 {
            self.owed -= 1;
            let (op, body) = self.recv_one()?;
            if op == Op::PutCommit as u8 {
                let lost = wire::decode_statuses(&body)?
                    .iter()
                    .filter(|s| **s != PutStatus::Stored)
                    .count();
                self.lost_commits += lost as u64;
            }
        }
        Ok(self.recv_one()?.1)
    }

    fn recv_one(&mut self) -> io::Result<(u8, Vec<u8>)> {
        let mut hdr = [0u8; HEADER_LEN];
        self.io.read_exact(&mut hdr)?;
        let max = self.max_reply();
        Ok((hdr[3], read_body(&mut self.io, &hdr, max)?))
    }

    fn call(&mut self, op: Op, body: &[u8]) -> io::Result<Vec<u8>> {
        self.io.get_mut().write_all(&wire::frame(op, body))?;
        self.recv()
    }

    fn get(&mut self, keys: &[BlockKey]) -> io::Result<Vec<Option<Bytes>>> {
        if self.region.is_none() {
            return self.get_socket(keys);
        }
        let leases =
            wire::decode_leases(&self.call(Op::GetShm, &proto::keys_body(keys))?, keys.len())?;
        let mut out = Vec::with_capacity(keys.len());
        let mut ids = Vec::new();
        let mut copied = Ok(());
        for l in &leases {
            out.push(l.map(|(off, len, id)| {
                ids.push(id);
                let mut v = vec![0u8; len as usize];
                if let Some(region) = &self.region
                    && let Err(e) = region.read(off, &mut v)
                {
                    copied = Err(e);
                }
                Bytes::from(v)
            }));
        }
        if !ids.is_empty() {
            self.release(&ids)?;
        }
        copied.map(|()| out)
    }

    fn get_into(&mut self, key: BlockKey, out: &mut [u8]) -> io::Result<Option<usize>> {
        let too_small =
            || io::Error::new(io::ErrorKind::InvalidInput, "buffer smaller than the value");
        if self.region.is_none() {
            let v = self.get_socket(&[key])?.pop().flatten();
            return match v {
                Some(v) if v.len() <= out.len() => {
                    out[..v.len()].copy_from_slice(&v);
                    Ok(Some(v.len()))
                }
                Some(_) => Err(too_small()),
                None => Ok(None),
            };
        }
        let got = self.call(Op::GetShm, &proto::keys_body(&[key]))?;
        let Some((off, len, id)) = wire::decode_leases(&got, 1)?.pop().flatten() else {
            return Ok(None);
        };
        let len = len as usize;
        let copied = match (&self.region, out.get_mut(..len)) {
            (Some(region), Some(dst)) => region.read(off, dst),
            _ => Err(too_small()),
        };
        self.release(&[id])?;
        copied.map(|()| Some(len))
    }

    /// Sends RELEASE without waiting for its reply (read before the next one), so a shm get
    /// costs one round trip; the server unpins as soon as the frame arrives.
    fn release(&mut self, ids: &[u64]) -> io::Result<()> {
        self.io
            .get_mut()
            .write_all(&wire::frame(Op::Release, &proto::u64s_body(ids)))?;
        self.owed += 1;
        Ok(())
    }

    fn get_socket(&mut self, keys: &[BlockKey]) -> io::Result<Vec<Option<Bytes>>> {
        let body = self.call(Op::Get, &proto::keys_body(keys))?;
        wire::decode_get(Bytes::from(body), keys.len())
    }

    fn put_socket(&mut self, items: &[(BlockKey, &[u8])]) -> io::Result<Vec<PutStatus>> {
        let plan = wire::PutPlan::new(items, self.info.max_value);
        let mut got = Vec::with_capacity(plan.send.len());
        for batch in wire::put_batches(&plan.send, self.info.max_frame) {
            let n = batch.len();
            wire::write_put(self.io.get_mut(), &plan.send[batch])?;
            got.extend(wire::put_statuses(&self.recv()?, n)?);
        }
        Ok(plan.merge(got))
    }

    fn put_shm(&mut self, items: &[(BlockKey, &[u8])]) -> io::Result<Vec<PutStatus>> {
        let mut out = Vec::with_capacity(items.len());
        for chunk in items.chunks(proto::MAX_BATCH) {
            let req: Vec<(BlockKey, u64)> =
                chunk.iter().map(|(k, v)| (*k, v.len() as u64)).collect();
            let got = wire::decode_alloc(
                &self.call(Op::PutAlloc, &wire::alloc_body(&req))?,
                chunk.len(),
            )?;
            let mut ids = Vec::new();
            for ((_, v), &(status, off, id)) in chunk.iter().zip(&got) {
                if status == PutStatus::Stored {
                    if let Some(region) = &self.region {
                        region.write(off, v)?;
                    }
                    ids.push(id);
                }
            }
            // The commit is sent without waiting (one round trip per put); it can only fail
            // if the lease lapsed, which `lost_commits` counts when its reply is read.
            if !ids.is_empty() {
                let frame = wire::frame(Op::PutCommit, &proto::u64s_body(&ids));
                self.io.get_mut().write_all(&frame)?;
                self.owed += 1;
            }
            out.extend(got.iter().map(|g| g.0));
        }
        Ok(out)
    }
}
