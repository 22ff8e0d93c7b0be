#!/usr/bin/env bash
# Training throughput on an NVIDIA GPU: `sparsecoder train --device cuda` (skip transcoder, k=32, batch 4096) at
# d=576 / 18432 latents and d=2048 / 65536 latents, against sparsify's SparseCoder on the same GPU, same shapes,
# same run; plus the kernel equivalence tests. Rows are random (synth-cache): no model of width 2048 is local.
#
# Usage (on the GPU machine, which has no Rust toolchain: build here, carry the binaries):
#   scripts/bench_gpu.sh BIN_DIR [WHEELS_DIR] [STEPS]
# BIN_DIR holds `sparsecoder` and `cuda_kernels` (the kernel test binary), WHEELS_DIR the pure-Python wheels of
# sparsify's coder: both made by scripts/gpu_bundle.sh here (the GPU machine is offline). Wheels already
# installed there are skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:?BIN_DIR}
wheels=${2:-}
steps=${3:-40}
if [ -n "$wheels" ]; then
  for w in "$wheels"/*.whl; do
    name=$(basename "$w" | cut -d- -f1)
    python3 -m pip show "$name" >/dev/null 2>&1 || python3 -m pip install --quiet --no-index --no-deps "$w"
  done
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || echo "nvidia-smi: not found"

echo "== kernels against their CPU twins"
"$bin/cuda_kernels" --test-threads 1 --nocapture 2>&1 | grep -E "relative error|skipped|test result|panicked|seed"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for shape in "576 18432" "2048 65536"; do
  set -- $shape
  d=$1 latents=$2
  rows=$((4096 * (steps + 4) + 16384))
  "$bin/sparsecoder" synth-cache "$tmp/cache-$d" --d-in "$d" --d-out "$d" --rows "$rows" >/dev/null
  "$bin/sparsecoder" train --cache "$tmp/cache-$d" --kind skip-transcoder --k 32 --latents "$latents" --batch 4096 \
    --tokens $((4096 * steps)) --warmup 1 --loader-threads 8 --out "$tmp/run-$d" --quiet --device cuda >/dev/null
  # Steady state from the metrics: tokens and elapsed seconds at step 2 and at the last step.
  ours=$(python3 - "$tmp/run-$d/metrics.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
a, b = rows[2], rows[-1]
t = lambda r: r["tokens"] / r["tokens_per_s"]
print(f"{(b['tokens'] - a['tokens']) / (t(b) - t(a)):.0f}")
PY
)
  echo "sparsecoder SST d=$d latents=$latents k=32 batch=4096: $ours tokens/s"
  peer=$(python3 scripts/bench_train.py "$tmp/cache-$d" 8 "$latents" 32 4096 "$steps" cuda 2>/dev/null | tail -1)
  echo "$peer"
  python3 -c "import re,sys; p=float(re.search(r': ([0-9]+) tokens/s', sys.argv[2]).group(1)); print(f'ratio d={sys.argv[3]}: {float(sys.argv[1])/p:.2f}x')" "$ours" "$peer" "$d"
done
