#!/usr/bin/env bash
# fp8 against bf16 storage on the README's cache (SmolLM2-135M layer 3, 200k tokens of the Python docs):
# bytes per token, and the README sweep (SAE, ST, SST at k 32 and 64, 4608 latents; batch 2048, 2 epochs, 192
# steps, 20 warm-up steps, as the interp benchmarks' sweep) trained on each
# cache with the same seed, batches and steps, then every coder evaluated on the bf16 cache's held-out rows
# and sequences (one yardstick for both), so only the training rows' storage differs.
#
#   scripts/bench_fp8.sh [OUT]        (default runs/fp8; SPARSECODER names the binary)
#
# Prints a markdown table (and writes OUT/fp8.md). Resumes: finished steps are skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
SC=${SPARSECODER:-target/release/sparsecoder}
OUT=${1:-runs/fp8}
MODEL=models/SmolLM2-135M-Instruct.Q4_1.gguf
mkdir -p "$OUT"

for dtype in bf16 fp8; do
    [ -f "$OUT/cache-$dtype/manifest.json" ] && grep -q '"complete": true' "$OUT/cache-$dtype/manifest.json" ||
        "$SC" extract --model "$MODEL" --text data/python-3.11-docs --layers 3 --ctx-len 256 --max-tokens 200000 \
            --dtype "$dtype" --quiet --out "$OUT/cache-$dtype"
    [ -f "$OUT/sweep-$dtype/summary.json" ] ||
        "$SC" train --cache "$OUT/cache-$dtype" --sweep kind=sae,transcoder,skip-transcoder --sweep k=32,64 \
            --latents 4608 --batch 2048 --epochs 2 --warmup 20 --device cpu --quiet --out "$OUT/sweep-$dtype"
    [ -f "$OUT/eval-$dtype/eval.json" ] ||
        "$SC" eval --model "$MODEL" --cache "$OUT/cache-bf16" --checkpoints "$OUT/sweep-$dtype" --tokens 8192 \
            --out "$OUT/eval-$dtype" > /dev/null
done

python3 - "$OUT" <<'PY' | tee "$OUT/fp8.md"
import json, sys
out = sys.argv[1]
def load(path):
    return json.load(open(path))
print("| storage | stored bytes per token (both sides, ids, alignment) | cache MiB |")
print("| --- | --- | --- |")
for dtype in ["bf16", "fp8"]:
    m = load(f"{out}/cache-{dtype}/manifest.json")
    size = sum(s["bytes"] for s in m["shards"])
    print(f"| {dtype} | {size / m['total_rows']:.1f} | {size / 2**20:.1f} |")
print()
evals = {d: {c["name"]: c for c in load(f"{out}/eval-{d}/eval.json")["coders"]} for d in ["bf16", "fp8"]}
clean = load(f"{out}/eval-bf16/eval.json")["ce_clean"]
print(f"Held-out FVU and CE increase on the bf16 cache (clean CE {clean:.4f} nats):")
print()
print("| coder | FVU, bf16 rows | FVU, fp8 rows | ratio | ΔCE %, bf16 rows | ΔCE %, fp8 rows |")
print("| --- | --- | --- | --- | --- | --- |")
for name, b in evals["bf16"].items():
    f = evals["fp8"][name]
    print(f"| {name} | {b['fvu']:.4f} | {f['fvu']:.4f} | {f['fvu'] / b['fvu']:.3f} | "
          f"{b['ce_increase_pct']:.2f} | {f['ce_increase_pct']:.2f} |")
PY
