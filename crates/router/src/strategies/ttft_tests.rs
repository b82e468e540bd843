//! `ttft`: its profile against the engine model, and the behaviours it promises (no cliff,
//! bursts spread, a cached prefix kept until its queue outweighs it, a clamped correction).

use brix_sim::{BatchItem, Catalog, EngineConfig, StepCost};
use rand::SeedableRng;
use rand::rngs::SmallRng;

use super::ttft::{TtftProfile, estimate};
use crate::fleet::{Booking, CoreConfig, PodCore};
use crate::pod::{Pod, RouteRequest};
use crate::prefix::{PrefixConfig, PrefixIndex};
use crate::select::route;
use crate::strategy::Weighted;

fn roofline() -> (StepCost, u32) {
    let c = Catalog::builtin();
    let (m, g) = match (c.model("llama-3-8b"), c.gpu("A100-80GB")) {
        (Ok(m), Ok(g)) => (m, g),
        _ => panic!("missing profile"),
    };
    let e = EngineConfig::vllm_defaults(m, g);
    (StepCost::new(m, g), e.max_num_batched_tokens)
}

fn step_of(s: &StepCost) -> impl Fn(&[(u32, u32)]) -> f64 + '_ {
    |items: &[(u32, u32)]| {
        s.step_time(
            items.iter().map(|&(new_tokens, context)| BatchItem {
                new_tokens,
                context,
            }),
            0.0,
        )
    }
}

#[test]
fn the_default_profile_is_the_engine_models_roofline() {
    let (s, budget) = roofline();
    let fit = TtftProfile::fit(step_of(&s), budget);
    let d = TtftProfile::default();
    let close = |a: f64, b: f64| (a - b).abs() <= 0.02 * b.abs().max(1e-12);
    assert!(
        close(d.fixed_s, fit.fixed_s),
        "{} {}",
        d.fixed_s,
        fit.fixed_s
    );
    assert!(close(d.compute_s_per_token, fit.compute_s_per_token));
    assert!(close(d.attn_s_per_token2, fit.attn_s_per_token2));
    assert!(close(d.per_seq_s, fit.per_seq_s));
    assert!(close(d.weights_s, fit.weights_s));
    assert!(close(d.kv_s_per_token, fit.kv_s_per_token));
    assert_eq!(d.budget_tokens, fit.budget_tokens);
    // The linear profile prices the batches the oracle prices within 10 %.
    for (chunk, decodes, ctx) in [
        (2048u32, 0u32, 0u32),
        (512, 0, 0),
        (16, 0, 0),
        (1984, 64, 4000),
        (100, 200, 3000),
        (0, 128, 6000),
    ] {
        let mut items = vec![(1, ctx); decodes as usize];
        if chunk > 0 {
            items.push((chunk, 0));
        }
        let want = step_of(&s)(&items);
        let got = fit.step_s(
            f64::from(chunk),
            f64::from(decodes),
            f64::from(decodes) * f64::from(ctx),
        );
        assert!(
            (got - want).abs() <= 0.1 * want,
            "chunk {chunk} decodes {decodes}: {got} vs {want}"
        );
    }
}

fn req(blocks: &[u64], units: u32) -> RouteRequest<'_> {
    RouteRequest {
        blocks,
        prompt_units: units,
        ..RouteRequest::default()
    }
}

fn pod_view(i: usize, c: &PodCore) -> Pod {
    c.snapshot(
        &format!("p{i}"),
        &format!("p{i}"),
        1.0,
        &CoreConfig::default(),
    )
}

fn decide(cores: &[PodCore], index: &PrefixIndex, r: &RouteRequest<'_>, seed: u64) -> usize {
    let pods: Vec<Pod> = cores
        .iter()
        .enumerate()
        .map(|(i, c)| pod_view(i, c))
        .collect();
    let s: Weighted = "ttft".parse().unwrap_or_else(|e| panic!("{e}"));
    match route(&s, r, &pods, index, 1.0, &mut SmallRng::seed_from_u64(seed)) {
        Ok(d) => d.pod,
        Err(e) => panic!("{e}"),
    }
}

