// Calibration benchmarks for `mmoc calibrate` (see calibrate.h). One task at a time; each returns
// the median and minimum of its timed repetitions and kind-specific figures:
//   gemm       C[m,n] = A[m,k] B[k,n]                        medianUs
//   attention  causal SDPA on the model's q|k|v views, kv heads repeated as the model does, timed
//              behind device work ahead (device time, not the host's dispatch)
//                                                            value = fwd us, value2 = bwd us
//   kernel     rmsnorm | rotary | swiglu | loss | add        value = effective GB/s (ideal bytes / time)
//   copy       h2d | d2h | duplex on `gpus` at once          value = aggregate GB/s, value2 = slowest GPU's GB/s
//   p2p        gpus[0] -> gpus[1]                            value = GB/s
//   adamw      the executor's AdamW update (dims [params] or, on the CPU, [params, groups]: that many
//              thread groups at once, as every rank's host worker): on the CPU with `threads`, or on `device` cuda:N (the
//              multi-tensor CUDA kernel of adamw_cuda.cu where built, else at::_fused_adamw_)
//                                                            value = parameters/s
//   memcpy     host memcpy with `threads`                    value = GB/s (read + write)
//   disk       direct I/O write then read in `name`          value = write GB/s, value2 = read GB/s
//   slowdown   GEMM while H2D and D2H copies run             value = fraction slower
//   launch     tiny op dispatch                              value = us per op, value2 = us per autograd op (fwd+bwd)
//   context    CUDA context + allocator                      value = context bytes, value2 = allocator overhead fraction
//   device_used device memory in use by every process          value = bytes
#include "pch.h"
#include "api.h"
#include "calibrate.h"
#include "disk_io.h"
#if defined(MMOC_CUDA_KERNELS) && MMOC_CUDA_KERNELS && MMOC_HAS_CUDA
#include "adamw_cuda.h"
#define MMOC_CALIB_CUDA_ADAMW 1
#else
#define MMOC_CALIB_CUDA_ADAMW 0
#endif

#include <algorithm>
#include <unistd.h>

namespace mmoc {
namespace {

using Clock = std::chrono::steady_clock;
double nowUs() { return std::chrono::duration<double, std::micro>(Clock::now().time_since_epoch()).count(); }

at::ScalarType dtypeOf(const std::string& d) {
  if (d == "fp32") return at::kFloat;
  if (d == "bf16") return at::kBFloat16;
  if (d == "fp16") return at::kHalf;
  MMOC_FAIL("calibrate: unknown dtype '" << d << "' (fp32, bf16, fp16)");
}

at::Device deviceOf(const std::string& d) {
  if (d == "cpu") return at::Device(at::kCPU);
#if MMOC_HAS_CUDA
  if (d.rfind("cuda:", 0) == 0) {
    const int i = std::stoi(d.substr(5));
    MMOC_CHECK(i >= 0 && i < static_cast<int>(c10::cuda::device_count()), "calibrate: no device " << d);
    return at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(i));
  }
#endif
  MMOC_FAIL("calibrate: device '" << d << "' is not available in this build (cpu" << (MMOC_HAS_CUDA ? ", cuda:N" : "") << ")");
}

void sync(const at::Device& dev) {
#if MMOC_HAS_CUDA
  if (dev.is_cuda()) at::cuda::getCurrentCUDAStream(dev.index()).synchronize();
#endif
}

CalibResult stats(std::vector<double> us) {
  CalibResult r;
  MMOC_CHECK(!us.empty(), "calibrate: no repetitions timed");
  std::sort(us.begin(), us.end());
  const size_t n = us.size();
  r.medianUs = n % 2 ? us[n / 2] : 0.5 * (us[n / 2 - 1] + us[n / 2]);
  r.minUs = us[0];
  r.samples = static_cast<int>(n);
  return r;
}

/** Warm-up, then timed repetitions of body(rep) (CUDA events on a GPU, steady clock on the CPU)
 *  until `iters` or `maxSec` (at least 3 repetitions). On a GPU, `ahead` (if any) is enqueued
 *  before each repetition's start event: long device work during which the host enqueues the
 *  repetition, so the events time the kernels back to back as they run in the executor (queued
 *  behind the layer's matrix products), not the host's launch latency. */
template <class F>
CalibResult timeReps(const at::Device& dev, const CalibTask& t, F&& body, const std::function<void()>& ahead = {}) {
  for (int i = 0; i < std::max(1, t.warmup); ++i) body(i);
  sync(dev);
  std::vector<double> us;
  const double t0 = nowUs();
  const int iters = std::max(3, t.iters);
  for (int i = 0; i < iters; ++i) {
#if MMOC_HAS_CUDA
    if (dev.is_cuda()) {
      at::cuda::CUDAEvent a(cudaEventDefault), b(cudaEventDefault);
      auto s = at::cuda::getCurrentCUDAStream(dev.index());
      if (ahead) ahead();
      a.record(s);
      body(i + 1);
      b.record(s);
      b.synchronize();
      us.push_back(static_cast<double>(a.elapsed_time(b)) * 1e3);
    } else
#endif
    {
      const double s = nowUs();
      body(i + 1);
      us.push_back(nowUs() - s);
    }
    if (i >= 2 && (nowUs() - t0) > t.maxSec * 1e6) break;
  }
  return stats(us);
}

/** How many input sets to rotate through: fresh inputs each repetition where memory allows. */
int inputSets(int64_t bytesPerSet, bool cuda) {
  const int64_t budget = cuda ? (int64_t(4) << 30) : (int64_t(512) << 20);
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(4, budget / std::max<int64_t>(1, bytesPerSet))));
}

