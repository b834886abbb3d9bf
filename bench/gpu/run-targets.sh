#!/usr/bin/env bash
# Issue 6's performance targets on 2x H200, one command, peers in the same run:
#  2. LLaMA-2-7B at <= 34 GiB a GPU (40% of GPipe's peak) against torch pipelining GPipe's tokens/s;
#  3. LLaMA-2-13B capped at 48 GiB a GPU (an L20's memory; enforced through the caching allocator)
#     against FSDP2 + CPUOffloadPolicy on the same job.
# Also re-calibrates the machine (the profile the plans are re-simulated with; compare per plan).
#   (GPU machine, repo root) source .gpu/env.sh && bash bench/gpu/run-targets.sh
set -u
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/mmoc-targets}
mkdir -p "$OUT"
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0} PYTORCH_CUDA_ALLOC_CONF=${PYTORCH_CUDA_ALLOC_CONF:-expandable_segments:True} MMOC_FROM_SOURCE=1
START=$(date +%s)
BUDGET=${MMOC_BENCH_BUDGET_S:-540}
left() { echo $(( BUDGET - ($(date +%s) - START) )); }
say() { echo "[$(( $(date +%s) - START )) s] $*" | tee -a "$OUT/summary.txt"; }
node scripts/build-native.mjs > "$OUT/build.log" 2>&1 || { grep -nE "error" "$OUT/build.log" | head -30; exit 1; }
say "built"
node bin/mmoc.js calibrate --quick --model llama2-7b,llama2-13b --seq 1024 --mbs 1 --id targets-h200x2 -o "$OUT/profile.json" --json > "$OUT/calibrate.json" 2> "$OUT/calibrate.err"
say "calibrate rc=$? $(tail -1 "$OUT/calibrate.err")"
run() { # name plan timeout
  (( $(left) > $3 )) || { say "skip $1: $(left) s left"; return; }
  timeout "$3" node bin/mmoc.js execute "$2" --steps 4 --json --trace "$OUT/trace-$1.json" > "$OUT/$1.json" 2> "$OUT/$1.err"
  local rc=$?
  say "$1 rc=$rc $(node -e 'const m=require(process.argv[1]); console.log(JSON.stringify({tokens_per_s:Math.round(m.tokens_per_s), step_s:m.step_s.map(x=>+x.toFixed(3)), peak_gib:m.peak_bytes.map(b=>+(b/2**30).toFixed(2)), peak_alloc_gib:m.peak_allocated_bytes.map(b=>+(b/2**30).toFixed(2))}))' "$OUT/$1.json" 2>/dev/null)"
  [[ $rc -eq 0 ]] || tail -3 "$OUT/$1.err"
  [[ -f $OUT/profile.json ]] && node bin/mmoc.js compare "$2" "$OUT/trace-$1.json" --hardware "$OUT/profile.json" --json > "$OUT/compare-$1.json" 2> /dev/null
}
for g in ${MMOC_7B_GPU_FRACTIONS:-35 40}; do run "7b-rc-opt${g}gpu-delayed" "bench/gpu/plan-llama2-7b-1f1b-rc-opt${g}gpu-delayed.json" 100; done
run 13b-rc-hostadam-cap48 bench/gpu/plan-llama2-13b-1f1b-rc-hostadam-cap48.json 170
if [[ -d .gpu/peers && -z ${MMOC_BENCH_NO_PEERS:-} ]]; then
  (( $(left) > 60 )) && (cd .gpu/peers && OUT=$OUT T=75 ./run_peers.sh "run 2 pipe_peer.py --model llama2-7b --sched gpipe --nmb 8") > "$OUT/peers-gpipe.out" 2>&1
  cp "$OUT/peers.jsonl" "$OUT/peers-gpipe.jsonl" 2>/dev/null
  PT=$(( $(left) - 5 ))
  (( PT >= 60 )) && (cd .gpu/peers && OUT=$OUT T=$PT ./run_peers.sh "run 2 fsdp_peer.py --model llama2-13b --mbs 4") > "$OUT/peers-fsdp.out" 2>&1
  say "peers: $(cat "$OUT/peers-gpipe.jsonl" "$OUT/peers.jsonl" 2>/dev/null | sort -u)"
fi
