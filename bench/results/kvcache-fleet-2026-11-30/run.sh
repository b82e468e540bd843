#!/usr/bin/env bash
# The KV pool in the virtual-time fleet (docs/kvcache.md, "The pool in the fleet"): prefix
# caching alone vs the pool vs cache-aware routing vs both, on a multi-turn workload whose
# working set exceeds the engines' KV memory and on the Mooncake conversation trace; rate
# sweeps for throughput (the highest rate meeting the TTFT SLO), then a restart and a scale
# 4 → 2 → 4, transport and pool-size variants. Run from the repository root after
# `cargo build --release -p brix`; TRACE points at mooncake_conversation.jsonl. Writes every
# run under bench/out/kvcache-fleet/ and keeps summaries here; then prints the tables.
set -euo pipefail
TRACE=${TRACE:-../shared/traces/mooncake_conversation.jsonl}
HERE=bench/results/kvcache-fleet-2026-11-30
OUT=bench/out/kvcache-fleet
BIN=./target/release/brix
SLO_MS=2500

keep() { # dir: copy each strategy's summary.json, sim.json and timeline.csv here
  local dir=$1
  for d in "$OUT/$dir"/*/; do
    mkdir -p "$HERE/$dir/$(basename "$d")"
    cp "$d/summary.json" "$d/sim.json" "$HERE/$dir/$(basename "$d")/"
    case $dir in event-*) cp "$d/timeline.csv" "$HERE/$dir/$(basename "$d")/" ;; esac
  done
}

sim() { # dir, then brix bench sim flags
  local dir=$1; shift
  "$BIN" bench sim --seed 1 "$@" --output "$OUT/$dir" >/dev/null 2>&1
  keep "$dir"
}

# 1. Multi-turn, working set over memory: 4 × A10 (31k KV tokens each) serving Llama-3-8B;
# each session: a shared 512-token system prompt, 2,000 tokens of its own context, 8 turns of
# 64 user + 96 reply tokens, 5 s think: 2.5–3.7k tokens a prompt, ≈ 0.38 GiB of KV a session.
# Sessions start as a Poisson process; 240 s of starts per rate. Pool: 64 GiB of host memory.
# Cache-aware strategies route on the engines' KV events (exact per-pod caches: the approximate
# index believes engines still hold what they evicted, which misroutes when the working set
# exceeds memory); least-request ignores them.
MT_FLAGS=(--gpu A10 --model-profile llama-3-8b --engines 4 --kv-events
  --strategy least-request,prefix-cache,ttft)
mt() { # rate → the workload for 240 s of session starts at that rate
  local s; s=$(python3 -c "print(max(1, round($1 * 240)))")
  echo "multi-turn:sessions=$s,turns=8,system=512,context=2000,user=64,output=96,think=5"
}
for R in 0.4 0.5 0.6 0.7 0.8 0.9 1 1.1 1.2 1.3 1.4 1.6 2; do
  sim multiturn/nopool@$R "${MT_FLAGS[@]}" --workload "$(mt $R)" --arrival poisson:$R
  sim multiturn/pool@$R "${MT_FLAGS[@]}" --workload "$(mt $R)" --arrival poisson:$R --kv-pool-gib 64
done
echo '{"unit": "sessions/s", "slo_p99_ms": '$SLO_MS'}' > "$HERE/multiturn/unit.json"

# 2. The Mooncake conversation trace (first 4,000 requests, cut to 8k context), 4 × A100-80GB
# (415k KV tokens each), sped up 1×–3.5× (trace:1/X). Pool: 1 TiB.
MC_FLAGS=(--gpu A100-80GB --model-profile llama-3-8b --engines 4 --kv-events --workload "$TRACE" --fit-context
  --max-requests 4000 --strategy least-request,prefix-cache,ttft)
for X in 1 1.5 2 2.5 2.75 3 3.5; do
  S=$(python3 -c "print(round(1 / $X, 4))")
  sim mooncake/nopool@$X "${MC_FLAGS[@]}" --arrival trace:$S
  sim mooncake/pool@$X "${MC_FLAGS[@]}" --arrival trace:$S --kv-pool-gib 1024
done
# Prompts here are 2–3× longer (7k tokens after the cut): the SLO is 3 s.
echo '{"unit": "× trace speed", "slo_p99_ms": 3000}' > "$HERE/mooncake/unit.json"

# 3. Events on the multi-turn workload at 0.5 sessions/s (4 engines; a new engine takes
# 16 GB / 2 GB/s + 60 s ≈ 68 s to start): two engines restarted at 120 s; 4 → 2 at 120 s and
# back to 4 at 240 s.
EV_FLAGS=("${MT_FLAGS[@]}" --workload "$(mt 0.5)" --arrival poisson:0.5)
event() { # name, --scale-at steps, window start and end (s) for the table
  sim "event-$1/nopool" "${EV_FLAGS[@]}" --scale-at "$2"
  sim "event-$1/pool" "${EV_FLAGS[@]}" --scale-at "$2" --kv-pool-gib 64
  echo "{\"from_s\": $3, \"to_s\": $4, \"engines\": 4}" > "$HERE/event-$1/window.json"
}
event restart 120:2,120:4 120 300
event scale-4-2-4 120:2,240:4 120 420

# 4. Variants at 0.5 sessions/s, least-request: transport (shm 25 GB/s; TCP 10 GB/s; a slow
# network, 1 and 0.4 GB/s, where loading 3k tokens takes as long as recomputing them on an
# A10) and pool size / policy.
V_FLAGS=(--gpu A10 --model-profile llama-3-8b --engines 4 --strategy least-request
  --workload "$(mt 0.5)" --arrival poisson:0.5)
sim variants/none "${V_FLAGS[@]}"
sim variants/shm-64GiB "${V_FLAGS[@]}" --kv-pool-gib 64
sim variants/tcp-10GBps "${V_FLAGS[@]}" --kv-pool-gib 64 --kv-pool-transport tcp
sim variants/tcp-1GBps "${V_FLAGS[@]}" --kv-pool-gib 64 --kv-pool-transport tcp --kv-pool-gbps 1
sim variants/tcp-0.4GBps "${V_FLAGS[@]}" --kv-pool-gib 64 --kv-pool-transport tcp --kv-pool-gbps 0.4
for G in 4 8 16; do
  sim variants/shm-${G}GiB-s3fifo "${V_FLAGS[@]}" --kv-pool-gib $G
  sim variants/shm-${G}GiB-lru "${V_FLAGS[@]}" --kv-pool-gib $G --kv-pool-policy lru
done

python3 "$HERE/table.py" "$HERE" | tee "$HERE/tables.md"
