#!/usr/bin/env bash
# Does the host AdamW's thread team starve the ranks' kernel-launching main threads? On an
# nvidia-h200-x2: the delayed host-AdamW plans of the matrix (their CPU update runs under the
# forward) with the default cores / ranks threads a rank and with one core a rank left free, and
# calibrate's all-ranks AdamW point at both. Results under DEST (one archive of the traces).
#   source .gpu/env.sh && DEST=$OUT bash bench/gpu/threads-probe.sh <plan.json>...
set -u
cd "$(dirname "$0")/../.."
DEST=${DEST:?}; W=/tmp/mmoc-threads; mkdir -p "$W" "$DEST"
MMOC_FROM_SOURCE=1 node scripts/build-native.mjs --force > "$W/build.log" 2>&1 || { tail -20 "$W/build.log"; exit 1; }
N=$(nproc); R=2; T=$(( N / R ))
for plan in "$@"; do
  name=$(basename "$plan" .json)
  for th in $T $(( T - 1 )); do
    node bin/mmoc.js execute "$plan" --threads $th --json --trace "$W/$name-t$th.trace.json" > "$W/$name-t$th.json" 2> "$W/$name-t$th.err"
    echo "$name threads $th rc=$? $(node -e 'const r=require(process.argv[1]);console.log(r.step_s_median.toFixed(4)+" s/step")' "$W/$name-t$th.json" 2>/dev/null)" | tee -a "$DEST/summary.txt"
  done
done
for th in $T $(( T - 1 )); do
  node --import tsx -e "import('./executor/native.ts').then(async (m) => { const r = await m.calibrateTask({ kind: 'adamw', dims: [157286400, $R], threads: $th, iters: 7, warmup: 0, maxSec: 60 }); console.log('adamw x$R groups, $th threads each: ' + (r.value / 1e9).toFixed(2) + ' G params/s'); })" 2>&1 | tail -1 | tee -a "$DEST/summary.txt"
done
tar -czf "$DEST/traces.tgz" -C "$W" .
