#!/usr/bin/env bash
# One GPU call (one H200, ~4 minutes): calibrate's compute parts twice on the same machine, GEMMs
# timed from an idle device (MMOC_GEMM_IDLE=1, as before 5f5e900) and behind device work ahead (now),
# with the sustained-load probes each time: how far the tables move and how the fitted factors follow.
#   source .gpu/env.sh && DEST=$OUT bash bench/gpu/run-gemm-ab.sh
set -u
cd "$(dirname "$0")/../.."
DEST=${DEST:?DEST: the folder to leave the results in}
W=${W:-/tmp/mmoc-gemm-ab}
mkdir -p "$W" "$DEST"
MMOC_FROM_SOURCE=1 node scripts/build-native.mjs --force > "$W/build.log" 2>&1 || { tail -20 "$W/build.log"; exit 1; }
for mode in idle ahead; do
  [[ $mode == idle ]] && export MMOC_GEMM_IDLE=1 || unset MMOC_GEMM_IDLE
  node bin/mmoc.js calibrate --quick --only gemm,attention,kernels,overheads --model llama2-7b,llama3.2-1b --seq 1024 --mbs 1,2,4 --id gemm-$mode -o "$W/profile-$mode.json" --json > "$W/calibrate-$mode.json" 2> "$W/calibrate-$mode.err"
  echo "calibrate $mode rc=$?"
  node -e 'const p=require(process.argv[1]);console.log(process.argv[2], "sustained:", p.figures["compute.sustained"].how.match(/llama[^,(]*mbs \d [^,(]*/g).join("; "))' "$W/profile-$mode.json" $mode
done
node --import tsx bench/gpu/gemm-spread.ts "$W/profile-ahead.json" -- "$W/profile-idle.json" | tail -40 > "$W/gemm-ab.txt"
node -e '
const a=require(process.argv[1]), b=require(process.argv[2]);
const m=new Map(b.compute.gemm.bf16.map(x=>[x.m+"x"+x.n+"x"+x.k,x.us])); const r=a.compute.gemm.bf16.filter(x=>m.has(x.m+"x"+x.n+"x"+x.k)).map(x=>[x, x.us/m.get(x.m+"x"+x.n+"x"+x.k)]);
const big=r.filter(([x])=>2*x.m*x.n*x.k/x.us/1e6>300), small=r.filter(([x])=>x.us<100);
const mean=a=>a.reduce((s,[,q])=>s+q,0)/a.length;
console.log("ahead/idle table ratio: shapes above 300 TFLOPS", mean(big).toFixed(3), "("+big.length+"), under 100 us", mean(small).toFixed(3), "("+small.length+"); idle profile gemm_dispatch_us", b.compute.gemm_dispatch_us);' "$W/profile-ahead.json" "$W/profile-idle.json" | tee -a "$W/gemm-ab.txt"
cp "$W"/profile-*.json "$W/gemm-ab.txt" "$DEST/"
tar -czf "$DEST/calibrate.tgz" -C "$W" calibrate-idle.json calibrate-ahead.json calibrate-idle.err calibrate-ahead.err
