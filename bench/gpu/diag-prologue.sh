# Sourced by the one-off GPU diagnostics (run-affinity.sh, run-disk-drift.sh, run-host-update-1g.sh,
# run-copy-slowdown.sh) from the project root: the allocator and architecture settings matrix.sh runs
# its plans with, and build_addon <log>: the addon from source (on failure its log's tail, then exit).
export PYTORCH_CUDA_ALLOC_CONF=${PYTORCH_CUDA_ALLOC_CONF:-expandable_segments:True}
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0}
build_addon() { MMOC_FROM_SOURCE=1 node scripts/build-native.mjs --force > "$1" 2>&1 || { tail -20 "$1"; exit 1; }; }
