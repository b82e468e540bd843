//! The pool server: one TCP port (binary protocol and RESP, told apart by the first byte) and
//! an optional Unix socket whose clients also get the arena memfd for zero-socket transfers.
//!
//! Guardrails: refuses to listen beyond loopback without a token; the Unix socket is mode 0600
//! and only peers of the server's own uid (or root) are served; connections are capped (the
//! rest wait in the kernel backlog); every read and write of a peer has a timeout; request
//! bodies are bounded per frame and, across connections, by a byte budget; a malformed,
//! oversized or unauthenticated frame gets an error reply and the connection closes; leases of a
//! closed connection are dropped.

use std::net::SocketAddr;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;

use crate::proto::{CAP_SHM, ServerInfo, Stats};
use crate::store::{Store, StoreConfig};

#[path = "server/conn.rs"]
mod conn;
#[path = "server/conn_shm.rs"]
mod conn_shm;

/// How a pool server listens and what it holds.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// TCP address (port 0 picks one).
    pub listen: SocketAddr,
    /// Unix socket path for same-host clients (shared memory); `None`: TCP only.
    pub unix: Option<PathBuf>,
    /// Arena size, value limit, policy, leases.
    pub store: StoreConfig,
    /// Shared secret clients must present in HELLO; required beyond loopback.
    pub token: Option<String>,
    /// A connection with no request for this long is closed.
    pub idle_timeout: Duration,
    /// Longest wait for the rest of a frame, or for a reply write to progress.
    pub io_timeout: Duration,
    /// Connections served at once.
    pub max_connections: usize,
    /// Request-body bytes buffered across all connections at once.
    pub max_inflight_bytes: u64,
}

impl ServerConfig {
    /// Defaults around a listen address and a capacity: 64 MiB values, S3-FIFO, no Unix
    /// socket, no token, 300 s idle, 30 s I/O, 1024 connections, 1 GiB of in-flight bodies.
    pub fn new(listen: SocketAddr, capacity_bytes: u64) -> Self {
        Self {
            listen,
            unix: None,
            store: StoreConfig::new(capacity_bytes),
            token: None,
            idle_timeout: Duration::from_secs(300),
            io_timeout: Duration::from_secs(30),
            max_connections: 1024,
            max_inflight_bytes: 1 << 30,
        }
    }

    /// Largest frame body: one value plus its item header, with room for a 64 K-key batch.
    pub fn max_frame(&self) -> u64 {
        self.store.max_value + (1 << 20)
    }
}

/// Why a server did not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Listening beyond loopback without a token.
    #[error(
        "refusing to listen on non-loopback {0} without a token (set --token or BRIX_KVCACHE_TOKEN)"
    )]
    Insecure(SocketAddr),
    /// Configuration out of range.
    #[error("invalid configuration: {0}")]
    Config(&'static str),
    /// The arena could not be created.
    #[error("arena: {0}")]
    Arena(std::io::Error),
    /// A socket could not be bound.
    #[error("bind {0}: {1}")]
    Bind(String, std::io::Error),
}

/// State every connection shares.
#[derive(Debug)]
struct Shared {
    store: Arc<Store>,
    cfg: ServerConfig,
    info: ServerInfo,
    connections: AtomicU64,
    next_owner: AtomicU64,
    /// Request-body budget in KiB.
    body_budget: Semaphore,
    uid: Option<u32>,
}

impl Shared {
    fn stats(&self) -> Stats {
        Stats {
            connections: self.connections.load(Ordering::Relaxed),
            ..self.store.stats()
        }
    }
}

