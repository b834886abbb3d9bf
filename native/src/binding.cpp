// Node-API binding (node-addon-api). Never includes torch headers: it converts JS values to the
// plain structs of api.h, runs long work on a native thread (AsyncWorker) and reports progress
// through a thread-safe queue. TypeScript (executor/native.ts) validates arguments first; the
// checks here only guard the C++ against a caller that skipped it.
#include <napi.h>

#include "api.h"
#include "disk_io.h"

namespace {

using namespace mmoc;

std::atomic<bool> g_stop{false};

[[noreturn]] void typeError(Napi::Env env, const std::string& m) { throw Napi::TypeError::New(env, m); }

Napi::Value field(const Napi::Object& o, const char* k) {
  Napi::Value v = o.Get(k);
  if (v.IsUndefined()) typeError(o.Env(), std::string("native: missing field '") + k + "'");
  return v;
}
double num(const Napi::Object& o, const char* k) {
  auto v = field(o, k);
  if (!v.IsNumber()) typeError(o.Env(), std::string("native: field '") + k + "' must be a number");
  return v.As<Napi::Number>().DoubleValue();
}
int inum(const Napi::Object& o, const char* k) { return static_cast<int>(num(o, k)); }
bool boolean(const Napi::Object& o, const char* k) {
  auto v = field(o, k);
  if (!v.IsBoolean()) typeError(o.Env(), std::string("native: field '") + k + "' must be a boolean");
  return v.As<Napi::Boolean>().Value();
}
std::string str(const Napi::Object& o, const char* k) {
  auto v = field(o, k);
  if (!v.IsString()) typeError(o.Env(), std::string("native: field '") + k + "' must be a string");
  return v.As<Napi::String>().Utf8Value();
}

Napi::Error jsError(Napi::Env env, const std::string& msg) {
  auto e = Napi::Error::New(env, msg);
  // "[file.cpp:123] message": expose the C++ location on its own as well
  if (msg.size() > 2 && msg[0] == '[') {
    auto end = msg.find(']');
    if (end != std::string::npos) e.Set("cppLocation", Napi::String::New(env, msg.substr(1, end - 1)));
  } else {
    auto b = msg.find(": [");
    if (b != std::string::npos) {
      auto end = msg.find(']', b);
      if (end != std::string::npos) e.Set("cppLocation", Napi::String::New(env, msg.substr(b + 3, end - b - 3)));
    }
  }
  return e;
}

Napi::Value BuildInfoJs(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  auto b = buildInfo();
  auto o = Napi::Object::New(env);
  o.Set("torchVersion", b.torchVersion);
  o.Set("compiler", b.compiler);
  o.Set("cuda", b.cuda);
  o.Set("cudaVersion", b.cudaVersion);
  o.Set("sdpa", b.sdpa);
  o.Set("gloo", b.gloo);
  o.Set("nccl", b.nccl);
  o.Set("fusedAdamw", b.fusedAdamw);
  return o;
}

Napi::Value BenchCpuAdamWJs(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  try {
    auto b = benchCpuAdamW(info[0].As<Napi::Number>().Int64Value(), info[1].As<Napi::Number>().Int32Value(),
                           info[2].As<Napi::Number>().Int32Value());
    auto o = Napi::Object::New(env);
    o.Set("n", static_cast<double>(b.n));
    o.Set("threads", b.threads);
    o.Set("oursF32", b.oursF32);
    o.Set("oursBf16", b.oursBf16);
    o.Set("torch", b.torch);
    o.Set("torchJob", b.torchJob);
    o.Set("torchImpl", b.torchImpl);
    o.Set("copySec", b.copySec);
    return o;
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, e.what());
  }
}

// benchDiskIO(paths: string[], groupBytes, groups, concurrency) -> GB/s written and read (bench/disk-io.ts)
Napi::Value BenchDiskIOJs(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  try {
    auto arr = info[0].As<Napi::Array>();
    std::vector<std::string> paths;
    for (uint32_t i = 0; i < arr.Length(); ++i) paths.push_back(arr.Get(i).As<Napi::String>().Utf8Value());
    auto b = diskio::bench(paths, info[1].As<Napi::Number>().Int64Value(), info[2].As<Napi::Number>().Int32Value(),
                           info[3].As<Napi::Number>().Int32Value());
    auto o = Napi::Object::New(env);
    o.Set("writeGBps", b.writeGBps);
    o.Set("readGBps", b.readGBps);
    o.Set("writeSec", b.writeSec);
    o.Set("readSec", b.readSec);
    o.Set("bytes", static_cast<double>(b.bytes));
    auto d = Napi::Array::New(env, b.direct.size());
    for (size_t i = 0; i < b.direct.size(); ++i) d.Set(static_cast<uint32_t>(i), Napi::Boolean::New(env, b.direct[i]));
    o.Set("direct", d);
    return o;
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, e.what());
  }
}

