//! The Redis-protocol subset over real sockets, driven by the `redis` crate (a real client: its
//! handshake, pipelines and RESP3) and by raw bytes for what no client sends on purpose.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use brix_kvcache::resp;
use brix_kvcache::server::ServerHandle;
use redis::aio::MultiplexedConnection;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::task::JoinHandle;

mod common;

/// The test servers' value limit (`common::config`).
const MAX_VALUE: usize = 1 << 20;

struct Pool {
    addr: SocketAddr,
    handle: ServerHandle,
}

impl Pool {
    fn entries(&self) -> u64 {
        self.handle.store().stats().entries
    }
}

/// A real pool server (binary protocol and RESP on one port) on 127.0.0.1:0.
async fn start(token: Option<&str>) -> Pool {
    let mut cfg = common::config();
    assert_eq!(cfg.store.max_value, MAX_VALUE as u64);
    cfg.token = token.map(str::to_string);
    let handle = common::start(cfg).await;
    Pool {
        addr: handle.local_addr(),
        handle,
    }
}

async fn client(url: String) -> MultiplexedConnection {
    let client = redis::Client::open(url).expect("url");
    tokio::time::timeout(
        Duration::from_secs(10),
        client.get_multiplexed_async_connection(),
    )
    .await
    .expect("connect in time")
    .expect("connect")
}