at::Tensor randn(at::IntArrayRef shape, at::ScalarType dt, const at::Device& dev) {
  return at::randn(shape, at::TensorOptions().dtype(dt).device(dev));
}

/** Device work ahead of a timed repetition on a GPU: square bf16 GEMMs of about `us` in all, so that
 *  the host enqueues the timed work (its dispatch, the autograd engine's hand-off to its device
 *  thread) while the device is busy and the events time only the kernels, back to back, as they run
 *  in the executor (queued behind the layer's other work). Empty on the CPU. */
struct AheadBlock {
  at::Tensor a, b;
  int count = 0;
  double blockUs = 0;
  explicit AheadBlock(const at::Device& dev, double us) {
#if MMOC_HAS_CUDA
    if (!dev.is_cuda()) return;
    a = randn({4096, 4096}, at::kBFloat16, dev);
    b = randn({4096, 4096}, at::kBFloat16, dev);
    for (int i = 0; i < 3; ++i) at::mm(a, b);  // cuBLAS handle and heuristics
    sync(dev);
    auto s = at::cuda::getCurrentCUDAStream(dev.index());
    at::cuda::CUDAEvent e0(cudaEventDefault), e1(cudaEventDefault);
    e0.record(s);
    for (int i = 0; i < 4; ++i) at::mm(a, b);
    e1.record(s);
    e1.synchronize();
    blockUs = std::max(1.0, static_cast<double>(e0.elapsed_time(e1)) * 1e3 / 4);
    count = static_cast<int>(std::min(200.0, std::ceil(us / blockUs)));
#else
    (void)dev; (void)us;
#endif
  }
  void operator()() const { for (int i = 0; i < count; ++i) at::mm(a, b); }
  double us() const { return count * blockUs; }
  explicit operator bool() const { return count > 0; }
};

CalibResult gemm(const CalibTask& t) {
  MMOC_CHECK(t.dims.size() == 3, "calibrate gemm: dims must be [m, n, k]");
  const auto dev = deviceOf(t.device);
  const auto dt = dtypeOf(t.dtype);
  const int64_t m = t.dims[0], n = t.dims[1], k = t.dims[2];
  const int64_t es = at::elementSize(dt);
  const int sets = inputSets((m * k + k * n) * es, dev.is_cuda());
  std::vector<at::Tensor> A, B;
  for (int i = 0; i < sets; ++i) A.push_back(randn({m, k}, dt, dev)), B.push_back(randn({k, n}, dt, dev));
  at::Tensor C = at::empty({m, n}, A[0].options());
  at::NoGradGuard ng;
  // behind ~300 us of device work, so that the events time the kernel and not the host's cuBLAS
  // dispatch before it (timed from an idle device, LLaMA-3.2-1B's 1024x512x2048 product read 39.5 us
  // in one run and 21.5 in the next: 5-20 us of dispatch in every small entry)
  // (MMOC_GEMM_IDLE=1: from an idle device as before, to compare the two)
  AheadBlock ahead(dev, envOn("MMOC_GEMM_IDLE") ? 0 : 300);
  std::function<void()> aheadFn;
  if (ahead) aheadFn = [&]() { ahead(); };
  CalibResult r = timeReps(dev, t, [&](int i) { at::mm_out(C, A[i % sets], B[i % sets]); }, aheadFn);
  if (ahead) r.note = "device time behind " + std::to_string(static_cast<int>(ahead.us())) + " us of GEMMs ahead";
  return r;
}

