//! Routing hot paths: cutting a prompt into block hashes (bytes, or tokenize + tokens), and
//! one `route` call with `prefix-cache` and `kv-cost` over 8 pods and a warm 100k-block index;
//! one `Fleet::decide` over 8 pods without and with an optimizer plan (2 groups).

#![expect(missing_docs, reason = "criterion_group! generates undocumented items")]

use std::hint::black_box;

use std::sync::Arc;

use brix_router::fleet::{CoreConfig, Fleet};
use brix_router::{
    DEFAULT_SEED, PlanRoutes, Pod, PrefixConfig, PrefixIndex, RouteRequest, Weighted, hash_bytes,
    hash_tokens, route,
};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

#[path = "../examples/support/words.rs"]
mod words;
use words::WORDS;

/// Chat-like English text of about `bytes` bytes, seeded.
fn chat_text(bytes: usize, seed: u64) -> String {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut s = String::with_capacity(bytes + 16);
    while s.len() < bytes {
        s.push_str(WORDS[rng.random_range(0..WORDS.len())]);
        s.push_str(match rng.random_range(0..12) {
            0 => ". ",
            1 => ", ",
            2 => "\n",
            _ => " ",
        });
    }
    s.truncate(bytes);
    s
}

fn hashing(c: &mut Criterion) {
    let bpe = tiktoken_rs::cl100k_base().unwrap_or_else(|e| panic!("cl100k: {e}"));
    let mut g = c.benchmark_group("blocks");
    for kib in [4usize, 32] {
        let text = chat_text(kib * 1024, 1);
        g.throughput(Throughput::Bytes(text.len() as u64));
        g.bench_with_input(BenchmarkId::new("hash_bytes_128", kib), &text, |b, t| {
            b.iter(|| hash_bytes(black_box(t.as_bytes()), 128, DEFAULT_SEED))
        });
        g.bench_with_input(
            BenchmarkId::new("tiktoken_cl100k+hash_tokens_32", kib),
            &text,
            |b, t| {
                b.iter(|| {
                    let tokens = bpe.encode_ordinary(black_box(t));
                    hash_tokens(&tokens, 32, DEFAULT_SEED)
                })
            },
        );
        let tokens = bpe.encode_ordinary(&text);
        g.bench_with_input(BenchmarkId::new("hash_tokens_32", kib), &tokens, |b, t| {
            b.iter(|| hash_tokens(black_box(t), 32, DEFAULT_SEED))
        });
    }
    g.finish();
}

fn routing(c: &mut Criterion) {
    let pods: Vec<Pod> = (0..8)
        .map(|i| Pod {
            name: format!("pod-{i}"),
            address: format!("10.0.0.{i}:8000"),
            in_flight: (i * 3 % 5) as u32,
            ..Pod::default()
        })
        .collect();
    // Warm index: 800 conversations of 125 blocks (100k entries), each on one pod.
    let mut index = PrefixIndex::new(PrefixConfig::default());
    let mut first_conversation = String::new();
    for conv in 0..800u64 {
        let text = chat_text(125 * 128, 100 + conv);
        let blocks = hash_bytes(text.as_bytes(), 128, DEFAULT_SEED);
        index.insert(&blocks, &pods[(conv % 8) as usize].address, 0.0);
        if conv == 0 {
            first_conversation = text;
        }
    }
    // A 32 KiB prompt whose first 125 blocks are cached on one pod.
    let mut prompt = first_conversation;
    prompt.push_str(&chat_text(32 * 1024 - prompt.len(), 7));
    let blocks = hash_bytes(prompt.as_bytes(), 128, DEFAULT_SEED);
    let req = RouteRequest {
        blocks: &blocks,
        prompt_units: prompt.len() as u32,
        ..RouteRequest::default()
    };
    let mut g = c.benchmark_group("route_8_pods_100k_blocks");
    for name in ["prefix-cache", "kv-cost", "least-request"] {
        let strategy: Weighted = name.parse().unwrap_or_else(|e| panic!("{e}"));
        let mut rng = SmallRng::seed_from_u64(3);
        g.bench_function(name, |b| {
            b.iter(|| route(&strategy, black_box(&req), &pods, &index, 1.0, &mut rng))
        });
    }
    g.finish();
}

/// The fleet's decision (snapshot refresh + strategy), and the plan stage's added cost.
fn fleet_decide(c: &mut Criterion) {
    let names: Vec<(String, String)> = (0..8)
        .map(|i| (format!("pod-{i}"), format!("10.0.0.{i}:8000")))
        .collect();
    let mut fleet = Fleet::new(&names, PrefixConfig::default(), CoreConfig::default());
    for i in 0..8 {
        fleet.probe(i, true, 0.0);
        fleet.set_group(i, Some(if i % 2 == 0 { "A10" } else { "H100" }));
        for _ in 0..(i * 3 % 5) {
            fleet.begin(i);
        }
    }
    // A 10 × 10 grid plan: short inputs mostly on A10, long ones on H100.
    let inputs: Vec<u32> = (0..10).map(|k| 32 << k).collect();
    let outputs: Vec<u32> = (0..10).map(|k| 4 << k).collect();
    let weights = (0..100)
        .map(|cell| {
            let a = 1.0 - (cell % 10) as f64 / 9.0;
            vec![a, 1.0 - a]
        })
        .collect();
    let plan = Arc::new(PlanRoutes {
        inputs,
        outputs,
        groups: vec!["A10".into(), "H100".into()],
        planned: vec![4, 4],
        weights,
        demand: vec![1.0; 100],
    });
    let req = RouteRequest {
        prompt_units: 4096,
        max_tokens: Some(256),
        ..RouteRequest::default()
    };
    let strategy: Weighted = "least-request".parse().unwrap_or_else(|e| panic!("{e}"));
    let mut g = c.benchmark_group("fleet_decide_8_pods");
    for (name, p) in [("no-plan", None), ("plan-2-groups", Some(plan))] {
        fleet.set_plan(p);
        let mut rng = SmallRng::seed_from_u64(5);
        g.bench_function(name, |b| {
            b.iter(|| fleet.decide(&strategy, black_box(&req), 1.0, &mut rng))
        });
    }
    g.finish();
}

criterion_group!(benches, hashing, routing, fleet_decide);
criterion_main!(benches);
