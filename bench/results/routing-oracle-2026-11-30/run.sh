#!/usr/bin/env bash
# The ttft strategy against every other strategy and the oracle, in virtual time (docs/router.md,
# "ttft"). Run from the repository root after `cargo build --release -p brix`; TRACE points at
# mooncake_conversation.jsonl (default ../shared/traces/). Writes each scenario's runs under
# bench/out/routing-oracle/ and keeps their summaries here; then prints the table (table.py).
set -euo pipefail
TRACE=${TRACE:-../shared/traces/mooncake_conversation.jsonl}
HERE=bench/results/routing-oracle-2026-11-30
OUT=bench/out/routing-oracle
S=random,least-request,prefix-cache,kv-cost,sglang-cache-aware,ttft,oracle
COMMON=(--gpu A100-80GB --model-profile llama-3-8b --seed 1 --strategy "$S")
MT=multi-turn:sessions=%s,turns=5,system=1536,systems=16,user=256,output=128,think=3

run() { # name, then brix bench sim flags
  local name=$1; shift
  ./target/release/brix bench sim "${COMMON[@]}" "$@" --output "$OUT/$name" >/dev/null
  mkdir -p "$HERE/$name"
  cp "$OUT/$name/summary.md" "$HERE/$name/"
  for d in "$OUT/$name"/*/; do
    mkdir -p "$HERE/$name/$(basename "$d")"
    cp "$d/summary.json" "$d/sim.json" "$HERE/$name/$(basename "$d")/"
  done
}

run mooncake-light --workload "$TRACE" --arrival trace --fit-context --engines 8
run mooncake-heavy --workload "$TRACE" --arrival trace --fit-context --engines 6
run multiturn-light --workload "$(printf "$MT" 400)" --arrival onoff:6,0.5,10,30 --engines 4
run multiturn-heavy --workload "$(printf "$MT" 800)" --arrival onoff:40,2,10,30 --engines 4
# The same Mooncake scenarios routed on the engines' KV events (exact cached tokens).
S=ttft,kv-cost,prefix-cache
COMMON=(--gpu A100-80GB --model-profile llama-3-8b --seed 1 --strategy "$S" --kv-events)
run mooncake-light-events --workload "$TRACE" --arrival trace --fit-context --engines 8
run mooncake-heavy-events --workload "$TRACE" --arrival trace --fit-context --engines 6
run multiturn-light-events --workload "$(printf "$MT" 400)" --arrival onoff:6,0.5,10,30 --engines 4
run multiturn-heavy-events --workload "$(printf "$MT" 800)" --arrival onoff:40,2,10,30 --engines 4
python3 "$HERE/table.py" "$HERE"