CalibResult attention(const CalibTask& t) {
  MMOC_CHECK(t.dims.size() == 5, "calibrate attention: dims must be [batch, heads, kv_heads, seq, head_dim]");
  const auto dev = deviceOf(t.device);
  const auto dt = dtypeOf(t.dtype);
  const int64_t B = t.dims[0], H = t.dims[1], KV = t.dims[2], S = t.dims[3], D = t.dims[4];
  MMOC_CHECK(KV > 0 && H % KV == 0, "calibrate attention: heads must be a multiple of kv_heads");
  const int64_t rep = H / KV;
  // Inputs laid out as the model makes them (model.cpp forward): q, k, v are [B, S, heads, D] views
  // of the q|k|v GEMM output transposed to [B, heads, S, D]; the output goes back transposed and
  // reshaped to [B, S, H*D] (o_proj's input), whose gradient arrives contiguous. The kv heads are
  // repeated as the model does (a copy whose backward sums over the repeats).
  const int sets = inputSets((2 * B * (H + 2 * KV) * S * D + B * H * S * D) * at::elementSize(dt), dev.is_cuda());
  std::vector<at::Tensor> QKV, G;
  for (int i = 0; i < sets; ++i) QKV.push_back(randn({B, S, H + 2 * KV, D}, dt, dev)), G.push_back(randn({B, S, H * D}, dt, dev));
  auto expandKv = [&](const at::Tensor& x) {
    return rep == 1 ? x : x.unsqueeze(2).expand({B, KV, rep, S, D}).reshape({B, H, S, D});
  };
  struct Leaves { at::Tensor q, k, v; };
  // q, k, v as leaves of their own (each a strided view of the set's q|k|v): the backward ends at
  // them, so the slice backward into the fused GEMM output (the model's, not attention's) is not timed
  auto leaves = [&](int s, bool grad) {
    auto x = QKV[s];
    Leaves l{x.narrow(2, 0, H).transpose(1, 2), x.narrow(2, H, KV).transpose(1, 2), x.narrow(2, H + KV, KV).transpose(1, 2)};
    if (grad) l.q = l.q.detach().requires_grad_(true), l.k = l.k.detach().requires_grad_(true), l.v = l.v.detach().requires_grad_(true);
    return l;
  };
  auto attend = [&](const Leaves& l) { return causalAttention(l.q, expandKv(l.k), expandKv(l.v)).transpose(1, 2).reshape({B, S, H * D}); };
  // about 3 ms of device work ahead of each repetition: above the host's enqueue time of a backward
  // (hundreds of us through the autograd engine on a small shape)
  AheadBlock ahead(dev, 3000);
  int hostOver = 0;  // repetitions whose host enqueue outlasted the work ahead (the events then include host time)
  CalibResult fwd;
  {
    at::NoGradGuard ng;
    std::function<void()> aheadFn;
    if (ahead) aheadFn = [&]() { ahead(); };
    fwd = timeReps(dev, t, [&](int i) { attend(leaves(i % sets, false)); }, aheadFn);
  }
  // backward: each repetition's graph is built untimed (and run to completion), then the backward
  // alone is timed, behind the work ahead, from the gradient of the [B, S, H*D] output to q, k, v
  std::vector<double> us;
  const int iters = std::max(3, t.iters);
  const double t0 = nowUs();
  for (int i = -std::max(1, t.warmup); i < iters; ++i) {
    const int s = ((i % sets) + sets) % sets;
    auto l = leaves(s, true);
    auto o = attend(l);
    sync(dev);
#if MMOC_HAS_CUDA
    if (dev.is_cuda()) {
      at::cuda::CUDAEvent a(cudaEventDefault), b(cudaEventDefault);
      auto st = at::cuda::getCurrentCUDAStream(dev.index());
      if (ahead) ahead();
      const double h0 = nowUs();
      a.record(st);
      auto g = torch::autograd::grad({o}, {l.q, l.k, l.v}, {G[s]});
      b.record(st);
      if (ahead && nowUs() - h0 > 0.8 * ahead.us() && i >= 0) ++hostOver;
      b.synchronize();
      if (i >= 0) us.push_back(static_cast<double>(a.elapsed_time(b)) * 1e3);
    } else
#endif
    {
      const double s0 = nowUs();
      auto g = torch::autograd::grad({o}, {l.q, l.k, l.v}, {G[s]});
      if (i >= 0) us.push_back(nowUs() - s0);
    }
    if (i >= 2 && (nowUs() - t0) > t.maxSec * 1e6) break;
  }
  auto bwd = stats(us);
  CalibResult r = fwd;
  r.value = fwd.medianUs;
  r.value2 = bwd.medianUs;
  std::ostringstream note;
  note << (MMOC_HAS_SDPA ? "scaled_dot_product_attention" : "math attention (matmul, masked softmax, matmul)");
  if (ahead) note << "; device time behind " << static_cast<int>(ahead.us()) << " us of GEMMs ahead";
  if (hostOver) note << "; " << hostOver << " backward repetitions enqueued slower than the work ahead";
  r.note = note.str();
  return r;
}

