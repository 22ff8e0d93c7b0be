#!/usr/bin/env bash
# Training throughput on the CPU: `sparsecoder train` (a skip transcoder, d=576, 18432 latents, k=32, batch
# 4096, on the README's SmolLM2 cache) against sparsify's SparseCoder at the same shapes, same machine, same run.
# Usage: scripts/bench_train.sh [CACHE] [STEPS] [ROUNDS]
# Each round runs both sides once, one after the other (the order alternates between rounds), and takes the
# ratio within the round; on a noisy host the median of several rounds is the figure to quote.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/rounds.sh
cache=${1:-caches/smollm2-layer3}
steps=${2:-8}
rounds=${3:-1}
threads=$(nproc)
cargo build --release --quiet
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

source scripts/train_runs.sh
ours() { ours_with target/release/sparsecoder; }

run_rounds "$rounds" sparsify steps
