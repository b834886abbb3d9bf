// The instruction interpreter: runs one rank's program (planner/program.ts) step after step, with
// c10d point-to-point transfers between pipeline stages, global gradient-norm clipping, AdamW,
// the learning-rate schedule, per-instruction timing and progress.
#include "model.h"
#include "disk_io.h"
#if defined(MMOC_CUDA_KERNELS) && MMOC_CUDA_KERNELS && MMOC_HAS_CUDA
#include "adamw_cuda.h"
#define MMOC_HAS_CUDA_ADAMW 1
#else
#define MMOC_HAS_CUDA_ADAMW 0
#endif

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include <condition_variable>
#include <deque>
#include <mutex>
#include <optional>

namespace mmoc {
namespace {

using Clock = std::chrono::steady_clock;

// ---------------------------------------------------------------------------------------------
// CPU AdamW: the update of the host-resident (offloaded) parameters, run on the rank's host worker.
//
// Per element: fp32 master weight p and moments m, v; gradient g (fp32 or bf16) times gs, the
// gradient-clipping coefficient; bias corrections bc1 = 1 - b1^t, bc2 = 1 - b2^t:
//   p = p * (1 - lr*wd)                         decoupled weight decay (wd = 0 for 1-d parameters)
//   m = b1*m + (1-b1)*g
//   v = b2*v + (1-b2)*g^2
//   p = p + (-lr/bc1) * m / (sqrt(v/bc2) + eps)
//   w = p in the compute dtype, when w is given (bf16: round to nearest even, NaN -> 0x7fc0: fromF)
// DRAM traffic: 28 bytes a parameter (p, m, v read and written: 24 B; then g 4 B, or g 2 B + w 2 B)
// for about 15 flops: memory bound on any CPU.
//
// Two implementations of one thread's range of elements, chosen once at run time (adamKernel):
//  1. adamTile: the reference, portable C++ (`omp simd`, vectorized by the compiler), compiled for
//     the baseline x86-64, for AVX2+FMA and for AVX-512 (adamRef, adamRefAvx2, adamRefAvx512). Used
//     on CPUs without AVX2+FMA, off x86-64, for dtype pairs without a kernel below (e.g. fp16
//     gradients), and everywhere when MMOC_CPU_ADAM=ref is set in the environment (read once: to
//     compare the two).
//  2. adamAvx512 / adamAvx2: explicit intrinsics, 2x unrolled (32 elements an iteration with
//     AVX-512, 16 with AVX2), with three changes measured by bench/gpu/adam-variants.cpp (32-core
//     Xeon, bf16 gradients in and bf16 weights out: 6.73 against 5.82 G params/s at 32 threads,
//     5.00 against 4.17 at 16):
//     - sqrt(v) * (1/sqrt(bc2)) instead of sqrt(v/bc2): one divide an element fewer; the
//       denominator differs by an ulp or two (relative 1e-7), the weights as much relative to the
//       update;
//     - software prefetch of the input streams (p, m, v, g) kPrefetchBytes ahead;
//     - streaming (non-temporal) stores of the bf16 weights: no read for ownership of w (the
//       upload reads it next, not this core); _mm_sfence at the end of each thread's range.
//     The ragged ends of a range (the head up to a 64-byte aligned w for the streaming stores, the
//     tail) go through the same vector code on a zero-padded stack copy: every element gets the
//     same arithmetic whatever the alignment of the buffers, and w = fromF(p) bit for bit.

inline float toF(float x) { return x; }
// bf16 <-> fp32 by bit operations (vectorizable; c10::BFloat16's conversions are not)
inline float toF(c10::BFloat16 x) {
  const uint32_t u = static_cast<uint32_t>(x.x) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline c10::BFloat16 fromF(float f, c10::BFloat16*) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  const uint32_t r = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;  // round to nearest even
  c10::BFloat16 b;
  b.x = static_cast<uint16_t>(f != f ? 0x7fc0u : r);
  return b;
}
inline float fromF(float f, float*) { return f; }
inline float toF(c10::Half x) { return static_cast<float>(x); }

/** One tile of the CPU AdamW, the reference: fp32 master p, m, v; the gradient in its own dtype G
 *  (bf16 converted inside the loop, no fp32 gradient pass); when w is given the compute-precision
 *  weights are written in the same pass. Same arithmetic as the on-device plain path (sqrt(v / bc2),
 *  addcdiv by -lr / bc1). Compiled with -fno-math-errno so that sqrt vectorizes. */
template <class G, class W>
__attribute__((always_inline)) inline void adamTile(float* __restrict p, float* __restrict m, float* __restrict v,
                                                    const G* __restrict g, W* __restrict w, int64_t a, int64_t b, float b1,
                                                    float b2, float eps, float bc2, float wd, float decay, float stepSize,
                                                    float gs) {
  const float c1 = 1.0f - b1, c2 = 1.0f - b2;
  const float dec = wd != 0.0f ? decay : 1.0f;
#pragma omp simd
  for (int64_t i = a; i < b; ++i) {
    const float gi = toF(g[i]) * gs;
    float pi = p[i] * dec;
    const float mi = m[i] * b1 + gi * c1;
    const float vi = v[i] * b2 + gi * gi * c2;
    pi += stepSize * (mi / (std::sqrt(vi / bc2) + eps));
    p[i] = pi, m[i] = mi, v[i] = vi;
    if (w) w[i] = fromF(pi, w);
  }
}

/** The constants of one update (cpuAdamW computes them once a call). */
struct AdamCoef {
  float b1, b2, eps, bc2, wd;
  float decay;       // 1 - lr*wd
  float stepSize;    // -lr / bc1
  float gs;          // gradient scale (clipping coefficient)
  float invSqrtBc2;  // 1 / sqrt(bc2), for the SIMD kernels' sqrt(v) * invSqrtBc2
};

/** Updates elements [a, b) of one contiguous range (one thread's share); w may be null. */
template <class G, class W>
using AdamKernel = void (*)(float* p, float* m, float* v, const G* g, W* w, int64_t a, int64_t b, const AdamCoef& c);

template <class G, class W>
__attribute__((always_inline)) inline void adamRefBody(float* p, float* m, float* v, const G* g, W* w, int64_t a,
                                                       int64_t b, const AdamCoef& c) {
  // w == nullptr as a constant in its own instance: no per-element test
  if (w) adamTile(p, m, v, g, w, a, b, c.b1, c.b2, c.eps, c.bc2, c.wd, c.decay, c.stepSize, c.gs);
  else adamTile(p, m, v, g, static_cast<W*>(nullptr), a, b, c.b1, c.b2, c.eps, c.bc2, c.wd, c.decay, c.stepSize, c.gs);
}
/** The reference compiled for the baseline ISA (x86-64: SSE2). */
template <class G, class W>
void adamRef(float* p, float* m, float* v, const G* g, W* w, int64_t a, int64_t b, const AdamCoef& c) {
  adamRefBody(p, m, v, g, w, a, b, c);
}

#if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__)
#define MMOC_X86_SIMD 1
// Whole-function ISA targets (this file is compiled for the baseline x86-64), chosen at run time
// with __builtin_cpu_supports. In target("avx2,fma") the comma joins the features of one target;
// in target_clones it would separate clones (an "avx2" clone without FMA, an "fma" one without AVX2).
#define MMOC_TARGET_AVX512 __attribute__((target("avx512f")))
#define MMOC_TARGET_AVX2 __attribute__((target("avx2,fma")))
#include <immintrin.h>
// GCC 12's AVX-512 headers fill their "undefined" operands from themselves, which
// -W(maybe-)uninitialized reports once inlined into the kernels below (GCC bug 105593)
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

/** The reference compiled for AVX2+FMA and for AVX-512 (the vectorizer picks the width). */
template <class G, class W>
MMOC_TARGET_AVX2 void adamRefAvx2(float* p, float* m, float* v, const G* g, W* w, int64_t a, int64_t b,
                                  const AdamCoef& c) {
  adamRefBody(p, m, v, g, w, a, b, c);
}
template <class G, class W>
MMOC_TARGET_AVX512 void adamRefAvx512(float* p, float* m, float* v, const G* g, W* w, int64_t a, int64_t b,
                                      const AdamCoef& c) {
  adamRefBody(p, m, v, g, w, a, b, c);
}

constexpr int64_t kPrefetchBytes = 2048;             // prefetch distance in the fp32 streams (bench: --pf-bytes)
constexpr int64_t kPrefetchElems = kPrefetchBytes / 4;

/** Prefetches elements [i, i + count) of p, m, v and g into L1, one prefetch a 64-byte line. */
template <class G>
inline void adamPrefetch(const float* p, const float* m, const float* v, const G* g, int64_t i, int64_t count) {
  for (int64_t k = 0; k < count; k += 16) {
    _mm_prefetch(reinterpret_cast<const char*>(p + i + k), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(m + i + k), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(v + i + k), _MM_HINT_T0);
  }
  for (int64_t k = 0; k < count; k += 64 / static_cast<int64_t>(sizeof(G)))
    _mm_prefetch(reinterpret_cast<const char*>(g + i + k), _MM_HINT_T0);
}

/** The first i in [a, b] with w + i `align`-byte aligned, or b (where the streaming stores can start). */
template <class W>
int64_t alignedFrom(const W* w, int64_t a, int64_t b, int64_t align) {
  const int64_t mis = static_cast<int64_t>(reinterpret_cast<uintptr_t>(w + a) % static_cast<uintptr_t>(align));
  return std::min(b, a + (mis ? (align - mis) / static_cast<int64_t>(sizeof(W)) : 0));
}

// ---- AVX-512: 16 floats a vector, 32 elements an iteration
namespace avx512 {

/** AdamCoef broadcast to 16 lanes. */
struct Coef {
  __m512 b1, c1, b2, c2, eps, k, dec, step, gs;
};
MMOC_TARGET_AVX512 inline Coef broadcast(const AdamCoef& c) {
  return {_mm512_set1_ps(c.b1),
          _mm512_set1_ps(1.0f - c.b1),
          _mm512_set1_ps(c.b2),
          _mm512_set1_ps(1.0f - c.b2),
          _mm512_set1_ps(c.eps),
          _mm512_set1_ps(c.invSqrtBc2),
          _mm512_set1_ps(c.wd != 0.0f ? c.decay : 1.0f),
          _mm512_set1_ps(c.stepSize),
          _mm512_set1_ps(c.gs)};
}
MMOC_TARGET_AVX512 inline __m512 load(const float* x) { return _mm512_loadu_ps(x); }
/** 16 bf16 -> 16 floats: the bf16 bits are the high half of the fp32 bits (as toF). */
MMOC_TARGET_AVX512 inline __m512 load(const c10::BFloat16* x) {
  const __m512i u = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x)));
  return _mm512_castsi512_ps(_mm512_slli_epi32(u, 16));
}
/** 16 floats -> 16 bf16, round to nearest even, NaN -> 0x7fc0 (as fromF). */
MMOC_TARGET_AVX512 inline __m256i toBf16(__m512 x) {
  const __m512i u = _mm512_castps_si512(x);
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
  __m512i r = _mm512_srli_epi32(_mm512_add_epi32(_mm512_add_epi32(u, _mm512_set1_epi32(0x7fff)), lsb), 16);
  r = _mm512_mask_blend_epi32(_mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q), r, _mm512_set1_epi32(0x7fc0));
  return _mm512_cvtepi32_epi16(r);  // truncates each lane to its low 16 bits
}

/** Updates p, m, v at [i, i + 16) and returns the new p. */
template <class G>
MMOC_TARGET_AVX512 inline __m512 step16(float* p, float* m, float* v, const G* g, int64_t i, const Coef& c) {
  const __m512 gi = _mm512_mul_ps(load(g + i), c.gs);
  // m = b1*m + (1-b1)*g;  v = b2*v + (1-b2)*g^2
  const __m512 mi = _mm512_fmadd_ps(_mm512_loadu_ps(m + i), c.b1, _mm512_mul_ps(gi, c.c1));
  const __m512 vi = _mm512_fmadd_ps(_mm512_loadu_ps(v + i), c.b2, _mm512_mul_ps(_mm512_mul_ps(gi, gi), c.c2));
  // p = p*decay + (-lr/bc1) * m / (sqrt(v) * (1/sqrt(bc2)) + eps)
  const __m512 den = _mm512_add_ps(_mm512_mul_ps(_mm512_sqrt_ps(vi), c.k), c.eps);
  const __m512 pi = _mm512_fmadd_ps(c.step, _mm512_div_ps(mi, den), _mm512_mul_ps(_mm512_loadu_ps(p + i), c.dec));
  _mm512_storeu_ps(p + i, pi);
  _mm512_storeu_ps(m + i, mi);
  _mm512_storeu_ps(v + i, vi);
  return pi;
}
/** Writes the 32 new weights p0, p1 to w + i (kStream: non-temporal, w + i 64-byte aligned). */
template <bool kStream>
MMOC_TARGET_AVX512 inline void storeW(float* w, int64_t i, __m512 p0, __m512 p1) {
  _mm512_storeu_ps(w + i, p0);
  _mm512_storeu_ps(w + i + 16, p1);
}
template <bool kStream>
MMOC_TARGET_AVX512 inline void storeW(c10::BFloat16* w, int64_t i, __m512 p0, __m512 p1) {
  const __m512i x = _mm512_inserti64x4(_mm512_castsi256_si512(toBf16(p0)), toBf16(p1), 1);
  if constexpr (kStream) _mm512_stream_si512(reinterpret_cast<__m512i*>(w + i), x);
  else _mm512_storeu_si512(w + i, x);
}
/** Elements [i, i + 32). */
template <class G, class W, bool kW, bool kStream>
MMOC_TARGET_AVX512 inline void block(float* p, float* m, float* v, const G* g, W* w, int64_t i, const Coef& c) {
  const __m512 p0 = step16(p, m, v, g, i, c), p1 = step16(p, m, v, g, i + 16, c);
  if constexpr (kW) storeW<kStream>(w, i, p0, p1);
}
/** Elements [i, i + n), n < 32, through block on a zero-padded stack copy (the same arithmetic). */
template <class G, class W, bool kW>
MMOC_TARGET_AVX512 void ragged(float* p, float* m, float* v, const G* g, W* w, int64_t i, int64_t n, const Coef& c) {
  if (n <= 0) return;
  float ps[32] = {}, ms[32] = {}, vs[32] = {};
  G gs[32] = {};
  W ws[32] = {};
  std::copy_n(p + i, n, ps), std::copy_n(m + i, n, ms), std::copy_n(v + i, n, vs), std::copy_n(g + i, n, gs);
  block<G, W, kW, false>(ps, ms, vs, gs, ws, 0, c);
  std::copy_n(ps, n, p + i), std::copy_n(ms, n, m + i), std::copy_n(vs, n, v + i);
  if constexpr (kW) std::copy_n(ws, n, w + i);
}
template <class G, class W, bool kW>
MMOC_TARGET_AVX512 void range(float* p, float* m, float* v, const G* g, W* w, int64_t a, int64_t b,
                              const AdamCoef& cf) {
  constexpr int64_t kBlock = 32;
  constexpr bool kStream = kW && std::is_same<W, c10::BFloat16>::value;
  const Coef c = broadcast(cf);
  int64_t i = a;
  if constexpr (kStream) {  // head up to the first 64-byte aligned w + i
    i = alignedFrom(w, a, b, 64);
    ragged<G, W, kW>(p, m, v, g, w, a, i - a, c);
  }
  for (; i + kBlock <= b; i += kBlock) {
    if (i + kPrefetchElems + kBlock <= b) adamPrefetch(p, m, v, g, i + kPrefetchElems, kBlock);
    block<G, W, kW, kStream>(p, m, v, g, w, i, c);
  }
  ragged<G, W, kW>(p, m, v, g, w, i, b - i, c);
  if constexpr (kStream) _mm_sfence();  // the streaming stores ordered before the range is reported done
}

}  // namespace avx512

// ---- AVX2 + FMA: 8 floats a vector, 16 elements an iteration (the same code, narrower)
namespace avx2 {

struct Coef {
  __m256 b1, c1, b2, c2, eps, k, dec, step, gs;
};
MMOC_TARGET_AVX2 inline Coef broadcast(const AdamCoef& c) {
  return {_mm256_set1_ps(c.b1),
          _mm256_set1_ps(1.0f - c.b1),
          _mm256_set1_ps(c.b2),
          _mm256_set1_ps(1.0f - c.b2),
          _mm256_set1_ps(c.eps),
          _mm256_set1_ps(c.invSqrtBc2),
          _mm256_set1_ps(c.wd != 0.0f ? c.decay : 1.0f),
          _mm256_set1_ps(c.stepSize),
          _mm256_set1_ps(c.gs)};
}
MMOC_TARGET_AVX2 inline __m256 load(const float* x) { return _mm256_loadu_ps(x); }
MMOC_TARGET_AVX2 inline __m256 load(const c10::BFloat16* x) {
  const __m256i u = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x)));
  return _mm256_castsi256_ps(_mm256_slli_epi32(u, 16));
}
/** 8 floats -> bf16 bits in the low half of each 32-bit lane, round to nearest even, NaN -> 0x7fc0. */
MMOC_TARGET_AVX2 inline __m256i roundBf16(__m256 x) {
  const __m256i u = _mm256_castps_si256(x);
  const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
  const __m256i r = _mm256_srli_epi32(_mm256_add_epi32(_mm256_add_epi32(u, _mm256_set1_epi32(0x7fff)), lsb), 16);
  return _mm256_blendv_epi8(r, _mm256_set1_epi32(0x7fc0), _mm256_castps_si256(_mm256_cmp_ps(x, x, _CMP_UNORD_Q)));
}
/** 16 floats -> 16 bf16 in order (values <= 0xffff: packus does not saturate; it interleaves the
 *  128-bit lanes, the permute puts them back). */
