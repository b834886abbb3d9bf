#!/usr/bin/env python3
"""What one decoder layer of the executor keeps for its backward, measured on a GPU.

Replays native/src/model.cpp's fast-path decoder layer op for op in PyTorch (the same ATen ops the
executor's libtorch calls: at::rms_norm, the q|k|v GEMM through a Function that saves (x, W) like
LinearAccum, rotary as addcmul(qk*cos, roll(qk), [-sin|sin]), at::scaled_dot_product_attention,
gate|up GEMM, silu(gate)*up) and reports:
  - kept bytes: memory_allocated after the forward less before it, less the layer's output (the next
    layer's input) -- what planner/inventory.ts's `kept` list must add up to (plus the input);
  - every storage the autograd graph saved (saved_tensors_hooks), with its size per token, so a
    difference names its tensor;
  - which SDPA backends are enabled.
Usage (GPU machine): python3 bench/gpu/act-probe.py [--json out.json]
"""
import argparse
import json

import torch
import torch.nn.functional as F

SHAPES = {
    # name: hidden, intermediate, heads, kv heads, head dim
    "llama2-7b": (4096, 11008, 32, 32, 128),
    "llama3.2-1b": (2048, 8192, 32, 8, 64),
}


class LinearAccum(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w):
        ctx.save_for_backward(x, w)
        return F.linear(x, w)

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        return g @ w, None


def layer(x, p, nh, nkv, hd, cos, sin_s):
    B, S, _ = x.shape
    h = torch.rms_norm(x, (x.size(-1),), p["ln1"], 1e-5)
    qkv = LinearAccum.apply(h, p["qkv"]).view(B, S, nh + 2 * nkv, hd)
    qk, vv = qkv.split_with_sizes([nh + nkv, nkv], 2)
    qk = torch.addcmul(qk * cos, torch.roll(qk, hd // 2, -1), sin_s)
    q, k = qk.split_with_sizes([nh, nkv], 2)
    q, k, v = q.transpose(1, 2), k.transpose(1, 2), vv.transpose(1, 2)
    if nkv != nh:
        rep = nh // nkv
        k = k.unsqueeze(2).expand(B, nkv, rep, S, hd).reshape(B, nh, S, hd)
        v = v.unsqueeze(2).expand(B, nkv, rep, S, hd).reshape(B, nh, S, hd)
    a = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(B, S, nh * hd)
    x = x + LinearAccum.apply(a, p["o"])
    h = torch.rms_norm(x, (x.size(-1),), p["ln2"], 1e-5)
    gu = LinearAccum.apply(h, p["gu"])
    I = gu.size(-1) // 2
    g, u = gu.split(I, -1)
    return x + LinearAccum.apply(F.silu(g) * u, p["down"])


def probe(name, mbs, seq, dev):
    hd_, I, nh, nkv, hd = SHAPES[name]
    dt = torch.bfloat16
    mk = lambda *s: (torch.randn(*s, device=dev, dtype=dt) * 0.02).requires_grad_()
    p = {"ln1": mk(hd_), "qkv": mk((nh + 2 * nkv) * hd, hd_), "o": mk(hd_, nh * hd), "ln2": mk(hd_), "gu": mk(2 * I, hd_), "down": mk(hd_, I)}
    pos = torch.arange(seq, device=dev, dtype=torch.float32)
    inv = 1.0 / (10000 ** (torch.arange(0, hd, 2, device=dev, dtype=torch.float32) / hd))
    emb = torch.cat([torch.outer(pos, inv)] * 2, -1)
    cos = emb.cos().to(dt).unsqueeze(1)
    sinf = emb.sin()
    sin_s = torch.cat([-sinf[:, : hd // 2], sinf[:, hd // 2:]], -1).to(dt).unsqueeze(1)
    T = mbs * seq
    x = torch.randn(mbs, seq, hd_, device=dev, dtype=dt).requires_grad_()
    saved = {}

    def pack(t):
        st = t.untyped_storage()
        saved.setdefault(st.data_ptr(), (st.nbytes(), tuple(t.shape), str(t.dtype)))
        return t

    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated(dev)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y = layer(x, p, nh, nkv, hd, cos, sin_s)
    torch.cuda.synchronize()
    after = torch.cuda.memory_allocated(dev)
    kept = after - before - y.untyped_storage().nbytes()
    params = {t.untyped_storage().data_ptr() for t in p.values()} | {cos.untyped_storage().data_ptr(), sin_s.untyped_storage().data_ptr()}
    rows = sorted(((b, s, d) for ptr, (b, s, d) in saved.items() if ptr not in params), key=lambda r: -r[0])
    torch.cuda.reset_peak_memory_stats(dev)
    base = torch.cuda.memory_allocated(dev)
    y.float().sum().backward()
    torch.cuda.synchronize()
    bwd_peak = torch.cuda.max_memory_allocated(dev) - base
    out = {"model": name, "mbs": mbs, "seq": seq, "kept_bytes": kept, "kept_bytes_per_token": kept / T,
           "input_bytes_per_token": x.untyped_storage().nbytes() / T, "backward_peak_over_kept_bytes": bwd_peak,
           "saved": [{"bytes_per_token": b / T, "shape": s, "dtype": d} for b, s, d in rows]}
    del y, x, p
    torch.cuda.empty_cache()
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--json")
    a = ap.parse_args()
    dev = torch.device("cuda:0")
    be = {k: getattr(torch.backends.cuda, k)() for k in ("flash_sdp_enabled", "mem_efficient_sdp_enabled", "math_sdp_enabled", "cudnn_sdp_enabled") if hasattr(torch.backends.cuda, k)}
    res = {"torch": torch.__version__, "device": torch.cuda.get_device_name(dev), "sdpa_backends": be, "probes": []}
    for name in SHAPES:
        for mbs in (1, 2):
            r = probe(name, mbs, 1024, dev)
            res["probes"].append(r)
            print(f"{name} mbs {mbs}: kept {r['kept_bytes_per_token'] / 1024:.1f} KiB/token beyond the input ({r['input_bytes_per_token'] / 1024:.1f}); "
                  f"saved storages (KiB/token): " + ", ".join(f"{s['bytes_per_token'] / 1024:.1f} {list(s['shape'])}" for s in r["saved"]))
    print("sdpa backends enabled:", be, "torch", torch.__version__)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
