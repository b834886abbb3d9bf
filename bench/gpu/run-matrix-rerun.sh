#!/usr/bin/env bash
# After the third GPU matrix (bench/gpu/matrix-2026-11-22c-h200x2), on the same machine kind: the
# overheads part of calibrate again with the fixed probe (two decoder layers of the job's model, not
# the tiny model), on top of that run's profile; and the five 1B offload plans that run refused (a
# tied embedding split across ranks with its update on the host), re-made by matrix.ts with the
# placement that keeps the tied layers' update on the GPU.
#   (GPU machine, repo root) source .gpu/env.sh && bash bench/gpu/run-matrix-rerun.sh
set -u
cd "$(dirname "$0")/../.."
D=bench/gpu/matrix-2026-11-22c-h200x2
OUT=${OUT:-/tmp/mmoc-rerun}
mkdir -p "$OUT/runs" /tmp/mmoc-matrix-disk/a /tmp/mmoc-matrix-disk/b
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0} PYTORCH_CUDA_ALLOC_CONF=${PYTORCH_CUDA_ALLOC_CONF:-expandable_segments:True} MMOC_FROM_SOURCE=1
START=$(date +%s)
say() { echo "[$(( $(date +%s) - START )) s] $*" | tee -a "$OUT/summary.txt"; }
node scripts/build-native.mjs > "$OUT/build.log" 2>&1 || { grep -nE "error" "$OUT/build.log" | head -30; exit 1; }
say "built"
cp "$D/profile.json" "$OUT/profile-overheads.json"
node bin/mmoc.js calibrate --quick --only overheads --model llama2-7b,llama3.2-1b --seq 1024 --mbs 1,2,4 --id matrix-gpu -o "$OUT/profile-overheads.json" --json > "$OUT/calibrate-overheads.json" 2> "$OUT/calibrate-overheads.err"
say "calibrate overheads rc=$? $(node -e 'const p=require(process.argv[1]);console.log(JSON.stringify(p.overheads))' "$OUT/profile-overheads.json")"
for f in $D/plans/llama3.2-1b-2g-1f1b-mbs2x4-{hostadam,hostadam-delayed,opt50gpu-delayed,streamed50-hostadam-delayed,hostadam-opt1disk}.json; do  # re-made (the refused ones: plans-refused/)
  name=$(basename "$f" .json)
  timeout 100 node bin/mmoc.js execute "$f" --json --trace "$OUT/runs/$name.trace.json" > "$OUT/runs/$name.json" 2> "$OUT/runs/$name.err"
  rc=$?
  say "$name rc=$rc $(node -e 'try{const r=require(process.argv[1]);console.log(r.step_s_median.toFixed(4)+" s/step, "+Math.round(r.tokens_per_s)+" tok/s, peak "+r.peak_bytes.map(b=>(b/2**30).toFixed(2)).join("/"))}catch(e){}' "$OUT/runs/$name.json" 2>/dev/null)"
  [[ $rc -eq 0 ]] || tail -2 "$OUT/runs/$name.err"
done
