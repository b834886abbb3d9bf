#!/usr/bin/env bash
# One GPU call (nvidia-h200-x2, ~3 minutes): calibrate's DRAM-sharing job as it is now (the host
# update alone, inside H2D and inside D2H copies on both GPUs) against what two matrix plans' host
# updates meet (the capped LLaMA-2-7B host-AdamW plan, LLaMA-3.2-1B delayed host AdamW), on the same
# host in the same call: per-layer update times by what ran meanwhile (host-update-context.cjs).
#   source .gpu/env.sh && MATRIX=bench/gpu/matrix-2026-11-23b-h200x2 DEST=$OUT bash bench/gpu/run-dram-check.sh
set -u
cd "$(dirname "$0")/../.."
DEST=${DEST:?DEST: the folder to leave the archive in}
MATRIX=${MATRIX:?MATRIX: a matrix run folder with plans/}
W=${W:-/tmp/mmoc-dram}
mkdir -p "$W/runs" "$W/plans" "$DEST"
S=$(date +%s)
log() { echo "[$(( $(date +%s) - S )) s] $*" | tee -a "$W/summary.txt"; }
MMOC_FROM_SOURCE=1 node scripts/build-native.mjs --force > "$W/build.log" 2>&1 || { tail -20 "$W/build.log"; exit 1; }
log built
node bin/mmoc.js calibrate --quick --only links,cpu --model llama2-7b --seq 1024 --mbs 1 --id dram-check -o "$W/profile.json" --json > "$W/calibrate.json" 2> "$W/calibrate.err"
log "calibrate rc=$?"
node -e 'const p=require(process.argv[1]);console.log("slowdown under copies", p.cpu_update_slowdown_under_copies, "|", p.figures.cpu_update_slowdown_under_copies.how)' "$W/profile.json" | tee -a "$W/summary.txt"
for name in llama3.2-1b-2g-1f1b-mbs2x4-hostadam-delayed llama2-7b-2g-1f1b-mbs1x8-rc-hostadam-delayed-cap32; do
  cp "$MATRIX/plans/$name.json" "$W/plans/"
  timeout 120 node bin/mmoc.js execute "$MATRIX/plans/$name.json" --steps 6 --json --trace "$W/runs/$name.trace.json" > "$W/runs/$name.json" 2> "$W/runs/$name.err"
  log "$name rc=$? $(node -e 'try{const r=require(process.argv[1]);console.log(r.step_s_median.toFixed(4)+" s/step")}catch(e){}' "$W/runs/$name.json")"
  node bench/gpu/host-update-context.cjs "$W" "$name" | tee -a "$W/summary.txt"
done
tar -czf "$DEST/run.tgz" -C "$W" .
cp "$W/summary.txt" "$DEST/"
