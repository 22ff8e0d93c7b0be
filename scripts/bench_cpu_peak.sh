#!/usr/bin/env bash
# The CPU's multiply-add peak per core and with every core busy, for the fractions quoted in docs/BENCHMARKS.md:
# f32 FMA (vfmadd231ps, 8 lanes) against 16-bit integer multiply-adds (vpmaddwd + vpaddd, 16 products into 8
# i32 lanes), as used by trainer/src/fused_topk.rs, and the two interleaved (6 of each per iteration): if the
# integer multiplies and the FMAs ran on separate pipes, the mix would beat both. x86-64 with AVX2 and FMA; gcc.
set -euo pipefail
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cat >"$dir/peak.c" <<'C'
#include <stdio.h>
#include <time.h>
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }
int main(void) {
  const long n = 100000000;
  /* 12 independent accumulators: throughput, not latency, bounds both loops. */
  double t = now();
  for (long i = 0; i < n; i++)
    __asm__ volatile(
      "vfmadd231ps %%ymm14, %%ymm15, %%ymm0\n\t vfmadd231ps %%ymm14, %%ymm15, %%ymm1\n\t"
      "vfmadd231ps %%ymm14, %%ymm15, %%ymm2\n\t vfmadd231ps %%ymm14, %%ymm15, %%ymm3\n\t"
      "vfmadd231ps %%ymm14, %%ymm15, %%ymm4\n\t vfmadd231ps %%ymm14, %%ymm15, %%ymm5\n\t"
      "vfmadd231ps %%ymm14, %%ymm15, %%ymm6\n\t vfmadd231ps %%ymm14, %%ymm15, %%ymm7\n\t"
      "vfmadd231ps %%ymm14, %%ymm15, %%ymm8\n\t vfmadd231ps %%ymm14, %%ymm15, %%ymm9\n\t"
      "vfmadd231ps %%ymm14, %%ymm15, %%ymm10\n\t vfmadd231ps %%ymm14, %%ymm15, %%ymm11\n\t"
      ::: "ymm0","ymm1","ymm2","ymm3","ymm4","ymm5","ymm6","ymm7","ymm8","ymm9","ymm10","ymm11");
  double f32 = n * 12.0 * 8 / (now() - t) / 1e9;
  t = now();
  for (long i = 0; i < n; i++)
    __asm__ volatile(
      "vpmaddwd %%ymm14, %%ymm15, %%ymm12\n\t vpaddd %%ymm12, %%ymm0, %%ymm0\n\t"
      "vpmaddwd %%ymm14, %%ymm15, %%ymm13\n\t vpaddd %%ymm13, %%ymm1, %%ymm1\n\t"
      "vpmaddwd %%ymm14, %%ymm15, %%ymm12\n\t vpaddd %%ymm12, %%ymm2, %%ymm2\n\t"
      "vpmaddwd %%ymm14, %%ymm15, %%ymm13\n\t vpaddd %%ymm13, %%ymm3, %%ymm3\n\t"
      "vpmaddwd %%ymm14, %%ymm15, %%ymm12\n\t vpaddd %%ymm12, %%ymm4, %%ymm4\n\t"
      "vpmaddwd %%ymm14, %%ymm15, %%ymm13\n\t vpaddd %%ymm13, %%ymm5, %%ymm5\n\t"
      "vpmaddwd %%ymm14, %%ymm15, %%ymm12\n\t vpaddd %%ymm12, %%ymm6, %%ymm6\n\t"
      "vpmaddwd %%ymm14, %%ymm15, %%ymm13\n\t vpaddd %%ymm13, %%ymm7, %%ymm7\n\t"
      ::: "ymm0","ymm1","ymm2","ymm3","ymm4","ymm5","ymm6","ymm7","ymm12","ymm13");
  double i16 = n * 8.0 * 16 / (now() - t) / 1e9;
  t = now();
  for (long i = 0; i < n; i++)
    __asm__ volatile(
      "vpmaddwd %%ymm14, %%ymm15, %%ymm12\n\t vpaddd %%ymm12, %%ymm0, %%ymm0\n\t vfmadd231ps %%ymm14, %%ymm15, %%ymm6\n\t"
      "vpmaddwd %%ymm14, %%ymm15, %%ymm13\n\t vpaddd %%ymm13, %%ymm1, %%ymm1\n\t vfmadd231ps %%ymm14, %%ymm15, %%ymm7\n\t"
      "vpmaddwd %%ymm14, %%ymm15, %%ymm12\n\t vpaddd %%ymm12, %%ymm2, %%ymm2\n\t vfmadd231ps %%ymm14, %%ymm15, %%ymm8\n\t"
      "vpmaddwd %%ymm14, %%ymm15, %%ymm13\n\t vpaddd %%ymm13, %%ymm3, %%ymm3\n\t vfmadd231ps %%ymm14, %%ymm15, %%ymm9\n\t"
      "vpmaddwd %%ymm14, %%ymm15, %%ymm12\n\t vpaddd %%ymm12, %%ymm4, %%ymm4\n\t vfmadd231ps %%ymm14, %%ymm15, %%ymm10\n\t"
      "vpmaddwd %%ymm14, %%ymm15, %%ymm13\n\t vpaddd %%ymm13, %%ymm5, %%ymm5\n\t vfmadd231ps %%ymm14, %%ymm15, %%ymm11\n\t"
      ::: "ymm0","ymm1","ymm2","ymm3","ymm4","ymm5","ymm6","ymm7","ymm8","ymm9","ymm10","ymm11","ymm12","ymm13");
  double mix = n * 6.0 * (16 + 8) / (now() - t) / 1e9;
  printf("%.1f %.1f %.1f\n", f32, i16, mix);
  return 0;
}
C
gcc -O2 -o "$dir/peak" "$dir/peak.c"
cores=$(nproc)
one=$("$dir/peak")
echo "one core: f32 FMA $(echo "$one" | cut -d' ' -f1) GMAC/s, i16 vpmaddwd+vpaddd $(echo "$one" | cut -d' ' -f2) GMAC/s," \
  "both interleaved $(echo "$one" | cut -d' ' -f3) GMAC/s"
for _ in $(seq "$cores"); do "$dir/peak" & done >"$dir/all"
wait
awk -v c="$cores" '{f += $1; i += $2; m += $3} END {printf "%d cores at once: f32 FMA %.1f GMAC/s (%.0f GFLOP/s), i16 %.1f GMAC/s, both interleaved %.1f GMAC/s\n", c, f, 2 * f, i, m}' "$dir/all"
