#!/usr/bin/env bash
# End to end, once (not in CI: torch, minutes): skip transcoders for all 30 layers of SmolLM2-135M (one
# multi-layer extraction, one small training per layer), exported as one circuit-tracer transcoder set, loaded by
# circuit-tracer's nnsight replacement model over a local Hugging Face folder written from our GGUF, and an
# attribution graph computed for one prompt (scripts/attribution_e2e.py says what it checks).
#
#   scripts/attribution_e2e.sh [WORK_DIR]      (default /tmp/attribution-e2e; venv: $PEER_VENV, see check_exports.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
work="$(realpath -m "${1:-/tmp/attribution-e2e}")"
venv="${PEER_VENV:-/work/venv-b}"
"$venv/bin/python" -c "import circuit_tracer, nnsight, gguf" || {
  echo "needs circuit-tracer, nnsight 0.7.0 and gguf in $venv (scripts/check_exports.sh makes the venv; then: $venv/bin/pip install gguf)"
  exit 1
}
cargo build --release -q
sc="$PWD/target/release/sparsecoder"
model="$PWD/models/SmolLM2-135M-Instruct.Q4_1.gguf"
mkdir -p "$work"
start=$(date +%s)
if [ ! -f "$work/cache/layer-29/manifest.json" ]; then
  $sc extract --model "$model" --text data/python-3.11-docs/tutorial --layers "$(seq -s, 0 29)" --ctx-len 64 \
    --max-tokens 32768 --shard-rows 4096 --out "$work/cache" --quiet
fi
for l in $(seq 0 29); do
  [ -f "$work/run/layer-$l/sst-k16-l2304/sae.safetensors" ] && continue
  $sc train --cache "$work/cache/layer-$l" --sweep kind=sst --latents 2304 --k 16 --batch 1024 --warmup 4 \
    --out "$work/run/layer-$l" --quiet --device cpu > /dev/null
done
rm -rf "$work/set"
$sc export --format circuit-tracer "$work"/run/layer-*/sst-k16-l2304 --cache "$work/cache" --out "$work/set" \
  --model-name HuggingFaceTB/SmolLM2-135M-Instruct
echo "extract + train + export: $(( $(date +%s) - start )) s"
HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 "$venv/bin/python" scripts/attribution_e2e.py "$model" "$work/set" "$work/out"
echo "total: $(( $(date +%s) - start )) s"
