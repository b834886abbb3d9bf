// Does the host AdamW update run faster when its buffers sit on 2 MiB pages? (issue 7: the capped
// LLaMA-2-7B host-AdamW plan's layers update 1.02-1.32x faster a parameter than LLaMA-3.2-1B's and
// than calibrate's benchmark; the 7B plan's pinned gradient/weight pool is one ~20 GiB allocation a
// rank, the 1B plans' ~3 GiB, calibrate's 512 MiB blocks. If larger pages take TLB misses off two
// of the five streams, this shows it without CUDA.)
// The update as the executor's reference kernel computes it (fp32 master p, m, v; bf16 gradient g in,
// bf16 weight w out: 28 bytes a parameter), OpenMP static split, on buffers mapped with 4 KiB pages
// (MADV_NOHUGEPAGE), 2 MiB pages for all five (MADV_HUGEPAGE), or 2 MiB for g and w alone; every
// variant first touched by the threads that update it; `groups` teams at once, as calibrate times it.
//   g++ -std=c++17 -O3 -march=native -fopenmp -fno-math-errno bench/gpu/adam-pages.cpp -o /tmp/adam-pages
//   /tmp/adam-pages [params per group, default 157286400] [threads per group, default cores/groups] [groups, 2] [reps, 15]
#include <sys/mman.h>
#include <omp.h>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

namespace {
using u16 = uint16_t;

void* mapBytes(size_t bytes, int advice) {
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) { std::perror("mmap"); std::exit(1); }
  if (madvise(p, bytes, advice) != 0) std::perror("madvise");
  return p;
}

inline float bf16ToF(u16 x) { uint32_t u = static_cast<uint32_t>(x) << 16; float f; std::memcpy(&f, &u, 4); return f; }
inline u16 fToBf16(float f) { uint32_t u; std::memcpy(&u, &f, 4); u += 0x7fffu + ((u >> 16) & 1u); return static_cast<u16>(u >> 16); }

struct Group {
  size_t n;
  float *p, *m, *v;
  u16 *g, *w;
  Group(size_t n_, int hugeState, int hugeGw, int threads) : n(n_) {
    p = static_cast<float*>(mapBytes(n * 4, hugeState)); m = static_cast<float*>(mapBytes(n * 4, hugeState));
    v = static_cast<float*>(mapBytes(n * 4, hugeState));
    g = static_cast<u16*>(mapBytes(n * 2, hugeGw)); w = static_cast<u16*>(mapBytes(n * 2, hugeGw));
#pragma omp parallel for num_threads(threads) schedule(static)
    for (size_t i = 0; i < n; ++i) { p[i] = 0.01f * static_cast<float>(i % 97); m[i] = 0; v[i] = 0; g[i] = fToBf16(1e-3f * static_cast<float>(i % 13)); w[i] = 0; }
  }
  ~Group() { munmap(p, n * 4); munmap(m, n * 4); munmap(v, n * 4); munmap(g, n * 2); munmap(w, n * 2); }
  void step(int threads) {
    const float b1 = 0.9f, b2 = 0.999f, eps = 1e-8f, lr = 1e-4f, wd = 0.01f, bc2 = 0.001f, step = -lr / 0.1f;
    const float inv = 1.0f / std::sqrt(bc2);
#pragma omp parallel for simd num_threads(threads) schedule(static)
    for (size_t i = 0; i < n; ++i) {
      const float gi = bf16ToF(g[i]);
      const float mi = b1 * m[i] + (1 - b1) * gi, vi = b2 * v[i] + (1 - b2) * gi * gi;
      const float pi = p[i] * (1 - lr * wd) + step * mi / (std::sqrt(vi) * inv + eps);
      m[i] = mi, v[i] = vi, p[i] = pi, w[i] = fToBf16(pi);
    }
  }
};

double median(std::vector<double> x) { std::sort(x.begin(), x.end()); return x[x.size() / 2]; }
}  // namespace

int main(int argc, char** argv) {
  const size_t n = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 157286400;
  const int cores = static_cast<int>(std::thread::hardware_concurrency());
  const int groups = argc > 3 ? std::atoi(argv[3]) : 2;
  const int threads = argc > 2 ? std::atoi(argv[2]) : std::max(1, cores / groups);
  const int reps = argc > 4 ? std::atoi(argv[4]) : 15;
  std::printf("adam-pages: %zu params a group, %d groups at once, %d threads each, median of %d steps\n", n, groups, threads, reps);
  struct V { const char* name; int state, gw; };
  for (V var : {V{"4 KiB pages", MADV_NOHUGEPAGE, MADV_NOHUGEPAGE}, V{"2 MiB pages for g, w", MADV_NOHUGEPAGE, MADV_HUGEPAGE},
                V{"2 MiB pages for all", MADV_HUGEPAGE, MADV_HUGEPAGE}, V{"4 KiB pages again", MADV_NOHUGEPAGE, MADV_NOHUGEPAGE}}) {
    std::vector<std::vector<double>> secs(groups);
    std::vector<std::thread> ts;
    for (int k = 0; k < groups; ++k)
      ts.emplace_back([&, k] {
        Group G(n, var.state, var.gw, threads);
        G.step(threads);  // warm-up
        for (int r = 0; r < reps; ++r) {
          const auto a = std::chrono::steady_clock::now();
          G.step(threads);
          secs[k].push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - a).count());
        }
      });
    for (auto& t : ts) t.join();
    double rate = 0;
    for (int k = 0; k < groups; ++k) rate += n / median(secs[k]);
    std::printf("  %-22s %6.2f G params/s in all (%5.1f GB/s at 28 B a parameter)\n", var.name, rate / 1e9, rate * 28 / 1e9);
  }
  return 0;
}
