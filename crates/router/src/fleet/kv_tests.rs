//! The exact KV index inside the fleet: filled per request, preferred by the prefix
//! strategies, cleared when the engine may have lost its cache.

use rand::SeedableRng;
use rand::rngs::SmallRng;

use super::*;
use crate::prefix::PrefixConfig;
use crate::{KvIndex, KvUpdate, RouteRequest, StoreError, Weighted};

fn fleet(n: usize) -> Fleet {
    let pods: Vec<(String, String)> = (0..n).map(|i| (format!("p{i}"), format!("p{i}"))).collect();
    let mut f = Fleet::new(&pods, PrefixConfig::default(), CoreConfig::default());
    for i in 0..n {
        f.probe(i, true, 0.0);
    }
    f
}

/// Pod `i` stored the first `blocks` blocks of 16 of `tokens` (engine hashes `i*1000 + b`).
fn store(f: &mut Fleet, i: usize, tokens: &[u32], blocks: usize) {
    let hashes: Vec<u64> = (0..blocks as u64).map(|b| i as u64 * 1000 + b).collect();
    let r = f.kv_event(
        i,
        KvUpdate::Stored {
            parent: None,
            hashes: &hashes,
            token_ids: &tokens[..blocks * 16],
            block_size: 16,
            lora: None,
        },
    );
    assert_eq!(r, Ok(()));
}

fn pick(f: &mut Fleet, strategy: &str, req: &RouteRequest<'_>, seed: u64) -> usize {
    let s: Weighted = strategy.parse().unwrap_or_else(|e| panic!("{e}"));
    f.decide(&s, req, 1.0, &mut SmallRng::seed_from_u64(seed))
        .unwrap_or_else(|e| panic!("{e}"))
        .pod
}

#[test]
fn decisions_follow_the_exact_index_over_the_approximate_one() {
    let tokens: Vec<u32> = (0..161).collect(); // 10 full blocks + 1
    let mut f = fleet(3);
    // The approximate index believes pod 0 has the whole prompt (it was routed there) …
    f.accepted(0, &[1, 2, 3, 4], 0.0);
    // … but the engines say pod 0 evicted it, pod 1 holds 2 blocks, pod 2 holds 8.
    store(&mut f, 0, &tokens, 0);
    store(&mut f, 1, &tokens, 2);
    store(&mut f, 2, &tokens, 8);
    let req = RouteRequest {
        blocks: &[1, 2, 3, 4],
        prompt_units: 512,
        tokens: Some(&tokens),
        ..RouteRequest::default()
    };
    for strategy in ["prefix-cache", "kv-cost", "prefix-cache:1,least-request:1"] {
        for seed in 0..8 {
            assert_eq!(pick(&mut f, strategy, &req, seed), 2, "{strategy}");
        }
    }
    // Without token ids the approximate index decides, as before.
    let blind = RouteRequest {
        tokens: None,
        ..req
    };
    for seed in 0..8 {
        assert_eq!(pick(&mut f, "prefix-cache", &blind, seed), 0);
    }
    // A pod without events keeps the approximate guess next to exact ones: pod 3's claim
    // (4 of 4 blocks) beats pod 2's 128 of 161 tokens.
    let p3 = f.add("p3", "p3");
    f.probe(p3, true, 0.5);
    f.accepted(p3, &[1, 2, 3, 4], 0.5);
    assert_eq!(pick(&mut f, "prefix-cache", &req, 1), p3);
    assert_eq!(f.snapshot(2, 1.0).cached_tokens, None, "per request only");
}

#[test]
fn leaving_rotation_or_restarting_clears_the_exact_index() {
    let tokens: Vec<u32> = (0..100).collect();
    let mut f = fleet(3);
    for i in 0..3 {
        store(&mut f, i, &tokens, 4);
    }
    let held = |f: &Fleet, i: usize| f.core(i).kv_index().map(|k| k.len());
    assert_eq!(held(&f, 0), Some(4));
    // Restart seen by the scrape: start time changed.
    let scrape = |t: f64| Scrape {
        start_time: Some(t),
        ..Scrape::default()
    };
    f.scraped(0, 1.0, scrape(100.0));
    assert_eq!(held(&f, 0), Some(4));
    assert_eq!(
        f.scraped(0, 2.0, scrape(200.0)),
        Some(Transition::Restarted)
    );
    assert_eq!(held(&f, 0), Some(0), "restarted: cleared, still publishing");
    // Failed health probes take pod 1 out.
    let cfg = CoreConfig::default();
    for _ in 0..cfg.ejection.unhealthy_after {
        f.probe(1, false, 3.0);
    }
    assert_eq!(held(&f, 1), Some(0), "left rotation");
    // An ejection takes pod 2 out.
    for _ in 0..cfg.ejection.consecutive_failures {
        f.failure(2, FailureKind::Status5xx, 4.0);
    }
    assert!(f.core(2).health().is_ejected());
    assert_eq!(held(&f, 2), Some(0), "ejected");
    // After a clear, a block whose parent went with it is a gap for the driver to handle.
    let r = f.kv_event(
        2,
        KvUpdate::Stored {
            parent: Some(2003),
            hashes: &[2004],
            token_ids: &tokens[64..80],
            block_size: 16,
            lora: None,
        },
    );
    assert_eq!(r, Err(StoreError::Gap(2003)));
    f.kv_enable(2, 8);
    assert_eq!(f.core(2).kv_index().map(KvIndex::capacity), Some(8));
    f.kv_clear(2);
    assert_eq!(fleet(1).core(0).kv_index(), None, "no events, no index");
}
