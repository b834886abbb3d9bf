#!/usr/bin/env bash
# The README's main job on the embedded default: the VRAM calculator on LLaMA-2-7B, then calibrate,
# plan, train and compare the bundled tiny model on 2 CPU ranks (the same flow runs on GPUs with a GPU
# hardware profile and a real model).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p out
mmoc() { node bin/mmoc.js "$@"; }
step() { printf '\n\033[1m$ mmoc %s\033[0m\n' "$*" >&2; mmoc "$@"; }
step memory --model llama2-7b --stages 2 --schedule 1f1b --microbatches 8
# measure this machine for 2 CPU ranks (GEMMs at the tiny model's shapes, kernels, CPU AdamW,
# per-instruction overheads from a short executor run): the profile the planner predicts with
threads=$(( $(nproc) / 2 )); (( threads > 0 )) || threads=1
step calibrate --quick --target cpu --cpu-ranks 2 --threads "$threads" --only gemm,attention,kernels,cpu,overheads \
  --model tiny --seq 64 --mbs 1,2,4,8 -o out/cpu-profile.json
step plan --model tiny --hardware out/cpu-profile.json --gpus 2 --seq 64 --global-batch 8 --steps 30 \
  -o out/tiny-plan.json --trace out/tiny-predicted.json
# real text for it: this repository's README and architecture notes, one token a byte
step data --model tiny --input README.md docs/ARCHITECTURE.md -o out/tiny-text.bin
step execute out/tiny-plan.json --steps 30 --threads "$threads" --data out/tiny-text.bin --trace out/tiny-measured.json
step compare out/tiny-plan.json out/tiny-measured.json --hardware out/cpu-profile.json --side-by-side out/tiny-side-by-side.json
printf '\nTraces in out/ open in https://ui.perfetto.dev or chrome://tracing.\n' >&2