MMOC_TARGET_AVX2 inline __m256i toBf16(__m256 lo, __m256 hi) {
  return _mm256_permute4x64_epi64(_mm256_packus_epi32(roundBf16(lo), roundBf16(hi)), 0xD8);
}

/** Updates p, m, v at [i, i + 8) and returns the new p. */
template <class G>
MMOC_TARGET_AVX2 inline __m256 step8(float* p, float* m, float* v, const G* g, int64_t i, const Coef& c) {
  const __m256 gi = _mm256_mul_ps(load(g + i), c.gs);
  // m = b1*m + (1-b1)*g;  v = b2*v + (1-b2)*g^2
  const __m256 mi = _mm256_fmadd_ps(_mm256_loadu_ps(m + i), c.b1, _mm256_mul_ps(gi, c.c1));
  const __m256 vi = _mm256_fmadd_ps(_mm256_loadu_ps(v + i), c.b2, _mm256_mul_ps(_mm256_mul_ps(gi, gi), c.c2));
  // p = p*decay + (-lr/bc1) * m / (sqrt(v) * (1/sqrt(bc2)) + eps)
  const __m256 den = _mm256_add_ps(_mm256_mul_ps(_mm256_sqrt_ps(vi), c.k), c.eps);
  const __m256 pi = _mm256_fmadd_ps(c.step, _mm256_div_ps(mi, den), _mm256_mul_ps(_mm256_loadu_ps(p + i), c.dec));
  _mm256_storeu_ps(p + i, pi);
  _mm256_storeu_ps(m + i, mi);
  _mm256_storeu_ps(v + i, vi);
  return pi;
}
/** Writes the 16 new weights p0, p1 to w + i (kStream: non-temporal, w + i 32-byte aligned). */
template <bool kStream>
MMOC_TARGET_AVX2 inline void storeW(float* w, int64_t i, __m256 p0, __m256 p1) {
  _mm256_storeu_ps(w + i, p0);
  _mm256_storeu_ps(w + i + 8, p1);
}
template <bool kStream>
MMOC_TARGET_AVX2 inline void storeW(c10::BFloat16* w, int64_t i, __m256 p0, __m256 p1) {
  const __m256i x = toBf16(p0, p1);
  if constexpr (kStream) _mm256_stream_si256(reinterpret_cast<__m256i*>(w + i), x);
  else _mm256_storeu_si256(reinterpret_cast<__m256i*>(w + i), x);
}
/** Elements [i, i + 16). */
template <class G, class W, bool kW, bool kStream>
MMOC_TARGET_AVX2 inline void block(float* p, float* m, float* v, const G* g, W* w, int64_t i, const Coef& c) {
  const __m256 p0 = step8(p, m, v, g, i, c), p1 = step8(p, m, v, g, i + 8, c);
  if constexpr (kW) storeW<kStream>(w, i, p0, p1);
}
/** Elements [i, i + n), n < 16, through block on a zero-padded stack copy (the same arithmetic). */
template <class G, class W, bool kW>
MMOC_TARGET_AVX2 void ragged(float* p, float* m, float* v, const G* g, W* w, int64_t i, int64_t n, const Coef& c) {
  if (n <= 0) return;
  float ps[16] = {}, ms[16] = {}, vs[16] = {};
  G gs[16] = {};
  W ws[16] = {};
  std::copy_n(p + i, n, ps), std::copy_n(m + i, n, ms), std::copy_n(v + i, n, vs), std::copy_n(g + i, n, gs);
  block<G, W, kW, false>(ps, ms, vs, gs, ws, 0, c);
  std::copy_n(ps, n, p + i), std::copy_n(ms, n, m + i), std::copy_n(vs, n, v + i);
  if constexpr (kW) std::copy_n(ws, n, w + i);
}
template <class G, class W, bool kW>
MMOC_TARGET_AVX2 void range(float* p, float* m, float* v, const G* g, W* w, int64_t a, int64_t b, const AdamCoef& cf) {
  constexpr int64_t kBlock = 16;
  constexpr bool kStream = kW && std::is_same<W, c10::BFloat16>::value;
  const Coef c = broadcast(cf);
  int64_t i = a;
  if constexpr (kStream) {  // head up to the first 32-byte aligned w + i
    i = alignedFrom(w, a, b, 32);
    ragged<G, W, kW>(p, m, v, g, w, a, i - a, c);
  }
  for (; i + kBlock <= b; i += kBlock) {
    if (i + kPrefetchElems + kBlock <= b) adamPrefetch(p, m, v, g, i + kPrefetchElems, kBlock);
    block<G, W, kW, kStream>(p, m, v, g, w, i, c);
  }
  ragged<G, W, kW>(p, m, v, g, w, i, b - i, c);
  if constexpr (kStream) _mm_sfence();  // the streaming stores ordered before the range is reported done
}

}  // namespace avx2

template <class G, class W>
MMOC_TARGET_AVX512 void adamAvx512(float* p, float* m, float* v, const G* g, W* w, int64_t a, int64_t b,
                                   const AdamCoef& c) {
  if (w) avx512::range<G, W, true>(p, m, v, g, w, a, b, c);
  else avx512::range<G, W, false>(p, m, v, g, w, a, b, c);
}
template <class G, class W>
MMOC_TARGET_AVX2 void adamAvx2(float* p, float* m, float* v, const G* g, W* w, int64_t a, int64_t b,
                               const AdamCoef& c) {
  if (w) avx2::range<G, W, true>(p, m, v, g, w, a, b, c);
  else avx2::range<G, W, false>(p, m, v, g, w, a, b, c);
}
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
#else
#define MMOC_X86_SIMD 0
#endif

/** MMOC_CPU_ADAM=ref: the reference adamTile everywhere (read once). */
bool cpuAdamRefForced() {
  static const bool ref = [] {
    const char* s = std::getenv("MMOC_CPU_ADAM");
    return s && std::string(s) == "ref";
  }();
  return ref;
}

/** The kernel for gradients G and weights W on this CPU (see the overview above). */
template <class G, class W>
AdamKernel<G, W> adamKernel() {
#if MMOC_X86_SIMD
  constexpr bool kSimd = (std::is_same<G, float>::value || std::is_same<G, c10::BFloat16>::value) &&
                         (std::is_same<W, float>::value || std::is_same<W, c10::BFloat16>::value);
  __builtin_cpu_init();
  const bool ref = !kSimd || cpuAdamRefForced();
  if (__builtin_cpu_supports("avx512f")) {
    if constexpr (kSimd)
      if (!ref) return adamAvx512<G, W>;
    return adamRefAvx512<G, W>;
  }
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
    if constexpr (kSimd)
      if (!ref) return adamAvx2<G, W>;
    return adamRefAvx2<G, W>;
  }
#endif
  return adamRef<G, W>;
}

/** CPU AdamW over n elements in tiles of 4096 (48 KiB of fp32 state) on the intra-op threads
 *  (at::parallel_for: OpenMP in libtorch). The threads take chunks of 16 tiles from a shared counter
 *  until none is left: a thread that loses its core for a while (a rank's kernel-launching thread,
 *  NCCL's proxy, the other rank's team: on the GPU hosts the ranks' teams fill every core) delays the
 *  update by its current chunk, where a fixed 1/threads share a thread left the other threads idle
 *  until it finished. MMOC_ADAM_STATIC=1: the fixed shares (one contiguous range a thread). Every element's
 *  update is the same arithmetic either way (bit-identical results). */
template <class G, class W>
void cpuAdamW(float* p, float* m, float* v, const G* g, W* w, int64_t n, float lr, float b1, float b2, float eps,
              float bc1, float bc2, float wd, float gs) {
  static const AdamKernel<G, W> kernel = adamKernel<G, W>();  // chosen once per dtype pair
  static const bool fixedShares = envOn("MMOC_ADAM_STATIC");
  const AdamCoef c{b1, b2, eps, bc2, wd, 1.0f - lr * wd, -lr / bc1, gs,
                   static_cast<float>(1.0 / std::sqrt(static_cast<double>(bc2)))};
  // a chunk: 16 tiles, 64K elements, 768 KiB of fp32 state (MMOC_ADAM_CHUNK_TILES: tests, with small layers)
  static const int64_t kChunk = [] { const char* e = std::getenv("MMOC_ADAM_CHUNK_TILES"); const long v = e ? std::atol(e) : 0; return v > 0 ? static_cast<int64_t>(v) : int64_t{16}; }();
  constexpr int64_t kTile = 4096;
  const int64_t tiles = (n + kTile - 1) / kTile;
  const int64_t threads = std::min<int64_t>(at::get_num_threads(), (tiles + kChunk - 1) / kChunk);
  if (fixedShares || threads <= 1) {
    at::parallel_for(0, tiles, 4, [&](int64_t t0, int64_t t1) { kernel(p, m, v, g, w, t0 * kTile, std::min(n, t1 * kTile), c); });
    return;
  }
  std::atomic<int64_t> next{0};
  at::parallel_for(0, threads, 1, [&](int64_t, int64_t) {
    for (int64_t t0; (t0 = next.fetch_add(kChunk, std::memory_order_relaxed)) < tiles;)
      kernel(p, m, v, g, w, t0 * kTile, std::min(n, std::min(tiles, t0 + kChunk) * kTile), c);
  });
}

double nowUs() {
  return std::chrono::duration<double, std::micro>(std::chrono::system_clock::now().time_since_epoch()).count();
}

int64_t rssBytes() {
  long pages = 0, rss = 0;
  FILE* f = std::fopen("/proc/self/statm", "r");
  if (!f) return 0;
  if (std::fscanf(f, "%ld %ld", &pages, &rss) != 2) rss = 0;
  std::fclose(f);
  return static_cast<int64_t>(rss) * ::sysconf(_SC_PAGESIZE);
}

int64_t peakRssBytes() {
  struct rusage ru;
  ::getrusage(RUSAGE_SELF, &ru);
  return static_cast<int64_t>(ru.ru_maxrss) * 1024;
}

/** The rank's current instruction, kept in a small shared file so that the launcher can name the
 *  last instruction of a rank that died. Layout: int32 [magic, pid, step, pc, op, mb, stage, state]. */
struct StatusFile {
  int32_t* p = nullptr;
  explicit StatusFile(const std::string& path) {
    if (path.empty()) return;
    int fd = ::open(path.c_str(), O_RDWR | O_CREAT, 0644);
    if (fd < 0) return;
    if (::ftruncate(fd, 32) == 0) {
      void* m = ::mmap(nullptr, 32, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
      if (m != MAP_FAILED) p = static_cast<int32_t*>(m);
    }
    ::close(fd);
    if (p) p[0] = 0x6d6d6f63, p[1] = static_cast<int32_t>(::getpid()), p[7] = 0;
  }
  ~StatusFile() {
    if (p) ::munmap(p, 32);
  }
  void set(int step, int pc, const Instr& in) {
    if (!p) return;
    p[2] = step, p[3] = pc, p[4] = in.op, p[5] = in.mb, p[6] = in.stage;
  }
  void state(int s) {
    if (p) p[7] = s;
  }
};

/** One thread that runs a rank's host work in issue order (CPU AdamW, disk transfers, and the
 *  uploads that follow an update): the interpreter issues and goes on (program.ts: asynchronous),
 *  and waits for a ticket only where the program says so. The first error stops the queue (later
 *  tasks are skipped) and is rethrown at the interpreter's next wait, naming the task. */
class HostWorker {
 public:
  using Task = std::function<void()>;
  ~HostWorker() { stop(); }
  /** Starts the thread; `init` runs on it first (device, thread count). */
  void start(std::function<void()> init) {
    if (th_.joinable()) return;
    th_ = std::thread([this, init] {
      try {
        if (init) init();
      } catch (const std::exception& e) {
        std::lock_guard<std::mutex> l(mu_);
        err_ = std::string("host worker set-up: ") + e.what();
      }
      run();
    });
  }
  bool started() const { return th_.joinable(); }
  /** Queues `t`; returns its ticket (waitFor(ticket) waits until it ran). */
  uint64_t push(Task t, std::string what) {
    std::lock_guard<std::mutex> l(mu_);
    q_.emplace_back(std::move(t), std::move(what));
    cv_.notify_one();
    return ++issued_;
  }
  void waitFor(uint64_t ticket) {
    std::unique_lock<std::mutex> l(mu_);
    done_.wait(l, [&] { return finished_ >= ticket; });
    if (!err_.empty()) throw Error(err_);
  }
  void drain() { waitFor(issued()); }
  uint64_t issued() {
    std::lock_guard<std::mutex> l(mu_);
    return issued_;
  }
  void stop() {
    {
      std::lock_guard<std::mutex> l(mu_);
      quit_ = true;
      cv_.notify_all();
    }
    if (th_.joinable()) th_.join();
  }

 private:
  void run() {
    for (;;) {
      std::pair<Task, std::string> t;
      {
        std::unique_lock<std::mutex> l(mu_);
        cv_.wait(l, [&] { return quit_ || !q_.empty(); });
        if (q_.empty()) return;
        t = std::move(q_.front());
        q_.pop_front();
      }
      std::string err;
      bool skip;
      {
        std::lock_guard<std::mutex> l(mu_);
        skip = !err_.empty();
      }
      if (!skip) {
        try {
          t.first();
        } catch (const std::exception& e) {
          err = t.second + ": " + e.what();
        }
      }
      std::lock_guard<std::mutex> l(mu_);
      if (!err.empty() && err_.empty()) err_ = err;
      ++finished_;
      done_.notify_all();
    }
  }
  std::thread th_;
  std::mutex mu_;
  std::condition_variable cv_, done_;
  std::deque<std::pair<Task, std::string>> q_;
  uint64_t issued_ = 0, finished_ = 0;
  bool quit_ = false;
  std::string err_;
};

/** Where an asynchronous instruction's work ran (the measured trace's tracks). */
enum Track : int { TRACK_ISSUE = 0, TRACK_D2H = 1, TRACK_H2D = 2, TRACK_CPU = 3, TRACK_DISK = 4 };

struct Key {
  int mb, stage;
  bool operator<(const Key& o) const { return mb != o.mb ? mb < o.mb : stage < o.stage; }
};

struct Pending {
  WorkPtr work;
  at::Tensor keep;
};

struct Rank {
  const RunCfg& cfg;
  at::Device device;
  bool cuda;
  std::unique_ptr<Model> model;
  c10::intrusive_ptr<c10d::Store> store;
  std::unique_ptr<Comm> fwd, bwd, world, tied, dp;
  bool tiedSplit = false, tiedSynced = false, tiedPending = false;
  std::vector<Pending> pending;

  // per step state
  std::map<Key, at::Tensor> input, output, gradOut, gradIn;
  std::map<Key, at::Tensor> layerIn;  // per-layer recompute: {mb, layer} -> the layer's input, (B, S, H)
  std::map<int, at::Tensor> tokens, labels, mask;
  double normaliser = 1, stepLoss = 0, gradNorm = 0, clipCoef = 1;
  at::Tensor lossAcc;
  bool hasLoss = false;
  int step = 0;
  std::vector<int> lossMbs;

  // data
  std::vector<uint32_t> fileTokens;

  // Early update: with no grad_norm / allreduce_grads / offload in the program, a decoder layer's
  // optimizer_step after its stage's last backward depends only on that layer's gradients, so it is
  // issued from a gradient hook as soon as the layer's backward is complete (on CUDA on a side stream,
  // overlapping the rest of the backward); the optimizer_step instruction then only orders the compute
  // stream after it. MMOC_NO_EARLY_UPDATE=1 turns it off.
  std::map<int, int> earlyLastMb;  // stage -> mb of its last backward (stages eligible for early update)
  std::set<int> earlyLayers;       // layers whose update may be issued early
  std::map<int, bool> earlyDone;   // layer -> issued early in this step
  at::Tensor stepT;                // AdamW step count for the fused kernel, once per step

  // Offload engine (issue 6): a layer's parameters as one flat sequence (its tensors in order);
  // elements [0, start) are updated on the device, [start, n) on the host from a host group:
  // fp32 master, m, v, the gradient in compute precision, and the updated compute-precision weights.
  struct HostGroup {
    int64_t n = 0, start = 0;
    at::Tensor master, m, v, wout;
    // a streamed layer with the delayed update: the weights this step's fetches read (the previous
    // update's), while the update of this step writes the next ones (wout, or the fp32 master);
    // swapped in at the step end
    at::Tensor wfetch;
    bool swapAtEnd = false;
    // the device part [0, start) of a layer split between the tiers: its fp32 master (mixed
    // precision) and AdamW states as flat device buffers of `start` elements (not whole tensors)
    at::Tensor devMaster, devM, devV;
    at::Tensor staging;  // gradients accumulated on the host: one micro-batch's copy, added on the worker
    // gradients in compute precision; with the delayed update two buffers (step parity): the CPU
    // step of the previous step's gradients reads one while this step's backward fills the other
    at::Tensor grad[2];
    int updates = 0, gradStep = -1, onDevice = 0;  // onDevice: the update count the device copy holds
    bool gradValid = false, accumulate = false, delayed = false, masterFreed = false;
    bool devGradsFreed = false;  // the device gradients were dropped after their copy to grad[] (whole update on the host)
    int diskPath = -1;  // the path of its first disk_write (-1: never written; its file never moves)
    bool written = false;  // its file holds a state (only its path's disk worker touches it)
    HostWorker* diskW = nullptr;  // the disk worker of its path and its last transfer's ticket there
    uint64_t diskTicket = 0;
    double clipAtGrad = 1.0;
    uint64_t ticket = 0;              // the group's last host task (update, disk, upload)
    uint64_t accTicket = 0;           // its last host gradient accumulation (done with the staging buffer)
    uint64_t gradTicket[2] = {0, 0};  // the last host task that reads grad[i]
#if MMOC_HAS_CUDA
    std::shared_ptr<at::cuda::CUDAEvent> gradEv[2];  // the GPU -> host copy into grad[i] is done
#endif
    int buf(int s) const { return delayed ? (s & 1) : 0; }
  };
  std::map<int, HostGroup> host;
  std::map<int, int64_t> hostStart;  // layer -> first host element (from the program's cpu optimizer_step)
  std::map<int, int> offloadsPerStep;
  std::set<int> delayedLayers;  // layers whose CPU step comes before the step's first backward
  bool useCudaAdamw = !envOn("MMOC_NO_CUDA_ADAMW");  // the project's multi-tensor kernel (if built)
#if MMOC_HAS_CUDA
  std::optional<c10::cuda::CUDAStream> optStream;
  std::map<int, at::cuda::CUDAEvent> earlyEv;
#endif

