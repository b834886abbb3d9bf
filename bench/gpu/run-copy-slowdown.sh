#!/usr/bin/env bash
# calibrate's host-copy slowdown under the CPU update (the DRAM-sharing job: three 0.25 s copy windows
# inside the update, the slowest taken) twice on a one-GPU host, against the one-GPU matrix's
# streamed plan run between them, whose fetches show the slowdown as the plan meets it
# (bench/gpu/matrix-2026-11-23-h200/fetch-under-update.txt). ~3 min on an nvidia-h200 / h100-x1.
#   source .gpu/env.sh && DEST=$OUT bash bench/gpu/run-copy-slowdown.sh
set -u
cd "$(dirname "$0")/../.."
DEST=${DEST:?DEST: the folder for the logs}
W=/tmp/mmoc-cs; mkdir -p "$W/runs" "$DEST"
source bench/gpu/diag-prologue.sh
build_addon "$W/build.log"
echo "built at ${SECONDS} s" | tee "$W/summary.txt"
R=bench/gpu/matrix-2026-11-23-h200
S=llama3.2-1b-1g-1f1b-mbs2x4-streamed50-hostadam-delayed
cal() {  # <label>: the links and CPU parts over the matrix run's profile
  cp $R/profile.json "$W/profile-$1.json"
  node bin/mmoc.js calibrate --quick --only links,cpu --model llama2-7b,llama3.2-1b --seq 1024 --mbs 1,2,4 --id matrix-gpu -o "$W/profile-$1.json" --json > "$W/calibrate-$1.json" 2> "$W/calibrate-$1.err"
  echo "calibrate $1 rc=$? at ${SECONDS} s: copy_slowdown_under_cpu_update $(node -e 'console.log(require(process.argv[1]).copy_slowdown_under_cpu_update)' "$W/profile-$1.json")" | tee -a "$W/summary.txt"
}
cal a
node bin/mmoc.js execute $R/plans/$S.json --steps 10 --json --trace "$W/runs/$S.trace.json" > "$W/runs/$S.json" 2> "$W/runs/$S.err"
echo "$S rc=$? at ${SECONDS} s: $(node -e 'console.log(require(process.argv[1]).step_s_median.toFixed(4))' "$W/runs/$S.json") s/step" | tee -a "$W/summary.txt"
cal b
gzip -9n "$W"/runs/*.trace.json
tar -czf "$DEST/run.tgz" -C "$W" .
cp "$W/summary.txt" "$DEST/"
