#!/usr/bin/env bash
# Two builds of sparsecoder in the same rounds, without a peer: whether a change moved our speed, told apart
# from the host's drift. BASELINE is another build of the binary (e.g. `git worktree add /tmp/base <commit>`
# and `cargo build --release` there). For the ratio against sparsify as well, use bench_train_ab.sh (it needs
# torch and eai-sparsify).
# Usage: scripts/bench_builds.sh train BASELINE [CACHE] [STEPS] [ROUNDS]
#        scripts/bench_builds.sh extract BASELINE [TOKENS] [ROUNDS]
# The order of the two alternates between rounds. The baseline's figure is its speed window (steps, or forward +
# writing), so the second ratio column is this build over the baseline; with BASELINE_FIELD=1 the baseline's
# whole-run figure is taken instead, and the first ratio column is the one to quote.
set -euo pipefail
cd "$(dirname "$0")/.."
stage=$1
baseline=$(realpath "$2")
threads=$(nproc)
cargo build --release --quiet
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
source scripts/rounds.sh

case $stage in
  train)
    cache=${3:-caches/smollm2-layer3}
    steps=${4:-12}
    rounds=${5:-6}
    source scripts/train_runs.sh
    ours() { ours_with target/release/sparsecoder; }
    peer() { ours_with "$baseline" | cut -d' ' -f"${BASELINE_FIELD:-2}"; }
    run_rounds "$rounds" baseline steps
    ;;
  extract)
    tokens=${3:-65536}
    rounds=${4:-6}
    # "whole forward" tokens/s of one extraction to layer 3 into a fresh folder.
    extract_with() {
      rm -rf "$out/cache"
      "$1" extract --model models/SmolLM2-135M-Instruct.Q4_1.gguf --text data/python-3.11-docs --layers 3 \
        --ctx-len 256 --max-tokens "$tokens" --out "$out/cache" --quiet |
        sed -n -E '1s/.*\(([0-9]+) tokens\/s; forward passes and writing alone ([0-9]+) tokens\/s.*/\1 \2/p'
    }
    ours() { extract_with target/release/sparsecoder; }
    peer() { extract_with "$baseline" | cut -d' ' -f"${BASELINE_FIELD:-2}"; }
    run_rounds "$rounds" baseline forward+writing
    ;;
  *) echo "usage: $0 train|extract BASELINE ..." >&2; exit 2 ;;
esac
