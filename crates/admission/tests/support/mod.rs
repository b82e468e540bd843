//! Test support: the two backends, and a real `redis-server` on a free port.
#![allow(
    dead_code,
    unused_macros,
    reason = "each test binary uses a different part"
)]

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

/// The private `redis-server` every Redis test of the workspace uses.
pub use brix_testkit::redis::RedisServer;
