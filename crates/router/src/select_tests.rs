//! Table tests for every strategy, the fallbacks and the mixes.

use rand::SeedableRng;
use rand::rngs::SmallRng;

use super::*;
use crate::decision::Fallback;
use crate::testing::{empty, pick, pod, pods};

#[test]
fn load_strategies_table() {
    let idx = empty();
    let req = RouteRequest::default();
    let kv = vec![
        pod(0, 5, Some(0.9)),
        pod(1, 9, Some(0.1)),
        pod(2, 0, Some(0.5)),
    ];
    let no_kv = pods(&[5, 9, 0]);
    let cases: [(&str, &[Pod], usize, Option<Fallback>); 4] = [
        ("least-request", &no_kv, 2, None),
        ("least-kv-cache", &kv, 1, None),
        (
            "least-kv-cache",
            &no_kv,
            2,
            Some(Fallback::MissingSignal(Strategy::LeastKvCache)),
        ),
        ("power-of-two", &no_kv[..2], 0, None),
    ];
    for (strategy, ps, want, fb) in cases {
        for seed in 0..20 {
            let d = pick(strategy, &req, ps, &idx, seed);
            assert_eq!((d.pod, d.fallback), (want, fb), "{strategy} seed {seed}");
        }
    }
    assert_eq!(
        route(
            &Weighted(vec![(Strategy::Random, 1)]),
            &req,
            &[],
            &idx,
            0.0,
            &mut SmallRng::seed_from_u64(0)
        ),
        Err(NoRoute::NoPods)
    );
}

#[test]
fn random_is_seeded_and_spreads() {
    let ps = pods(&[0, 0, 0, 0]);
    let idx = empty();
    let req = RouteRequest::default();
    let picks: Vec<usize> = (0..40)
        .map(|s| pick("random", &req, &ps, &idx, s).pod)
        .collect();
    assert_eq!(
        picks,
        (0..40)
            .map(|s| pick("random", &req, &ps, &idx, s).pod)
            .collect::<Vec<_>>()
    );
    for p in 0..4 {
        assert!(picks.contains(&p), "pod {p} never chosen: {picks:?}");
    }
}

#[test]
fn ties_are_broken_by_the_seeded_shuffle_not_by_position() {
    let ps = pods(&[1, 1, 1]);
    let idx = empty();
    let chosen: std::collections::BTreeSet<usize> = (0..30)
        .map(|s| pick("least-request", &RouteRequest::default(), &ps, &idx, s).pod)
        .collect();
    assert_eq!(chosen.len(), 3);
}

#[test]
fn session_affinity_pins_and_hashes() {
    let ps = pods(&[0, 0, 0, 0]);
    let idx = empty();
    let pinned = RouteRequest {
        session_pod: Some("10.0.0.2:8000"),
        ..RouteRequest::default()
    };
    assert_eq!(pick("session-affinity", &pinned, &ps, &idx, 1).pod, 2);
    let keyed = RouteRequest {
        session_key: Some("user-42"),
        ..RouteRequest::default()
    };
    let first = pick("session-affinity", &keyed, &ps, &idx, 1).pod;
    // Same key, any seed and any pod order: same pod.
    let mut reversed = ps.clone();
    reversed.reverse();
    for seed in 0..10 {
        assert_eq!(pick("session-affinity", &keyed, &ps, &idx, seed).pod, first);
        assert_eq!(
            reversed[pick("session-affinity", &keyed, &reversed, &idx, seed).pod].address,
            ps[first].address
        );
    }
    let d = pick(
        "session-affinity",
        &RouteRequest::default(),
        &pods(&[3, 0, 3, 3]),
        &idx,
        1,
    );
    assert_eq!((d.pod, d.fallback), (1, Some(Fallback::NoSession)));
}

#[test]
fn prefix_cache_keeps_a_prompt_and_a_growing_conversation_on_one_pod() {
    let mut idx = empty();
    let mut ps = pods(&[0, 0, 0, 0]);
    let mut conversation: Vec<u64> = (1..=8).collect();
    let d = pick(
        "prefix-cache",
        &RouteRequest {
            blocks: &conversation,
            ..RouteRequest::default()
        },
        &ps,
        &idx,
        7,
    );
    assert_eq!(d.fallback, Some(Fallback::NoPrefixMatch));
    let home = d.pod;
    idx.insert(&conversation, &ps[home].address.clone(), 100.0);
    for turn in 0..5u64 {
        // Each turn appends blocks (the reply and the next question); some load appears.
        conversation.extend([100 + 2 * turn, 101 + 2 * turn]);
        ps[home].in_flight = 1;
        for seed in 0..10 {
            let req = RouteRequest {
                blocks: &conversation,
                ..RouteRequest::default()
            };
            let d = pick("prefix-cache", &req, &ps, &idx, seed);
            assert_eq!((d.pod, d.fallback), (home, None), "turn {turn} seed {seed}");
        }
        idx.insert(&conversation, &ps[home].address.clone(), 100.0);
        ps[home].in_flight = 0;
    }
}

