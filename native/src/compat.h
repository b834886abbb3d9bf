// The one place where libtorch 1.13 (Debian libtorch-dev, CPU) and 2.x (the torch package on the
// GPU machines, CUDA) differ for mmoc. Everything else in native/ is written against this header.
//
//  - process groups: 1.13 derives them from c10d::ProcessGroup, 2.x from c10d::Backend; mmoc
//    holds them through its own small interface (mmoc::Comm) over the concrete type.
//  - Gloo: Debian ships gloo headers (libgloo-dev); torch 2.x wheels ship none (the symbols are in
//    libtorch_cpu): the Gloo backend is compiled only where <gloo/algorithm.h> exists.
//  - NCCL: only in CUDA builds (CMake defines MMOC_CUDA and USE_C10D_NCCL).
//  - scaled_dot_product_attention (2.0+) vs an equivalent math path on 1.13.
//  - fused AdamW on CUDA (at::_fused_adamw_, 2.1+).
#pragma once
#include <torch/torch.h>
#include <torch/version.h>
#include <torch/csrc/distributed/c10d/Store.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/Types.hpp>
#include <torch/csrc/distributed/c10d/Work.hpp>

#define MMOC_TORCH_AT_LEAST(maj, min) \
  (TORCH_VERSION_MAJOR > (maj) || (TORCH_VERSION_MAJOR == (maj) && TORCH_VERSION_MINOR >= (min)))

#if __has_include(<gloo/algorithm.h>)
#ifndef USE_C10D_GLOO
#define USE_C10D_GLOO 1
#endif
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#define MMOC_HAS_GLOO 1
#else
#define MMOC_HAS_GLOO 0
#endif

#if defined(MMOC_CUDA) && MMOC_CUDA
#include <ATen/cuda/CUDAEvent.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#define MMOC_HAS_CUDA 1
#else
#define MMOC_HAS_CUDA 0
#endif

// NCCL process groups need nccl.h, which the torch wheels take from the nvidia-nccl package
// (scripts/build-native.mjs finds it and CMake defines MMOC_NCCL).
#if MMOC_HAS_CUDA && defined(MMOC_NCCL) && MMOC_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#define MMOC_HAS_NCCL 1
#else
#define MMOC_HAS_NCCL 0
#endif

#if MMOC_TORCH_AT_LEAST(2, 0)
#define MMOC_HAS_SDPA 1
#else
#define MMOC_HAS_SDPA 0
#endif

// at::rms_norm (2.4+). MMOC_NO_FAST_PATHS turns the optional fast paths off (a build fallback).
#if MMOC_TORCH_AT_LEAST(2, 4) && !defined(MMOC_NO_FAST_PATHS) && __has_include(<ATen/ops/rms_norm.h>)
#include <ATen/ops/rms_norm.h>
#define MMOC_HAS_RMS_NORM 1
#else
#define MMOC_HAS_RMS_NORM 0
#endif

#if MMOC_TORCH_AT_LEAST(2, 1) && MMOC_HAS_CUDA
#define MMOC_HAS_FUSED_ADAMW 1
#else
#define MMOC_HAS_FUSED_ADAMW 0
#endif

// at::_foreach_copy_ (2.2+): the bf16 weights of a layer copied from the fp32 master in one launch
#if MMOC_TORCH_AT_LEAST(2, 2) && !defined(MMOC_NO_FAST_PATHS) && __has_include(<ATen/ops/_foreach_copy.h>)
#include <ATen/ops/_foreach_copy.h>
#define MMOC_HAS_FOREACH_COPY 1
#else
#define MMOC_HAS_FOREACH_COPY 0
#endif

namespace mmoc {

// The Work handle: c10d::Work in both 1.13 and 2.x.
using WorkPtr = c10::intrusive_ptr<c10d::Work>;

/** The project's own view of a process group: the operations the executor needs. */
struct Comm {
  virtual ~Comm() = default;
  virtual WorkPtr send(at::Tensor t, int peer, int tag) = 0;
  virtual WorkPtr recv(at::Tensor t, int peer, int tag) = 0;
  virtual WorkPtr allreduceSum(at::Tensor t) = 0;
  virtual const char* backend() const = 0;
};

template <class PG>
struct CommImpl : Comm {
  c10::intrusive_ptr<PG> pg;
  const char* name;
  CommImpl(c10::intrusive_ptr<PG> p, const char* n) : pg(std::move(p)), name(n) {}
  WorkPtr send(at::Tensor t, int peer, int tag) override {
    std::vector<at::Tensor> v{std::move(t)};
    return pg->send(v, peer, tag);
  }
  WorkPtr recv(at::Tensor t, int peer, int tag) override {
    std::vector<at::Tensor> v{std::move(t)};
    return pg->recv(v, peer, tag);
  }
  WorkPtr allreduceSum(at::Tensor t) override {
    std::vector<at::Tensor> v{std::move(t)};
    c10d::AllreduceOptions o;
    o.reduceOp = c10d::ReduceOp::SUM;
    return pg->allreduce(v, o);
  }
  const char* backend() const override { return name; }
};

/** Makes a process group over `store` for `device` ("cpu" -> Gloo, "cuda" -> NCCL). */
inline std::unique_ptr<Comm> makeComm(const c10::intrusive_ptr<c10d::Store>& store, int rank, int world,
                                      bool cuda, std::chrono::milliseconds timeout) {
  if (cuda) {
#if MMOC_HAS_NCCL
    auto opts = c10d::ProcessGroupNCCL::Options::create();
    opts->timeout = timeout;
    auto pg = c10::make_intrusive<c10d::ProcessGroupNCCL>(store, rank, world, opts);
    return std::make_unique<CommImpl<c10d::ProcessGroupNCCL>>(pg, "nccl");
#else
    throw std::runtime_error(
        "this build of the native addon has no NCCL process group (libtorch without CUDA, or nccl.h not found at "
        "build time): set NCCL_INCLUDE_DIR and run `npm run build:native -- --force`");
#endif
  }
#if MMOC_HAS_GLOO
  auto opts = c10d::ProcessGroupGloo::Options::create(timeout);
  opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
  auto pg = c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, world, opts);
  return std::make_unique<CommImpl<c10d::ProcessGroupGloo>>(pg, "gloo");
#else
  throw std::runtime_error(
      "this build of the native addon has no Gloo backend (no gloo headers at build time): CPU ranks cannot "
      "communicate; install libgloo-dev and rebuild, or run on CUDA (NCCL)");
#endif
}

/** Scaled dot-product attention, causal, q [B,H,S,D], k/v [B,H,S,D] (kv heads already repeated). */
inline at::Tensor causalAttention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
#if MMOC_HAS_SDPA
  return at::scaled_dot_product_attention(q, k, v, /*attn_mask=*/{}, /*dropout_p=*/0.0, /*is_causal=*/true);
#else
  const auto S = q.size(2);
  const double scale = 1.0 / std::sqrt(static_cast<double>(q.size(3)));
  auto scores = at::matmul(q, k.transpose(-2, -1)) * scale;
  auto mask = at::ones({S, S}, q.options().dtype(at::kBool)).triu(1);
  scores = scores.masked_fill(mask, -std::numeric_limits<float>::infinity());
  auto probs = at::softmax(scores, -1, at::kFloat).to(q.scalar_type());
  return at::matmul(probs, v);
#endif
}

}  // namespace mmoc
