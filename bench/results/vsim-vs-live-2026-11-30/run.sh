#!/usr/bin/env bash
# run.sh: every run of this comparison, live (live.sh) and virtual (`brix bench sim`), into
# this folder. Run from the repository root: bench/results/vsim-vs-live-2026-11-30/run.sh
set -euo pipefail
BRIX=${BRIX_BIN:-target/release/brix}
HERE=$(dirname "$0")
SPEC=shared-prefix:groups=8,prefix=1024,suffix=1024,output=64,requests=300
for r in 5 8; do
  for s in least-request prefix-cache; do
    ARR=poisson:$r "$HERE/live.sh" "$s" "$HERE/poisson-$r/live/$s"
  done
  $BRIX bench sim --workload "$SPEC" --arrival poisson:$r --seed 1 --engines 2 \
    --gpu A100-80GB --model-profile llama-3-8b --strategy least-request,prefix-cache \
    --output "$HERE/poisson-$r/vsim"
done
