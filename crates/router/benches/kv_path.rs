//! The request-path cost of exact KV routing: read the chat from the body, render it with the
//! chat template, tokenize it, cut it into block keys and match them against 8 pods' warm
//! exact indexes, then route (`kv-cost`). 4 KiB and 32 KiB chats; the built-in `cl100k_base`
//! tokenizer, or a Hugging Face one with `--features hf-tokenizer` and
//! `BRIX_BENCH_TOKENIZER=DIR`.

#![expect(missing_docs, reason = "criterion_group! generates undocumented items")]

use std::hint::black_box;

use brix_router::{
    KvIndex, Pod, PrefixConfig, PrefixIndex, PromptKeys, RouteRequest, Weighted, route,
};
use brix_tokenizer::{Api, Tokenizer};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

const PODS: usize = 8;
/// Blocks each pod's index holds besides this chat (160k tokens of 16-token blocks).
const WARM_BLOCKS: u64 = 10_000;
const BLOCK: u32 = 16;

const WORDS: &[&str] = &[
    "the",
    "model",
    "routes",
    "every",
    "request",
    "to",
    "a",
    "pod",
    "whose",
    "cache",
    "holds",
    "its",
    "prefix",
    "and",
    "load",
    "is",
    "light",
    "enough",
    "so",
    "time",
    "first",
    "token",
    "stays",
    "low",
    "while",
    "throughput",
    "grows",
    "with",
    "replicas",
    "gateway",
    "engine",
    "block",
    "hash",
    "event",
    "stored",
    "removed",
    "cleared",
    "conversation",
    "system",
    "user",
];

/// A chat body of about `bytes` bytes: a system prompt and alternating turns.
fn chat_body(bytes: usize, seed: u64) -> Vec<u8> {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut messages = Vec::new();
    let mut total = 0;
    let mut role = "system";
    while total < bytes {
        let mut text = String::new();
        for _ in 0..rng.random_range(20..200) {
            text.push_str(WORDS[rng.random_range(0..WORDS.len())]);
            text.push(if rng.random_range(0..10) == 0 {
                '.'
            } else {
                ' '
            });
        }
        total += text.len();
        messages.push(serde_json::json!({"role": role, "content": text}));
        role = if role == "user" { "assistant" } else { "user" };
    }
    serde_json::to_vec(&serde_json::json!({"model": "m", "messages": messages})).unwrap_or_default()
}

/// 8 pods' indexes, each warm with other prompts; pod 3 also holds the first 3/4 of `tokens`.
fn warm_indexes(tokens: &[u32]) -> Vec<KvIndex> {
    let mut rng = SmallRng::seed_from_u64(7);
    (0..PODS)
        .map(|p| {
            let mut idx = KvIndex::default();
            let mut parent = None;
            for b in 0..WARM_BLOCKS {
                let ids: Vec<u32> = (0..BLOCK).map(|_| rng.random_range(0..100_000)).collect();
                let h = (p as u64) << 40 | b;
                if b % 64 == 0 {
                    parent = None;
                }
                let _ = idx.stored(parent, &[h], &ids, BLOCK, None);
                parent = Some(h);
            }
            if p == 3 {
                let blocks = tokens.len() * 3 / 4 / BLOCK as usize;
                let hashes: Vec<u64> = (0..blocks as u64).map(|b| 1 << 50 | b).collect();
                let _ = idx.stored(
                    None,
                    &hashes,
                    &tokens[..blocks * BLOCK as usize],
                    BLOCK,
                    None,
                );
            }
            idx
        })
        .collect()
}

fn tokenizer() -> Tokenizer {
    let path = std::env::var_os("BRIX_BENCH_TOKENIZER").map(std::path::PathBuf::from);
    Tokenizer::load(path.as_deref()).unwrap_or_else(|e| panic!("tokenizer: {e}"))
}

fn request_path(c: &mut Criterion) {
    let tok = tokenizer();
    let strategy: Weighted = "kv-cost".parse().unwrap_or_else(|e| panic!("{e}"));
    let prefix = PrefixIndex::new(PrefixConfig::default());
    let mut g = c.benchmark_group("kv_request_path_8_pods");
    for kib in [4usize, 32] {
        let body = chat_body(kib * 1024, kib as u64);
        let tokens = tok
            .request_tokens(Api::Chat, &body)
            .unwrap_or_else(|| panic!("the chat tokenizes"));
        let indexes = warm_indexes(&tokens);
        let pods: Vec<Pod> = (0..PODS)
            .map(|i| Pod {
                name: format!("p{i}"),
                address: format!("10.0.0.{i}:8000"),
                ..Pod::default()
            })
            .collect();
        g.throughput(Throughput::Bytes(body.len() as u64));
        let full = |body: &[u8], pods: &mut Vec<Pod>| {
            let tokens = tok.request_tokens(Api::Chat, body).unwrap_or_default();
            let mut keys = PromptKeys::new(&tokens, None);
            for (p, idx) in pods.iter_mut().zip(&indexes) {
                p.cached_tokens = Some(keys.cached_tokens(idx));
            }
            let req = RouteRequest {
                prompt_units: body.len() as u32,
                tokens: Some(&tokens),
                ..RouteRequest::default()
            };
            let mut rng = SmallRng::seed_from_u64(1);
            route(&strategy, &req, pods, &prefix, 1.0, &mut rng).map(|d| d.pod)
        };
        let mut scratch = pods.clone();
        assert_eq!(full(&body, &mut scratch), Ok(3), "pod 3 holds the chat");
        g.bench_with_input(
            BenchmarkId::new("parse+template+tokenize+keys+match+route", kib),
            &body,
            |b, body| b.iter(|| full(black_box(body), &mut scratch)),
        );
        g.bench_with_input(
            BenchmarkId::new("parse+template+tokenize", kib),
            &body,
            |b, body| b.iter(|| tok.request_tokens(Api::Chat, black_box(body))),
        );
        g.bench_with_input(
            BenchmarkId::new("keys+match_8_pods", kib),
            &tokens,
            |b, t| {
                b.iter(|| {
                    let mut keys = PromptKeys::new(black_box(t), None);
                    indexes.iter().map(|i| keys.cached_tokens(i)).sum::<u32>()
                })
            },
        );
    }
    g.finish();
}

criterion_group!(benches, request_path);
criterion_main!(benches);