Napi::Value DevicesJs(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  Devices d;
  try {
    d = devices(info.Length() > 0 && info[0].IsBoolean() && info[0].As<Napi::Boolean>().Value());
  } catch (const std::exception& e) {
    throw jsError(env, e.what());
  }
  auto o = Napi::Object::New(env);
  o.Set("cpuCores", d.cpuCores);
  o.Set("torchThreads", d.torchThreads);
  o.Set("cudaAvailable", d.cudaAvailable);
  auto arr = Napi::Array::New(env, d.cuda.size());
  for (size_t i = 0; i < d.cuda.size(); ++i) {
    auto c = Napi::Object::New(env);
    c.Set("index", d.cuda[i].index);
    c.Set("name", d.cuda[i].name);
    c.Set("totalBytes", static_cast<double>(d.cuda[i].totalBytes));
    c.Set("freeBytes", static_cast<double>(d.cuda[i].freeBytes));
    c.Set("computeCapability", std::to_string(d.cuda[i].major) + "." + std::to_string(d.cuda[i].minor));
    c.Set("multiProcessors", d.cuda[i].multiProcessors);
    arr.Set(static_cast<uint32_t>(i), c);
  }
  o.Set("cuda", arr);
  return o;
}

class SelfTestWorker : public Napi::AsyncWorker {
 public:
  SelfTestWorker(Napi::Env env, std::string dev) : Napi::AsyncWorker(env), dev_(std::move(dev)), def_(env) {}
  Napi::Promise promise() { return def_.Promise(); }
  void Execute() override { r_ = selfTest(dev_); }
  void OnOK() override {
    auto env = Env();
    auto o = Napi::Object::New(env);
    o.Set("device", r_.device);
    o.Set("ok", r_.ok);
    o.Set("loss", r_.loss);
    o.Set("gradNorm", r_.gradNorm);
    o.Set("ms", r_.ms);
    if (!r_.error.empty()) o.Set("error", r_.error);
    def_.Resolve(o);
  }
  void OnError(const Napi::Error& e) override { def_.Reject(e.Value()); }

 private:
  std::string dev_;
  SelfTest r_;
  Napi::Promise::Deferred def_;
};

Napi::Value SelfTestJs(const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || !info[0].IsString()) typeError(info.Env(), "selfTest(device): device must be a string");
  auto* w = new SelfTestWorker(info.Env(), info[0].As<Napi::String>().Utf8Value());
  auto p = w->promise();
  w->Queue();
  return p;
}

Napi::Value ReadSafetensorsJs(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) typeError(env, "readSafetensors(path): path must be a string");
  std::vector<StTensor> ts;
  try {
    ts = readSafetensors(info[0].As<Napi::String>().Utf8Value());
  } catch (const std::exception& e) {
    throw jsError(env, e.what());
  }
  auto arr = Napi::Array::New(env, ts.size());
  for (size_t i = 0; i < ts.size(); ++i) {
    auto o = Napi::Object::New(env);
    o.Set("name", ts[i].name);
    o.Set("dtype", ts[i].dtype);
    auto shape = Napi::Array::New(env, ts[i].shape.size());
    for (size_t k = 0; k < ts[i].shape.size(); ++k) shape.Set(static_cast<uint32_t>(k), static_cast<double>(ts[i].shape[k]));
    o.Set("shape", shape);
    o.Set("data", Napi::Buffer<uint8_t>::Copy(env, ts[i].data.data(), ts[i].data.size()));
    arr.Set(static_cast<uint32_t>(i), o);
  }
  return arr;
}

