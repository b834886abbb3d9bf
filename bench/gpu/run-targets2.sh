#!/usr/bin/env bash
# Issue 6's targets 1 and 2 on 2x H200 after recompute by layer and the delayed update of streamed
# layers, one command, peers in the same run:
#  - CUDA equality first: the tiny model's new paths (recompute by layer, activation offload of every
#    layer input, every layer streamed with the delayed update) against their reference runs;
#  - target 1: LLaMA-2-7B, every layer streamed, micro-batches 4 x 2 and 2 x 4, against FSDP2 +
#    CPUOffloadPolicy (peak allocated <= its peak, tokens/s >= 4x);
#  - target 2: LLaMA-2-7B with 45/50/55% of the update on the GPU, delayed, against torch pipelining
#    GPipe (<= 40% of its peak, >= 0.9x its tokens/s).
# Each plan is compared with bench/gpu/targets-2026-11-22-h200x2/profile-corrected.json.
#   (GPU machine, repo root) source .gpu/env.sh && bash bench/gpu/run-targets2.sh
set -u
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/mmoc-targets2}
mkdir -p "$OUT" /tmp/mmoc-disk-a /tmp/mmoc-disk-b
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0} PYTORCH_CUDA_ALLOC_CONF=${PYTORCH_CUDA_ALLOC_CONF:-expandable_segments:True} MMOC_FROM_SOURCE=1
PROFILE=${MMOC_PROFILE:-bench/gpu/targets-2026-11-22-h200x2/profile-corrected.json}
START=$(date +%s)
BUDGET=${MMOC_BENCH_BUDGET_S:-560}
left() { echo $(( BUDGET - ($(date +%s) - START) )); }
say() { echo "[$(( $(date +%s) - START )) s] $*" | tee -a "$OUT/summary.txt"; }
losses() { node -e 'try{const r=require(require("path").resolve(process.argv[1]));console.log(r.losses.map(x=>x.toPrecision(8)).join(" "))}catch(e){console.log("-")}' "$1"; }
node scripts/build-native.mjs > "$OUT/build.log" 2>&1 || { grep -nE "error" "$OUT/build.log" | head -30; exit 1; }
say "built"
for p in ${MMOC_TINY_PLANS:-tiny-cuda-2r-fp32 tiny-cuda-2r-fp32-lrc tiny-cuda-2r-fp32-lrc-act tiny-cuda-2r-fp32-host-delayed tiny-cuda-2r-fp32-allstreamed-delayed}; do
  f=bench/gpu/plan-$p.json
  [[ -f $f ]] || f=$OUT/plan-$p.json
  timeout 90 node bin/mmoc.js execute "$f" --json > "$OUT/$p.json" 2> "$OUT/$p.err"
  say "$(printf '%-38s rc=%s %s' "$p" "$?" "$(losses "$OUT/$p.json")")"
  grep -m2 -iE "error|fail" "$OUT/$p.err"
done
run() { # name plan timeout
  (( $(left) > $3 )) || { say "skip $1: $(left) s left"; return; }
  timeout "$3" node bin/mmoc.js execute "$2" --json --trace "$OUT/trace-$1.json" > "$OUT/$1.json" 2> "$OUT/$1.err"
  local rc=$?
  say "$1 rc=$rc $(node -e 'const m=require(process.argv[1]); console.log(JSON.stringify({tokens_per_s:Math.round(m.tokens_per_s), step_s:m.step_s.map(x=>+x.toFixed(3)), peak_gib:m.peak_bytes.map(b=>+(b/2**30).toFixed(2)), peak_alloc_gib:m.peak_allocated_bytes.map(b=>+(b/2**30).toFixed(2)), loss:m.losses.map(x=>+x.toFixed(4))}))' "$OUT/$1.json" 2>/dev/null)"
  [[ $rc -eq 0 ]] || tail -3 "$OUT/$1.err"
  node bin/mmoc.js compare "$2" "$OUT/trace-$1.json" --hardware "$PROFILE" --json > "$OUT/compare-$1.json" 2> /dev/null
  say "  predicted: $(node -e 'const c=require(process.argv[1]); console.log(JSON.stringify({step:c.step_s, peak:c.peak_bytes.map(p=>({r:p.rank,pred:+(p.predicted/2**30).toFixed(2),meas:+(p.measured/2**30).toFixed(2)}))}))' "$OUT/compare-$1.json" 2>/dev/null)"
}
for p in ${MMOC_7B_PLANS:-lean-mbs4x2 lrc-opt50gpu-delayed lean-mbs2x4 lrc-opt55gpu-delayed lrc-opt45gpu-delayed}; do
  run "7b-$p" "bench/gpu/plan-llama2-7b-1f1b-$p.json" 110
done
if [[ -d .gpu/peers && -z ${MMOC_BENCH_NO_PEERS:-} ]]; then
  (( $(left) > 70 )) && (cd .gpu/peers && OUT=$OUT T=70 ./run_peers.sh "run 2 pipe_peer.py --model llama2-7b --sched gpipe --nmb 8") > "$OUT/peers-gpipe.out" 2>&1
  PT=$(( $(left) - 3 ))
  (( PT >= 60 )) && (cd .gpu/peers && OUT=$OUT T=$PT ./run_peers.sh "run 2 fsdp_peer.py --model llama2-7b --mbs 4") > "$OUT/peers-fsdp.out" 2>&1
  say "peers: $(grep -h RESULT "$OUT/peers.log" 2>/dev/null | sort -u)"
fi