  // ---- asynchronous work (issue 6): copies on two copy streams (GPU -> host, host -> GPU), host
  // work (CPU AdamW, disk transfers, uploads after an update) on one worker thread in issue order.
  // Each piece of it is a slice of the measured trace on its own track, at the pc that issued it.
  HostWorker worker;
  Clock::time_point origin = Clock::now();
  int curPc = 0;
  int hostThreads = 1;
  struct Slice {
    int step = 0, pc = 0, track = 0;
    double tsUs = 0, durUs = 0;  // wall clock since origin (host work)
#if MMOC_HAS_CUDA
    std::shared_ptr<at::cuda::CUDAEvent> a, b;  // device work: timed by events on its stream
#endif
  };
  std::mutex sliceMu;
  std::vector<Slice> slices;
#if MMOC_HAS_CUDA
  std::optional<c10::cuda::CUDAStream> d2h, h2d;
#endif

  double sinceOriginUs() const { return std::chrono::duration<double, std::micro>(Clock::now() - origin).count(); }
  void addSlice(Slice sl) {
    if (!cfg.trace) return;
    std::lock_guard<std::mutex> l(sliceMu);
    slices.push_back(std::move(sl));
  }
  std::vector<Slice> takeSlices() {
    std::lock_guard<std::mutex> l(sliceMu);
    std::vector<Slice> out;
    out.swap(slices);
    return out;
  }
  /** Runs `fn` here, timed by the wall clock as a slice of step `st`, pc `pc` on `track`. */
  void hostSlice(int track, int st, int pc, const std::function<void()>& fn) {
    const double a = sinceOriginUs();
    fn();
    Slice sl;
    sl.step = st, sl.pc = pc, sl.track = track, sl.tsUs = a, sl.durUs = sinceOriginUs() - a;
    addSlice(std::move(sl));
  }
  /** Queues `fn` on the host worker (started on first use), timed as a slice on `track` (< 0: fn
   *  records its own). */
  uint64_t hostTask(int track, std::string what, std::function<void()> fn) {
    if (!worker.started()) {
      const int dev = cuda ? device.index() : -1, threads = hostThreads;
      worker.start([dev, threads] {
#if MMOC_HAS_CUDA
        if (dev >= 0) c10::cuda::set_device(static_cast<c10::DeviceIndex>(dev));
#endif
        at::set_num_threads(threads);
      });
    }
    const int st = step, pc = curPc;
    return worker.push(
        [this, st, pc, track, fn] {
          at::NoGradGuard ng;
          if (track < 0) fn();
          else hostSlice(track, st, pc, fn);
        },
        std::move(what));
  }
#if MMOC_HAS_CUDA
  /** Makes copy stream `s` wait for everything issued on the compute stream so far. */
  void afterCompute(const c10::cuda::CUDAStream& s) {
    at::cuda::CUDAEvent e(cudaEventDisableTiming);
    e.record(c10::cuda::getCurrentCUDAStream(device.index()));
    e.block(s);
  }
  /** Enqueues `fn`'s work on stream `s` between two timing events; returns the end event. */
  std::shared_ptr<at::cuda::CUDAEvent> onStream(const c10::cuda::CUDAStream& s, int track, int st, int pc,
                                                const std::function<void()>& fn) {
    auto a = std::make_shared<at::cuda::CUDAEvent>(0), b = std::make_shared<at::cuda::CUDAEvent>(0);
    a->record(s);
    {
      c10::cuda::CUDAStreamGuard g(s);
      fn();
    }
    b->record(s);
    Slice sl;
    sl.step = st, sl.pc = pc, sl.track = track, sl.a = a, sl.b = b;
    addSlice(std::move(sl));
    return b;
  }
#endif
  /** Step end: every host task done and every copy landed. */
  void drainAsync() {
    worker.drain();
    drainDisk();
#if MMOC_HAS_CUDA
    if (d2h) d2h->synchronize();
    if (h2d) h2d->synchronize();
#endif
  }

  Rank(const RunCfg& c) : cfg(c), device(c.device), cuda(device.is_cuda()) {}
  /** The host worker and the disk workers wait on each other's earlier tasks: both finish their
   *  queues (the main one first) before any of them is destroyed. */
  ~Rank() {
    worker.stop();
    for (auto& w : diskWorkers)
      if (w) w->stop();
  }

  int lastLayer() const { return cfg.model.layers + 1; }
  int prank() const { return cfg.rank % cfg.pipelineRanks; }
  int replica() const { return cfg.rank / cfg.pipelineRanks; }
  int replicas() const { return cfg.world / cfg.pipelineRanks; }
  const StageCfg& stage(int s) const {
    MMOC_CHECK(s >= 0 && s < static_cast<int>(cfg.stages.size()), "stage " << s << " does not exist");
    return cfg.stages[s];
  }

  void setup() {
    if (cuda) {
#if MMOC_HAS_CUDA
      c10::cuda::set_device(device.index());
#endif
    }
    if (cfg.threads > 0) at::set_num_threads(cfg.threads);
    model = std::make_unique<Model>(cfg.model, device, cfg.precision);
    // Tied embedding with the embedding and the head on different ranks: the head's rank keeps an
    // identical copy of the embedding (same per-layer seed, or loaded); the two ranks sum its
    // gradient (at grad_norm when the program has one, else at the step end) and both apply the same
    // AdamW update, so the copies stay equal.
    const int r0 = cfg.stages.front().rank, rL = cfg.stages.back().rank;  // pipeline ranks
    tiedSplit = cfg.model.tied && r0 != rL && (prank() == r0 || prank() == rL);
    planOffload();
    planDisk();
    planStreaming();
    checkHostBudget();
    allocPinnedPool();
    const bool settleNow = cfg.weightsDir.empty();  // loaded weights settle after the load
    for (auto& s : cfg.stages) {
      if (s.rank != prank()) continue;
      for (int l = s.lo; l < s.hi; ++l) {
        model->initLayer(l, cfg.seed);
        if (settleNow) settleLayer(l);
      }
    }
    if (tiedSplit && prank() == rL) {
      model->initLayer(0, cfg.seed);
      model->copies.insert(0);
    }
    if (!cfg.weightsDir.empty()) {
      model->loadHF(cfg.weightsDir);
      for (auto& kv : model->layers) settleLayer(kv.first);
    }
    model->prepareRope(cfg.seq);
    if (!cfg.dataPath.empty()) loadData();
    if (cfg.world > 1) {
      c10d::TCPStoreOptions o;
      o.port = static_cast<uint16_t>(cfg.masterPort);
      o.isServer = cfg.rank == 0;
      o.numWorkers = cfg.world;
      o.waitWorkers = true;
      o.timeout = std::chrono::milliseconds(static_cast<int64_t>(cfg.timeoutSec * 1000));
      store = c10::make_intrusive<c10d::TCPStore>(cfg.masterAddr, o);
      auto t = std::chrono::milliseconds(static_cast<int64_t>(cfg.timeoutSec * 1000));
      fwd = makeComm(c10::make_intrusive<c10d::PrefixStore>("fwd", store), cfg.rank, cfg.world, cuda, t);
      bwd = makeComm(c10::make_intrusive<c10d::PrefixStore>("bwd", store), cfg.rank, cfg.world, cuda, t);
      world = makeComm(c10::make_intrusive<c10d::PrefixStore>("world", store), cfg.rank, cfg.world, cuda, t);
      const std::string rep = std::to_string(replica());
      if (tiedSplit)
        tied = makeComm(c10::make_intrusive<c10d::PrefixStore>("tied" + rep, store), prank() == r0 ? 0 : 1, 2, cuda, t);
      // data parallel: the replicas of this pipeline rank
      if (replicas() > 1)
        dp = makeComm(c10::make_intrusive<c10d::PrefixStore>("dp" + std::to_string(prank()), store), replica(), replicas(), cuda, t);
      // warm up every group (creates NCCL communicators up front)
      for (Comm* c : {fwd.get(), bwd.get(), world.get(), tied.get(), dp.get()}) {
        if (!c) continue;
        auto x = at::zeros({1}, at::TensorOptions().device(device));
        c->allreduceSum(x)->wait();
      }
      warmPointToPoint();
    }
    planEarlyUpdate();
    capMemory();
  }

  /** The plan's per-GPU cap (e.g. a 48 GiB card emulated on a larger one): the caching allocator may
   *  reserve at most the cap less what the device already holds outside it (context, communicator
   *  buffers, measured now, after the communicators were created). */
  /** One message each way with every peer the program sends to or receives from, on the
   *  communicator it uses (NCCL creates a point-to-point communicator, and its buffers, at a pair's
   *  first send/receive): before capMemory reads what the device holds outside the allocator. The
   *  lower rank of a pair sends first, the higher receives first (no deadlock). */
  void warmPointToPoint() {
    std::set<std::pair<int, int>> pairs;  // (communicator: 0 fwd, 1 bwd; peer)
    for (const auto& in : cfg.program) {
      if (in.peer == cfg.rank || in.peer < 0) continue;
      if (in.op == OP_SEND_ACT || in.op == OP_RECV_ACT) pairs.insert({0, in.peer});
      if (in.op == OP_SEND_GRAD || in.op == OP_RECV_GRAD) pairs.insert({1, in.peer});
    }
    for (const auto& [which, peer] : pairs) {
      Comm* c = which == 0 ? fwd.get() : bwd.get();
      if (!c) continue;
      auto out = at::zeros({1}, at::TensorOptions().device(device)), in = at::empty({1}, at::TensorOptions().device(device));
      const int tag = 1 << 20;  // no micro-batch uses it
      if (cfg.rank < peer) {
        c->send(out, peer, tag)->wait();
        c->recv(in, peer, tag)->wait();
      } else {
        c->recv(in, peer, tag)->wait();
        c->send(out, peer, tag)->wait();
      }
    }
  }
  void capMemory() {
    if (cfg.gpuMemCapBytes <= 0 || !cuda) return;
#if MMOC_HAS_CUDA
    size_t freeB = 0, totalB = 0;
    MMOC_CHECK(cudaMemGetInfo(&freeB, &totalB) == cudaSuccess, "cudaMemGetInfo failed on " << device);
    const int64_t outside = overhead();
    MMOC_CHECK(cfg.gpuMemCapBytes > outside + (int64_t(256) << 20),
               "the plan's GPU memory cap (" << (cfg.gpuMemCapBytes >> 20) << " MiB, job.gpuMemCapBytes) leaves no room: " << device
                                             << " already holds " << (outside >> 20) << " MiB outside the allocator (context, communicators)");
    MMOC_CHECK(cfg.gpuMemCapBytes <= static_cast<int64_t>(totalB),
               "the plan's GPU memory cap (" << (cfg.gpuMemCapBytes >> 20) << " MiB) exceeds " << device << "'s " << (totalB >> 20) << " MiB");
    const double fraction = static_cast<double>(cfg.gpuMemCapBytes - outside) / static_cast<double>(totalB);
    c10::cuda::CUDACachingAllocator::setMemoryFraction(fraction, device.index());
#endif
  }

  /** Elements of a layer's parameters (from its shapes: known before the layer is built). */
  int64_t layerNumel(int layer) const {
    int64_t n = 0;
    for (auto& shape : model->leafShapes(layer)) {
      int64_t k = 1;
      for (auto d : shape) k *= d;
      n += k;
    }
    return n;
  }
  /** Whether this rank holds `layer` (a layer of one of its stages, or the tied embedding's copy). */
  bool ownsLayer(int layer) const {
    for (auto& st : cfg.stages)
      if (st.rank == prank() && layer >= st.lo && layer < st.hi) return true;
    return layer == 0 && tiedSplit && prank() == cfg.stages.back().rank;
  }
  /** Right after a layer is built (or loaded): its host part moves to the host now, and a streamed
   *  layer leaves the device, so that set-up holds at most one layer beyond what training holds. */
  void settleLayer(int l) {
    if (hostStart.count(l)) hostGroup(l);
    if (streamedLayers.count(l)) streamOut(l);
  }

  void planOffload() {
    int firstBwd = -1;
    for (int pc = 0; pc < static_cast<int>(cfg.program.size()); ++pc)
      if (cfg.program[pc].op == OP_BACKWARD) {
        firstBwd = pc;
        break;
      }
    for (int pc = 0; pc < static_cast<int>(cfg.program.size()); ++pc) {
      const auto& in = cfg.program[pc];
      if (in.op == OP_OFFLOAD_GRADS) offloadsPerStep[in.layer]++;
      if (in.op == OP_OPTIMIZER_STEP && in.tier == 1) {
        MMOC_CHECK(ownsLayer(in.layer), "optimizer_step of layer " << in.layer << ", which this rank does not hold");
        const int64_t n = layerNumel(in.layer);
        hostStart[in.layer] = n - std::llround(in.fraction * static_cast<double>(n));
        if (firstBwd >= 0 && pc < firstBwd) delayedLayers.insert(in.layer);
      }
    }
    // host threads of this rank's worker: the cores shared by the ranks on this host, less one on a
    // GPU rank for the thread that launches its kernels (planner/host-threads.ts: with every core
    // in the update teams a delayed host-AdamW step took 12% longer)
    if (cfg.threads > 0) {
      hostThreads = cfg.threads;
    } else {
      int local = cfg.world;
      if (const char* lw = std::getenv("LOCAL_WORLD_SIZE"); lw && std::atoi(lw) > 0) local = std::atoi(lw);
      hostThreads = std::max(1, static_cast<int>(std::thread::hardware_concurrency()) / std::max(1, local) - (cuda ? 1 : 0));
    }
#if MMOC_HAS_CUDA
    if (cuda) {
      d2h = c10::cuda::getStreamFromPool(/*isHighPriority=*/false, device.index());
      h2d = c10::cuda::getStreamFromPool(/*isHighPriority=*/false, device.index());
    }
#endif
  }

  /** Calls fn(param, offset in the param, length, offset in the layer) for the layer's elements [a, b). */
  template <class F>
  void segments(int layer, int64_t a, int64_t b, F fn) {
    int64_t off = 0;
    for (auto& p : model->layers.at(layer)) {
      const int64_t k = p.w.numel();
      const int64_t lo = std::max(a, off), hi = std::min(b, off + k);
      if (lo < hi) fn(p, lo - off, hi - lo, lo);
      off += k;
    }
  }

  /** Pinned on CUDA ranks (page-locked: the copies run at link speed and asynchronously). */
  at::TensorOptions hostOpts(at::ScalarType t) const { return at::TensorOptions().dtype(t).pinned_memory(cuda); }

  // ---- the rank's pinned pool: one page-locked allocation sized from the program at set-up (the
  // host groups' gradient buffers and upload sources), carved into views and reused every step. One
  // exact-size cudaHostAlloc: the caching host allocator would round each tensor up to a power of two.
  at::Tensor pinnedPool;
  int64_t pinnedUsed = 0;
  static int64_t align64(int64_t b) { return (b + 63) / 64 * 64; }
  int64_t groupPinnedBytes(int layer) {
    const int64_t h = layerNumel(layer) - hostStart.at(layer);
    const int64_t e = c10::elementSize(model->compute);
    const int gradBufs = (delayedLayers.count(layer) ? 2 : 1) + (offloadsPerStep[layer] > 1 ? 1 : 0);  // + the staging buffer of host accumulation
    const int weightBufs = 1 + (fetchesOld(layer) ? 1 : 0);  // + the weights the step's fetches read
    return align64(h * e) * gradBufs + align64(h * (model->mixed ? e : 4)) * weightBufs;
  }
  /** A streamed layer updated with the delayed update: its fetches read the previous step's
   *  update while this step's runs (two host copies of its compute-precision weights). */
  bool fetchesOld(int layer) const { return delayedLayers.count(layer) && streamedLayers.count(layer); }
  /** Before anything is allocated: the rank's host memory for offloaded state (the pinned pool, and
   *  fp32 master, m and v of every host element; a group on disk is staged in full) against its
   *  share of --host-mem. */
  void checkHostBudget() {
    if (cfg.hostMemBudgetBytes <= 0) return;
    int64_t pinned = 0, state = 0;
    for (auto& kv : hostStart) {
      pinned += groupPinnedBytes(kv.first);
      state += (layerNumel(kv.first) - kv.second) * 12;
    }
    const double GiB = 1073741824.0;
    MMOC_CHECK(pinned + state <= cfg.hostMemBudgetBytes,
               "host memory: this rank needs " << (pinned + state) / GiB << " GiB for its offloaded state (pinned gradient and upload buffers "
                   << pinned / GiB << " GiB, fp32 master + AdamW states " << state / GiB << " GiB), over its share of --host-mem ("
                   << cfg.hostMemBudgetBytes / GiB << " GiB): raise --host-mem, re-plan with mmoc plan --host-mem, or put optimizer states on disk");
  }
  void allocPinnedPool() {
    int64_t total = 0;
    for (auto& kv : hostStart) total += groupPinnedBytes(kv.first);
    if (total == 0) return;
    const auto bytes = at::TensorOptions().dtype(at::kByte);
#if MMOC_HAS_CUDA
    if (cuda) {
      void* ptr = nullptr;
      const cudaError_t e = cudaHostAlloc(&ptr, static_cast<size_t>(total), cudaHostAllocDefault);
      if (e == cudaSuccess) {
        pinnedPool = at::from_blob(ptr, {total}, [](void* q) { cudaFreeHost(q); }, bytes);
        return;
      }
      (void)cudaGetLastError();
      std::fprintf(stderr, "mmoc: rank %d: cannot pin %.2f GiB of host memory (%s): the offload buffers fall back to pageable memory (copies synchronous and slower)\n",
                   cfg.rank, total / 1073741824.0, cudaGetErrorString(e));
    }
#endif
    pinnedPool = at::empty({total}, bytes);
  }
  /** `numel` elements of `t` from the pinned pool (zeroed). */
  at::Tensor carvePinned(int64_t numel, at::ScalarType t) {
    const int64_t b = numel * static_cast<int64_t>(c10::elementSize(t));
    MMOC_CHECK(pinnedPool.defined() && pinnedUsed + b <= pinnedPool.numel(), "pinned pool exhausted (" << pinnedUsed << " + " << b << " > " << (pinnedPool.defined() ? pinnedPool.numel() : 0) << " bytes)");
    auto v = pinnedPool.narrow(0, pinnedUsed, b).view(t);
    pinnedUsed += align64(b);
    return v.zero_();
  }

