#!/usr/bin/env bash
# Checks `sparsecoder export` with the tools' own loaders (too heavy for CI: torch): SAELens's
# SAE.load_from_disk, circuit-tracer's load_transcoder_from_hub and delphi's TensorBuffer/LatentDataset, run on the held-out rows each export
# carries and compared with our coders' latents and outputs (scripts/check_exports.py --reader tools).
#
#   scripts/check_exports.sh WORK_DIR      (default /tmp/check-exports; the venv goes to $PEER_VENV)
#
# Makes the small two-layer cache of the embedded default, an SAE and a skip transcoder per layer, exports
# them, and checks each export with both readers (the tools, and CI's numpy reader of their formulas).
set -euo pipefail
cd "$(dirname "$0")/.."
work="${1:-/tmp/check-exports}"
venv="${PEER_VENV:-/work/venv-b}"
if [ ! -x "$venv/bin/python" ]; then
  # circuit-tracer needs transformers<=4.57.3; these versions resolve together (../shared/reference/peer-formats.md).
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet "circuit-tracer==0.5.0" "sae-lens==6.54.12" "nnsight==0.7.0" "beartype==0.17.2"
  # delphi hard-requires vllm (a GPU stack); its latent loader needs only these.
  "$venv/bin/pip" install --quiet --no-deps "eai-delphi==0.1.3"
  "$venv/bin/pip" install --quiet orjson blobfile asyncer aiofiles tiktoken faiss-cpu fire "sentence-transformers==5.7.0"
fi
"$venv/bin/python" -c "import sae_lens, circuit_tracer, torch; print('sae-lens', sae_lens.__version__, '| circuit-tracer', circuit_tracer.__version__, '| torch', torch.__version__)"
cargo build --release -q
sc=target/release/sparsecoder
model=models/SmolLM2-135M-Instruct.Q4_1.gguf
rm -rf "$work" && mkdir -p "$work"
$sc extract --model $model --text data/python-3.11-docs/tutorial --layers 0,1 --ctx-len 64 --max-tokens 8192 \
  --shard-rows 2048 --out "$work/cache" --quiet
for l in 0 1; do
  $sc train --cache "$work/cache/layer-$l" --sweep kind=sae,sst --latents 1152 --k 16 --batch 512 --warmup 2 \
    --out "$work/run$l" --quiet --device cpu > /dev/null
done
$sc export --format saelens "$work"/run{0,1}/sae-mlp_out-k16-l1152 --out "$work/saelens" \
  --model-name HuggingFaceTB/SmolLM2-135M-Instruct
$sc export --format circuit-tracer "$work"/run{0,1}/sst-k16-l1152 --out "$work/circuit-tracer" \
  --model-name HuggingFaceTB/SmolLM2-135M-Instruct
$sc export --format delphi "$work"/run{0,1}/sst-k16-l1152 --out "$work/delphi" \
  --model-name HuggingFaceTB/SmolLM2-135M-Instruct
for reader in tools numpy; do
  echo "== reader: $reader"
  HF_HUB_OFFLINE=1 "$venv/bin/python" scripts/check_exports.py saelens "$work"/saelens/layer_*/* --reader $reader
  HF_HUB_OFFLINE=1 "$venv/bin/python" scripts/check_exports.py circuit-tracer "$work/circuit-tracer" --reader $reader
  for l in 0 1; do
    HF_HUB_OFFLINE=1 "$venv/bin/python" scripts/check_exports.py delphi "$work/delphi/latents/layers.$l.mlp" \
      --cache "$work/cache/layer-$l" --coder "$work/run$l/sst-k16-l1152" --reader $reader
  done
done
