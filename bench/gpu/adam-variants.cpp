// Host AdamW variants: which change to our CPU AdamW loop (adamTile / cpuAdamW in
// native/src/runtime.cpp) closes the gap to torch's fused CPU AdamW (at::_fused_adamw_)?
//
// Every variant does the same update over fp32 master weights p and moments m, v:
//   p *= 1 - lr*wd;  m = b1*m + (1-b1)*g;  v = b2*v + (1-b2)*g^2;  p += -lr/bc1 * m / (sqrt(v/bc2) + eps)
// in two modes: "f32" (fp32 gradients; reads p, m, v, g and writes p, m, v: 28 bytes a parameter)
// and "bf16" (bf16 gradients, bf16 weights written in the same pass, as the offloaded optimizer
// does: 24 + 2 + 2 = 28 bytes a parameter). Each variant is checked against a double-precision
// reference, then timed on one shared set of tensors (same pages, same NUMA placement), the
// variants interleaved within each repetition so that drifts (page promotion, clocks) hit all.
//
//   bash bench/gpu/adam-variants.sh [--n 134217728] [--threads 8,16,64] [--reps 7]
//                                   [--pf-bytes 2048] [--json out.json]

// GCC 12's AVX-512 headers self-initialize their "undefined" vectors, which -Wmaybe-uninitialized
// reports once inlined (GCC bug 105593): silenced for the whole file, the headers included first.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/util/BFloat16.h>
#include <omp.h>
#include <torch/version.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <set>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
#define HAS_FUSED_ADAMW 1
#else
#define HAS_FUSED_ADAMW 0
#endif

