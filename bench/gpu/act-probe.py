#!/usr/bin/env python3
"""What one decoder layer of the executor keeps for its backward, measured on a GPU.

Replays native/src/model.cpp's fast-path decoder layer (layer_replica.py; its projections through a
Function that saves (x, W) like LinearAccum) and reports:
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

from layer_replica import decoder_layer, rope_tables

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


def probe(name, mbs, seq, dev):
    hd_, I, nh, nkv, hd = SHAPES[name]
    dt = torch.bfloat16
    mk = lambda *s: (torch.randn(*s, device=dev, dtype=dt) * 0.02).requires_grad_()
    p = {"ln1": mk(hd_), "qkv": mk((nh + 2 * nkv) * hd, hd_), "o": mk(hd_, nh * hd), "ln2": mk(hd_), "gu": mk(2 * I, hd_), "down": mk(hd_, I)}
    cos, sin_s = rope_tables(seq, hd, dev, dt)
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
        y = decoder_layer(x, p, nh, nkv, hd, cos, sin_s, lambda k, t: LinearAccum.apply(t, p[k]))
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
