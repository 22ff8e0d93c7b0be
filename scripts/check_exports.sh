#!/usr/bin/env bash
# Checks `sparsecoder export` with the tools' own loaders (too heavy for CI: torch): SAELens's
# SAE.load_from_disk, circuit-tracer's load_transcoder_from_hub and delphi's TensorBuffer/LatentDataset, run on the held-out rows each export
# carries and compared with our coders' latents and outputs (scripts/check_exports.py --reader tools).
#
#   scripts/check_exports.sh WORK_DIR      (default /tmp/check-exports; the venv: scripts/peer_venv.sh)
#
# Makes the small two-layer cache of the embedded default, an SAE and a skip transcoder per layer, exports
# them, and checks each export with both readers (the tools, and CI's numpy reader of their formulas).
set -euo pipefail
cd "$(dirname "$0")/.."
work="${1:-/tmp/check-exports}"
source scripts/peer_venv.sh
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
# Published layouts (small files made by make_scope_fixtures.py), imported, then exported with our latents on
# held-out rows: each original read by its tool must compute what our import does.
shard="$work/cache/layer-1/shard-000003.bin"
python3 scripts/read_shard.py "$shard" mlp_in "$work/in.npy"
python3 scripts/read_shard.py "$shard" mlp_out "$work/out.npy"
python3 scripts/make_scope_fixtures.py "$work/in.npy" "$work/out.npy" "$work/fx"
imports=(
  "gemma-scope:gemma-scope:gemma-scope-2b-pt-transcoders/layer_1/width_1k/average_l0_35/params.npz"
  "gemma-scope:gemma-scope:gemma-scope-2b-pt-mlp/layer_1/width_1k/average_l0_35/params.npz"
  "gemma-scope:gemma-scope-2:gemma-scope-2-pt/transcoder_all/layer_1_width_1k_l0_small_affine/params.safetensors"
  "saelens:saelens:saelens-jumprelu-skip-transcoder"
  "llama-scope:llama-scope:llama-scope/Llama3_1-8B-Base-L1M-8x"
  "llama-scope:llama-scope:llama-scope/Llama3_1-8B-Base-L1TC-8x"
)
for i in "${!imports[@]}"; do
  IFS=: read -r format kind file <<< "${imports[$i]}"
  $sc import --format "$format" "$work/fx/$file" --out "$work/imp$i" > /dev/null
  $sc export --format saelens "$work/imp$i" --cache "$work/cache" --out "$work/exp$i" > /dev/null
done
$sc import --format circuit-tracer "$work/fx/circuit-tracer-jumprelu" --out "$work/imp-ct" > /dev/null
$sc export --format circuit-tracer "$work/imp-ct" --cache "$work/cache" --out "$work/exp-ct" > /dev/null
for reader in tools numpy; do
  echo "== reader: $reader"
  HF_HUB_OFFLINE=1 "$venv/bin/python" scripts/check_exports.py saelens "$work"/saelens/layer_*/* --reader $reader
  HF_HUB_OFFLINE=1 "$venv/bin/python" scripts/check_exports.py circuit-tracer "$work/circuit-tracer" --reader $reader
  for i in "${!imports[@]}"; do
    IFS=: read -r format kind file <<< "${imports[$i]}"
    HF_HUB_OFFLINE=1 "$venv/bin/python" scripts/check_exports.py import "$work/fx/$file" "$work/exp$i/layer_1/imp$i" \
      --kind "$kind" --layer 1 --reader $reader
    HF_HUB_OFFLINE=1 "$venv/bin/python" scripts/check_exports.py saelens "$work/exp$i/layer_1/imp$i" --reader $reader
  done
  for l in 0 1; do
    HF_HUB_OFFLINE=1 "$venv/bin/python" scripts/check_exports.py import "$work/fx/circuit-tracer-jumprelu" \
      "$work/exp-ct" --kind circuit-tracer --layer $l --reader $reader
  done
  HF_HUB_OFFLINE=1 "$venv/bin/python" scripts/check_exports.py circuit-tracer "$work/exp-ct" --reader $reader
  for l in 0 1; do
    HF_HUB_OFFLINE=1 "$venv/bin/python" scripts/check_exports.py delphi "$work/delphi/latents/layers.$l.mlp" \
      --cache "$work/cache/layer-$l" --coder "$work/run$l/sst-k16-l1152" --reader $reader
  done
done