namespace {

using Bf16 = c10::BFloat16;
constexpr double kBytesPerParam = 28;  // DRAM traffic of one update, either mode (without write-allocate reads)

struct Hyper {  // double, as torch takes them
  double lr = 1e-4, b1 = 0.9, b2 = 0.999, eps = 1e-8, wd = 0.01;
  int step = 1;
};

/** The per-step float constants, computed as cpuAdamW's caller and cpuAdamW do. */
struct Coef {
  float b1, b2, eps, bc2, invSqrtBc2, wd, decay, stepSize, gs;
  explicit Coef(const Hyper& h) {
    const float lr = static_cast<float>(h.lr), bc1 = static_cast<float>(1 - std::pow(h.b1, h.step));
    b1 = static_cast<float>(h.b1), b2 = static_cast<float>(h.b2), eps = static_cast<float>(h.eps);
    bc2 = static_cast<float>(1 - std::pow(h.b2, h.step));
    invSqrtBc2 = static_cast<float>(1 / std::sqrt(1 - std::pow(h.b2, h.step)));
    wd = static_cast<float>(h.wd), decay = 1.0f - lr * wd, stepSize = -lr / bc1;
    gs = 1.0f;  // gradient scale (the clipping coefficient in mmoc): multiplied in by every variant
  }
};

/** One update's buffers. G = float: fp32 gradients, w == nullptr. G = Bf16: bf16 gradients, bf16 weights w. */
template <class G>
struct Job {
  float* p;
  float* m;
  float* v;
  const G* g;
  G* w;
  int64_t n;
};
template <class G>
using Kernel = void (*)(const Job<G>&, const Coef&, int64_t a, int64_t b);  // elements [a, b) on one thread

// ---------------------------------------------------------------------------------------------
// ref: a copy of runtime.cpp's adamTile and its clones (only the namespace differs)

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

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define MMOC_SIMD_CLONES __attribute__((target_clones("avx512f", "avx2,fma", "default")))
#else
#define MMOC_SIMD_CLONES
#endif
MMOC_SIMD_CLONES void adamTileF32(float* p, float* m, float* v, const float* g, float* w, int64_t a, int64_t b, float b1,
                                  float b2, float eps, float bc2, float wd, float decay, float stepSize, float gs) {
  if (w) adamTile(p, m, v, g, w, a, b, b1, b2, eps, bc2, wd, decay, stepSize, gs);
  else adamTile(p, m, v, g, static_cast<float*>(nullptr), a, b, b1, b2, eps, bc2, wd, decay, stepSize, gs);
}
MMOC_SIMD_CLONES void adamTileBf16(float* p, float* m, float* v, const c10::BFloat16* g, c10::BFloat16* w, int64_t a,
                                   int64_t b, float b1, float b2, float eps, float bc2, float wd, float decay,
                                   float stepSize, float gs) {
  if (w) adamTile(p, m, v, g, w, a, b, b1, b2, eps, bc2, wd, decay, stepSize, gs);
  else adamTile(p, m, v, g, static_cast<c10::BFloat16*>(nullptr), a, b, b1, b2, eps, bc2, wd, decay, stepSize, gs);
}
inline void adamTileAny(float* p, float* m, float* v, const float* g, float* w, int64_t a, int64_t b, float b1, float b2,
                        float eps, float bc2, float wd, float decay, float stepSize, float gs) {
  adamTileF32(p, m, v, g, w, a, b, b1, b2, eps, bc2, wd, decay, stepSize, gs);
}
inline void adamTileAny(float* p, float* m, float* v, const c10::BFloat16* g, c10::BFloat16* w, int64_t a, int64_t b,
                        float b1, float b2, float eps, float bc2, float wd, float decay, float stepSize, float gs) {
  adamTileBf16(p, m, v, g, w, a, b, b1, b2, eps, bc2, wd, decay, stepSize, gs);
}

template <class G>
void refKernel(const Job<G>& j, const Coef& c, int64_t a, int64_t b) {
  adamTileAny(j.p, j.m, j.v, j.g, j.w, a, b, c.b1, c.b2, c.eps, c.bc2, c.wd, c.decay, c.stepSize, c.gs);
}

// ---------------------------------------------------------------------------------------------
// recip: ref with sqrt(v) * (1/sqrt(bc2)) instead of sqrt(v / bc2): two divider operations an
// element (sqrt, m/denom) instead of three. (torch divides sqrt(v) by sqrt(bc2): three as well.)

template <class G, class W>
__attribute__((always_inline)) inline void recipLoop(float* __restrict p, float* __restrict m, float* __restrict v,
                                                     const G* __restrict g, W* __restrict w, int64_t a, int64_t b,
                                                     const Coef& c) {
  const float b1 = c.b1, b2 = c.b2, c1 = 1.0f - b1, c2 = 1.0f - b2, eps = c.eps, k = c.invSqrtBc2;
  const float dec = c.wd != 0.0f ? c.decay : 1.0f, stepSize = c.stepSize, gs = c.gs;
#pragma omp simd
  for (int64_t i = a; i < b; ++i) {
    const float gi = toF(g[i]) * gs;
    float pi = p[i] * dec;
    const float mi = m[i] * b1 + gi * c1;
    const float vi = v[i] * b2 + gi * gi * c2;
    pi += stepSize * (mi / (std::sqrt(vi) * k + eps));
    p[i] = pi, m[i] = mi, v[i] = vi;
    if (w) w[i] = fromF(pi, w);
  }
}
MMOC_SIMD_CLONES void recipF32(const Job<float>& j, const Coef& c, int64_t a, int64_t b) {
  recipLoop(j.p, j.m, j.v, j.g, static_cast<float*>(nullptr), a, b, c);
}
MMOC_SIMD_CLONES void recipBf16(const Job<Bf16>& j, const Coef& c, int64_t a, int64_t b) {
  recipLoop(j.p, j.m, j.v, j.g, j.w, a, b, c);
}
template <class G>
void recipKernel(const Job<G>& j, const Coef& c, int64_t a, int64_t b) {
  if constexpr (std::is_same<G, float>::value) recipF32(j, c, a, b);
  else recipBf16(j, c, a, b);
}

// ---------------------------------------------------------------------------------------------
// chunked: ref's loop called on chunks of 1024 parameters (16 KiB of state: p, m, v 12 B + the
// gradient 4 B, or gradient 2 B + weights 2 B). The access order is ref's; what changes is the
// loop structure (short trip counts, a fresh alignment peel and tail per chunk).

constexpr int64_t kChunk = 1024;
template <class G>
void chunkedKernel(const Job<G>& j, const Coef& c, int64_t a, int64_t b) {
  for (int64_t i = a; i < b; i += kChunk) refKernel(j, c, i, std::min(b, i + kChunk));
}

// ---------------------------------------------------------------------------------------------
// Explicit intrinsics (AVX-512 or AVX2 + FMA, 2x unrolled), with optional changes selected by flags.

enum : unsigned {
  kRecip = 1,     // sqrt(v) * (1/sqrt(bc2)) instead of sqrt(v / bc2)
  kPrefetch = 2,  // software prefetch of the 4 input streams gPfBytes ahead
  kStream = 4,    // non-temporal stores for the bf16 weights (no read for ownership, 2 B a parameter)
  kRcp = 8,       // m / denom as m * rcp(denom) refined by one Newton step (no divide; not correctly rounded)
};
int64_t gPfElems = 512;  // prefetch distance in elements (--pf-bytes / 4: 2 KiB ahead in the fp32 streams)
bool gAvx512 = false, gAvx2 = false;

/** The same arithmetic one element at a time: heads and tails of the intrinsic kernels. */
template <class G, unsigned F>
void scalarRange(const Job<G>& j, const Coef& c, int64_t a, int64_t b) {
  const float c1 = 1.0f - c.b1, c2 = 1.0f - c.b2, dec = c.wd != 0.0f ? c.decay : 1.0f;
  for (int64_t i = a; i < b; ++i) {
    const float gi = toF(j.g[i]) * c.gs;
    const float mi = j.m[i] * c.b1 + gi * c1, vi = j.v[i] * c.b2 + gi * gi * c2;
    const float s = (F & kRecip) ? std::sqrt(vi) * c.invSqrtBc2 : std::sqrt(vi / c.bc2);
    const float pi = j.p[i] * dec + c.stepSize * (mi / (s + c.eps));
    j.p[i] = pi, j.m[i] = mi, j.v[i] = vi;
    if constexpr (std::is_same<G, Bf16>::value) j.w[i] = fromF(pi, j.w);
  }
}

/** Prefetches elements [i, i + count) of p, m, v and g, one prefetch a 64-byte line. */
template <class G>
inline void prefetchAhead(const Job<G>& j, int64_t i, int64_t count) {
  for (int64_t k = 0; k < count; k += 16) {
    _mm_prefetch(reinterpret_cast<const char*>(j.p + i + k), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(j.m + i + k), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(j.v + i + k), _MM_HINT_T0);
  }
  for (int64_t k = 0; k < count; k += 64 / static_cast<int64_t>(sizeof(G)))
    _mm_prefetch(reinterpret_cast<const char*>(j.g + i + k), _MM_HINT_T0);
}

/** Elements until w + a is aligned to `align` bytes (streaming stores need aligned addresses). */
template <class G>
int64_t alignHead(const Job<G>& j, int64_t a, int64_t b, int64_t align) {
  const int64_t mis = static_cast<int64_t>(reinterpret_cast<uintptr_t>(j.w + a) % align);
  return std::min(b, a + (mis ? (align - mis) / static_cast<int64_t>(sizeof(G)) : 0));
}

#define MMOC_AVX512 __attribute__((target("avx512f")))
#define MMOC_AVX2 __attribute__((target("avx2,fma")))

namespace v512 {
struct C {
  __m512 b1, c1, b2, c2, eps, bc2, k, dec, step, gs, two;
};
MMOC_AVX512 inline __m512 load(const float* g) { return _mm512_loadu_ps(g); }
MMOC_AVX512 inline __m512 load(const Bf16* g) {
  const __m512i u = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(g)));
  return _mm512_castsi512_ps(_mm512_slli_epi32(u, 16));
}
/** 16 floats -> 16 bf16, rounded to nearest even, NaN -> 0x7fc0 (as fromF). */
MMOC_AVX512 inline __m256i toBf16(__m512 x) {
  const __m512i u = _mm512_castps_si512(x);
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
  __m512i r = _mm512_srli_epi32(_mm512_add_epi32(_mm512_add_epi32(u, _mm512_set1_epi32(0x7fff)), lsb), 16);
  r = _mm512_mask_blend_epi32(_mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q), r, _mm512_set1_epi32(0x7fc0));
  return _mm512_cvtepi32_epi16(r);
}
/** Updates p, m, v at [i, i + 16) and returns the new p. */
template <unsigned F, class G>
MMOC_AVX512 inline __m512 step16(const Job<G>& j, int64_t i, const C& c) {
  const __m512 g = _mm512_mul_ps(load(j.g + i), c.gs);
  const __m512 p = _mm512_mul_ps(_mm512_loadu_ps(j.p + i), c.dec);
  const __m512 m = _mm512_fmadd_ps(_mm512_loadu_ps(j.m + i), c.b1, _mm512_mul_ps(g, c.c1));
  const __m512 v = _mm512_fmadd_ps(_mm512_loadu_ps(j.v + i), c.b2, _mm512_mul_ps(_mm512_mul_ps(g, g), c.c2));
  const __m512 s = (F & kRecip) ? _mm512_mul_ps(_mm512_sqrt_ps(v), c.k) : _mm512_sqrt_ps(_mm512_div_ps(v, c.bc2));
  const __m512 d = _mm512_add_ps(s, c.eps);
  __m512 q;
  if constexpr ((F & kRcp) != 0) {
    const __m512 r = _mm512_rcp14_ps(d);  // 14 bits; one Newton step: r * (2 - d*r)
    q = _mm512_mul_ps(m, _mm512_mul_ps(r, _mm512_fnmadd_ps(d, r, c.two)));
  } else {
    q = _mm512_div_ps(m, d);
  }
  const __m512 pn = _mm512_fmadd_ps(c.step, q, p);
  _mm512_storeu_ps(j.p + i, pn);
  _mm512_storeu_ps(j.m + i, m);
  _mm512_storeu_ps(j.v + i, v);
  return pn;
}
template <class G, unsigned F>
MMOC_AVX512 void kernel(const Job<G>& j, const Coef& cf, int64_t a, int64_t b) {
  constexpr bool kW = std::is_same<G, Bf16>::value, kNt = kW && (F & kStream);
  const C c{_mm512_set1_ps(cf.b1), _mm512_set1_ps(1.0f - cf.b1), _mm512_set1_ps(cf.b2), _mm512_set1_ps(1.0f - cf.b2),
            _mm512_set1_ps(cf.eps), _mm512_set1_ps(cf.bc2), _mm512_set1_ps(cf.invSqrtBc2),
            _mm512_set1_ps(cf.wd != 0.0f ? cf.decay : 1.0f), _mm512_set1_ps(cf.stepSize), _mm512_set1_ps(cf.gs),
            _mm512_set1_ps(2.0f)};
  int64_t i = a;
  if constexpr (kNt) {
    i = alignHead(j, a, b, 64);
    scalarRange<G, F>(j, cf, a, i);
  }
  for (; i + 32 <= b; i += 32) {
    if constexpr ((F & kPrefetch) != 0) prefetchAhead(j, i + gPfElems, 32);
    const __m512 p0 = step16<F>(j, i, c), p1 = step16<F>(j, i + 16, c);
    if constexpr (kW) {
      const __m512i w = _mm512_inserti64x4(_mm512_castsi256_si512(toBf16(p0)), toBf16(p1), 1);
      if constexpr (kNt) _mm512_stream_si512(reinterpret_cast<__m512i*>(j.w + i), w);
      else _mm512_storeu_si512(j.w + i, w);
    }
  }
  scalarRange<G, F>(j, cf, i, b);
  if constexpr (kNt) _mm_sfence();  // streaming stores visible before the thread's range is reported done
}
}  // namespace v512

