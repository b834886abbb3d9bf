// The boundary between the Node-API binding (binding.cpp, which never includes torch headers) and
// the torch translation units: plain structs in, plain structs out. TypeScript validates every
// argument before it gets here (executor/native.ts); C++ still checks what it relies on.
#pragma once
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace mmoc {

/** An error whose message starts with the C++ file:line that raised it. */
struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};
std::string where(const char* file, int line);
#define MMOC_FAIL(msg)                                                  \
  do {                                                                  \
    std::ostringstream mmoc_os_;                                        \
    mmoc_os_ << msg;                                                    \
    throw ::mmoc::Error(::mmoc::where(__FILE__, __LINE__) + mmoc_os_.str()); \
  } while (0)
#define MMOC_CHECK(cond, msg) \
  do {                        \
    if (!(cond)) MMOC_FAIL(msg); \
  } while (0)

/** An environment switch (MMOC_NO_FAST_PATHS=1 and the like): set, non-empty and not "0". */
inline bool envOn(const char* name) {
  const char* v = std::getenv(name);
  return v && *v && std::string(v) != "0";
}

// ---- build and devices (doctor)
struct BuildInfo {
  std::string torchVersion, compiler, cudaVersion;
  bool cuda = false, sdpa = false, gloo = false, nccl = false, fusedAdamw = false;
};
struct CudaDevice {
  int index = 0;
  std::string name;
  int64_t totalBytes = 0, freeBytes = 0;
  int major = 0, minor = 0, multiProcessors = 0;
};
struct Devices {
  int cpuCores = 0, torchThreads = 0;
  bool cudaAvailable = false;
  std::vector<CudaDevice> cuda;
};
struct SelfTest {
  std::string device;
  bool ok = false;
  double loss = 0, gradNorm = 0, ms = 0;
  std::string error;
};
BuildInfo buildInfo();
/** CPU AdamW benchmark: the project's host AdamW (fp32 gradients, and bf16 gradients with bf16
 *  weights written) against torch's CPU AdamW on the same n parameters and thread count. Seconds
 *  per step, median of `reps`. */
struct AdamBench {
  int64_t n = 0;
  int threads = 0;
  double oursF32 = 0, oursBf16 = 0, torch = 0, copySec = 0;  // copySec: dst.copy_(src) of n fp32 (8 bytes a param)
  // torch doing the executor's whole job: bf16 gradient to fp32, its AdamW, fp32 weights to bf16 (s)
  double torchJob = 0;
  std::string torchImpl;
};
AdamBench benchCpuAdamW(int64_t n, int threads, int reps);
/** The executor's host AdamW (bf16 gradients in, bf16 weights out) run by `groups` threads at once,
 *  each with its own `n` parameters and `threads` OpenMP threads, as the host worker of each rank
 *  runs it when every rank updates at the same time. Seconds for n * groups parameters at the
 *  groups' own rates summed (each group over its own time), the median over reps. `pinned`: the
 *  gradients and weights in page-locked memory, as a GPU rank's host groups hold them. */
double benchCpuAdamWConcurrent(int64_t n, int threads, int groups, int reps, bool pinned = false);
/** CPU cores and CUDA devices. `withFree` also reads each device's free memory, which needs a CUDA
 *  context on every device (about 0.5 GiB each on an H200): the launcher, whose ranks are other
 *  processes, leaves it off so that it holds no device memory beside theirs. */
Devices devices(bool withFree = false);
SelfTest selfTest(const std::string& device);

// ---- safetensors (raw bytes; dtype names as in the format: F32, F16, BF16, I64, ...)
struct StTensor {
  std::string name, dtype;
  std::vector<int64_t> shape;
  std::vector<uint8_t> data;
};
std::vector<StTensor> readSafetensors(const std::string& path);
void writeSafetensors(const std::string& path, const std::vector<StTensor>& tensors);

// ---- running a rank's program
enum Op : int {
  OP_FORWARD = 0, OP_BACKWARD, OP_SEND_ACT, OP_RECV_ACT, OP_SEND_GRAD, OP_RECV_GRAD,
  OP_FETCH_PARAMS, OP_RELEASE_PARAMS, OP_OFFLOAD_GRADS, OP_ALLREDUCE_GRADS, OP_OFFLOAD_ACT,
  OP_RELOAD_ACT, OP_GRAD_NORM, OP_OPTIMIZER_STEP, OP_UPLOAD_PARAMS, OP_DISK_READ, OP_DISK_WRITE,
  OP_BARRIER, OP_COUNT
};
const char* opName(int op);

