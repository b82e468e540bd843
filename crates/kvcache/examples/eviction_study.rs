//! Eviction study: replays a Mooncake-format trace through this crate's `Index` (the code the
//! pool server and the virtual-time fleet run) at 1–40 % of the trace's unique blocks, LRU vs
//! S3-FIFO with small queues of 0.1 and 0.3, unit-weight and token-weighted blocks, and prints
//! markdown tables of prefix hit ratios.
//!
//! `cargo run --release -p brix-kvcache --example eviction_study -- TRACE.jsonl [MAX_REQUESTS]`

use std::time::Instant;

use brix_kvcache::replay::{TraceRequest, Weighting, replay, replay_with, unique_weight};
use brix_kvcache::{IndexConfig, PolicyKind};

const CAPS_PCT: [f64; 6] = [1.0, 2.0, 5.0, 10.0, 20.0, 40.0];
/// The reference study's table (kvcache.md §6.3, conversation trace): LRU, S3-FIFO 0.1, 0.3.
const REFERENCE: [[f64; 3]; 6] = [
    [0.052, 0.076, 0.072],
    [0.079, 0.108, 0.101],
    [0.195, 0.191, 0.198],
    [0.278, 0.244, 0.274],
    [0.345, 0.307, 0.325],
    [0.360, 0.360, 0.360],
];

fn parse(text: &str, limit: usize) -> Result<Vec<TraceRequest>, String> {
    let mut out = Vec::new();
    for (n, line) in text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .take(limit)
        .enumerate()
    {
        let v: serde_json::Value =
            serde_json::from_str(line).map_err(|e| format!("line {}: {e}", n + 1))?;
        let field = |k: &str| {
            v[k].as_u64()
                .ok_or_else(|| format!("line {}: no {k}", n + 1))
        };
        let ids = v["hash_ids"]
            .as_array()
            .ok_or_else(|| format!("line {}: no hash_ids", n + 1))?;
        out.push(TraceRequest {
            timestamp_ms: field("timestamp")?,
            input_length: field("input_length")?,
            hash_ids: ids
                .iter()
                .map(|x| x.as_u64().ok_or(format!("line {}: bad id", n + 1)))
                .collect::<Result<_, _>>()?,
        });
    }
    Ok(out)
}

fn main() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .ok_or("usage: eviction_study TRACE.jsonl [MAX_REQUESTS]")?;
    let limit = match args.next() {
        Some(n) => n.parse().map_err(|e| format!("MAX_REQUESTS: {e}"))?,
        None => usize::MAX,
    };
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    let trace = parse(&text, limit)?;
    let policies = [
        ("LRU", PolicyKind::Lru),
        ("S3-FIFO 0.1", PolicyKind::S3Fifo { small_ratio: 0.1 }),
        ("S3-FIFO 0.2", PolicyKind::S3Fifo { small_ratio: 0.2 }),
        ("S3-FIFO 0.3", PolicyKind::S3Fifo { small_ratio: 0.3 }),
    ];
    let refs: usize = trace.iter().map(|r| r.hash_ids.len()).sum();
    println!(
        "trace: {path}, {} requests, {refs} block references",
        trace.len()
    );
    let started = Instant::now();
    for (label, weighting) in [
        (
            "unit-weight blocks (prefix-block hit ratio)",
            Weighting::Unit,
        ),
        (
            "token-weighted blocks, last block = its real tokens (token hit ratio)",
            Weighting::Tokens { block_tokens: 512 },
        ),
    ] {
        let unique = unique_weight(&trace, weighting);
        println!("\n### {label}; capacity as % of {unique} unique\n");
        let names: Vec<&str> = policies.iter().map(|p| p.0).collect();
        let unit = weighting == Weighting::Unit;
        let extra = if unit {
            " | reference LRU / 0.1 / 0.3 | S3-FIFO 0.1 vs LRU"
        } else {
            " | S3-FIFO 0.1 vs LRU"
        };
        println!("| cap | {}{extra} |", names.join(" | "));
        println!(
            "|---|{}{}",
            "---|".repeat(names.len()),
            if unit { "---|---|" } else { "---|" }
        );
        for (row, pct) in CAPS_PCT.iter().enumerate() {
            let cap = ((unique as f64) * pct / 100.0).round() as u64;
            let ratios: Vec<f64> = policies
                .iter()
                .map(|(_, p)| {
                    let r = replay(&trace, cap, *p, weighting);
                    if unit {
                        r.block_hit_ratio()
                    } else {
                        r.weight_hit_ratio()
                    }
                })
                .collect();
            let cells: Vec<String> = ratios.iter().map(|r| format!("{r:.3}")).collect();
            let gain = format!("{:+.0} %", (ratios[1] / ratios[0] - 1.0) * 100.0);
            if unit {
                let [a, b, c] = REFERENCE[row];
                println!(
                    "| {pct} % | {} | {a:.3} / {b:.3} / {c:.3} | {gain} |",
                    cells.join(" | ")
                );
            } else {
                println!("| {pct} % | {} | {gain} |", cells.join(" | "));
            }
        }
    }
    // The same at the index's default watermarks (evict from 95 % down to 90 % in one batch):
    // what batch eviction costs in hit ratio.
    let unique = unique_weight(&trace, Weighting::Unit);
    println!(
        "\n### unit-weight blocks, default watermarks (high {}, low {})\n",
        IndexConfig::DEFAULT_HIGH,
        IndexConfig::DEFAULT_LOW
    );
    println!(
        "| cap | {} |",
        policies.iter().map(|p| p.0).collect::<Vec<_>>().join(" | ")
    );
    println!("|---|{}", "---|".repeat(policies.len()));
    for pct in CAPS_PCT {
        let cap = ((unique as f64) * pct / 100.0).round() as u64;
        let cells: Vec<String> = policies
            .iter()
            .map(|(_, p)| {
                format!(
                    "{:.3}",
                    replay_with(
                        &trace,
                        IndexConfig::new(cap).with_policy(*p),
                        Weighting::Unit
                    )
                    .block_hit_ratio()
                )
            })
            .collect();
        println!("| {pct} % | {} |", cells.join(" | "));
    }
    eprintln!(
        "replayed {} runs in {:.1} s",
        3 * CAPS_PCT.len() * policies.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