namespace v2 {
struct C {
  __m256 b1, c1, b2, c2, eps, bc2, k, dec, step, gs, two;
};
MMOC_AVX2 inline __m256 load(const float* g) { return _mm256_loadu_ps(g); }
MMOC_AVX2 inline __m256 load(const Bf16* g) {
  const __m256i u = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(g)));
  return _mm256_castsi256_ps(_mm256_slli_epi32(u, 16));
}
/** 8 floats -> bf16 bits in the low half of 32-bit lanes, rounded to nearest even, NaN -> 0x7fc0. */
MMOC_AVX2 inline __m256i rne(__m256 x) {
  const __m256i u = _mm256_castps_si256(x);
  const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
  const __m256i r = _mm256_srli_epi32(_mm256_add_epi32(_mm256_add_epi32(u, _mm256_set1_epi32(0x7fff)), lsb), 16);
  return _mm256_blendv_epi8(r, _mm256_set1_epi32(0x7fc0), _mm256_castps_si256(_mm256_cmp_ps(x, x, _CMP_UNORD_Q)));
}
/** 16 floats -> 16 bf16 in order (packus interleaves the 128-bit lanes; the permute undoes it). */
MMOC_AVX2 inline __m256i toBf16(__m256 lo, __m256 hi) {
  return _mm256_permute4x64_epi64(_mm256_packus_epi32(rne(lo), rne(hi)), 0xD8);
}
template <unsigned F, class G>
MMOC_AVX2 inline __m256 step8(const Job<G>& j, int64_t i, const C& c) {
  const __m256 g = _mm256_mul_ps(load(j.g + i), c.gs);
  const __m256 p = _mm256_mul_ps(_mm256_loadu_ps(j.p + i), c.dec);
  const __m256 m = _mm256_fmadd_ps(_mm256_loadu_ps(j.m + i), c.b1, _mm256_mul_ps(g, c.c1));
  const __m256 v = _mm256_fmadd_ps(_mm256_loadu_ps(j.v + i), c.b2, _mm256_mul_ps(_mm256_mul_ps(g, g), c.c2));
  const __m256 s = (F & kRecip) ? _mm256_mul_ps(_mm256_sqrt_ps(v), c.k) : _mm256_sqrt_ps(_mm256_div_ps(v, c.bc2));
  const __m256 d = _mm256_add_ps(s, c.eps);
  __m256 q;
  if constexpr ((F & kRcp) != 0) {
    const __m256 r = _mm256_rcp_ps(d);  // 12 bits; one Newton step: r * (2 - d*r)
    q = _mm256_mul_ps(m, _mm256_mul_ps(r, _mm256_fnmadd_ps(d, r, c.two)));
  } else {
    q = _mm256_div_ps(m, d);
  }
  const __m256 pn = _mm256_fmadd_ps(c.step, q, p);
  _mm256_storeu_ps(j.p + i, pn);
  _mm256_storeu_ps(j.m + i, m);
  _mm256_storeu_ps(j.v + i, v);
  return pn;
}
template <class G, unsigned F>
MMOC_AVX2 void kernel(const Job<G>& j, const Coef& cf, int64_t a, int64_t b) {
  constexpr bool kW = std::is_same<G, Bf16>::value, kNt = kW && (F & kStream);
  const C c{_mm256_set1_ps(cf.b1), _mm256_set1_ps(1.0f - cf.b1), _mm256_set1_ps(cf.b2), _mm256_set1_ps(1.0f - cf.b2),
            _mm256_set1_ps(cf.eps), _mm256_set1_ps(cf.bc2), _mm256_set1_ps(cf.invSqrtBc2),
            _mm256_set1_ps(cf.wd != 0.0f ? cf.decay : 1.0f), _mm256_set1_ps(cf.stepSize), _mm256_set1_ps(cf.gs),
            _mm256_set1_ps(2.0f)};
  int64_t i = a;
  if constexpr (kNt) {
    i = alignHead(j, a, b, 32);
    scalarRange<G, F>(j, cf, a, i);
  }
  for (; i + 16 <= b; i += 16) {
    if constexpr ((F & kPrefetch) != 0) prefetchAhead(j, i + gPfElems, 16);
    const __m256 p0 = step8<F>(j, i, c), p1 = step8<F>(j, i + 8, c);
    if constexpr (kW) {
      const __m256i w = toBf16(p0, p1);
      if constexpr (kNt) _mm256_stream_si256(reinterpret_cast<__m256i*>(j.w + i), w);
      else _mm256_storeu_si256(reinterpret_cast<__m256i*>(j.w + i), w);
    }
  }
  scalarRange<G, F>(j, cf, i, b);
  if constexpr (kNt) _mm_sfence();
}
}  // namespace v2

