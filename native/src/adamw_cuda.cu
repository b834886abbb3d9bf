// See adamw_cuda.h. Grid: blockIdx.y picks the tensor, blockIdx.x/threadIdx.x stride over its elements.
#include "adamw_cuda.h"

#include <cuda_bf16.h>
#include <cuda_runtime.h>

namespace mmoc {
namespace {
struct Chunks {
  AdamWChunk c[kAdamWMaxChunks];
};

template <bool kBf16Grad>
__global__ void adamwKernel(Chunks cs, float lr, float beta1, float beta2, float eps, float stepSize, float bc2Sqrt,
                            float gscale) {
  const AdamWChunk ch = cs.c[blockIdx.y];
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const float decay = 1.0f - lr * ch.wd;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < ch.n; i += stride) {
    float g;
    if (kBf16Grad) g = __bfloat162float(static_cast<const __nv_bfloat16*>(ch.g)[i]);
    else g = static_cast<const float*>(ch.g)[i];
    g *= gscale;
    float p = ch.p[i] * decay;
    const float m = beta1 * ch.m[i] + (1.0f - beta1) * g;
    const float v = beta2 * ch.v[i] + (1.0f - beta2) * g * g;
    const float denom = sqrtf(v) / bc2Sqrt + eps;
    p -= stepSize * m / denom;
    ch.p[i] = p, ch.m[i] = m, ch.v[i] = v;
    if (ch.w) static_cast<__nv_bfloat16*>(ch.w)[i] = __float2bfloat16_rn(p);
  }
}
}  // namespace

const char* adamwCudaLaunch(const AdamWChunk* chunks, int count, bool gradIsBf16, float lr, float beta1, float beta2,
                            float eps, float bc1, float bc2, float gscale, void* stream) {
  if (count <= 0) return nullptr;
  if (count > kAdamWMaxChunks) return "adamwCudaLaunch: too many tensors in one launch";
  Chunks cs{};
  int64_t maxN = 0;
  for (int i = 0; i < count; ++i) cs.c[i] = chunks[i], maxN = maxN > chunks[i].n ? maxN : chunks[i].n;
  if (maxN == 0) return nullptr;
  const int threads = 256;
  int64_t blocks = (maxN + threads * 4 - 1) / (threads * 4);
  if (blocks > 4096) blocks = 4096;
  if (blocks < 1) blocks = 1;
  dim3 grid(static_cast<unsigned>(blocks), static_cast<unsigned>(count));
  auto s = static_cast<cudaStream_t>(stream);
  const float stepSize = lr / bc1, bc2Sqrt = sqrtf(bc2);
  if (gradIsBf16) adamwKernel<true><<<grid, threads, 0, s>>>(cs, lr, beta1, beta2, eps, stepSize, bc2Sqrt, gscale);
  else adamwKernel<false><<<grid, threads, 0, s>>>(cs, lr, beta1, beta2, eps, stepSize, bc2Sqrt, gscale);
  cudaError_t e = cudaGetLastError();
  return e == cudaSuccess ? nullptr : cudaGetErrorString(e);
}
}  // namespace mmoc