fn value(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// Sends raw bytes and reads until the server closes (bounded by a timeout).
async fn raw(addr: SocketAddr, req: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(req).await.expect("write");
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .expect("server closes in time")
        .expect("read");
    out
}

#[tokio::test]
async fn set_get_mget_exists_del_round_trip_binary_values() {
    for proto in ["resp2", "resp3"] {
        let pool = start(None).await;
        let mut c = client(format!("redis://{}/?protocol={proto}", pool.addr)).await;
        let big = value(7, MAX_VALUE);
        let small = b"\r\n\0$-1\r\n".to_vec();
        let () = redis::cmd("SET")
            .arg("chunk@a")
            .arg(&big)
            .query_async(&mut c)
            .await
            .expect("set big");
        let () = redis::cmd("SET")
            .arg("chunk@b")
            .arg(&small)
            .query_async(&mut c)
            .await
            .expect("set");
        let got: Vec<u8> = redis::cmd("GET")
            .arg("chunk@a")
            .query_async(&mut c)
            .await
            .expect("get");
        assert!(got == big, "{proto}: big value comes back byte-equal");
        let miss: Option<Vec<u8>> = redis::cmd("GET")
            .arg("nope")
            .query_async(&mut c)
            .await
            .expect("get");
        assert_eq!(miss, None, "{proto}");
        let many: Vec<Option<Vec<u8>>> = redis::cmd("MGET")
            .arg("chunk@b")
            .arg("nope")
            .arg("chunk@a")
            .query_async(&mut c)
            .await
            .expect("mget");
        assert_eq!(
            many,
            vec![Some(small.clone()), None, Some(big.clone())],
            "{proto}"
        );
        let n: i64 = redis::cmd("EXISTS")
            .arg("chunk@a")
            .arg("nope")
            .arg("chunk@b")
            .query_async(&mut c)
            .await
            .expect("exists");
        assert_eq!(n, 2, "{proto}");
        let n: i64 = redis::cmd("DBSIZE")
            .query_async(&mut c)
            .await
            .expect("dbsize");
        assert_eq!((n, pool.entries()), (2, 2), "{proto}");
        // SET replaces (Redis semantics) although the store keeps first values.
        let () = redis::cmd("SET")
            .arg("chunk@b")
            .arg("v2")
            .query_async(&mut c)
            .await
            .expect("overwrite");
        let got: Vec<u8> = redis::cmd("GET")
            .arg("chunk@b")
            .query_async(&mut c)
            .await
            .expect("get");
        assert_eq!(got, b"v2");
        let nx: Option<String> = redis::cmd("SET")
            .arg("chunk@b")
            .arg("v3")
            .arg("NX")
            .query_async(&mut c)
            .await
            .expect("nx");
        assert_eq!(nx, None, "{proto}: NX on a present key sets nothing");
        let n: i64 = redis::cmd("DEL")
            .arg("chunk@a")
            .arg("nope")
            .query_async(&mut c)
            .await
            .expect("del");
        assert_eq!(n, 1);
        let n: i64 = redis::cmd("UNLINK")
            .arg("chunk@b")
            .query_async(&mut c)
            .await
            .expect("unlink");
        assert_eq!((n, pool.entries()), (1, 0), "{proto}");
        let () = redis::cmd("MSET")
            .arg("x")
            .arg("1")
            .arg("y")
            .arg(&big[..1000])
            .query_async(&mut c)
            .await
            .expect("mset");
        let got: Vec<u8> = redis::cmd("GET")
            .arg("y")
            .query_async(&mut c)
            .await
            .expect("get");
        assert_eq!(got, &big[..1000]);
    }
}

#[tokio::test]
async fn pipelines_answer_in_order() {
    let pool = start(None).await;
    let mut c = client(format!("redis://{}", pool.addr)).await;
    let mut p = redis::pipe();
    for i in 0..200u32 {
        p.cmd("SET")
            .arg(format!("k{i}"))
            .arg(value(i as u8, 20_000 + i as usize))
            .ignore();
    }
    for i in 0..200u32 {
        p.cmd("GET").arg(format!("k{i}"));
    }
    let got: Vec<Vec<u8>> = p.query_async(&mut c).await.expect("pipeline");
    assert_eq!(got.len(), 200);
    for (i, v) in got.iter().enumerate() {
        assert!(*v == value(i as u8, 20_000 + i), "reply {i} in order");
    }
    // The same pipeline as one raw write: every reply arrives before the close after QUIT.
    let mut req = Vec::new();
    for _ in 0..50 {
        req.extend_from_slice(b"*1\r\n$4\r\nPING\r\n*2\r\n$6\r\nEXISTS\r\n$2\r\nk1\r\n");
    }
    req.extend_from_slice(b"*1\r\n$4\r\nQUIT\r\n");
    let out = raw(pool.addr, &req).await;
    assert_eq!(
        out,
        [b"+PONG\r\n:1\r\n".repeat(50), b"+OK\r\n".to_vec()].concat()
    );
}

#[tokio::test]
async fn auth_is_the_token() {
    let pool = start(Some("s3cret")).await;
    let mut open = client(format!("redis://{}", pool.addr)).await;
    let err = redis::cmd("GET")
        .arg("k")
        .query_async::<Option<Vec<u8>>>(&mut open)
        .await
        .expect_err("no auth");
    assert_eq!(err.code(), Some("NOAUTH"), "{err}");
    let err = redis::Client::open(format!("redis://:wrong@{}", pool.addr))
        .expect("url")
        .get_multiplexed_async_connection()
        .await
        .expect_err("wrong password");
    assert!(err.to_string().contains("authentication failed"), "{err}");
    for proto in ["resp2", "resp3"] {
        let mut c = client(format!(
            "redis://default:s3cret@{}/?protocol={proto}",
            pool.addr
        ))
        .await;
        let () = redis::cmd("SET")
            .arg("k")
            .arg("v")
            .query_async(&mut c)
            .await
            .expect("set after auth");
    }
    assert_eq!(pool.entries(), 1);
    let out = raw(
        pool.addr,
        b"*2\r\n$4\r\nAUTH\r\n$5\r\nwrong\r\n*1\r\n$4\r\nQUIT\r\n",
    )
    .await;
    assert_eq!(
        out,
        b"-WRONGPASS invalid username-password pair or user is disabled.\r\n+OK\r\n"
    );
    let out = raw(
        pool.addr,
        b"*2\r\n$4\r\nAUTH\r\n$6\r\ns3cret\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*1\r\n$4\r\nQUIT\r\n",
    )
    .await;
    assert_eq!(out, b"+OK\r\n$1\r\nv\r\n+OK\r\n");
}

#[tokio::test]
async fn handshake_and_admin_commands() {
    let pool = start(None).await;
    let req = b"*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*2\r\n$6\r\nSELECT\r\n$1\r\n1\r\n\
*4\r\n$6\r\nCLIENT\r\n$7\r\nSETINFO\r\n$8\r\nLIB-NAME\r\n$4\r\ntest\r\n*2\r\n$4\r\nECHO\r\n$2\r\nhi\r\n\
*1\r\n$8\r\nFLUSHALL\r\n*2\r\n$5\r\nHELLO\r\n$1\r\n4\r\n*1\r\n$4\r\nQUIT\r\n";
    let out = String::from_utf8(raw(pool.addr, req).await).expect("utf8");
    assert!(
        out.starts_with("%7\r\n$6\r\nserver\r\n$12\r\nbrix-kvcache\r\n"),
        "{out}"
    );
    let tail = out
        .split("$7\r\nmodules\r\n*0\r\n")
        .nth(1)
        .expect("hello reply ends with modules");
    assert_eq!(
        tail,
        "_\r\n-ERR DB index is out of range\r\n+OK\r\n$2\r\nhi\r\n-ERR unknown command 'FLUSHALL'\r\n\
-NOPROTO unsupported protocol version\r\n+OK\r\n"
    );
    let mut c = client(format!("redis://{}", pool.addr)).await;
    let info: String = redis::cmd("INFO").query_async(&mut c).await.expect("info");
    assert!(
        info.contains("redis_version:") && info.contains("db0:keys=0"),
        "{info}"
    );
}

#[tokio::test]
async fn malformed_and_oversized_requests_close_only_their_connection() {
    let pool = start(None).await;
    let mut c = client(format!("redis://{}", pool.addr)).await;
    let () = redis::cmd("SET")
        .arg("keep")
        .arg("me")
        .query_async(&mut c)
        .await
        .expect("set");
    let cases: &[(&[u8], &str)] = &[
        // A first byte other than `*` selects the binary protocol: inline text only after RESP.
        (
            b"*1\r\n$4\r\nPING\r\nPING\r\n",
            "+PONG\r\n-ERR Protocol error: inline commands are not supported",
        ),
        (b"*1\r\n$-5\r\n", "-ERR Protocol error: invalid bulk length"),
        (b"*x\r\n", "-ERR Protocol error: invalid multibulk length"),
        (
            b"*999999\r\n",
            "-ERR Protocol error: argument count 999999 is over the limit",
        ),
        (
            b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$99999999999\r\n",
            "-ERR Protocol error: bulk length 99999999999 is over",
        ),
        // Inline text as the very first bytes (shorter than a binary header) is answered at
        // once, not left waiting for a header that never comes.
        (
            b"PING\r\n",
            "-ERR Protocol error: inline commands are not supported",
        ),
        // A valid command first: its reply comes back before the error.
        (
            b"*1\r\n$4\r\nPING\r\n*1\r\n+PING\r\n",
            "+PONG\r\n-ERR Protocol error: expected '$'",
        ),
    ];
    for (req, want) in cases {
        let out = String::from_utf8(raw(pool.addr, req).await).expect("utf8");
        assert!(
            out.starts_with(want) && out.ends_with("\r\n"),
            "{:?} -> {out:?}",
            String::from_utf8_lossy(req)
        );
    }
    // A value one byte over max-value: refused from its header, before any byte of it is read.
    let mut s = TcpStream::connect(pool.addr).await.expect("connect");
    let head = format!("*3\r\n$3\r\nSET\r\n$3\r\nbig\r\n${}\r\n", MAX_VALUE + 1);
    s.write_all(head.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .expect("closed")
        .expect("read");
    assert!(
        out.starts_with(b"-ERR Protocol error: bulk length"),
        "{}",
        String::from_utf8_lossy(&out)
    );
    // A client that disconnects mid-value stores nothing.
    let mut s = TcpStream::connect(pool.addr).await.expect("connect");
    s.write_all(b"*3\r\n$3\r\nSET\r\n$4\r\nhalf\r\n$100\r\nonly-some")
        .await
        .expect("write");
    drop(s);
    let n: i64 = redis::cmd("EXISTS")
        .arg("half")
        .query_async(&mut c)
        .await
        .expect("exists");
    assert_eq!(n, 0);
    let got: Vec<u8> = redis::cmd("GET")
        .arg("keep")
        .query_async(&mut c)
        .await
        .expect("still serving");
    assert_eq!((got, pool.entries()), (b"me".to_vec(), 1));
    let err = redis::cmd("SET")
        .arg("k")
        .arg("v")
        .arg("EX")
        .arg("10")
        .query_async::<()>(&mut c)
        .await
        .expect_err("ttl");
    assert!(err.to_string().contains("TTLs are not supported"), "{err}");
    let err = redis::cmd("GET")
        .query_async::<()>(&mut c)
        .await
        .expect_err("arity");
    assert!(
        err.to_string().contains("wrong number of arguments"),
        "{err}"
    );
}

#[test]
fn keys_hash_under_the_resp_root() {
    assert_ne!(resp::key_of(b"a"), resp::key_of(b"b"));
    assert_eq!(resp::key_of(b"a"), resp::key_of(b"a"));
    assert_ne!(resp::key_of(b""), resp::resp_root());
}

/// A slow client: starts `SET key <MAX_VALUE bytes>` and sends 1 KiB of the value every 100 ms
/// (well inside the server's I/O timeout) until `stop`; returns its writer and the bytes sent.
async fn slow_large_set(
    addr: SocketAddr,
    key: &str,
    stop: Arc<AtomicBool>,
) -> (OwnedReadHalf, JoinHandle<(OwnedWriteHalf, usize)>) {
    let (rd, mut wr) = TcpStream::connect(addr)
        .await
        .expect("connect")
        .into_split();
    let head = format!(
        "*3\r\n$3\r\nSET\r\n${}\r\n{key}\r\n${MAX_VALUE}\r\n",
        key.len()
    );
    wr.write_all(head.as_bytes()).await.expect("write");
    let task = tokio::spawn(async move {
        let mut sent = 0;
        while !stop.load(Ordering::Relaxed) && sent + 1024 < MAX_VALUE {
            if wr.write_all(&[7u8; 1024]).await.is_err() {
                break;
            }
            sent += 1024;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        (wr, sent)
    });
    (rd, task)
}

#[tokio::test]
async fn large_commands_share_the_servers_request_budget() {
    // A budget of one frame (max-value + 1 MiB = 2 MiB): room for one 1 MiB command at a time.
    let mut cfg = common::config();
    cfg.max_inflight_bytes = cfg.max_frame();
    cfg.io_timeout = Duration::from_secs(1);
    let handle = common::start(cfg).await;
    let addr = handle.local_addr();
    let stops = [
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    ];
    let (mut ra, ta) = slow_large_set(addr, "a", stops[0].clone()).await;
    let (mut rb, tb) = slow_large_set(addr, "b", stops[1].clone()).await;
    // Neither stalls, so the one that waits for the budget is refused when its wait times out.
    let (mut buf_a, mut buf_b) = (vec![0u8; 128], vec![0u8; 128]);
    let (a_refused, n) = tokio::time::timeout(Duration::from_secs(20), async {
        tokio::select! {
            r = ra.read(&mut buf_a) => (true, r.expect("read")),
            r = rb.read(&mut buf_b) => (false, r.expect("read")),
        }
    })
    .await
    .expect("one of the two is refused in time");
    let (refused, mut holder_rd, holder_task, holder) = if a_refused {
        (&buf_a[..n], rb, tb, 1)
    } else {
        (&buf_b[..n], ra, ta, 0)
    };
    assert!(
        refused.starts_with(b"-ERR server busy"),
        "{}",
        String::from_utf8_lossy(refused)
    );
    // The holder finishes its value and is stored; then its budget is free for someone else.
    stops[holder].store(true, Ordering::Relaxed);
    let (mut wr, sent) = holder_task.await.expect("writer");
    let rest = [vec![7u8; MAX_VALUE - sent], b"\r\n".to_vec()].concat();
    wr.write_all(&rest).await.expect("write");
    let mut ok = [0u8; 5];
    tokio::time::timeout(Duration::from_secs(10), holder_rd.read_exact(&mut ok))
        .await
        .expect("reply in time")
        .expect("read");
    assert_eq!(&ok, b"+OK\r\n");
    let mut c = client(format!("redis://{addr}")).await;
    let big = value(3, MAX_VALUE);
    let () = redis::cmd("SET")
        .arg("c")
        .arg(&big)
        .query_async(&mut c)
        .await
        .expect("the budget is free again");
    assert_eq!(handle.store().stats().entries, 2);
}
