#!/usr/bin/env bash
# Training throughput on the CPU: `sparsecoder train` (a skip transcoder, d=576, 18432 latents, k=32, batch
# 4096, on the README's SmolLM2 cache) against sparsify's SparseCoder at the same shapes, same machine, same run.
# Usage: scripts/bench_train.sh [CACHE] [STEPS]
set -euo pipefail
cd "$(dirname "$0")/.."
cache=${1:-caches/smollm2-layer3}
steps=${2:-8}
threads=$(nproc)
cargo build --release --quiet
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
# Ours end to end (startup, step-0 initialisation, the final checkpoint save included), and its steps after
# the first two alone, from the metrics, which is the window sparsify's number covers.
ours=$(target/release/sparsecoder train --cache "$cache" --kind skip-transcoder --k 32 --latents 18432 --batch 4096 \
  --tokens $((4096 * steps)) --warmup 1 --out "$out/run" --quiet --device cpu 2>/dev/null | head -1)
echo "sparsecoder ($threads threads): $ours"
steady=$(python3 - "$out/run/metrics.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
end = [r["tokens"] / r["tokens_per_s"] for r in rows]  # seconds from the start of training to each step's end
print(f"{(rows[-1]['tokens'] - rows[1]['tokens']) / (end[-1] - end[1]):.0f}")
PY
)
echo "sparsecoder, steps after the first two: $steady tokens/s"
peer=$(python3 scripts/bench_train.py "$cache" "$threads" 18432 32 4096 "$steps" 2>/dev/null | tail -1)
echo "$peer"
python3 - "$ours" "$peer" "$steady" <<'PY'
import re, sys
ours = float(re.search(r"\(([0-9]+) tokens/s per sweep\)", sys.argv[1]).group(1))
peer = float(re.search(r": ([0-9]+) tokens/s", sys.argv[2]).group(1))
print(f"ratio, our whole run vs sparsify's steps: {ours / peer:.2f}x")
print(f"ratio, steps vs steps (both after two warm-up steps): {float(sys.argv[3]) / peer:.2f}x")
PY
