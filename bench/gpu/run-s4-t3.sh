#!/usr/bin/env bash
# One GPU call for issue 6's target 3 and issue 7's open questions (session 4), on 2 GPUs of an
# nvidia-h200-x4 lease (512 GiB of host memory: the FSDP2 + CPUOffloadPolicy peer of 13B holds
# 16 B a parameter on the host and was killed by the OOM killer on the 251 GiB 2x H200 host):
#  1. CUDA equality of the tiny model's offload paths (disk workers, the point-to-point warm-up and
#     the per-layer gradient copies are new since the last GPU build);
#  2. where a decoder layer's time goes, cold and hot (bench/gpu/diagnose-layer.py, 7B and 1B);
#  3. the memory outside the caching allocator of calibrate's probe run made standalone, with
#     nvidia-smi's per-process figure beside the executor's own (calibrate's context figure is
#     0.52 GiB below real runs);
#  4. host AdamW against torch's fused AdamW, alone and doing the same job; all ranks at once;
#  5. LLaMA-2-13B, the plan `mmoc plan --gpu-mem 48GiB --delayed-update` writes, capped at 48 GiB;
#  6. FSDP2 + CPUOffloadPolicy on the same 13B job.
#   (GPU machine, repo root) source .gpu/env.sh && bash bench/gpu/run-s4-t3.sh
set -u
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/mmoc-s4}
mkdir -p "$OUT" /tmp/mmoc-disk-a /tmp/mmoc-disk-b
export CUDA_VISIBLE_DEVICES=${MMOC_GPUS:-0,1}
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0} PYTORCH_CUDA_ALLOC_CONF=${PYTORCH_CUDA_ALLOC_CONF:-expandable_segments:True} MMOC_FROM_SOURCE=1
PROFILE=${MMOC_PROFILE:-bench/gpu/matrix-2026-11-22c-h200x2/profile-evaluated.json}
START=$(date +%s)
BUDGET=${MMOC_BENCH_BUDGET_S:-585}
left() { echo $(( BUDGET - ($(date +%s) - START) )); }
say() { echo "[$(( $(date +%s) - START )) s] $*" | tee -a "$OUT/summary.txt"; }
losses() { node -e 'try{const r=require(require("path").resolve(process.argv[1]));console.log(r.losses.map(x=>x.toPrecision(8)).join(" "))}catch(e){console.log("-")}' "$1"; }
{ nvidia-smi -L; nproc; free -g | head -2; lscpu | grep -E "Model name|Socket|NUMA node\(s\)"; } > "$OUT/machine.txt" 2>&1
node scripts/build-native.mjs > "$OUT/build.log" 2>&1 || { grep -nE "error" "$OUT/build.log" | head -30; exit 1; }
say "built; $(nproc) cores, $(free -g | awk '/Mem/{print $2}') GiB"
for p in tiny-cuda-2r-fp32 tiny-cuda-2r-fp32-lrc-act tiny-cuda-2r-fp32-host-delayed tiny-cuda-2r-fp32-allstreamed-delayed tiny-cuda-2r-fp32-host tiny-cuda-2r-fp32-disk; do
  timeout 60 node bin/mmoc.js execute "bench/gpu/plan-$p.json" --json > "$OUT/$p.json" 2> "$OUT/$p.err"
  say "$(printf '%-38s rc=%s %s' "$p" "$?" "$(losses "$OUT/$p.json")")"
  grep -m2 -iE "error|fail" "$OUT/$p.err"
