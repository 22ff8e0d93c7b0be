#!/usr/bin/env bash
# Checks `sparsecoder eval --probing` against SAEBench's own code (too heavy for CI's test command: torch):
# scripts/check_probing.py runs the model in transformers on our examples and SAEBench 0.6.0's pooling and
# probes on the result, and compares accuracies and chosen features per subtask.
#
#   scripts/check_probing.sh [WORK_DIR [EVAL_DIR RUN_DIR...]]
#
# Without EVAL_DIR: makes a small cache of layer 2 of the embedded default, an SAE, a transcoder and a skip
# transcoder, and evaluates them with --probing builtin (40 + 20 examples per class). With EVAL_DIR and RUN_DIRs:
# checks that evaluation (its probing.json) of the coders in the RUN_DIRs.
set -euo pipefail
cd "$(dirname "$0")/.."
work="${1:-/tmp/check-probing}"
source scripts/peer_venv.sh
model=models/SmolLM2-135M-Instruct.Q4_1.gguf
if [ $# -ge 3 ]; then
  eval_dir="$2"; runs=("${@:3}")
else
  source scripts/small_sweep.sh
  small_sweep "$work" --probing builtin \
    --probing-train 40 --probing-test 20
  eval_dir="$work/eval"; runs=("$work/run")
fi
HF_HUB_OFFLINE=1 "$venv/bin/python" scripts/check_probing.py "$eval_dir" $model "${runs[@]}" 2>&1 | grep -E "^(ok|FAIL|SAEBench)"
