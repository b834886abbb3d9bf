#!/usr/bin/env bash
# One GPU-machine session (2x H200): build the addon against the machine's torch, `mmoc doctor
# --json`, a short CUDA check on the tiny model, the LLaMA-2-7B 1F1B run and, in the same command,
# the torch-pipelining 1F1B peer. Logs and results go to $OUT; a short table ends the output.
#   (on this machine) /work/shared/gpu/pack.sh
#   (GPU machine, repo root) source .gpu/env.sh && bash bench/gpu/run.sh [--no-7b] [--no-peer]
set -u
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/mmoc-gpu}
mkdir -p "$OUT"
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0}
export PYTORCH_CUDA_ALLOC_CONF=${PYTORCH_CUDA_ALLOC_CONF:-expandable_segments:True}
export MMOC_FROM_SOURCE=1
want() { [[ " $* " != *" --no-$1 "* ]]; }
t() { local s=$(date +%s.%N); "$@"; local rc=$?; awk -v a="$s" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f\n", b-a}' > "$OUT/.t"; return $rc; }

nvidia-smi --query-gpu=index,name,memory.total,memory.used,clocks.sm --format=csv > "$OUT/nvidia-smi.csv" 2>&1
echo "== build" | tee "$OUT/summary.txt"
t node scripts/build-native.mjs --force > "$OUT/build.log" 2>&1; brc=$?
echo "build rc=$brc in $(cat "$OUT/.t") s" | tee -a "$OUT/summary.txt"
tail -5 "$OUT/build.log"
if [[ $brc -ne 0 ]]; then
  grep -nE "error|Error" "$OUT/build.log" | head -30
  echo "build failed: again without the optional fast paths" | tee -a "$OUT/summary.txt"
  MMOC_CXX_FLAGS=-DMMOC_NO_FAST_PATHS node scripts/build-native.mjs --force > "$OUT/build2.log" 2>&1 || { tail -30 "$OUT/build2.log"; exit 1; }
fi
# rebuild of one touched TU (incremental compile time)
touch native/src/runtime.cpp
t node scripts/build-native.mjs > "$OUT/rebuild.log" 2>&1
echo "incremental rebuild (runtime.cpp) in $(cat "$OUT/.t") s" | tee -a "$OUT/summary.txt"

echo "== doctor" | tee -a "$OUT/summary.txt"
node bin/mmoc.js doctor --json > "$OUT/doctor-h200x2.json" 2> "$OUT/doctor.err"; echo "doctor rc=$?" | tee -a "$OUT/summary.txt"
node -e 'const d=require(require("path").resolve(process.argv[1])); console.log(JSON.stringify({torch:d.build&&d.build.torchVersion, cuda:d.build&&d.build.cudaVersion, nccl:d.build&&d.build.nccl, sdpa:d.build&&d.build.sdpa, fusedAdamw:d.build&&d.build.fusedAdamw, gpus:(d.devices?d.devices.cuda:[]).map(g=>g.name+" "+(g.totalBytes/2**30).toFixed(1)+"GiB"), selfTests:d.selfTests.map(s=>s.device+":"+(s.ok?"ok":"FAIL "+s.error))}))' "$OUT/doctor-h200x2.json" 2>/dev/null | tee -a "$OUT/summary.txt" || cat "$OUT/doctor.err"

echo "== tiny on CUDA" | tee -a "$OUT/summary.txt"
for p in tiny-cuda-1r tiny-cuda-2r-fp32 tiny-cuda-2r; do
  timeout 120 node bin/mmoc.js execute bench/gpu/plan-$p.json --json --trace "$OUT/trace-$p.json" > "$OUT/$p.json" 2> "$OUT/$p.err"
  echo "$p rc=$? losses=$(node -e 'try{const r=require(require("path").resolve(process.argv[1]));console.log(r.losses.map(x=>x.toFixed(5)).join(" "), "backend", r.backend)}catch(e){console.log("-")}' "$OUT/$p.json")" | tee -a "$OUT/summary.txt"
  tail -3 "$OUT/$p.err"
done

if want 7b "$@"; then
  echo "== LLaMA-2-7B, 2 GPUs, 1F1B, 8 x 1024 tokens" | tee -a "$OUT/summary.txt"
  timeout 200 node bin/mmoc.js execute bench/gpu/plan-llama2-7b-1f1b.json --steps 8 --json --trace "$OUT/measured-llama2-7b-1f1b.json" > "$OUT/llama2-7b.json" 2> "$OUT/llama2-7b.err"
  echo "mmoc rc=$?" | tee -a "$OUT/summary.txt"
  tail -4 "$OUT/llama2-7b.err"
  if want ablation "$@"; then
    # the same run without the fused paths (plain autograd weight grads, unfused RMSNorm)
    MMOC_NO_FAST_PATHS=1 timeout 200 node bin/mmoc.js execute bench/gpu/plan-llama2-7b-1f1b.json --steps 8 --json > "$OUT/llama2-7b-nofast.json" 2> "$OUT/llama2-7b-nofast.err"
    echo "mmoc (MMOC_NO_FAST_PATHS=1) rc=$?" | tee -a "$OUT/summary.txt"
    tail -2 "$OUT/llama2-7b-nofast.err"
  fi
fi
if want peer "$@" && [[ -d .gpu/peers ]]; then
  echo "== peer: torch pipelining 1F1B" | tee -a "$OUT/summary.txt"
  (cd .gpu/peers && OUT=$OUT T=240 ./run_peers.sh "run 2 pipe_peer.py --model llama2-7b --sched 1f1b --nmb 8") > "$OUT/peer.out" 2>&1
  tail -3 "$OUT/peer.out"
fi

node - "$OUT" <<'EOF' | tee -a "$OUT/summary.txt"
const fs = require('fs'), out = process.argv[2];
const rows = [['system', 'tokens/s', 'step s', 'peak GiB/GPU (reserved)', 'peak GiB/GPU (allocated)', 'MFU']];
for (const [name, file] of [['mmoc 1f1b', 'llama2-7b.json'], ['mmoc 1f1b, no fast paths', 'llama2-7b-nofast.json']]) {
  try {
    const m = JSON.parse(fs.readFileSync(out + '/' + file, 'utf8'));
    const g = (b) => (b / 2 ** 30).toFixed(2);
    rows.push([name, m.tokens_per_s.toFixed(0), m.step_s_median.toFixed(3), m.peak_bytes.map(g).join('/'), m.peak_allocated_bytes.map(g).join('/'), m.mfu === null ? '-' : (m.mfu * 100).toFixed(1) + '%']);
  } catch (e) { rows.push([name, 'failed or not run', '', '', '', '']); }
}
try {
  for (const l of fs.readFileSync(out + '/peers.jsonl', 'utf8').trim().split('\n')) {
    const p = JSON.parse(l);
    rows.push([p.peer, String(p.tokens_per_s), String(p.step_s), '-', String(p.peak_gib), '-']);
  }
} catch (e) { rows.push(['peer', 'not run', '', '', '', '']); }
for (const r of rows) console.log('| ' + r.join(' | ') + ' |');
EOF
