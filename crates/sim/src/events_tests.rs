//! KV events recorded by the engine: where vLLM's BlockPool records them, and nothing when off.

use super::*;
use crate::events::KvEvent;
use crate::profile::Catalog;

fn engine(tweak: impl FnOnce(&mut EngineConfig)) -> Engine {
    let c = Catalog::builtin();
    let (m, g) = match (c.model("llama-3-8b"), c.gpu("H200")) {
        (Ok(m), Ok(g)) => (m.clone(), g.clone()),
        _ => panic!("missing profile"),
    };
    let mut cfg = EngineConfig::vllm_defaults(&m, &g);
    cfg.kv_events = true;
    tweak(&mut cfg);
    Engine::new(cfg, m, g).unwrap_or_else(|e| panic!("{e}"))
}

fn run(e: &mut Engine, id: u64, prompt: Vec<u32>, max_tokens: u32) -> Vec<KvEvent> {
    let r = NewRequest {
        id,
        prompt,
        max_tokens: Some(max_tokens),
        ignore_eos: true,
        ..NewRequest::default()
    };
    e.add_request(r, 0.0).unwrap_or_else(|x| panic!("{x}"));
    let (mut now, mut events) = (0.0, Vec::new());
    while let Some(o) = e.step(now) {
        now = o.end;
        events.extend(e.take_kv_events());
    }
    events
}

fn stored(events: &[KvEvent]) -> Vec<u64> {
    events
        .iter()
        .flat_map(|e| match e {
            KvEvent::Stored { hashes, .. } => hashes.clone(),
            _ => vec![],
        })
        .collect()
}

#[test]
fn nothing_is_recorded_when_off() {
    let mut e = engine(|c| c.kv_events = false);
    assert!(run(&mut e, 1, (1..100).collect(), 20).is_empty());
    assert!(
        e.pool.events.capacity() == 0,
        "the off path allocates nothing"
    );
}

#[test]
fn prefill_then_decode_store_chained_blocks_with_vllm_hashes() {
    let mut e = engine(|c| {
        c.prefix_caching_hash_algo = HashAlgo::Sha256Cbor;
        c.hash_seed = Some("0".into());
    });
    let prompt: Vec<u32> = (1..=40).collect();
    let ev = run(&mut e, 1, prompt.clone(), 10);
    // Prefill fills 2 blocks; decoding reaches 48 computed tokens and fills a third.
    assert_eq!(ev.len(), 2, "{ev:?}");
    let KvEvent::Stored {
        hashes,
        parent,
        token_ids,
        block_size,
        lora_id,
        lora_name,
    } = &ev[0]
    else {
        panic!("{ev:?}")
    };
    // vLLM 0.32, PYTHONHASHSEED=0, hash_block_tokens(sha256_cbor, None, 1..=16): see hash_tests.
    assert_eq!(hashes[0], 3236607068019569386);
    assert_eq!(
        (hashes.len(), *parent, &token_ids[..], *block_size),
        (2, None, &prompt[..32], 16)
    );
    assert_eq!((*lora_id, lora_name.as_deref()), (None, None));
    let KvEvent::Stored {
        hashes: h2,
        parent: p2,
        token_ids: t2,
        ..
    } = &ev[1]
    else {
        panic!("{ev:?}")
    };
    assert_eq!((h2.len(), *p2, t2.len()), (1, Some(hashes[1]), 16));
    assert_eq!(&t2[..8], &prompt[32..40]);
    // The same prompt again hits the cache: no new Stored for the hit blocks.
    let again = run(&mut e, 2, prompt, 1);
    assert!(stored(&again).is_empty(), "{again:?}");
}

#[test]
fn eviction_removes_what_was_stored_and_reset_clears() {
    let mut e = engine(|c| {
        c.num_gpu_blocks_override = Some(4);
        c.max_model_len = 64;
    });
    let a = run(&mut e, 1, (1..=33).collect(), 1);
    let a_hashes = stored(&a);
    assert_eq!(a_hashes.len(), 2, "{a:?}");
    // 60 new tokens need all 4 blocks: both of A's cached blocks are reused.
    let b = run(&mut e, 2, (100..160).collect(), 1);
    let mut removed: Vec<u64> = b
        .iter()
        .flat_map(|e| match e {
            KvEvent::Removed { hashes } => hashes.clone(),
            _ => vec![],
        })
        .collect();
    removed.sort_unstable();
    let mut want = a_hashes.clone();
    want.sort_unstable();
    assert_eq!(removed, want, "{b:?}");
    let first_removed = b.iter().position(|e| matches!(e, KvEvent::Removed { .. }));
    let first_stored = b.iter().position(|e| matches!(e, KvEvent::Stored { .. }));
    assert!(
        first_removed < first_stored,
        "evicted before B's blocks are stored: {b:?}"
    );
    assert!(e.reset_prefix_cache());
    assert_eq!(e.take_kv_events(), vec![KvEvent::Cleared]);
    assert_eq!(
        e.cached_prefix_tokens(&(100..160).collect::<Vec<_>>(), None),
        0
    );
}

#[test]
fn reset_is_refused_while_blocks_are_held() {
    let mut e = engine(|_| {});
    let r = NewRequest {
        id: 1,
        prompt: (1..=40).collect(),
        max_tokens: Some(5),
        ..NewRequest::default()
    };
    e.add_request(r, 0.0).unwrap_or_else(|x| panic!("{x}"));
    let o = e.step(0.0).unwrap_or_else(|| panic!("no step"));
    assert!(e.has_work() && o.finished.is_empty());
    assert!(!e.reset_prefix_cache());
    assert!(!e.take_kv_events().contains(&KvEvent::Cleared));
}

#[test]
fn lora_blocks_carry_the_adapter_and_differ_from_the_base() {
    let mut e = engine(|c| {
        c.enable_lora = true;
        c.prefix_caching_hash_algo = HashAlgo::Sha256Cbor;
    });
    e.load_lora("sql", "/a/sql")
        .unwrap_or_else(|x| panic!("{x}"));
    let base = stored(&run(&mut e, 1, (1..=17).collect(), 1));
    let r = NewRequest {
        id: 2,
        prompt: (1..=17).collect(),
        max_tokens: Some(1),
        lora: Some("sql".into()),
        ..NewRequest::default()
    };
    e.add_request(r, 0.0).unwrap_or_else(|x| panic!("{x}"));
    let mut ev = Vec::new();
    let mut now = 0.0;
    while let Some(o) = e.step(now) {
        now = o.end;
        ev.extend(e.take_kv_events());
    }
    let [
        KvEvent::Stored {
            hashes, lora_name, ..
        },
    ] = &ev[..]
    else {
        panic!("{ev:?}")
    };
    assert_eq!(lora_name.as_deref(), Some("sql"));
    assert_ne!(hashes, &base);
}
