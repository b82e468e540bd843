#!/usr/bin/env bash
# live.sh STRATEGY OUTDIR: a fresh `brix up` (2 sim replicas, fleet.yaml here), one
# `brix bench run`, stop. ARR (default poisson:5) and SPEC set the arrivals and workload;
# BRIX_BIN the binary (default target/release/brix). Run from the repository root.
set -euo pipefail
BRIX=${BRIX_BIN:-target/release/brix}
HERE=$(dirname "$0")
S=$1; OUT=$2
SPEC=${SPEC:-shared-prefix:groups=8,prefix=1024,suffix=1024,output=64,requests=300}
ARR=${ARR:-poisson:5}
TMP=$(mktemp -d /tmp/lvv.XXXXXX)
LOG=$TMP/up-$S.log
$BRIX up "$HERE/fleet.yaml" --listen 127.0.0.1:0 --logs-dir "$TMP/logs" >"$LOG" 2>&1 &
UP=$!
trap 'kill -TERM $UP 2>/dev/null; wait $UP 2>/dev/null || true' EXIT
url=
for _ in $(seq 300); do
  url=$(grep -o 'listening on http://[0-9.:]*' "$LOG" | head -n1 | sed 's/^listening on //') || true
  [ -n "$url" ] && break; sleep 0.1
done
[ -n "$url" ] || { tail "$LOG"; exit 1; }
for _ in $(seq 600); do
  curl -sf -o /dev/null -H 'content-type: application/json' -d '{"model":"llama-3-8b","prompt":"ready?","max_tokens":1}' "$url/v1/completions" && break
  sleep 0.1
done
uptime
$BRIX bench run --endpoint "$url" --model llama-3-8b --workload "$SPEC" --arrival "$ARR" --seed 1 --routing-strategy "$S" --output "$OUT" --no-progress
uptime
