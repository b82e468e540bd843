//! Publisher and Subscriber over real TCP sockets on 127.0.0.1: order, replay of a late start,
//! lost ranges, restarts; and interop with vLLM's own publisher (pyzmq/libzmq) when its
//! python is there.

use std::time::Duration;

use brix_kvevents::{
    Batch, BlockStored, Event, KvEventsConfig, Publisher, Subscriber, SubscriberConfig, Update,
};

const WAIT: Duration = Duration::from_secs(20);

fn batch(i: u64) -> Batch {
    Batch {
        ts: i as f64,
        events: vec![Event::BlockStored(BlockStored {
            block_hashes: vec![i],
            token_ids: vec![1, 2],
            block_size: 2,
            ..BlockStored::default()
        })],
        data_parallel_rank: Some(0),
    }
}

fn config(buffer_steps: usize, port: u16, replay_port: u16) -> KvEventsConfig {
    KvEventsConfig {
        enable_kv_cache_events: true,
        endpoint: format!("tcp://*:{port}"),
        replay_endpoint: Some(format!("tcp://*:{replay_port}")),
        buffer_steps,
        topic: "kv".into(),
        ..KvEventsConfig::default()
    }
}

fn local(bound: &str) -> String {
    bound.replace('*', "127.0.0.1")
}

fn subscriber(p: &Publisher) -> Subscriber {
    let mut c = SubscriberConfig::new(local(p.endpoint()), p.replay_endpoint().map(local));
    c.topic = "kv".into();
    c.timeout = Duration::from_secs(5);
    Subscriber::spawn(c)
}

async fn next(s: &mut Subscriber) -> Update {
    match tokio::time::timeout(WAIT, s.next()).await {
        Ok(Some(u)) => u,
        Ok(None) => panic!("subscriber ended"),
        Err(_) => panic!("no update within {WAIT:?}"),
    }
}

fn seq_of(u: &Update) -> u64 {
    match u {
        Update::Batch { seq, batch } => {
            assert_eq!(batch.ts, *seq as f64, "the payload of batch {seq}");
            *seq
        }
        other => panic!("expected a batch, got {other:?}"),
    }
}

/// Publishes `n` more batches, numbered from `from`, until the subscriber has seen a live one
/// (a SUB only receives what is published after its subscription reaches the PUB).
#[tokio::test]
async fn a_late_subscriber_gets_the_history_by_replay_then_the_live_stream_in_order() {
    let p = Publisher::start(&config(100, 0, 0))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    for i in 0..5 {
        assert!(p.publish(batch(i)));
    }
    let mut s = subscriber(&p);
    // Keep publishing until the live stream reaches the subscriber; everything before it
    // comes from the replay socket, in order, with nothing lost.
    let (mut seen, mut i) = (Vec::new(), 5);
    while seen.len() < 10 {
        match tokio::time::timeout(Duration::from_millis(200), s.next()).await {
            Ok(Some(u)) => seen.push(seq_of(&u)),
            Ok(None) => panic!("subscriber ended"),
            Err(_) => {
                assert!(i < 500, "the live stream never arrived");
                assert!(p.publish(batch(i)));
                i += 1;
            }
        }
    }
    assert_eq!(seen, (0..10).collect::<Vec<_>>());
}

#[tokio::test]
async fn what_the_replay_ring_no_longer_holds_is_reported_lost() {
    let p = Publisher::start(&config(2, 0, 0))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    for i in 0..5 {
        assert!(p.publish(batch(i)));
    }
    let mut s = subscriber(&p);
    let mut i = 5;
    let first = loop {
        assert!(p.publish(batch(i)));
        i += 1;
        if let Ok(Some(u)) = tokio::time::timeout(Duration::from_millis(200), s.next()).await {
            break u;
        }
        assert!(i < 500, "nothing arrived");
    };
    // When the replay is asked, the ring of 2 holds the first live batch L and the one
    // before: 0..L-1 are lost, L-1 comes from the replay, then L, then the stream goes on.
    let Update::Lost { from: 0, to } = first else {
        panic!("expected Lost from 0, got {first:?}")
    };
    assert_eq!(to, i - 2);
    assert_eq!(seq_of(&next(&mut s).await), to);
    assert_eq!(seq_of(&next(&mut s).await), to + 1);
    assert!(p.publish(batch(i)));
    assert_eq!(seq_of(&next(&mut s).await), i);
}

#[tokio::test]
async fn a_restarted_publisher_is_a_reset() {
    let p = Publisher::start(&config(100, 0, 0))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let (port, rport) = (
        port_of(p.endpoint()),
        port_of(p.replay_endpoint().unwrap_or("")),
    );
    let mut s = subscriber(&p);
    let mut i = 0;
    // Live batches up to seq >= 3.
    let mut last = 0;
    while last < 3 {
        assert!(p.publish(batch(i)));
        i += 1;
        if let Ok(Some(u)) = tokio::time::timeout(Duration::from_millis(200), s.next()).await {
            last = seq_of(&u);
        }
        assert!(i < 500, "nothing arrived");
    }
    while let Ok(Some(u)) = tokio::time::timeout(Duration::from_millis(300), s.next()).await {
        seq_of(&u);
    }
    drop(p);
    // Same ports, a new process: it counts from 0 again.
    let p = loop {
        match Publisher::start(&config(100, port, rport)).await {
            Ok(p) => break p,
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    let mut j = 0;
    let u = loop {
        assert!(p.publish(batch(j)));
        j += 1;
        if let Ok(Some(u)) = tokio::time::timeout(Duration::from_millis(300), s.next()).await {
            break u;
        }
        assert!(j < 200, "the subscriber never reconnected");
    };
    assert!(matches!(u, Update::Reset { .. }), "{u:?}");
    // Then the new stream from 0, the start recovered by replay.
    assert_eq!(seq_of(&next(&mut s).await), 0);
}

fn port_of(endpoint: &str) -> u16 {
    endpoint
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {endpoint}"))
}
