#!/usr/bin/env bash
# Issue 5, v3 (early update + fused-kernel trims): build, a CUDA check that the early update equals
# the update at the instruction (tiny model, fp32, 2 GPUs), then LLaMA-2-7B 1F1B and the torch
# pipelining 1F1B peer in the same command. Logs to $OUT; a short table ends the output.
#   (GPU machine, repo root) source .gpu/env.sh && bash bench/gpu/run-v3.sh
set -u
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/mmoc-gpu}
mkdir -p "$OUT"
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0}
export PYTORCH_CUDA_ALLOC_CONF=${PYTORCH_CUDA_ALLOC_CONF:-expandable_segments:True}
export MMOC_FROM_SOURCE=1
nvidia-smi --query-gpu=index,name,memory.total,memory.used,clocks.sm --format=csv > "$OUT/nvidia-smi.csv" 2>&1
echo "== build" | tee "$OUT/summary.txt"
s=$(date +%s); node scripts/build-native.mjs --force > "$OUT/build.log" 2>&1; brc=$?
echo "build rc=$brc in $(( $(date +%s) - s )) s" | tee -a "$OUT/summary.txt"
if [[ $brc -ne 0 ]]; then
  grep -nE "error" "$OUT/build.log" | head -30
  echo "build failed: again without the CUDA kernels" | tee -a "$OUT/summary.txt"
  MMOC_NO_CUDA_KERNELS=1 node scripts/build-native.mjs --force > "$OUT/build2.log" 2>&1 || { grep -nE "error" "$OUT/build2.log" | head -30; exit 1; }
fi
grep -E "mmoc:" "$OUT/build.log" "$OUT/build2.log" 2>/dev/null | tee -a "$OUT/summary.txt"
if [[ " $* " != *" --no-tiny "* ]]; then
echo "== tiny fp32 on 2 GPUs: early update vs at the instruction" | tee -a "$OUT/summary.txt"
# early: early update + the project's CUDA AdamW; late: update at the instruction + torch's fused AdamW
for v in early late; do  # (--no-tiny skips this)
  if [[ $v == late ]]; then export MMOC_NO_EARLY_UPDATE=1 MMOC_NO_CUDA_ADAMW=1; fi
  timeout 120 node bin/mmoc.js execute bench/gpu/plan-tiny-cuda-2r-fp32.json --json > "$OUT/tiny-$v.json" 2> "$OUT/tiny-$v.err"
  echo "$v rc=$? losses=$(node -e 'try{const r=require(require("path").resolve(process.argv[1]));console.log(r.losses.map(x=>x.toPrecision(9)).join(" "))}catch(e){console.log("-")}' "$OUT/tiny-$v.json")" | tee -a "$OUT/summary.txt"
  tail -2 "$OUT/tiny-$v.err"
done
unset MMOC_NO_EARLY_UPDATE MMOC_NO_CUDA_ADAMW
fi
# variants: default (early update on the first stage + CUDA AdamW), noearly (CUDA AdamW at the
# instructions), torchadam (neither: torch's fused AdamW at the instructions, the v2 executor)
for v in ${VARIANTS:-default noearly torchadam}; do
  echo "== LLaMA-2-7B, 2 GPUs, 1F1B, 8 x 1024 tokens: $v" | tee -a "$OUT/summary.txt"
  case $v in
    noearly) e="MMOC_NO_EARLY_UPDATE=1" ;;
    torchadam) e="MMOC_NO_EARLY_UPDATE=1 MMOC_NO_CUDA_ADAMW=1" ;;
    earlyall) e="MMOC_EARLY_UPDATE_ALL=1" ;;
    *) e="" ;;
  esac
  env $e timeout 200 node bin/mmoc.js execute bench/gpu/plan-llama2-7b-1f1b.json --steps 8 --json --trace "$OUT/measured-llama2-7b-1f1b-$v.json" > "$OUT/llama2-7b-$v.json" 2> "$OUT/llama2-7b-$v.err"
  echo "mmoc $v rc=$?" | tee -a "$OUT/summary.txt"
  tail -2 "$OUT/llama2-7b-$v.err"
done
if [[ -d .gpu/peers ]]; then
  echo "== peer: torch pipelining 1F1B" | tee -a "$OUT/summary.txt"
  (cd .gpu/peers && OUT=$OUT T=200 ./run_peers.sh "run 2 pipe_peer.py --model llama2-7b --sched 1f1b --nmb 8") > "$OUT/peer.out" 2>&1
  tail -3 "$OUT/peer.out"
fi
node - "$OUT" <<'JS' | tee -a "$OUT/summary.txt"
const fs = require('fs'), out = process.argv[2];
const rows = [['system', 'tokens/s', 'step s', 'peak GiB/GPU (reserved)', 'peak GiB/GPU (allocated)', 'MFU']];
for (const f of fs.readdirSync(out).filter((f) => /^llama2-7b-.*\.json$/.test(f))) {
  const name = 'mmoc 1f1b ' + f.slice(10, -5);
  try {
    const m = JSON.parse(fs.readFileSync(out + '/' + f, 'utf8'));
    const g = (b) => (b / 2 ** 30).toFixed(2);
    rows.push([name, m.tokens_per_s.toFixed(0), m.step_s_median.toFixed(3), m.peak_bytes.map(g).join('/'), m.peak_allocated_bytes.map(g).join('/'), m.mfu === null ? '-' : (m.mfu * 100).toFixed(1) + '%']);
  } catch (e) { rows.push([name, 'failed', '', '', '', '']); }
}
try {
  for (const l of fs.readFileSync(out + '/peers.jsonl', 'utf8').trim().split('\n')) {
    const p = JSON.parse(l);
    rows.push([p.peer, String(p.tokens_per_s), String(p.step_s), '-', String(p.peak_gib), '-']);
  }
} catch (e) { rows.push(['peer', 'not run', '', '', '', '']); }
for (const r of rows) console.log('| ' + r.join(' | ') + ' |');
JS
