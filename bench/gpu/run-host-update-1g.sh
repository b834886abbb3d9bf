#!/usr/bin/env bash
# Why did the one-GPU matrix's LLaMA-3.2-1B delayed host-AdamW plan update its layers at 5.5 G
# params/s (11.1 ms a layer while the GPU computed) where calibrate's executor probe read 6.34, and the
# LLaMA-2-7B plan's layers 6.5 (bench/gpu/matrix-2026-11-23-h100/)? On an nvidia-h100-x1 or
# nvidia-h200 (~3.5 min): the plan as it is (twice), with 14 and 13 host threads (`--threads`; 15 is
# cores - 1), calibrate's probe (12 layers, GPipe) and the probe scheduled 1F1B as the plan is, and the
# synchronous host-AdamW plan with 15 and 14 threads. Each run's trace and result under $DEST/runs;
# the update's time a layer by what ran meanwhile: bench/gpu/host-update-context.cjs.
#   source .gpu/env.sh && DEST=$OUT bash bench/gpu/run-host-update-1g.sh
set -u
cd "$(dirname "$0")/../.."
DEST=${DEST:?DEST: the folder for the logs}
W=/tmp/mmoc-hu; mkdir -p "$W/runs" "$W/plans" "$DEST"
source bench/gpu/diag-prologue.sh
{ nproc; lscpu | grep -E "Model name|Thread|Core|Socket|NUMA"; nvidia-smi -L; } > "$W/host.txt" 2>&1
build_addon "$W/build.log"
echo "built at ${SECONDS} s"
node --import tsx bench/gpu/dump-host-probe-plans.ts "$W/plans" > /dev/null
P=bench/gpu/matrix-2026-11-23-h100/plans
D=llama3.2-1b-1g-1f1b-mbs2x4-hostadam-delayed
S=llama3.2-1b-1g-1f1b-mbs2x4-hostadam
run() {  # <label> <plan file> [execute flags]
  local label=$1 plan=$2; shift 2
  timeout 90 node bin/mmoc.js execute "$plan" --steps 10 --json --trace "$W/runs/$label.trace.json" "$@" > "$W/runs/$label.json" 2> "$W/runs/$label.err"
  echo "$label rc=$? at ${SECONDS} s: $(node -e 'try{const r=require(process.argv[1]);console.log(r.step_s_median.toFixed(4)+" s/step")}catch(e){console.log("-")}' "$W/runs/$label.json")" | tee -a "$W/summary.txt"
}
run delayed-1 $P/$D.json
run delayed-t14 $P/$D.json --threads 14
run delayed-t13 $P/$D.json --threads 13
run probe-gpipe "$W/plans/probe-1b12-gpipe.json"
run probe-1f1b "$W/plans/probe-1b12-1f1b.json"
run probe16-1f1b "$W/plans/probe-1b16-1f1b.json"
run delayed-2 $P/$D.json
run sync-t15 $P/$S.json
run sync-t14 $P/$S.json --threads 14
for f in "$W"/runs/*.trace.json; do gzip -9n "$f"; done
tar -czf "$DEST/run.tgz" -C "$W" .
cp "$W/summary.txt" "$DEST/"
cat "$W/summary.txt"
