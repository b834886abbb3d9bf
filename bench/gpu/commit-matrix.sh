#!/usr/bin/env bash
# After a GPU run of bench/gpu/matrix.sh: one step that commits its result.
#   bash bench/gpu/commit-matrix.sh <OUT folder of the run> [machine tag, default h200x2]
# Copies <OUT>/bench-result.json (profile and plans embedded) to
# bench/results/<date>-matrix-<tag>.json (the file test/prediction-error.test.ts bounds), and the
# run's log, profile, calibrate output, plans and run summaries to bench/gpu/matrix-<date>-<tag>/
# (traces too, when under 2 MB each, gzip-compressed); evaluates the result and prints the README table row of the
# latest prediction errors. Then: paste the row into README.md, run
# `node --import tsx --test test/prediction-error.test.ts`, and commit.
set -eu
cd "$(dirname "$0")/../.."
SRC=${1:?usage: commit-matrix.sh <matrix OUT folder> [machine tag]}
TAG=${2:-h200x2}
[[ -f $SRC/bench-result.json ]] || { echo "no $SRC/bench-result.json" >&2; exit 1; }
DATE=$(node -e 'console.log(require(process.argv[1]).date)' "$(realpath "$SRC/bench-result.json")")
RES=bench/results/$DATE-matrix-$TAG.json
DIR=bench/gpu/matrix-$DATE-$TAG
# a second run of the day (its result or its folder already there): the next free suffix for both
[[ -e $RES || -e $DIR ]] && { n=2; while [[ -e bench/results/$DATE-matrix-$TAG-$n.json || -e bench/gpu/matrix-$DATE-$TAG-$n ]]; do n=$((n+1)); done; RES=bench/results/$DATE-matrix-$TAG-$n.json; DIR=bench/gpu/matrix-$DATE-$TAG-$n; }
cp "$SRC/bench-result.json" "$RES"
mkdir -p "$DIR/runs" "$DIR/plans"
for f in summary.txt profile.json calibrate.json calibrate.err doctor.json nvidia-smi.csv peers.jsonl bench-result.json; do [[ -f $SRC/$f ]] && cp "$SRC/$f" "$DIR/"; done
cp "$SRC"/plans/*.json "$DIR/plans/" 2>/dev/null || true
for f in "$SRC"/runs/*; do [[ $(stat -c %s "$f") -le 2000000 ]] && cp "$f" "$DIR/runs/"; done
# traces gzip-compressed (a tenth of the size; `mmoc compare` and the bench scripts read .gz)
for f in "$DIR"/runs/*.trace.json; do [[ -f $f ]] && gzip -9n "$f"; done
echo "wrote $RES and $DIR/"
node --import tsx bench/gpu/reevaluate.ts "$DIR" "$DIR/profile.json" > "$DIR/reevaluate.txt" 2>&1 || true
node --import tsx bench/gpu/matrix.ts evaluate "$RES" | tee "$DIR/evaluate.txt"
node --import tsx bench/gpu/matrix.ts row "$RES" "$(git rev-parse --short HEAD)"
