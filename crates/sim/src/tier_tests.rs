//! The KV tier seen from the engine: cross-engine hits, the load-or-recompute rule, adapter
//! scoping, write-through under chunked prefill, and how the load time shows in the step.

use std::collections::HashSet;
use std::sync::Mutex;

use super::*;
use crate::config::EngineConfig;
use crate::engine::StepOutput;
use crate::profile::Catalog;
use crate::request::NewRequest;

/// An in-memory pool that keeps everything it is offered.
#[derive(Debug, Default)]
struct SetTier {
    keys: Mutex<HashSet<BlockKey>>,
    /// (chunks, bytes each, time) of every store, in order.
    stores: Mutex<Vec<(usize, u64, f64)>>,
    lookups: Mutex<u64>,
}

impl KvTier for SetTier {
    fn lookup(&self, keys: &[BlockKey], _now: f64) -> usize {
        *self.lookups.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        let held = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        keys.iter().take_while(|k| held.contains(k)).count()
    }
    fn store(&self, keys: &[BlockKey], bytes: u64, now: f64) {
        let mut held = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        held.extend(keys.iter().copied());
        let mut stores = self.stores.lock().unwrap_or_else(|e| e.into_inner());
        stores.push((keys.len(), bytes, now));
    }
}

impl SetTier {
    fn lookups(&self) -> u64 {
        *self.lookups.lock().unwrap_or_else(|e| e.into_inner())
    }
    fn stores(&self) -> Vec<(usize, u64, f64)> {
        self.stores
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

fn engine(
    tier: Option<(&Arc<SetTier>, Transport)>,
    tweak: impl FnOnce(&mut EngineConfig),
) -> Engine {
    let c = Catalog::builtin();
    let (m, g) = match (c.model("llama-3-8b"), c.gpu("H100")) {
        (Ok(m), Ok(g)) => (m.clone(), g.clone()),
        _ => panic!("missing profile"),
    };
    let mut cfg = EngineConfig::vllm_defaults(&m, &g);
    tweak(&mut cfg);
    let tier_cfg = tier.map(|(_, t)| TierConfig::new(t, &m, &g));
    let e = Engine::new(cfg, m, g).unwrap_or_else(|e| panic!("{e}"));
    match (tier, tier_cfg) {
        (Some((t, _)), Some(cfg)) => e.with_kv_tier(t.clone(), cfg),
        _ => e,
    }
}

fn req(id: u64, prompt: Vec<u32>, lora: Option<&str>) -> NewRequest {
    NewRequest {
        id,
        prompt,
        max_tokens: Some(4),
        ignore_eos: true,
        lora: lora.map(str::to_string),
        ..NewRequest::default()
    }
}

fn tokens(n: u32, salt: u32) -> Vec<u32> {
    (0..n)
        .map(|i| i.wrapping_mul(2_654_435_761).wrapping_add(salt) % 100_000)
        .collect()
}

/// Runs one request to the end from `now`; returns its outputs.
fn serve(e: &mut Engine, r: NewRequest, now: f64) -> Vec<StepOutput> {
    e.add_request(r, now).unwrap_or_else(|x| panic!("{x}"));
    let (mut outs, mut t) = (Vec::new(), now);
    while let Some(o) = e.step(t) {
        t = o.end;
        outs.push(o);
        assert!(outs.len() < 100_000, "engine did not drain");
    }
    outs
}

fn ttft(outs: &[StepOutput]) -> f64 {
    outs.iter()
        .flat_map(|o| &o.tokens)
        .find(|t| t.first)
        .map_or(f64::NAN, |t| t.latency)
}

const KV_PER_TOKEN: u64 = 131_072; // Llama-3-8B, bf16

#[test]
fn a_fresh_engine_loads_another_engines_prefix_and_answers_sooner() {
    let pool = Arc::new(SetTier::default());
    let prompt = tokens(4000, 7);
    let mut a = engine(Some((&pool, Transport::Shm)), |_| {});
    let first = serve(&mut a, req(1, prompt.clone(), None), 0.0);
    // 4000 tokens hold 15 full 256-token chunks; all are written through.
    assert_eq!(pool.keys.lock().map(|k| k.len()).unwrap_or(0), 15);
    assert_eq!(a.stats().external_stored_bytes, 15 * 256 * KV_PER_TOKEN);
    assert_eq!(a.stats().external_hits, 0);
    assert_eq!(a.stats().external_queries, 4000);

    let mut b = engine(Some((&pool, Transport::Shm)), |_| {});
    let second = serve(&mut b, req(1, prompt.clone(), None), 0.0);
    let s = b.stats();
    assert_eq!((s.external_queries, s.external_hits), (4000, 15 * 256));
    assert_eq!(s.external_loaded_bytes, 15 * 256 * KV_PER_TOKEN);
    assert_eq!(s.prefix_hits, 0, "nothing was local");
    assert_eq!(
        s.external_stored_bytes, 0,
        "the pool already held every chunk"
    );
    let f = &second
        .last()
        .map(|o| o.finished.clone())
        .unwrap_or_default()[0];
    assert_eq!((f.cached_tokens, f.external_tokens), (3840, 3840));
    assert_eq!(
        second[0].num_tokens,
        4000 - 3840,
        "only the tail is computed"
    );
    assert!(
        ttft(&second) < 0.5 * ttft(&first),
        "{} vs {}",
        ttft(&second),
        ttft(&first)
    );
    // The load is paid in the admitting step: latency + 480 MiB over the H100's host link.
    let want = SHM_LATENCY_S + (15 * 256 * KV_PER_TOKEN) as f64 / 50e9;
    assert!(
        (s.external_load_time - want).abs() < 1e-9,
        "{}",
        s.external_load_time
    );

    // The loaded blocks were cached locally: a third run hits the device cache, not the pool.
    let before = pool.lookups();
    let third = serve(&mut b, req(2, prompt, None), 10.0);
    let s = b.stats();
    assert_eq!(
        s.prefix_hits, 3984,
        "249 full blocks, all but the last token"
    );
    assert_eq!(s.external_hits, 3840, "no new pool hit");
    assert_eq!(
        pool.lookups(),
        before,
        "a local hit up to the cap asks the pool nothing"
    );
    assert!(ttft(&third) <= ttft(&second));
}

#[test]
fn local_hits_come_first_and_the_pool_supplies_the_rest() {
    let pool = Arc::new(SetTier::default());
    let prompt = tokens(3000, 11);
    serve(
        &mut engine(Some((&pool, Transport::Tcp)), |_| {}),
        req(1, prompt.clone(), None),
        0.0,
    );
    let mut b = engine(Some((&pool, Transport::Tcp)), |_| {});
    // b has the first 1000 tokens locally (62 blocks = 992 tokens; it loaded 3 chunks of them).
    serve(&mut b, req(1, prompt[..1000].to_vec(), None), 0.0);
    let (q0, h0) = (b.stats().external_queries, b.stats().external_hits);
    assert_eq!(h0, 768);
    let bytes0 = b.stats().external_loaded_bytes;
    let outs = serve(&mut b, req(2, prompt, None), 10.0);
    let s = b.stats();
    assert_eq!(s.prefix_hits, 992);
    // The pool holds 11 chunks (2816 tokens); the local hit ends inside chunk 3, which is
    // loaded whole but counts only its tokens past the local hit.
    assert_eq!(s.external_hits - h0, 2816 - 992);
    assert_eq!(s.external_queries - q0, 3000 - 992);
    assert_eq!(
        s.external_loaded_bytes - bytes0,
        (11 - 3) * 256 * KV_PER_TOKEN
    );
    let f = &outs.last().map(|o| o.finished.clone()).unwrap_or_default()[0];
    assert_eq!((f.cached_tokens, f.external_tokens), (2816, 2816 - 992));
}

#[test]
fn a_tier_slower_than_recompute_is_asked_but_not_used() {
    let pool = Arc::new(SetTier::default());
    let prompt = tokens(4000, 3);
    serve(
        &mut engine(Some((&pool, Transport::Shm)), |_| {}),
        req(1, prompt.clone(), None),
        0.0,
    );
    let c = Catalog::builtin();
    let (m, g) = match (c.model("llama-3-8b"), c.gpu("H100")) {
        (Ok(m), Ok(g)) => (m.clone(), g.clone()),
        _ => panic!("missing profile"),
    };
    // 100 MB/s: 480 MiB would take 5 s, prefilling 4000 tokens on an H100 well under one.
    let slow = TierConfig {
        bandwidth_bytes_per_s: 100e6,
        ..TierConfig::new(Transport::Tcp, &m, &g)
    };
    let cfg = EngineConfig::vllm_defaults(&m, &g);
    let mut b = Engine::new(cfg, m, g)
        .unwrap_or_else(|e| panic!("{e}"))
        .with_kv_tier(pool.clone(), slow);
    let lookups = pool.lookups();
    let outs = serve(&mut b, req(1, prompt, None), 0.0);
    assert_eq!(pool.lookups(), lookups + 1, "the pool was asked");
    let s = b.stats();
    assert_eq!((s.external_queries, s.external_hits), (4000, 0));
    assert_eq!((s.external_loaded_bytes, s.external_load_time), (0, 0.0));
    assert_eq!(outs[0].num_tokens, 4000);
}

#[test]
fn adapters_and_models_do_not_share_chunks() {
    let pool = Arc::new(SetTier::default());
    let lora = |c: &mut EngineConfig| {
        c.enable_lora = true;
        c.max_loras = 2;
        c.max_cpu_loras = 2;
    };
    let prompt = tokens(2000, 5);
    let mut a = engine(Some((&pool, Transport::Shm)), lora);
    a.load_lora("sql", "/adapters/sql")
        .unwrap_or_else(|x| panic!("{x}"));
    serve(&mut a, req(1, prompt.clone(), Some("sql")), 0.0);
    let mut b = engine(Some((&pool, Transport::Shm)), lora);
    for name in ["sql", "chat"] {
        b.load_lora(name, &format!("/other/{name}"))
            .unwrap_or_else(|x| panic!("{x}"));
    }
    // Same text: the base model and another adapter miss, the same adapter name hits.
    serve(&mut b, req(1, prompt.clone(), None), 0.0);
    serve(&mut b, req(2, prompt.clone(), Some("chat")), 10.0);
    assert_eq!(b.stats().external_hits, 0);
    serve(&mut b, req(3, prompt.clone(), Some("sql")), 20.0);
    assert_eq!(b.stats().external_hits, 7 * 256);
    // Another served model name is another namespace.
    let c = Catalog::builtin();
    let (m, g) = match (c.model("llama-3-8b"), c.gpu("H100")) {
        (Ok(m), Ok(g)) => (m.clone(), g.clone()),
        _ => panic!("missing profile"),
    };
    let other = TierConfig {
        model: "someone/else".into(),
        ..TierConfig::new(Transport::Shm, &m, &g)
    };
    let mut d = Engine::new(EngineConfig::vllm_defaults(&m, &g), m, g)
        .unwrap_or_else(|e| panic!("{e}"))
        .with_kv_tier(pool.clone(), other);
    serve(&mut d, req(1, prompt, None), 0.0);
    assert_eq!(d.stats().external_hits, 0);
}

#[test]
fn chunked_prefill_writes_each_chunk_through_in_the_step_that_completes_it() {
    let pool = Arc::new(SetTier::default());
    let mut a = engine(Some((&pool, Transport::Shm)), |c| {
        c.max_num_batched_tokens = 2048;
    });
    let outs = serve(&mut a, req(1, tokens(5000, 1), None), 0.0);
    let chunks: Vec<u32> = outs.iter().map(|o| o.num_tokens).collect();
    assert_eq!(chunks[..3], [2048, 2048, 904]);
    // 2048 tokens = 8 chunks per step, then 3 more (19 full chunks in 5000 tokens).
    let stores = pool.stores();
    let sizes: Vec<usize> = stores.iter().map(|s| s.0).collect();
    assert_eq!(sizes, vec![8, 8, 3]);
    assert!(stores.iter().all(|s| s.1 == 256 * KV_PER_TOKEN));
    // Each store happens at the end of its step, and that step paid the copy out.
    let ends: Vec<f64> = outs[..3].iter().map(|o| o.end).collect();
    assert_eq!(stores.iter().map(|s| s.2).collect::<Vec<_>>(), ends);
    let want = (19 * 256 * KV_PER_TOKEN) as f64 / 50e9;
    assert!((a.stats().external_store_time - want).abs() < 1e-9);
}

#[test]
fn without_a_tier_nothing_external_happens() {
    let mut e = engine(None, |_| {});
    let prompt = tokens(4000, 7);
    serve(&mut e, req(1, prompt.clone(), None), 0.0);
    let outs = serve(&mut e, req(2, prompt, None), 10.0);
    let s = e.stats();
    assert_eq!(
        (
            s.external_queries,
            s.external_hits,
            s.external_loaded_bytes,
            s.external_stored_bytes
        ),
        (0, 0, 0, 0)
    );
    assert_eq!(s.external_load_time + s.external_store_time, 0.0);
    let f = &outs.last().map(|o| o.finished.clone()).unwrap_or_default()[0];
    assert_eq!((f.cached_tokens, f.external_tokens), (3984, 0));
    assert!(e.kv_tier_config().is_none());
}

#[test]
fn tier_settings_are_checked_and_repaired() {
    let c = Catalog::builtin();
    let (m, g) = match (c.model("llama-3-8b"), c.gpu("A100-80GB")) {
        (Ok(m), Ok(g)) => (m.clone(), g.clone()),
        _ => panic!("missing profile"),
    };
    let base = TierConfig::new(Transport::Shm, &m, &g);
    assert_eq!(base.bandwidth_bytes_per_s, 25e9, "the A100's host link");
    assert_eq!(
        TierConfig::new(Transport::Tcp, &m, &g).bandwidth_bytes_per_s,
        10e9
    );
    assert!(base.validate(16).is_ok());
    for bad in [
        TierConfig {
            chunk_tokens: 100,
            ..base.clone()
        },
        TierConfig {
            chunk_tokens: 0,
            ..base.clone()
        },
        TierConfig {
            bandwidth_bytes_per_s: 0.0,
            ..base.clone()
        },
        TierConfig {
            latency_s: f64::NAN,
            ..base.clone()
        },
    ] {
        assert!(bad.validate(16).is_err(), "{bad:?}");
    }
    assert_eq!("TCP".parse::<Transport>(), Ok(Transport::Tcp));
    assert!("rdma".parse::<Transport>().is_err());
    // An engine given a 100-token chunk uses 112 (7 blocks) rather than failing.
    let pool = Arc::new(SetTier::default());
    let mut e = Engine::new(EngineConfig::vllm_defaults(&m, &g), m, g)
        .unwrap_or_else(|e| panic!("{e}"))
        .with_kv_tier(
            pool.clone(),
            TierConfig {
                chunk_tokens: 100,
                ..base
            },
        );
    serve(&mut e, req(1, tokens(1000, 2), None), 0.0);
    assert_eq!(pool.keys.lock().map(|k| k.len()).unwrap_or(0), 1000 / 112);
}
