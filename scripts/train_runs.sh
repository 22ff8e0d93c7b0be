# Sourced by the CPU training benchmarks (bench_train.sh, bench_train_ab.sh); expects $cache, $steps, $threads
# and a scratch folder $out. One run of each side, at the shapes of issue 5: a skip transcoder, d = 576, 18,432
# latents, k = 32, batch 4096.

# `sparsecoder train` from binary $1, end to end (startup, step-0 initialisation, the final checkpoint save
# included), and its steps after the first two alone, from the metrics, which is the window sparsify's number
# covers. Prints "whole steady" tokens/s.
ours_with() {
  rm -rf "$out/run"
  local summary
  summary=$("$1" train --cache "$cache" --kind skip-transcoder --k 32 --latents 18432 \
    --batch 4096 --tokens $((4096 * steps)) --warmup 1 --out "$out/run" --quiet --device cpu 2>/dev/null | sed -n 1p)
  python3 - "$summary" "$out/run/metrics.jsonl" <<'PY'
import json, re, sys
whole = float(re.search(r"\(([0-9]+) tokens/s per sweep\)", sys.argv[1]).group(1))
rows = [json.loads(l) for l in open(sys.argv[2])]
end = [r["tokens"] / r["tokens_per_s"] for r in rows]  # seconds from the start of training to each step's end
print(f"{whole:.0f} {(rows[-1]['tokens'] - rows[1]['tokens']) / (end[-1] - end[1]):.0f}")
PY
}

# sparsify's steps after two warm-up steps. Prints tokens/s.
peer() {
  python3 scripts/bench_train.py "$cache" "$threads" 18432 32 4096 "$steps" 2>/dev/null | tail -1 |
    sed -E 's/.*: ([0-9]+) tokens\/s.*/\1/'
}
