//! `brix kvcache serve` as a process: the listening line, a client over TCP and over the Unix
//! socket (shared memory), and refusing a public address without a token.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use brix_kvcache::BlockKey;
use brix_kvcache::blocking::{Client, ClientConfig};
use brix_kvcache::proto::PutStatus;

const BRIX: &str = env!("CARGO_BIN_EXE_brix");

/// A child process killed on drop, so a failing test leaves nothing behind.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn serve_prints_its_addresses_and_serves_tcp_and_shared_memory_clients() {
    let sock = std::env::temp_dir().join(format!("brix-kv-cli-{}.sock", std::process::id()));
    let mut child = Command::new(BRIX)
        .args([
            "kvcache",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--capacity",
            "16MiB",
        ])
        .arg("--unix")
        .arg(&sock)
        .args(["--max-value", "1MiB", "--policy", "lru"])
        .env_remove("BRIX_KVCACHE_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn brix");
    let stdout = child.stdout.take().expect("stdout");
    let _proc = Proc(child);
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("listening line");
    let rest = line
        .trim()
        .strip_prefix("kvcache listening on ")
        .expect("listening line format");
    let (tcp, unix) = rest.split_once(" and ").expect("tcp and unix");
    assert_eq!(unix, format!("unix:{}", sock.display()));

    let mut t = Client::connect(tcp, ClientConfig::default()).expect("tcp client");
    let v = vec![3u8; 300_000];
    assert_eq!(
        t.put(&[(BlockKey(1), &v[..])]).expect("put"),
        vec![PutStatus::Stored]
    );
    let big = vec![0u8; (1 << 20) + 1];
    assert_eq!(
        t.put(&[(BlockKey(2), &big[..])]).expect("put"),
        vec![PutStatus::TooLarge]
    );
    let mut u = Client::connect(unix, ClientConfig::default()).expect("unix client");
    assert!(u.has_shm());
    assert_eq!(
        u.get_one(BlockKey(1)).expect("get").as_deref(),
        Some(&v[..])
    );
    assert_eq!(t.stats().expect("stats").capacity_bytes, 16 << 20);
}

#[test]
fn serve_refuses_a_public_address_without_a_token() {
    let out = Command::new(BRIX)
        .args([
            "kvcache",
            "serve",
            "--listen",
            "0.0.0.0:0",
            "--capacity",
            "1MiB",
        ])
        .env_remove("BRIX_KVCACHE_TOKEN")
        .output()
        .expect("run brix");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("without a token"), "{err}");
}
