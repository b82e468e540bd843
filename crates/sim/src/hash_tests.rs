use super::*;

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn chain(h: &BlockHasher, tokens: &[u32], bs: usize, lora: Option<LoraKey>) -> Vec<BlockHash> {
    let (mut v, mut last) = (vec![], None);
    h.extend(&mut v, &mut last, tokens, bs, lora);
    v
}

#[test]
fn chained_hashes_depend_on_everything_before() {
    for algo in [
        HashAlgo::Builtin,
        HashAlgo::Sha256Cbor,
        HashAlgo::XxhashCbor,
    ] {
        let h = BlockHasher::new(algo, Some("0"));
        let a: Vec<u32> = (0..64).collect();
        let mut b = a.clone();
        b[3] = 999;
        let lora = LoraKey {
            id: 1,
            name: "x",
            path: "/x",
        };
        let (ha, hb, hl) = (
            chain(&h, &a, 16, None),
            chain(&h, &b, 16, None),
            chain(&h, &a, 16, Some(lora)),
        );
        assert_eq!(ha.len(), 4);
        // One changed token in block 0 changes every later hash; a LoRA changes all.
        assert!(ha.iter().zip(&hb).all(|(x, y)| x != y), "{algo:?}");
        assert!(ha.iter().zip(&hl).all(|(x, y)| x != y), "{algo:?}");
        assert_eq!(chain(&h, &a[..40], 16, None), ha[..2], "{algo:?}");
    }
}

/// Vectors from vLLM 0.32's own functions with `PYTHONHASHSEED=0`:
/// `init_none_hash(sha256_cbor)`, then `hash_block_tokens(sha256_cbor, parent, tokens,
/// extra_keys)` (see docs/sim.md, "KV events", for the script).
#[test]
fn sha256_cbor_matches_vllm_bit_for_bit() {
    let h = BlockHasher::new(HashAlgo::Sha256Cbor, Some("0"));
    assert_eq!(
        hex(h.none_hash().as_bytes()),
        "4e1195df020de59e0d65a33a4279f1183e7ae4e5d980e309f8b55adff2e61c3e"
    );
    let toks: Vec<u32> = (1..17).collect();
    let h0 = h.hash(None, &toks, None);
    assert_eq!(
        hex(h0.as_bytes()),
        "202da172482d928bbc42ab25b0151e2b895f13f41002e27b2ceabcfae6d332ea"
    );
    assert_eq!(h0.key(), 3236607068019569386);
    let h1 = h.hash(Some(&h0), &[1000, 70000, 5, 300000, 24, 23, 255, 256], None);
    assert_eq!(
        hex(h1.as_bytes()),
        "ccef49f57a66dafd33db42bb2b24c2dc5820968de286faf60b6414d21ade430a"
    );
    assert_eq!(h1.key(), 820803924714734346);
    let lora = LoraKey {
        id: 1,
        name: "sql",
        path: "/a/sql",
    };
    let hl = h.hash(None, &toks, Some(lora));
    assert_eq!(
        hex(hl.as_bytes()),
        "f889ed238cf526627ffe7c12349df8c264e077539b1ec52ee2f2416249c80033"
    );
    assert_eq!(hl.key(), 16353205087336136755);
    // Without PYTHONHASHSEED, vLLM seeds a cryptographic hash with "vllm-none-hash".
    assert_ne!(
        BlockHasher::new(HashAlgo::Sha256Cbor, None).none_hash(),
        h.none_hash()
    );
}

/// Vectors from python `xxhash.xxh3_128_digest(cbor2.dumps(..., canonical=True))`, which is
/// vLLM's `xxhash_cbor`, with seed "0".
#[test]
fn xxhash_cbor_matches_vllm_bit_for_bit() {
    let h = BlockHasher::new(HashAlgo::XxhashCbor, Some("0"));
    assert_eq!(
        hex(h.none_hash().as_bytes()),
        "1ebe36576dcb573f26b99533a20aaeca"
    );
    let toks: Vec<u32> = (1..17).collect();
    let h0 = h.hash(None, &toks, None);
    assert_eq!(hex(h0.as_bytes()), "c2d7a75070fc6d6b0c3fb0af456c1009");
    assert_eq!(h0.key(), 882618318818381833);
}

#[test]
fn vllm_algo_names() {
    assert_eq!(HashAlgo::from_vllm("sha256"), Some(HashAlgo::Builtin));
    assert_eq!(
        HashAlgo::from_vllm("sha256_cbor"),
        Some(HashAlgo::Sha256Cbor)
    );
    assert_eq!(
        HashAlgo::from_vllm("xxhash_cbor"),
        Some(HashAlgo::XxhashCbor)
    );
    assert_eq!(HashAlgo::from_vllm("md5"), None);
}
