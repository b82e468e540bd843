//! The pool server over real sockets: concurrent clients, both clients, shared memory, and
//! what happens to bad input (oversized, malformed, unauthenticated, cut-off transfers).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use brix_kvcache::blocking::{Client, ClientConfig};
use brix_kvcache::proto::{self, Op, PutStatus, Status};
use brix_kvcache::server::{Server, ServerError};
use common::{config, key, start, value};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn several_concurrent_async_clients_share_one_server() {
    let srv = start(config()).await;
    let addr = srv.local_addr().to_string();
    let mut tasks = Vec::new();
    for c in 0..8u64 {
        let addr = addr.clone();
        tasks.push(tokio::spawn(async move {
            let mut cl = brix_kvcache::client::Client::connect(&addr, ClientConfig::default())
                .await
                .expect("connect");
            let ids: Vec<u64> = (0..40).map(|i| c * 1000 + i).collect();
            let vals: Vec<Vec<u8>> = ids
                .iter()
                .map(|&i| value(i, 1000 + i as usize % 5000))
                .collect();
            let items: Vec<_> = ids
                .iter()
                .zip(&vals)
                .map(|(&i, v)| (key(i), &v[..]))
                .collect();
            let st = cl.put(&items).await.expect("put");
            assert!(st.iter().all(|s| *s == PutStatus::Stored), "{st:?}");
            let keys: Vec<_> = ids.iter().map(|&i| key(i)).collect();
            let got = cl.get(&keys).await.expect("get");
            for (g, v) in got.iter().zip(&vals) {
                assert_eq!(g.as_deref(), Some(&v[..]));
            }
            assert_eq!(cl.longest_prefix(&keys).await.expect("prefix"), keys.len());
        }));
    }
    for t in tasks {
        t.await.expect("client task");
    }
    let st = srv.store().stats();
    assert_eq!(st.entries, 320);
    assert!(st.used_bytes <= st.capacity_bytes);
}

#[tokio::test(flavor = "multi_thread")]
async fn blocking_client_round_trip_pipelining_and_stats() {
    let srv = start(config()).await;
    let addr = srv.local_addr().to_string();
    tokio::task::spawn_blocking(move || {
        let mut c = Client::connect(&addr, ClientConfig::default()).expect("connect");
        assert!(!c.has_shm(), "no shared memory over TCP");
        let vals: Vec<Vec<u8>> = (0..10).map(|i| value(i, 70_000)).collect();
        let items: Vec<_> = (0..10).map(|i| (key(i), &vals[i as usize][..])).collect();
        assert!(
            c.put(&items[..6])
                .expect("put")
                .iter()
                .all(|s| *s == PutStatus::Stored)
        );
        assert_eq!(c.put(&items[..1]).expect("put"), vec![PutStatus::Exists]);
        let keys: Vec<_> = (0..10).map(key).collect();
        assert_eq!(c.longest_prefix(&keys).expect("prefix"), 6);
        assert_eq!(
            c.exists(&keys[4..8]).expect("exists"),
            vec![true, true, false, false]
        );
        let got = c.get_pipelined(&keys[..8]).expect("pipelined");
        for (i, g) in got.iter().enumerate() {
            assert_eq!(g.as_deref(), (i < 6).then(|| &vals[i][..]));
        }
        assert_eq!(c.delete(&keys[..2]).expect("delete"), 2);
        assert_eq!(c.longest_prefix(&keys).expect("prefix"), 0);
        assert_eq!(
            c.get_one(key(3)).expect("get").as_deref(),
            Some(&vals[3][..])
        );
        let st = c.stats().expect("stats");
        assert_eq!((st.entries, st.connections), (4, 1));
    })
    .await
    .expect("client thread");
}

#[tokio::test(flavor = "multi_thread")]
async fn shared_memory_round_trip_over_the_unix_socket() {
    let srv = start(common::unix_config()).await;
    let path = srv.unix_path().expect("unix").to_path_buf();
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&path).expect("sock").permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    let ep = format!("unix:{}", path.display());
    let tcp = srv.local_addr().to_string();
    let big = value(7, 1 << 20);
    let (ep2, big2) = (ep.clone(), big.clone());
    tokio::task::spawn_blocking(move || {
        let mut c = Client::connect(&ep2, ClientConfig::default()).expect("connect");
        assert!(c.has_shm());
        assert_eq!(
            c.put(&[(key(1), &big2[..]), (key(2), b"small")])
                .expect("put")
                .len(),
            2
        );
        let got = c.get(&[key(1), key(9), key(2)]).expect("get");
        assert_eq!(got[0].as_deref(), Some(&big2[..]));
        assert_eq!(
            (got[1].as_deref(), got[2].as_deref()),
            (None, Some(&b"small"[..]))
        );
        // The same values through the socket path, from a TCP client.
        let mut t = Client::connect(&tcp, ClientConfig::default()).expect("tcp");
        assert_eq!(t.get_one(key(1)).expect("get").as_deref(), Some(&big2[..]));
        // Releases are sent without waiting; the next reply on the same connection comes
        // after the server handled them.
        assert_eq!(c.stats().expect("stats").leases, 0, "leases were released");
    })
    .await
    .expect("client thread");
    let mut a = brix_kvcache::client::Client::connect(&ep, ClientConfig::default())
        .await
        .expect("async unix");
    assert!(a.has_shm());
    assert_eq!(
        a.put(&[(key(3), &big[..100])]).await.expect("put"),
        vec![PutStatus::Stored]
    );
    assert_eq!(
        a.get(&[key(1), key(3)]).await.expect("get")[1].as_deref(),
        Some(&big[..100])
    );
}