/// An index where pod 0 holds the 4,000-token (16,000-byte) prompt `blocks`.
fn warm(blocks: &[u64]) -> PrefixIndex {
    let mut index = PrefixIndex::new(PrefixConfig::default());
    index.insert(blocks, "p0", 0.5);
    index
}

#[test]
fn a_cached_prefix_wins_until_its_queue_outweighs_it() {
    let blocks: Vec<u64> = (0..125).collect();
    let r = req(&blocks, 16_000);
    let index = warm(&blocks);
    let mut cores = vec![PodCore::default(); 4];
    for c in &mut cores {
        c.probe(true, 0.0, &CoreConfig::default());
    }
    assert_eq!(decide(&cores, &index, &r, 1), 0, "idle: the cached pod");
    // Queue prefill on the cached pod until it loses; it must lose at about the point where
    // its queue costs what recomputing the prompt elsewhere does: the 4,000 tokens' wait plus
    // the same again for the compute it adds there (`uncached_weight` 1), not before.
    let mut queued = 0.0;
    while decide(&cores, &index, &r, 1) == 0 {
        cores[0].begin();
        cores[0].book(250.0, 250.0, 0.0);
        queued += 250.0;
        assert!(queued < 20_000.0, "never spilled");
    }
    assert!(
        (6_500.0..=9_500.0).contains(&queued),
        "spilled at {queued} queued tokens"
    );
}

#[test]
fn no_cliff_the_estimate_is_continuous_and_monotone_in_the_queue() {
    let blocks: Vec<u64> = (0..125).collect();
    let r = req(&blocks, 16_000);
    let cfg = PrefixConfig::default();
    let mut c = PodCore::default();
    c.begin();
    let mut last = 0.0;
    for k in 0..400 {
        let e = estimate(&r, &pod_view(0, &c), 60, &cfg).ttft_s;
        assert!(e >= last, "monotone: {e} after {last} at step {k}");
        // 50 more queued tokens never move the estimate by more than a few of their steps.
        assert!(k == 0 || e - last < 0.02, "jump {last} -> {e} at step {k}");
        last = e;
        c.book(50.0, 0.0, 0.0);
    }
}

#[test]
fn a_burst_is_charged_at_the_decision_and_spreads() {
    // 64 requests arrive before any first token, each a shared 2,048-token head (64 blocks of
    // 128 bytes at 4 bytes a token) and its own 2,048-token tail; no pod holds anything yet.
    // Every decision books its prefill at once and the index learns the prompt, so the head's
    // pod is cheaper by the head but carries the queue it was given.
    let mut index = PrefixIndex::new(PrefixConfig::default());
    let mut cores = vec![PodCore::default(); 4];
    let mut per = [0u32; 4];
    let mut open: Vec<(usize, Booking)> = Vec::new();
    for n in 0..64u64 {
        let blocks: Vec<u64> = (0..64)
            .chain((0..64).map(|k| 1_000 * (n + 1) + k))
            .collect();
        let r = req(&blocks, 16_384);
        let p = decide(&cores, &index, &r, n);
        let pods: Vec<Pod> = (0..4).map(|i| pod_view(i, &cores[i])).collect();
        let m = index.matched(&blocks, &pods, 1.0)[p];
        let e = estimate(&r, &pods[p], m, index.config());
        cores[p].begin();
        open.push((
            p,
            cores[p].book(e.uncached_tokens, e.prompt_tokens, e.predicted_s),
        ));
        index.insert(&blocks, &format!("p{p}"), 1.0);
        per[p] += 1;
    }
    assert!(per.iter().all(|&n| (8..=24).contains(&n)), "{per:?}");
    for (p, mut b) in open {
        cores[p].release(&mut b);
    }
    assert!(cores.iter().all(|c| c.pending_prefill() == 0.0));
}