/** The widest intrinsic kernel this CPU runs (chosen at run time). */
template <class G, unsigned F>
void bestKernel(const Job<G>& j, const Coef& c, int64_t a, int64_t b) {
  if (gAvx512) v512::kernel<G, F>(j, c, a, b);
  else if (gAvx2) v2::kernel<G, F>(j, c, a, b);
  else scalarRange<G, F>(j, c, a, b);
}

// ---------------------------------------------------------------------------------------------
// Thread splits

constexpr int64_t kTile = 4096;
/** cpuAdamW's split: tiles of 4096, grain 4; at::parallel_for gives each thread one contiguous
 *  range of tiles (the same ranges as torch's split over 16-float units, grain 0). */
template <class G, Kernel<G> K>
void tiled(const Job<G>& j, const Coef& c) {
  at::parallel_for(0, (j.n + kTile - 1) / kTile, 4, [&](int64_t t0, int64_t t1) {
    K(j, c, t0 * kTile, std::min(j.n, t1 * kTile));
  });
}
/** Tiles dealt round-robin to the threads: all threads stream through one window of memory
 *  (tests DRAM page / channel locality; on several NUMA nodes every thread also reads remote pages). */
template <class G, Kernel<G> K>
void cyclic(const Job<G>& j, const Coef& c) {
  const int64_t tiles = (j.n + kTile - 1) / kTile, threads = at::get_num_threads();
  at::parallel_for(0, threads, 1, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r)
      for (int64_t t = r; t < tiles; t += threads) K(j, c, t * kTile, std::min(j.n, (t + 1) * kTile));
  });
}

