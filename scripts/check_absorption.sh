#!/usr/bin/env bash
# Checks `sparsecoder eval --absorption` against SAEBench's own code (too heavy for CI's test command: torch):
# scripts/check_absorption.py rebuilds our prompts with SAEBench's prompt code, runs the model in transformers on
# them, trains SAEBench's letter probes, fits SAEBench's k-sparse classifier on our latents and runs its
# absorption calculator on our words, and compares per letter and per word.
#
#   scripts/check_absorption.sh [WORK_DIR [EVAL_DIR RUN_DIR...]]
#
# Without EVAL_DIR: makes a small cache of layer 2 of the embedded default, an SAE, a transcoder and a skip
# transcoder, and evaluates them with --absorption on 3000 of the tokenizer's words. With EVAL_DIR and RUN_DIRs:
# checks that evaluation (its absorption.json) of the coders in the RUN_DIRs.
set -euo pipefail
cd "$(dirname "$0")/.."
work="${1:-/tmp/check-absorption}"
source scripts/peer_venv.sh
model=models/SmolLM2-135M-Instruct.Q4_1.gguf
if [ $# -ge 3 ]; then
  eval_dir="$2"; runs=("${@:3}")
else
  cargo build --release -q
  sc=target/release/sparsecoder
  rm -rf "$work" && mkdir -p "$work"
  $sc extract --model $model --text data/python-3.11-docs/tutorial --layers 2 --ctx-len 128 --max-tokens 32768 \
    --shard-rows 8192 --out "$work/cache" --quiet
  $sc train --cache "$work/cache" --sweep kind=sae,transcoder,skip-transcoder --latents 1152 --k 16 --batch 512 \
    --out "$work/run" --quiet --device cpu > /dev/null
  $sc eval --model $model --cache "$work/cache" --checkpoints "$work/run" --tokens 256 --absorption \
    --absorption-words 3000 --absorption-min-letters 5 --out "$work/eval" > "$work/eval.log"
  eval_dir="$work/eval"; runs=("$work/run")
fi
HF_HUB_OFFLINE=1 "$venv/bin/python" scripts/check_absorption.py "$eval_dir" $model "${runs[@]}" 2>&1 |
  grep -E "^(ok|FAIL|SAEBench|Traceback|  File|[A-Za-z]*Error)"