#[test]
fn prefix_cache_moves_off_an_overloaded_pod() {
    let mut idx = empty();
    let blocks: Vec<u64> = (1..=8).collect();
    let req = RouteRequest {
        blocks: &blocks,
        ..RouteRequest::default()
    };
    let mut ps = pods(&[0; 8]);
    idx.insert(&blocks, "10.0.0.0:8000", 100.0);
    // Loads (L, 0, 1 × 6). L = 2: mean 1, σ 0.5, cap 2 → stays. L = 6: mean 1.5, σ ≈ 1.73,
    // cap ≈ 4.96 → moves to the least loaded. L = 20: spread 20 > 16 → imbalance guard.
    // (With n pods one outlier's z-score is at most (n − 1)/√n, so k = 2 bites only from 6 pods
    // up; below that the imbalance guard does the work.)
    for (load, want, fb) in [
        (2, 0, None),
        (6, 1, Some(Fallback::NoPrefixMatch)),
        (20, 1, Some(Fallback::LoadImbalance)),
    ] {
        ps[0].in_flight = load;
        for p in &mut ps[1..] {
            p.in_flight = 1;
        }
        ps[1].in_flight = 0;
        let d = pick("prefix-cache", &req, &ps, &idx, 3);
        assert_eq!((d.pod, d.fallback), (want, fb), "load {load}");
    }
}

#[test]
fn mixes_weigh_normalised_scores() {
    let mut idx = empty();
    let blocks: Vec<u64> = (1..=4).collect();
    idx.insert(&blocks, "10.0.0.0:8000", 100.0);
    let req = RouteRequest {
        blocks: &blocks,
        ..RouteRequest::default()
    };
    let ps = pods(&[10, 0, 5]);
    // prefix 2 : load 1 → matched pod 0 scores 2/3, idle pod 1 scores 1/3.
    assert_eq!(
        pick("prefix-cache:2,least-request:1", &req, &ps, &idx, 1).pod,
        0
    );
    // prefix 1 : load 2 → pod 1 wins (2/3 against 1/3).
    assert_eq!(
        pick("prefix-cache:1,least-request:2", &req, &ps, &idx, 1).pod,
        1
    );
    // A strategy without signal adds nothing: least-kv-cache everywhere None.
    assert_eq!(
        pick("least-kv-cache:5,least-request:1", &req, &ps, &idx, 1).pod,
        1
    );
}

#[test]
fn kv_cost_trades_cached_prefill_against_load_without_a_cliff() {
    let mut idx = empty();
    // 16 blocks of 128 units = 2048 units cached on pod 0.
    let blocks: Vec<u64> = (1..=16).collect();
    idx.insert(&blocks, "10.0.0.0:8000", 100.0);
    let req = RouteRequest {
        blocks: &blocks,
        prompt_units: 2100,
        ..RouteRequest::default()
    };
    // Pod 0 saves 2048 units; each in-flight request costs 256, so it keeps winning while its
    // extra load is under 8 requests and loses from 9 on; no other threshold.
    for (extra, want) in [(0, 0), (4, 0), (7, 0), (9, 1), (20, 1)] {
        let mut ps = pods(&[2, 2, 3]);
        ps[0].in_flight += extra;
        let d = pick("kv-cost", &req, &ps, &idx, 5);
        assert_eq!((d.pod, d.fallback), (want, None), "extra load {extra}");
    }
    // The engine's waiting queue counts like in-flight load.
    let mut ps = pods(&[0, 0]);
    ps[0].metrics.waiting = Some(10.0);
    assert_eq!(pick("kv-cost", &req, &ps, &idx, 5).pod, 1);
}

#[test]
fn kv_cost_spreads_a_popular_prefix() {
    let mut idx = empty();
    let blocks: Vec<u64> = (1..=16).collect();
    let req = RouteRequest {
        blocks: &blocks,
        prompt_units: 2048,
        ..RouteRequest::default()
    };
    let mut ps = pods(&[0, 0, 0, 0]);
    let mut per_pod = [0u32; 4];
    // 64 concurrent requests with one shared prompt: load builds up as they are routed.
    for seed in 0..64 {
        let d = pick("kv-cost", &req, &ps, &idx, seed);
        idx.insert(&blocks, &ps[d.pod].address.clone(), 100.0);
        ps[d.pod].in_flight += 1;
        per_pod[d.pod] += 1;
    }
    let (min, max) = (
        per_pod.iter().min().copied().unwrap_or(0),
        per_pod.iter().max().copied().unwrap_or(0),
    );
    assert!(min >= 12 && max <= 20, "uneven spread: {per_pod:?}");
}

#[test]
fn kv_cost_scales_exact_cached_tokens_to_prompt_units() {
    // 4000 bytes of prompt, 1000 tokens: pod 0 holds 800 tokens (3200 units), pod 1 none.
    let req = RouteRequest {
        prompt_units: 4000,
        prompt_tokens: Some(1000),
        ..RouteRequest::default()
    };
    // Pod 0 saves 3200 units; each in-flight request costs 256: it wins while its extra load
    // is under 12.5 requests. A share above 1 (a stale count) is capped at the whole prompt.
    for (cached, extra, want) in [(800, 0, 0), (800, 12, 0), (800, 13, 1), (5000, 15, 0)] {
        let mut ps = pods(&[0, 0]);
        ps[0].in_flight += extra;
        ps[0].cached_tokens = Some(cached);
        ps[1].cached_tokens = Some(0);
        let d = pick("kv-cost", &req, &ps, &empty(), 5);
        assert_eq!(
            (d.pod, d.fallback),
            (want, None),
            "{cached} cached, +{extra}"
        );
    }
    // Without a token count the exact figure cannot be scaled: the approximate index decides.
    let blind = RouteRequest {
        prompt_tokens: None,
        ..req
    };
    let mut ps = pods(&[1, 0]);
    ps[0].cached_tokens = Some(800);
    assert_eq!(pick("kv-cost", &blind, &ps, &empty(), 5).pod, 1);
}
