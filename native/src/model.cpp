// LLaMA model on libtorch, safetensors I/O, and the doctor's build/device/self-test functions.
#include "model.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <numeric>

namespace mmoc {

std::string where(const char* file, int line) {
  const char* base = std::strrchr(file, '/');
  std::ostringstream os;
  os << "[" << (base ? base + 1 : file) << ":" << line << "] ";
  return os.str();
}

std::string cppError(const std::exception& e) {
  if (auto c = dynamic_cast<const c10::Error*>(&e)) {
    std::string m = c->what_without_backtrace();
    // torch's dispatcher messages list every backend: keep the first sentence of long ones
    if (m.size() > 400) {
      auto cut = m.find(". ");
      m = m.substr(0, cut != std::string::npos && cut < 400 ? cut + 1 : 400) + " [...]";
    }
    return m;
  }
  return e.what();
}

const char* opName(int op) {
  static const char* names[] = {"forward", "backward", "send_act", "recv_act", "send_grad", "recv_grad",
                                "fetch_params", "release_params", "offload_grads", "allreduce_grads",
                                "offload_act", "reload_act", "grad_norm", "optimizer_step", "upload_params",
                                "disk_read", "disk_write", "barrier"};
  return op >= 0 && op < OP_COUNT ? names[op] : "?";
}

// ---------------------------------------------------------------- a minimal JSON reader
namespace {
struct Json {
  enum Kind { Null, Bool, Num, Str, Arr, Obj } kind = Null;
  double num = 0;
  bool b = false;
  std::string str;
  std::vector<Json> arr;
  std::vector<std::pair<std::string, Json>> obj;
  const Json* get(const std::string& k) const {
    for (auto& kv : obj)
      if (kv.first == k) return &kv.second;
    return nullptr;
  }
};

struct JsonParser {
  const std::string& s;
  size_t i = 0;
  std::string what;
  explicit JsonParser(const std::string& text, std::string w) : s(text), what(std::move(w)) {}
  [[noreturn]] void fail(const std::string& m) { MMOC_FAIL(what << ": invalid JSON header at byte " << i << ": " << m); }
  void ws() {
    while (i < s.size() && (s[i] == ' ' || s[i] == '\n' || s[i] == '\r' || s[i] == '\t')) ++i;
  }
  Json parse() {
    ws();
    if (i >= s.size()) fail("unexpected end");
    Json j;
    char c = s[i];
    if (c == '{') {
      j.kind = Json::Obj;
      ++i;
      ws();
      if (i < s.size() && s[i] == '}') { ++i; return j; }
      for (;;) {
        ws();
        if (i >= s.size() || s[i] != '"') fail("expected a key");
        std::string k = parseStr();
        ws();
        if (i >= s.size() || s[i] != ':') fail("expected ':'");
        ++i;
        j.obj.emplace_back(std::move(k), parse());
        ws();
        if (i < s.size() && s[i] == ',') { ++i; continue; }
        if (i < s.size() && s[i] == '}') { ++i; break; }
        fail("expected ',' or '}'");
      }
    } else if (c == '[') {
      j.kind = Json::Arr;
      ++i;
      ws();
      if (i < s.size() && s[i] == ']') { ++i; return j; }
      for (;;) {
        j.arr.push_back(parse());
        ws();
        if (i < s.size() && s[i] == ',') { ++i; continue; }
        if (i < s.size() && s[i] == ']') { ++i; break; }
        fail("expected ',' or ']'");
      }
    } else if (c == '"') {
      j.kind = Json::Str;
      j.str = parseStr();
    } else if (s.compare(i, 4, "true") == 0) {
      j.kind = Json::Bool, j.b = true, i += 4;
    } else if (s.compare(i, 5, "false") == 0) {
      j.kind = Json::Bool, i += 5;
    } else if (s.compare(i, 4, "null") == 0) {
      i += 4;
    } else {
      size_t start = i;
      while (i < s.size() && (std::isdigit((unsigned char)s[i]) || s[i] == '-' || s[i] == '+' || s[i] == '.' ||
                              s[i] == 'e' || s[i] == 'E'))
        ++i;
      if (start == i) fail(std::string("unexpected character '") + c + "'");
      j.kind = Json::Num;
      j.num = std::stod(s.substr(start, i - start));
    }
    return j;
  }
  std::string parseStr() {
    ++i;  // opening quote
    std::string out;
    while (i < s.size() && s[i] != '"') {
      if (s[i] == '\\') {
        ++i;
        if (i >= s.size()) fail("bad escape");
        char e = s[i];
        if (e == 'n') out += '\n';
        else if (e == 't') out += '\t';
        else if (e == 'u') {
          if (i + 4 >= s.size()) fail("bad \\u escape");
          unsigned cp = std::stoul(s.substr(i + 1, 4), nullptr, 16);
          if (cp < 0x80) out += char(cp);
          else if (cp < 0x800) out += char(0xC0 | (cp >> 6)), out += char(0x80 | (cp & 0x3F));
          else out += char(0xE0 | (cp >> 12)), out += char(0x80 | ((cp >> 6) & 0x3F)), out += char(0x80 | (cp & 0x3F));
          i += 4;
        } else out += e;
        ++i;
      } else {
        out += s[i++];
      }
    }
    if (i >= s.size()) fail("unterminated string");
    ++i;
    return out;
  }
};

std::string jsonEscape(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '"' || c == '\\') o += '\\', o += c;
    else if ((unsigned char)c < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      o += buf;
    } else o += c;
  }
  return o;
}

