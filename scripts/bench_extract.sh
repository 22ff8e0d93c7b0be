#!/usr/bin/env bash
# Extraction throughput to layer 3: `sparsecoder extract` (end to end: corpus tokenization, forward, writing
# shards) against transformers' CPU forward alone, truncated after the same layer, on the same token ids, in
# the same run. Usage: scripts/bench_extract.sh [TOKENS]
set -euo pipefail
cd "$(dirname "$0")/.."
tokens=${1:-65536}
threads=$(nproc)
cargo build --release --quiet
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
summary=$(target/release/sparsecoder extract --model models/SmolLM2-135M-Instruct.Q4_1.gguf \
  --text data/python-3.11-docs --layers 3 --ctx-len 256 --max-tokens "$tokens" --out "$out/cache" --quiet | head -1)
echo "sparsecoder ($threads threads): $summary"
peer=$(python3 scripts/bench_extract.py "$out/cache" 3 "$threads" 2>/dev/null | tail -1)
echo "$peer"
python3 - "$summary" "$peer" <<'PY'
import re, sys
ours_total, ours_forward = [float(x) for x in re.findall(r"\(([0-9]+) tokens/s; forward passes and writing alone ([0-9]+)", sys.argv[1])[0]]
peer = float(sys.argv[2].split("= ")[1].split()[0])
print(f"ratio, forward passes (+ our shard writing) vs transformers' forward: {ours_forward / peer:.2f}x")
print(f"ratio, our whole run (+ loading, tokenizing the corpus) vs transformers' forward: {ours_total / peer:.2f}x")
PY
