use std::path::PathBuf;

use super::*;

fn req(t: u64, input_length: u64, ids: &[u64]) -> TraceRequest {
    TraceRequest {
        timestamp_ms: t,
        input_length,
        hash_ids: ids.to_vec(),
    }
}

/// Parses a Mooncake-format JSONL trace (`timestamp`, `input_length`, `hash_ids`).
pub(crate) fn parse_trace(text: &str, limit: usize) -> Vec<TraceRequest> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .take(limit)
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).expect("trace line is JSON");
            let ids = v["hash_ids"].as_array().expect("hash_ids");
            TraceRequest {
                timestamp_ms: v["timestamp"].as_u64().unwrap_or(0),
                input_length: v["input_length"].as_u64().expect("input_length"),
                hash_ids: ids.iter().map(|x| x.as_u64().expect("id")).collect(),
            }
        })
        .collect()
}

#[test]
fn weights_and_ceiling() {
    let trace = [
        req(0, 1030, &[0, 1, 2]),
        req(1, 600, &[0, 1]),
        req(2, 512, &[0]),
    ];
    let w = Weighting::Tokens { block_tokens: 512 };
    assert_eq!([w.weight(&trace[0], 0), w.weight(&trace[0], 2)], [512, 6]);
    assert_eq!(w.weight(&trace[1], 1), 88);
    assert_eq!(w.weight(&trace[2], 0), 512);
    assert_eq!(unique_weight(&trace, Weighting::Unit), 3);
    assert_eq!(unique_weight(&trace, w), 512 + 512 + 6);
    // Infinite capacity: every repeated block is a hit (3 of 6 references).
    let r = replay(&trace, 1 << 20, PolicyKind::Lru, Weighting::Unit);
    assert_eq!((r.blocks, r.hit_blocks), (6, 3));
    // Room for one block: only the shared first block can hit, and it is evicted by the
    // request's own later blocks under LRU.
    let r = replay(&trace, 1, PolicyKind::Lru, Weighting::Unit);
    assert_eq!(r.hit_blocks, 0);
    assert!(r.stats.evictions > 0);
}

/// `../shared/traces` beside the checkout, if present (CI and developers have it); also one
/// level further up, for worktrees kept in a folder beside `shared/`.
fn traces_dir() -> Option<PathBuf> {
    let crate_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let found = ["../../../shared/traces", "../../../../shared/traces"]
        .iter()
        .map(|rel| crate_dir.join(rel))
        .find(|d| d.is_dir());
    if found.is_none() {
        eprintln!("skipping: no shared traces beside {}", crate_dir.display());
    }
    found
}

/// The reference study's finding at small capacity, reproduced on the first 3000 requests of
/// the Mooncake conversation trace with this crate's index: S3-FIFO beats LRU at 2 %.
#[test]
fn s3fifo_beats_lru_at_small_capacity_on_mooncake() {
    let Some(dir) = traces_dir() else { return };
    let text =
        std::fs::read_to_string(dir.join("mooncake_conversation.jsonl")).expect("trace readable");
    let trace = parse_trace(&text, 3000);
    let cap = unique_weight(&trace, Weighting::Unit) / 50;
    let lru = replay(&trace, cap, PolicyKind::Lru, Weighting::Unit);
    let s3 = replay(&trace, cap, PolicyKind::default(), Weighting::Unit);
    eprintln!(
        "2 % of {} requests: LRU {:.4}, S3-FIFO {:.4}",
        trace.len(),
        lru.block_hit_ratio(),
        s3.block_hit_ratio()
    );
    assert!(
        s3.block_hit_ratio() > lru.block_hit_ratio() * 1.1,
        "S3-FIFO {s3:?} vs LRU {lru:?}"
    );
}