CalibResult kernel(const CalibTask& t) {
  MMOC_CHECK(t.dims.size() == 2, "calibrate kernel: dims must be [tokens, width]");
  const auto dev = deviceOf(t.device);
  const auto dt = dtypeOf(t.dtype);
  const int64_t T = t.dims[0], W = t.dims[1], es = at::elementSize(dt);
  at::NoGradGuard ng;
  const int sets = inputSets(2 * T * W * es, dev.is_cuda());
  std::vector<at::Tensor> X, Y;
  for (int i = 0; i < sets; ++i) X.push_back(randn({T, W}, dt, dev)), Y.push_back(randn({T, W}, dt, dev));
  double bytes = 0;
  CalibResult r;
  // a GEMM of about 0.3 ms ahead of each repetition keeps the device busy while the host enqueues it
  std::function<void()> ahead;
  at::Tensor blockA, blockB;
  if (dev.is_cuda()) {
    blockA = randn({4096, 4096}, at::kBFloat16, dev);
    blockB = randn({4096, 4096}, at::kBFloat16, dev);
    ahead = [&]() { at::mm(blockA, blockB); at::mm(blockA, blockB); };
  }
  if (t.name == "rmsnorm") {
    auto w = randn({W}, dt, dev);
    bytes = 2.0 * T * W * es;
#if MMOC_HAS_RMS_NORM
    // the executor's fast path on a GPU (model.cpp rmsnorm): the fused at::rms_norm
    if (dev.is_cuda()) {
      r = timeReps(dev, t, [&](int i) { at::rms_norm(X[i % sets], {W}, w, 1e-5); }, ahead);
    } else
#endif
    r = timeReps(dev, t, [&](int i) {
      auto x = X[i % sets];
      auto xf = x.to(at::kFloat);
      (xf * at::rsqrt(xf.pow(2).mean(-1, true) + 1e-5)).to(dt).mul_(w);
    }, ahead);
  } else if (t.name == "rotary") {
    MMOC_CHECK(W % 2 == 0, "calibrate kernel rotary: width must be even");
    auto cs = randn({T, W}, dt, dev), sn = randn({T, W}, dt, dev);
    bytes = 2.0 * T * W * es;
    if (dev.is_cuda()) {
      // the executor's fast path (model.cpp forward): rotate_half(x) * sin as roll(x, W/2) * [-sin | sin]
      r = timeReps(dev, t, [&](int i) {
        auto x = X[i % sets];
        at::addcmul(x * cs, at::roll(x, {W / 2}, {-1}), sn);
      }, ahead);
    } else {
      r = timeReps(dev, t, [&](int i) {
        auto x = X[i % sets];
        auto x1 = x.narrow(1, 0, W / 2), x2 = x.narrow(1, W / 2, W / 2);
        (x * cs + at::cat({-x2, x1}, 1) * sn);
      }, ahead);
    }
  } else if (t.name == "swiglu") {
    bytes = 3.0 * T * W * es;
    r = timeReps(dev, t, [&](int i) { at::silu(X[i % sets]).mul_(Y[i % sets]); }, ahead);
  } else if (t.name == "loss") {
    // width = vocabulary: log-softmax in fp32 and the negative log-likelihood of random targets
    auto tgt = at::randint(0, W, {T}, at::TensorOptions().dtype(at::kLong).device(dev));
    bytes = T * W * (es + 4.0);
    r = timeReps(dev, t, [&](int i) { at::nll_loss(at::log_softmax(X[i % sets], -1, at::kFloat), tgt); }, ahead);
  } else if (t.name == "add") {
    auto out = at::empty_like(X[0]);
    bytes = 3.0 * T * W * es;
    r = timeReps(dev, t, [&](int i) { at::add_out(out, X[i % sets], Y[i % sets]); }, ahead);
  } else {
    MMOC_FAIL("calibrate kernel: unknown kernel '" << t.name << "' (rmsnorm, rotary, swiglu, loss, add)");
  }
  r.value = bytes / (r.medianUs * 1e3);
  r.value2 = bytes;
  return r;
}

#if MMOC_HAS_CUDA
/** The executor's GPU AdamW update of `n` parameters split like a decoder layer's tensors: fp32
 *  master, m and v; bf16 gradients read and bf16 weights written in the same pass. The same kernel
 *  (and launch grouping) as runtime.cpp's adamwParams; timed with device events. */
CalibResult adamwGpu(const CalibTask& t, const at::Device& dev) {
  const int64_t n = t.dims[0];
  constexpr int kParts = 7;  // q|k|v, o, gate|up, down, two norms: about a layer's tensor count
  const int64_t each = std::max<int64_t>(1, (n + kParts - 1) / kParts);
  at::NoGradGuard ng;
  const auto f32 = at::TensorOptions().dtype(at::kFloat).device(dev);
  std::vector<at::Tensor> P, M, V, G, W;
  for (int i = 0; i < kParts; ++i) {
    P.push_back(at::randn({each}, f32));
    M.push_back(at::randn({each}, f32).mul_(0.01));
    V.push_back(at::rand({each}, f32).mul_(0.01).add_(1e-6));
    G.push_back(at::randn({each}, f32).to(at::kBFloat16));
    W.push_back(P.back().to(at::kBFloat16));
  }
  const double lr = 1e-4, b1 = 0.9, b2 = 0.95, eps = 1e-8, wd = 0.01;
  int step = 0;
  CalibResult r;
#if MMOC_CALIB_CUDA_ADAMW
  std::vector<AdamWChunk> chunks;
  for (int i = 0; i < kParts; ++i) {
    AdamWChunk c;
    c.p = P[i].data_ptr<float>();
    c.m = M[i].data_ptr<float>();
    c.v = V[i].data_ptr<float>();
    c.g = G[i].data_ptr();
    c.w = W[i].data_ptr();
    c.n = each;
    c.wd = static_cast<float>(wd);
    chunks.push_back(c);
  }
  auto stream = c10::cuda::getCurrentCUDAStream(dev.index()).stream();
  r = timeReps(dev, t, [&](int) {
    ++step;
    const double bc1 = 1 - std::pow(b1, step), bc2 = 1 - std::pow(b2, step);
    for (size_t i = 0; i < chunks.size(); i += kAdamWMaxChunks) {
      const int k = static_cast<int>(std::min<size_t>(kAdamWMaxChunks, chunks.size() - i));
      const char* err = adamwCudaLaunch(chunks.data() + i, k, /*gradIsBf16=*/true, static_cast<float>(lr), static_cast<float>(b1),
                                        static_cast<float>(b2), static_cast<float>(eps), static_cast<float>(bc1),
                                        static_cast<float>(bc2), /*gscale=*/1.0f, stream);
      MMOC_CHECK(!err, "calibrate adamw: CUDA AdamW launch: " << err);
    }
  });
  r.note = "the executor's multi-tensor CUDA AdamW (adamw_cuda.cu): fp32 master, m, v; bf16 gradients and weights";
#elif MMOC_HAS_FUSED_ADAMW
  auto stepT = at::full({}, 1.0, f32);
  r = timeReps(dev, t, [&](int) {
    ++step;
    stepT.fill_(static_cast<double>(step));
    std::vector<at::Tensor> gs;
    for (auto& g : G) gs.push_back(g.to(at::kFloat));
    std::vector<at::Tensor> steps(kParts, stepT);
    at::_fused_adamw_(P, gs, M, V, {}, steps, lr, b1, b2, wd, eps, /*amsgrad=*/false, /*maximize=*/false);
    for (int i = 0; i < kParts; ++i) W[i].copy_(P[i]);
  });
  r.note = "the executor's GPU AdamW fallback: gradient to fp32, at::_fused_adamw_, weight copy";
#else
  MMOC_FAIL("calibrate adamw: this build has neither the CUDA AdamW kernel nor at::_fused_adamw_");
#endif
  r.value = (each * kParts) / (r.medianUs * 1e-6);
  r.value2 = static_cast<double>(each * kParts);
  return r;
}
#endif