Napi::Value WriteSafetensorsJs(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  if (info.Length() < 2 || !info[0].IsString() || !info[1].IsArray())
    typeError(env, "writeSafetensors(path, tensors): path must be a string and tensors an array");
  auto arr = info[1].As<Napi::Array>();
  std::vector<StTensor> ts;
  for (uint32_t i = 0; i < arr.Length(); ++i) {
    auto o = arr.Get(i).As<Napi::Object>();
    StTensor t;
    t.name = str(o, "name");
    t.dtype = str(o, "dtype");
    auto shape = field(o, "shape").As<Napi::Array>();
    for (uint32_t k = 0; k < shape.Length(); ++k) t.shape.push_back(static_cast<int64_t>(shape.Get(k).As<Napi::Number>().DoubleValue()));
    auto data = field(o, "data");
    if (!data.IsTypedArray()) typeError(env, "writeSafetensors: tensor '" + t.name + "': data must be a Buffer or typed array");
    auto ta = data.As<Napi::TypedArray>();
    auto* p = static_cast<uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset();
    t.data.assign(p, p + ta.ByteLength());
    ts.push_back(std::move(t));
  }
  try {
    writeSafetensors(info[0].As<Napi::String>().Utf8Value(), ts);
  } catch (const std::exception& e) {
    throw jsError(env, e.what());
  }
  return env.Undefined();
}

RunCfg parseRunCfg(const Napi::Object& o) {
  auto env = o.Env();
  RunCfg c;
  auto m = field(o, "model").As<Napi::Object>();
  c.model.hidden = inum(m, "hidden"), c.model.inter = inum(m, "inter"), c.model.layers = inum(m, "layers");
  c.model.heads = inum(m, "heads"), c.model.kvHeads = inum(m, "kvHeads"), c.model.headDim = inum(m, "headDim");
  c.model.vocab = inum(m, "vocab"), c.model.eps = num(m, "eps"), c.model.theta = num(m, "theta");
  c.model.tied = boolean(m, "tied");
  c.model.lossChunk = inum(m, "lossChunk");
  auto op = field(o, "optim").As<Napi::Object>();
  c.optim.lr = num(op, "lr"), c.optim.beta1 = num(op, "beta1"), c.optim.beta2 = num(op, "beta2");
  c.optim.eps = num(op, "eps"), c.optim.weightDecay = num(op, "weightDecay"), c.optim.clip = num(op, "clip");
  c.optim.warmup = inum(op, "warmup"), c.optim.cosine = boolean(op, "cosine"), c.optim.minLrRatio = num(op, "minLrRatio");
  c.precision = str(o, "precision");
  c.seq = inum(o, "seq"), c.microBatchSize = inum(o, "microBatchSize"), c.microBatches = inum(o, "microBatches");
  c.steps = inum(o, "steps"), c.totalSteps = inum(o, "totalSteps");
  c.seed = static_cast<uint64_t>(num(o, "seed"));
  auto stages = field(o, "stages").As<Napi::Array>();
  for (uint32_t i = 0; i < stages.Length(); ++i) {
    auto s = stages.Get(i).As<Napi::Object>();
    StageCfg sc;
    sc.lo = inum(s, "lo"), sc.hi = inum(s, "hi"), sc.rank = inum(s, "rank"), sc.recompute = boolean(s, "recompute");
    sc.recomputeLayers = boolean(s, "recomputeLayers");
    sc.prefetch = inum(s, "prefetch");
    c.stages.push_back(sc);
  }
  auto prog = field(o, "program");
  if (!prog.IsTypedArray()) typeError(env, "native: field 'program' must be an Int32Array (7 ints an instruction)");
  auto ia = prog.As<Napi::Int32Array>();
  if (ia.ElementLength() % 7 != 0) typeError(env, "native: program length must be a multiple of 7");
  for (size_t i = 0; i < ia.ElementLength(); i += 7) {
    Instr in;
    in.op = ia[i], in.mb = ia[i + 1], in.stage = ia[i + 2], in.peer = ia[i + 3], in.layer = ia[i + 4], in.tier = ia[i + 5];
    in.fraction = ia[i + 6] / 1e6;
    c.program.push_back(in);
  }
  c.rank = inum(o, "rank"), c.world = inum(o, "world"), c.pipelineRanks = inum(o, "pipelineRanks");
  if (c.pipelineRanks < 1 || c.world % c.pipelineRanks != 0) typeError(env, "native: pipelineRanks must divide world");
  c.masterAddr = str(o, "masterAddr"), c.masterPort = inum(o, "masterPort");
  c.device = str(o, "device"), c.dataPath = str(o, "dataPath"), c.weightsDir = str(o, "weightsDir");
  c.saveDir = str(o, "saveDir"), c.statusPath = str(o, "statusPath");
  if (o.Has("diskPaths")) c.diskPaths = str(o, "diskPaths");
  if (o.Has("diskConcurrency")) c.diskConcurrency = inum(o, "diskConcurrency");
  if (o.Has("diskAlternate")) c.diskAlternate = boolean(o, "diskAlternate");
  if (o.Has("diskCacheGroups")) c.diskCacheGroups = inum(o, "diskCacheGroups");
  c.trace = boolean(o, "trace"), c.timeoutSec = num(o, "timeoutSec"), c.threads = inum(o, "threads");
  c.gpuMemCapBytes = static_cast<int64_t>(num(o, "gpuMemCapBytes"));
  c.hostMemBudgetBytes = static_cast<int64_t>(num(o, "hostMemBudgetBytes"));
  return c;
}