  HostGroup& hostGroup(int layer) {
    auto it = host.find(layer);
    if (it != host.end()) return it->second;
    auto hs = hostStart.find(layer);
    MMOC_CHECK(hs != hostStart.end(), "layer " << layer << " has no optimizer_step on tier cpu in the program");
    HostGroup g;
    g.n = layerNumel(layer), g.start = hs->second;
    const int64_t h = g.n - g.start;
    // pinned only what a copy stream reads or writes: the gradients (GPU -> host), the weights that go
    // up (the bf16 copy, or the fp32 master itself); m and v are the CPU update's alone (pageable)
    const auto pageable = at::TensorOptions().dtype(at::kFloat);
    g.delayed = delayedLayers.count(layer) > 0;
    g.grad[0] = carvePinned(h, model->compute);
    if (g.delayed) g.grad[1] = carvePinned(h, model->compute);
    g.master = model->mixed ? at::empty({h}, pageable) : carvePinned(h, at::kFloat);
    if (model->mixed) {
      g.wout = carvePinned(h, model->compute);
      // the host copy of the compute-precision weights starts as the device's (never zeros)
      segments(layer, g.start, g.n, [&](Param& p, int64_t off, int64_t len, int64_t pos) {
        g.wout.narrow(0, pos - g.start, len).copy_(p.w.detach().reshape({-1}).narrow(0, off, len));
      });
    }
    g.m = at::zeros({h}, pageable), g.v = at::zeros({h}, pageable);
    at::NoGradGuard ng;
    segments(layer, g.start, g.n, [&](Param& p, int64_t off, int64_t len, int64_t pos) {
      g.master.narrow(0, pos - g.start, len).copy_(p.master.detach().reshape({-1}).narrow(0, off, len));
    });
    if (g.start > 0) {
      const auto dev = at::TensorOptions().dtype(at::kFloat).device(device);
      g.devM = at::zeros({g.start}, dev), g.devV = at::zeros({g.start}, dev);
      if (model->mixed) {
        g.devMaster = at::empty({g.start}, dev);
        segments(layer, 0, g.start, [&](Param& p, int64_t off, int64_t len, int64_t pos) {
          g.devMaster.narrow(0, pos, len).copy_(p.master.detach().reshape({-1}).narrow(0, off, len));
        });
      }
    }
    // the device keeps no whole-tensor fp32 master of a layer updated (partly) on the host: 4 bytes
    // a parameter, less what its device part holds
    if (model->mixed) {
      for (auto& p : model->layers.at(layer)) p.master = at::Tensor();
      g.masterFreed = true;
    }
    g.accumulate = offloadsPerStep[layer] > 1;
    if (g.accumulate) g.staging = carvePinned(h, model->compute);
    if (fetchesOld(layer)) {
      MMOC_CHECK(g.start == 0, "layer " << layer << ": a streamed layer needs its whole update on the host");
      g.wfetch = carvePinned(h, model->compute);
      g.wfetch.copy_(g.wout.defined() ? g.wout : g.master);
    }
    return host.emplace(layer, std::move(g)).first->second;
  }

  /** Before saving: layers whose master lives on the host get it back as views of the host copy. */
  void restoreMasters() {
    worker.drain();
    drainDisk();
    for (auto& kv : host) {
      auto& g = kv.second;
      if (!g.masterFreed) continue;
      if (!g.master.defined()) initDiskDirs(), diskRead(g, kv.first, g.diskPath);  // the master is on disk
      auto full = at::empty({g.n}, at::TensorOptions().dtype(at::kFloat));
      if (g.start > 0) full.narrow(0, 0, g.start).copy_(g.devMaster);
      if (g.start < g.n) full.narrow(0, g.start, g.n - g.start).copy_(g.master);
      segments(kv.first, 0, g.n, [&](Param& p, int64_t, int64_t len, int64_t pos) {
        p.master = full.narrow(0, pos, len).view(p.w.sizes());
      });
    }
  }

#if MMOC_HAS_CUDA
  /** On the current (copy) stream: a whole-host layer's gradients, elements [0, n), into `dst`; the
   *  device blocks are held for the copy stream (recordStream), so the caller may drop them. */
  void gradsToHostAsync(int layer, int64_t n, const at::Tensor& dst) {
    segments(layer, 0, n, [&](Param& p, int64_t off, int64_t len, int64_t pos) {
      auto src = p.grad();
      auto d = dst.narrow(0, pos, len);
      if (!src.defined()) {
        d.zero_();
        return;
      }
      d.copy_(src.reshape({-1}).narrow(0, off, len), /*non_blocking=*/true);
      c10::cuda::CUDACachingAllocator::recordStream(src.storage().data_ptr(), *d2h);
    });
  }
#endif
  int64_t offloadGrads(int layer) {
    at::NoGradGuard ng;
    auto& g = hostGroup(layer);
    const int bi = g.buf(step);
    const bool first = g.gradStep != step;  // the step's first gradients of this layer
    // the CPU step that read this buffer is done with it (later micro-batches add to what the
    // first wrote, in the worker's order)
    if (first) worker.waitFor(g.gradTicket[bi]);
    auto& dstAll = g.grad[bi];
    const int64_t bytes = (g.n - g.start) * c10::elementSize(model->compute);
    if (g.accumulate) {
      // after every backward: add into the host accumulator, free the device buffer
      MMOC_CHECK(g.start == 0, "layer " << layer << ": gradients accumulated on the host need the whole update on the host");
#if MMOC_HAS_CUDA
      if (cuda) {
        // the first micro-batch's gradients straight into the accumulator on the copy stream; a later
        // one's to the staging buffer, added by the worker (after the previous add, which is done with
        // the staging buffer: waited for here; the worker's earlier work, such as the delayed update of
        // this layer, writes other buffers and is not waited for)
        afterCompute(*d2h);
        if (first) {
          g.gradEv[bi] = onStream(*d2h, TRACK_D2H, step, curPc, [&] { gradsToHostAsync(layer, g.n, dstAll); });
          for (auto& p : model->layers.at(layer)) p.zeroGrad();
          g.gradValid = true, g.gradStep = step;
          return bytes;
        }
        worker.waitFor(g.accTicket);
        auto staging = g.staging;
        auto done = onStream(*d2h, TRACK_D2H, step, curPc, [&] { gradsToHostAsync(layer, g.n, staging); });
        for (auto& p : model->layers.at(layer)) p.zeroGrad();  // the blocks return once the copy is done
        at::Tensor acc = dstAll;
        std::ostringstream what;
        what << "host gradient accumulation of layer " << layer;
        g.ticket = g.gradTicket[bi] = g.accTicket = hostTask(-1, what.str(), [=]() mutable {
          done->synchronize();  // (after the first micro-batch's copy into acc: one stream)
          acc.add_(staging);
        });
        g.gradValid = true, g.gradStep = step;
        return bytes;
      }
#endif
      if (g.gradStep != step) dstAll.zero_();
      segments(layer, g.start, g.n, [&](Param& p, int64_t off, int64_t len, int64_t pos) {
        auto src = p.grad();
        if (src.defined()) dstAll.narrow(0, pos - g.start, len).add_(src.reshape({-1}).narrow(0, off, len).to(at::kCPU));
      });
      for (auto& p : model->layers.at(layer)) p.zeroGrad();
      g.gradValid = true, g.gradStep = step;
      return bytes;
    }
    auto copy = [&](bool async) {
      segments(layer, g.start, g.n, [&](Param& p, int64_t off, int64_t len, int64_t pos) {
        auto src = p.grad();
        auto dst = dstAll.narrow(0, pos - g.start, len);
        if (!src.defined()) dst.zero_();
        else dst.copy_(src.reshape({-1}).narrow(0, off, len), /*non_blocking=*/async);
      });
    };
#if MMOC_HAS_CUDA
    if (cuda) {
      // on the GPU -> host copy stream after the layer's backward; with the whole update on the host
      // the device buffers go back to the allocator once the copy is done (the grad norm reads the
      // host copy), else they stay until the step end (the device part's update reads them)
      afterCompute(*d2h);
      g.gradEv[bi] = onStream(*d2h, TRACK_D2H, step, curPc, [&] { copy(true); });
      g.gradValid = true, g.gradStep = step;
      if (g.start == 0) {
        for (auto& p : model->layers.at(layer)) {
          auto src = p.grad();
          if (src.defined()) c10::cuda::CUDACachingAllocator::recordStream(src.storage().data_ptr(), *d2h);
          p.zeroGrad();
        }
        g.devGradsFreed = true;
      }
      return bytes;
    }
#endif
    copy(false);
    g.gradValid = true, g.gradStep = step;
    return bytes;
  }

  /** Issues the CPU AdamW of the layer's host part on the worker (after its gradients landed). */
  void hostStep(int layer) {
    auto& g = hostGroup(layer);
    if (!g.gradValid) return;  // delayed update in the first step: no gradients yet
    const auto& o = cfg.optim;
    const double lr = lrAt(g.gradStep);
    const int t = ++g.updates;
    const float bc1 = static_cast<float>(1 - std::pow(o.beta1, t)), bc2 = static_cast<float>(1 - std::pow(o.beta2, t));
    const float gs = static_cast<float>(g.gradStep == step ? clipCoef : g.clipAtGrad);
    const int bi = g.buf(g.gradStep);
    g.gradValid = false;
    g.swapAtEnd = g.wfetch.defined();
    HostGroup* gp = &g;  // std::map nodes are stable
    HostWorker* readW = g.diskW;  // its state's disk_read (issued before it), if any
    const uint64_t readT = g.diskTicket;
#if MMOC_HAS_CUDA
    std::shared_ptr<at::cuda::CUDAEvent> ready = g.gradEv[bi];
#endif
    std::ostringstream what;
    what << "CPU AdamW of layer " << layer;
    g.ticket = g.gradTicket[bi] = hostTask(TRACK_CPU, what.str(), [=] {
#if MMOC_HAS_CUDA
      if (ready) ready->synchronize();
#endif
      if (readW) readW->waitFor(readT);
      auto& g = *gp;
      MMOC_CHECK(g.master.defined() && g.m.defined() && g.v.defined(), "optimizer state of layer " << layer << " is not in host memory (disk_read missing?)");
      segments(layer, g.start, g.n, [&](Param& p, int64_t, int64_t len, int64_t pos) {
        const int64_t i = pos - g.start;
        const float wd = p.w.dim() >= 2 ? static_cast<float>(o.weightDecay) : 0.0f;
        float* pm = g.master.data_ptr<float>() + i;
        float* pmm = g.m.data_ptr<float>() + i;
        float* pv = g.v.data_ptr<float>() + i;
        const auto args = std::make_tuple(static_cast<float>(lr), static_cast<float>(o.beta1), static_cast<float>(o.beta2),
                                          static_cast<float>(o.eps), bc1, bc2, wd, gs);
        auto run = [&](auto* gp2, auto* wp) {
          std::apply([&](auto... a) { cpuAdamW(pm, pmm, pv, gp2 + i, wp ? wp + i : wp, len, a...); }, args);
        };
        const auto& gr = g.grad[bi];
        switch (model->compute) {
          case at::kFloat: run(gr.data_ptr<float>(), static_cast<float*>(nullptr)); break;
          case at::kBFloat16:
            if (g.wout.defined()) run(gr.data_ptr<c10::BFloat16>(), g.wout.data_ptr<c10::BFloat16>());
            else run(gr.data_ptr<c10::BFloat16>(), static_cast<c10::BFloat16*>(nullptr));
            break;
          default: MMOC_FAIL("CPU AdamW: compute dtype " << model->compute << " not supported");
        }
      });
    });
  }

  // ---- disk tier: a layer's host optimizer-state group (master, m, v) in one file per layer and
  // rank under one of the plan's disk paths, through disk_io (O_DIRECT with aligned staging, chunks
  // moved by up to cfg.diskConcurrency threads per path, a temporary name then rename, a 4096-byte
  // header with the sizes and a chunked checksum of the data, verified on read).
  std::vector<std::string> diskDirs;
  /** One worker thread a disk path (started on first use): a rank's transfers on different paths
   *  run at once; each path's in issue order. */
  std::vector<std::unique_ptr<HostWorker>> diskWorkers;
  HostWorker& diskWorker(int path) {
    if (static_cast<int>(diskWorkers.size()) <= path) diskWorkers.resize(static_cast<size_t>(path) + 1);
    auto& w = diskWorkers[static_cast<size_t>(path)];
    if (!w) {
      w = std::make_unique<HostWorker>();
      w->start(nullptr);
    }
    return *w;
  }
  void drainDisk() {
    for (auto& w : diskWorkers)
      if (w) w->drain();
  }
  struct DiskDep {
    HostWorker* w = nullptr;
    uint64_t t = 0;
  };
  DiskDep lastDiskWriteDep;  // the rank's last disk_write issued
  /** The disk paths, parsed once on the interpreter's thread before any disk worker reads them. */
  void initDiskDirs() {
    if (!diskDirs.empty()) return;
    std::stringstream ss(cfg.diskPaths);
    for (std::string l; std::getline(ss, l);)
      if (!l.empty()) diskDirs.push_back(l);
  }
  std::string diskFile(int layer, int path) const {
    MMOC_CHECK(!diskDirs.empty(), "disk tier: the plan has no disk paths (policy.diskPaths)");
    const std::string& d = diskDirs[static_cast<size_t>(std::max(0, path)) % diskDirs.size()];
    return d + "/mmoc-rank" + std::to_string(cfg.rank) + "-layer" + std::to_string(layer) + ".state";
  }
  // ---- alternating group order (MLP-Offload): with the delayed update the host updates of the disk
  // groups are free to run in any order; on odd steps they run in reverse (the program's disk group
  // sequence, reversed), so the groups written last in a step are the first of the next, and the
  // last `diskKeep` of them (the groups the host stages anyway) stay in host memory: their next
  // reads are hits. A layer keeps the path of its first write (its file never moves).
  bool diskAlt = false;
  std::vector<int> diskSeq;   // disk layers in the program's order of their disk_write
  std::map<int, int> diskPos;  // layer -> position in diskSeq
  int diskKeep = 0;
  std::atomic<int64_t> diskReadsDone{0}, diskReadHits{0};
  // Host buffers of the disk groups (fp32, 1-D), reused: a group's master, m and v go back here
  // when it is written out, and its next read takes them. A fresh allocation this size is mapped
  // page by page while the read copies into it: a 730 MB group of LLaMA-3.2-1B came back at
  // 0.8-0.96 GB/s against 1.9 into memory already touched (H200 host, bench/gpu/disk-probe.ts).
  // Only buffers a group released are kept, at most 3 for each group the host stages at once
  // (paths x concurrency + 1, as planner/memory.ts counts the disk staging).
  std::mutex diskPoolMu;
  std::vector<at::Tensor> diskPool;
  at::Tensor diskBuffer(int64_t n) {
    {
      std::lock_guard<std::mutex> lk(diskPoolMu);
      for (size_t i = 0; i < diskPool.size(); ++i)
        if (diskPool[i].numel() == n) {
          at::Tensor t = std::move(diskPool[i]);
          diskPool.erase(diskPool.begin() + static_cast<std::ptrdiff_t>(i));
          return t;
        }
    }
    return at::empty({n}, at::TensorOptions().dtype(at::kFloat));
  }
  void releaseDiskBuffer(at::Tensor& t) {
    if (!t.defined()) return;
    // only plain host buffers of their own storage (not the pinned master of a fp32 run, not views)
    if (!t.is_pinned() && t.device().is_cpu() && t.storage_offset() == 0 && t.is_contiguous() &&
        t.storage().nbytes() == static_cast<size_t>(t.numel()) * 4 && t.use_count() == 1) {
      std::lock_guard<std::mutex> lk(diskPoolMu);
      const size_t cap = 3 * (std::max<size_t>(1, diskDirs.size()) * static_cast<size_t>(std::max(1, cfg.diskConcurrency)) + 1);
      if (diskPool.size() >= cap) diskPool.erase(diskPool.begin());
      diskPool.push_back(std::move(t));
    }
    t = at::Tensor();
  }
  void planDisk() {
    int firstBwd = -1;
    for (int pc = 0; pc < static_cast<int>(cfg.program.size()) && firstBwd < 0; ++pc)
      if (cfg.program[pc].op == OP_BACKWARD) firstBwd = pc;
    for (const auto& in : cfg.program)
      if (in.op == OP_DISK_WRITE && !diskPos.count(in.layer)) diskPos[in.layer] = static_cast<int>(diskSeq.size()), diskSeq.push_back(in.layer);
    if (!cfg.diskAlternate || diskSeq.empty()) return;
    // only where every disk group's update comes before the step's first backward (delayed update)
    for (int pc = 0; pc < static_cast<int>(cfg.program.size()); ++pc) {
      const auto& in = cfg.program[pc];
      if ((in.op == OP_OPTIMIZER_STEP && in.tier == 1 && diskPos.count(in.layer)) || in.op == OP_DISK_READ || in.op == OP_DISK_WRITE)
        if (firstBwd >= 0 && pc > firstBwd) return;
    }
    diskAlt = true;
    diskKeep = std::max(0, std::min(cfg.diskCacheGroups, static_cast<int>(diskSeq.size())));
  }
  /** The instruction as step `st` runs it: on odd steps a disk group's update, read and write
   *  relabelled to the group at the mirrored position (the whole sequence runs reversed). */
  Instr remap(const Instr& in, int st) const {
    if (!diskAlt || (st & 1) == 0) return in;
    const bool disk = in.op == OP_DISK_READ || in.op == OP_DISK_WRITE || (in.op == OP_OPTIMIZER_STEP && in.tier == 1);
    if (!disk) return in;
    auto it = diskPos.find(in.layer);
    if (it == diskPos.end()) return in;
    Instr out = in;
    out.layer = diskSeq[diskSeq.size() - 1 - static_cast<size_t>(it->second)];
    return out;
  }
  /** Whether `layer` is among the last diskKeep groups step `st` writes. */
  bool keptAfter(int layer, int st) const {
    if (!diskAlt) return false;
    auto it = diskPos.find(layer);
    if (it == diskPos.end()) return false;
    const int n = static_cast<int>(diskSeq.size()), pos = (st & 1) ? n - 1 - it->second : it->second;
    return pos >= n - diskKeep;
  }