/// Sends raw bytes, returns the reply status and whether the server closed afterwards.
fn raw(addr: &str, bytes: &[u8]) -> (Status, String, bool) {
    raw_reply(addr, bytes, 0)
}

/// Like `raw`, but skips the HELLO reply first.
fn raw_after_hello(addr: &str, bytes: &[u8]) -> (Status, String, bool) {
    raw_reply(addr, bytes, 1)
}

/// Sends raw bytes, skips `skip` replies, returns the next one's status and message and
/// whether the server closed afterwards.
fn raw_reply(addr: &str, bytes: &[u8], skip: usize) -> (Status, String, bool) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    s.write_all(bytes).expect("write");
    let mut reply = || {
        let mut hdr = [0u8; 8];
        s.read_exact(&mut hdr).expect("reply header");
        let h = proto::parse_reply_header(&hdr, 1 << 20).expect("reply header parses");
        let mut body = vec![0; h.len as usize];
        s.read_exact(&mut body).expect("reply body");
        (Status::from_u8(h.status), body)
    };
    for _ in 0..skip {
        reply();
    }
    let (status, body) = reply();
    let mut rest = [0u8; 1];
    let closed = matches!(s.read(&mut rest), Ok(0));
    (status, String::from_utf8_lossy(&body).into_owned(), closed)
}