struct ModelCfg {
  int hidden = 0, inter = 0, layers = 0, heads = 0, kvHeads = 0, headDim = 0, vocab = 0;
  double eps = 1e-5, theta = 10000;
  bool tied = false;
  int lossChunk = 0;  // tokens a chunk of the head's logits (0: the whole micro-batch at once)
};
struct OptimCfg {
  double lr = 1e-3, beta1 = 0.9, beta2 = 0.95, eps = 1e-8, weightDecay = 0.0, clip = 0.0;  // clip <= 0: none
  int warmup = 0;
  bool cosine = true;
  double minLrRatio = 0.1;
};
struct Instr {
  int op = 0, mb = -1, stage = -1, peer = -1, layer = -1, tier = 0;  // tier: 0 gpu, 1 cpu
  double fraction = 1.0;
};
struct StageCfg {
  int lo = 0, hi = 0, rank = 0;
  bool recompute = false;
  bool recomputeLayers = false;  // recompute one layer at a time from its kept input (else the stage from its input)
  int prefetch = 0;  // streamed layers fetched ahead of use (the stage holds prefetch + 1 of them)
};
struct RunCfg {
  ModelCfg model;
  OptimCfg optim;
  std::string precision;  // "fp32" | "bf16-mixed" | "bf16"
  int seq = 0, microBatchSize = 1, microBatches = 1, steps = 1, totalSteps = 1;
  uint64_t seed = 0;
  std::vector<StageCfg> stages;
  std::vector<Instr> program;
  int rank = 0, world = 1;
  int pipelineRanks = 1;  // N; world = N x data-parallel replicas; rank = replica * N + pipeline rank
  std::string masterAddr = "127.0.0.1";
  int masterPort = 29500;
  std::string device = "cpu";  // "cpu" or "cuda:N"
  std::string dataPath;        // raw little-endian uint16 tokens (uint32 when vocab > 65536); empty: synthetic
  std::string weightsDir;      // Hugging Face folder with safetensors; empty: seeded init
  std::string saveDir;         // write the rank's weights as safetensors (HF names) at the end; empty: none
  std::string diskPaths;       // the plan's disk paths, newline-separated (disk tier)
  bool diskAlternate = false;   // alternate the disk groups' order each step (delayed update only)
  int diskCacheGroups = 0;       // groups the host keeps staged across the step boundary
  int diskConcurrency = 2;      // chunk transfers in flight at once per disk path (policy.diskConcurrency)
  std::string statusPath;      // a small file the rank keeps its current instruction in; empty: none
  bool trace = false;
  double timeoutSec = 60;
  int threads = 0;  // intra-op threads on CPU; 0: leave torch's default
  int64_t gpuMemCapBytes = 0;  // the plan's per-GPU cap, enforced through the caching allocator; 0: none
  int64_t hostMemBudgetBytes = 0;  // this rank's share of the host memory for offloaded state; 0: none
};
struct Progress {
  int step = 0;
  double loss = 0, lr = 0, gradNorm = 0, stepSec = 0;
  int64_t tokens = 0, memBytes = 0, peakBytes = 0;
};
struct TraceEv {
  int step = 0, pc = 0, op = 0, mb = -1, stage = -1, layer = -1;
  int track = 0;  // 0: the interpreter (compute stream), 1: GPU -> host copy, 2: host -> GPU copy, 3: CPU update, 4: disk
  double tsUs = 0, durUs = 0;
  int64_t bytes = 0, memBytes = 0;
};
struct RunResult {
  std::vector<double> losses, gradNorms, stepSec;
  std::vector<TraceEv> trace;
  int64_t peakBytes = 0, peakAllocBytes = 0, paramCount = 0;
  int64_t overheadBytes = 0;  // CUDA: context + communication buffers (device used - allocator reserved)
  int streamedLayers = 0, streamedPeakResident = 0;  // parameter streaming: layers streamed, most held at once
  int64_t diskReads = 0, diskReadHits = 0;  // disk tier: group reads from files, and reads served from host memory
  int stepsDone = 0;
  bool stopped = false;
  std::string backend;
  double startUs = 0;  // steady clock origin of trace ts, in microseconds since the epoch
};
using ProgressFn = std::function<void(const Progress&)>;
RunResult runRank(const RunCfg& cfg, const ProgressFn& progress, const std::atomic<bool>& stop);

}  // namespace mmoc
