#!/usr/bin/env bash
# One GPU call (nvidia-h200, ~5 min): calibrate's compute parts for both matrix models (its sustained
# probes inside), then bench/gpu/sustained-probe.ts's variants of the probe and the matrix's
# LLaMA-3.2-1B 1-GPU GPipe mbs-1 plan, each by `mmoc execute` in a process of its own, twice for
# the first ones; the traces packed into DEST/sp.tgz and the analysis printed.
#   source .gpu/env.sh && DEST=$OUT bash bench/gpu/run-sustained.sh
set -u
cd "$(dirname "$0")/../.."
DEST=${DEST:?DEST: the folder to leave the archive in}
W=${W:-/tmp/mmoc-sp}
mkdir -p "$W" "$DEST"
export PYTORCH_CUDA_ALLOC_CONF=${PYTORCH_CUDA_ALLOC_CONF:-expandable_segments:True} TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0}
S=$(date +%s); say() { echo "[$(( $(date +%s) - S )) s] $*" | tee -a "$W/log.txt"; }
nvidia-smi --query-gpu=index,name,clocks.sm,clocks.max.sm,power.limit --format=csv > "$W/nvidia-smi.csv" 2>&1
MMOC_FROM_SOURCE=1 node scripts/build-native.mjs --force > "$W/build.log" 2>&1 || { tail -20 "$W/build.log"; exit 1; }
say built
node bin/mmoc.js calibrate --quick --only gemm,attention,kernels,overheads --model llama2-7b,llama3.2-1b --seq 1024 --mbs 1,2 \
  --id sp -o "$W/profile.json" --json > "$W/calibrate.json" 2> "$W/calibrate.err"
say "calibrate rc=$?"
node --import tsx bench/gpu/sustained-probe.ts plans "$W"
node --import tsx bench/gpu/matrix.ts plans "$W/m" "$W/profile.json" > "$W/m.tsv" 2> "$W/m.err"
cp "$W/m/llama3.2-1b-1g-gpipe-mbs1x8.json" "$W/matrix-1b-1g-gpipe-mbs1x8.json" 2>/dev/null || cp "$(find "$W/m" -name 'llama3.2-1b-1g-gpipe-mbs1x8.json' | head -1)" "$W/matrix-1b-1g-gpipe-mbs1x8.json"
run() { timeout 90 node bin/mmoc.js execute "$W/$1.json" --steps 12 --json --trace "$W/$1-run$2.trace.json" > "$W/$1-run$2.out" 2> "$W/$1-run$2.err"; say "$1 run $2 rc=$?"; }
for v in 1b-mbs1-L12-nmb32 matrix-1b-1g-gpipe-mbs1x8 1b-mbs1-L12-nmb8 1b-mbs1-L16-nmb8 1b-mbs1-L4-nmb8 1b-mbs1-L16-nmb32 1b-mbs2-L7-nmb16 1b-mbs2-L16-nmb4 7b-mbs1-L6-nmb32 7b-mbs1-L6-nmb8; do run $v 1; done
for v in matrix-1b-1g-gpipe-mbs1x8 1b-mbs1-L12-nmb32 1b-mbs1-L16-nmb8; do run $v 2; done
node --import tsx bench/gpu/sustained-probe.ts analyze "$W" "$W/profile.json" | tee "$W/analysis.txt"
grep -o '"how": "mmoc calibrate: GEMM and attention entries[^"]*' "$W/profile.json" | head -1 | cut -c1-400
tar -czf "$DEST/sp.tgz" -C "$W" --exclude='m' .
cp "$W/analysis.txt" "$DEST/" 2>/dev/null