fn frame(op: u8, body: &[u8]) -> Vec<u8> {
    let mut f = proto::request_header(Op::Hello, body.len()).to_vec();
    f[2] = op;
    f.extend_from_slice(body);
    f
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_and_malformed_frames_get_an_error_and_the_connection_closes() {
    let srv = start(config()).await;
    let addr = srv.local_addr().to_string();
    let hello = frame(Op::Hello as u8, &proto::hello_body(None, 0));
    let store = srv.store().clone();
    store.put(key(1), b"kept");
    tokio::task::spawn_blocking(move || {
        // A value over --max-value: refused per item, the connection stays usable.
        let mut c = Client::connect(&addr, ClientConfig::default()).expect("connect");
        let huge = vec![0u8; (1 << 20) + 1];
        let st = c
            .put_tcp(&[(key(2), &huge[..]), (key(3), b"ok")])
            .expect("put");
        assert_eq!(st, vec![PutStatus::TooLarge, PutStatus::Stored]);
        // A frame over the limit.
        let mut big = hello.clone();
        big.extend_from_slice(&proto::request_header(Op::Put, 64 << 20));
        let (s, msg, closed) = raw_after_hello(&addr, &big);
        assert_eq!((s, closed), (Status::TooLarge, true), "{msg}");
        // An unknown op, a lying key count, trailing bytes, a bad magic.
        for bad in [
            frame(99, &[]),
            frame(Op::Get as u8, &7u32.to_le_bytes()),
            {
                let mut b = proto::keys_body(&[key(1)]);
                b.push(0);
                frame(Op::Exists as u8, &b)
            },
            b"\x00\x01\x02\x03\x04\x05\x06\x07".to_vec(),
        ] {
            let mut req = hello.clone();
            req.extend_from_slice(&bad);
            let (s, msg, closed) = raw_after_hello(&addr, &req);
            assert_eq!((s, closed), (Status::BadRequest, true), "{msg}");
        }
        // A wrong version.
        let mut v = frame(Op::Hello as u8, &proto::hello_body(None, 0));
        v[1] = 9;
        let (s, _, closed) = raw(&addr, &v);
        assert_eq!((s, closed), (Status::Version, true));
    })
    .await
    .expect("client thread");
    assert_eq!(
        store.get(key(1)).as_deref(),
        Some(&b"kept"[..]),
        "nothing else lost"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_is_required_when_set_and_beyond_loopback() {
    let mut cfg = config();
    cfg.listen = "0.0.0.0:0".parse().expect("addr");
    assert!(matches!(
        Server::bind(cfg.clone()).await,
        Err(ServerError::Insecure(_))
    ));
    cfg.listen = "127.0.0.1:0".parse().expect("addr");
    cfg.token = Some("s3cret".into());
    let srv = start(cfg).await;
    let addr = srv.local_addr().to_string();
    tokio::task::spawn_blocking(move || {
        let err = Client::connect(&addr, ClientConfig::default()).expect_err("no token");
        assert_eq!(err.kind(), std::io::ErrorKind::PermissionDenied, "{err}");
        let wrong = ClientConfig {
            token: Some("guess".into()),
            ..ClientConfig::default()
        };
        assert!(Client::connect(&addr, wrong).is_err());
        let (s, _, closed) = raw(&addr, &frame(Op::Stats as u8, &[]));
        assert_eq!(
            (s, closed),
            (Status::Unauthorized, true),
            "ops before HELLO are refused"
        );
        let right = ClientConfig {
            token: Some("s3cret".into()),
            ..ClientConfig::default()
        };
        let mut c = Client::connect(&addr, right).expect("right token");
        assert_eq!(
            c.put(&[(key(1), b"v")]).expect("put"),
            vec![PutStatus::Stored]
        );
    })
    .await
    .expect("client thread");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_disconnects_mid_transfer_loses_nothing_else_and_memory_returns() {
    let srv = start(common::unix_config()).await;
    let store = srv.store().clone();
    store.put(key(1), &value(1, 5000));
    let used = store.stats().used_bytes;
    let addr = srv.local_addr().to_string();
    let tcp = addr.clone();
    let ep = format!("unix:{}", srv.unix_path().expect("unix").display());
    let store2 = store.clone();
    tokio::task::spawn_blocking(move || {
        let store = store2;
        // TCP: a PUT frame that announces 512 KiB and stops after 100 KiB.
        let mut s = TcpStream::connect(&addr).expect("connect");
        let mut f = frame(Op::Hello as u8, &proto::hello_body(None, 0));
        f.extend_from_slice(&proto::request_header(Op::Put, 512 << 10));
        f.extend_from_slice(&1u32.to_le_bytes());
        f.extend_from_slice(&key(2).to_bytes());
        f.extend_from_slice(&((512u64 << 10) - 28).to_le_bytes());
        f.extend_from_slice(&vec![7u8; 100 << 10]);
        s.write_all(&f).expect("write");
        drop(s);
        // Shared memory: a reservation never committed (raw frames on the Unix socket).
        let path = ep.strip_prefix("unix:").expect("unix endpoint");
        let mut u = std::os::unix::net::UnixStream::connect(path).expect("unix");
        u.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut f = frame(Op::Hello as u8, &proto::hello_body(None, proto::CAP_SHM));
        let mut alloc = 1u32.to_le_bytes().to_vec();
        alloc.extend_from_slice(&key(3).to_bytes());
        alloc.extend_from_slice(&300_000u64.to_le_bytes());
        f.extend_from_slice(&frame(Op::PutAlloc as u8, &alloc));
        u.write_all(&f).expect("write");
        let mut hdr = [0u8; 8];
        for expect in [44usize, 21] {
            u.read_exact(&mut hdr).expect("header");
            assert_eq!(hdr[2], Status::Ok as u8);
            let mut body = vec![0u8; u32::from_le_bytes([hdr[4], hdr[5], hdr[6], hdr[7]]) as usize];
            assert_eq!(body.len(), expect);
            u.read_exact(&mut body).expect("body");
        }
        assert!(!store.exists(key(3)), "reserved, not visible");
        drop(u);
    })
    .await
    .expect("client thread");
    // The server notices both disconnects: connections close, the reservation is freed.
    let mut c = brix_kvcache::client::Client::connect(&tcp, ClientConfig::default())
        .await
        .expect("connect");
    for _ in 0..500 {
        let st = c.stats().await.expect("stats");
        if st.connections == 1 && st.leases == 0 && st.used_bytes == used {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let st = c.stats().await.expect("stats");
    assert_eq!(
        (st.connections, st.leases, st.used_bytes, st.entries),
        (1, 0, used, 1)
    );
    assert_eq!(store.get(key(1)).as_deref(), Some(&value(1, 5000)[..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn used_bytes_never_exceed_capacity_under_a_flood_of_puts() {
    let mut cfg = config();
    cfg.store.capacity_bytes = 8 << 20;
    let srv = start(cfg).await;
    let addr = srv.local_addr().to_string();
    let store = srv.store().clone();
    let mut tasks = Vec::new();
    for c in 0..4u64 {
        let addr = addr.clone();
        tasks.push(tokio::task::spawn_blocking(move || {
            let mut cl = Client::connect(&addr, ClientConfig::default()).expect("connect");
            for i in 0..150u64 {
                let v = value(i, 20_000 + (i as usize * 7717) % 200_000);
                let st = cl.put(&[(key(c * 10_000 + i), &v[..])]).expect("put");
                assert!(st[0].is_ok(), "{st:?}");
            }
        }));
    }
    let watch = tokio::spawn({
        let store = store.clone();
        async move {
            let mut max = 0;
            for _ in 0..200 {
                let st = store.stats();
                max = max.max(st.used_bytes);
                assert!(st.used_bytes <= st.capacity_bytes);
                tokio::task::yield_now().await;
            }
            max
        }
    });
    for t in tasks {
        t.await.expect("client");
    }
    watch.await.expect("watcher");
    let st = store.stats();
    assert!(st.used_bytes <= st.capacity_bytes && st.capacity_bytes == 8 << 20);
    assert!(st.evictions > 0, "{st:?}");
}