// ---------------------------------------------------------------------------------------------
// Tensors, variants, checks, timing

/** Allocates n elements first touched in parallel (contiguous ranges, as the kernels split). */
at::Tensor parallelEmpty(int64_t n, at::ScalarType t) {
  auto x = at::empty({n}, at::TensorOptions().dtype(t));
  auto* base = static_cast<char*>(x.data_ptr());
  const int64_t bytes = n * static_cast<int64_t>(x.element_size());
  at::parallel_for(0, bytes, 1 << 20, [&](int64_t a, int64_t b) { std::memset(base + a, 0, b - a); });
  return x;
}

struct Tensors {
  at::Tensor p, m, v, g, gb, w, gtmp, step;  // gtmp: fp32 gradient scratch for torch_same_job
  /** offset: elements left out at the start of every buffer (the check's misaligned pointers). */
  explicit Tensors(int64_t n, int64_t offset = 0) {
    auto make = [&](at::ScalarType s) { return parallelEmpty(n + offset, s).narrow(0, offset, n); };
    p = make(at::kFloat), m = make(at::kFloat), v = make(at::kFloat), g = make(at::kFloat);
    gb = make(at::kBFloat16), w = make(at::kBFloat16);
#if HAS_FUSED_ADAMW
    gtmp = make(at::kFloat);
#endif
    step = at::ones({}, at::TensorOptions().dtype(at::kFloat));
  }
  Job<float> f32() { return {p.data_ptr<float>(), m.data_ptr<float>(), v.data_ptr<float>(), g.data_ptr<float>(), nullptr, p.numel()}; }
  Job<Bf16> bf16() {
    return {p.data_ptr<float>(), m.data_ptr<float>(), v.data_ptr<float>(), gb.data_ptr<Bf16>(), w.data_ptr<Bf16>(), p.numel()};
  }
};

struct Row {
  std::string name, grad, what;
  std::function<void()> step;
};

#if HAS_FUSED_ADAMW
void fusedAdamW(Tensors& t, const at::Tensor& g, const Hyper& h) {
  t.step.fill_(static_cast<double>(h.step));
  std::vector<at::Tensor> ps{t.p}, gs{g}, ms{t.m}, vs{t.v}, st{t.step};
  at::_fused_adamw_(ps, gs, ms, vs, {}, st, h.lr, h.b1, h.b2, h.wd, h.eps, false, false);
}
#endif

