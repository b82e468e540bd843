//! Helpers for the pool's socket tests: servers on 127.0.0.1:0 (and a private Unix socket),
//! and waiting on conditions instead of sleeping.
#![allow(dead_code, missing_docs)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use brix_kvcache::BlockKey;
use brix_kvcache::server::{Server, ServerConfig, ServerHandle};

/// Capacity of test servers unless a test says otherwise.
pub const CAP: u64 = 64 << 20;

/// A unique Unix socket path in the temp dir (removed by the server on shutdown).
pub fn sock_path() -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!("brix-kv-test-{}-{n}.sock", std::process::id()))
}

/// A config on 127.0.0.1:0 with `CAP` bytes and 1 MiB values.
pub fn config() -> ServerConfig {
    let mut cfg = ServerConfig::new("127.0.0.1:0".parse().expect("addr"), CAP);
    cfg.store.max_value = 1 << 20;
    cfg.io_timeout = Duration::from_secs(5);
    cfg
}

/// [`config`] plus a private Unix socket (the shared-memory path).
pub fn unix_config() -> ServerConfig {
    let mut cfg = config();
    cfg.unix = Some(sock_path());
    cfg
}

pub async fn start(cfg: ServerConfig) -> ServerHandle {
    Server::bind(cfg).await.expect("bind").spawn()
}

pub fn key(i: u64) -> BlockKey {
    BlockKey(u128::from(i).wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835) ^ 0xABCD)
}

/// A value that names its key, so a mix-up shows.
pub fn value(i: u64, len: usize) -> Vec<u8> {
    (0..len).map(|j| (i as usize * 31 + j) as u8).collect()
}

/// Polls `f` until it holds (10 s at most).
pub async fn eventually(mut f: impl FnMut() -> bool) -> bool {
    for _ in 0..1000 {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}
