#!/usr/bin/env bash
# Session 6's GPU call on an nvidia-h200-x2 (under 600 s): the bench matrix (bench/gpu/matrix.sh)
# into a work folder, then everything it wrote packed into one archive under DEST (the device
# tool's $OUT returns at most 8 files: a matrix run writes ~100), with its summary, result and
# profile beside it for a first look. The archive is made even when the matrix runs out of time.
#   source .gpu/env.sh && MMOC_COMMIT=<git rev-parse --short HEAD, here> DEST=$OUT bash bench/gpu/run-s6.sh
# (the device machine's .git can be older than the working tree it runs: name the commit)
# Here: mkdir -p R && tar -xzf <files_at>/run.tgz -C R && bash bench/gpu/commit-matrix.sh R
set -u
cd "$(dirname "$0")/../.."
DEST=${DEST:?DEST: the folder to leave the archive in}
W=${W:-/tmp/mmoc-s6}
mkdir -p "$W" "$DEST"
# the host's transparent huge pages mode (hostStateBuffer advises 2 MiB pages: honoured under "madvise" and "always")
cat /sys/kernel/mm/transparent_hugepage/enabled > "$W/thp.txt" 2>&1
OUT=$W timeout -k 5 ${MMOC_RUN_LIMIT_S:-575} bash bench/gpu/matrix.sh > "$W/matrix.log" 2>&1
echo "matrix rc=$?" >> "$W/matrix.log"
# with the time the matrix left (the call's limit is 600 s): the host AdamW on 4 KiB against 2 MiB
# pages (bench/gpu/adam-pages.cpp, ~15 s), into adam-pages.txt
if (( SECONDS < 560 )); then
  timeout $(( 585 - SECONDS )) bash -c 'g++ -std=c++17 -O3 -march=native -fopenmp -fno-math-errno bench/gpu/adam-pages.cpp -o /tmp/adam-pages && /tmp/adam-pages 157286400 $(( $(nproc) / 2 - 1 )) 2 9' > "$W/adam-pages.txt" 2>&1
fi
tar -czf "$DEST/run.tgz" -C "$W" .
for f in summary.txt bench-result.json profile.json; do [[ -f $W/$f ]] && cp "$W/$f" "$DEST/"; done
tail -30 "$W/summary.txt"
