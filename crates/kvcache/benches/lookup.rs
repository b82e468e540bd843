//! Longest-prefix lookup of a 128k-token prompt: chain-hash the prompt, then ask an index that
//! already holds every chunk (the worst case: every key is found and touched).
//! Goal (issue 13): < 1 ms per prompt. Run: `cargo bench -p brix-kvcache --bench lookup`.
#![expect(missing_docs, reason = "criterion_group! generates undocumented items")]

use brix_kvcache::{Index, IndexConfig, Namespace, PolicyKind, chunk_keys};
use criterion::{Criterion, criterion_group, criterion_main};

const PROMPT_TOKENS: u32 = 128 * 1024;

fn lookup(c: &mut Criterion) {
    let root = Namespace {
        model: "bench-model",
        adapter: None,
        tenant: None,
    }
    .root();
    // Token ids that look like a real vocabulary (not 0..n) so hashing sees varied bytes.
    let tokens: Vec<u32> = (0..PROMPT_TOKENS)
        .map(|i| i.wrapping_mul(2_654_435_761) % 128_000)
        .collect();
    for chunk in [16usize, 256] {
        let keys = chunk_keys(root, &tokens, chunk);
        c.bench_function(&format!("chunk_keys_128k_{chunk}"), |b| {
            b.iter(|| chunk_keys(root, std::hint::black_box(&tokens), chunk))
        });
        for (name, policy) in [("s3fifo", PolicyKind::default()), ("lru", PolicyKind::Lru)] {
            let mut index = Index::new(IndexConfig::new(1 << 40).with_policy(policy));
            for k in &keys {
                index.insert(*k, 1 << 20, 0).expect("capacity holds all");
            }
            c.bench_function(&format!("longest_prefix_128k_{chunk}_{name}"), |b| {
                b.iter(|| index.longest_prefix(std::hint::black_box(&keys), 0))
            });
            c.bench_function(&format!("keys_and_lookup_128k_{chunk}_{name}"), |b| {
                b.iter(|| {
                    let keys = chunk_keys(root, std::hint::black_box(&tokens), chunk);
                    index.longest_prefix(&keys, 0)
                })
            });
        }
    }
}

criterion_group!(benches, lookup);
criterion_main!(benches);
