//! Several servers as one pool over real sockets: placement, a server killed or stalled (its
//! keys become misses within the timeout, the others keep serving), a server joining.

mod common;

use std::time::Duration;

use brix_kvcache::BlockKey;
use brix_kvcache::pool::{PoolClient, PoolConfig};
use bytes::Bytes;
use common::{config, key, start, value};

fn pool_cfg() -> PoolConfig {
    PoolConfig {
        timeout: Duration::from_millis(300),
        ..PoolConfig::default()
    }
}

/// Calls must come back; 10 s is far beyond the 300 ms pool timeout, only a hang trips it.
async fn bounded<T>(f: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), f)
        .await
        .expect("a pool call hung")
}

fn items(n: u64) -> Vec<(BlockKey, Bytes)> {
    (0..n)
        .map(|i| (key(i), Bytes::from(value(i, 3000))))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn killing_one_server_turns_its_keys_into_misses_while_the_other_serves() {
    let (a, b) = (start(config()).await, start(config()).await);
    let addrs = vec![a.local_addr().to_string(), b.local_addr().to_string()];
    let pool = PoolClient::new(&addrs, pool_cfg());
    let items = items(200);
    assert!(bounded(pool.put(&items)).await.iter().all(|&ok| ok));
    let (na, nb) = (a.store().stats().entries, b.store().stats().entries);
    assert_eq!(na + nb, 200);
    assert!(na > 50 && nb > 50, "both servers hold a share: {na} / {nb}");
    let keys: Vec<BlockKey> = items.iter().map(|(k, _)| *k).collect();
    assert_eq!(bounded(pool.longest_prefix(&keys)).await, 200);
    let got = bounded(pool.get(&keys)).await;
    assert!(
        got.iter()
            .zip(&items)
            .all(|(g, (_, v))| g.as_ref() == Some(v))
    );

    let dead = addrs[0].clone();
    a.shutdown().await;
    let got = bounded(pool.get(&keys)).await;
    let exists = bounded(pool.exists(&keys)).await;
    for (i, (g, (k, v))) in got.iter().zip(&items).enumerate() {
        if pool.server_for(*k) == Some(dead.as_str()) {
            assert!(
                g.is_none() && !exists[i],
                "a dead server's key must be a miss"
            );
        } else {
            assert_eq!(g.as_ref(), Some(v), "the live server keeps serving");
            assert!(exists[i]);
        }
    }
    let first_dead = keys
        .iter()
        .position(|k| pool.server_for(*k) == Some(dead.as_str()));
    assert_eq!(
        bounded(pool.longest_prefix(&keys)).await,
        first_dead.unwrap_or(200)
    );
    // Puts to the dead server's share fail softly; the rest are stored.
    let more: Vec<_> = (1000..1040)
        .map(|i| (key(i), Bytes::from(value(i, 10))))
        .collect();
    let ok = bounded(pool.put(&more)).await;
    for ((k, _), ok) in more.iter().zip(ok) {
        assert_eq!(ok, pool.server_for(*k) != Some(dead.as_str()));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_server_costs_one_timeout_then_is_skipped() {
    let live = start(config()).await;
    // Accepts connections and never answers.
    let stalled = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let stalled_addr = stalled.local_addr().expect("addr").to_string();
    let hold = tokio::spawn(async move {
        let mut conns = Vec::new();
        while let Ok((s, _)) = stalled.accept().await {
            conns.push(s);
        }
    });
    let addrs = vec![live.local_addr().to_string(), stalled_addr.clone()];
    let pool = PoolClient::new(&addrs, pool_cfg());
    let items = items(100);
    let stored = bounded(pool.put(&items)).await;
    let keys: Vec<BlockKey> = items.iter().map(|(k, _)| *k).collect();
    for (k, ok) in keys.iter().zip(&stored) {
        assert_eq!(*ok, pool.server_for(*k) != Some(stalled_addr.as_str()));
    }
    let got = bounded(pool.get(&keys)).await;
    let hits = got.iter().filter(|g| g.is_some()).count();
    assert_eq!(hits, stored.iter().filter(|&&ok| ok).count());
    assert!(hits > 20 && hits < 80, "{hits}");
    hold.abort();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_joining_server_takes_its_share_without_moving_other_keys() {
    let (a, b, c) = (
        start(config()).await,
        start(config()).await,
        start(config()).await,
    );
    let two = vec![a.local_addr().to_string(), b.local_addr().to_string()];
    let mut pool = PoolClient::new(&two, pool_cfg());
    let items = items(300);
    assert!(bounded(pool.put(&items)).await.iter().all(|&ok| ok));
    let keys: Vec<BlockKey> = items.iter().map(|(k, _)| *k).collect();
    let before: Vec<String> = keys
        .iter()
        .map(|k| pool.server_for(*k).unwrap_or("").to_string())
        .collect();
    let joined = c.local_addr().to_string();
    let mut three = two.clone();
    three.push(joined.clone());
    pool.set_members(&three);
    let got = bounded(pool.get(&keys)).await;
    let mut moved = 0;
    for (i, k) in keys.iter().enumerate() {
        let now = pool.server_for(*k).unwrap_or("");
        if now == joined {
            moved += 1;
            assert!(got[i].is_none(), "the new server starts empty");
        } else {
            assert_eq!(now, before[i], "a key moved between servers that stayed");
            assert!(got[i].is_some());
        }
    }
    assert!(
        moved > 50 && moved < 150,
        "the joiner takes about a third: {moved}"
    );
    // Refilled, the joiner serves its share.
    let share: Vec<_> = items
        .iter()
        .filter(|(k, _)| pool.server_for(*k) == Some(joined.as_str()))
        .cloned()
        .collect();
    assert!(bounded(pool.put(&share)).await.iter().all(|&ok| ok));
    assert_eq!(bounded(pool.longest_prefix(&keys)).await, 300);
    assert_eq!(c.store().stats().entries, moved);
}