done
run() { # name plan timeout
  (( $(left) > $3 )) || { say "skip $1: $(left) s left"; return; }
  timeout "$3" node bin/mmoc.js execute "$2" --steps 4 --json --trace "$OUT/trace-$1.json" > "$OUT/$1.json" 2> "$OUT/$1.err"
  local rc=$?
  say "$1 rc=$rc $(node -e 'const m=require(process.argv[1]); console.log(JSON.stringify({tokens_per_s:Math.round(m.tokens_per_s), step_s:m.step_s.map(x=>+x.toFixed(3)), peak_gib:m.peak_bytes.map(b=>+(b/2**30).toFixed(2)), peak_alloc_gib:m.peak_allocated_bytes.map(b=>+(b/2**30).toFixed(2)), loss:m.losses.map(x=>+x.toFixed(4))}))' "$OUT/$1.json" 2>/dev/null)"
  [[ $rc -eq 0 ]] || tail -3 "$OUT/$1.err"
  node bin/mmoc.js compare "$2" "$OUT/trace-$1.json" --hardware "$PROFILE" --json > "$OUT/compare-$1.json" 2> /dev/null
  say "  predicted: $(node -e 'const c=require(process.argv[1]); console.log(JSON.stringify({step:c.step_s, peak:c.peak_bytes.map(p=>({r:p.rank,pred:+(p.predicted/2**30).toFixed(2),meas:+(p.measured/2**30).toFixed(2)}))}))' "$OUT/compare-$1.json" 2>/dev/null)"
  return $rc
}
run 13b-planned-cap48 bench/gpu/plan-llama2-13b-1f1b-planned-cap48.json 130 || run 13b-streamed-cap48 bench/gpu/plan-llama2-13b-1f1b-streamed-cap48.json 110
if [[ -d .gpu/peers ]]; then
  PT=$(( $(left) - 150 ))
  (( PT >= 60 )) && (cd .gpu/peers && OUT=$OUT T=$PT ./run_peers.sh "run 2 fsdp_peer.py --model llama2-13b --mbs 4") > "$OUT/peers-fsdp.out" 2>&1
  say "peers: $(grep -h RESULT "$OUT/peers.log" 2>/dev/null | sort -u) $(grep -m3 -E "Killed|SIGKILL|Error" "$OUT/peers-fsdp.out")"
fi
for m in 7b 1b; do
  (( $(left) > 45 )) || { say "skip diagnose $m: $(left) s left"; continue; }
  timeout 70 python3 bench/gpu/diagnose-layer.py --model $m --seconds 8 > "$OUT/diag-$m.txt" 2>&1
  say "diagnose $m rc=$?"; sed -n 1,12p "$OUT/diag-$m.txt" | tee -a "$OUT/summary.txt"
done
# calibrate's probe, standalone, and a 1B run, each with nvidia-smi's per-process memory beside
node --import tsx bench/gpu/dump-probe-plan.ts llama2-7b 1024 1 "$OUT/plan-probe.json"
ctx() { # name plan
  timeout 60 node bin/mmoc.js execute "$2" --steps 3 --json > "$OUT/ctx-$1.json" 2> "$OUT/ctx-$1.err" &
  local pid=$!
  while kill -0 $pid 2>/dev/null; do nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader,nounits >> "$OUT/ctx-$1.smi"; sleep 0.25; done
  wait $pid
  say "context $1: $(node -e 'const r=require(process.argv[1]);const G=2**30;console.log(JSON.stringify({outside_gib:r.peak_bytes.map((b,i)=>+((b-r.peak_reserved_bytes[i])/G).toFixed(3)),reserved_gib:r.peak_reserved_bytes.map(b=>+(b/G).toFixed(3))}))' "$OUT/ctx-$1.json" 2>&1) smi max MiB by pid: $(sort -t, -k2 -n "$OUT/ctx-$1.smi" | awk -F', ' '{m[$1]=$2>m[$1]?$2:m[$1]} END{for(p in m) printf "%s:%s ", p, m[p]}')"
}
(( $(left) > 40 )) && ctx probe "$OUT/plan-probe.json"
(( $(left) > 40 )) && ctx 1b-1g bench/gpu/matrix-2026-11-22c-h200x2/plans/llama3.2-1b-1g-1f1b-mbs4x2.json
# host AdamW: ours (fp32 and bf16 gradients) against torch's fused, alone and doing the same job
C=$(nproc)
(( $(left) > 40 )) && timeout $(( $(left) - 10 )) node --import tsx bench/cpu-adam.ts --n 134217728 --threads $((C/4)),$((C/2)),$C --reps 5 --out "$OUT/cpu-adam.json" > "$OUT/cpu-adam.out" 2>&1
say "cpu-adam rc=$?"; cat "$OUT/cpu-adam.out" | tee -a "$OUT/summary.txt"
cat > /tmp/adam-groups.mts <<'T'
import { calibrateTask } from './executor/native.ts';
const C = Number(process.argv[2]);
for (const [dims, threads] of [[[134217728], C], [[134217728, 2], C / 2], [[134217728], C / 2]] as const)
  console.log(JSON.stringify({ dims, threads, gparams_per_s: +((await calibrateTask({ kind: 'adamw', dims: [...dims], threads, iters: 5 })).value / 1e9).toFixed(3) }));
T
(( $(left) > 20 )) && cp /tmp/adam-groups.mts ./adam-groups.mts && timeout $(( $(left) - 5 )) node --import tsx ./adam-groups.mts $C > "$OUT/adam-groups.out" 2>&1; rm -f ./adam-groups.mts
say "adam groups: $(tr '\n' ' ' < "$OUT/adam-groups.out")"
