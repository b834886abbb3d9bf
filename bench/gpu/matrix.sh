#!/usr/bin/env bash
# The bench matrix, in one command on the GPU machine (under 9 minutes): build the addon, calibrate
# the machine (profile -> $OUT/profile.json), plan and execute every plan of bench/gpu/matrix.ts
# (1F1B, GPipe, interleaved 1F1B; LLaMA-2-7B and LLaMA-3.2-1B; 1 and 2 GPUs; several micro-batch
# sizes; recompute on and off; on a machine of one GPU the one-GPU matrix), run the peers of .gpu/peers in the same run, and write one bench
# result (ARCHITECTURE.md format) to $OUT/bench-result.json, with the prediction errors printed.
#   (this machine)  /work/shared/gpu/pack.sh
#   (GPU machine)   source .gpu/env.sh && bash bench/gpu/matrix.sh
#   (CPU check)     MMOC_BENCH_CPU=1 OUT=/tmp/m bash bench/gpu/matrix.sh   # tiny model on CPU ranks, no peers
# Commit the result in one step: `bash bench/gpu/commit-matrix.sh $OUT` (copies it to
# bench/results/<date>-matrix-h200x2.json and the run to bench/gpu/matrix-<date>-h200x2/, prints the
# README row); test/prediction-error.test.ts then bounds its errors. The plans also cover offload
# (host AdamW, delayed, GPU/host split, streamed parameters, activation offload, disk under
# /tmp/mmoc-matrix-disk, a 32 GiB cap): about 450-480 s in all on 2x H200 with the peers.
# Knobs: MMOC_BENCH_BUDGET_S (default 520: no plan starts after it), MMOC_BENCH_PEER_S (default 55:
# the pipelining peer's limit; it runs right after calibrate), MMOC_BENCH_END_S (default 565: the
# FSDP2 peer runs after the plans with the time left before it), MMOC_BENCH_FULL=1 (calibrate
# without --quick: more repetitions, larger transfers), MMOC_BENCH_NO_PEERS=1, MMOC_BENCH_STEPS (default
# 10: the steps each plan runs), MMOC_BENCH_REPEAT and MMOC_BENCH_REPEAT_UNDER_S (default 3 processes
# on one GPU, 1 on more, for plans whose first process ran in under 8 s: the median process kept).
set -u
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/mmoc-matrix}
mkdir -p "$OUT/runs"
START=$(date +%s)
BUDGET=${MMOC_BENCH_BUDGET_S:-520}
CPU=${MMOC_BENCH_CPU:-0}
elapsed() { echo $(( $(date +%s) - START )); }
say() { echo "[$(elapsed) s] $*" | tee -a "$OUT/summary.txt"; }
export PYTORCH_CUDA_ALLOC_CONF=${PYTORCH_CUDA_ALLOC_CONF:-expandable_segments:True}
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0}
TSX="node --import tsx"
: > "$OUT/summary.txt"
# steps a plan runs (the first is set-up and warm-up; the median of the rest is its step time): ten, so
# that a few steps slowed by something outside the plan (at one sequence of LLaMA-3.2-1B the launching
# thread keeps pace with the GPU only just: the eleventh run had steps 3-6 of 6 at +65% backward) move
# the median less
STEPS=${MMOC_BENCH_STEPS:-10}
# the host's CPU time, once a second (/proc/stat's cpu line: user nice system idle iowait irq softirq
# steal ...; epoch seconds first): what else the host did while a plan ran
( while :; do echo "$(date +%s.%N) $(head -1 /proc/stat)"; sleep 1; done ) > "$OUT/procstat.log" 2> /dev/null &
STATPID=$!
trap 'kill $STATPID 2> /dev/null' EXIT
trap 'kill $STATPID 2> /dev/null; exit 143' TERM
say "start: epoch $START"

if [[ $CPU == 1 ]]; then
  say "== CPU mode (MMOC_BENCH_CPU=1): tiny model on CPU ranks"
  [[ -f native/build/Release/mmoc_native.node || -n ${MMOC_NATIVE_ADDON:-} ]] || node scripts/build-native.mjs > "$OUT/build.log" 2>&1
  node bin/mmoc.js doctor --json > "$OUT/doctor.json" 2> /dev/null
  say "== calibrate"
  node bin/mmoc.js calibrate --quick --target cpu --only gemm,attention,kernels,cpu,memory,disk,overheads --disk-path /tmp --model tiny --seq 32 --mbs 1,2,4,8 \
    --id matrix-cpu -o "$OUT/profile.json" > "$OUT/calibrate.txt" 2> "$OUT/calibrate.err"
  say "calibrate rc=$? ($(head -1 "$OUT/calibrate.txt"))"
  PLANFLAG=--cpu
  RT=$(( $(nproc) / 2 )); (( RT > 0 )) || RT=1
  EXFLAGS="--threads $RT"   # as calibrate measured the ranks (cores / ranks threads each)