CalibResult adamw(const CalibTask& t) {
  MMOC_CHECK((t.dims.size() == 1 || t.dims.size() == 2) && t.dims[0] > 0, "calibrate adamw: dims must be [parameters] or [parameters, groups]");
#if MMOC_HAS_CUDA
  if (t.device != "cpu") {
    const auto dev = deviceOf(t.device);
    if (dev.is_cuda()) return adamwGpu(t, dev);
  }
#endif
  // the executor's host AdamW itself (runtime.cpp cpuAdamW: fp32 master, m, v; bf16 gradients read
  // and the bf16 weights written in the same pass, OpenMP tiles), at `threads` threads
  const int64_t n = t.dims[0];
  // pinned gradients and weights where a GPU rank would have them (a CUDA build with a GPU)
  bool pinned = false;
#if MMOC_HAS_CUDA
  pinned = t.pinned && c10::cuda::device_count() > 0;
#endif
  if ((t.dims.size() > 1 && t.dims[1] > 1) || pinned) {
    // dims[1] groups at once (every rank's host worker updating together), `threads` each
    const int groups = static_cast<int>(t.dims.size() > 1 ? std::max<int64_t>(1, t.dims[1]) : 1);
    const double s = benchCpuAdamWConcurrent(n, t.threads > 0 ? t.threads : at::get_num_threads(), groups, std::max(3, t.iters), pinned);
    CalibResult r;
    r.medianUs = r.minUs = s * 1e6;
    r.samples = std::max(3, t.iters);
    r.value = groups * n / s;  // all groups' parameters a second
    std::ostringstream os;
    os << "the executor's host AdamW in " << groups << " group(s) at once, " << t.threads << " threads each" << (pinned ? ", gradients and weights pinned" : "") << ": " << (r.value / 1e9) << "G params/s in all";
    r.note = os.str();
    return r;
  }
  const AdamBench b = benchCpuAdamW(n, t.threads > 0 ? t.threads : at::get_num_threads(), std::max(3, t.iters));
  CalibResult r;
  r.medianUs = r.minUs = b.oursBf16 * 1e6;
  r.samples = std::max(3, t.iters);
  r.value = n / b.oursBf16;
  r.value2 = n / b.torch;  // torch's CPU AdamW on the same parameters and threads, for reference
  std::ostringstream os;
  os << "the executor's host AdamW (bf16 gradients in, bf16 weights out, fp32 master/m/v): " << (r.value / 1e9) << "G params/s; torch "
     << b.torchImpl << ": " << (r.value2 / 1e9) << "G params/s";
  r.note = os.str();
  return r;
}

void fillRandom(uint8_t* p, size_t n, uint64_t seed) {
  uint64_t x = seed * 6364136223846793005ULL + 1442695040888963407ULL;
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    std::memcpy(p + i, &x, 8);
  }
  for (; i < n; ++i) p[i] = static_cast<uint8_t>(i * 131 + 7);
}

CalibResult memcpyBench(const CalibTask& t) {
  MMOC_CHECK(t.bytes > 0, "calibrate memcpy: bytes must be positive");
  const int th = std::max(1, t.threads);
  const size_t n = static_cast<size_t>(t.bytes);
  std::vector<uint8_t> a(n), b(n);
  fillRandom(a.data(), n, 1);
  fillRandom(b.data(), n, 2);
  const at::Device cpu(at::kCPU);
  CalibResult r = timeReps(cpu, t, [&](int i) {
    uint8_t* src = (i % 2) ? a.data() : b.data();
    uint8_t* dst = (i % 2) ? b.data() : a.data();
    std::vector<std::thread> ts;
    const size_t chunk = (n + th - 1) / th;
    for (int k = 0; k < th; ++k) {
      const size_t lo = k * chunk, hi = std::min(n, lo + chunk);
      if (lo >= hi) break;
      ts.emplace_back([=] { std::memcpy(dst + lo, src + lo, hi - lo); });
    }
    for (auto& x : ts) x.join();
  });
  r.value = 2.0 * n / (r.medianUs * 1e3);
  r.note = "read + write bytes; includes thread start-up";
  return r;
}