  /** On the worker: the group's master, m, v to its file (temporary name, then rename); a group
   *  the next step reads first (keep) also stays in host memory. */
  int64_t diskWrite(HostGroup& g, int layer, int path, int st, bool keep = false) {
    if (g.diskPath >= 0) path = g.diskPath;
    const std::string f = diskFile(layer, path);
    const int64_t h = g.n - g.start;
    const size_t bytes = static_cast<size_t>(h) * 4;
    diskio::writeGroup(f, layer, static_cast<uint64_t>(h),
                       {{g.master.data_ptr<float>(), bytes}, {g.m.data_ptr<float>(), bytes}, {g.v.data_ptr<float>(), bytes}},
                       std::max(1, cfg.diskConcurrency));
    g.written = true;
    // fault injection for the tests: MMOC_FAULT_CORRUPT_STATE=<layer> flips a data byte of that
    // layer's file after it is written in step 1
    if (const char* fl = std::getenv("MMOC_FAULT_CORRUPT_STATE"); fl && std::atoi(fl) == layer && st == 1) diskio::corruptDataByte(f, 5);
    // host memory of the group is given back (fp32: the master is the weights, kept for uploads)
    if (keep) return 3 * h * 4;
    releaseDiskBuffer(g.m), releaseDiskBuffer(g.v);
    if (model->mixed) releaseDiskBuffer(g.master);
    return 3 * h * 4;
  }
  /** On the worker: the group's master, m, v from its file, checksum verified. */
  int64_t diskRead(HostGroup& g, int layer, int path) {
    if (!g.written) return 0;  // nothing written yet: the group is the initial state
    if (g.m.defined() && g.v.defined() && g.master.defined()) {
      ++diskReadHits;  // still in host memory (kept by the alternating order)
      return 0;
    }
    ++diskReadsDone;
    if (g.diskPath >= 0) path = g.diskPath;
    const std::string f = diskFile(layer, path);
    const int64_t h = g.n - g.start;
    const size_t bytes = static_cast<size_t>(h) * 4;
    // the master is read aside and taken once verified (fp32: g.master is the weights' host copy,
    // copied into)
    at::Tensor master = diskBuffer(h), m = diskBuffer(h), v = diskBuffer(h);
    diskio::readGroup(f, layer, static_cast<uint64_t>(h),
                      {{master.data_ptr<float>(), bytes}, {m.data_ptr<float>(), bytes}, {v.data_ptr<float>(), bytes}},
                      std::max(1, cfg.diskConcurrency));
    g.m = m, g.v = v;
    if (model->mixed && !g.master.defined()) {
      g.master = master;
    } else {
      if (!g.master.defined()) g.master = at::empty({h}, hostOpts(at::kFloat));
      g.master.copy_(master);
      releaseDiskBuffer(master);
    }
    return 3 * h * 4;
  }

  // ---- parameter streaming (issue 6): a streamed layer's weights are on the device only between a
  // fetch and the end of the use it was fetched for. One storage per parameter, emptied and refilled
  // in place (autograd's saved references to the weights see the refill; the copy bumps no version
  // counter). fetch_params queues a use; a queued fetch is issued (allocate, copy from the host copy
  // on the host -> GPU stream) while the rank holds fewer than its stages' prefetch depth + 1 layers;
  // each use ends after the layer's forward or backward (Model::onStreamed hooks), which frees the
  // storage when no other queued use holds it and issues the next queued fetch. release_params then
  // only confirms it (or ends a use no hook saw: the embedding's backward).
  struct StreamedLayer {
    int uses = 0;           // fetched uses not yet ended
    bool resident = false;  // its storage holds the weights
    int credits = 0;        // uses ended by hooks, not yet confirmed by release_params
#if MMOC_HAS_CUDA
    std::shared_ptr<at::cuda::CUDAEvent> ready;  // its host -> GPU copy is done
#endif
  };
  std::map<int, StreamedLayer> streamedLayers;
  std::deque<std::pair<int, int>> fetchQueue;  // (layer, pc of its fetch_params)
  int streamSlots = 1, slotsUsed = 0, peakResident = 0;
  std::recursive_mutex streamMu;  // hooks run on autograd's thread on CUDA

  void planStreaming() {
    for (const auto& in : cfg.program)
      if (in.op == OP_FETCH_PARAMS) {
        MMOC_CHECK(ownsLayer(in.layer), "fetch_params of layer " << in.layer << ", which this rank does not hold");
        auto hs = hostStart.find(in.layer);
        MMOC_CHECK(hs != hostStart.end() && hs->second == 0,
                   "layer " << in.layer << " is streamed (fetch_params) but not updated wholly on the host: streamed parameters need optState on the cpu (placement)");
        streamedLayers[in.layer];
      }
    if (streamedLayers.empty()) return;
    for (const auto& st : cfg.stages)
      if (st.rank == prank()) streamSlots = std::max(streamSlots, st.prefetch + 1);
    model->onStreamed = [this](int l, int phase) { onStreamedHook(l, phase); };
  }
  /** A built streamed layer: its weights to the host copy the fetches read, its storage freed. */
  void streamOut(int l) {
    at::NoGradGuard ng;
    auto& g = hostGroup(l);
    // the compute-precision weights (fp32: the master itself, which the host group holds already)
    if (g.wout.defined())
      segments(l, 0, g.n, [&](Param& p, int64_t off, int64_t len, int64_t pos) {
        g.wout.narrow(0, pos, len).copy_(p.w.detach().reshape({-1}).narrow(0, off, len));
      });
    if (g.wfetch.defined()) g.wfetch.copy_(g.wout.defined() ? g.wout : g.master);
    freeLayer(l);
  }
  void freeLayer(int l) {
    for (auto& p : model->layers.at(l)) {
      auto* impl = p.w.storage().unsafeGetStorageImpl();
      impl->set_data_ptr_noswap(at::DataPtr(nullptr, p.w.device()));
      impl->set_nbytes(0);
    }
  }
  /** Allocates the layer's storages and copies its weights up from the host copy. */
  void fillLayer(int l, int pc) {
    auto& g = host.at(l);
    // the weights of the last update: its host update (if any) is done; with the delayed update the
    // previous step's, which the step end swapped in (the update running now writes the other copy)
    if (!g.wfetch.defined()) worker.waitFor(g.ticket);
    const auto& src = g.wfetch.defined() ? g.wfetch : g.wout.defined() ? g.wout : g.master;
    MMOC_CHECK(src.defined(), "fetch_params of layer " << l << ": its weights are not in host memory");
    std::vector<std::pair<void*, const void*>> copies;
    std::vector<size_t> sizes;
    segments(l, 0, g.n, [&](Param& p, int64_t, int64_t len, int64_t pos) {
      const size_t nbytes = static_cast<size_t>(len) * p.w.element_size();
      auto* impl = p.w.storage().unsafeGetStorageImpl();
      impl->set_data_ptr_noswap(impl->allocator()->allocate(nbytes));
      impl->set_nbytes(nbytes);
      copies.emplace_back(p.w.data_ptr(), static_cast<const char*>(src.data_ptr()) + pos * src.element_size());
      sizes.push_back(nbytes);
    });
    auto& s = streamedLayers.at(l);
#if MMOC_HAS_CUDA
    if (cuda) {
      afterCompute(*h2d);  // the blocks may have been freed by kernels still running
      s.ready = onStream(*h2d, TRACK_H2D, step, pc, [&] {
        for (size_t i = 0; i < copies.size(); ++i)
          MMOC_CHECK(cudaMemcpyAsync(copies[i].first, copies[i].second, sizes[i], cudaMemcpyHostToDevice, h2d->stream()) == cudaSuccess,
                     "fetch_params of layer " << l << ": cudaMemcpyAsync failed");
      });
      return;
    }
#endif
    hostSlice(TRACK_H2D, step, pc, [&] {
      for (size_t i = 0; i < copies.size(); ++i) std::memcpy(copies[i].first, copies[i].second, sizes[i]);
    });
  }
  /** Issues queued fetches while slots are free; with `until` >= 0, also over the slots until that
   *  layer is resident. */
  void pumpFetches(int until = -1) {
    while (!fetchQueue.empty()) {
      const auto [l, pc] = fetchQueue.front();
      auto& s = streamedLayers.at(l);
      if (!s.resident) {
        if (slotsUsed >= streamSlots && (until < 0 || streamedLayers.at(until).resident)) return;
        fillLayer(l, pc);
        s.resident = true, ++slotsUsed;
        peakResident = std::max(peakResident, slotsUsed);
      }
      ++s.uses;
      fetchQueue.pop_front();
    }
  }
  void endUse(int l) {
    auto& s = streamedLayers.at(l);
    MMOC_CHECK(s.uses > 0, "release of streamed layer " << l << " with no fetched use");
    if (--s.uses > 0) return;
    freeLayer(l);  // the caching allocator reuses the blocks in compute-stream order
    s.resident = false, --slotsUsed;
    pumpFetches();
  }
  /** Before a use: the layer's copy must have landed (the compute stream waits for it). */
  void awaitLayer(int l) {
    auto& s = streamedLayers.at(l);
    if (!s.resident) {
      // its fetch is still queued behind the slots: a program that uses a layer it has not fetched
      // ahead, or slots held by uses that end later; issue it now (one layer over the plan's slots)
      bool queued = false;
      for (auto& q : fetchQueue) queued = queued || q.first == l;
      MMOC_CHECK(queued, "layer " << l << " is streamed but used without a fetch_params before it");
      pumpFetches(l);
    }
#if MMOC_HAS_CUDA
    if (cuda && s.ready) s.ready->block(c10::cuda::getCurrentCUDAStream(device.index()));
#endif
  }
  int holdLayer = -1;  // the layer whose recompute forward runs now (per-layer recompute)
  void onStreamedHook(int l, int phase) {
    std::lock_guard<std::recursive_mutex> lk(streamMu);
    auto it = streamedLayers.find(l);
    if (it == streamedLayers.end()) return;
    if (phase == 0 || phase == 2) {
      awaitLayer(l);
    } else if (phase == 1 && l == holdLayer) {
      // per-layer recompute: the layer's backward comes next and ends this use
    } else {
      endUse(l);
      ++it->second.credits;
    }
  }
  int64_t fetchParams(int layer) {
    std::lock_guard<std::recursive_mutex> lk(streamMu);
    MMOC_CHECK(streamedLayers.count(layer), "fetch_params of layer " << layer << ", which this rank does not hold");
    fetchQueue.emplace_back(layer, curPc);
    pumpFetches();
    return (layerNumel(layer)) * c10::elementSize(model->compute);
  }
  int64_t releaseParams(int layer) {
    std::lock_guard<std::recursive_mutex> lk(streamMu);
    auto it = streamedLayers.find(layer);
    MMOC_CHECK(it != streamedLayers.end(), "release_params of layer " << layer << ", which is not streamed on this rank");
    if (it->second.credits > 0) --it->second.credits;
    else endUse(layer);
    return 0;
  }
  /** Run end: streamed layers back on the device (saving reads them). */
  void materializeStreamed() {
    std::lock_guard<std::recursive_mutex> lk(streamMu);
    for (auto& kv : streamedLayers)
      if (!kv.second.resident) {
        fillLayer(kv.first, -1);
        kv.second.resident = true;
      }
    drainAsync();
  }