std::string readTextFile(const std::string& path, const std::string& what) {
  std::ifstream in(path, std::ios::binary);
  MMOC_CHECK(in, what << " " << path << ": cannot open: " << std::strerror(errno));
  std::ostringstream os;
  os << in.rdbuf();
  return os.str();
}
}  // namespace

// ---------------------------------------------------------------- safetensors
at::ScalarType stDtype(const std::string& d, const std::string& tensor, const std::string& path) {
  if (d == "F32") return at::kFloat;
  if (d == "F16") return at::kHalf;
  if (d == "BF16") return at::kBFloat16;
  if (d == "F64") return at::kDouble;
  if (d == "I64") return at::kLong;
  if (d == "I32") return at::kInt;
  if (d == "I16") return at::kShort;
  if (d == "I8") return at::kChar;
  if (d == "U8") return at::kByte;
  if (d == "BOOL") return at::kBool;
  MMOC_FAIL(path << ": tensor '" << tensor << "' has dtype \"" << d
                 << "\", which mmoc does not read (F32, F16, BF16, F64, I64, I32, I16, I8, U8, BOOL)");
}

std::string stDtypeName(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return "F32";
    case at::kHalf: return "F16";
    case at::kBFloat16: return "BF16";
    case at::kDouble: return "F64";
    case at::kLong: return "I64";
    case at::kInt: return "I32";
    case at::kShort: return "I16";
    case at::kChar: return "I8";
    case at::kByte: return "U8";
    case at::kBool: return "BOOL";
    default: MMOC_FAIL("safetensors: cannot write dtype " << c10::toString(t));
  }
}

StHeader readStHeader(const std::string& path) {
  StHeader h;
  h.path = path;
  struct stat st;
  MMOC_CHECK(::stat(path.c_str(), &st) == 0, path << ": cannot open safetensors file: " << std::strerror(errno));
  h.fileSize = static_cast<uint64_t>(st.st_size);
  std::ifstream in(path, std::ios::binary);
  MMOC_CHECK(in, path << ": cannot open safetensors file: " << std::strerror(errno));
  MMOC_CHECK(h.fileSize >= 8, path << ": not a safetensors file (" << h.fileSize << " bytes, shorter than the 8-byte header length)");
  uint64_t n = 0;
  unsigned char lenBytes[8];
  in.read(reinterpret_cast<char*>(lenBytes), 8);
  for (int k = 7; k >= 0; --k) n = (n << 8) | lenBytes[k];
  MMOC_CHECK(n <= h.fileSize - 8, path << ": header length " << n << " runs past the end of the file (" << h.fileSize
                                         << " bytes): the file is truncated or not safetensors");
  MMOC_CHECK(n < (100u << 20), path << ": header length " << n << " is implausible (over 100 MiB)");
  std::string text(n, '\0');
  in.read(&text[0], static_cast<std::streamsize>(n));
  h.dataStart = 8 + n;
  JsonParser p(text, path);
  Json root = p.parse();
  MMOC_CHECK(root.kind == Json::Obj, path << ": header is not a JSON object");
  const uint64_t dataLen = h.fileSize - h.dataStart;
  for (auto& kv : root.obj) {
    if (kv.first == "__metadata__") continue;
    const Json& t = kv.second;
    StEntry e;
    e.name = kv.first;
    const Json* dt = t.get("dtype");
    const Json* shape = t.get("shape");
    const Json* offs = t.get("data_offsets");
    MMOC_CHECK(dt && dt->kind == Json::Str, path << ": tensor '" << e.name << "' has no dtype");
    MMOC_CHECK(shape && shape->kind == Json::Arr, path << ": tensor '" << e.name << "' has no shape");
    MMOC_CHECK(offs && offs->kind == Json::Arr && offs->arr.size() == 2,
               path << ": tensor '" << e.name << "' has no data_offsets [begin, end]");
    e.dtype = dt->str;
    for (auto& d : shape->arr) e.shape.push_back(static_cast<int64_t>(d.num));
    e.begin = static_cast<uint64_t>(offs->arr[0].num);
    e.end = static_cast<uint64_t>(offs->arr[1].num);
    auto type = stDtype(e.dtype, e.name, path);
    uint64_t numel = 1;
    for (auto d : e.shape) numel *= static_cast<uint64_t>(d);
    const uint64_t need = numel * c10::elementSize(type);
    MMOC_CHECK(e.end >= e.begin, path << ": tensor '" << e.name << "' has data_offsets [" << e.begin << ", " << e.end
                                      << "] that end before they begin");
    std::ostringstream shp;
    for (size_t k = 0; k < e.shape.size(); ++k) shp << (k ? ", " : "") << e.shape[k];
    MMOC_CHECK(e.end - e.begin == need, path << ": tensor '" << e.name << "' is labelled " << e.dtype << " [" << shp.str()
                                             << "] (" << need << " bytes) but its data_offsets span "
                                             << (e.end - e.begin) << " bytes: the file is mislabelled or corrupt");
    MMOC_CHECK(e.end <= dataLen, path << ": tensor '" << e.name << "' needs bytes [" << e.begin << ", " << e.end
                                      << ") of the data section but the file holds only " << dataLen
                                      << ": the file is truncated");
    h.entries.push_back(std::move(e));
  }
  std::sort(h.entries.begin(), h.entries.end(), [](const StEntry& a, const StEntry& b) { return a.begin < b.begin; });
  return h;
}

