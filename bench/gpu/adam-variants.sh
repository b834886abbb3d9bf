#!/usr/bin/env bash
# Builds bench/gpu/adam-variants.cpp (host AdamW variants against torch's fused CPU AdamW) with g++
# against this machine's libtorch, then runs it; the arguments pass through.
#   GPU machine, repo root:  source .gpu/env.sh && bash bench/gpu/adam-variants.sh --json "$OUT/adam-variants.json"
#   here (Debian libtorch-dev 1.13, no fused AdamW):  bash bench/gpu/adam-variants.sh --n 4194304 --threads 1,2 --reps 3
# Options: --n N (134217728), --reps R (7), --threads 8,16,64 (8, 16 and all), --pf-bytes B (2048), --json FILE.
# libtorch: the torch package's (python3 -c 'import torch'), with its C++ ABI flag; else Debian's
# (/usr/include/torch, /usr/lib/x86_64-linux-gnu). The binary goes to $ADAM_VARIANTS_BUILD (/tmp/mmoc-adam-variants).
set -euo pipefail
src=$(cd "$(dirname "$0")" && pwd)/adam-variants.cpp
build=${ADAM_VARIANTS_BUILD:-/tmp/mmoc-adam-variants}
bin=$build/adam-variants
mkdir -p "$build"

if torch_dir=$(python3 -c 'import os, torch; print(os.path.dirname(torch.__file__))' 2>/dev/null); then
  abi=$(python3 -c 'import torch; print(int(torch._C._GLIBCXX_USE_CXX11_ABI))')
  torch_flags=(-D_GLIBCXX_USE_CXX11_ABI="$abi" -isystem "$torch_dir/include" -isystem "$torch_dir/include/torch/csrc/api/include")
  torch_libs=(-L"$torch_dir/lib" -Wl,-rpath,"$torch_dir/lib")
elif [[ -f /usr/include/torch/csrc/api/include/torch/version.h ]]; then
  torch_dir=/usr
  torch_flags=(-isystem /usr/include/torch/csrc/api/include)
  torch_libs=()
else
  echo "adam-variants: no libtorch (neither python3's torch package nor Debian's libtorch-dev)" >&2
  exit 1
fi

# -march=x86-64-v2: the baseline; target_clones and the intrinsic kernels carry their own targets.
# -fopenmp: at::parallel_for is inline (OpenMP in this translation unit), as in the native addon.
# -fno-math-errno: sqrt vectorizes (the addon's flag).
if [[ ! -x $bin || $src -nt $bin || $0 -nt $bin || ! -f $build/torch-dir || $(cat "$build/torch-dir") != "$torch_dir" ]]; then
  echo "building $bin against libtorch in $torch_dir" >&2
  ${CXX:-g++} -std=c++17 -O3 -march=x86-64-v2 -fopenmp -fno-math-errno -Wall -Wextra \
    "${torch_flags[@]}" "$src" -o "$bin" "${torch_libs[@]}" -ltorch_cpu -lc10
  echo "$torch_dir" > "$build/torch-dir"
fi
exec "$bin" "$@"
