// See adamw_cuda.h. Grid: blockIdx.y picks the tensor, blockIdx.x/threadIdx.x stride over its elements.
#include "adamw_cuda.h"

#include <cuda_bf16.h>
#include <cuda_runtime.h>

namespace mmoc {
namespace {
struct Chunks {
  AdamWChunk c[kAdamWMaxChunks];
};

__device__ __forceinline__ float adamw1(float& p, float& m, float& v, float g, float decay, float beta1, float beta2,
                                        float eps, float stepSize, float bc2Sqrt) {
  p *= decay;
  m = beta1 * m + (1.0f - beta1) * g;
  v = beta2 * v + (1.0f - beta2) * g * g;
  p -= stepSize * m / (sqrtf(v) / bc2Sqrt + eps);
  return p;
}

template <bool kBf16Grad>
__global__ void adamwKernel(Chunks cs, float lr, float beta1, float beta2, float eps, float stepSize, float bc2Sqrt,
                            float gscale) {
  const AdamWChunk ch = cs.c[blockIdx.y];
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const float decay = 1.0f - lr * ch.wd;
  const int64_t t0 = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  // 4 elements a thread per iteration (16-byte loads of master/m/v, 8-byte of bf16 gradient/weight)
  const int64_t n4 = ch.vec ? ch.n / 4 : 0;
  for (int64_t i = t0; i < n4; i += stride) {
    float4 p = reinterpret_cast<float4*>(ch.p)[i];
    float4 m = reinterpret_cast<float4*>(ch.m)[i];
    float4 v = reinterpret_cast<float4*>(ch.v)[i];
    float g[4];
    if (kBf16Grad) {
      uint2 raw = reinterpret_cast<const uint2*>(ch.g)[i];
      const __nv_bfloat162* b = reinterpret_cast<const __nv_bfloat162*>(&raw);
      float2 a = __bfloat1622float2(b[0]), c = __bfloat1622float2(b[1]);
      g[0] = a.x, g[1] = a.y, g[2] = c.x, g[3] = c.y;
    } else {
      float4 f = reinterpret_cast<const float4*>(ch.g)[i];
      g[0] = f.x, g[1] = f.y, g[2] = f.z, g[3] = f.w;
    }
    adamw1(p.x, m.x, v.x, g[0] * gscale, decay, beta1, beta2, eps, stepSize, bc2Sqrt);
    adamw1(p.y, m.y, v.y, g[1] * gscale, decay, beta1, beta2, eps, stepSize, bc2Sqrt);
    adamw1(p.z, m.z, v.z, g[2] * gscale, decay, beta1, beta2, eps, stepSize, bc2Sqrt);
    adamw1(p.w, m.w, v.w, g[3] * gscale, decay, beta1, beta2, eps, stepSize, bc2Sqrt);
    reinterpret_cast<float4*>(ch.p)[i] = p;
    reinterpret_cast<float4*>(ch.m)[i] = m;
    reinterpret_cast<float4*>(ch.v)[i] = v;
    if (ch.w) {
      uint2 out;
      __nv_bfloat162* o = reinterpret_cast<__nv_bfloat162*>(&out);
      o[0] = __floats2bfloat162_rn(p.x, p.y);
      o[1] = __floats2bfloat162_rn(p.z, p.w);
      reinterpret_cast<uint2*>(ch.w)[i] = out;
    }
  }
  for (int64_t i = n4 * 4 + t0; i < ch.n; i += stride) {
    float g = kBf16Grad ? __bfloat162float(static_cast<const __nv_bfloat16*>(ch.g)[i]) : static_cast<const float*>(ch.g)[i];
    float p = ch.p[i], m = ch.m[i], v = ch.v[i];
    adamw1(p, m, v, g * gscale, decay, beta1, beta2, eps, stepSize, bc2Sqrt);
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
  for (int i = 0; i < count; ++i) {
    cs.c[i] = chunks[i], maxN = maxN > chunks[i].n ? maxN : chunks[i].n;
    auto al = [](const void* q, unsigned a) { return (reinterpret_cast<uintptr_t>(q) % a) == 0; };
    const unsigned ga = gradIsBf16 ? 8 : 16;
    cs.c[i].vec = al(chunks[i].p, 16) && al(chunks[i].m, 16) && al(chunks[i].v, 16) && al(chunks[i].g, ga) &&
                  (!chunks[i].w || al(chunks[i].w, 8));
  }
  if (maxN == 0) return nullptr;
  const int threads = 256;
  int64_t blocks = (maxN + threads * 16 - 1) / (threads * 16);
  if (blocks > 2048) blocks = 2048;
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
