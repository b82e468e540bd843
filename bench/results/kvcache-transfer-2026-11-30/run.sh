#!/usr/bin/env bash
# Transfer paths of the KV cache pool against memcpy, in one run: output → table.md.
set -euo pipefail
cd "$(dirname "$0")/../../.."
cargo build --release -p brix
target/release/brix kvcache bench \
  --sizes 64KiB,256KiB,1MiB,4MiB,16MiB,64MiB --bytes 256MiB --reps 5 --capacity 1GiB \
  --block 64KiB --gets 2000 --depth 16 | tee bench/results/kvcache-transfer-2026-11-30/table.md
target/release/brix kvcache bench --sizes 2MiB --bytes 256MiB --block 2MiB --gets 500 \
  | tee -a bench/results/kvcache-transfer-2026-11-30/table.md
# Longest-prefix lookup of a 128k-token prompt through the server (TCP, Unix socket, 2-server pool).
target/release/brix kvcache bench --lookup-only --lookup-tokens 131072 --lookups 1000 \
  | tee bench/results/kvcache-transfer-2026-11-30/lookup.md