class RunWorker : public Napi::AsyncProgressQueueWorker<Progress> {
 public:
  RunWorker(Napi::Env env, RunCfg cfg, Napi::Function onProgress)
      : Napi::AsyncProgressQueueWorker<Progress>(onProgress), cfg_(std::move(cfg)), def_(env) {}
  Napi::Promise promise() { return def_.Promise(); }
  void Execute(const ExecutionProgress& p) override {
    try {
      res_ = runRank(cfg_, [&](const Progress& pr) { p.Send(&pr, 1); }, g_stop);
    } catch (const std::exception& e) {
      SetError(e.what());
    }
  }
  void OnProgress(const Progress* data, size_t count) override {
    auto env = Env();
    Napi::HandleScope scope(env);
    for (size_t i = 0; i < count; ++i) {
      auto o = Napi::Object::New(env);
      o.Set("step", data[i].step);
      o.Set("loss", data[i].loss);
      o.Set("lr", data[i].lr);
      o.Set("gradNorm", data[i].gradNorm);
      o.Set("stepSec", data[i].stepSec);
      o.Set("tokens", static_cast<double>(data[i].tokens));
      o.Set("memBytes", static_cast<double>(data[i].memBytes));
      o.Set("peakBytes", static_cast<double>(data[i].peakBytes));
      if (!Callback().IsEmpty()) Callback().Call(Receiver().Value(), {o});
    }
  }
  void OnOK() override {
    auto env = Env();
    auto o = Napi::Object::New(env);
    auto arr = [&](const std::vector<double>& v) {
      auto a = Napi::Float64Array::New(env, v.size());
      for (size_t i = 0; i < v.size(); ++i) a[i] = v[i];
      return a;
    };
    o.Set("losses", arr(res_.losses));
    o.Set("gradNorms", arr(res_.gradNorms));
    o.Set("stepSec", arr(res_.stepSec));
    o.Set("peakBytes", static_cast<double>(res_.peakBytes));
    o.Set("peakAllocBytes", static_cast<double>(res_.peakAllocBytes));
    o.Set("overheadBytes", static_cast<double>(res_.overheadBytes));
    o.Set("paramCount", static_cast<double>(res_.paramCount));
    o.Set("stepsDone", res_.stepsDone);
    o.Set("stopped", res_.stopped);
    o.Set("backend", res_.backend);
    o.Set("startUs", res_.startUs);
    o.Set("streamedLayers", res_.streamedLayers);
    o.Set("streamedPeakResident", res_.streamedPeakResident);
    o.Set("diskReads", static_cast<double>(res_.diskReads));
    o.Set("diskReadHits", static_cast<double>(res_.diskReadHits));
    // trace: columns as typed arrays (compact across the process boundary)
    const size_t n = res_.trace.size();
    auto ints = Napi::Int32Array::New(env, n * 7);
    auto dbl = Napi::Float64Array::New(env, n * 4);
    for (size_t i = 0; i < n; ++i) {
      const auto& e = res_.trace[i];
      ints[i * 7] = e.step, ints[i * 7 + 1] = e.pc, ints[i * 7 + 2] = e.op;
      ints[i * 7 + 3] = e.mb, ints[i * 7 + 4] = e.stage, ints[i * 7 + 5] = e.layer, ints[i * 7 + 6] = e.track;
      dbl[i * 4] = e.tsUs, dbl[i * 4 + 1] = e.durUs, dbl[i * 4 + 2] = static_cast<double>(e.bytes);
      dbl[i * 4 + 3] = static_cast<double>(e.memBytes);
    }
    o.Set("traceInts", ints);
    o.Set("traceNums", dbl);
    def_.Resolve(o);
  }
  void OnError(const Napi::Error& e) override {
    def_.Reject(jsError(Env(), e.Message()).Value());
  }