CalibResult disk(const CalibTask& t) {
  // The disk tier's own I/O (disk_io.cpp) as its steps use it: two optimizer-state group files of
  // `bytes`, each step read back (checksum verified) and written again through a temporary name
  // renamed over the previous step's file (8 MiB chunks by `concurrency` pool threads, O_DIRECT,
  // fsync). The first round creates the files and is not timed. A plain sequential stream of
  // 64 MiB timed 2.36 GB/s on an H200 host whose disk tier then moved 730 MB groups at 0.9-1.2
  // (read) and 1.0-1.5 GB/s (write); writing and reading fresh files through the tier, 1.74 / 2.27.
  MMOC_CHECK(!t.name.empty(), "calibrate disk: name must be the folder to test");
  MMOC_CHECK(t.bytes >= static_cast<int64_t>(diskio::kAlign), "calibrate disk: bytes must be at least " << diskio::kAlign);
  const int concurrency = t.dims.empty() ? 2 : static_cast<int>(t.dims[0]);
  MMOC_CHECK(concurrency > 0, "calibrate disk: concurrency (dims[0]) must be positive");
  constexpr int kGroups = 2;
  const size_t n = static_cast<size_t>(t.bytes);
  std::vector<uint8_t> buf(n);
  fillRandom(buf.data(), n, 5);
  std::vector<std::string> files;
  for (int g = 0; g < kGroups; ++g) files.push_back(t.name + "/.mmoc-calibrate-" + std::to_string(::getpid()) + "-g" + std::to_string(g) + ".state");
  auto cleanup = [&] {
    for (const auto& f : files) ::unlink(f.c_str()), ::unlink((f + ".tmp").c_str());
  };
  std::vector<double> wus, rus;
  bool direct = true;
  const double t0 = nowUs();
  const int rounds = std::max(2, t.iters) + 1;
  try {
    for (int it = 0; it < rounds; ++it) {
      double rs = 0;
      if (it > 0) {
        const double s = nowUs();
        for (int g = 0; g < kGroups; ++g) direct = diskio::readGroup(files[g], g, n, {{buf.data(), n}}, concurrency) && direct;
        rs = nowUs() - s;
      }
      buf[0] ^= static_cast<uint8_t>(it + 1);  // fresh bytes each round
      const double s = nowUs();
      for (int g = 0; g < kGroups; ++g) direct = diskio::writeGroup(files[g], g, n, {{buf.data(), n}}, concurrency) && direct;
      if (it > 0) wus.push_back(nowUs() - s), rus.push_back(rs);
      if (it >= 2 && nowUs() - t0 > t.maxSec * 1e6) break;
    }
  } catch (...) {
    cleanup();
    throw;
  }
  cleanup();
  const double total = static_cast<double>(t.bytes) * kGroups;
  auto w = stats(wus), r = stats(rus);
  CalibResult out = w;
  out.value = total / (w.medianUs * 1e3);
  out.value2 = total / (r.medianUs * 1e3);
  std::ostringstream note;
  note << "the disk tier's I/O as its steps use it: " << kGroups << " group files of " << t.bytes / (1 << 20) << " MiB read back and written again (renamed over) each round, "
       << concurrency << " threads, 8 MiB chunks, checksums, fsync, "
       << (direct ? "O_DIRECT" : "buffered (the filesystem refused O_DIRECT; reads may hit the page cache)");
  out.note = note.str();
  return out;
}

CalibResult launch(const CalibTask& t) {
  const auto dev = deviceOf(t.device);
  const int ops = 200;
  auto x = at::rand({1}, at::TensorOptions().device(dev)).add_(1);
  CalibResult r;
  {
    at::NoGradGuard ng;
    // wall clock of `ops` dispatches (on a GPU: launches queue up; the host side is what costs)
    std::vector<double> us;
    for (int rep = -t.warmup; rep < std::max(3, t.iters); ++rep) {
      sync(dev);
      const double s = nowUs();
      for (int i = 0; i < ops; ++i) x.mul_(0.999);
      sync(dev);
      if (rep >= 0) us.push_back((nowUs() - s) / ops);
    }
    r = stats(us);
  }
  r.value = r.medianUs;
  // a small autograd op, forward and backward (what per-op overhead costs inside a layer)
  auto w = at::rand({8, 8}, at::TensorOptions().device(dev)).requires_grad_(true);
  auto in = at::rand({4, 8}, at::TensorOptions().device(dev));
  std::vector<double> us2;
  for (int rep = -t.warmup; rep < std::max(3, t.iters); ++rep) {
    sync(dev);
    const double s = nowUs();
    auto y = in;
    for (int i = 0; i < 20; ++i) y = at::mm(y, w).mul(0.5);
    y.sum().backward();
    sync(dev);
    if (rep >= 0) us2.push_back((nowUs() - s) / 41);
  }
  r.value2 = stats(us2).medianUs;
  return r;
}

#if MMOC_HAS_CUDA
struct SpinBarrier {
  std::atomic<int> n{0};
  int total;
  explicit SpinBarrier(int t) : total(t) {}
  void wait() {
    n.fetch_add(1);
    while (n.load() < total) std::this_thread::yield();
  }
};

at::Tensor hostBuffer(int64_t bytes, bool pinned) {
  auto t = at::empty({bytes / 4}, at::TensorOptions().dtype(at::kFloat).pinned_memory(pinned));
  t.uniform_(-1, 1);
  return t;
}

