// LLaMA on libtorch, by layer index (0 = embedding, 1..L = decoder layers, L+1 = final norm + head +
// loss), so that a rank holds exactly the layers of its stages. Internal to the torch TUs.
#pragma once
#include "pch.h"
#include "api.h"

#include <set>

namespace mmoc {

struct Param {
  std::string name;  // Hugging Face name, or an mmoc name for fused tensors (q|k|v, gate|up)
  at::Tensor w;       // compute-precision leaf (requires grad)
  at::Tensor master;  // fp32 master copy (bf16-mixed only; else == w)
  at::Tensor m, v;    // AdamW states (fp32), created on first optimizer step
  int rankForDecay = -1;  // a flat view of a tensor: the tensor's rank (weight decay on rank >= 2)
  at::Tensor acc;     // weight gradient accumulated by the GEMM itself (LinearAccum), else undefined
  /** The accumulated gradient of this parameter (undefined before its first backward). */
  at::Tensor grad() const { return acc.defined() ? acc : w.grad(); }
  void zeroGrad() {
    acc = at::Tensor();
    w.mutable_grad() = at::Tensor();
  }
};

struct Model {
  ModelCfg cfg;
  at::Device device{at::kCPU};
  at::ScalarType compute = at::kFloat;
  bool mixed = false;
  std::map<int, std::vector<Param>> layers;  // inventory layer index -> params
  bool fast = true;                          // fused paths (GEMM-accumulated weight grads, fused RMSNorm)
  std::set<int> copies;                      // layers held only as a copy (a tied embedding on the head's rank)
  at::Tensor ropeCos, ropeSin;               // [S, headDim] in compute dtype
  at::Tensor ropeSinSigned;                  // [-sin | sin] halves: rotate_half(x) * sin == roll(x) * this
  /** When set, forward registers a gradient hook on each decoder layer's input that calls it with
   *  the layer index once that layer's backward is complete (the executor's early update). */
  std::function<void(int)> onLayerGrad;
  /** Parameter streaming (the executor's fetch/release of streamed layers): called with
   *  (layer, phase) at 0 before a layer's forward, 1 after it (its kernels issued), 2 before its
   *  backward (the gradient of its output is complete), 3 after its backward (the gradient of its
   *  input is complete); phases 2 and 3 come from autograd hooks (on CUDA from autograd's thread).
   *  Layers 1..L+1 (the embedding has no input gradient: its release is the instruction's). */
  std::function<void(int, int)> onStreamed;

  Model(const ModelCfg& c, at::Device d, const std::string& precision);
  /** Creates the params of `layer` from a seed derived from (seed, layer): identical on any layout. */
  void initLayer(int layer, uint64_t seed);
  /** Shapes of a layer's parameter tensors (autograd leaves). Decoder layers keep q|k|v and
   *  gate|up each in one tensor (one GEMM each); `hfParts` maps Hugging Face names onto them. */
  std::vector<std::vector<int64_t>> leafShapes(int layer) const;
  struct HfPart {
    std::string name;
    size_t leaf;
    int64_t row0, rows;
    std::vector<int64_t> shape;
  };
  std::vector<HfPart> hfParts(int layer) const;
  /** Loads the held layers from a Hugging Face folder (model.safetensors or shards + index). */
  void loadHF(const std::string& dir);
  /** Writes the held layers (compute precision converted to fp32 master when mixed) as safetensors. */
  void saveSafetensors(const std::string& path) const;
  void prepareRope(int seq);
  int64_t paramCount() const;

  /** Runs layers [lo, hi) on `x` (tokens [B,S] int64 when lo == 0, else hidden [B,S,H]); when hi is
   *  L+2 returns sum(masked CE) / normaliser (a scalar), else the hidden state. */
  at::Tensor forward(int lo, int hi, at::Tensor x, const at::Tensor& labels, const at::Tensor& mask,
                     double normaliser);
};

// safetensors helpers shared by the raw reader and the model loader
struct StEntry {
  std::string name, dtype;
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0;
};
struct StHeader {
  std::string path;
  uint64_t dataStart = 0, fileSize = 0;
  std::vector<StEntry> entries;
};
StHeader readStHeader(const std::string& path);
at::ScalarType stDtype(const std::string& dtype, const std::string& tensor, const std::string& path);
std::string stDtypeName(at::ScalarType t);
/** Reads one tensor of a parsed file into a CPU tensor of its stored dtype. */
at::Tensor readStTensor(const StHeader& h, const StEntry& e, std::ifstream& in);
void writeStTensors(const std::string& path, const std::vector<std::pair<std::string, at::Tensor>>& tensors);

std::string cppError(const std::exception& e);
}  // namespace mmoc
