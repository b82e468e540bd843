//! The chain's definition, its stability across versions, and the shared-prefix property.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use xxhash_rust::xxh64::xxh64;

use super::*;

#[test]
fn chain_is_xxh64_over_the_parent_and_the_block() {
    let text = b"0123456789abcdefXYZ"; // two full blocks of 8 and a partial one
    let h = hash_bytes(text, 8, 7);
    let mut first = 7u64.to_le_bytes().to_vec();
    first.extend_from_slice(b"01234567");
    let h0 = xxh64(&first, 7);
    let mut second = h0.to_le_bytes().to_vec();
    second.extend_from_slice(b"89abcdef");
    assert_eq!(h, vec![h0, xxh64(&second, 7)]);
    // Tokens hash as their little-endian bytes: the same chain over the same bytes.
    let tokens = [0x6463_6261_u32, 0x6867_6665, 0x6c6b_6a69];
    assert_eq!(
        hash_tokens(&tokens, 2, 7),
        hash_bytes(b"abcdefghijkl", 8, 7)[..1].to_vec()
    );
    assert!(hash_bytes(text, 0, 7).is_empty());
    assert!(hash_tokens(&tokens, 0, 7).is_empty());
    assert!(hash_bytes(b"short", 8, 7).is_empty());
}

#[test]
fn default_seed_ids_never_change() {
    // Replicas and versions must agree on block ids: pin two values.
    let h = hash_bytes(&[b'a'; 256], 128, DEFAULT_SEED);
    assert_eq!(h, PINNED.to_vec(), "{h:#x?}");
}

const PINNED: [u64; 2] = [0x2311_d101_de95_8be4, 0x03ea_2ca6_2658_8972];

#[test]
fn a_prompt_extending_another_shares_exactly_its_leading_blocks() {
    let mut rng = SmallRng::seed_from_u64(11);
    for case in 0..300 {
        let block = rng.random_range(1..64usize);
        let len = rng.random_range(0..2000usize);
        let a: Vec<u8> = (0..len).map(|_| rng.random()).collect();
        // b = a's first `keep` bytes, then something else (or a itself, extended).
        let keep = rng.random_range(0..=len);
        let mut b = a[..keep].to_vec();
        let tail = rng.random_range(0..500usize);
        b.extend((0..tail).map(|_| rng.random::<u8>()));
        if let Some(x) = b.get_mut(keep)
            && keep < len
            && *x == a[keep]
        {
            *x = x.wrapping_add(1);
        }
        let (ha, hb) = (
            hash_bytes(&a, block, DEFAULT_SEED),
            hash_bytes(&b, block, DEFAULT_SEED),
        );
        let shared = ha.iter().zip(&hb).take_while(|(x, y)| x == y).count();
        let want = if keep == len {
            ha.len().min(hb.len()) // b extends a
        } else {
            (keep / block).min(hb.len()) // they differ at byte `keep`
        };
        assert_eq!(
            shared, want,
            "case {case}: block {block}, len {len}, keep {keep}"
        );
        // The same for token ids.
        let ta: Vec<u32> = a.iter().map(|&x| u32::from(x) * 977).collect();
        let tb: Vec<u32> = b.iter().map(|&x| u32::from(x) * 977).collect();
        let (ha, hb) = (
            hash_tokens(&ta, block, DEFAULT_SEED),
            hash_tokens(&tb, block, DEFAULT_SEED),
        );
        let shared = ha.iter().zip(&hb).take_while(|(x, y)| x == y).count();
        assert_eq!(shared, want, "tokens case {case}");
    }
}

#[test]
fn seeds_and_units_parse() {
    assert_ne!(hash_bytes(&[1; 16], 16, 1), hash_bytes(&[1; 16], 16, 2));
    for u in [BlockUnit::Bytes, BlockUnit::Tokens] {
        assert_eq!(u.as_str().parse::<BlockUnit>(), Ok(u));
    }
    assert_eq!(BlockUnit::default(), BlockUnit::Bytes);
    assert_eq!(BlockUnit::default().default_block(), 128);
    assert_eq!(
        "words".parse::<BlockUnit>(),
        Err(BlockUnitParseError("words".into()))
    );
}