at::Tensor readStTensor(const StHeader& h, const StEntry& e, std::ifstream& in) {
  auto type = stDtype(e.dtype, e.name, h.path);
  auto t = at::empty(e.shape, at::TensorOptions().dtype(type));
  in.clear();
  in.seekg(static_cast<std::streamoff>(h.dataStart + e.begin));
  in.read(static_cast<char*>(t.data_ptr()), static_cast<std::streamsize>(e.end - e.begin));
  MMOC_CHECK(static_cast<uint64_t>(in.gcount()) == e.end - e.begin,
             h.path << ": tensor '" << e.name << "': short read (" << in.gcount() << " of " << (e.end - e.begin)
                    << " bytes): the file is truncated");
  return t;
}

void writeStTensors(const std::string& path, const std::vector<std::pair<std::string, at::Tensor>>& tensors) {
  std::vector<at::Tensor> cpu;
  std::ostringstream hdr;
  hdr << "{\"__metadata__\":{\"format\":\"pt\",\"writer\":\"mmoc\"}";
  uint64_t off = 0;
  for (auto& nt : tensors) {
    auto t = nt.second.detach().to(at::kCPU).contiguous();
    const uint64_t bytes = static_cast<uint64_t>(t.numel()) * t.element_size();
    hdr << ",\"" << jsonEscape(nt.first) << "\":{\"dtype\":\"" << stDtypeName(t.scalar_type()) << "\",\"shape\":[";
    for (int64_t k = 0; k < t.dim(); ++k) hdr << (k ? "," : "") << t.size(k);
    hdr << "],\"data_offsets\":[" << off << "," << off + bytes << "]}";
    off += bytes;
    cpu.push_back(t);
  }
  hdr << "}";
  std::string h = hdr.str();
  while ((8 + h.size()) % 8) h += ' ';
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    MMOC_CHECK(out, path << ": cannot write: " << std::strerror(errno));
    uint64_t n = h.size();
    unsigned char lenBytes[8];
    for (int k = 0; k < 8; ++k) lenBytes[k] = static_cast<unsigned char>((n >> (8 * k)) & 0xFF);
    out.write(reinterpret_cast<char*>(lenBytes), 8);
    out.write(h.data(), static_cast<std::streamsize>(h.size()));
    for (auto& t : cpu)
      out.write(static_cast<const char*>(t.data_ptr()), static_cast<std::streamsize>(t.numel() * t.element_size()));
    out.flush();
    MMOC_CHECK(out, path << ": write failed: " << std::strerror(errno));
  }
  MMOC_CHECK(std::rename(tmp.c_str(), path.c_str()) == 0, path << ": rename failed: " << std::strerror(errno));
}

std::vector<StTensor> readSafetensors(const std::string& path) {
  try {
    auto h = readStHeader(path);
    std::ifstream in(path, std::ios::binary);
    std::vector<StTensor> out;
    for (auto& e : h.entries) {
      StTensor t;
      t.name = e.name, t.dtype = e.dtype, t.shape = e.shape;
      t.data.resize(e.end - e.begin);
      in.clear();
      in.seekg(static_cast<std::streamoff>(h.dataStart + e.begin));
      in.read(reinterpret_cast<char*>(t.data.data()), static_cast<std::streamsize>(t.data.size()));
      MMOC_CHECK(static_cast<uint64_t>(in.gcount()) == t.data.size(),
                 path << ": tensor '" << e.name << "': short read: the file is truncated");
      out.push_back(std::move(t));
    }
    return out;
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    MMOC_FAIL(path << ": " << cppError(e));
  }
}

