#!/usr/bin/env bash
# The README's main job on the embedded default: the VRAM calculator on LLaMA-2-7B, then plan,
# train and compare the bundled tiny model on 2 CPU ranks (the same flow runs on GPUs with a GPU
# hardware profile and a real model).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p out
mmoc() { node bin/mmoc.js "$@"; }
step() { printf '\n\033[1m$ mmoc %s\033[0m\n' "$*" >&2; mmoc "$@"; }
step memory --model llama2-7b --stages 2 --schedule 1f1b --microbatches 8
step plan --model tiny --hardware cpu --gpus 2 --seq 64 --global-batch 8 --steps 30 \
  -o out/tiny-plan.json --trace out/tiny-predicted.json
step execute out/tiny-plan.json --steps 30 --trace out/tiny-measured.json
step compare out/tiny-plan.json out/tiny-measured.json --side-by-side out/tiny-side-by-side.json
printf '\nTraces in out/ open in https://ui.perfetto.dev or chrome://tracing.\n' >&2