/** All rows over tensors t with hyper-parameters h (both read when a row runs). */
std::vector<Row> makeRows(Tensors& t, const Hyper& h) {
  std::vector<Row> rows;
  auto add = [&](const std::string& name, const std::string& what, void (*f32)(const Job<float>&, const Coef&),
                 void (*bf16)(const Job<Bf16>&, const Coef&)) {
    if (f32) rows.push_back({name, "f32", what, [&t, &h, f32] { f32(t.f32(), Coef(h)); }});
    if (bf16) rows.push_back({name, "bf16", what, [&t, &h, bf16] { bf16(t.bf16(), Coef(h)); }});
  };
#define BOTH(split, K) split<float, K<float>>, split<Bf16, K<Bf16>>
#define BOTHF(K, F) tiled<float, K<float, F>>, tiled<Bf16, K<Bf16, F>>
  const std::string isa = gAvx512 ? "AVX-512" : gAvx2 ? "AVX2" : "scalar";
  add("ref", "copy of runtime.cpp cpuAdamW/adamTile (target_clones, omp simd, tiles of 4096)", BOTH(tiled, refKernel));
  add("recip", "ref with sqrt(v)*(1/sqrt(bc2)): one divide fewer", BOTH(tiled, recipKernel));
  if (gAvx512) add("intrin512", "AVX-512 intrinsics, 2x unrolled, ref arithmetic", BOTHF(v512::kernel, 0));
  if (gAvx2) add("intrin2", "AVX2+FMA intrinsics, 2x unrolled, ref arithmetic", BOTHF(v2::kernel, 0));
  add("prefetch", isa + " intrinsics + _mm_prefetch of p, m, v, g ahead (--pf-bytes)", BOTHF(bestKernel, kPrefetch));
  add("ntstore", isa + " intrinsics + streaming stores of the bf16 weights (bf16 mode only)", nullptr,
      tiled<Bf16, bestKernel<Bf16, kStream>>);
  add("rcp", isa + " intrinsics, m/denom by rcp + 1 Newton step (no divide; numerics change)", BOTHF(bestKernel, kRcp));
  add("combo", isa + " intrinsics + recip + prefetch + streaming stores", BOTHF(bestKernel, kRecip | kPrefetch | kStream));
  add("chunked", "ref called on 1024-parameter chunks (16 KiB of state)", BOTH(tiled, chunkedKernel));
  add("cyclic", "ref, tiles of 4096 dealt round-robin to the threads", BOTH(cyclic, refKernel));
#undef BOTH
#undef BOTHF
#if HAS_FUSED_ADAMW
  rows.push_back({"torch", "f32", "at::_fused_adamw_ (fp32 p, g, m, v)", [&t, &h] { fusedAdamW(t, t.g, h); }});
  rows.push_back({"torch_same_job", "bf16", "bf16 g -> fp32 copy, at::_fused_adamw_, p -> bf16 copy (more than 28 B/param)",
                  [&t, &h] {
                    t.gtmp.copy_(t.gb);
                    fusedAdamW(t, t.gtmp, h);
                    t.w.copy_(t.p);
                  }});
#endif
  return rows;
}

/** The update in double, one step per gradient (bf16 gradients: their values, already rounded). */
struct RefState {
  std::vector<double> p, m, v;
};
RefState reference(const at::Tensor& p0, const std::vector<at::Tensor>& grads, Hyper h) {
  const int64_t n = p0.numel();
  RefState r{std::vector<double>(p0.data_ptr<float>(), p0.data_ptr<float>() + n), std::vector<double>(n, 0.0),
             std::vector<double>(n, 0.0)};
  for (size_t s = 0; s < grads.size(); ++s) {
    h.step = static_cast<int>(s) + 1;
    const double bc1 = 1 - std::pow(h.b1, h.step), bc2 = 1 - std::pow(h.b2, h.step);
    const float* g = grads[s].data_ptr<float>();
    for (int64_t i = 0; i < n; ++i) {
      r.m[i] = h.b1 * r.m[i] + (1 - h.b1) * g[i];
      r.v[i] = h.b2 * r.v[i] + (1 - h.b2) * double(g[i]) * g[i];
      r.p[i] = r.p[i] * (1 - h.lr * h.wd) - h.lr / bc1 * r.m[i] / (std::sqrt(r.v[i] / bc2) + h.eps);
    }
  }
  return r;
}

/** max |x - ref| / max |ref| */
double relErr(const at::Tensor& x, const std::vector<double>& ref) {
  const float* a = x.data_ptr<float>();
  double num = 0, den = 0;
  for (size_t i = 0; i < ref.size(); ++i) num = std::max(num, std::fabs(a[i] - ref[i])), den = std::max(den, std::fabs(ref[i]));
  return num / den;
}

