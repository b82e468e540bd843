#!/usr/bin/env bash
# Live `brix up` runs with and without the fleet file's `kvcache:` line (3 simulated A10
# replicas, small KV memory, least-request), driven by `brix bench run` through the gateway;
# then the pool as its own process, stopped and killed mid-run. Output → this directory.
set -euo pipefail
cd "$(dirname "$0")/../../.."
OUT=bench/results/kvcache-live-2026-11-30
BRIX=${BRIX:-target/release/brix}
[ -x "$BRIX" ] || cargo build --release -p brix
BRIX=$(realpath "$BRIX")
GW=http://127.0.0.1:18891
WORKLOAD=${WORKLOAD:-multi-turn:sessions=30,turns=4,system=512,context=2000,user=64,output=32,think=3}
ARRIVAL=${ARRIVAL:-poisson:0.5}
TMP=$(mktemp -d)
export BRIX_STATE_DIR=$TMP/state
UP=""
POOL=""
cleanup() {
  [ -n "$UP" ] && kill -INT "$UP" 2>/dev/null && wait "$UP" 2>/dev/null || true
  [ -n "$POOL" ] && kill -KILL "$POOL" 2>/dev/null || true
}
trap cleanup EXIT

# Sums over the replicas' /metrics of the counters this study reads.
metrics() {
  local addrs
  addrs=$("$BRIX" status --endpoint "$GW" --admin-key kvlive-bench | grep -o '127\.0\.0\.1:[0-9]*')
  for a in $addrs; do curl -sf "http://$a/metrics"; done | awk '
    /^#/ {next}
    /^vllm:(external_prefix_cache_(hits|queries)|prefix_cache_(hits|queries)|prompt_tokens_by_source|prompt_tokens)_total/ ||
    /^brix_sim_kv_pool_/ { split($0, f, " "); name=f[1]; gsub(/(engine|model_name)="[^"]*",?/, "", name); sub(/,\}/, "}", name); sub(/\{\}/, "", name); s[name]+=f[2] }
    END { for (k in s) printf "%s %.0f\n", k, s[k] }' | sort
}

start_up() { # fleet file, label
  "$BRIX" up "$1" --logs-dir "$TMP/logs-$2" >"$TMP/up-$2.log" 2>&1 &
  UP=$!
  for _ in $(seq 1 240); do
    curl -sf "$GW/v1/models" 2>/dev/null | grep -q llama-3-8b && return 0
    sleep 0.5
  done
  cat "$TMP/up-$2.log"; exit 1
}

stop_up() {
  kill -INT "$UP"; wait "$UP" || true; UP=""
}

bench() { # label
  "$BRIX" bench run --endpoint "$GW" --model llama-3-8b --workload "$WORKLOAD" \
    --arrival "$ARRIVAL" --seed 1 --label "$1" --output "$OUT/runs/$1" --no-progress \
    | tee "$OUT/runs-$1.txt"
}

mkdir -p "$OUT/runs"
for label in nopool pool; do
  start_up "$OUT/fleet-$label.yaml" "$label"
  grep -h "KV cache pool" "$TMP/up-$label.log" | tee "$OUT/pool-line.txt" || true
  bench "$label"
  metrics | tee "$OUT/metrics-$label.txt"
  if [ "$label" = pool ]; then
    port=$(grep -o 'KV cache pool on 127\.0\.0\.1:[0-9]*' "$TMP/up-$label.log" | grep -o '[0-9]*$')
    redis-cli -p "$port" info | tr -d '\r' | tee "$OUT/pool-info.txt"
  fi
  stop_up
done

# Broken: the pool in its own process, stopped at 20 s and killed at 40 s of the bench.
"$BRIX" kvcache serve --listen 127.0.0.1:18892 --capacity 256MiB >"$TMP/pool.log" 2>&1 &
POOL=$!
sed "s#@BRIX@#$BRIX#" "$OUT/fleet-broken.yaml" >"$TMP/fleet-broken.yaml"
start_up "$TMP/fleet-broken.yaml" broken
( sleep 20; redis-cli -p 18892 info | tr -d '\r' >"$OUT/pool-info-broken-20s.txt"; kill -STOP "$POOL"; echo "pool stopped at 20 s"
  sleep 20; kill -KILL "$POOL"; echo "pool killed at 40 s" ) &
KILLER=$!
bench broken
wait "$KILLER"
POOL=""
metrics | tee "$OUT/metrics-broken.txt"
stop_up