void writeSafetensors(const std::string& path, const std::vector<StTensor>& tensors) {
  try {
    std::vector<std::pair<std::string, at::Tensor>> ts;
    for (auto& t : tensors) {
      auto type = stDtype(t.dtype, t.name, path);
      int64_t numel = 1;
      for (auto d : t.shape) numel *= d;
      MMOC_CHECK(static_cast<uint64_t>(numel) * c10::elementSize(type) == t.data.size(),
                 path << ": tensor '" << t.name << "': " << t.data.size() << " bytes of data do not match dtype "
                      << t.dtype << " and its shape");
      auto x = at::empty(t.shape, at::TensorOptions().dtype(type));
      if (!t.data.empty()) std::memcpy(x.data_ptr(), t.data.data(), t.data.size());
      ts.emplace_back(t.name, x);
    }
    writeStTensors(path, ts);
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    MMOC_FAIL(path << ": " << cppError(e));
  }
}

// ---------------------------------------------------------------- model
namespace {
uint64_t splitmix(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

at::Tensor rmsnorm(const at::Tensor& x, const at::Tensor& w, double eps, bool fast) {
#if MMOC_HAS_RMS_NORM
  // fused kernel (torch 2.4+: at::rms_norm computes in fp32 and returns the input dtype)
  if (fast && x.is_cuda()) return at::rms_norm(x, {x.size(-1)}, w, eps);
#endif
  auto xf = x.to(at::kFloat);
  xf = xf * at::rsqrt(xf.pow(2).mean(-1, true) + eps);
  return w * xf.to(x.scalar_type());
}

/** y = x W^T whose backward accumulates dW straight into Param::acc with one GEMM (beta = 1)
 *  instead of writing a fresh dW and adding it to .grad (micro-batch gradient accumulation
 *  without the extra pass over every weight). dX goes back through autograd as usual. */
struct LinearAccum : torch::autograd::Function<LinearAccum> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, const at::Tensor& w, int64_t param) {
    ctx->save_for_backward({x, w});
    ctx->saved_data["param"] = param;
    return at::linear(x, w);
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx, torch::autograd::variable_list go) {
    auto saved = ctx->get_saved_variables();
    const auto& x = saved[0];
    const auto& w = saved[1];
    auto* p = reinterpret_cast<Param*>(ctx->saved_data["param"].toInt());
    const auto& g = go[0];
    auto gx = at::matmul(g, w);
    auto g2 = g.reshape({-1, g.size(-1)});
    auto x2 = x.reshape({-1, x.size(-1)});
    if (!p->acc.defined()) p->acc = at::mm(g2.t(), x2);
    else p->acc.addmm_(g2.t(), x2);
    return {gx, at::Tensor(), at::Tensor()};
  }
};

/** The head's loss a chunk of tokens at a time: sum(mask * CE(h W^T, labels)) / normaliser without
 *  keeping the logits (forward: (n, V) at a time; backward recomputes each chunk's logits, then
 *  dh = dL W and dW += dL^T h). The logits of a micro-batch (T x V, fp32 for the loss) never exist
 *  at once: the workspace is one chunk's. W's gradient goes to the Param's accumulator (as
 *  LinearAccum's) or, for a tied embedding, through autograd. */
