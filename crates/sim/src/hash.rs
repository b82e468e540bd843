//! Chained block hashes, as vLLM's automatic prefix caching computes them.
//!
//! `hash_i = H(hash_{i-1}, tokens of block i, extra keys)`; the first block chains from a fixed
//! seed (vLLM's `NONE_HASH`). The one extra key modelled is the LoRA adapter, so the same text
//! under two adapters never shares KV. The hash is deterministic across processes so engines
//! (and, later, the KV pool and the router's prefix index) agree on block identity.

use std::hash::{DefaultHasher, Hash, Hasher};

/// Identity of one full KV block's contents and everything before it.
pub type BlockHash = u64;

const NONE_HASH: BlockHash = 0x9e37_79b9_7f4a_7c15;

/// Hash of a full block given its parent's hash (None for the first block).
pub fn block_hash(parent: Option<BlockHash>, tokens: &[u32], lora: Option<u32>) -> BlockHash {
    let mut h = DefaultHasher::new();
    parent.unwrap_or(NONE_HASH).hash(&mut h);
    tokens.hash(&mut h);
    lora.hash(&mut h);
    h.finish()
}

/// Extends `hashes` to cover every full block of `tokens`.
pub fn extend_hashes(
    hashes: &mut Vec<BlockHash>,
    tokens: &[u32],
    block_size: usize,
    lora: Option<u32>,
) {
    let full = tokens.len() / block_size;
    while hashes.len() < full {
        let i = hashes.len();
        let parent = hashes.last().copied();
        hashes.push(block_hash(
            parent,
            &tokens[i * block_size..(i + 1) * block_size],
            lora,
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chained_hashes_depend_on_everything_before() {
        let a: Vec<u32> = (0..64).collect();
        let mut b = a.clone();
        b[3] = 999;
        let (mut ha, mut hb, mut hl) = (vec![], vec![], vec![]);
        extend_hashes(&mut ha, &a, 16, None);
        extend_hashes(&mut hb, &b, 16, None);
        extend_hashes(&mut hl, &a, 16, Some(1));
        assert_eq!(ha.len(), 4);
        // One changed token in block 0 changes every later hash; a LoRA changes all.
        assert!(ha.iter().zip(&hb).all(|(x, y)| x != y));
        assert!(ha.iter().zip(&hl).all(|(x, y)| x != y));
        let mut again = vec![];
        extend_hashes(&mut again, &a[..40], 16, None);
        assert_eq!(again, ha[..2]);
    }
}
