// Calibration benchmarks (`mmoc calibrate`): plain structs in and out, no torch types, so that the
// binding (binding.cpp) can call them. The torch side lives in calibrate.cpp; TypeScript
// (executor/calibrate.ts) chooses the tasks and turns the results into a hardware profile.
//
// Every timed benchmark warms up first, times each repetition on its own (CUDA events on a GPU,
// the steady clock on the CPU), feeds fresh random inputs (never zeros: several input sets in
// rotation) and reports the median (and the minimum) of the repetitions.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace mmoc {

struct CalibTask {
  /** gemm | attention | kernel | copy | p2p | adamw | memcpy | disk | slowdown | launch | context */
  std::string kind;
  /** "cpu" or "cuda:N" (for copy: the GPU of a single-GPU copy). */
  std::string device = "cpu";
  /** "fp32" | "bf16" | "fp16" */
  std::string dtype = "fp32";
  /** kernel: rmsnorm | rotary | swiglu | loss | add; copy: h2d | d2h | duplex; disk: the folder. */
  std::string name;
  /** gemm: m, n, k; attention: batch, heads, kv_heads, seq, head_dim; kernel: tokens, width. */
  std::vector<int64_t> dims;
  /** copy: the GPUs copying at once (one thread each); p2p: source and destination. */
  std::vector<int> gpus;
  int64_t bytes = 0;
  /** adamw / memcpy: threads; 0 leaves torch's default. */
  int threads = 0;
  bool pinned = true;
  int warmup = 2, iters = 7;
  /** Stop repeating after this long (at least 3 repetitions are kept). */
  double maxSec = 1.0;
};

struct CalibResult {
  /** Per repetition: median and minimum in microseconds. */
  double medianUs = 0, minUs = 0;
  /** Kind-specific figures (see calibrate.cpp, runCalib). */
  double value = 0, value2 = 0;
  int samples = 0;
  std::string note;
};

/** Runs one benchmark. Throws mmoc::Error (api.h) with a message on failure. */
CalibResult runCalib(const CalibTask& t);

}  // namespace mmoc