  /** Kept activations on the host (activation offload): the stage inputs ({mb, stage}) and, with
   *  per-layer recompute, the layers' inputs ({mb, layer}). */
  struct HostAct {
    at::Tensor h;  // pinned on CUDA
#if MMOC_HAS_CUDA
    std::shared_ptr<at::cuda::CUDAEvent> ev;  // its GPU -> host copy is done
#endif
    int64_t bytes() const { return static_cast<int64_t>(h.nbytes()); }
  };
  std::map<Key, HostAct> hostAct, hostLayerAct;
#if MMOC_HAS_CUDA
  std::map<Key, std::shared_ptr<at::cuda::CUDAEvent>> layerInReady;  // reloaded layer inputs' copies
#endif
  /** A device tensor to host memory on the copy stream after the compute issued so far. */
  HostAct actToHost(const at::Tensor& src) {
    auto d = src.detach();
    HostAct a;
    a.h = at::empty(d.sizes(), d.options().device(at::kCPU).pinned_memory(cuda).requires_grad(false));
#if MMOC_HAS_CUDA
    if (cuda) {
      afterCompute(*d2h);
      a.ev = onStream(*d2h, TRACK_D2H, step, curPc, [&] { a.h.copy_(d, /*non_blocking=*/true); });
      // the device block goes back to the allocator only once the copy stream is done with it
      c10::cuda::CUDACachingAllocator::recordStream(d.storage().data_ptr(), *d2h);
      return a;
    }
#endif
    a.h.copy_(d);
    return a;
  }
  /** Back to the device on the host -> GPU stream; the compute stream waits for it on the device
   *  (now, or with `ready`, where the caller blocks on it before the use). */
#if MMOC_HAS_CUDA
  at::Tensor actToDevice(const HostAct& a, std::shared_ptr<at::cuda::CUDAEvent>* ready = nullptr) {
#else
  at::Tensor actToDevice(const HostAct& a) {
#endif
    at::Tensor d;
#if MMOC_HAS_CUDA
    if (cuda) {
      d = at::empty(a.h.sizes(), a.h.options().device(device).pinned_memory(false));
      a.ev->block(*h2d);      // its offload landed
      afterCompute(*h2d);     // the block `d` got may have been freed by kernels still running
      auto hsrc = a.h;
      auto done = onStream(*h2d, TRACK_H2D, step, curPc, [&] { d.copy_(hsrc, /*non_blocking=*/true); });
      c10::cuda::CUDACachingAllocator::recordStream(d.storage().data_ptr(), *h2d);
      if (ready) *ready = done;
      else done->block(c10::cuda::getCurrentCUDAStream(device.index()));  // the backward waits on the device, not here
      hostKeep.push_back(hsrc);  // the pinned source lives until the step end
      return d;
    }
#endif
    return a.h.to(device, /*non_blocking=*/false, /*copy=*/true);
  }
  /** Moves a kept activation from the device map to the host map under the same key; its bytes. */
  int64_t actOut(std::map<Key, at::Tensor>& dev, std::map<Key, at::Tensor>::iterator it, std::map<Key, HostAct>& to) {
    auto a = actToHost(it->second);
    const int64_t bytes = a.bytes();
    to[it->first] = a;
    dev.erase(it);
    return bytes;
  }
  /** The kept activations of (mb, stage) to host memory (the device tensors are dropped): the stage
   *  input (not the first stage's: token ids) and, with per-layer recompute, every layer's input. */
  int64_t offloadAct(int mb, int s) {
    const auto& st = stage(s);
    int64_t bytes = 0;
    if (st.lo > 0) {
      auto it = input.find({mb, s});
      MMOC_CHECK(it != input.end(), "offload_act mb " << mb << " stage " << s << ": no stage input (before its forward?)");
      bytes += actOut(input, it, hostAct);
    }
    if (st.recompute && st.recomputeLayers)
      for (int l = st.lo + 1; l < st.hi; ++l) {
        auto h = hostLayerAct.find({mb, l});
        if (h != hostLayerAct.end()) {  // offloaded by the forward already
          bytes += h->second.bytes();
          continue;
        }
        auto it = layerIn.find({mb, l});
        MMOC_CHECK(it != layerIn.end(), "offload_act mb " << mb << " stage " << s << ": no input of layer " << l << " (before its forward?)");
        bytes += actOut(layerIn, it, hostLayerAct);
      }
    return bytes;
  }
  int64_t reloadAct(int mb, int s) {
    const auto& st = stage(s);
    int64_t bytes = 0;
    if (st.lo > 0) {
      auto it = hostAct.find({mb, s});
      MMOC_CHECK(it != hostAct.end(), "reload_act mb " << mb << " stage " << s << " without offload_act before it");
      auto d = actToDevice(it->second);
      d.requires_grad_(true);
      input[{mb, s}] = d;
      bytes += d.numel() * d.element_size();
      hostAct.erase(it);
    }
    if (st.recompute && st.recomputeLayers)
      for (int l = st.lo + 1; l < st.hi; ++l) {
        auto it = hostLayerAct.find({mb, l});
        MMOC_CHECK(it != hostLayerAct.end(), "reload_act mb " << mb << " stage " << s << ": layer " << l << "'s input was not offloaded");
        // the backward brings each back one layer ahead of its use
        bytes += it->second.bytes();
      }
    return bytes;
  }
  std::vector<at::Tensor> hostKeep;  // pinned sources of copies in flight (cleared at the step end)

  /** On the worker: the CPU-updated weights of a layer to the device (on CUDA on the host -> GPU
   *  stream, timed by its events; on CPU ranks a copy timed by the wall clock). */
  void copyUp(HostGroup& g, int layer, int st, int pc) {
    at::NoGradGuard ng;
    const auto& src = g.wout.defined() ? g.wout : g.master;
    MMOC_CHECK(src.defined(), "upload of layer " << layer << ": its weights are not in host memory");
    auto copy = [&](bool async) {
      segments(layer, g.start, g.n, [&](Param& p, int64_t off, int64_t len, int64_t pos) {
        p.w.detach().reshape({-1}).narrow(0, off, len).copy_(src.narrow(0, pos - g.start, len), /*non_blocking=*/async);
      });
    };
#if MMOC_HAS_CUDA
    if (cuda) {
      onStream(*h2d, TRACK_H2D, st, pc, [&] { copy(true); });
      return;
    }
#endif
    hostSlice(TRACK_H2D, st, pc, [&] { copy(false); });
  }

  /** upload_params: after the layer's CPU step (on the worker, in order), its weights go up. */
  int64_t uploadParams(int layer) {
    auto& g = hostGroup(layer);
    // nothing new on the host (the delayed update's first step: no gradients, no update; its
    // upload would write the host buffer's initial contents over the weights)
    if (g.onDevice == g.updates) return 0;
    g.onDevice = g.updates;
    HostGroup* gp = &g;
#if MMOC_HAS_CUDA
    // the copy overwrites weights the compute stream may still read (kernels issued before this)
    std::shared_ptr<at::cuda::CUDAEvent> issued;
    if (cuda) {
      issued = std::make_shared<at::cuda::CUDAEvent>(cudaEventDisableTiming);
      issued->record(c10::cuda::getCurrentCUDAStream(device.index()));
    }
#endif
    const int st = step, pc = curPc;
    std::ostringstream what;
    what << "upload_params of layer " << layer;
    g.ticket = hostTask(/*track: the copy times itself*/ -1, what.str(), [=] {
#if MMOC_HAS_CUDA
      if (issued) issued->block(*h2d);
#endif
      copyUp(*gp, layer, st, pc);
    });
    return (g.n - g.start) * c10::elementSize(model->compute);
  }
  void planEarlyUpdate() {
    if (envOn("MMOC_NO_EARLY_UPDATE")) return;
    const auto& prog = cfg.program;
    std::map<int, int> lastBwdPc, lastBwdMb;
    for (int pc = 0; pc < static_cast<int>(prog.size()); ++pc) {
      const auto& in = prog[pc];
      switch (in.op) {
        case OP_FORWARD: case OP_SEND_ACT: case OP_RECV_ACT: case OP_SEND_GRAD: case OP_RECV_GRAD: case OP_BARRIER: break;
        case OP_BACKWARD: lastBwdPc[in.stage] = pc, lastBwdMb[in.stage] = in.mb; break;
        case OP_OPTIMIZER_STEP:
          if (in.tier != 0 || in.fraction < 1.0) return;
          break;
        default: return;  // grad_norm (clipping needs every gradient), allreduce_grads, offload
      }
    }
    const int L = cfg.model.layers;
    const bool all = envOn("MMOC_EARLY_UPDATE_ALL");
    for (auto& kv : lastBwdPc) {
      const auto& st = stage(kv.first);
      bool ok = true;
      // a stage whose last backward sends its input gradient to another rank keeps its updates at
      // the instructions (after the send): updates overlapping that backward would delay the
      // gradient the previous stage waits for (measured on 2x H200: the pipeline slows down)
      if (!all)
        for (int pc = kv.second + 1; pc < static_cast<int>(prog.size()) && ok; ++pc)
          if (prog[pc].op == OP_SEND_GRAD && prog[pc].stage == kv.first && prog[pc].mb == lastBwdMb[kv.first] &&
              prog[pc].peer != cfg.rank)
            ok = false;
      for (int l = std::max(st.lo, 1); l < std::min(st.hi, L + 1) && ok; ++l) {
        bool found = false;
        for (int pc = kv.second + 1; pc < static_cast<int>(prog.size()) && !found; ++pc)
          found = prog[pc].op == OP_OPTIMIZER_STEP && prog[pc].layer == l;
        ok = found;
      }
      if (!ok) continue;
      earlyLastMb[kv.first] = lastBwdMb[kv.first];
      for (int l = std::max(st.lo, 1); l < std::min(st.hi, L + 1); ++l) earlyLayers.insert(l);
    }
#if MMOC_HAS_CUDA
    if (cuda && !earlyLayers.empty()) {
      optStream = c10::cuda::getStreamFromPool(/*isHighPriority=*/false, device.index());
      for (int l : earlyLayers) earlyEv.emplace(l, at::cuda::CUDAEvent(0));
    }
#endif
  }

  /** Gradient hook of layer `l` (its backward is complete): its update, now. */
  void earlyUpdate(int l) {
    if (!earlyLayers.count(l) || earlyDone[l]) return;
#if MMOC_HAS_CUDA
    if (cuda) {
      at::cuda::CUDAEvent ready(0);
      ready.record(c10::cuda::getCurrentCUDAStream(device.index()));
      ready.block(*optStream);
      {
        c10::cuda::CUDAStreamGuard g(*optStream);
        adamw(l);
      }
      earlyEv.at(l).record(*optStream);
      earlyDone[l] = true;
      return;
    }
#endif
    adamw(l);
    earlyDone[l] = true;
  }

  /** Runs a stage's forward with the early-update hooks when it is the stage's last micro-batch. */
  at::Tensor runStageHooked(int mb, int s, at::Tensor x) { return runLayersHooked(mb, s, stage(s).lo, stage(s).hi, x); }
  /** runLayers with the early-update hooks when this is the stage's last micro-batch. */
  at::Tensor runLayersHooked(int mb, int s, int lo, int hi, at::Tensor x) {
    auto it = earlyLastMb.find(s);
    if (it == earlyLastMb.end() || it->second != mb || !at::GradMode::is_enabled()) return runLayers(mb, lo, hi, x);
    model->onLayerGrad = [this](int l) { earlyUpdate(l); };
    try {
      auto y = runLayers(mb, lo, hi, x);
      model->onLayerGrad = nullptr;
      return y;
    } catch (...) {
      model->onLayerGrad = nullptr;
      throw;
    }
  }

  /** After the step's async work drained: the delayed updates of streamed layers become the weights
   *  the next step's fetches read. */
  void swapFetchedWeights() {
    for (auto& kv : host) {
      auto& g = kv.second;
      if (!g.swapAtEnd) continue;
      if (g.wout.defined()) std::swap(g.wfetch, g.wout);  // the next update overwrites all of wout
      else g.wfetch.copy_(g.master);                      // fp32: the master is the update's output
      g.swapAtEnd = false;
    }
  }
  void endStep() {
    for (auto& kv : host)
      if (kv.second.gradStep == step) kv.second.clipAtGrad = clipCoef;
  }

  void beginStep() {
    earlyDone.clear();
    if (cuda) stepT = at::full({}, static_cast<double>(step + 1), at::TensorOptions().dtype(at::kFloat).device(device));
  }

  void loadData() {
    std::ifstream in(cfg.dataPath, std::ios::binary);
    MMOC_CHECK(in, cfg.dataPath << ": cannot open token file: " << std::strerror(errno));
    std::vector<char> raw((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const bool wide = cfg.model.vocab > 65536;
    const size_t w = wide ? 4 : 2;
    MMOC_CHECK(raw.size() % w == 0, cfg.dataPath << ": " << raw.size() << " bytes is not a whole number of "
                                                 << (wide ? "uint32" : "uint16") << " tokens");
    fileTokens.resize(raw.size() / w);
    for (size_t i = 0; i < fileTokens.size(); ++i) {
      uint32_t v = 0;
      std::memcpy(&v, raw.data() + i * w, w);
      MMOC_CHECK(static_cast<int>(v) < cfg.model.vocab,
                 cfg.dataPath << ": token " << v << " at index " << i << " is outside the vocabulary (" << cfg.model.vocab << ")");
      fileTokens[i] = v;
    }
    MMOC_CHECK(fileTokens.size() >= static_cast<size_t>(cfg.seq + 1),
               cfg.dataPath << ": " << fileTokens.size() << " tokens, fewer than one sequence of " << cfg.seq + 1);
  }

  /** Tokens of micro-batch `mb` of step `step`: identical on every rank and layout. */
  void makeBatch(int mb) {
    const int B = cfg.microBatchSize, S = cfg.seq;
    auto t = at::empty({B, S + 1}, at::TensorOptions().dtype(at::kLong));
    auto* p = t.data_ptr<int64_t>();
    for (int b = 0; b < B; ++b) {
      // replica k of D reads micro-batches k*M .. k*M+M-1 of the step's D*M
      const uint64_t sample = ((static_cast<uint64_t>(step) * replicas() + replica()) * cfg.microBatches + mb) * B + b;
      if (fileTokens.empty()) {
        uint64_t x = cfg.seed * 0x9E3779B97F4A7C15ull + sample * 0xD1B54A32D192ED03ull + 1;
        for (int s = 0; s <= S; ++s) {
          x += 0x9E3779B97F4A7C15ull;
          uint64_t z = x;
          z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
          z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
          z ^= z >> 31;
          p[b * (S + 1) + s] = static_cast<int64_t>(z % static_cast<uint64_t>(cfg.model.vocab));
        }
      } else {
        const uint64_t nseq = fileTokens.size() / (S + 1);
        const uint64_t start = (sample % nseq) * (S + 1);
        for (int s = 0; s <= S; ++s) p[b * (S + 1) + s] = fileTokens[start + s];
      }
    }
    tokens[mb] = t.narrow(1, 0, S).contiguous().to(device);
    labels[mb] = t.narrow(1, 1, S).contiguous().to(device);
    mask[mb] = at::ones({B, S}, at::TensorOptions().dtype(at::kFloat).device(device));
  }

  at::Tensor actBuffer() {
    return at::empty({cfg.microBatchSize, cfg.seq, cfg.model.hidden},
                     at::TensorOptions().dtype(model->compute).device(device));
  }

  bool isLocal(int s) const { return s >= 0 && s < static_cast<int>(cfg.stages.size()) && cfg.stages[s].rank == prank(); }

  at::Tensor stageInput(int mb, int s) {
    const auto& st = stage(s);
    if (st.lo == 0) {
      if (!tokens.count(mb)) makeBatch(mb);
      return tokens[mb];
    }
    auto it = input.find({mb, s});
    if (it != input.end()) return it->second;
    // previous stage on this rank: chain without communication
    MMOC_CHECK(isLocal(s - 1) && output.count({mb, s - 1}),
               "forward mb " << mb << " stage " << s << ": no input (missing recv_act before it?)");
    auto x = output[{mb, s - 1}].detach().requires_grad_(true);
    input[{mb, s}] = x;
    return x;
  }

  /** Runs layers [lo, hi) of micro-batch `mb` on `x` (the loss when hi passes the head). */
  at::Tensor runLayers(int mb, int lo, int hi, at::Tensor x) {
    at::Tensor lab, msk;
    if (hi == lastLayer() + 1) {
      if (!labels.count(mb)) makeBatch(mb);
      lab = labels[mb], msk = mask[mb];
    }
    return model->forward(lo, hi, x, lab, msk, normaliser);
  }
  at::Tensor runStage(int mb, int s, at::Tensor x) { return runLayers(mb, stage(s).lo, stage(s).hi, x); }

  void forward(int mb, int s) {
    const auto& st = stage(s);
    auto x = stageInput(mb, s);
    at::Tensor y;
    if (st.recompute && st.recomputeLayers) {
      // keep every layer's input for its recompute in backward: (B, S, H) each
      // with activation offload each goes to host memory as soon as it exists (the program's
      // offload_act then only confirms): one or two layer inputs on the device at a time
      at::NoGradGuard ng;
      const bool early = offloadsActs(s);
      y = x;
      for (int l = st.lo; l < st.hi; ++l) {
        if (l > st.lo) {
          if (early) hostLayerAct[{mb, l}] = actToHost(y);
          else layerIn[{mb, l}] = y;
        }
        y = runLayers(mb, l, l + 1, y);
      }
    } else if (st.recompute) {
      at::NoGradGuard ng;
      y = runStage(mb, s, x);
    } else {
      y = runStageHooked(mb, s, x);
    }
    if (st.hi == lastLayer() + 1) {
      // kept on the device and read once at the step end (no host sync per micro-batch)
      auto l = y.detach().to(at::kDouble);
      lossAcc = lossAcc.defined() ? lossAcc + l : l;
      hasLoss = true;
    }
    output[{mb, s}] = y;
  }

  void backward(int mb, int s) {
    const auto& st = stage(s);
    auto it = output.find({mb, s});
    MMOC_CHECK(it != output.end(), "backward mb " << mb << " stage " << s << " before its forward");
    at::Tensor y = it->second;
    if (st.recompute && st.recomputeLayers) {
      backwardByLayer(mb, s);
      return;
    }
    if (st.recompute) y = runStageHooked(mb, s, stageInput(mb, s));
    if (st.hi == lastLayer() + 1) {
      y.backward();
    } else {
      auto g = gradOut.find({mb, s});
      MMOC_CHECK(g != gradOut.end(), "backward mb " << mb << " stage " << s << ": no output gradient (missing recv_grad before it?)");
      y.backward(g->second);
      gradOut.erase(g);
    }
    output.erase({mb, s});
    finishBackward(mb, s);
  }
  /** Per-layer recompute: from the last layer down, each layer's forward again from its kept input
   *  (with autograd), then its backward; one layer's activations live at a time. A streamed layer
   *  stays resident from its recompute through its backward (one fetch for both). */
  void backwardByLayer(int mb, int s) {
    const auto& st = stage(s);
    const bool head = st.hi == lastLayer() + 1;
    at::Tensor g;  // gradient of the current layer's output, (B, S, H)
    if (!head) {
      auto it = gradOut.find({mb, s});
      MMOC_CHECK(it != gradOut.end(), "backward mb " << mb << " stage " << s << ": no output gradient (missing recv_grad before it?)");
      g = it->second;
      gradOut.erase(it);
    }
    output.erase({mb, s});
    for (int l = st.hi - 1; l >= st.lo; --l) {
      at::Tensor x;
      // offloaded layer inputs come back one layer ahead (this one, if not yet, and the next)
      for (int q = l; q >= std::max(st.lo + 1, l - 1); --q) {
        auto h = hostLayerAct.find({mb, q});
        if (h == hostLayerAct.end() || layerIn.count({mb, q})) continue;
#if MMOC_HAS_CUDA
        layerIn[{mb, q}] = actToDevice(h->second, &layerInReady[{mb, q}]);
#else
        layerIn[{mb, q}] = actToDevice(h->second);
#endif
        hostLayerAct.erase(h);
      }
#if MMOC_HAS_CUDA
      if (auto r = layerInReady.find({mb, l}); r != layerInReady.end()) {
        if (r->second) r->second->block(c10::cuda::getCurrentCUDAStream(device.index()));
        layerInReady.erase(r);
      }
#endif
      if (l == st.lo) {
        x = stageInput(mb, s);
      } else {
        auto it = layerIn.find({mb, l});
        MMOC_CHECK(it != layerIn.end(), "backward mb " << mb << " stage " << s << ": no kept input of layer " << l << " (offloaded without reload_act?)");
        x = it->second.detach().requires_grad_(true);
        layerIn.erase(it);
      }
      holdLayer = l;  // a streamed layer is not released after this forward: its backward follows
      at::Tensor y;
      try {
        y = runLayersHooked(mb, s, l, l + 1, x);
      } catch (...) {
        holdLayer = -1;
        throw;
      }
      holdLayer = -1;
      if (l == lastLayer()) y.backward();
      else y.backward(g);
      if (offloadsEachBackward(s, l)) {
        // its gradients are complete: to the host now, not after the stage's backward (the program's
        // offload_grads of this layer then only confirms it), so one layer's gradients live at a time
        // traced at the pc of that offload_grads (measured and predicted pair by pc)
        const int pc0 = curPc;
        for (int q = pc0 + 1; q < static_cast<int>(cfg.program.size()); ++q)
          if (cfg.program[q].op == OP_OFFLOAD_GRADS && cfg.program[q].layer == l) {
            curPc = q;
            break;
          }
        try {
          offloadGrads(l);
        } catch (...) {
          curPc = pc0;
          throw;
        }
        curPc = pc0;
        earlyOffloaded.insert(l);
      }
      if (l > st.lo) {
        g = x.grad();
        MMOC_CHECK(g.defined(), "backward mb " << mb << " stage " << s << ": layer " << l << "'s input got no gradient");
      }
    }
    finishBackward(mb, s);
  }
  /** Layers whose program offloads their gradients after every backward of their stage, updated wholly
   *  on the host: per-layer recompute offloads each as soon as its backward is done. */
  std::set<int> earlyOffloaded;
  /** Does the program offload the kept activations of stage `s` (activation offload)? */
  std::map<int, bool> actOffload;
  bool offloadsActs(int s) {
    auto it = actOffload.find(s);
    if (it != actOffload.end()) return it->second;
    bool yes = false;
    for (const auto& in : cfg.program) yes = yes || (in.op == OP_OFFLOAD_ACT && in.stage == s);
    actOffload[s] = yes;
    return yes;
  }
  std::map<int, bool> offloadEach;
  bool offloadsEachBackward(int s, int l) {
    auto it = offloadEach.find(l);
    if (it != offloadEach.end()) return it->second;
    int backwards = 0;
    for (const auto& in : cfg.program) backwards += in.op == OP_BACKWARD && in.stage == s;
    auto hs = hostStart.find(l);
    const bool yes = backwards > 0 && offloadsPerStep[l] == backwards && hs != hostStart.end() && hs->second == 0 && !dp;
    offloadEach[l] = yes;
    return yes;
  }
  /** After a stage's backward: its input gradient to the previous stage, the micro-batch's tensors dropped. */
  void finishBackward(int mb, int s) {
    const auto& st = stage(s);
    if (st.lo > 0) {
      auto in = input.find({mb, s});
      at::Tensor gi = in->second.grad();
      MMOC_CHECK(gi.defined(), "backward mb " << mb << " stage " << s << ": the stage input got no gradient");
      if (isLocal(s - 1)) gradOut[{mb, s - 1}] = gi;
      else gradIn[{mb, s}] = gi;
      input.erase(in);
    } else {
      tokens.erase(mb);
    }
    if (st.hi == lastLayer() + 1) labels.erase(mb), mask.erase(mb);
  }

  Comm& need(std::unique_ptr<Comm>& c, const Instr& in) {
    MMOC_CHECK(c, opName(in.op) << " needs more than one rank (world size " << cfg.world << ")");
    return *c;
  }

  void send(Comm& c, at::Tensor t, int peer, int tag) {
    t = t.detach().contiguous();
    pending.push_back({c.send(t, peer, tag), t});
  }

  /** Sums the tied embedding's gradient across the embedding's and the head's ranks (once a step). */
  void syncTied() {
    if (!tiedSplit || tiedSynced) return;
    at::NoGradGuard ng;
    auto g = model->layers.at(0)[0].grad();
    if (!g.defined()) g = model->layers.at(0)[0].w.mutable_grad() = at::zeros_like(model->layers.at(0)[0].w);
    // the head's copy is no layer of its stage, so no allreduce_grads summed it over the replicas
    if (dp && model->copies.count(0)) dp->allreduceSum(g)->wait();
    tied->allreduceSum(g)->wait();
    tiedSynced = true;
  }
  /** Step end: the tied sum when no grad_norm did it, and an update that waited for it. */
  void finishTied() {
    if (!tiedSplit) return;
    syncTied();
    if (tiedPending) adamw(0);
    tiedPending = false;
    tiedSynced = false;
  }

  void waitPending() {
    for (auto& p : pending) p.work->wait();
    pending.clear();
  }

  int64_t exec(const Instr& in) {
    const int64_t actBytes = static_cast<int64_t>(cfg.microBatchSize) * cfg.seq * cfg.model.hidden *
                             c10::elementSize(model->compute);
    // a transfer to or from this rank itself (consecutive stages on one rank): the stages chain
    // locally (stageInput / backward hand the tensors over), nothing to send
    if ((in.op == OP_SEND_ACT || in.op == OP_RECV_ACT || in.op == OP_SEND_GRAD || in.op == OP_RECV_GRAD) &&
        in.peer == cfg.rank)
      return 0;
    switch (in.op) {
      case OP_FORWARD: forward(in.mb, in.stage); return 0;
      case OP_BACKWARD: backward(in.mb, in.stage); return 0;
      case OP_SEND_ACT: {
        auto it = output.find({in.mb, in.stage});
        MMOC_CHECK(it != output.end(), "send_act mb " << in.mb << " stage " << in.stage << " before its forward");
        send(need(fwd, in), it->second, in.peer, in.mb);
        if (stage(in.stage).recompute) output[{in.mb, in.stage}] = it->second.detach();
        return actBytes;
      }
      case OP_RECV_ACT: {
        auto buf = actBuffer();
        need(fwd, in).recv(buf, in.peer, in.mb)->wait();
        input[{in.mb, in.stage}] = buf.requires_grad_(true);
        return actBytes;
      }
      case OP_SEND_GRAD: {
        auto it = gradIn.find({in.mb, in.stage});
        MMOC_CHECK(it != gradIn.end(), "send_grad mb " << in.mb << " stage " << in.stage << " before its backward");
        send(need(bwd, in), it->second, in.peer, in.mb);
        gradIn.erase(it);
        return actBytes;
      }
      case OP_RECV_GRAD: {
        auto buf = actBuffer();
        need(bwd, in).recv(buf, in.peer, in.mb)->wait();
        gradOut[{in.mb, in.stage}] = buf;
        return actBytes;
      }
      case OP_GRAD_NORM: {
        at::NoGradGuard ng;
        syncTied();
        auto sq = at::zeros({1}, at::TensorOptions().dtype(at::kFloat).device(device));
        for (auto& kv : model->layers)
          if (!model->copies.count(kv.first))  // a tied copy's gradient counts once, on its own rank
            for (auto& p : kv.second)
            if (p.grad().defined()) sq += p.grad().to(at::kFloat).pow(2).sum();
        worker.drain();  // host gradient accumulation finished
        for (auto& kv : host) {  // gradients on the host (the device buffers are gone)
          auto& g = kv.second;
          if (!(g.accumulate || g.devGradsFreed) || g.gradStep != step || model->copies.count(kv.first)) continue;
#if MMOC_HAS_CUDA
          if (g.devGradsFreed && g.gradEv[g.buf(step)]) g.gradEv[g.buf(step)]->synchronize();
#endif
          sq += g.grad[g.buf(step)].to(at::kFloat).pow(2).sum().to(device);
        }
        if (world) world->allreduceSum(sq)->wait();
        // after allreduce_grads every replica holds the same gradients: count them once
        gradNorm = std::sqrt(sq.item<double>() / replicas());
        clipCoef = (cfg.optim.clip > 0 && gradNorm > cfg.optim.clip) ? cfg.optim.clip / (gradNorm + 1e-6) : 1.0;
        return 4;
      }
      case OP_OPTIMIZER_STEP: {
        if (in.tier == 1) {
          MMOC_CHECK(!(tiedSplit && (in.layer == 0 || in.layer == lastLayer())),
                     "optimizer_step on tier cpu of a tied layer split across ranks is not supported");
          hostStep(in.layer);
          return 0;
        }
        if (in.fraction < 1.0) {
          auto hs = hostStart.find(in.layer);
          MMOC_CHECK(hs != hostStart.end(), "optimizer_step of layer " << in.layer << " on the gpu with fraction " << in.fraction
                                              << " but no cpu step for the rest");
          adamw(in.layer, hs->second);
          return 0;
        }
        if (earlyDone[in.layer]) {
          // issued by the layer's gradient hook: order the compute stream after it
#if MMOC_HAS_CUDA
          if (cuda) earlyEv.at(in.layer).block(c10::cuda::getCurrentCUDAStream(device.index()));
#endif
          earlyDone[in.layer] = false;
          return 0;
        }
        if (tiedSplit && (in.layer == 0 || in.layer == lastLayer())) {
          if (in.layer == lastLayer()) adamw(in.layer);  // final norm (and nothing tied in it)
          if (tiedSynced) adamw(0);
          else tiedPending = true;  // after the gradient sum at the step end
          return 0;
        }
        adamw(in.layer);
        return 0;
      }
      case OP_ALLREDUCE_GRADS: {
        MMOC_CHECK(dp, "allreduce_grads needs data-parallel replicas (layout.dataParallel > 1)");
        auto it = model->layers.find(in.layer);
        MMOC_CHECK(it != model->layers.end(), "allreduce_grads of layer " << in.layer << ", which this rank does not hold");
        int64_t bytes = 0;
        for (auto& p : it->second) {
          auto g = p.grad();
          if (!g.defined()) continue;
          dp->allreduceSum(g)->wait();  // in place: the sum over replicas (the loss is normalised by all of them)
          bytes += g.numel() * g.element_size();
        }
        return bytes;
      }
      case OP_BARRIER: waitPending(); return 0;
      case OP_OFFLOAD_GRADS:
        if (earlyOffloaded.erase(in.layer)) return (layerNumel(in.layer) - hostGroup(in.layer).start) * c10::elementSize(model->compute);
        return offloadGrads(in.layer);
      case OP_FETCH_PARAMS: return fetchParams(in.layer);
      case OP_DISK_WRITE:
      case OP_DISK_READ: {
        // on the disk worker of the group's path (one a path: a rank's transfers on different paths
        // overlap), after the group's update (disk_write) or the rank's disk_write issued before it
        // (disk_read: bounds the groups staged in host memory); its update waits for its read
        auto& g = hostGroup(in.layer);
        HostGroup* gp = &g;
        initDiskDirs();
        const int layer = in.layer, st = step, pc = curPc;
        const bool write = in.op == OP_DISK_WRITE, keep = write && keptAfter(layer, st);
        if (write && g.diskPath < 0) g.diskPath = std::max(0, in.peer);
        const int path = g.diskPath >= 0 ? g.diskPath : std::max(0, in.peer);
        HostWorker& dw = diskWorker(path);
        HostWorker* mainW = &worker;
        const uint64_t upd = write ? g.ticket : 0;
        const DiskDep before = write ? DiskDep{} : lastDiskWriteDep;
        std::ostringstream what;
        what << opName(in.op) << " of layer " << layer;
        const uint64_t t = dw.push(
            [=, &dw] {
              at::NoGradGuard ng;
              if (upd) mainW->waitFor(upd);
              if (before.w && before.w != &dw) before.w->waitFor(before.t);
              hostSlice(TRACK_DISK, st, pc, [&] {
                // tests: MMOC_DISK_DELAY_MS makes every transfer last at least that long
                if (const char* d = std::getenv("MMOC_DISK_DELAY_MS"); d && std::atoi(d) > 0)
                  std::this_thread::sleep_for(std::chrono::milliseconds(std::atoi(d)));
                if (write) diskWrite(*gp, layer, path, st, keep);
                else diskRead(*gp, layer, path);
              });
            },
            what.str());
        g.diskW = &dw, g.diskTicket = t;
        if (write) lastDiskWriteDep = {&dw, t};
        return 3 * (g.n - g.start) * 4;
      }
      case OP_RELEASE_PARAMS: return releaseParams(in.layer);
      case OP_OFFLOAD_ACT: return offloadAct(in.mb, in.stage);
      case OP_RELOAD_ACT: return reloadAct(in.mb, in.stage);
      case OP_UPLOAD_PARAMS: return uploadParams(in.layer);
      default:
        MMOC_FAIL(opName(in.op) << " needs the offload engine (issue 6), not in this executor yet");
    }
  }

  double lrAt(int s) const {
    const auto& o = cfg.optim;
    if (o.warmup > 0 && s < o.warmup) return o.lr * (s + 1) / o.warmup;
    if (!o.cosine) return o.lr;
    const int decay = std::max(1, cfg.totalSteps - o.warmup);
    const double prog = std::min(1.0, static_cast<double>(s - o.warmup) / decay);
    return o.lr * (o.minLrRatio + (1 - o.minLrRatio) * 0.5 * (1 + std::cos(M_PI * prog)));
  }

  /** AdamW of a layer's elements [0, end) (all when end < 0; the rest is the host's). */
  void adamw(int layer, int64_t end = -1) {
    at::NoGradGuard ng;
    auto it0 = model->layers.find(layer);
    MMOC_CHECK(it0 != model->layers.end(), "optimizer_step of layer " << layer << ", which this rank does not hold");
    if (end < 0) return adamwParams(layer, it0->second);
    // views of the device part: the weights and gradients as flat narrow views of the params, the
    // master and states as views of the group's flat device buffers
    std::vector<Param> views;
    auto& g = hostGroup(layer);
    MMOC_CHECK(g.start == end && g.devM.defined(), "layer " << layer << ": device part [0, " << end << ") without its device state");
    segments(layer, 0, end, [&](Param& p, int64_t off, int64_t len, int64_t pos) {
      if (!p.grad().defined()) return;
      Param q;
      auto flat = [&](const at::Tensor& t) { return t.detach().reshape({-1}).narrow(0, off, len); };
      q.name = p.name, q.w = flat(p.w), q.master = model->mixed ? g.devMaster.narrow(0, pos, len) : q.w;
      q.m = g.devM.narrow(0, pos, len), q.v = g.devV.narrow(0, pos, len);
      q.acc = flat(p.grad());
      // weight decay follows the tensor's rank, not the view's
      q.rankForDecay = static_cast<int>(p.w.dim());
      views.push_back(q);
    });
    adamwParams(layer, views);
  }

  static bool decays(const Param& p) { return p.rankForDecay >= 0 ? p.rankForDecay >= 2 : p.master.dim() >= 2; }

  void adamwParams(int layer, std::vector<Param>& params) {
    struct It { std::vector<Param>& second; } itv{params};
    auto* it = &itv;
    const auto& o = cfg.optim;
    const double lr = lrAt(step);
    const int t = step + 1;
    const double bc1 = 1 - std::pow(o.beta1, t), bc2 = 1 - std::pow(o.beta2, t);
#if MMOC_HAS_CUDA_ADAMW
    if (cuda && useCudaAdamw) {
      // one launch per layer (up to kAdamWMaxChunks tensors each): gradients read in their own dtype,
      // the bf16 weights written in the same pass
      std::vector<AdamWChunk> chunks;
      std::vector<at::Tensor> keep;
      bool bf16 = false, first = true;
      for (auto& p : it->second) {
        auto g = p.grad();
        if (!g.defined()) continue;
        if (!p.m.defined()) p.m = at::zeros_like(p.master), p.v = at::zeros_like(p.master);
        if (!g.is_contiguous()) g = g.contiguous(), keep.push_back(g);
        const bool gb = g.scalar_type() == at::kBFloat16;
        MMOC_CHECK(gb || g.scalar_type() == at::kFloat, "CUDA AdamW: gradient dtype " << g.scalar_type());
        MMOC_CHECK(p.master.is_contiguous() && p.m.is_contiguous() && p.v.is_contiguous() && p.master.scalar_type() == at::kFloat,
                   "CUDA AdamW: fp32 contiguous master and states expected");
        if (first) bf16 = gb, first = false;
        MMOC_CHECK(gb == bf16, "CUDA AdamW: mixed gradient dtypes in one layer");
        void* w = nullptr;
        if (model->mixed) {
          MMOC_CHECK(p.w.is_contiguous() && p.w.scalar_type() == at::kBFloat16, "CUDA AdamW: bf16 contiguous weights expected");
          w = p.w.data_ptr();
        }
        chunks.push_back({p.master.data_ptr<float>(), p.m.data_ptr<float>(), p.v.data_ptr<float>(), g.data_ptr(), w,
                          p.master.numel(), static_cast<float>(decays(p) ? o.weightDecay : 0.0)});
      }
      auto stream = c10::cuda::getCurrentCUDAStream(device.index()).stream();
      for (size_t i = 0; i < chunks.size(); i += kAdamWMaxChunks) {
        const int n = static_cast<int>(std::min<size_t>(kAdamWMaxChunks, chunks.size() - i));
        const char* err = adamwCudaLaunch(chunks.data() + i, n, bf16, static_cast<float>(lr), static_cast<float>(o.beta1),
                                          static_cast<float>(o.beta2), static_cast<float>(o.eps), static_cast<float>(bc1),
                                          static_cast<float>(bc2), static_cast<float>(clipCoef), stream);
        MMOC_CHECK(!err, "CUDA AdamW launch: " << err);
      }
      return;  // `keep` (contiguous copies) go back to this stream's pool: reused only after the kernel
    }
#endif
#if MMOC_HAS_FUSED_ADAMW
    if (cuda) {
      std::vector<at::Tensor> ps[2], gs[2], ms[2], vs[2], steps[2];
      if (!stepT.defined()) stepT = at::full({}, static_cast<double>(t), at::TensorOptions().dtype(at::kFloat).device(device));
      for (auto& p : it->second) {
        if (!p.grad().defined()) continue;
        if (!p.m.defined()) p.m = at::zeros_like(p.master), p.v = at::zeros_like(p.master);
        auto g = p.grad().to(at::kFloat);
        if (clipCoef != 1.0) g.mul_(clipCoef);
        const int k = decays(p) ? 0 : 1;
        ps[k].push_back(p.master), gs[k].push_back(g), ms[k].push_back(p.m), vs[k].push_back(p.v);
        steps[k].push_back(stepT);  // read only by the kernel: one scalar tensor for all
      }
      for (int k = 0; k < 2; ++k) {
        if (ps[k].empty()) continue;
        at::_fused_adamw_(ps[k], gs[k], ms[k], vs[k], {}, steps[k], lr, o.beta1, o.beta2, k == 0 ? o.weightDecay : 0.0,
                          o.eps, /*amsgrad=*/false, /*maximize=*/false);
      }
      if (model->mixed) {
#if MMOC_HAS_FOREACH_COPY
        std::vector<at::Tensor> ws, mas;
        for (auto& p : it->second) ws.push_back(p.w), mas.push_back(p.master);
        at::_foreach_copy_(ws, mas);
#else
        for (auto& p : it->second) p.w.copy_(p.master);
#endif
      }
      return;
    }
#endif
    for (auto& p : it->second) {
      if (!p.grad().defined()) continue;
      if (!p.m.defined()) p.m = at::zeros_like(p.master), p.v = at::zeros_like(p.master);
      auto g = p.grad().to(at::kFloat);
      if (clipCoef != 1.0) g = g * clipCoef;
      if (o.weightDecay > 0 && decays(p)) p.master.mul_(1 - lr * o.weightDecay);
      p.m.mul_(o.beta1).add_(g, 1 - o.beta1);
      p.v.mul_(o.beta2).addcmul_(g, g, 1 - o.beta2);
      auto denom = (p.v / bc2).sqrt_().add_(o.eps);
      p.master.addcdiv_(p.m, denom, -lr / bc1);
      if (model->mixed) p.w.copy_(p.master);
    }
  }

  int64_t memBytes() {
#if MMOC_HAS_CUDA
    if (cuda) {
      auto s = c10::cuda::CUDACachingAllocator::getDeviceStats(device.index());
      return s.reserved_bytes[0].current;
    }
#endif
    return rssBytes();
  }
  int64_t peakBytes() {
#if MMOC_HAS_CUDA
    if (cuda) {
      auto s = c10::cuda::CUDACachingAllocator::getDeviceStats(device.index());
      return s.reserved_bytes[0].peak;
    }
#endif
    return peakRssBytes();
  }
  /** CUDA: what the device holds beyond the caching allocator (context, NCCL buffers, cuBLAS
   *  workspaces outside the allocator): device used (cudaMemGetInfo) - allocator reserved. */
  int64_t overhead() {
#if MMOC_HAS_CUDA
    if (cuda) {
      size_t freeB = 0, totalB = 0;
      if (cudaMemGetInfo(&freeB, &totalB) != cudaSuccess) return 0;
      return static_cast<int64_t>(totalB - freeB) - memBytes();
    }
#endif
    return 0;
  }
  int64_t peakAllocated() {
#if MMOC_HAS_CUDA
    if (cuda) {
      auto s = c10::cuda::CUDACachingAllocator::getDeviceStats(device.index());
      return s.allocated_bytes[0].peak;
    }
#endif
    return peakRssBytes();
  }
  void sync() {
#if MMOC_HAS_CUDA
    if (cuda) c10::cuda::getCurrentCUDAStream(device.index()).synchronize();
#endif
  }

  void clearStep() {
    MMOC_CHECK(fetchQueue.empty(), "step end with " << fetchQueue.size() << " fetch_params never issued (streamed layer " << fetchQueue.front().first << ")");
    input.clear(), output.clear(), gradOut.clear(), gradIn.clear(), hostAct.clear(), hostKeep.clear();
    layerIn.clear(), hostLayerAct.clear();
#if MMOC_HAS_CUDA
    layerInReady.clear();
#endif
    tokens.clear(), labels.clear(), mask.clear();
    for (auto& kv : model->layers)
      for (auto& p : kv.second) p.zeroGrad();
  }
};

}  // namespace

RunResult runRank(const RunCfg& cfg, const ProgressFn& progress, const std::atomic<bool>& stop) {
  RunResult res;
  StatusFile status(cfg.statusPath);
  Rank r(cfg);
  int pc = -1;
  auto fail = [&](const std::string& msg) -> Error {
    status.state(2);
    std::ostringstream os;
    os << "rank " << cfg.rank;
    if (pc >= 0 && pc < static_cast<int>(cfg.program.size())) {
      const auto& in = cfg.program[pc];
      os << " step " << r.step << " pc " << pc << " (" << opName(in.op);
      if (in.mb >= 0) os << " mb " << in.mb;
      if (in.stage >= 0) os << " stage " << in.stage;
      if (in.layer >= 0) os << " layer " << in.layer;
      if (in.peer >= 0) os << " peer " << in.peer;
      os << ")";
    } else if (pc == static_cast<int>(cfg.program.size())) {
      os << " step " << r.step << " at the step end";
    } else {
      os << " during set-up";
    }
    if (msg.find("out of memory") != std::string::npos && r.cuda)
      os << " [the GPU ran out of memory" << (cfg.gpuMemCapBytes > 0 ? " under the plan's cap of " + std::to_string(cfg.gpuMemCapBytes >> 20) + " MiB" : "")
         << ": re-plan with a lower --gpu-mem, more offload or recompute, or a smaller micro-batch]";
    os << ": " << msg;
    return Error(os.str());
  };
  try {
    r.setup();
  } catch (const Error& e) {
    throw fail(e.what());
  } catch (const std::exception& e) {
    throw fail(where(__FILE__, __LINE__) + cppError(e));
  }
  res.backend = r.world ? r.world->backend() : "none";
  res.paramCount = r.model->paramCount();
  res.startUs = nowUs();
  const auto origin = Clock::now();
  r.origin = origin;
  const int64_t tokensPerStep = static_cast<int64_t>(cfg.microBatchSize) * cfg.seq * cfg.microBatches;
  const int B = cfg.microBatchSize, S = cfg.seq;

#if MMOC_HAS_CUDA
  std::vector<at::cuda::CUDAEvent> evStart, evEnd;
  if (r.cuda && cfg.trace) {
    evStart.reserve(cfg.program.size()), evEnd.reserve(cfg.program.size());
    for (size_t i = 0; i < cfg.program.size(); ++i) evStart.emplace_back(0), evEnd.emplace_back(0);
  }
#endif

  for (int step = 0; step < cfg.steps; ++step) {
    r.step = step;
    r.beginStep();
    r.stepLoss = 0, r.hasLoss = false, r.gradNorm = 0, r.clipCoef = 1;
    r.normaliser = static_cast<double>(B) * S * cfg.microBatches * (cfg.world / cfg.pipelineRanks);
    const auto t0 = Clock::now();
    std::vector<TraceEv> evs;
    std::vector<int64_t> bytes(cfg.program.size(), 0);
    std::vector<double> cpuStart(cfg.program.size());
#if MMOC_HAS_CUDA
    at::cuda::CUDAEvent stepEv(0);
    double stepEvUs = 0;
    if (r.cuda && cfg.trace) {
      r.sync();
      stepEv.record();
      stepEvUs = std::chrono::duration<double, std::micro>(Clock::now() - origin).count();
    }
#endif
    try {
      for (pc = 0; pc < static_cast<int>(cfg.program.size()); ++pc) {
        const Instr in = r.remap(cfg.program[pc], step);
        status.set(step, pc, in);
        r.curPc = pc;
        const auto a = Clock::now();
#if MMOC_HAS_CUDA
        if (r.cuda && cfg.trace) evStart[pc].record();
#endif
        bytes[pc] = r.exec(in);
#if MMOC_HAS_CUDA
        if (r.cuda && cfg.trace) evEnd[pc].record();
#endif
        if (cfg.trace) {
          const auto b = Clock::now();
          TraceEv ev;
          ev.step = step, ev.pc = pc, ev.op = in.op, ev.mb = in.mb, ev.stage = in.stage, ev.layer = in.layer;
          ev.tsUs = std::chrono::duration<double, std::micro>(a - origin).count();
          ev.durUs = std::chrono::duration<double, std::micro>(b - a).count();
          ev.bytes = bytes[pc];
          ev.memBytes = r.cuda ? r.memBytes() : 0;
          evs.push_back(ev);
        }
      }
      pc = static_cast<int>(cfg.program.size());
      r.finishTied();
      r.endStep();
      r.waitPending();
      r.drainAsync();
      r.swapFetchedWeights();
      r.sync();
      if (r.lossAcc.defined()) r.stepLoss = r.lossAcc.item<double>();
      r.lossAcc = at::Tensor();
    } catch (const Error& e) {
      throw fail(e.what());
    } catch (const std::exception& e) {
      throw fail(where(__FILE__, __LINE__) + cppError(e));
    }
#if MMOC_HAS_CUDA
    if (r.cuda && cfg.trace) {
      for (size_t i = 0; i < evs.size(); ++i) {
        evs[i].tsUs = stepEvUs + stepEv.elapsed_time(evStart[i]) * 1000.0;
        evs[i].durUs = evStart[i].elapsed_time(evEnd[i]) * 1000.0;
      }
    }
#endif
    // asynchronous work: its own slices (copy streams, CPU updates, disk) replace the issue slices;
    // a forward's or backward's own copies (activation offload by layer as the forward makes the
    // inputs, their reloads one layer ahead) are slices of their own beside the compute slice
    const size_t nInstr = evs.size();
    for (auto& sl : r.takeSlices()) {
      if (sl.step != step || sl.pc < 0 || sl.pc >= static_cast<int>(nInstr)) continue;
      if (evs[sl.pc].op == OP_FORWARD || evs[sl.pc].op == OP_BACKWARD) {
        TraceEv side = evs[sl.pc];
        side.op = sl.track == TRACK_D2H ? OP_OFFLOAD_ACT : OP_RELOAD_ACT;
        side.bytes = 0;
        evs.push_back(side);
      }
      auto& e = evs[sl.pc].op == OP_FORWARD || evs[sl.pc].op == OP_BACKWARD ? evs.back() : evs[sl.pc];
      e.track = sl.track;
#if MMOC_HAS_CUDA
      if (sl.a) {
        e.tsUs = stepEvUs + stepEv.elapsed_time(*sl.a) * 1000.0;
        e.durUs = sl.a->elapsed_time(*sl.b) * 1000.0;
        continue;
      }
#endif
      e.tsUs = sl.tsUs, e.durUs = sl.durUs;
    }
    if (cfg.trace && !r.cuda) {
      const int64_t m = rssBytes();
      for (auto& e : evs) e.memBytes = m;
    }
    // step-end agreement: loss (held by the last stage) and the stop flag, on every rank
    double loss = r.stepLoss;
    bool stopAll = stop.load();
    try {
      if (r.world) {
        auto v = at::zeros({3}, at::TensorOptions().dtype(at::kDouble));
        v[0] = r.hasLoss ? r.stepLoss : 0.0;
        v[1] = stopAll ? 1.0 : 0.0;
        v[2] = r.gradNorm;
        auto dv = r.cuda ? v.to(at::kFloat).to(r.device) : v;
        r.world->allreduceSum(dv)->wait();
        auto hv = dv.to(at::kCPU).to(at::kDouble);
        loss = hv[0].item<double>();
        stopAll = hv[1].item<double>() > 0;
      }
    } catch (const std::exception& e) {
      pc = -1;
      throw fail(std::string("step-end all-reduce failed: ") + cppError(e));
    }
    res.overheadBytes = std::max(res.overheadBytes, r.overhead());
    r.clearStep();
    const double sec = std::chrono::duration<double>(Clock::now() - t0).count();
    res.losses.push_back(loss);
    res.gradNorms.push_back(r.gradNorm);
    res.stepSec.push_back(sec);
    for (auto& e : evs) res.trace.push_back(e);
    res.stepsDone = step + 1;
    Progress p;
    p.step = step, p.loss = loss, p.lr = r.lrAt(step), p.gradNorm = r.gradNorm, p.stepSec = sec;
    p.tokens = tokensPerStep, p.memBytes = r.memBytes(), p.peakBytes = r.peakBytes();
    progress(p);
    if (stopAll && step + 1 < cfg.steps) {
      res.stopped = true;
      break;
    }
  }
  pc = -1;
  res.peakBytes = r.peakBytes();
  res.peakAllocBytes = r.peakAllocated();
  res.streamedLayers = static_cast<int>(r.streamedLayers.size()), res.streamedPeakResident = r.peakResident;
  res.diskReads = r.diskReadsDone.load(), res.diskReadHits = r.diskReadHits.load();
  if (!cfg.saveDir.empty()) {
    // Hugging Face shard names: model.safetensors alone, else model-0000r-of-0000N.safetensors (the
    // launcher writes model.safetensors.index.json once every rank has written its shard)
    char name[64];
    // replica 0 writes (the replicas hold the same weights)
    if (cfg.pipelineRanks == 1) std::snprintf(name, sizeof name, "model.safetensors");
    else std::snprintf(name, sizeof name, "model-%05d-of-%05d.safetensors", r.prank() + 1, cfg.pipelineRanks);
    if (r.replica() == 0) r.materializeStreamed(), r.restoreMasters();
    if (r.replica() == 0) r.model->saveSafetensors(cfg.saveDir + "/" + name);
  }
  status.state(1);
  return res;
}

/** One benchmark step of the host AdamW over p, m, v (fp32, n each) with gradient g and optional
 *  compute-precision weights w: the benchmarks' fixed hyper-parameters (lr 1e-4, betas 0.9 / 0.999,
 *  eps 1e-8, bias corrections 0.1 / 0.001, weight decay 0.01). */
template <class G, class W>
void benchAdamStep(at::Tensor& p, at::Tensor& m, at::Tensor& v, const G* g, W* w) {
  cpuAdamW(p.data_ptr<float>(), m.data_ptr<float>(), v.data_ptr<float>(), g, w, p.numel(), 1e-4f, 0.9f, 0.999f, 1e-8f, 0.1f,
           0.001f, 0.01f, 1.0f);
}

double benchCpuAdamWConcurrent(int64_t n, int threads, int groups, int reps, bool pinned) {
  MMOC_CHECK(n > 0 && threads > 0 && groups > 0 && reps > 0, "benchCpuAdamWConcurrent: n, threads, groups and reps must be positive");
  std::mutex mu;
  std::condition_variable cv;
  int arrived = 0, generation = 0;
  // every group waits here before each repetition, so that the repetitions overlap
  auto barrier = [&] {
    std::unique_lock<std::mutex> l(mu);
    const int gen = generation;
    if (++arrived == groups) {
      arrived = 0, ++generation;
      cv.notify_all();
    } else {
      cv.wait(l, [&] { return generation != gen; });
    }
  };
  std::vector<std::vector<double>> secs(groups);
  std::vector<std::string> errs(groups);
  std::vector<std::thread> th;
  for (int gi = 0; gi < groups; ++gi) {
    th.emplace_back([&, gi] {
      try {
        at::set_num_threads(threads);  // this thread's OpenMP team, as the rank's host worker sets it
        at::NoGradGuard ng;
        auto f32 = at::TensorOptions().dtype(at::kFloat);
        // first touch by this group's own threads (the pages land near them)
        auto p = at::randn({n}, f32), m = at::zeros({n}, f32), v = at::zeros({n}, f32);
        // the gradients and weights pinned on a GPU host, as a GPU rank's host groups hold them
        // (from its pinned pool); fp32 master, m and v pageable, as there
        const auto bf = f32.dtype(at::kBFloat16).pinned_memory(pinned);
        auto g = at::empty({n}, bf), w = at::empty({n}, bf);
        g.copy_(at::randn({n}, f32) * 1e-3);
        auto step = [&] { benchAdamStep(p, m, v, g.data_ptr<c10::BFloat16>(), w.data_ptr<c10::BFloat16>()); };
        step();  // warm-up
        for (int r = 0; r < reps; ++r) {
          barrier();
          const auto a = Clock::now();
          step();
          secs[gi].push_back(std::chrono::duration<double>(Clock::now() - a).count());
        }
      } catch (const std::exception& e) {
        errs[gi] = e.what();
        for (int r = static_cast<int>(secs[gi].size()); r < reps; ++r) barrier();  // release the others
      }
    });
  }
  for (auto& t : th) t.join();
  for (int gi = 0; gi < groups; ++gi) MMOC_CHECK(errs[gi].empty(), "benchCpuAdamWConcurrent: group " << gi << ": " << errs[gi]);
  // Per repetition, the groups' own rates summed (params/s): the executor's ranks do not wait for
  // each other between layers, so a group that finishes first goes on with its next layer, not
  // idle as here (timing all of them by the slowest group's time gave 5.1 G params/s on a host
  // where the executor's two ranks updated at 6.0-6.4 together). Returned as the seconds that
  // n * groups parameters take at that rate, the median over the repetitions.
  std::vector<double> eff(reps, 0.0);
  for (int r = 0; r < reps; ++r) {
    double rate = 0;
    for (int gi = 0; gi < groups; ++gi) rate += static_cast<double>(n) / secs[gi][r];
    eff[r] = static_cast<double>(n) * groups / rate;
  }
  std::sort(eff.begin(), eff.end());
  return eff[eff.size() / 2];
}

AdamBench benchCpuAdamW(int64_t n, int threads, int reps) {
  MMOC_CHECK(n > 0 && threads > 0 && reps > 0, "benchCpuAdamW: n, threads and reps must be positive");
  at::set_num_threads(threads);
  at::NoGradGuard ng;
  AdamBench b;
  b.n = n, b.threads = threads;
  auto f32 = at::TensorOptions().dtype(at::kFloat);
  auto p = at::randn({n}, f32), m = at::zeros({n}, f32), v = at::zeros({n}, f32), g = at::randn({n}, f32) * 1e-3;
  auto gb = g.to(at::kBFloat16), wb = at::empty({n}, f32.dtype(at::kBFloat16));
  auto median = [&](auto fn) {
    std::vector<double> t;
    fn();  // warm-up (first touch of the pages)
    for (int r = 0; r < reps; ++r) {
      const auto a = Clock::now();
      fn();
      t.push_back(std::chrono::duration<double>(Clock::now() - a).count());
    }
    std::sort(t.begin(), t.end());
    return t[t.size() / 2];
  };
  {
    auto dst = at::empty({n}, f32);
    b.copySec = median([&] { dst.copy_(p); });
  }
  b.oursF32 = median([&] { benchAdamStep(p, m, v, g.data_ptr<float>(), static_cast<float*>(nullptr)); });
  b.oursBf16 = median([&] { benchAdamStep(p, m, v, gb.data_ptr<c10::BFloat16>(), wb.data_ptr<c10::BFloat16>()); });
#if MMOC_TORCH_AT_LEAST(2, 4)
  {
    std::vector<at::Tensor> ps{p}, gs{g}, ms{m}, vs{v}, st{at::full({}, 1.0, f32)};
    b.torchImpl = "at::_fused_adamw_ (CPU)";
    b.torch = median([&] { at::_fused_adamw_(ps, gs, ms, vs, {}, st, 1e-4, 0.9, 0.999, 0.01, 1e-8, false, false); });
    // the same job as oursBf16 (gradients arrive in bf16, bf16 weights leave for the upload):
    // torch needs a conversion pass on each side of its fp32 kernel
    b.torchJob = median([&] {
      g.copy_(gb);
      at::_fused_adamw_(ps, gs, ms, vs, {}, st, 1e-4, 0.9, 0.999, 0.01, 1e-8, false, false);
      wb.copy_(p);
    });
  }
#else
  {
    auto w = p.clone().requires_grad_(true);
    w.mutable_grad() = g.clone();
    torch::optim::AdamW opt({w}, torch::optim::AdamWOptions(1e-4).weight_decay(0.01));
    b.torchImpl = "torch::optim::AdamW::step (libtorch " TORCH_VERSION ")";
    b.torch = median([&] { opt.step(); });
    b.torchJob = median([&] {
      w.mutable_grad().copy_(gb);
      opt.step();
      wb.copy_(w.detach());
    });
  }
#endif
  return b;
}

}  // namespace mmoc
