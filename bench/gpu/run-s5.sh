#!/usr/bin/env bash
# Session 5's GPU call on an nvidia-h200-x2 (under 600 s): the bench matrix (bench/gpu/matrix.sh,
# its peers to end by about MMOC_BENCH_END_S), then with the time left the executor's host AdamW
# against torch's fused CPU AdamW (bench/cpu-adam.ts), the host AdamW against the group size updated
# at once (bench/gpu/adam-sizes.ts) and the kernel variants (bench/gpu/adam-variants.sh).
# Everything under $OUT; the last lines are a short table.
#   source .gpu/env.sh && OUT=$OUT/x timeout -k 5 590 bash bench/gpu/run-s5.sh
# Write straight under the device tool's $OUT (what is there comes back even when the call runs
# past its limit); a call that wrote to /tmp and archived at the end lost a whole run that way.
set -u
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/mmoc-s5}
mkdir -p "$OUT"
START=$(date +%s)
left() { echo $(( 585 - ($(date +%s) - START) )); }
MMOC_BENCH_END_S=${MMOC_BENCH_END_S:-555} OUT=$OUT bash bench/gpu/matrix.sh > "$OUT/matrix.log" 2>&1
echo "[$(( $(date +%s) - START )) s] matrix done" | tee -a "$OUT/diag.txt"
T=$(( $(left) - 5 )); (( T > 40 )) && T=40
if (( T > 10 )); then
  timeout -k 3 $T node --import tsx bench/cpu-adam.ts --n 134217728 --threads 8,16,32 --reps 7 --out "$OUT/cpu-adam.json" > "$OUT/cpu-adam.txt" 2>&1
  echo "[$(( $(date +%s) - START )) s] cpu-adam rc=$?" | tee -a "$OUT/diag.txt"
fi
T=$(( $(left) - 40 )); (( T > 70 )) && T=70
if (( T > 10 )); then
  timeout -k 3 $T node --import tsx bench/gpu/adam-sizes.ts --groups 2 --sizes 32,61,157,202 --reps 3 > "$OUT/adam-sizes.txt" 2>&1
  echo "[$(( $(date +%s) - START )) s] adam-sizes rc=$?" | tee -a "$OUT/diag.txt"
fi
T=$(( $(left) - 5 )); (( T > 90 )) && T=90
if (( T > 15 )); then
  timeout -k 3 $T bash bench/gpu/adam-variants.sh --threads 8,16,32 --reps 5 --json "$OUT/adam-variants.json" > "$OUT/adam-variants.txt" 2>&1
  echo "[$(( $(date +%s) - START )) s] adam-variants rc=$?" | tee -a "$OUT/diag.txt"
fi
tail -25 "$OUT/summary.txt"
tail -12 "$OUT/cpu-adam.txt" 2>/dev/null
tail -8 "$OUT/adam-sizes.txt" 2>/dev/null
grep -A30 "G params/s" "$OUT/adam-variants.txt" 2>/dev/null | head -30
