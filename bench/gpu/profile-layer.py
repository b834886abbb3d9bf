# Profiles one LLaMA-2-7B decoder layer forward + backward (1 x 1024 tokens, bf16) written with the
# same ATen ops as native/src/model.cpp, and prints the top CUDA kernels: where a layer's time goes.
import torch, torch.nn.functional as F
from torch.profiler import profile, ProfilerActivity
torch.manual_seed(0)
d = 'cuda'; bf = torch.bfloat16
B, S, H, I, nh, hd = 1, 1024, 4096, 11008, 32, 128
W = [torch.randn(n, m, device=d, dtype=bf, requires_grad=True) * 0.02 for n, m in [(3 * H, H), (H, H), (2 * I, H), (H, I)]]
W = [w.detach().requires_grad_() for w in W]
n1 = torch.ones(H, device=d, dtype=bf, requires_grad=True); n2 = torch.ones(H, device=d, dtype=bf, requires_grad=True)
pos = torch.arange(S, device=d, dtype=torch.float64); inv = 1.0 / (10000 ** (torch.arange(0, hd, 2, device=d, dtype=torch.float64) / hd))
fr = torch.outer(pos, inv); emb = torch.cat([fr, fr], -1); cos = emb.cos().to(bf)[:, None]; sinf = emb.sin()
sinS = torch.cat([-sinf[:, :hd // 2], sinf[:, hd // 2:]], -1).to(bf)[:, None]
def layer(x):
    h = F.rms_norm(x, (H,), n1, 1e-5)
    qkv = F.linear(h, W[0]).view(B, S, 3 * nh, hd)
    qk = qkv.narrow(2, 0, 2 * nh)
    qk = torch.addcmul(qk * cos, torch.roll(qk, hd // 2, -1), sinS)
    q = qk.narrow(2, 0, nh).transpose(1, 2); k = qk.narrow(2, nh, nh).transpose(1, 2); v = qkv.narrow(2, 2 * nh, nh).transpose(1, 2)
    a = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(B, S, H)
    x = x + F.linear(a, W[1])
    h = F.rms_norm(x, (H,), n2, 1e-5)
    gu = F.linear(h, W[2])
    return x + F.linear(F.silu(gu.narrow(-1, 0, I)) * gu.narrow(-1, I, I), W[3])
x = torch.randn(B, S, H, device=d, dtype=bf, requires_grad=True)
for _ in range(3): layer(x).sum().backward()
torch.cuda.synchronize()
with profile(activities=[ProfilerActivity.CUDA, ProfilerActivity.CPU]) as prof:
    for _ in range(5): layer(x).backward(torch.ones(B, S, H, device=d, dtype=bf))
    torch.cuda.synchronize()
print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=28, max_name_column_width=70))
import time
for n in range(2):
  torch.cuda.synchronize(); t = time.time()
  for _ in range(20): y = layer(x)
  torch.cuda.synchronize(); tf = (time.time() - t) / 20
  t = time.time()
  for _ in range(20): layer(x).backward(torch.ones(B, S, H, device=d, dtype=bf))
  torch.cuda.synchronize(); tfb = (time.time() - t) / 20
print(f"layer fwd {tf*1e3:.3f} ms, fwd+bwd {tfb*1e3:.3f} ms (GEMM flops fwd {2*1024*202e6/1e9:.0f} GFLOP)")
