#!/usr/bin/env bash
# Issue 6 on CUDA: build, the tiny model's offload plans against their resident runs (losses side by
# side), then LLaMA-2-7B with the whole AdamW on the host (plans: bench/gpu/make-offload-plans.ts).
#   (GPU machine, repo root) source .gpu/env.sh && bash bench/gpu/run-offload.sh
set -u
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/mmoc-gpu}
mkdir -p "$OUT" /tmp/mmoc-disk-a /tmp/mmoc-disk-b
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0} PYTORCH_CUDA_ALLOC_CONF=${PYTORCH_CUDA_ALLOC_CONF:-expandable_segments:True} MMOC_FROM_SOURCE=1
s=$(date +%s); node scripts/build-native.mjs > "$OUT/build.log" 2>&1 || { grep -nE "error" "$OUT/build.log" | head -30; exit 1; }
echo "build ok in $(( $(date +%s) - s )) s"
losses() { node -e 'try{const r=require(require("path").resolve(process.argv[1]));console.log(r.losses.map(x=>x.toPrecision(8)).join(" "))}catch(e){console.log("-")}' "$1"; }
for p in tiny-cuda-2r-fp32 tiny-cuda-2r-fp32-host tiny-cuda-2r-fp32-half tiny-cuda-2r-fp32-hostgrads tiny-cuda-2r-fp32-streamed tiny-cuda-2r-fp32-disk tiny-cuda-2r-fp32-rc tiny-cuda-2r-fp32-act tiny-cuda-2r tiny-cuda-2r-host tiny-cuda-2r-half; do
  timeout 90 node bin/mmoc.js execute bench/gpu/plan-$p.json --json > "$OUT/$p.json" 2> "$OUT/$p.err"
  printf '%-28s rc=%s %s\n' "$p" "$?" "$(losses "$OUT/$p.json")"
  grep -m2 -iE "error|fail" "$OUT/$p.err"
done
echo "== LLaMA-2-7B 1F1B, AdamW wholly on the host (16 threads a rank, synchronous copies)"
timeout 300 node bin/mmoc.js execute bench/gpu/plan-llama2-7b-1f1b-hostadam.json --steps 4 --threads 16 --json --trace "$OUT/measured-7b-hostadam.json" > "$OUT/7b-hostadam.json" 2> "$OUT/7b-hostadam.err"
echo "rc=$?"; tail -3 "$OUT/7b-hostadam.err"
node -e 'const m=require(process.argv[1]); console.log(JSON.stringify({tokens_per_s:Math.round(m.tokens_per_s), step_s:m.step_s, peak_gib:m.peak_bytes.map(b=>+(b/2**30).toFixed(2)), peak_alloc_gib:m.peak_allocated_bytes.map(b=>+(b/2**30).toFixed(2))}))' "$OUT/7b-hostadam.json" 2>/dev/null
