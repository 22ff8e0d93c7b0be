#!/usr/bin/env bash
# Two builds of sparsecoder and sparsify in the same rounds: whether a change moved our training speed, told
# apart from the host's drift, which moves every side between runs. BASELINE is another build of the
# `sparsecoder` binary (e.g. from `git worktree add /tmp/base <commit>` and `cargo build --release` there).
# Usage: scripts/bench_train_ab.sh BASELINE [CACHE] [STEPS] [ROUNDS]
# Each round runs the three once, in an order that rotates between rounds; the steps windows are compared.
set -euo pipefail
cd "$(dirname "$0")/.."
baseline=$(realpath "$1")
cache=${2:-caches/smollm2-layer3}
steps=${3:-12}
rounds=${4:-6}
threads=$(nproc)
cargo build --release --quiet
out=$(mktemp -d)
table=$(mktemp)
trap 'rm -rf "$out" "$table"' EXIT
source scripts/train_runs.sh

printf '%5s  %10s  %15s  %15s  %16s  %12s  %16s   [steps tokens/s, %s threads]\n' round sparsify \
  baseline ours "baseline/sparsify" "ours/sparsify" "ours/baseline" "$threads"
for r in $(seq "$rounds"); do
  p="" b="" o=""
  for side in $(printf 'p\nb\no\n' | awk -v r="$r" '{a[NR-1]=$0} END {for (i = 0; i < 3; i++) print a[(i + r) % 3]}'); do
    case $side in
      p) p=$(peer) ;;
      b) b=$(ours_with "$baseline" | cut -d' ' -f2) ;;
      o) o=$(ours_with target/release/sparsecoder | cut -d' ' -f2) ;;
    esac
  done
  echo "$r $p $b $o" | awk '{printf "%5d  %10d  %15d  %15d  %15.2fx  %11.2fx  %15.3fx\n", $1, $2, $3, $4, $3 / $2, $4 / $2, $4 / $3}'
done | tee "$table"
python3 - "$table" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
for name, col in (("sparsify tokens/s", 1), ("baseline tokens/s", 2), ("ours tokens/s", 3),
                  ("baseline vs sparsify", 4), ("ours vs sparsify", 5), ("ours vs baseline", 6)):
    v = [float(r[col].rstrip("x")) for r in rows]
    print(f"{name}: median {statistics.median(v):.3f} (min {min(v):.3f}, max {max(v):.3f}, {len(v)} rounds)")
PY
