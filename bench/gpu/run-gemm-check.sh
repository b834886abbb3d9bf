#!/usr/bin/env bash
# One GPU call (one H200, ~3 minutes): calibrate's GEMM tables for the matrix models, three times
# back to back, each product timed behind device work ahead (5f5e900); how much each entry moves
# between the three (gemm-spread.txt) against the spread of the same entries in two matrix runs'
# tables timed from an idle device (bench/gpu/matrix-2026-11-23-h200x2, -23b-).
#   source .gpu/env.sh && DEST=$OUT bash bench/gpu/run-gemm-check.sh
set -u
cd "$(dirname "$0")/../.."
DEST=${DEST:?DEST: the folder to leave the results in}
W=${W:-/tmp/mmoc-gemm}
mkdir -p "$W" "$DEST"
MMOC_FROM_SOURCE=1 node scripts/build-native.mjs --force > "$W/build.log" 2>&1 || { tail -20 "$W/build.log"; exit 1; }
for i in 1 2 3; do
  node bin/mmoc.js calibrate --quick --only gemm --model llama2-7b,llama3.2-1b --seq 1024 --mbs 1,2,4 --id gemm-$i -o "$W/profile-$i.json" --json > "$W/calibrate-$i.json" 2> "$W/calibrate-$i.err"
  echo "calibrate $i rc=$?"
done
node --import tsx bench/gpu/gemm-spread.ts "$W/profile-1.json" "$W/profile-2.json" "$W/profile-3.json" -- bench/gpu/matrix-2026-11-23-h200x2/profile.json bench/gpu/matrix-2026-11-23b-h200x2/profile.json | tee "$W/gemm-spread.txt"
cp "$W"/profile-*.json "$W/gemm-spread.txt" "$DEST/"
