"""native/src/model.cpp's fast-path decoder layer, op for op, in PyTorch (the same ATen ops the
executor's libtorch calls), for the GPU probes (act-probe.py, part-probe.py).

Shapes: x (B, S, h); the q|k|v and gate|up projections are one GEMM each; rotary as
addcmul(qk * cos, roll(qk, hd / 2), [-sin | sin]) on q and k together; grouped-query attention
expands k and v to the query heads before scaled_dot_product_attention.
"""
import torch
import torch.nn.functional as F


def rope_tables(seq, hd, dev, dt):
    """cos and [-sin | sin], (S, 1, hd) in `dt` (the executor's ropeCos / ropeSinSigned)."""
    pos = torch.arange(seq, device=dev, dtype=torch.float32)
    inv = 1.0 / (10000 ** (torch.arange(0, hd, 2, device=dev, dtype=torch.float32) / hd))
    emb = torch.cat([torch.outer(pos, inv)] * 2, -1)
    sinf = emb.sin()
    sin_s = torch.cat([-sinf[:, : hd // 2], sinf[:, hd // 2:]], -1)
    return emb.cos().to(dt).unsqueeze(1), sin_s.to(dt).unsqueeze(1)


def decoder_layer(x, p, nh, nkv, hd, cos, sin_s, linear):
    """One decoder layer; `linear(name, input)` applies the named projection (qkv, o, gu, down) as
    the caller models the executor's LinearAccum; p holds the norms' weights ln1, ln2."""
    B, S, _ = x.shape
    h = torch.rms_norm(x, (x.size(-1),), p["ln1"], 1e-5)
    qkv = linear("qkv", h).view(B, S, nh + 2 * nkv, hd)
    qk, vv = qkv.split_with_sizes([nh + nkv, nkv], 2)
    qk = torch.addcmul(qk * cos, torch.roll(qk, hd // 2, -1), sin_s)
    q, k = qk.split_with_sizes([nh, nkv], 2)
    q, k, v = q.transpose(1, 2), k.transpose(1, 2), vv.transpose(1, 2)
    if nkv != nh:
        rep = nh // nkv
        k = k.unsqueeze(2).expand(B, nkv, rep, S, hd).reshape(B, nh, S, hd)
        v = v.unsqueeze(2).expand(B, nkv, rep, S, hd).reshape(B, nh, S, hd)
    a = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(B, S, nh * hd)
    x = x + linear("o", a)
    h = torch.rms_norm(x, (x.size(-1),), p["ln2"], 1e-5)
    gu = linear("gu", h)
    g, u = gu.split(gu.size(-1) // 2, -1)
    return x + linear("down", F.silu(g) * u)
