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
  source scripts/small_sweep.sh
  small_sweep "$work" --absorption \
    --absorption-words 3000 --absorption-min-letters 5
  eval_dir="$work/eval"; runs=("$work/run")
fi
HF_HUB_OFFLINE=1 "$venv/bin/python" scripts/check_absorption.py "$eval_dir" $model "${runs[@]}" 2>&1 |
  grep -E "^(ok|FAIL|SAEBench|Traceback|  File|[A-Za-z]*Error)"
