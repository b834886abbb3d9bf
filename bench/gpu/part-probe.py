#!/usr/bin/env python3
"""Forward and backward device time of each part of the executor's model, measured on a GPU.

Replays native/src/model.cpp's fast path in PyTorch (layer_replica.py: the same ATen ops as the
executor's libtorch)
and times, with CUDA events (median of repetitions, steady state: every weight's gradient already
exists, so the backward accumulates as in the second and later micro-batches of a step):
  - one decoder layer (LinearAccum: dW accumulated by addmm_ into the existing accumulator),
  - the embedding (gather forward; dense V x h gradient, added to the weight's gradient),
  - the head: final norm, logits, fp32 cross-entropy; tied (the embedding's weight, autograd adds the
    V x h product to its gradient) or untied (LinearAccum),
for each model and micro-batch size, so that a cost the simulator misses shows up in one part.
Usage (GPU machine): python3 bench/gpu/part-probe.py [--json out.json] [--mbs 1,2,4]
"""
import argparse
import json

import torch
import torch.nn.functional as F

from layer_replica import decoder_layer, rope_tables

MODELS = {
    # hidden, intermediate, heads, kv heads, head dim, vocab, tied
    "llama2-7b": (4096, 11008, 32, 32, 128, 32000, False),
    "llama3.2-1b": (2048, 8192, 32, 8, 64, 128256, True),
}
DT = torch.bfloat16


class LinearAccum(torch.autograd.Function):
    """y = x W^T; backward: dX through autograd, dW added into acc (beta = 1) as the executor does."""

    @staticmethod
    def forward(ctx, x, w, acc):
        ctx.save_for_backward(x, w)
        ctx.acc = acc
        return F.linear(x, w)

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        g2 = g.reshape(-1, g.size(-1))
        ctx.acc.addmm_(g2.t(), x.reshape(-1, x.size(-1)))
        return g @ w, None, None


def timed(fn, reps=12, warm=3):
    for _ in range(warm):
        fn()
    torch.cuda.synchronize()
    ts = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        torch.cuda.synchronize()
        ts.append(a.elapsed_time(b) * 1e3)  # us
    ts.sort()
    return ts[len(ts) // 2]


def fwd_bwd(make, reps=12):
    """make() -> (output, grad of output): times the forward, then the backward alone."""
    f = timed(lambda: make(), reps)
    bw = []
    for i in range(reps + 3):
        out, g = make()
        torch.cuda.synchronize()
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        out.backward(g)
        b.record()
        torch.cuda.synchronize()
        if i >= 3:
            bw.append(a.elapsed_time(b) * 1e3)
    bw.sort()
    return f, bw[len(bw) // 2]


def probe(name, mbs, seq, dev):
    h, I, nh, nkv, hd, V, tied = MODELS[name]
    T = mbs * seq
    mk = lambda *s: (torch.randn(*s, device=dev, dtype=DT) * 0.02).requires_grad_()
    acc = lambda w: torch.zeros(w.shape, device=dev, dtype=DT)
    p = {"ln1": mk(h), "qkv": mk((nh + 2 * nkv) * hd, h), "o": mk(h, nh * hd), "ln2": mk(h), "gu": mk(2 * I, h), "down": mk(h, I)}
    A = {k: acc(v) for k, v in p.items() if v.dim() == 2}
    for k in ("ln1", "ln2"):
        p[k].grad = torch.zeros_like(p[k])
    cos, sin_s = rope_tables(seq, hd, dev, DT)

    def layer():
        x = torch.randn(mbs, seq, h, device=dev, dtype=DT, requires_grad=True)
        out = decoder_layer(x, p, nh, nkv, hd, cos, sin_s, lambda k, t: LinearAccum.apply(t, p[k], A[k]))
        return out, torch.randn_like(out)

    we = mk(V, h)
    we.grad = torch.zeros_like(we)
    ids = torch.randint(0, V, (mbs, seq), device=dev)

    def embed():
        out = F.embedding(ids, we)
        return out, torch.randn_like(out)

    lnf = mk(h)
    lnf.grad = torch.zeros_like(lnf)
    wh = mk(V, h)
    wh_acc = acc(wh)
    labels = torch.randint(0, V, (T,), device=dev)
    mask = torch.ones(T, device=dev)

    def head():
        x = torch.randn(mbs, seq, h, device=dev, dtype=DT, requires_grad=True)
        y = torch.rms_norm(x, (h,), lnf, 1e-5)
        logits = F.linear(y, we) if tied else LinearAccum.apply(y, wh, wh_acc)
        ce = F.cross_entropy(logits.reshape(-1, V).float(), labels, reduction="none")
        loss = (ce * mask).sum() / T
        return loss, torch.ones_like(loss)

    r = {"model": name, "mbs": mbs, "seq": seq}
    r["layer_fwd_us"], r["layer_bwd_us"] = fwd_bwd(layer)
    r["embed_fwd_us"], r["embed_bwd_us"] = fwd_bwd(embed)
    r["head_fwd_us"], r["head_bwd_us"] = fwd_bwd(head)
    big = torch.empty(V * h, device=dev, dtype=DT)
    other = torch.empty_like(big)
    r["vh_zero_us"] = timed(lambda: big.zero_())
    r["vh_add_us"] = timed(lambda: big.add_(other))
    del p, A, we, wh, wh_acc, big, other
    torch.cuda.empty_cache()
    return r


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--json")
    ap.add_argument("--mbs", default="1,2,4")
    a = ap.parse_args()
    dev = torch.device("cuda:0")
    torch.backends.cuda.matmul.allow_tf32 = False
    # heat: the GPU's clock as in a training run
    x = torch.randn(8192, 8192, device=dev, dtype=DT)
    for _ in range(60):
        x @ x
    torch.cuda.synchronize()
    res = {"torch": torch.__version__, "device": torch.cuda.get_device_name(dev), "probes": []}
    for name in MODELS:
        for mbs in map(int, a.mbs.split(",")):
            r = probe(name, mbs, 1024, dev)
            res["probes"].append(r)
            print(" ".join(f"{k}={round(v, 1) if isinstance(v, float) else v}" for k, v in r.items()), flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