CalibResult copy(const CalibTask& t) {
  MMOC_CHECK(!t.gpus.empty(), "calibrate copy: gpus must list at least one GPU");
  MMOC_CHECK(t.name == "h2d" || t.name == "d2h" || t.name == "duplex", "calibrate copy: name must be h2d, d2h or duplex");
  MMOC_CHECK(t.bytes >= 4, "calibrate copy: bytes must be at least 4");
  const int G = static_cast<int>(t.gpus.size());
  const bool up = t.name != "d2h", down = t.name != "h2d";
  const int iters = std::max(3, t.iters);
  SpinBarrier bar(G);
  std::vector<std::vector<double>> per(G);
  std::vector<double> start(G), end(G);
  std::vector<std::string> errs(G);
  std::vector<std::thread> ts;
  for (int gi = 0; gi < G; ++gi) {
    ts.emplace_back([&, gi] {
      try {
        const auto dev = deviceOf("cuda:" + std::to_string(t.gpus[gi]));
        c10::cuda::CUDAGuard guard(dev);
        auto sUp = c10::cuda::getStreamFromPool(false, dev.index()), sDown = c10::cuda::getStreamFromPool(false, dev.index());
        at::Tensor hUp, dUp, hDown, dDown;
        if (up) hUp = hostBuffer(t.bytes, t.pinned), dUp = at::empty_like(hUp, at::TensorOptions().device(dev).pinned_memory(false));
        if (down) hDown = hostBuffer(t.bytes, t.pinned), dDown = at::rand_like(hDown, at::TensorOptions().device(dev).pinned_memory(false));
        auto once = [&] {
          if (up) {
            c10::cuda::CUDAStreamGuard sg(sUp);
            dUp.copy_(hUp, t.pinned);
          }
          if (down) {
            c10::cuda::CUDAStreamGuard sg(sDown);
            hDown.copy_(dDown, t.pinned);
          }
          sUp.synchronize();
          sDown.synchronize();
        };
        for (int i = 0; i < std::max(1, t.warmup); ++i) once();
        bar.wait();
        start[gi] = nowUs();
        for (int i = 0; i < iters; ++i) {
          const double s = nowUs();
          once();
          per[gi].push_back(nowUs() - s);
          if (i >= 2 && nowUs() - start[gi] > t.maxSec * 1e6) break;  // as timeReps
        }
        end[gi] = nowUs();
      } catch (const std::exception& e) {
        errs[gi] = e.what();
        bar.wait();
      }
    });
  }
  for (auto& x : ts) x.join();
  for (auto& e : errs) MMOC_CHECK(e.empty(), "calibrate copy: " << e);
  const double wall = *std::max_element(end.begin(), end.end()) - *std::min_element(start.begin(), start.end());
  double moved = 0;
  for (int gi = 0; gi < G; ++gi) moved += double(t.bytes) * (up + down) * static_cast<double>(per[gi].size());
  CalibResult r = stats(per[0]);
  r.value = moved / (wall * 1e3);
  double slowest = 1e300;
  for (int gi = 0; gi < G; ++gi) slowest = std::min(slowest, double(t.bytes) * (up + down) / (stats(per[gi]).medianUs * 1e3));
  r.value2 = slowest;
  r.note = t.pinned ? "pinned host memory, async copies on side streams" : "pageable host memory";
  return r;
}

CalibResult p2p(const CalibTask& t) {
  MMOC_CHECK(t.gpus.size() == 2, "calibrate p2p: gpus must be [source, destination]");
  const auto a = deviceOf("cuda:" + std::to_string(t.gpus[0])), b = deviceOf("cuda:" + std::to_string(t.gpus[1]));
  auto src = at::rand({t.bytes / 4}, at::TensorOptions().device(a));
  auto dst = at::empty({t.bytes / 4}, at::TensorOptions().device(b));
  std::vector<double> us;
  for (int i = -std::max(1, t.warmup); i < std::max(3, t.iters); ++i) {
    at::cuda::getCurrentCUDAStream(a.index()).synchronize();
    at::cuda::getCurrentCUDAStream(b.index()).synchronize();
    const double s = nowUs();
    {
      c10::cuda::CUDAGuard g(a);
      dst.copy_(src, false);
    }
    at::cuda::getCurrentCUDAStream(a.index()).synchronize();
    at::cuda::getCurrentCUDAStream(b.index()).synchronize();
    if (i >= 0) us.push_back(nowUs() - s);
  }
  CalibResult r = stats(us);
  r.value = t.bytes / (r.medianUs * 1e3);
  r.note = "tensor copy between devices (cudaMemcpyPeer; peer access as torch enables it)";
  return r;
}

