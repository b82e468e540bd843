//! The subscriber task against a real `brix-kvevents` publisher on 127.0.0.1: batches fill the
//! pod's exact index (other tiers and groups skipped), a restarted publisher (sequence back to
//! 0) clears it, and batches lost with no replay clear it too.

use std::sync::Arc;
use std::time::{Duration, Instant};

use brix_kvevents::{Batch, BlockRemoved, BlockStored, Event, KvEventsConfig, Publisher};
use brix_router::PrefixConfig;
use brix_router::fleet::CoreConfig;

use super::*;
use crate::discovery::Target;
use crate::metrics::Metrics;
use crate::pool::Pool;

fn one_pod() -> (Pool, Arc<PodState>) {
    let pool = Pool::new(
        PrefixConfig::default(),
        CoreConfig::default(),
        Instant::now(),
    );
    let ts: Targets = [(
        "m".to_string(),
        vec![Target {
            name: "p0".into(),
            address: "h:1".into(),
            kv_events: None,
            metrics: None,
        }],
    )]
    .into();
    pool.apply(&ts);
    let pod = pool.all().remove(0);
    pod.kv_enable(1000);
    (pool, pod)
}

async fn publisher(events: &str, replay: Option<&str>) -> Publisher {
    let cfg = KvEventsConfig {
        enable_kv_cache_events: true,
        endpoint: events.into(),
        replay_endpoint: replay.map(str::to_string),
        ..KvEventsConfig::default()
    };
    // A port just released by a stopped publisher may take a moment to bind again.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match Publisher::start(&cfg).await {
            Ok(p) => return p,
            Err(e) if Instant::now() > deadline => panic!("publisher: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

fn local(bound: &str) -> String {
    bound.replace('*', "127.0.0.1")
}

fn batch(events: Vec<Event>) -> Batch {
    Batch {
        ts: 0.0,
        events,
        data_parallel_rank: None,
    }
}

fn stored(hashes: &[u64], parent: Option<u64>, from: u32) -> BlockStored {
    BlockStored {
        block_hashes: hashes.to_vec(),
        parent_block_hash: parent,
        token_ids: (from..from + 16 * hashes.len() as u32).collect(),
        block_size: 16,
        ..BlockStored::default()
    }
}

/// Publishes an empty batch every `every` (each one makes the subscriber catch up) until
/// `done` holds.
async fn until_every(p: &Publisher, every: Duration, what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within 20 s");
        p.publish(batch(Vec::new()));
        tokio::time::sleep(every).await;
    }
}

async fn until(p: &Publisher, what: &str, done: impl Fn() -> bool) {
    until_every(p, Duration::from_millis(20), what, done).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_fill_the_index_and_a_restart_clears_it() {
    let metrics = Arc::new(Metrics::new().unwrap_or_else(|e| panic!("{e}")));
    let (_pool, pod) = one_pod();
    let p = publisher("tcp://*:0", Some("tcp://*:0")).await;
    let bound = (
        p.endpoint().to_string(),
        p.replay_endpoint().map(str::to_string),
    );
    let (events, replay) = (local(p.endpoint()), p.replay_endpoint().map(local));
    // Published before anyone listens: the subscriber replays it.
    let other_tier = BlockStored {
        medium: Some("CPU".into()),
        ..stored(&[9], None, 500)
    };
    let other_group = BlockStored {
        group_idx: Some(1),
        ..stored(&[8], None, 600)
    };
    p.publish(batch(vec![
        Event::BlockStored(stored(&[1, 2], None, 0)),
        Event::BlockStored(other_tier),
        Event::BlockStored(other_group),
    ]));
    let endpoints = KvEndpoints { events, replay };
    let task = subscriber::spawn(
        pod.clone(),
        endpoints.clone(),
        String::new(),
        Duration::from_secs(2),
        metrics.clone(),
    );
    until(&p, "the first batch is applied", || {
        pod.kv_blocks() == Some(2)
    })
    .await;
    p.publish(batch(vec![
        Event::BlockStored(stored(&[3], Some(2), 32)),
        Event::BlockRemoved(BlockRemoved {
            block_hashes: vec![1],
            ..BlockRemoved::default()
        }),
    ]));
    until(&p, "the second batch is applied", || {
        pod.kv_blocks() == Some(2)
            && metrics
                .kv
                .events
                .with_label_values(&["p0", "removed"])
                .get()
                == 1
    })
    .await;
    assert_eq!(
        metrics.kv.events.with_label_values(&["p0", "stored"]).get(),
        2
    );
    // A long history first: a restarted stream is told from a gap only while its sequence is
    // still below the last one seen (the subscriber may take seconds to reconnect).
    for _ in 0..1000 {
        p.publish(batch(Vec::new()));
    }
    p.publish(batch(vec![Event::BlockStored(stored(&[4], Some(3), 48))]));
    until(&p, "the history is seen", || pod.kv_blocks() == Some(3)).await;
    // The engine restarts on the same sockets: its sequence starts again at 0.
    drop(p);
    let p = publisher(&bound.0, bound.1.as_deref()).await;
    until_every(
        &p,
        Duration::from_millis(50),
        "the reset clears the index",
        || metrics.kv.clears.with_label_values(&["p0", "reset"]).get() >= 1,
    )
    .await;
    assert_eq!(pod.kv_blocks(), Some(0));
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_lost_without_replay_clear_the_index() {
    let metrics = Arc::new(Metrics::new().unwrap_or_else(|e| panic!("{e}")));
    let (_pool, pod) = one_pod();
    pod.kv_event(brix_router::KvUpdate::Stored {
        parent: None,
        hashes: &[7],
        token_ids: &[0; 16],
        block_size: 16,
        lora: None,
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let p = publisher("tcp://*:0", None).await;
    // Nobody listens yet and there is no replay: these are lost for good.
    for _ in 0..3 {
        p.publish(batch(Vec::new()));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let endpoints = KvEndpoints {
        events: local(p.endpoint()),
        replay: None,
    };
    let task = subscriber::spawn(
        pod.clone(),
        endpoints,
        String::new(),
        Duration::from_secs(2),
        metrics.clone(),
    );
    until(&p, "the loss is reported", || {
        metrics.kv.clears.with_label_values(&["p0", "lost"]).get() >= 1
    })
    .await;
    assert_eq!(pod.kv_blocks(), Some(0));
    assert!(metrics.kv.lost.with_label_values(&["p0"]).get() >= 3);
    assert!(metrics.kv.gaps.with_label_values(&["p0", "seq"]).get() >= 1);
    task.abort();
}
