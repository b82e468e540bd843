//! `--kv-pool` against real pool servers (`brix_kvcache::server`) on 127.0.0.1: two servers form
//! one pool that two engines share; a stopped server turns its keys into misses, answered at
//! once, not errors or hangs; bad settings are refused at start.

use std::net::SocketAddr;
use std::time::Duration;

use brix_kvcache::server::{Server as PoolServer, ServerConfig, ServerHandle};
use brix_sim_http::{KvPoolConfig, SimConfig};
use serde_json::json;

use brix_testkit::eventually;

use crate::support::{MODEL, config, start};

async fn pool_server() -> ServerHandle {
    let cfg = ServerConfig::new(SocketAddr::from(([127, 0, 0, 1], 0)), 16 << 20);
    PoolServer::bind(cfg).await.unwrap().spawn()
}

fn with_pool(servers: &[String]) -> SimConfig {
    let mut cfg = config();
    cfg.engine.max_model_len = 4096;
    cfg.kv_pool = Some(KvPoolConfig {
        value_bytes: Some(4096),
        ..KvPoolConfig::new(servers.to_vec())
    });
    cfg
}

/// 2,000 distinct token ids: seven full 256-token chunks (1,792 tokens).
fn prompt() -> Vec<u32> {
    (0..2000).map(|i| (i * 7919 + 13) % 90_000).collect()
}

/// The total of a counter family on `s`'s /metrics.
async fn counter(s: &crate::support::Server, family: &str) -> f64 {
    s.metrics().await.sum(family, &[])
}

async fn complete(s: &crate::support::Server) {
    let body = json!({"model": MODEL, "prompt": prompt(), "max_tokens": 1});
    let resp = s.post("/v1/completions", &body).await;
    assert_eq!(resp.status(), 200);
}

const HITS: &str = "vllm:external_prefix_cache_hits_total";
const STORED: &str = "brix_sim_kv_pool_stored_chunks_total";
const ERRORS: &str = "brix_sim_kv_pool_lookup_errors_total";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_make_one_pool_and_a_stopped_one_is_a_miss() {
    let (p1, p2) = (pool_server().await, pool_server().await);
    let servers = [p1.local_addr().to_string(), p2.local_addr().to_string()];
    let a = start(with_pool(&servers)).await;
    complete(&a).await;
    eventually(
        "a's seven chunks are written",
        Duration::from_secs(10),
        || async { counter(&a, STORED).await >= 7.0 },
    )
    .await;
    // Both servers hold some: the ring spread the chunks.
    let (n1, n2) = (p1.store().stats().entries, p2.store().stats().entries);
    assert_eq!(n1 + n2, 7);
    assert!(n1 > 0 && n2 > 0, "{n1} + {n2}");

    let b = start(with_pool(&servers)).await;
    complete(&b).await;
    assert_eq!(counter(&b, HITS).await, 1792.0);
    assert_eq!(counter(&b, ERRORS).await, 0.0);

    // Server 2 stops: its chunks are misses; the prompt is still answered, and the engine
    // loads only what precedes the first chunk it held.
    p2.shutdown().await;
    let c = start(with_pool(&servers)).await;
    // A hang guard, not a speed check: a refused server must cost a miss, never a wait.
    tokio::time::timeout(Duration::from_secs(60), complete(&c))
        .await
        .expect("the request is answered while a pool server is down");
    let hits = counter(&c, HITS).await;
    assert!(hits < 1792.0, "{hits}");
    assert!(counter(&c, ERRORS).await >= 1.0);
    p1.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_nobody_listens_on_costs_misses_not_errors() {
    // A port that was free a moment ago: connections are refused.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let s = start(with_pool(&[dead])).await;
    for _ in 0..3 {
        complete(&s).await;
    }
    assert_eq!(counter(&s, HITS).await, 0.0);
    // Write-through chunks could not be stored: counted as dropped.
    eventually(
        "dropped chunks are counted",
        Duration::from_secs(10),
        || async { counter(&s, "brix_sim_kv_pool_dropped_chunks_total").await >= 7.0 },
    )
    .await;
}

#[tokio::test]
async fn bad_pool_settings_are_refused_at_start() {
    type Spoil = fn(&mut KvPoolConfig);
    let cases: [(Spoil, &str); 4] = [
        (|p| p.servers.clear(), "at least one"),
        (|p| p.chunk_tokens = 100, "multiple of the block size"),
        (|p| p.value_bytes = Some(0), "--kv-pool-value-bytes"),
        (|p| p.bandwidth_gbps = Some(-1.0), "bandwidth"),
    ];
    for (spoil, want) in cases {
        let mut cfg = with_pool(&["127.0.0.1:1".into()]);
        if let Some(p) = cfg.kv_pool.as_mut() {
            spoil(p);
        }
        let err = brix_sim_http::router(&cfg).err().map(|e| e.to_string());
        assert!(
            err.as_deref().is_some_and(|e| e.contains(want)),
            "{want}: {err:?}"
        );
    }
}