 private:
  RunCfg cfg_;
  RunResult res_;
  Napi::Promise::Deferred def_;
};

Napi::Value RunRankJs(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  if (info.Length() < 2 || !info[0].IsObject() || !info[1].IsFunction())
    typeError(env, "runRank(config, onProgress): config must be an object and onProgress a function");
  RunCfg cfg = parseRunCfg(info[0].As<Napi::Object>());
  g_stop = false;
  auto* w = new RunWorker(env, std::move(cfg), info[1].As<Napi::Function>());
  auto p = w->promise();
  w->Queue();
  return p;
}

Napi::Value RequestStopJs(const Napi::CallbackInfo& info) {
  g_stop = true;
  return info.Env().Undefined();
}

}  // namespace

// ---- calibrate (`mmoc calibrate`; native/src/calibrate.h): one benchmark a call, on a native thread
#include "calibrate.h"
namespace {

class CalibWorker : public Napi::AsyncWorker {
 public:
  CalibWorker(Napi::Env env, mmoc::CalibTask t) : Napi::AsyncWorker(env), t_(std::move(t)), def_(env) {}
  Napi::Promise promise() { return def_.Promise(); }
  void Execute() override {
    try {
      r_ = mmoc::runCalib(t_);
    } catch (const std::exception& e) {
      SetError(e.what());
    }
  }
  void OnOK() override {
    auto env = Env();
    auto o = Napi::Object::New(env);
    o.Set("medianUs", r_.medianUs);
    o.Set("minUs", r_.minUs);
    o.Set("value", r_.value);
    o.Set("value2", r_.value2);
    o.Set("samples", r_.samples);
    o.Set("note", r_.note);
    def_.Resolve(o);
  }
  void OnError(const Napi::Error& e) override { def_.Reject(jsError(Env(), e.Message()).Value()); }

 private:
  mmoc::CalibTask t_;
  mmoc::CalibResult r_;
  Napi::Promise::Deferred def_;
};

Napi::Value CalibrateJs(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) typeError(env, "calibrate(task): task must be an object");
  auto o = info[0].As<Napi::Object>();
  mmoc::CalibTask t;
  t.kind = str(o, "kind"), t.device = str(o, "device"), t.dtype = str(o, "dtype"), t.name = str(o, "name");
  auto dims = field(o, "dims").As<Napi::Array>();
  for (uint32_t i = 0; i < dims.Length(); ++i) t.dims.push_back(static_cast<int64_t>(dims.Get(i).As<Napi::Number>().DoubleValue()));
  auto gpus = field(o, "gpus").As<Napi::Array>();
  for (uint32_t i = 0; i < gpus.Length(); ++i) t.gpus.push_back(gpus.Get(i).As<Napi::Number>().Int32Value());
  t.bytes = static_cast<int64_t>(num(o, "bytes")), t.threads = inum(o, "threads"), t.pinned = boolean(o, "pinned");
  t.warmup = inum(o, "warmup"), t.iters = inum(o, "iters"), t.maxSec = num(o, "maxSec");
  auto* w = new CalibWorker(env, std::move(t));
  auto p = w->promise();
  w->Queue();
  return p;
}

}  // namespace
// ---- end calibrate

namespace {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("buildInfo", Napi::Function::New(env, BuildInfoJs));
  exports.Set("devices", Napi::Function::New(env, DevicesJs));
  exports.Set("benchCpuAdamW", Napi::Function::New(env, BenchCpuAdamWJs));
  exports.Set("benchDiskIO", Napi::Function::New(env, BenchDiskIOJs));
  exports.Set("selfTest", Napi::Function::New(env, SelfTestJs));
  exports.Set("readSafetensors", Napi::Function::New(env, ReadSafetensorsJs));
  exports.Set("writeSafetensors", Napi::Function::New(env, WriteSafetensorsJs));
  exports.Set("runRank", Napi::Function::New(env, RunRankJs));
  exports.Set("requestStop", Napi::Function::New(env, RequestStopJs));
  exports.Set("calibrate", Napi::Function::New(env, CalibrateJs));  // ---- calibrate
  return exports;
}

}  // namespace

NODE_API_MODULE(mmoc_native, Init)