struct ChunkedLoss : torch::autograd::Function<ChunkedLoss> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& h, const at::Tensor& w,
                            const at::Tensor& labels, const at::Tensor& mask, double normaliser, int64_t chunk,
                            int64_t param) {
    const int64_t N = h.size(0);  // h: (N, H), labels and mask: (N)
    auto total = at::zeros({}, h.options().dtype(at::kFloat));
    for (int64_t a = 0; a < N; a += chunk) {
      const int64_t n = std::min(chunk, N - a);
      auto logits = at::mm(h.narrow(0, a, n), w.t()).to(at::kFloat);  // (n, V)
      auto ce = at::cross_entropy_loss(logits, labels.narrow(0, a, n), {}, at::Reduction::None);
      total += (ce * mask.narrow(0, a, n)).sum();
    }
    ctx->save_for_backward({h, w, labels, mask});
    ctx->saved_data["norm"] = normaliser;
    ctx->saved_data["chunk"] = chunk;
    ctx->saved_data["param"] = param;
    return total / normaliser;
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx, torch::autograd::variable_list go) {
    auto saved = ctx->get_saved_variables();
    const auto &h = saved[0], &w = saved[1], &labels = saved[2], &mask = saved[3];
    const double norm = ctx->saved_data["norm"].toDouble();
    const int64_t chunk = ctx->saved_data["chunk"].toInt(), N = h.size(0);
    auto* p = reinterpret_cast<Param*>(ctx->saved_data["param"].toInt());
    auto scale = go[0].to(at::kFloat) / norm;  // () on the device: no host sync
    auto dh = at::empty_like(h);                 // (N, H)
    at::Tensor dw = p && p->acc.defined() ? p->acc : at::Tensor();
    for (int64_t a = 0; a < N; a += chunk) {
      const int64_t n = std::min(chunk, N - a);
      auto hc = h.narrow(0, a, n);
      auto probs = at::softmax(at::mm(hc, w.t()).to(at::kFloat), -1);  // (n, V)
      // d(CE)/d(logits) = softmax - onehot(label), times mask * dL / normaliser
      probs.scatter_add_(1, labels.narrow(0, a, n).unsqueeze(1), at::full({n, 1}, -1.0f, probs.options()));
      probs.mul_((mask.narrow(0, a, n) * scale).unsqueeze(1));
      auto gl = probs.to(h.scalar_type());  // (n, V)
      probs = at::Tensor();
      auto dhc = dh.narrow(0, a, n);
      at::mm_out(dhc, gl, w);
      if (!dw.defined()) dw = at::mm(gl.t(), hc);
      else dw.addmm_(gl.t(), hc);
    }
    if (p) {
      p->acc = dw;
      return {dh, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
    }
    return {dh, dw, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

at::Tensor rotateHalf(const at::Tensor& x) {
  const auto h = x.size(-1) / 2;
  return at::cat({-x.narrow(-1, h, h), x.narrow(-1, 0, h)}, -1);
}
}  // namespace

Model::Model(const ModelCfg& c, at::Device d, const std::string& precision) : cfg(c), device(d) {
  fast = !envOn("MMOC_NO_FAST_PATHS");
  mixed = precision == "bf16-mixed";
  compute = (precision == "fp32") ? at::kFloat : at::kBFloat16;
}

std::vector<Model::HfPart> Model::hfParts(int layer) const {
  const int64_t H = cfg.hidden, I = cfg.inter, V = cfg.vocab, hd = cfg.headDim;
  const int64_t q = cfg.heads * hd, kv = cfg.kvHeads * hd;
  const int L = cfg.layers;
  if (layer == 0) return {{"model.embed_tokens.weight", 0, 0, V, {V, H}}};
  if (layer == L + 1) {
    std::vector<HfPart> v{{"model.norm.weight", 0, 0, H, {H}}};
    if (!cfg.tied) v.push_back({"lm_head.weight", 1, 0, V, {V, H}});
    return v;
  }
  MMOC_CHECK(layer >= 1 && layer <= L, "layer " << layer << " out of range 0.." << L + 1);
  const std::string p = "model.layers." + std::to_string(layer - 1) + ".";
  return {{p + "input_layernorm.weight", 0, 0, H, {H}},
          {p + "self_attn.q_proj.weight", 1, 0, q, {q, H}},
          {p + "self_attn.k_proj.weight", 1, q, kv, {kv, H}},
          {p + "self_attn.v_proj.weight", 1, q + kv, kv, {kv, H}},
          {p + "self_attn.o_proj.weight", 2, 0, H, {H, q}},
          {p + "post_attention_layernorm.weight", 3, 0, H, {H}},
          {p + "mlp.gate_proj.weight", 4, 0, I, {I, H}},
          {p + "mlp.up_proj.weight", 4, I, I, {I, H}},
          {p + "mlp.down_proj.weight", 5, 0, H, {H, I}}};
}

std::vector<std::vector<int64_t>> Model::leafShapes(int layer) const {
  const int64_t H = cfg.hidden, I = cfg.inter, V = cfg.vocab, hd = cfg.headDim;
  const int64_t q = cfg.heads * hd, kv = cfg.kvHeads * hd;
  const int L = cfg.layers;
  if (layer == 0) return {{V, H}};
  if (layer == L + 1) return cfg.tied ? std::vector<std::vector<int64_t>>{{H}} : std::vector<std::vector<int64_t>>{{H}, {V, H}};
  MMOC_CHECK(layer >= 1 && layer <= L, "layer " << layer << " out of range 0.." << L + 1);
  return {{H}, {q + 2 * kv, H}, {H, q}, {H}, {2 * I, H}, {H, I}};
}

void Model::initLayer(int layer, uint64_t seed) {
  at::NoGradGuard ng;
  const uint64_t s = splitmix(seed ^ splitmix(static_cast<uint64_t>(layer) + 1));
  auto shapes = leafShapes(layer);
  auto parts = hfParts(layer);
  std::vector<Param> ps;
  at::Generator gen;
  if (device.is_cpu()) gen = at::detail::createCPUGenerator(s);
  else torch::manual_seed(s);  // CUDA: the device's default generator, seeded per layer
  auto f32 = at::TensorOptions().dtype(at::kFloat).device(device);
  for (size_t i = 0; i < shapes.size(); ++i) {
    Param p;
    for (auto& hp : parts)  // the HF names it holds, joined with '|'
      if (hp.leaf == i) p.name += (p.name.empty() ? "" : "|") + hp.name;
    at::Tensor master;
    if (shapes[i].size() == 1) master = at::ones(shapes[i], f32);
    else if (device.is_cpu()) master = at::empty(shapes[i], f32).normal_(0.0, 0.02, gen);
    else master = at::empty(shapes[i], f32).normal_(0.0, 0.02);
    if (mixed) {
      p.master = master;
      p.w = master.to(compute);
    } else {
      p.w = master.to(compute);
      p.master = p.w;
    }
    p.w.requires_grad_(true);
    ps.push_back(std::move(p));
  }
  layers[layer] = std::move(ps);
}

int64_t Model::paramCount() const {
  int64_t n = 0;
  for (auto& kv : layers)
    if (!copies.count(kv.first))
      for (auto& p : kv.second) n += p.w.numel();
  return n;
}

void Model::loadHF(const std::string& dir) {
  at::NoGradGuard ng;
  // name -> file
  std::map<std::string, std::string> where_;
  const std::string index = dir + "/model.safetensors.index.json";
  struct stat st;
  if (::stat(index.c_str(), &st) == 0) {
    std::string text = readTextFile(index, "index");
    JsonParser p(text, index);
    Json root = p.parse();
    const Json* wm = root.get("weight_map");
    MMOC_CHECK(wm && wm->kind == Json::Obj, index << ": no \"weight_map\" object");
    for (auto& kv : wm->obj) where_[kv.first] = dir + "/" + kv.second.str;
  } else {
    const std::string single = dir + "/model.safetensors";
    MMOC_CHECK(::stat(single.c_str(), &st) == 0,
               dir << ": no model.safetensors or model.safetensors.index.json (a Hugging Face model folder)");
    auto h = readStHeader(single);
    for (auto& e : h.entries) where_[e.name] = single;
  }
  std::map<std::string, StHeader> headers;
  std::map<std::string, std::ifstream> files;
  for (auto& kv : layers) {
    for (auto& part : hfParts(kv.first)) {
      auto& p = kv.second.at(part.leaf);
      auto it = where_.find(part.name);
      MMOC_CHECK(it != where_.end(), dir << ": tensor '" << part.name << "' is missing from the weights");
      const std::string& file = it->second;
      if (!headers.count(file)) {
        headers[file] = readStHeader(file);
        files[file].open(file, std::ios::binary);
      }
      auto& h = headers[file];
      auto e = std::find_if(h.entries.begin(), h.entries.end(), [&](const StEntry& x) { return x.name == part.name; });
      MMOC_CHECK(e != h.entries.end(), file << ": tensor '" << part.name << "' is listed in the index but not in the file");
      MMOC_CHECK(e->shape == part.shape, file << ": tensor '" << part.name << "' has shape " << at::IntArrayRef(e->shape)
                                              << " but the model config needs " << at::IntArrayRef(part.shape));
      auto t = readStTensor(h, *e, files[file]).to(device);
      p.master.narrow(0, part.row0, part.rows).copy_(t.view(p.master.narrow(0, part.row0, part.rows).sizes()));
      if (mixed) p.w.narrow(0, part.row0, part.rows).copy_(p.master.narrow(0, part.row0, part.rows));
    }
  }
}

void Model::saveSafetensors(const std::string& path) const {
  std::vector<std::pair<std::string, at::Tensor>> ts;
  for (auto& kv : layers)
    if (!copies.count(kv.first))
      for (auto& part : hfParts(kv.first))
        ts.emplace_back(part.name, kv.second.at(part.leaf).master.narrow(0, part.row0, part.rows).view(part.shape));
  writeStTensors(path, ts);
}

void Model::prepareRope(int seq) {
  const int64_t hd = cfg.headDim;
  auto f64 = at::TensorOptions().dtype(at::kDouble);
  auto invFreq = 1.0 / at::pow(cfg.theta, at::arange(0, hd, 2, f64) / static_cast<double>(hd));
  auto pos = at::arange(0, seq, f64);
  auto freqs = at::outer(pos, invFreq);
  auto emb = at::cat({freqs, freqs}, -1);
  ropeCos = emb.cos().to(at::kFloat).to(compute).to(device);
  ropeSin = emb.sin().to(at::kFloat).to(compute).to(device);
  auto sinF = emb.sin();
  ropeSinSigned = at::cat({-sinF.narrow(-1, 0, hd / 2), sinF.narrow(-1, hd / 2, hd / 2)}, -1).to(at::kFloat).to(compute).to(device);
}

at::Tensor Model::forward(int lo, int hi, at::Tensor x, const at::Tensor& labels, const at::Tensor& mask,
                          double normaliser) {
  auto linear = [&](const at::Tensor& in, Param& p) {
    return fast ? LinearAccum::apply(in, p.w, reinterpret_cast<int64_t>(&p)) : at::linear(in, p.w);
  };
  const int L = cfg.layers;
  const int64_t nh = cfg.heads, nkv = cfg.kvHeads, hd = cfg.headDim;
  const bool grad = at::GradMode::is_enabled();
  // streaming hooks: before/after the forward of `layer`, and (with autograd) around its backward.
  // On a tensor between two layers the later layer's phase 3 (its backward done: release it) is
  // registered before the earlier layer's phase 2 (about to run: wait for its weights), so that a
  // slot frees before the wait that may need it (hooks fire in registration order).
  int prevPost = -1;
  auto phase2 = [&](at::Tensor& t) {
    if (prevPost >= 0 && grad && t.requires_grad()) {
      auto cb = onStreamed;
      const int l = prevPost;
      t.register_hook([cb, l](const at::Tensor&) { cb(l, 2); });
    }
    prevPost = -1;
  };
  auto pre = [&](int layer, at::Tensor& in) {
    if (!onStreamed) return;
    onStreamed(layer, 0);
    if (grad && layer > 0 && in.requires_grad()) {
      auto cb = onStreamed;
      in.register_hook([cb, layer](const at::Tensor&) { cb(layer, 3); });
    }
    phase2(in);
  };
  auto post = [&](int layer, at::Tensor&) {
    if (!onStreamed) return;
    onStreamed(layer, 1);
    prevPost = layer;
  };
  for (int layer = lo; layer < hi; ++layer) {
    auto& ps = layers.at(layer);
    if (layer == 0) {
      pre(layer, x);
      x = at::embedding(ps[0].w, x);
      post(layer, x);
      continue;
    }
    if (layer == L + 1) {
      pre(layer, x);
      auto h = rmsnorm(x, ps[0].w, cfg.eps, fast);
      if (cfg.lossChunk > 0) {
        const auto& w = cfg.tied ? layers.at(0)[0].w : ps[1].w;
        // the head's weight accumulates like LinearAccum (not tied: a tied embedding's gradient also
        // gets the gather's, through autograd)
        const int64_t param = cfg.tied || !fast ? 0 : reinterpret_cast<int64_t>(&ps[1]);
        auto loss = ChunkedLoss::apply(h.reshape({-1, h.size(-1)}), w, labels.reshape({-1}), mask.reshape({-1}), normaliser,
                                       static_cast<int64_t>(cfg.lossChunk), param);
        post(layer, loss);
        if (onStreamed) phase2(loss);
        return loss;
      }
      auto logits = cfg.tied ? at::linear(h, layers.at(0)[0].w) : linear(h, ps[1]);
      auto ce = at::cross_entropy_loss(logits.reshape({-1, logits.size(-1)}).to(at::kFloat), labels.reshape({-1}),
                                       {}, at::Reduction::None);
      auto loss = (ce * mask.reshape({-1})).sum() / normaliser;
      post(layer, loss);
      if (onStreamed) phase2(loss);
      return loss;
    }
    pre(layer, x);
    const int64_t B = x.size(0), S = x.size(1);
    if (onLayerGrad && x.requires_grad() && at::GradMode::is_enabled()) {
      // fires once the gradient of the layer's input is complete: every node of the layer has run
      auto cb = onLayerGrad;
      const int l = layer;
      x.register_hook([cb, l](const at::Tensor&) { cb(l); });
    }
    auto h = rmsnorm(x, ps[0].w, cfg.eps, fast);
    // one GEMM for q|k|v; rotary embeddings on q and k together
    auto qkv = linear(h, ps[1]).view({B, S, nh + 2 * nkv, hd});
    // split, not narrow: a split's backward concatenates the parts' gradients in one copy (a
    // narrow's zero-fills a full-width gradient per part, copies the part in, then adds them up)
    auto qkvParts = qkv.split_with_sizes({nh + nkv, nkv}, 2);  // (B, S, nh + nkv, hd), (B, S, nkv, hd)
    auto qk = qkvParts[0];
    auto cos = ropeCos.narrow(0, 0, S).unsqueeze(1), sin = ropeSin.narrow(0, 0, S).unsqueeze(1);  // [S, 1, hd]
    if (fast) {
      // rotate_half(x) * sin == roll(x, hd/2) * [-sin | sin]: 3 kernels instead of 5
      auto sinS = ropeSinSigned.narrow(0, 0, S).unsqueeze(1);
      qk = at::addcmul(qk * cos, at::roll(qk, {hd / 2}, {-1}), sinS);
    } else {
      qk = qk * cos + rotateHalf(qk) * sin;
    }
    auto qkParts = qk.split_with_sizes({nh, nkv}, 2);
    auto q = qkParts[0].transpose(1, 2);  // (B, nh, S, hd)
    auto k = qkParts[1].transpose(1, 2);  // (B, nkv, S, hd)
    auto v = qkvParts[1].transpose(1, 2);
    if (nkv != nh) {
      const int64_t rep = nh / nkv;
      k = k.unsqueeze(2).expand({B, nkv, rep, S, hd}).reshape({B, nh, S, hd});
      v = v.unsqueeze(2).expand({B, nkv, rep, S, hd}).reshape({B, nh, S, hd});
    }
    auto a = causalAttention(q, k, v).transpose(1, 2).reshape({B, S, nh * hd});
    x = x + linear(a, ps[2]);
    h = rmsnorm(x, ps[3].w, cfg.eps, fast);
    auto gu = linear(h, ps[4]);  // one GEMM for gate|up
    const int64_t I = cfg.inter;
    auto guParts = gu.split(I, -1);  // gate, up: (B, S, I) each
    x = x + linear(at::silu(guParts[0]) * guParts[1], ps[5]);
    post(layer, x);
  }
  if (onStreamed) phase2(x);
  return x;
}

// ---------------------------------------------------------------- doctor
BuildInfo buildInfo() {
  BuildInfo b;
  b.torchVersion = TORCH_VERSION;
#if defined(__clang__)
  b.compiler = std::string("clang ") + __clang_version__;
#elif defined(__GNUC__)
  b.compiler = "gcc " + std::to_string(__GNUC__) + "." + std::to_string(__GNUC_MINOR__);
#endif
#if MMOC_HAS_CUDA
  b.cuda = true;
#ifdef CUDART_VERSION
  b.cudaVersion = std::to_string(CUDART_VERSION / 1000) + "." + std::to_string((CUDART_VERSION % 1000) / 10);
#endif
#endif
  b.sdpa = MMOC_HAS_SDPA;
  b.gloo = MMOC_HAS_GLOO;
  b.nccl = MMOC_HAS_NCCL;
  b.fusedAdamw = MMOC_HAS_FUSED_ADAMW;
  return b;
}

Devices devices(bool withFree) {
  Devices d;
  long n = ::sysconf(_SC_NPROCESSORS_ONLN);
  d.cpuCores = n > 0 ? static_cast<int>(n) : 1;
  d.torchThreads = at::get_num_threads();
  d.cudaAvailable = torch::cuda::is_available();
#if MMOC_HAS_CUDA
  if (d.cudaAvailable) {
    const int count = static_cast<int>(torch::cuda::device_count());
    for (int i = 0; i < count; ++i) {
      CudaDevice c;
      c.index = i;
      auto* prop = at::cuda::getDeviceProperties(i);
      c.name = prop->name;
      c.totalBytes = static_cast<int64_t>(prop->totalGlobalMem);
      c.major = prop->major, c.minor = prop->minor, c.multiProcessors = prop->multiProcessorCount;
      if (withFree) {
        c10::cuda::CUDAGuard g(static_cast<c10::DeviceIndex>(i));  // creates the device's context
        size_t freeB = 0, totalB = 0;
        if (cudaMemGetInfo(&freeB, &totalB) == cudaSuccess) c.freeBytes = static_cast<int64_t>(freeB);
      } else {
        c.freeBytes = -1;
      }
      d.cuda.push_back(c);
    }
  }
#endif
  return d;
}

SelfTest selfTest(const std::string& device) {
  SelfTest r;
  r.device = device;
  auto t0 = std::chrono::steady_clock::now();
  try {
    at::Device dev(device);
    ModelCfg c;
    c.hidden = 64, c.inter = 176, c.layers = 2, c.heads = 4, c.kvHeads = 2, c.headDim = 16, c.vocab = 256;
    Model m(c, dev, dev.is_cpu() ? "fp32" : "bf16-mixed");
    for (int l = 0; l < c.layers + 2; ++l) m.initLayer(l, 1234);
    const int B = 2, S = 32;
    m.prepareRope(S);
    auto gen = at::detail::createCPUGenerator(7);
    auto tok = at::randint(0, c.vocab, {B, S + 1}, gen, at::TensorOptions().dtype(at::kLong)).to(dev);
    auto x = tok.narrow(1, 0, S).contiguous(), y = tok.narrow(1, 1, S).contiguous();
    auto mask = at::ones({B, S}, at::TensorOptions().dtype(at::kFloat).device(dev));
    auto loss = m.forward(0, c.layers + 2, x, y, mask, B * S);
    loss.backward();
    double sq = 0;
    for (auto& kv : m.layers)
      for (auto& p : kv.second) sq += p.grad().to(at::kFloat).pow(2).sum().item<double>();
    r.loss = loss.item<double>();
    r.gradNorm = std::sqrt(sq);
    r.ok = std::isfinite(r.loss) && std::isfinite(r.gradNorm) && r.gradNorm > 0 &&
           std::abs(r.loss - std::log(256.0)) < 1.0;
    if (!r.ok) r.error = "loss or gradient norm out of range";
  } catch (const std::exception& e) {
    r.ok = false;
    r.error = cppError(e);
  }
  r.ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

}  // namespace mmoc
