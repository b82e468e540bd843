//! Test support: the two backends, and a real `redis-server` on a free port.
#![allow(
    dead_code,
    unused_macros,
    reason = "each test binary uses a different part"
)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use brix_admission::{Admission, AdmissionConfig, User};

/// Start of a 60-second window (and so of a 1-second one): 1_700_000_040 = 60 × 28_333_334.
pub const T0: f64 = 1_700_000_040.0;

/// Where a test's counters and users live.
pub enum Backend {
    /// This process.
    Memory,
    /// A private `redis-server`, killed when the test ends.
    Redis(RedisServer),
}

impl Backend {
    /// A fresh Redis backend, or `None` (after printing why) when `redis-server` is missing
    /// outside CI. In CI (`CI` set) a missing server fails the test.
    pub fn redis() -> Option<Self> {
        RedisServer::start().map(Backend::Redis)
    }

    /// The Redis URL, if this is the Redis backend.
    pub fn url(&self) -> Option<String> {
        match self {
            Backend::Memory => None,
            Backend::Redis(server) => Some(server.url()),
        }
    }

    /// An `Admission` on this backend; two from one Redis backend share counters and users,
    /// like two gateway replicas.
    pub async fn admission(&self, mut cfg: AdmissionConfig) -> Admission {
        cfg.redis_url = self.url();
        Admission::connect(cfg).await.expect("connect")
    }

    /// An `Admission` with one stored user.
    pub async fn with_user(&self, cfg: AdmissionConfig, user: User) -> Admission {
        let adm = self.admission(cfg).await;
        adm.put_user(user).await.expect("put user");
        adm
    }
}

/// Defines each listed `async fn(Backend)` as two tests, `memory::<name>` and `redis::<name>`,
/// on a multi-thread runtime.
macro_rules! on_both_backends {
    ($($test:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $test() {
                    super::$test(crate::support::Backend::Memory).await
                }
            )*
        }
        mod redis {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $test() {
                    if let Some(backend) = crate::support::Backend::redis() {
                        super::$test(backend).await
                    }
                }
            )*
        }
    };
}

/// A `redis-server` child process on 127.0.0.1, with no persistence.
pub struct RedisServer {
    child: Child,
    port: u16,
}

impl RedisServer {
    /// Starts a server and waits until it answers `PING`.
    pub fn start() -> Option<Self> {
        if Command::new("redis-server")
            .arg("--version")
            .output()
            .is_err()
        {
            if std::env::var_os("CI").is_some() {
                panic!("redis-server is not installed; CI must install it (see .ci/run)");
            }
            eprintln!("skipping: redis-server is not installed (apt-get install redis-server)");
            return None;
        }
        // The free port can be taken between probing and binding; try a few times.
        for _ in 0..5 {
            if let Some(server) = Self::try_start() {
                return Some(server);
            }
        }
        panic!("redis-server did not start");
    }

    fn try_start() -> Option<Self> {
        let port = TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        let mut server = Self { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if server.pings() {
                return Some(server);
            }
            if matches!(server.child.try_wait(), Ok(Some(_))) {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    fn pings(&self) -> bool {
        let Ok(mut conn) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let mut reply = [0u8; 7];
        conn.set_read_timeout(Some(Duration::from_secs(1))).is_ok()
            && conn.write_all(b"PING\r\n").is_ok()
            && conn.read_exact(&mut reply).is_ok()
            && &reply == b"+PONG\r\n"
    }

    /// `redis://127.0.0.1:<port>/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Stops the server now (tests of Redis failures).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
