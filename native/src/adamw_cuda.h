// A multi-tensor AdamW for CUDA with no torch headers (compiled by nvcc only when CMake finds the CUDA
// language): fp32 master, m and v updated from bf16 (or fp32) gradients read directly, with the
// bf16 compute copy of the weights written in the same pass. One launch per layer; 28 bytes a
// parameter moved (4+4+4 read-write each for master/m/v, 2 gradient, 2 weight) against ~40 for
// gradient.to(fp32) + at::_fused_adamw_ + weight.copy_(master).
#pragma once
#include <cstdint>

namespace mmoc {
struct AdamWChunk {
  float* p;        // fp32 master
  float* m;
  float* v;
  const void* g;   // gradient, bf16 or fp32 (gradIsBf16)
  void* w;         // bf16 weight copy to write, or nullptr
  int64_t n;
  float wd;        // weight decay of this tensor (0 for norms)
  int vec = 0;     // set by the launcher: 16-byte aligned, 4-wide loads
};
constexpr int kAdamWMaxChunks = 8;
/** Launches the update of up to kAdamWMaxChunks tensors on `stream` (a cudaStream_t). Returns
 *  nullptr or a CUDA error string. */
const char* adamwCudaLaunch(const AdamWChunk* chunks, int count, bool gradIsBf16, float lr, float beta1, float beta2,
                            float eps, float bc1, float bc2, float gscale, void* stream);
}  // namespace mmoc