CalibResult slowdown(const CalibTask& t) {
  const auto dev = deviceOf(t.device);
  c10::cuda::CUDAGuard guard(dev);
  const int64_t n = t.dims.empty() ? 4096 : t.dims[0];
  const auto dt = dtypeOf(t.dtype);
  auto A = randn({n, n}, dt, dev), B = randn({n, n}, dt, dev), C = at::empty({n, n}, A.options());
  at::NoGradGuard ng;
  CalibTask tt = t;
  tt.iters = std::max(5, t.iters);
  auto alone = timeReps(dev, tt, [&](int) { at::mm_out(C, A, B); });
  std::atomic<bool> stop{false};
  std::string err;
  const int64_t bytes = t.bytes > 0 ? t.bytes : (int64_t(256) << 20);
  std::thread copier([&] {
    try {
      c10::cuda::CUDAGuard g(dev);
      auto su = c10::cuda::getStreamFromPool(false, dev.index()), sd = c10::cuda::getStreamFromPool(false, dev.index());
      auto hu = hostBuffer(bytes, true), hd = hostBuffer(bytes, true);
      auto du = at::empty_like(hu, at::TensorOptions().device(dev).pinned_memory(false)), dd = at::rand_like(du);
      while (!stop.load()) {
        {
          c10::cuda::CUDAStreamGuard sg(su);
          du.copy_(hu, true);
        }
        {
          c10::cuda::CUDAStreamGuard sg(sd);
          hd.copy_(dd, true);
        }
        su.synchronize();
        sd.synchronize();
      }
    } catch (const std::exception& e) {
      err = e.what();
    }
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  CalibResult busy;
  try {
    busy = timeReps(dev, tt, [&](int) { at::mm_out(C, A, B); });
  } catch (...) {
    stop = true;
    copier.join();
    throw;
  }
  stop = true;
  copier.join();
  MMOC_CHECK(err.empty(), "calibrate slowdown: copies failed: " << err);
  CalibResult r = busy;
  r.value = std::max(0.0, busy.medianUs / alone.medianUs - 1);
  r.value2 = alone.medianUs;
  r.note = "GEMM " + std::to_string(n) + "^3 alone against while H2D and D2H pinned copies run on the same GPU";
  return r;
}

CalibResult context(const CalibTask& t) {
  const auto dev = deviceOf(t.device);
  c10::cuda::CUDAGuard guard(dev);
  auto probe = at::empty({1}, at::TensorOptions().device(dev));  // creates the context
  sync(dev);
  size_t freeB = 0, totalB = 0;
  MMOC_CHECK(cudaMemGetInfo(&freeB, &totalB) == cudaSuccess, "calibrate context: cudaMemGetInfo failed");
  const auto s0 = c10::cuda::CUDACachingAllocator::getDeviceStats(dev.index());
  const double used = double(totalB - freeB) - double(s0.reserved_bytes[0].current);
  // allocator overhead: a mix of activation-like sizes allocated and partly freed
  std::vector<at::Tensor> keep;
  int64_t live = 0;
  for (int i = 0; i < 64; ++i) {
    const int64_t elems = (int64_t(1) << 18) * (1 + (i * 7) % 13) + 1024 * (i % 5);
    auto x = at::empty({elems}, at::TensorOptions().dtype(at::kBFloat16).device(dev));
    if (i % 3 == 2) continue;  // freed at once (fragments)
    keep.push_back(x);
    live += elems * 2;
  }
  sync(dev);
  const auto s1 = c10::cuda::CUDACachingAllocator::getDeviceStats(dev.index());
  const double reserved = double(s1.reserved_bytes[0].current - s0.reserved_bytes[0].current);
  CalibResult r;
  r.samples = 1;
  r.value = std::max(0.0, used);
  r.value2 = live > 0 ? std::max(0.0, reserved / double(live) - 1) : 0;
  r.note = "device memory in use outside the caching allocator (context, other processes) after the first allocation";
  return r;
}

/** Device memory in use on the device, by every process (cudaMemGetInfo): what this process holds
 *  there, taken before an executor run whose ranks read the device-wide figure. */
CalibResult deviceUsed(const CalibTask& t) {
  const auto dev = deviceOf(t.device);
  c10::cuda::CUDAGuard guard(dev);
  sync(dev);
  size_t freeB = 0, totalB = 0;
  MMOC_CHECK(cudaMemGetInfo(&freeB, &totalB) == cudaSuccess, "calibrate device_used: cudaMemGetInfo failed");
  CalibResult r;
  r.samples = 1;
  r.value = double(totalB - freeB);
  r.note = "device memory in use (all processes)";
  return r;
}
#endif

}  // namespace

/** Intra-op threads for the CPU work of one task (restored after it). */
struct ThreadsGuard {
  int before;
  explicit ThreadsGuard(int n) : before(at::get_num_threads()) {
    if (n > 0) at::set_num_threads(n);
  }
  ~ThreadsGuard() { at::set_num_threads(before); }
};

CalibResult runCalib(const CalibTask& t) {
  ThreadsGuard threads(t.kind == "memcpy" ? 0 : t.threads);
  try {
    if (t.kind == "gemm") return gemm(t);
    if (t.kind == "attention") return attention(t);
    if (t.kind == "kernel") return kernel(t);
    if (t.kind == "adamw") return adamw(t);
    if (t.kind == "memcpy") return memcpyBench(t);
    if (t.kind == "disk") return disk(t);
    if (t.kind == "launch") return launch(t);
#if MMOC_HAS_CUDA
    if (t.kind == "copy") return copy(t);
    if (t.kind == "p2p") return p2p(t);
    if (t.kind == "slowdown") return slowdown(t);
    if (t.kind == "context") return context(t);
    if (t.kind == "device_used") return deviceUsed(t);
#else
    if (t.kind == "copy" || t.kind == "p2p" || t.kind == "slowdown" || t.kind == "context" || t.kind == "device_used")
      MMOC_FAIL("calibrate " << t.kind << ": this build of the addon has no CUDA");
#endif
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    MMOC_FAIL("calibrate " << t.kind << " (" << t.device << ", " << t.dtype << "): " << e.what());
  }
  MMOC_FAIL("calibrate: unknown task kind '" << t.kind << "'");
}

}  // namespace mmoc
