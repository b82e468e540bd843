//! What one engine step costs in CPU time, so virtual-time studies stay cheap.
//!
//! `cargo bench -p brix-sim --bench step`
#![allow(missing_docs, reason = "criterion_group! generates undocumented items")]

use brix_sim::{Catalog, Engine, EngineConfig, NewRequest, run_closed_loop};
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};

fn engine(gpu: &str) -> Engine {
    let c = Catalog::builtin();
    let (Ok(m), Ok(g)) = (c.model("llama-3-8b"), c.gpu(gpu)) else {
        panic!("missing built-in profile");
    };
    Engine::new(EngineConfig::vllm_defaults(m, g), m.clone(), g.clone())
        .unwrap_or_else(|e| panic!("{e}"))
}

fn request(i: u64) -> NewRequest {
    NewRequest {
        id: i,
        prompt: (0..512)
            .map(|t| (t * 31 + i as u32 * 7) % 50_000 + 1)
            .collect(),
        max_tokens: Some(256),
        ..NewRequest::default()
    }
}

/// An engine with `n` requests past prefill, decoding.
fn decoding(n: u64) -> (Engine, f64) {
    let mut e = engine("A100-80GB");
    for i in 0..n {
        e.add_request(request(i), 0.0)
            .unwrap_or_else(|x| panic!("{x}"));
    }
    let mut now = 0.0;
    while e.snapshot().num_waiting > 0 || e.stats().generation_tokens < n {
        now = e.step(now).map_or(now, |o| o.end);
    }
    (e, now)
}

fn bench_step(c: &mut Criterion) {
    for n in [32, 256] {
        c.bench_function(&format!("decode step, {n} running"), |b| {
            b.iter_batched_ref(
                || decoding(n),
                |(e, now)| *now = e.step(*now).map_or(*now, |o| o.end),
                BatchSize::LargeInput,
            )
        });
    }
    c.bench_function("1000 requests end to end (concurrency 64)", |b| {
        b.iter(|| {
            let mut e = engine("A100-80GB");
            run_closed_loop(&mut e, 64, 1000, request)
        })
    });
}

criterion_group!(benches, bench_step);
criterion_main!(benches);
