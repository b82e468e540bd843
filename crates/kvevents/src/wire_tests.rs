use super::*;
use crate::msgpack::Writer;

fn fixture(name: &str) -> Vec<u8> {
    let p = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&p).unwrap_or_else(|e| panic!("{p}: {e}"))
}

#[test]
fn every_captured_vllm_batch_decodes_and_reencodes_byte_for_byte() {
    for seq in 0..5 {
        let bytes = fixture(&format!("pub-{seq}.bin"));
        let b = decode(&bytes).unwrap_or_else(|e| panic!("pub-{seq}: {e}"));
        assert_eq!(b.data_parallel_rank, Some(0));
        assert!(b.ts > 1e9, "wall-clock seconds");
        assert_eq!(encode(&b), bytes, "pub-{seq} re-encodes to vLLM's bytes");
        if seq > 0 {
            // The replay socket answers with the very payload it published.
            assert_eq!(fixture(&format!("replay-{seq}.bin")), bytes);
        }
    }
}

#[test]
fn captured_fields_are_read_as_vllm_wrote_them() {
    let b = decode(&fixture("pub-3.bin")).unwrap_or_else(|e| panic!("{e}"));
    let [Event::BlockRemoved(r), Event::BlockStored(s)] = &b.events[..] else {
        panic!("{b:?}")
    };
    assert_eq!(r.block_hashes, vec![7962935438816051503]);
    assert_eq!((r.medium.as_deref(), r.group_idx), (Some("GPU"), Some(0)));
    assert_eq!(s.block_hashes, vec![15636371390183109106]);
    assert_eq!(s.parent_block_hash, Some(15808668761766412889));
    assert_eq!((s.token_ids.len(), s.block_size), (128, 128));
    assert_eq!((s.lora_id, s.lora_name.as_deref()), (None, None));
    assert_eq!(s.extra_keys, Some(vec![None]));
    assert_eq!(s.kv_cache_spec_kind.as_deref(), Some("full_attention"));
    let b = decode(&fixture("pub-4.bin")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(b.events[0], Event::AllBlocksCleared);
}

/// `brix sim`'s sha256_cbor hashing gives the hashes the real vLLM published for the same
/// prompt (PYTHONHASHSEED=0, block size 128).
#[test]
fn the_sim_hasher_reproduces_the_captured_hashes() {
    let meta: serde_json::Value =
        serde_json::from_slice(&fixture("frames.json")).unwrap_or_else(|e| panic!("{e}"));
    let prompt: Vec<u32> = meta["prompts"][0]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|t| t.as_u64())
                .map(|t| t as u32)
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(prompt.len(), 300);
    let h = brix_sim::BlockHasher::new(brix_sim::HashAlgo::Sha256Cbor, Some("0"));
    let (mut hashes, mut last) = (vec![], None);
    h.extend(&mut hashes, &mut last, &prompt, 128, None);
    let b = decode(&fixture("pub-0.bin")).unwrap_or_else(|e| panic!("{e}"));
    let Event::BlockStored(s) = &b.events[0] else {
        panic!("{b:?}")
    };
    assert_eq!(s.block_hashes, hashes);
    assert_eq!(s.token_ids, prompt[..256]);
}

#[test]
fn byte_hashes_fold_to_their_last_eight_bytes_and_unknown_fields_are_skipped() {
    let mut w = Writer::default();
    w.array(2);
    w.f64(1.5);
    w.array(2);
    w.map(4);
    w.str("type");
    w.str("BlockRemoved");
    w.str("future_field");
    w.map(1);
    w.str("x");
    w.array(2);
    w.nil();
    w.f64(2.0);
    w.str("block_hashes");
    w.array(1);
    let mut bytes = w.into_bytes();
    bytes.extend_from_slice(&[0xc4, 32]);
    bytes.extend((0..32u8).collect::<Vec<_>>());
    let mut w = Writer::default();
    w.str("medium");
    w.nil();
    w.map(1);
    w.str("type");
    w.str("SomethingNew");
    bytes.extend(w.into_bytes());
    let b = decode(&bytes).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        b.events,
        vec![Event::BlockRemoved(BlockRemoved {
            block_hashes: vec![u64::from_be_bytes([24, 25, 26, 27, 28, 29, 30, 31])],
            medium: None,
            group_idx: None,
        })]
    );
    assert_eq!((b.ts, b.data_parallel_rank), (1.5, None));
}

#[test]
fn malformed_payloads_are_errors_not_panics_or_huge_allocations() {
    let good = fixture("pub-2.bin");
    for n in 0..good.len() {
        assert!(decode(&good[..n]).is_err(), "truncated at {n}");
    }
    // An array claiming 4 billion events in a few bytes.
    let huge = [
        0x92, 0xcb, 0, 0, 0, 0, 0, 0, 0, 0, 0xdd, 0xff, 0xff, 0xff, 0xff,
    ];
    assert!(decode(&huge).is_err());
    // Deep nesting in an unknown field.
    let mut deep = vec![0x92, 0xcb, 0, 0, 0, 0, 0, 0, 0, 0, 0x91, 0x82];
    deep.extend_from_slice(&[0xa4, b't', b'y', b'p', b'e', 0xac]);
    deep.extend_from_slice(b"BlockRemoved");
    deep.extend_from_slice(&[0xa1, b'z']);
    deep.extend(std::iter::repeat_n(0x91, 100_000));
    deep.push(0xc0);
    assert_eq!(
        decode(&deep),
        Err(DecodeError::Malformed("nested too deep"))
    );
    assert_eq!(
        decode(&vec![0; MAX_PAYLOAD + 1]),
        Err(DecodeError::TooLarge(MAX_PAYLOAD + 1))
    );
    let mut trailing = good.clone();
    trailing.push(0);
    assert!(decode(&trailing).is_err());
}
