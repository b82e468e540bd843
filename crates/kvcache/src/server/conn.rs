//! One connection: sniff RESP vs binary, then a request/reply loop in order (pipelining works
//! because requests are read only after the previous reply is written; the kernel buffers the
//! rest). Under failure: a timeout, EOF or stop closes the connection; protocol errors get an
//! error reply first; in every case the connection's shm leases are dropped at the end.

use std::io;
use std::os::fd::AsFd;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;

use subtle::ConstantTimeEq;
use tokio::io::{
    AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, Interest,
};
use tokio::net::{TcpStream, UnixStream};
use tokio::sync::watch;

use super::Shared;
use crate::proto::{self, CAP_SHM, HEADER_LEN, MAX_TOKEN, Op, Reader, Status};

/// Largest single `sendfile` call (the kernel caps one call near 2 GiB anyway).
const SENDFILE_MAX: u64 = 1 << 30;

/// A TCP or Unix stream.
#[derive(Debug)]
pub(super) enum Io {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Io::Unix(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Io {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, b: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Io::Tcp(s) => Pin::new(s).poll_write(cx, b),
            Io::Unix(s) => Pin::new(s).poll_write(cx, b),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Tcp(s) => Pin::new(s).poll_flush(cx),
            Io::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Io::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// Why a connection ends.
enum End {
    /// Peer closed, timed out or the server stops: nothing to say.
    Quiet,
    /// A protocol error: reply with it, then close.
    Reply(Status, u8, String),
}

impl From<io::Error> for End {
    fn from(_: io::Error) -> Self {
        End::Quiet
    }
}

struct Conn {
    shared: Arc<Shared>,
    io: BufReader<Io>,
    owner: u64,
    authed: bool,
    shm: bool,
}

pub(super) async fn serve(shared: Arc<Shared>, io: Io, mut stop: watch::Receiver<bool>) {
    shared.connections.fetch_add(1, Ordering::Relaxed);
    let owner = shared.next_owner.fetch_add(1, Ordering::Relaxed);
    let authed = shared.cfg.token.is_none();
    let work = async {
        let mut io = BufReader::new(io);
        let first = match tokio::time::timeout(shared.cfg.idle_timeout, io.fill_buf()).await {
            Ok(Ok(b)) if !b.is_empty() => b[0],
            _ => return,
        };
        if first == b'*' {
            let buffered = io.buffer().to_vec();
            let resp = crate::resp::RespConfig::for_server(&shared.cfg);
            let _ = crate::resp::serve(
                io.into_inner(),
                shared.store.clone(),
                buffered,
                &resp,
                Some(&shared.body_budget),
            )
            .await;
            return;
        }
        if first != proto::MAGIC {
            // Answer a wrong first byte at once rather than waiting for a whole header: text
            // (an inline Redis command, HTTP) gets a RESP error, anything else the binary one.
            let frame = if first.is_ascii_alphabetic() {
                b"-ERR Protocol error: inline commands are not supported\r\n".to_vec()
            } else {
                let msg = format!("bad magic byte 0x{first:02x}");
                let mut f = proto::reply_header(0, Status::BadRequest, msg.len()).to_vec();
                f.extend_from_slice(msg.as_bytes());
                f
            };
            let _ = timed(shared.cfg.io_timeout, io.get_mut().write_all(&frame)).await;
            return;
        }
        let shared = shared.clone();
        let mut c = Conn {
            shared,
            io,
            owner,
            authed,
            shm: false,
        };
        c.run().await;
    };
    // Stop wins over work that is ready at the same time, so a stopped server answers nothing.
    tokio::select! {
        biased;
        _ = stop.wait_for(|s| *s) => {}
        () = work => {}
    }
    shared.store.drop_owner(owner);
    shared.connections.fetch_sub(1, Ordering::Relaxed);
}

impl Conn {
    async fn run(&mut self) {
        if let End::Reply(status, op, msg) = self.requests().await {
            let _ = self.reply(op, status, msg.as_bytes()).await;
        }
    }

    async fn requests(&mut self) -> End {
        let (idle, io_t) = (self.shared.cfg.idle_timeout, self.shared.cfg.io_timeout);
        let max_frame = self.shared.cfg.max_frame();
        loop {
            let mut hdr = [0u8; HEADER_LEN];
            match tokio::time::timeout(idle, self.io.read_exact(&mut hdr[..1])).await {
                Ok(Ok(_)) => {}
                _ => return End::Quiet,
            }
            if timed(io_t, self.io.read_exact(&mut hdr[1..]))
                .await
                .is_err()
            {
                return End::Quiet;
            }
            let h = match proto::parse_request_header(&hdr, max_frame) {
                Ok(h) => h,
                Err(e @ proto::HeaderError::TooLarge { .. }) => {
                    return End::Reply(Status::TooLarge, hdr[2], e.to_string());
                }
                Err(e @ proto::HeaderError::Version(_)) => {
                    return End::Reply(Status::Version, hdr[2], e.to_string());
                }
                Err(e) => return End::Reply(Status::BadRequest, hdr[2], e.to_string()),
            };
            let Some(op) = Op::from_u8(h.op) else {
                return End::Reply(Status::BadRequest, h.op, format!("unknown op {}", h.op));
            };
            if !self.authed && op != Op::Hello {
                return End::Reply(
                    Status::Unauthorized,
                    h.op,
                    "HELLO with a token first".into(),
                );
            }
            let kib = (h.len as usize).div_ceil(1024) as u32;
            let shared = self.shared.clone();
            let Ok(Ok(_permit)) =
                tokio::time::timeout(io_t, shared.body_budget.acquire_many(kib)).await
            else {
                return End::Reply(Status::BadRequest, h.op, "server busy".into());
            };
            let mut body = vec![0u8; h.len as usize];
            if timed(io_t, self.io.read_exact(&mut body)).await.is_err() {
                return End::Quiet;
            }
            if let Err(end) = self.dispatch(op, &body).await {
                return end;
            }
        }
    }

    async fn dispatch(&mut self, op: Op, body: &[u8]) -> Result<(), End> {
        let store = self.shared.store.clone();
        let mut r = Reader::new(body);
        let bad = |e: proto::BodyError| End::Reply(Status::BadRequest, op as u8, e.to_string());
        let reply = match op {
            Op::Hello => return self.hello(&mut r).await,
            Op::ExistsPrefix => {
                let keys = r.keys().map_err(bad)?;
                r.end().map_err(bad)?;
                (store.longest_prefix(&keys) as u32).to_le_bytes().to_vec()
            }
            Op::Exists => {
                let keys = r.keys().map_err(bad)?;
                r.end().map_err(bad)?;
                proto::bitmap_body(&store.exists_many(&keys))
            }
            Op::Get => {
                let keys = r.keys().map_err(bad)?;
                r.end().map_err(bad)?;
                return self.get(&keys).await;
            }
            Op::Put => put_body(&store, &mut r).map_err(bad)?,
            Op::Delete => {
                let keys = r.keys().map_err(bad)?;
                r.end().map_err(bad)?;
                let n = keys.iter().filter(|&&k| store.delete(k)).count() as u32;
                n.to_le_bytes().to_vec()
            }
            Op::Stats => {
                r.end().map_err(bad)?;
                proto::u64s_body(&self.shared.stats().to_vec())
            }
            Op::GetShm | Op::Release | Op::PutAlloc | Op::PutCommit if !self.shm => {
                let msg = "shared memory needs a Unix socket and CAP_SHM in HELLO";
                return Ok(self
                    .reply(op as u8, Status::Unsupported, msg.as_bytes())
                    .await?);
            }
            Op::GetShm => super::conn_shm::get_shm(&store, &mut r, self.owner).map_err(bad)?,
            Op::Release => super::conn_shm::release(&store, &mut r, self.owner).map_err(bad)?,
            Op::PutAlloc => super::conn_shm::alloc(&store, &mut r, self.owner).map_err(bad)?,
            Op::PutCommit => super::conn_shm::commit(&store, &mut r, self.owner).map_err(bad)?,
        };
        Ok(self.reply(op as u8, Status::Ok, &reply).await?)
    }

    async fn hello(&mut self, r: &mut Reader<'_>) -> Result<(), End> {
        let bad =
            |e: proto::BodyError| End::Reply(Status::BadRequest, Op::Hello as u8, e.to_string());
        let n = r.u16().map_err(bad)? as usize;
        if n > MAX_TOKEN {
            return Err(End::Reply(
                Status::BadRequest,
                Op::Hello as u8,
                "token too long".into(),
            ));
        }
        let token = r.bytes(n).map_err(bad)?;
        let caps = r.u32().map_err(bad)?;
        r.end().map_err(bad)?;
        if let Some(want) = &self.shared.cfg.token
            && !bool::from(want.as_bytes().ct_eq(token))
        {
            return Err(End::Reply(
                Status::Unauthorized,
                Op::Hello as u8,
                "bad token".into(),
            ));
        }
        self.authed = true;
        let mut info = self.shared.info;
        let unix = matches!(self.io.get_ref(), Io::Unix(_));
        self.shm = unix && caps & CAP_SHM != 0;
        if !self.shm {
            info.caps &= !CAP_SHM;
            info.arena_len = 0;
        }
        let body = info.encode();
        let head = proto::reply_header(Op::Hello as u8, Status::Ok, body.len());
        if !self.shm {
            let mut frame = head.to_vec();
            frame.extend_from_slice(&body);
            return Ok(self.write(&frame).await?);
        }
        let mut frame = head.to_vec();
        frame.extend_from_slice(&body);
        let Io::Unix(s) = self.io.get_mut() else {
            return Err(End::Quiet);
        };
        let sent = timed(self.shared.cfg.io_timeout, async {
            loop {
                s.writable().await?;
                let region = self.shared.store.region();
                match s.try_io(tokio::io::Interest::WRITABLE, || {
                    crate::shm::send_with_fd(s.as_fd(), &frame, region.fd())
                }) {
                    Ok(n) => return Ok(n),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
            }
        })
        .await?;
        Ok(self.write(&frame[sent..]).await?)
    }

    /// GET: pins every hit first (so the reply length is known and nothing is evicted while
    /// it is sent), then streams each value through one reusable buffer.
    async fn get(&mut self, keys: &[crate::BlockKey]) -> Result<(), End> {
        let store = self.shared.store.clone();
        let pins = Pins {
            store: &store,
            pins: keys.iter().map(|&k| store.pin(k)).collect(),
        };
        let total: u64 = 4 + pins
            .pins
            .iter()
            .map(|p| 1 + p.map_or(0, |p| 8 + p.len))
            .sum::<u64>();
        if total > u64::from(u32::MAX) {
            return Err(End::Reply(
                Status::TooLarge,
                Op::Get as u8,
                "reply over 4 GiB".into(),
            ));
        }
        let mut meta = Vec::with_capacity(HEADER_LEN + 4);
        meta.extend_from_slice(&proto::reply_header(
            Op::Get as u8,
            Status::Ok,
            total as usize,
        ));
        meta.extend_from_slice(&(keys.len() as u32).to_le_bytes());
        for p in &pins.pins {
            match p {
                None => meta.push(0),
                Some(p) => {
                    meta.push(1);
                    meta.extend_from_slice(&p.len.to_le_bytes());
                    self.write(&meta).await?;
                    meta.clear();
                    // The value is pinned: the kernel sends it straight from the arena's pages.
                    self.send_arena(p.offset, p.len).await?;
                }
            }
        }
        self.write(&meta).await?;
        Ok(())
    }

    /// Sends `len` arena bytes at `offset` with `sendfile(2)` from the memfd: no copy through
    /// a user-space buffer, each call bounded by the I/O timeout.
    async fn send_arena(&mut self, mut offset: u64, len: u64) -> io::Result<()> {
        let store = self.shared.store.clone();
        let fd = store.region().fd();
        let io_t = self.shared.cfg.io_timeout;
        let end = offset + len;
        while offset < end {
            let n = (end - offset).min(SENDFILE_MAX) as usize;
            let sent = timed(io_t, async {
                loop {
                    let r = match self.io.get_mut() {
                        Io::Tcp(s) => {
                            s.writable().await?;
                            s.try_io(Interest::WRITABLE, || {
                                Ok(rustix::fs::sendfile(s.as_fd(), fd, Some(&mut offset), n)?)
                            })
                        }
                        Io::Unix(s) => {
                            s.writable().await?;
                            s.try_io(Interest::WRITABLE, || {
                                Ok(rustix::fs::sendfile(s.as_fd(), fd, Some(&mut offset), n)?)
                            })
                        }
                    };
                    match r {
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                        r => return r,
                    }
                }
            })
            .await?;
            if sent == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
        }
        Ok(())
    }

    async fn reply(&mut self, op: u8, status: Status, body: &[u8]) -> io::Result<()> {
        let mut frame = Vec::with_capacity(HEADER_LEN + body.len());
        frame.extend_from_slice(&proto::reply_header(op, status, body.len()));
        frame.extend_from_slice(body);
        self.write(&frame).await
    }

    async fn write(&mut self, b: &[u8]) -> io::Result<()> {
        if b.is_empty() {
            return Ok(());
        }
        timed(self.shared.cfg.io_timeout, self.io.get_mut().write_all(b)).await
    }
}

/// Unpins on drop, so a reply cut short by an error still gives its pins back.
struct Pins<'a> {
    store: &'a crate::store::Store,
    pins: Vec<Option<crate::store::Pinned>>,
}

impl Drop for Pins<'_> {
    fn drop(&mut self) {
        for p in self.pins.drain(..).flatten() {
            self.store.unpin(p);
        }
    }
}

fn put_body(store: &crate::store::Store, r: &mut Reader<'_>) -> Result<Vec<u8>, proto::BodyError> {
    let n = r.count(24)?;
    let mut out = Vec::with_capacity(4 + n);
    out.extend_from_slice(&(n as u32).to_le_bytes());
    for _ in 0..n {
        let key = r.key()?;
        let len = usize::try_from(r.u64()?).map_err(|_| proto::BodyError("length"))?;
        let data = r.bytes(len)?;
        out.push(store.put(key, data) as u8);
    }
    r.end()?;
    Ok(out)
}

async fn timed<T>(t: Duration, f: impl Future<Output = io::Result<T>>) -> io::Result<T> {
    tokio::time::timeout(t, f)
        .await
        .unwrap_or_else(|_| Err(io::ErrorKind::TimedOut.into()))
}
