# Where a decoder layer's time goes on this GPU, and whether it holds under sustained load (it
# replaces profile-layer.py, which profiled the layer with narrow instead of split): the
# question the third matrix left (bench/gpu/matrix-2026-11-22c-h200x2/README.md: LLaMA-2-7B layers
# run 10-17% slower in the executor than calibrate's tables predict; 1B layers match).
#
#   python3 bench/gpu/diagnose-layer.py [--model 7b|1b] [--mbs 1] [--seconds 20]
#
# 1. One decoder layer (the ATen ops of native/src/model.cpp, split q|k|v and gate|up) forward and
#    backward, timed with CUDA events back to back (the GPU never idles): per-layer ms.
# 2. Its kernels by the torch profiler, grouped (GEMM, attention, elementwise): device us each.
# 3. The same GEMM shapes timed alone, cold (after idling, as calibrate times them) and hot (after
#    the layer loop has run for --seconds), with the SM clock nvidia-smi reports at each point.
# Prints one table; compare "layer fwd/bwd" with the profile's prediction (mmoc simulate or
# planner/lower.ts layerTimes) and "GEMM cold vs hot" for clock effects.
import argparse, subprocess, time
import torch, torch.nn.functional as F
from torch.profiler import profile, ProfilerActivity
from layer_replica import decoder_layer, rope_tables

ap = argparse.ArgumentParser()
ap.add_argument('--model', default='7b'); ap.add_argument('--mbs', type=int, default=1); ap.add_argument('--seconds', type=float, default=20)
a = ap.parse_args()
cfg = {'7b': (4096, 11008, 32, 32, 128), '1b': (2048, 8192, 32, 8, 64)}[a.model]
H, I, nh, nkv, hd = cfg
B, S, d, bf = a.mbs, 1024, 'cuda', torch.bfloat16
torch.manual_seed(0)
W = [(torch.randn(n, m, device=d, dtype=bf) * 0.02).requires_grad_() for n, m in [((nh + 2 * nkv) * hd, H), (H, nh * hd), (2 * I, H), (H, I)]]
n1 = torch.ones(H, device=d, dtype=bf, requires_grad=True); n2 = torch.ones(H, device=d, dtype=bf, requires_grad=True)
cos, sinS = rope_tables(S, hd, d, bf)
P = {'ln1': n1, 'ln2': n2, 'qkv': W[0], 'o': W[1], 'gu': W[2], 'down': W[3]}

def layer(x):
    return decoder_layer(x, P, nh, nkv, hd, cos, sinS, lambda k, t: F.linear(t, P[k]))

def sm_clock():
    try:
        return int(subprocess.run(['nvidia-smi', '--query-gpu=clocks.sm', '--format=csv,noheader,nounits', '-i', '0'], capture_output=True, text=True, timeout=5).stdout.split()[0])
    except Exception:
        return -1

x = torch.randn(B, S, H, device=d, dtype=bf, requires_grad=True)
gy = torch.ones(B, S, H, device=d, dtype=bf)
for _ in range(5): layer(x).backward(gy)
torch.cuda.synchronize()

def timed(n):
    ev = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(n)]
    for e0, e1, e2 in ev:
        e0.record(); y = layer(x); e1.record(); y.backward(gy); e2.record()
    torch.cuda.synchronize()
    f = sorted(e0.elapsed_time(e1) for e0, e1, _ in ev); b = sorted(e1.elapsed_time(e2) for _, e1, e2 in ev)
    return f[n // 2], b[n // 2]

GEMMS = [('qkv fwd', S * B, (nh + 2 * nkv) * hd, H), ('o fwd', S * B, H, nh * hd), ('gate|up fwd', S * B, 2 * I, H), ('down fwd', S * B, H, I)]
def gemm_us(m, n, k, reps=20):
    A = torch.randn(m, k, device=d, dtype=bf); Bm = torch.randn(k, n, device=d, dtype=bf)
    for _ in range(3): A @ Bm
    torch.cuda.synchronize()
    e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    e0.record()
    for _ in range(reps): A @ Bm
    e1.record(); torch.cuda.synchronize()
    return e0.elapsed_time(e1) * 1000 / reps

time.sleep(3)  # idle: clocks back to their resting state
cold = [(name, gemm_us(m, n, k), sm_clock()) for name, m, n, k in GEMMS]
f0, b0 = timed(20); clk0 = sm_clock()
t_end = time.time() + a.seconds
while time.time() < t_end:
    for _ in range(20): layer(x).backward(gy)
    torch.cuda.synchronize()
f1, b1 = timed(20); clk1 = sm_clock()
hot = [(name, gemm_us(m, n, k), sm_clock()) for name, m, n, k in GEMMS]

with profile(activities=[ProfilerActivity.CUDA]) as prof:
    for _ in range(5): layer(x).backward(gy)
    torch.cuda.synchronize()
groups = {'gemm': 0.0, 'attention': 0.0, 'elementwise and other': 0.0}
for ev in prof.key_averages():
    us = ev.device_time_total / 5 if hasattr(ev, 'device_time_total') else ev.cuda_time_total / 5
    if us <= 0: continue
    n = ev.key.lower()
    g = 'gemm' if ('gemm' in n or 'sm90' in n or 'cutlass' in n or 'nvjet' in n) else 'attention' if ('flash' in n or 'fmha' in n or 'attention' in n) else 'elementwise and other'
    groups[g] += us

print(f'model {a.model} micro-batch {B} x {S}: one decoder layer')
print(f'  layer fwd / bwd, first 20 after warm-up: {f0:.3f} / {b0:.3f} ms (SM clock {clk0} MHz)')
print(f'  layer fwd / bwd after {a.seconds:.0f} s of load:   {f1:.3f} / {b1:.3f} ms (SM clock {clk1} MHz)')
print('  device time by kind (us, fwd+bwd): ' + ', '.join(f'{k} {v:.0f}' for k, v in groups.items()))
print('  GEMM alone (us): cold [clock] -> hot [clock]')
for (name, c, cc), (_, h, hc) in zip(cold, hot):
    print(f'    {name:12s} {c:8.1f} [{cc}] -> {h:8.1f} [{hc}]  ({(h / c - 1) * 100:+.1f}%)')
for key in ('device_time_total', 'cuda_time_total'):
    try:
        print(prof.key_averages().table(sort_by=key, row_limit=12))
        break
    except Exception:
        continue