/** Runs every row for 3 steps on a small n against the double reference; false if any fails. */
bool checkAll(int threads) {
  constexpr int64_t n = (1 << 16) + 37;  // not a multiple of the vector width or the tile
  constexpr int kSteps = 3;
  at::set_num_threads(threads);
  Hyper h;
  h.lr = 1e-2;  // 3 updates of about lr dominate p (p0 ~ 1e-3): p's error is the update's error
  // betas whose complements are exact in float: the kernels compute 1 - b1 and 1 - b2 in float from
  // float betas (1.0f - 0.999f is 1.3e-5 off 0.001), torch in double; with these all agree.
  h.b1 = 0.875, h.b2 = 1 - 1.0 / 1024;
  Tensors t(n, 3);  // misaligned by 3 elements: the kernels' heads and tails run
  const at::Tensor p0 = at::randn({n}) * 1e-3;
  std::vector<at::Tensor> g32, g16;
  for (int s = 0; s < kSteps; ++s) {
    g32.push_back(at::randn({n}));
    g16.push_back(g32.back().to(at::kBFloat16).to(at::kFloat));
  }
  const RefState r32 = reference(p0, g32, h), r16 = reference(p0, g16, h);
  bool ok = true;
  std::printf("check: n=%lld, %d steps, lr %g, %d threads; relative error max|x-ref|/max|ref| (< 1e-6)\n",
              static_cast<long long>(n), kSteps, h.lr, threads);
  for (Row& row : makeRows(t, h)) {
    t.p.copy_(p0), t.m.zero_(), t.v.zero_(), t.w.zero_();
    for (int s = 0; s < kSteps; ++s) {
      h.step = s + 1;
      t.g.copy_(g32[s]), t.gb.copy_(g32[s]);
      row.step();
    }
    const bool bf = row.grad == "bf16";
    const RefState& r = bf ? r16 : r32;
    const double ep = relErr(t.p, r.p), em = relErr(t.m, r.m), ev = relErr(t.v, r.v);
    int64_t wBad = 0;
    if (bf) {
      const float* p = t.p.data_ptr<float>();
      const Bf16* w = t.w.data_ptr<Bf16>();
      for (int64_t i = 0; i < n; ++i) wBad += w[i].x != fromF(p[i], static_cast<Bf16*>(nullptr)).x;
    }
    const bool pass = ep < 1e-6 && em < 1e-6 && ev < 1e-6 && wBad == 0;
    ok = ok && pass;
    std::printf("  %-4s %-15s %-4s p %.1e  m %.1e  v %.1e%s\n", pass ? "ok" : "FAIL", row.name.c_str(), row.grad.c_str(),
                ep, em, ev,
                bf ? (wBad ? ("  w: " + std::to_string(wBad) + " differ from bf16(p)").c_str() : "  w = bf16(p)") : "");
  }
  return ok;
}

/** OpenMP runtimes mapped into this process (two would mean torch's kernels and ours use different pools). */
std::string ompLibraries() {
  std::ifstream maps("/proc/self/maps");
  std::set<std::string> libs;
  for (std::string line; std::getline(maps, line);) {
    const size_t slash = line.find('/');
    if (slash == std::string::npos) continue;
    const std::string path = line.substr(slash), file = path.substr(path.rfind('/') + 1);
    if (file.find("gomp") != std::string::npos || file.find("iomp") != std::string::npos ||
        file.find("libomp") != std::string::npos)
      libs.insert(path);
  }
  std::string s;
  for (const auto& l : libs) s += (s.empty() ? "" : ", ") + l;
  return s.empty() ? "(none found)" : s;
}

std::string cpuModel() {
  std::ifstream f("/proc/cpuinfo");
  for (std::string line; std::getline(f, line);)
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  return "?";
}

std::vector<int> parseThreads(const std::string& s) {
  std::vector<int> r;
  std::stringstream ss(s);
  for (std::string x; std::getline(ss, x, ',');) r.push_back(std::stoi(x));
  return r;
}

struct Result {
  int threads;
  std::string name, grad;
  double sec, gps;  // median seconds a step; G params/s
};

