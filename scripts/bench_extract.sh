#!/usr/bin/env bash
# Extraction throughput to layer 3: `sparsecoder extract` (end to end: corpus tokenization, forward, writing
# shards) against transformers' CPU forward alone, truncated after the same layer, on the same token ids, in
# the same run. Usage: scripts/bench_extract.sh [TOKENS] [ROUNDS]
# Each round runs both sides once (the order alternates between rounds; the peer reads the token ids of our
# latest cache, the same every time) and takes the ratios within the round; on a noisy host the median of
# several rounds is the figure to quote.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/rounds.sh
tokens=${1:-65536}
rounds=${2:-1}
threads=$(nproc)
cargo build --release --quiet
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# Ours into a fresh folder. Prints "whole forward" tokens/s. (sed reads to the end: `head -1` could close the
# pipe while the summary is still being written, and pipefail would then stop the script.)
ours() {
  rm -rf "$out/cache"
  target/release/sparsecoder extract --model models/SmolLM2-135M-Instruct.Q4_1.gguf \
    --text data/python-3.11-docs --layers 3 --ctx-len 256 --max-tokens "$tokens" --out "$out/cache" --quiet |
    sed -n -E '1s/.*\(([0-9]+) tokens\/s; forward passes and writing alone ([0-9]+) tokens\/s.*/\1 \2/p'
}

# transformers on our cache's token ids. Prints tokens/s.
peer() {
  python3 scripts/bench_extract.py "$out/cache" 3 "$threads" 2>/dev/null | tail -1 | sed -E 's/.*= ([0-9]+) tokens\/s.*/\1/'
}

run_rounds "$rounds" transformers forward+writing
