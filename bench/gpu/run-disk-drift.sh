#!/usr/bin/env bash
# bench/gpu/disk-drift.ts on a GPU machine (one GPU is enough, ~3 min): the native build, the disk's
# block device, then rounds of calibrate's disk job and a one-GPU disk-tier plan.
#   source .gpu/env.sh && DEST=$OUT bash bench/gpu/run-disk-drift.sh
set -u
cd "$(dirname "$0")/../.."
DEST=${DEST:?DEST: the folder for the logs}
mkdir -p "$DEST"
source bench/gpu/diag-prologue.sh
{ df -hT /tmp; lsblk -o NAME,SIZE,TYPE,ROTA,SCHED,MOUNTPOINT 2>&1; nvidia-smi -L; } > "$DEST/disk.txt" 2>&1
build_addon "$DEST/build.log"
echo "built at ${SECONDS} s"
node --import tsx bench/gpu/disk-drift.ts --rounds ${ROUNDS:-5} ${GROUPS_ARG:-} --out /tmp/mmoc-disk-drift 2> "$DEST/disk-drift.err" | tee "$DEST/disk-drift.txt"
tail -3 "$DEST/disk-drift.err"
echo "done at ${SECONDS} s"