int run(int argc, char** argv) {
  int64_t n = 134217728;
  int reps = 7;
  const int allThreads = at::get_num_threads();
  std::vector<int> threads;
  std::string jsonPath;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) throw std::runtime_error(a + " needs a value");
      return argv[++i];
    };
    if (a == "--n") n = std::stoll(next());
    else if (a == "--reps") reps = std::stoi(next());
    else if (a == "--threads") threads = parseThreads(next());
    else if (a == "--json") jsonPath = next();
    else if (a == "--pf-bytes") gPfElems = std::stoll(next()) / 4;
    else {
      std::fprintf(stderr, "usage: adam-variants [--n N] [--reps R] [--threads 8,16,64] [--pf-bytes B] [--json FILE]\n");
      return a == "--help" || a == "-h" ? 0 : 2;
    }
  }
  if (threads.empty()) {
    for (int t : {8, 16})
      if (t < allThreads) threads.push_back(t);
    threads.push_back(allThreads);
  }
  __builtin_cpu_init();
  gAvx512 = __builtin_cpu_supports("avx512f");
  gAvx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  std::printf("cpu: %s; avx512f %d, avx2+fma %d; default threads %d; torch %s; fused AdamW %s\n", cpuModel().c_str(), gAvx512,
              gAvx2, allThreads, TORCH_VERSION, HAS_FUSED_ADAMW ? "at::_fused_adamw_" : "not in this torch (< 2.4)");
  std::printf("OpenMP runtimes loaded: %s\n%s", ompLibraries().c_str(), at::get_parallel_info().c_str());
  std::printf("prefetch distance %lld elements (%lld B in the fp32 streams)\n", static_cast<long long>(gPfElems),
              static_cast<long long>(gPfElems * 4));

  at::manual_seed(0);
  if (!checkAll(*std::max_element(threads.begin(), threads.end()))) {
    std::printf("FAIL: a variant differs from the reference\n");
    return 1;
  }

  // the timed tensors, first touched by all threads (every variant and torch use these same pages)
  at::set_num_threads(allThreads);
  Hyper h;  // lr 1e-4, step 1 (bias corrections 0.1, 0.001): benchCpuAdamW's settings
  Tensors t(n);
  t.p.copy_(at::randn({n}));
  t.g.copy_(at::randn({n}) * 1e-3);
  t.gb.copy_(t.g);
  std::vector<Row> rows = makeRows(t, h);
  std::printf("timing: n=%lld (%.2f GB of traffic a step at %.0f B/param), median of %d after 1 warm-up, variants interleaved\n",
              static_cast<long long>(n), n * kBytesPerParam / 1e9, kBytesPerParam, reps);

  std::vector<Result> results;
  for (int th : threads) {
    at::set_num_threads(th);
    std::atomic<int> ranges{0};  // threads that get work in cpuAdamW's split
    at::parallel_for(0, (n + kTile - 1) / kTile, 4, [&](int64_t, int64_t) { ++ranges; });
    std::printf("-- %d threads (at::get_num_threads %d, omp_get_max_threads %d, ranges in cpuAdamW's split %d)\n", th,
                at::get_num_threads(), omp_get_max_threads(), ranges.load());
    std::vector<std::vector<double>> secs(rows.size());
    for (Row& r : rows) r.step();  // warm-up
    for (int rep = 0; rep < reps; ++rep)
      for (size_t k = 0; k < rows.size(); ++k) {
        const auto a = std::chrono::steady_clock::now();
        rows[k].step();
        secs[k].push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - a).count());
      }
    for (size_t k = 0; k < rows.size(); ++k) {
      std::sort(secs[k].begin(), secs[k].end());
      const double sec = secs[k][secs[k].size() / 2], gps = n / sec / 1e9;
      results.push_back({th, rows[k].name, rows[k].grad, sec, gps});
      std::printf("  %3d thr  %-15s %-4s %6.2f G params/s  %6.1f GB/s  (%.2f ms)  %s\n", th, rows[k].name.c_str(),
                  rows[k].grad.c_str(), gps, gps * kBytesPerParam, sec * 1e3, rows[k].what.c_str());
    }
  }

  auto find = [&](int th, const std::string& name, const std::string& grad) -> const Result* {
    for (const auto& r : results)
      if (r.threads == th && r.name == name && r.grad == grad) return &r;
    return nullptr;
  };
  std::printf("\nG params/s%s\n", HAS_FUSED_ADAMW ? " (ratio to torch f32 at the same thread count)" : "");
  std::printf("%-15s %-4s", "variant", "grad");
  for (int th : threads) std::printf(" %*d thr", HAS_FUSED_ADAMW ? 9 : 3, th);
  std::printf("\n");
  for (const Row& r : rows) {
    std::printf("%-15s %-4s", r.name.c_str(), r.grad.c_str());
    for (int th : threads) {
      const Result* x = find(th, r.name, r.grad);
      const Result* torch = find(th, "torch", "f32");
      if (torch) std::printf("  %5.2f (%.2f)", x->gps, x->gps / torch->gps);
      else std::printf("  %6.2f", x->gps);
    }
    std::printf("\n");
  }

  if (!jsonPath.empty()) {
    std::ofstream js(jsonPath);
    js << "{\"cpu\":\"" << cpuModel() << "\",\"torch\":\"" << TORCH_VERSION << "\",\"n\":" << n << ",\"reps\":" << reps
       << ",\"bytesPerParam\":" << kBytesPerParam << ",\"prefetchBytes\":" << gPfElems * 4 << ",\"avx512f\":" << gAvx512
       << ",\"results\":[";
    for (size_t k = 0; k < results.size(); ++k) {
      const Result& r = results[k];
      const Result* torch = find(r.threads, "torch", "f32");
      js << (k ? "," : "") << "{\"variant\":\"" << r.name << "\",\"grad\":\"" << r.grad << "\",\"threads\":" << r.threads
         << ",\"seconds\":" << r.sec << ",\"gparamsPerSec\":" << r.gps << ",\"gbPerSec\":" << r.gps * kBytesPerParam;
      if (torch) js << ",\"ratioToTorch\":" << r.gps / torch->gps;
      js << "}";
    }
    js << "]}\n";
    std::printf("wrote %s\n", jsonPath.c_str());
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "adam-variants: %s\n", e.what());
    return 1;
  }
}