else
  nvidia-smi --query-gpu=index,name,memory.total,memory.used,clocks.sm --format=csv > "$OUT/nvidia-smi.csv" 2>&1
  # each GPU's SM clock, power, utilization, temperature and clock-event reasons twice a second
  # (gpu-clocks.csv): whether a plan's slow spell was the GPU's clock or the launching thread
  Q=timestamp,index,clocks.sm,power.draw,utilization.gpu,temperature.gpu,clocks_event_reasons.active
  nvidia-smi --query-gpu=$Q --format=csv,noheader > /dev/null 2>&1 || Q=${Q/clocks_event_reasons/clocks_throttle_reasons}
  nvidia-smi --query-gpu=$Q --format=csv -lms 500 > "$OUT/gpu-clocks.csv" 2> /dev/null &
  SMIPID=$!
  trap 'kill $STATPID $SMIPID 2> /dev/null' EXIT
  trap 'kill $STATPID $SMIPID 2> /dev/null; exit 143' TERM
  say "== build"
  MMOC_FROM_SOURCE=1 node scripts/build-native.mjs --force > "$OUT/build.log" 2>&1 || {
    say "build failed: again without the optional fast paths"; grep -nE "error" "$OUT/build.log" | head -20
    MMOC_FROM_SOURCE=1 MMOC_CXX_FLAGS=-DMMOC_NO_FAST_PATHS node scripts/build-native.mjs --force > "$OUT/build2.log" 2>&1 || { tail -30 "$OUT/build2.log"; exit 1; }
  }
  say "built"
  node bin/mmoc.js doctor --json > "$OUT/doctor.json" 2> "$OUT/doctor.err"
  say "== calibrate"
  node bin/mmoc.js calibrate $([[ -n ${MMOC_BENCH_FULL:-} ]] || echo --quick) --model llama2-7b,llama3.2-1b --seq 1024 --mbs 1,2,4 --disk-path /tmp \
    --id matrix-gpu -o "$OUT/profile.json" --json > "$OUT/calibrate.json" 2> "$OUT/calibrate.err"
  say "calibrate rc=$?: host AdamW $(node -e 'const p=require(process.argv[1]);console.log(p.cpu.optimizers[0].points.map(x=>x.threads+" threads "+(x.params_per_s/1e9).toFixed(2)).join(", ")+" G params/s")' "$OUT/profile.json" 2> /dev/null)"
  tail -3 "$OUT/calibrate.err"
  PLANFLAG=
  EXFLAGS=
fi
[[ -f $OUT/profile.json ]] || { say "no profile: stop"; exit 1; }

# peers: the pipelining peer right after calibrate (two matrix runs gave the peers what the plans
# left, 45 s each, and got nothing back), MMOC_BENCH_PEER_S (default 55), 3 timed steps; the FSDP2
# peer (with CPUOffloadPolicy, fsdp_peer.py's default: ~7.4 s a step on 2x H200, so 4 steps and the
# set-up took more than the 55-66 s three runs gave it), 2 timed steps after the plans, with the time
# that is left before MMOC_BENCH_END_S (default 565; 40 s at least).
# On a machine of one GPU (the one-GPU matrix: matrix.ts) the peers are FSDP2 on that GPU, LLaMA-2-7B,
# 8192 tokens a step: without offload (checkpointing; it needs a 141 GiB device) first, with
# CPUOffloadPolicy after the plans.
NG=$(nvidia-smi -L 2> /dev/null | grep -c '^GPU')
PT=${MMOC_BENCH_PEER_S:-55}
END=${MMOC_BENCH_END_S:-565}
PEERS=0; [[ $CPU != 1 && -z ${MMOC_BENCH_NO_PEERS:-} && -d .gpu/peers ]] && PEERS=1
peers() {  # <limit s> <job>...: run_peers.sh appends to peers.log and rewrites peers.jsonl from it
  local t=$1; shift
  (cd .gpu/peers && OUT=$OUT T=$t ./run_peers.sh "$@") >> "$OUT/peers.out" 2>&1
  # a peer stopped by its time limit can outlive it: its workers tearing down their host memory and
  # CUDA contexts ran into the first plan of the tenth run (LLaMA-2-7B 1F1B mbs 1 measured 0.518 s a
  # step there, 0.407 s in the eighth run without peers). Kill what is left and wait until no
  # process holds a GPU (at most 60 s) before anything else is timed.
  pkill -KILL -f 'pipe_peer.py|fsdp_peer.py' 2> /dev/null
  local w=0
  while (( w < 60 )) && [[ -n $(nvidia-smi --query-compute-apps=pid --format=csv,noheader 2> /dev/null) ]]; do sleep 1; w=$((w + 1)); done
  sleep 2
  say "peers: $(wc -l < "$OUT/peers.jsonl" 2>/dev/null || echo 0) results; no process on a GPU after $w s"
}
if (( PEERS )); then
  if (( NG == 1 )); then
    MIB=$(nvidia-smi --query-gpu=memory.total --format=csv,noheader,nounits 2> /dev/null | head -1)
    if (( ${MIB:-0} >= 120000 )); then
      say "== peer: FSDP2 on one GPU, no offload (at most $PT s)"
      peers "$PT" "run 1 fsdp_peer.py --model llama2-7b --offload 0 --mbs 8 --steps 3"
    else say "skip the FSDP2 peer without offload: LLaMA-2-7B's weights, gradients and AdamW states (about 108 GiB) exceed this GPU's ${MIB} MiB"; fi
  else
    say "== peer: torch pipelining 1F1B (at most $PT s)"
    peers "$PT" "run 2 pipe_peer.py --model llama2-7b --sched 1f1b --nmb 8 --steps 3"
  fi
