#!/usr/bin/env bash
# The paper's experiment in one command: one multi-layer extraction, at every layer the same sweep of SAE,
# transcoder and skip transcoder (zero and regression starts) at each k, eval with the linear baseline, and
# one report (report.md in the layout of the paper's Tables 1 and 3, its orderings checked, time to quality,
# held-out FVU curves, plots). Every stage resumes: rerunning the same command finishes an interrupted run.
#
#   scripts/reproduce_paper.sh --scale smoke|cpu|paper [--out DIR] [--model FILE] [--text DIR] [--tokens N]
#
# smoke: minutes; CI runs it (tests/reproduce.rs). cpu: about an hour on 2 cores (3 layers, 32x width, k 32 and
# 64). paper: the paper's scale (8 B tokens per coder); it prints what that needs in disk and time first.
# SPARSECODER names the binary (default target/release/sparsecoder).
set -euo pipefail
cd "$(dirname "$0")/.."
SC=${SPARSECODER:-target/release/sparsecoder}
scale="" out="" model=models/SmolLM2-135M-Instruct.Q4_1.gguf text=data/python-3.11-docs tokens=""
while [ $# -gt 0 ]; do
  case "$1" in
    --scale) scale=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --model) model=$2; shift 2 ;;
    --text) text=$2; shift 2 ;;
    --tokens) tokens=$2; shift 2 ;;
    *) echo "reproduce_paper.sh: unknown argument $1 (expected --scale, --out, --model, --text, --tokens)" >&2; exit 2 ;;
  esac
done

# Per scale: layers, context, cache tokens, rows per shard, k values, latents, batch, epochs, warm-up steps
# (about a tenth of a short run's steps; sparsify's 1000 at the paper's scale), steps between held-out scores,
# held-out rows scored, CE tokens in eval.
case "$scale" in
  smoke) layers=1,3 ctx=64 max=16384 shard=2048 ks=16 latents=1152 batch=512 epochs=2 warmup=4 every=4 erows=2048
         ce=256 text=${text%/}/tutorial ;;
  cpu)   layers=3,9,15 ctx=256 max=${tokens:-800000} shard=16384 ks=32,64 latents=18432 batch=4096 epochs=1
         warmup=20 every=30 erows=4096 ce=8192 ;;
  paper) layers=3,9,15,21 ctx=1024 max=${tokens:-8000000000} shard=65536 ks=32,64,128 latents=18432
         batch=32768 epochs=1 warmup=1000 every=2000 erows=65536 ce=262144 ;;
  *) echo "reproduce_paper.sh: --scale must be smoke, cpu or paper, found '${scale}'" >&2; exit 2 ;;
esac
# Sparse probing in eval (SAEBench's method): the built-in tasks, examples per class (train, test).
case "$scale" in
  smoke) probing=(--probing code-vs-prose --probing-train 20 --probing-test 10) ;;
  *) probing=(--probing builtin --probing-train 200 --probing-test 50) ;;
esac
# Feature absorption in eval (SAEBench's method): all of the tokenizer's words but at smoke scale, where a few
# hundred keep it quick (too few for SAEBench's 20 letters, so 2 count there).
case "$scale" in
  smoke) absorption=(--absorption --absorption-words 600 --absorption-min-letters 2) ;;
  *) absorption=(--absorption) ;;
esac
[ "$scale" = smoke ] && [ -n "$tokens" ] && max=$tokens
out=${out:-runs/reproduce-$scale}
[ -x "$SC" ] || { echo "reproduce_paper.sh: $SC: no binary (cargo build --release first)" >&2; exit 1; }
[ -f "$model" ] || [ -d "$model" ] || { echo "reproduce_paper.sh: --model $model: not found (scripts/fetch_default.sh)" >&2; exit 1; }
[ -d "$text" ] || [ -f "$text" ] || { echo "reproduce_paper.sh: --text $text: not found (scripts/fetch_default.sh)" >&2; exit 1; }

IFS=, read -r -a layer_list <<< "$layers"
n_layers=${#layer_list[@]}
n_k=$(tr ',' '\n' <<< "$ks" | wc -l)
coders=$((4 * n_k))
# Disk: both sides of every cached token in bf16 (d_in + d_out = 2 x 576 for SmolLM2-135M).
width=576
disk_gib=$(python3 -c "print(f'{$max * $n_layers * 2 * $width * 2 / 2**30:.1f}')")
# Time, from this project's measurements on 2 CPU cores (docs/BENCHMARKS.md): forward ~8,300 tokens/s to
# layer 3 (so ~8,300 x 4 / (deepest + 1) to the deepest layer), training at 18,432 latents ~9,000 coder-tokens/s.
deepest=${layer_list[$((n_layers - 1))]}
hours=$(python3 -c "
fwd = $max / (8300 * 4 / ($deepest + 1))
train = $max * $epochs * $coders * $n_layers / 9000 * ($latents / 18432)
print(f'{(fwd + train) / 3600:.2f}')")
echo "reproduce ($scale): $model, layers $layers, $max cache tokens of $text, k $ks, $latents latents,"
echo "  $coders coders per layer (SAE, ST, SST, SST regression start per k) x $epochs epoch(s), batch $batch."
echo "  needs ~$disk_gib GiB of cache in $out/cache and, at 2-CPU-core rates, ~$hours h (a GPU trains far faster;"
echo "  extraction has no GPU path yet, issue 23: at the paper scale, extract on many CPU nodes)."

"$SC" extract --model "$model" --text "$text" --layers "$layers" --ctx-len "$ctx" --max-tokens "$max" \
  --shard-rows "$shard" --out "$out/cache" --quiet
[ "$n_layers" -eq 1 ] && cache_of() { echo "$out/cache"; } || cache_of() { echo "$out/cache/layer-$1"; }

sweeps=()
for layer in "${layer_list[@]}"; do
  run="$out/layer-$layer"
  sweeps+=("$run")
  if [ ! -f "$run/summary.json" ]; then
    resume=(); [ -f "$run/train_state.json" ] && resume=(--resume)
    "$SC" train --cache "$(cache_of "$layer")" --sweep kind=sae,transcoder,skip-transcoder \
      --sweep "k=$ks" --sweep skip_init=zero,regression --latents "$latents" --batch "$batch" \
      --epochs "$epochs" --warmup "$warmup" --eval-every "$every" --eval-rows "$erows" --out "$run" --quiet "${resume[@]}"
  fi
  if [ ! -f "$run/eval.json" ] || [ "$run/summary.json" -nt "$run/eval.json" ]; then
    "$SC" eval --model "$model" --cache "$(cache_of "$layer")" --checkpoints "$run" --tokens "$ce" \
      --linear-baseline "${probing[@]}" "${absorption[@]}"
  fi
done
"$SC" report "${sweeps[@]}" --out "$out/report"
