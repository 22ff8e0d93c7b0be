#!/usr/bin/env bash
# The main job on the embedded default, as far as the pipeline exists: fetch the model and text, build,
# extract a cache of layer 3 (200k tokens), train an SAE, a transcoder and a skip transcoder at the same k and
# width on the same batches, and evaluate them on the held-out shard (FVU, L0, dead latents, CE-loss increase).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/fetch_default.sh
cargo build --release
target/release/sparsecoder extract --model models/SmolLM2-135M-Instruct.Q4_1.gguf --text data/python-3.11-docs \
  --layers 3 --ctx-len 256 --max-tokens 200000 --out caches/smollm2-layer3
target/release/sparsecoder validate caches/smollm2-layer3 | tail -1
target/release/sparsecoder inspect caches/smollm2-layer3
if [ -f runs/smollm2-layer3-sweep/summary.json ]; then
  echo "already trained: runs/smollm2-layer3-sweep/summary.json (delete the folder to train again)"
  cat runs/smollm2-layer3-sweep/summary.json; echo
else
  target/release/sparsecoder train --cache caches/smollm2-layer3 --sweep kind=sae,transcoder,skip-transcoder \
    --k 32 --latents 4608 --batch 2048 --epochs 2 --warmup 20 --out runs/smollm2-layer3-sweep --resume
fi
target/release/sparsecoder eval --model models/SmolLM2-135M-Instruct.Q4_1.gguf --cache caches/smollm2-layer3 \
  --checkpoints runs/smollm2-layer3-sweep --tokens 3328 --linear-baseline
echo "A run this short (0.4 M tokens per coder) shows the pipeline and the ordering of FVU/ΔCE at this scale, not"
echo "the paper's result (8 B tokens, 32-64x width): compare each coder with the linear row, which a transcoder must"
echo "beat. scripts/reproduce_paper.sh --scale cpu runs the paper's comparison over three layers (about an hour"
echo "here); docs/BENCHMARKS.md has its result and why, at short runs, the zero-started skip transcoder trails."
