use std::collections::HashMap;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::*;

/// Tokens `from..from + n`.
fn toks(from: u32, n: u32) -> Vec<u32> {
    (from..from + n).collect()
}

#[test]
fn matches_stored_chains_and_stops_at_the_first_miss() {
    let mut idx = KvIndex::new(100);
    // Prompt of 3 blocks of 4 (12 tokens) + 1 token; engine hashes are arbitrary.
    let prompt = toks(0, 13);
    assert_eq!(idx.stored(None, &[11, 12], &prompt[..8], 4, None), Ok(()));
    assert_eq!(idx.stored(Some(12), &[13], &prompt[8..12], 4, None), Ok(()));
    assert_eq!((idx.len(), idx.block_size()), (3, 4));
    let keys = |t: &[u32]| RequestKeys::new(t, 4, None);
    // (request tokens, cached tokens)
    let cases: [(&[u32], u32); 6] = [
        (&prompt, 12),
        (&prompt[..12], 8), // the last token is always computed: 2 of 3 blocks can hit
        (&prompt[..9], 8),
        (&prompt[..4], 0),
        (&[0, 1, 2, 3, 9, 9, 9, 9, 9], 4),
        (&[], 0),
    ];
    for (t, want) in cases {
        assert_eq!(idx.matched_tokens(&keys(t)), want, "{t:?}");
    }
    // Removing the middle block cuts the match there, whatever follows.
    assert_eq!(idx.removed(&[12, 99]), 1);
    assert_eq!(idx.matched_tokens(&keys(&prompt)), 4);
    // A LoRA adapter's blocks never match the base model's, nor another adapter's.
    idx.stored(None, &[21], &prompt[..4], 4, Some("sql"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        idx.matched_tokens(&RequestKeys::new(&prompt, 4, Some("sql"))),
        4
    );
    assert_eq!(
        idx.matched_tokens(&RequestKeys::new(&prompt, 4, Some("x"))),
        0
    );
    assert_ne!(kv_seed(None), kv_seed(Some("")));
    idx.cleared();
    assert!(idx.is_empty());
    assert_eq!(
        (idx.block_size(), idx.matched_tokens(&keys(&prompt))),
        (0, 0)
    );
}

#[test]
fn refuses_gaps_malformed_events_and_overflow_loudly() {
    let mut idx = KvIndex::new(3);
    let t = toks(100, 16);
    // (parent, hashes, tokens, block size, result, blocks held after)
    type Case<'a> = (
        Option<u64>,
        &'a [u64],
        &'a [u32],
        u32,
        Result<(), StoreError>,
        usize,
    );
    let cases: [Case<'_>; 8] = [
        (Some(7), &[1], &t[..4], 4, Err(StoreError::Gap(7)), 0),
        (None, &[1, 2], &t[..7], 4, Err(StoreError::Malformed), 0),
        (None, &[1], &t[..0], 0, Err(StoreError::Malformed), 0),
        (None, &[1, 2], &t[..8], 4, Ok(()), 2),
        // Reported again (vLLM's reuse reports): nothing changes.
        (None, &[1, 2], &t[..8], 4, Ok(()), 2),
        (Some(2), &[3], &t[8..12], 4, Ok(()), 3),
        // Full: refused, not evicted.
        (Some(3), &[4], &t[12..16], 4, Err(StoreError::Full), 3),
        (None, &[], &[], 4, Ok(()), 3),
    ];
    for (i, (parent, hashes, tokens, bs, want, len)) in cases.into_iter().enumerate() {
        assert_eq!(
            idx.stored(parent, hashes, tokens, bs, None),
            want,
            "case {i}"
        );
        assert_eq!(idx.len(), len, "case {i}");
    }
    assert_eq!(idx.matched_tokens(&RequestKeys::new(&t, 4, None)), 12);
    // apply() routes each kind.
    assert_eq!(idx.apply(KvUpdate::Removed { hashes: &[3] }), Ok(()));
    assert_eq!(idx.len(), 2);
    assert_eq!(idx.apply(KvUpdate::Cleared), Ok(()));
    assert!(idx.is_empty());
}

#[test]
fn prompt_keys_follow_each_index_block_size() {
    let t = toks(0, 40);
    let mut small = KvIndex::new(10);
    let mut big = KvIndex::new(10);
    small
        .stored(None, &[1, 2], &t[..16], 8, None)
        .unwrap_or_else(|e| panic!("{e}"));
    big.stored(None, &[1], &t[..32], 32, None)
        .unwrap_or_else(|e| panic!("{e}"));
    let mut keys = PromptKeys::new(&t, None);
    assert_eq!(keys.cached_tokens(&small), 16);
    assert_eq!(keys.cached_tokens(&big), 32);
    assert_eq!(keys.cached_tokens(&KvIndex::new(10)), 0, "no store yet");
    assert_eq!(keys.len(), 40);
}

