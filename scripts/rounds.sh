# Sourced by the benchmark scripts that compare us with a peer on this noisy host. `run_rounds ROUNDS PEER OURS`
# calls the sourcing script's `ours` (prints "whole-run speed-window" tokens/s) and `peer` (prints tokens/s)
# once each per round, the order alternating between rounds, and prints each round's ratios, then the median and
# range of every column: the figures to quote. PEER names the peer, OURS our speed window ("steps", …).
run_rounds() {
  local rounds=$1 peer_name=$2 ours_name=$3 table r o p
  table=$(mktemp)
  printf '%5s  %12s  %15s  %15s  %12s  %12s   [tokens/s, %s threads]\n' round "$peer_name" "ours(whole)" \
    "ours($ours_name)" "ratio(whole)" "ratio($ours_name)" "$(nproc)"
  for r in $(seq "$rounds"); do
    if ((r % 2)); then o=$(ours); p=$(peer); else p=$(peer); o=$(ours); fi
    echo "$r $p $o" | awk '{printf "%5d  %12d  %15d  %15d  %11.2fx  %11.2fx\n", $1, $2, $3, $4, $3 / $2, $4 / $2}'
  done | tee "$table"
  python3 - "$table" "$peer_name" "$ours_name" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
peer, window = sys.argv[2], sys.argv[3]
for name, col in ((f"{peer} tokens/s", 1), (f"ours, {window}, tokens/s", 3), ("ratio, whole run", 4),
                  (f"ratio, {window} vs {peer}", 5)):
    v = [float(r[col].rstrip("x")) for r in rows]
    print(f"{name}: median {statistics.median(v):.2f} (min {min(v):.2f}, max {max(v):.2f}, {len(v)} rounds)")
PY
  rm -f "$table"
}
