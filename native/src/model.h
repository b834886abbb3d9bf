// LLaMA on libtorch, by layer index (0 = embedding, 1..L = decoder layers, L+1 = final norm + head +
// loss), so that a rank holds exactly the layers of its stages. Internal to the torch TUs.
#pragma once
#include "pch.h"
#include "api.h"

namespace mmoc {

struct Param {
  std::string name;  // Hugging Face tensor name
  at::Tensor w;       // compute-precision leaf (requires grad)
  at::Tensor master;  // fp32 master copy (bf16-mixed only; else == w)
  at::Tensor m, v;    // AdamW states (fp32), created on first optimizer step
};

struct Model {
  ModelCfg cfg;
  at::Device device{at::kCPU};
  at::ScalarType compute = at::kFloat;
  bool mixed = false;
  std::map<int, std::vector<Param>> layers;  // inventory layer index -> params
  at::Tensor ropeCos, ropeSin;               // [S, headDim] in compute dtype

  Model(const ModelCfg& c, at::Device d, const std::string& precision);
  /** Creates the params of `layer` from a seed derived from (seed, layer): identical on any layout. */
  void initLayer(int layer, uint64_t seed);
  /** HF names of a layer's tensors with their shapes. */
  std::vector<std::pair<std::string, std::vector<int64_t>>> layerShapes(int layer) const;
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
  at::Tensor& weight(int layer, size_t i) { return layers.at(layer)[i].w; }
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