/// The engine side of the differential test: prompts whose blocks it caches and evicts, each
/// block named by an engine hash of its whole prefix (another function than Brix's keys).
struct Engine {
    held: HashMap<u64, (Vec<u32>, Option<&'static str>)>,
}

fn engine_hash(prefix: &[u32], lora: Option<&str>) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (prefix, lora).hash(&mut h);
    h.finish()
}

/// The naive model: a request's cached tokens are its longest run of leading blocks whose
/// whole prefix (and adapter) some held block has.
fn naive_cached(
    held: &HashMap<u64, (Vec<u32>, Option<&str>)>,
    t: &[u32],
    bs: usize,
    lora: Option<&str>,
) -> u32 {
    let cacheable = t.len().saturating_sub(1) / bs;
    let n = (1..=cacheable)
        .take_while(|&b| {
            held.values()
                .any(|(p, l)| *l == lora && p.as_slice() == &t[..b * bs])
        })
        .count();
    (n * bs) as u32
}

#[test]
fn agrees_with_a_naive_model_on_random_event_streams() {
    const BS: usize = 4;
    let loras = [None, Some("sql")];
    for seed in 0..30u64 {
        let mut rng = SmallRng::seed_from_u64(seed);
        // Six conversations sharing a system prompt of 2 blocks; each grows turn by turn.
        let system = toks(1000, 2 * BS as u32);
        let convs: Vec<Vec<u32>> = (0..6u32)
            .map(|c| {
                let mut v = system.clone();
                v.extend((0..40).map(|i| c * 100 + i));
                v
            })
            .collect();
        let mut engine = Engine {
            held: HashMap::new(),
        };
        let mut idx = KvIndex::new(1000);
        let mut hits = 0;
        for step in 0..300 {
            let c = &convs[rng.random_range(0..convs.len())];
            let lora = loras[rng.random_range(0..2)];
            let len = rng.random_range(0..c.len());
            let prompt = &c[..len];
            match rng.random_range(0..20) {
                // Cache-reset.
                0 => {
                    engine.held.clear();
                    idx.cleared();
                }
                // Evict a few random blocks (the engine's LRU is not ours to model).
                1..=6 => {
                    let mut hs: Vec<u64> = engine.held.keys().copied().collect();
                    hs.sort_unstable();
                    let gone: Vec<u64> = hs.into_iter().filter(|_| rng.random_bool(0.3)).collect();
                    for h in &gone {
                        engine.held.remove(h);
                    }
                    assert_eq!(idx.removed(&gone), gone.len(), "seed {seed} step {step}");
                }
                // Serve the prompt: store its blocks after the leading ones held, as vLLM's
                // `cache_full_blocks` does (parent = the last block already cached).
                _ => {
                    let full = len / BS;
                    let held = |b: usize| {
                        engine
                            .held
                            .contains_key(&engine_hash(&prompt[..(b + 1) * BS], lora))
                    };
                    let first = (0..full).position(|b| !held(b)).unwrap_or(full);
                    let parent = (first > 0).then(|| engine_hash(&prompt[..first * BS], lora));
                    let hashes: Vec<u64> = (first..full)
                        .map(|b| engine_hash(&prompt[..(b + 1) * BS], lora))
                        .collect();
                    for b in first..full {
                        let p = prompt[..(b + 1) * BS].to_vec();
                        engine.held.insert(engine_hash(&p, lora), (p, lora));
                    }
                    let r = idx.stored(
                        parent,
                        &hashes,
                        &prompt[first * BS..full * BS],
                        BS as u32,
                        lora,
                    );
                    assert_eq!(r, Ok(()), "seed {seed} step {step}");
                }
            }
            assert_eq!(idx.len(), engine.held.len(), "seed {seed} step {step}");
            for probe_lora in loras {
                let probe = &c[..rng.random_range(0..c.len())];
                let got = idx.matched_tokens(&RequestKeys::new(probe, BS as u32, probe_lora));
                assert_eq!(
                    got,
                    naive_cached(&engine.held, probe, BS, probe_lora),
                    "seed {seed} step {step}"
                );
                hits += usize::from(got > 0);
            }
        }
        assert!(
            hits > 50,
            "seed {seed}: the stream exercises matches ({hits})"
        );
    }
}
