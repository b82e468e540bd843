//! `--kv-events-config`: a subscriber of a real `brix sim` sees the blocks a prompt stores
//! (with vLLM's sha256_cbor hashes), their removal under eviction pressure, a late subscriber
//! gets the missed range by replay, and a prefix-cache reset is published.

use std::time::Duration;

use brix_kvevents::{Event, KvEventsConfig, Subscriber, SubscriberConfig, Update};
use brix_sim::HashAlgo;
use serde_json::json;

use crate::support::{MODEL, Server, config, start};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// 8 blocks of 16 tokens, vLLM's sha256_cbor with PYTHONHASHSEED=0, events on two free ports.
async fn server() -> (Server, SubscriberConfig) {
    let (port, replay) = (free_port(), free_port());
    let mut cfg = config();
    cfg.engine.block_size = 16;
    cfg.engine.num_gpu_blocks_override = Some(8);
    cfg.engine.max_model_len = 128;
    cfg.engine.output_len = brix_sim::OutputLen::Fixed(1);
    cfg.engine.prefix_caching_hash_algo = HashAlgo::Sha256Cbor;
    cfg.engine.hash_seed = Some("0".into());
    cfg.kv_events = Some(KvEventsConfig {
        enable_kv_cache_events: true,
        endpoint: format!("tcp://*:{port}"),
        replay_endpoint: Some(format!("tcp://*:{replay}")),
        topic: "kv".into(),
        ..KvEventsConfig::default()
    });
    let mut sub = SubscriberConfig::new(
        format!("tcp://127.0.0.1:{port}"),
        Some(format!("tcp://127.0.0.1:{replay}")),
    );
    sub.topic = "kv".into();
    (start(cfg).await, sub)
}

async fn complete(s: &Server, prompt: Vec<u32>) {
    let body = json!({"model": MODEL, "prompt": prompt, "max_tokens": 1});
    let (status, reply) = s.post_json("/v1/completions", &body).await;
    assert_eq!(status, 200, "{reply}");
}

/// Sends prompts (a fresh one each time, from `next`) until the subscriber delivers an update
/// (the SUB only hears what is published once its subscription is in), then every update
/// that follows within a short quiet period.
async fn updates(
    s: &Server,
    sub: &mut Subscriber,
    mut next: impl FnMut() -> Vec<u32>,
) -> Vec<Update> {
    let mut out = Vec::new();
    for _ in 0..200 {
        if let Ok(u) = tokio::time::timeout(Duration::from_millis(100), sub.next()).await {
            out.push(u.unwrap());
            break;
        }
        complete(s, next()).await;
    }
    assert!(!out.is_empty(), "no KV events arrived");
    while let Ok(u) = tokio::time::timeout(Duration::from_millis(500), sub.next()).await {
        out.push(u.unwrap());
    }
    out
}

fn events(us: &[Update]) -> Vec<(u64, Event)> {
    let mut out = Vec::new();
    for u in us {
        let Update::Batch { seq, batch } = u else {
            panic!("nothing may be lost: {u:?}")
        };
        out.extend(batch.events.iter().map(|e| (*seq, e.clone())));
    }
    out
}

#[tokio::test]
async fn a_prompt_stores_vllm_hashed_blocks_eviction_removes_them_and_replay_fills_a_late_start() {
    let (s, sub_cfg) = server().await;
    let mut sub = Subscriber::spawn(sub_cfg.clone());
    complete(&s, (1..=40).collect()).await;
    let mut k = 1000;
    let mut fresh = move || {
        k += 17;
        (k..k + 17).collect::<Vec<u32>>()
    };
    let got = events(&updates(&s, &mut sub, &mut fresh).await);
    // The first batch (seq 0, by replay if the SUB joined late) stores the prompt's 2 full
    // blocks; block 1..=16 hashes as vLLM 0.32 hashes it (sha256_cbor, PYTHONHASHSEED=0).
    let (seq, Event::BlockStored(a)) = &got[0] else {
        panic!("{got:?}")
    };
    assert_eq!(*seq, 0);
    assert_eq!(a.block_hashes.len(), 2);
    assert_eq!(a.block_hashes[0], 3236607068019569386);
    assert_eq!((a.parent_block_hash, a.block_size), (None, 16));
    assert_eq!(a.token_ids, (1..=32).collect::<Vec<u32>>());
    assert_eq!(a.medium.as_deref(), Some("GPU"));
    // Prompts of 7 blocks each push A's blocks out of the 8: vLLM's one BlockRemoved per block.
    let mut big = 5000;
    let mut filler = move || {
        big += 112;
        (big..big + 112).collect::<Vec<u32>>()
    };
    let mut removed = Vec::new();
    for _ in 0..3 {
        complete(&s, filler()).await;
    }
    let got = events(&updates(&s, &mut sub, &mut filler).await);
    let last_seen = got.last().map_or(0, |(seq, _)| *seq);
    for (_, e) in &got {
        if let Event::BlockRemoved(r) = e {
            assert_eq!(r.block_hashes.len(), 1);
            removed.extend(r.block_hashes.iter().copied());
        }
    }
    assert!(
        a.block_hashes.iter().all(|h| removed.contains(h)),
        "A's blocks removed: {removed:?}"
    );
    // A subscriber that starts now missed everything: it gets it all, from seq 0, in order.
    drop(sub);
    let mut late = Subscriber::spawn(sub_cfg);
    let all = updates(&s, &mut late, &mut fresh).await;
    let seqs: Vec<u64> = all
        .iter()
        .map(|u| match u {
            Update::Batch { seq, .. } => *seq,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(seqs, (0..seqs.len() as u64).collect::<Vec<_>>());
    assert!(
        seqs.len() as u64 > last_seen,
        "{seqs:?} covers up to {last_seen}"
    );
    let Update::Batch { batch, .. } = &all[0] else {
        unreachable!()
    };
    assert_eq!(batch.events[0], Event::BlockStored(a.clone()));
    // A prefix-cache reset goes out first in the next step's batch, as vLLM publishes it.
    let (status, reply) = s.post_json("/reset_prefix_cache", &json!({})).await;
    assert_eq!((status, &reply), (200, &json!({"success": true})));
    complete(&s, (1..=40).collect()).await;
    let got = events(&updates(&s, &mut late, &mut fresh).await);
    assert_eq!(got[0].1, Event::AllBlocksCleared, "{got:?}");
    assert_eq!(
        got[1].1,
        Event::BlockStored(a.clone()),
        "stored again, nothing was cached"
    );
}
