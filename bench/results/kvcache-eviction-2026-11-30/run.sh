#!/usr/bin/env bash
# The eviction study (docs/kvcache.md, "Eviction"): the Mooncake conversation trace replayed
# through brix-kvcache's own Index (LRU vs S3-FIFO small 0.1/0.2/0.3, 1–40 % of unique blocks,
# unit and token weights, per-insert and default watermarks). Run from the repository root;
# TRACE defaults to ../shared/traces/mooncake_conversation.jsonl. Writes table.md here.
set -euo pipefail
TRACE=${TRACE:-../shared/traces/mooncake_conversation.jsonl}
HERE=bench/results/kvcache-eviction-2026-11-30
cargo run --release -p brix-kvcache --example eviction_study -- "$TRACE" > "$HERE/table.md"