fi

say "== plans ($STEPS steps each)"
# On one GPU, a plan whose first process ran in under MMOC_BENCH_REPEAT_UNDER_S (default 8 s: the
# resident LLaMA-3.2-1B plans, 4-6 s each) runs in MMOC_BENCH_REPEAT processes (default 3; 1 on more
# GPUs, whose 21 plans fill the call) and the median process's step time is kept, the others beside
# it (runs/<name>.rep<k>.*; bench-result's measured.processes_step_s has all of them): a launch-bound
# plan's step moves with its process (the twentieth run: one process of LLaMA-3.2-1B 1F1B 1 x 8 ran
# every forward 40% slower than the GPipe 1 x 8 process before it). The host-bound plans take 13-70 s
# and run once.
REPEAT=${MMOC_BENCH_REPEAT:-$( [[ $CPU != 1 ]] && (( NG == 1 )) && echo 3 || echo 1)}
REPEAT_UNDER=${MMOC_BENCH_REPEAT_UNDER_S:-8}
# repeats only while they leave the plans after them this much of the budget (the one-GPU list's
# host-bound plans and the capped LLaMA-2-7B one take ~130 s)
RESERVE=${MMOC_BENCH_REPEAT_RESERVE_S:-150}
run_plan() {  # <plan file> <base>: one process, T s at most: <base>.json, .trace.json, .err
  timeout $T node bin/mmoc.js execute "$1" --steps "$STEPS" $EXFLAGS --json --trace "$2.trace.json" > "$2.json" 2> "$2.err"
}
$TSX bench/gpu/matrix.ts plans "$OUT" "$OUT/profile.json" $PLANFLAG > "$OUT/plans.tsv" 2> "$OUT/plans.err"
cat "$OUT/plans.err"
while IFS=$'\t' read -r name file; do
  if (( $(elapsed) > BUDGET )); then say "skip $name: past the ${BUDGET} s budget"; continue; fi
  case $name in llama2-7b*) T=150 ;; *) T=100 ;; esac
  mkdir -p /tmp/mmoc-matrix-disk/a /tmp/mmoc-matrix-disk/b   # the disk plans' folders (matrix.ts DISK_DIRS)
  s=$(date +%s.%N)
  run_plan "$file" "$OUT/runs/$name"
  rc=$?
  [[ $rc -eq 0 ]] || rm -f "$OUT/runs/$name.json"
  d=$(awk -v a="$s" -v b="$(date +%s.%N)" 'BEGIN{printf "%.0f", b-a}')
  say "$name rc=$rc in $d s $(node -e 'try{const r=require(process.argv[1]);console.log(r.step_s_median.toFixed(4)+" s/step, "+Math.round(r.tokens_per_s)+" tok/s")}catch(e){}' "$OUT/runs/$name.json" 2>/dev/null)"
  [[ $rc -eq 0 ]] || tail -2 "$OUT/runs/$name.err"
  if (( rc == 0 && REPEAT > 1 && d <= REPEAT_UNDER && $(elapsed) + (REPEAT - 1) * (d + 1) <= BUDGET - RESERVE )); then
    for k in $(seq 2 "$REPEAT"); do
      run_plan "$file" "$OUT/runs/$name.rep$k" || rm -f "$OUT/runs/$name.rep$k.json"
    done
    say "$name $($TSX bench/gpu/matrix.ts median "$OUT/runs" "$name" "$REPEAT" 2>&1 | tail -1)"
  fi
done < "$OUT/plans.tsv"

if (( PEERS )); then
  FT=$(( END - $(elapsed) - 8 )); (( FT > 120 )) && FT=120
  HOSTG=$(awk '/MemTotal/ {print int($2 / 1048576)}' /proc/meminfo)
  if (( NG == 1 && HOSTG < 200 )); then
    # LLaMA-2-7B's fp32 weights, gradients and AdamW states pinned on the host: 108 GiB. On a 128 GiB
    # one-H100 host the eighteenth run's peer had not finished a step after 120 s.
    say "skip the FSDP2 peer with CPU offload: its 108 GiB of pinned host state on a ${HOSTG} GiB host"
  elif (( FT >= 40 )); then say "== peer: FSDP2 with CPU offload (at most $FT s)"
    if (( NG == 1 )); then peers "$FT" "run 1 fsdp_peer.py --model llama2-7b --mbs 8 --steps 2"; else peers "$FT" "run 2 fsdp_peer.py --model llama2-7b --mbs 4 --steps 2"; fi
  else say "skip the FSDP2 peer: $FT s left"; fi
fi

say "== result"
$TSX bench/gpu/matrix.ts assemble "$OUT" "$OUT/profile.json" | tee -a "$OUT/summary.txt"
say "wrote $OUT/bench-result.json"
