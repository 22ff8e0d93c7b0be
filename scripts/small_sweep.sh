#!/usr/bin/env bash
# Sourced by the scripts/check_*.sh peer checks that need a small sweep to check: defines
#
#   small_sweep WORK_DIR EVAL_FLAG...
#
# which makes a cache of layer 2 of the embedded default (32,768 tokens of the tutorial), trains an SAE, a
# transcoder and a skip transcoder on it (1,152 latents, k 16), and evaluates them with the given eval flags
# into WORK_DIR/eval (its log in WORK_DIR/eval.log). WORK_DIR is emptied first. The coders are in WORK_DIR/run.
small_sweep() {
  local work="$1"; shift
  local model=models/SmolLM2-135M-Instruct.Q4_1.gguf
  cargo build --release -q
  local sc=target/release/sparsecoder
  rm -rf "$work" && mkdir -p "$work"
  $sc extract --model $model --text data/python-3.11-docs/tutorial --layers 2 --ctx-len 128 --max-tokens 32768 \
    --shard-rows 8192 --out "$work/cache" --quiet
  $sc train --cache "$work/cache" --sweep kind=sae,transcoder,skip-transcoder --latents 1152 --k 16 --batch 512 \
    --out "$work/run" --quiet --device cpu > /dev/null
  $sc eval --model $model --cache "$work/cache" --checkpoints "$work/run" --tokens 256 "$@" \
    --out "$work/eval" > "$work/eval.log"
}