#[test]
fn the_correction_is_clamped() {
    let blocks: Vec<u64> = (0..10).collect();
    let r = req(&blocks, 4_000);
    let cfg = PrefixConfig::default();
    let mut c = PodCore::default();
    c.begin();
    let base = estimate(&r, &pod_view(0, &c), 0, &cfg);
    assert_eq!(base.correction, 1.0, "no sample: no correction");
    // A pod measured far slower than predicted, again and again: at most the clamp.
    for _ in 0..50 {
        let mut b = c.book(10.0, 10.0, 0.01);
        c.first_token(&mut b, Some(10.0));
        c.release(&mut b);
    }
    let slow = estimate(&r, &pod_view(0, &c), 0, &cfg);
    assert_eq!(slow.correction, cfg.ttft.correction_max);
    assert!((slow.ttft_s - cfg.ttft.correction_max * slow.predicted_s).abs() < 1e-12);
    // And far faster: at least the lower clamp.
    for _ in 0..50 {
        let mut b = c.book(10.0, 10.0, 10.0);
        c.first_token(&mut b, Some(0.001));
        c.release(&mut b);
    }
    let fast = estimate(&r, &pod_view(0, &c), 0, &cfg);
    assert_eq!(fast.correction, cfg.ttft.correction_min);
}

#[test]
fn units_per_token_are_learned_from_the_responses() {
    let blocks: Vec<u64> = (0..10).collect();
    let r = req(&blocks, 6_400);
    let cfg = PrefixConfig::default();
    let mut c = PodCore::default();
    assert_eq!(
        estimate(&r, &pod_view(0, &c), 0, &cfg).prompt_tokens,
        1_600.0
    );
    for _ in 0..100 {
        c.prompt_size(6_400.0, 1_000.0);
    }
    let e = estimate(&r, &pod_view(0, &c), 0, &cfg);
    assert!((e.prompt_tokens - 1_000.0).abs() < 1.0, "{e:?}");
}

#[test]
fn exact_cached_tokens_replace_the_index_where_a_pod_has_events() {
    let blocks: Vec<u64> = (0..10).collect();
    let tokens: Vec<u32> = (0..2_000).collect();
    let r = RouteRequest {
        tokens: Some(&tokens),
        ..req(&blocks, 1_280)
    };
    let cfg = PrefixConfig::default();
    let mut p = pod_view(0, &PodCore::default());
    // Without events: the index's 5 of 10 blocks, as a share of 2,000 tokens.
    let approx = estimate(&r, &p, 5, &cfg);
    assert_eq!(
        (approx.prompt_tokens, approx.uncached_tokens),
        (2_000.0, 1_000.0)
    );
    // With events: what the pod holds, whatever the index says.
    p.cached_tokens = Some(1_600);
    let exact = estimate(&r, &p, 5, &cfg);
    assert_eq!(
        (exact.prompt_tokens, exact.uncached_tokens),
        (2_000.0, 400.0)
    );
    assert!(exact.ttft_s < approx.ttft_s);
}

#[test]
fn a_pod_without_measurements_borrows_its_peers_and_is_not_starved() {
    // Three pods measured faster than predicted (correction 0.8) and a fourth, new, with no
    // sample: judged by the neutral 1.0 it would lose every cold request to the measured
    // ones and never get the responses that would measure it (seen in a live run: 0 of 320).
    let cfg = PrefixConfig::default();
    let index = PrefixIndex::new(cfg.clone());
    let mut cores: Vec<PodCore> = (0..4).map(|_| PodCore::default()).collect();
    for c in &mut cores[..3] {
        for _ in 0..50 {
            let mut b = c.book(10.0, 10.0, 1.0);
            c.first_token(&mut b, Some(0.5));
            c.release(&mut b);
        }
        for _ in 0..50 {
            c.prompt_size(6_000.0, 1_000.0);
        }
    }
    let blocks: Vec<u64> = (0..10).collect();
    let r = req(&blocks, 6_000);
    let wins = (0..400u64)
        .filter(|&seed| decide(&cores, &index, &r, seed) == 3)
        .count();
    // Every pod is idle and cold: the new one wins its share of the seeded ties.
    assert!((60..=140).contains(&wins), "the new pod won {wins} of 400");
}