/// A bound pool server; [`Server::run`] or [`Server::spawn`] serves it.
#[derive(Debug)]
pub struct Server {
    tcp: TcpListener,
    unix: Option<(UnixListener, PathBuf)>,
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl Server {
    /// Validates `cfg`, creates the arena and binds the sockets.
    pub async fn bind(cfg: ServerConfig) -> Result<Self, ServerError> {
        if !cfg.listen.ip().is_loopback() && cfg.token.as_deref().is_none_or(str::is_empty) {
            return Err(ServerError::Insecure(cfg.listen));
        }
        if cfg.store.max_value == 0 || cfg.store.max_value > u64::from(u32::MAX) - (1 << 20) {
            return Err(ServerError::Config(
                "max value must be in 1 B ..= 4 GiB - 1 MiB",
            ));
        }
        if cfg.max_connections == 0 || cfg.max_inflight_bytes < cfg.max_frame() {
            return Err(ServerError::Config(
                "need max_connections ≥ 1 and max_inflight_bytes ≥ one frame",
            ));
        }
        let store = Arc::new(Store::new(cfg.store).map_err(ServerError::Arena)?);
        let tcp = TcpListener::bind(cfg.listen)
            .await
            .map_err(|e| ServerError::Bind(cfg.listen.to_string(), e))?;
        let addr = tcp
            .local_addr()
            .map_err(|e| ServerError::Bind(cfg.listen.to_string(), e))?;
        let (unix, uid) = match &cfg.unix {
            Some(path) => {
                let (l, uid) = bind_unix(path)
                    .map_err(|e| ServerError::Bind(path.display().to_string(), e))?;
                (Some((l, path.clone())), Some(uid))
            }
            None => (None, None),
        };
        let info = ServerInfo {
            caps: CAP_SHM,
            capacity: store.stats().capacity_bytes,
            max_value: cfg.store.max_value,
            max_frame: cfg.max_frame(),
            arena_len: store.region().len(),
            lease_ms: cfg.store.lease.as_millis() as u64,
        };
        let budget = usize::try_from(cfg.max_inflight_bytes / 1024)
            .unwrap_or(usize::MAX)
            .min(Semaphore::MAX_PERMITS);
        let shared = Arc::new(Shared {
            store,
            info,
            connections: AtomicU64::new(0),
            next_owner: AtomicU64::new(1),
            body_budget: Semaphore::new(budget),
            uid,
            cfg,
        });
        Ok(Self {
            tcp,
            unix,
            addr,
            shared,
        })
    }

    /// The TCP address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The Unix socket path, if any.
    pub fn unix_path(&self) -> Option<&Path> {
        self.unix.as_ref().map(|(_, p)| p.as_path())
    }

    /// The store (for in-process users and tests).
    pub fn store(&self) -> Arc<Store> {
        self.shared.store.clone()
    }

    /// Serves until `shutdown` completes; then closes every connection and removes the Unix
    /// socket file.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let (stop_tx, stop_rx) = watch::channel(false);
        let conns = Arc::new(Semaphore::new(self.shared.cfg.max_connections));
        let tcp = accept_loop(
            Listener::Tcp(self.tcp),
            self.shared.clone(),
            conns.clone(),
            stop_rx.clone(),
        );
        let unix_path = self.unix.as_ref().map(|(_, p)| p.clone());
        let unix = async {
            match self.unix {
                Some((l, _)) => {
                    accept_loop(Listener::Unix(l), self.shared.clone(), conns, stop_rx).await
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = shutdown => {}
            () = tcp => {}
            () = unix => {}
        }
        let _ = stop_tx.send(true);
        if let Some(p) = unix_path {
            let _ = std::fs::remove_file(p);
        }
    }

    /// Serves on a task; the handle stops it.
    pub fn spawn(self) -> ServerHandle {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let addr = self.addr;
        let store = self.store();
        let unix = self.unix_path().map(Path::to_path_buf);
        let task = tokio::spawn(self.run(async {
            let _ = rx.await;
        }));
        ServerHandle {
            addr,
            unix,
            store,
            stop: Some(tx),
            task,
        }
    }
}

/// A running server: its addresses, its store, and a way to stop it.
#[derive(Debug)]
pub struct ServerHandle {
    addr: SocketAddr,
    unix: Option<PathBuf>,
    store: Arc<Store>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl ServerHandle {
    /// The TCP address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The Unix socket path, if any.
    pub fn unix_path(&self) -> Option<&Path> {
        self.unix.as_deref()
    }

    /// The store.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Stops accepting, closes every connection, and waits for the accept loop to end.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        let _ = (&mut self.task).await;
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

fn bind_unix(path: &Path) -> std::io::Result<(UnixListener, u32)> {
    if let Ok(meta) = std::fs::symlink_metadata(path)
        && meta.file_type().is_socket()
    {
        std::fs::remove_file(path)?;
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    let uid = std::fs::metadata(path)?.uid();
    Ok((listener, uid))
}

/// A listening socket of the server.
enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

impl Listener {
    /// The next connection to serve; `Ok(None)` for a Unix peer of another uid (refused).
    async fn accept(&self, shared: &Shared) -> std::io::Result<Option<conn::Io>> {
        match self {
            Listener::Tcp(l) => {
                let (s, _) = l.accept().await?;
                let _ = s.set_nodelay(true);
                Ok(Some(conn::Io::Tcp(s)))
            }
            Listener::Unix(l) => {
                let (s, _) = l.accept().await?;
                let peer = s.peer_cred().map(|c| c.uid()).ok();
                if peer.is_none_or(|uid| uid != 0 && Some(uid) != shared.uid) {
                    tracing::warn!(?peer, "kvcache: refused a unix peer of another uid");
                    return Ok(None);
                }
                Ok(Some(conn::Io::Unix(s)))
            }
        }
    }
}

/// Serves each accepted connection on its own task while it holds one of `conns`' permits.
async fn accept_loop(
    l: Listener,
    shared: Arc<Shared>,
    conns: Arc<Semaphore>,
    stop: watch::Receiver<bool>,
) {
    loop {
        let Ok(permit) = conns.clone().acquire_owned().await else {
            return;
        };
        match l.accept(&shared).await {
            Ok(Some(io)) => {
                let (shared, stop) = (shared.clone(), stop.clone());
                tokio::spawn(async move {
                    conn::serve(shared, io, stop).await;
                    drop(permit);
                });
            }
            Ok(None) => {}
            Err(e) => accept_error(e).await,
        }
    }
}

/// Accept errors (EMFILE, ECONNABORTED…) are survived: log, back off briefly, go on.
async fn accept_error(e: std::io::Error) {
    tracing::warn!(error = %e, "kvcache: accept failed");
    tokio::time::sleep(Duration::from_millis(50)).await;
}
