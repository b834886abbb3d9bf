#!/usr/bin/env bash
# Issue 6 on CUDA, one command: build; the executor's host AdamW against torch's (8/16/32 threads);
# the tiny model's offload plans against their resident runs (losses side by side: the asynchronous
# engine must give the same numbers); LLaMA-2-7B with the update on the host (synchronous and
# delayed, with recompute, with 40% of it on the GPU) with measured traces; the FSDP2 + CPU offload
# peer in the same run. Plans: bench/gpu/make-offload-plans.ts.
#   (GPU machine, repo root) source .gpu/env.sh && bash bench/gpu/run-offload.sh
set -u
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/mmoc-gpu}
mkdir -p "$OUT" /tmp/mmoc-disk-a /tmp/mmoc-disk-b
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0} PYTORCH_CUDA_ALLOC_CONF=${PYTORCH_CUDA_ALLOC_CONF:-expandable_segments:True} MMOC_FROM_SOURCE=1
START=$(date +%s)
say() { echo "[$(( $(date +%s) - START )) s] $*" | tee -a "$OUT/summary.txt"; }
node scripts/build-native.mjs > "$OUT/build.log" 2>&1 || { grep -nE "error" "$OUT/build.log" | head -30; exit 1; }
say "built"
[[ -n ${MMOC_SKIP_CPU_ADAM:-} ]] || node --import tsx bench/cpu-adam.ts --n 134217728 --threads 8,16,32 --reps 5 --out "$OUT/cpu-adam.json" > "$OUT/cpu-adam.txt" 2>&1
say "cpu adam: $(node -e 'const r=require(process.argv[1]);for(const x of r.results?.[0]?.runs??r.rows??[])console.log(JSON.stringify(x))' "$OUT/cpu-adam.json" 2>/dev/null | head -3; tail -3 "$OUT/cpu-adam.txt")"
losses() { node -e 'try{const r=require(require("path").resolve(process.argv[1]));console.log(r.losses.map(x=>x.toPrecision(8)).join(" "))}catch(e){console.log("-")}' "$1"; }
for p in ${MMOC_TINY_PLANS:-tiny-cuda-2r-fp32 tiny-cuda-2r-fp32-host tiny-cuda-2r-fp32-half tiny-cuda-2r-fp32-hostgrads tiny-cuda-2r-fp32-streamed tiny-cuda-2r-fp32-disk tiny-cuda-2r-fp32-rc tiny-cuda-2r-fp32-act tiny-cuda-2r tiny-cuda-2r-host tiny-cuda-2r-half}; do
  timeout 90 node bin/mmoc.js execute bench/gpu/plan-$p.json --json > "$OUT/$p.json" 2> "$OUT/$p.err"
  say "$(printf '%-28s rc=%s %s' "$p" "$?" "$(losses "$OUT/$p.json")")"
  grep -m2 -iE "error|fail" "$OUT/$p.err"
done
for p in ${MMOC_7B_PLANS:-hostadam hostadam-delayed rc-hostadam-delayed rc-opt40gpu-delayed}; do
  timeout 150 node bin/mmoc.js execute bench/gpu/plan-llama2-7b-1f1b-$p.json --steps 4 --json --trace "$OUT/trace-7b-$p.json" > "$OUT/7b-$p.json" 2> "$OUT/7b-$p.err"
  rc=$?
  say "7b-$p rc=$rc $(node -e 'const m=require(process.argv[1]); console.log(JSON.stringify({tokens_per_s:Math.round(m.tokens_per_s), step_s:m.step_s, peak_gib:m.peak_bytes.map(b=>+(b/2**30).toFixed(2)), peak_alloc_gib:m.peak_allocated_bytes.map(b=>+(b/2**30).toFixed(2))}))' "$OUT/7b-$p.json" 2>/dev/null)"
  [[ $rc -eq 0 ]] || tail -3 "$OUT/7b-$p.err"
  node bin/mmoc.js compare bench/gpu/plan-llama2-7b-1f1b-$p.json "$OUT/trace-7b-$p.json" --json > "$OUT/compare-7b-$p.json" 2> /dev/null
done
if [[ -d .gpu/peers && -z ${MMOC_BENCH_NO_PEERS:-} ]]; then
  (cd .gpu/peers && OUT=$OUT T=${MMOC_PEER_T:-100} ./run_peers.sh "run 2 fsdp_peer.py --model llama2-7b --mbs 4") > "$OUT/peers.out" 2>&1
  say "peers: $(cat "$OUT/peers.jsonl" 2>/dev/null | head -c 600)"
fi
