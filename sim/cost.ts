// Cost model: time of an operation on a hardware profile, by generic op name and shape (no LLM
// knowledge). Compute is looked up in the profile's calibrated tables, interpolating the achieved
// rate in log(flops) between measured shapes; outside the tables (or with none) it is a roofline
// with the profile's efficiency, and the estimate says it extrapolated. Times in microseconds.
import type { AttentionPoint, AttentionShape, ComputeProfile, Dtype, ElementwiseKernel, GemmPoint, HardwareProfile } from './profile.ts';

export interface CostEstimate {
  us: number;
  /** 'table': an exact measured shape; 'interpolated': between measured shapes; 'roofline':
   *  outside the tables, from peak x efficiency and memory bandwidth. */
  how: 'table' | 'interpolated' | 'roofline';
  /** True when the figure did not come from (or between) measurements. */
  extrapolated: boolean;
  flops: number;
  bytes: number;
}

/** Which compute a device has: a GPU (index, all alike in a profile) or the host CPU. */
export type ComputeDevice = number | 'gpu' | 'cpu';

export const DTYPE_BYTES: Record<Dtype, number> = { bf16: 2, fp16: 2, fp32: 4, tf32: 4, fp8: 1 };

export function computeOf(p: HardwareProfile, device: ComputeDevice): ComputeProfile {
  if (device === 'cpu' || p.gpus.kind === 'cpu') {
    const c = p.cpu.compute ?? (p.gpus.kind === 'cpu' ? p.compute : undefined);
    if (!c) throw new RangeError(`profile ${p.id} has no CPU compute figures (cpu.compute)`);
    return c;
  }
  return p.compute;
}

interface RatePoint { logF: number; rate: number; key: string }
const tableCache = new WeakMap<object, RatePoint[]>();

function sortedRates<T>(pts: T[], flops: (x: T) => number, us: (x: T) => number | undefined, key: (x: T) => string): RatePoint[] {
  let c = tableCache.get(pts as object);
  if (c) return c;
  c = [];
  for (const x of pts) {
    const t = us(x);
    if (t === undefined) continue;
    const f = flops(x);
    c.push({ logF: Math.log(f), rate: f / t, key: key(x) });
  }
  c.sort((a, b) => a.logF - b.logF);
  tableCache.set(pts as object, c);
  return c;
}

/** Achieved flops/us interpolated in log(flops); null outside the table. */
function interpolate(tab: RatePoint[], flops: number, key: string): { rate: number; exact: boolean } | null {
  if (tab.length === 0) return null;
  for (const p of tab) if (p.key === key) return { rate: p.rate, exact: true };
  const lf = Math.log(flops);
  if (lf < tab[0].logF || lf > tab[tab.length - 1].logF) return null;
  let i = 1;
  while (i < tab.length && tab[i].logF < lf) i++;
  if (i >= tab.length) return { rate: tab[tab.length - 1].rate, exact: false };
  const a = tab[i - 1];
  const b = tab[i];
  if (b.logF === a.logF) return { rate: (a.rate + b.rate) / 2, exact: false };
  const w = (lf - a.logF) / (b.logF - a.logF);
  return { rate: a.rate + (b.rate - a.rate) * w, exact: false };
}

function roofline(c: ComputeProfile, dtype: Dtype, flops: number, bytes: number, eff: number | undefined): number {
  const peak = c.peak_tflops[dtype];
  if (peak === undefined) throw new RangeError(`no peak_tflops for ${dtype}`);
  const e = eff ?? 0.5;
  const tCompute = flops / (peak * 1e6 * e); // TFLOP/s = 1e6 flop/us
  const tMem = bytes / (c.memory_GBps * 1e3);
  return Math.max(tCompute, tMem);
}

/** Device time of a measured GEMM point: its table time less the host dispatch the measurement
 *  included (compute.gemm_dispatch_us), no less than its FLOPs at peak. */
function gemmDeviceUs(c: ComputeProfile, dtype: Dtype, x: GemmPoint): number {
  const f = 2 * x.m * x.n * x.k;
  const t = x.us ?? f / (x.tflops! * 1e6);
  const gap = x.us !== undefined ? c.gemm_dispatch_us ?? 0 : 0;
  if (gap === 0) return t;
  const peak = c.peak_tflops[dtype];
  const floor = peak === undefined ? 0 : f / (peak * 1e6);
  return Math.max(floor, t - gap);
}

/** GEMM C[m,n] = A[m,k] B[k,n] in `dtype`. */
export function gemmTime_us(p: HardwareProfile, device: ComputeDevice, dtype: Dtype, m: number, n: number, k: number): CostEstimate {
  const c = computeOf(p, device);
  const flops = 2 * m * n * k;
  const bytes = (m * k + k * n + m * n) * DTYPE_BYTES[dtype];
  if (flops === 0) return { us: 0, how: 'table', extrapolated: false, flops, bytes };
  const pts = c.gemm?.[dtype];
  if (pts && pts.length) {
    const tab = sortedRates<GemmPoint>(pts, (x) => 2 * x.m * x.n * x.k, (x) => gemmDeviceUs(c, dtype, x), (x) => `${x.m}x${x.n}x${x.k}`);
    const hit = interpolate(tab, flops, `${m}x${n}x${k}`);
    if (hit) {
      const us = Math.max(flops / hit.rate, hit.exact ? 0 : bytes / (c.memory_GBps * 1e3));
      return { us, how: hit.exact ? 'table' : 'interpolated', extrapolated: false, flops, bytes };
    }
  }
  return { us: roofline(c, dtype, flops, bytes, c.gemm_efficiency[dtype]), how: 'roofline', extrapolated: true, flops, bytes };
}

export type { AttentionShape };

/** FLOPs of attention (scores and weighted sum); backward counts 2.5x forward. */
export function attentionFlops(s: AttentionShape, dir: 'fwd' | 'bwd'): number {
  const f = 4 * s.batch * s.heads * s.seq * s.seq * s.head_dim * (s.causal === false ? 1 : 0.5);
  return dir === 'fwd' ? f : 2.5 * f;
}

/** Fused attention forward or backward. */
export function attentionTime_us(p: HardwareProfile, device: ComputeDevice, dtype: Dtype, s: AttentionShape, dir: 'fwd' | 'bwd'): CostEstimate {
  const c = computeOf(p, device);
  const flops = attentionFlops(s, dir);
  const qo = 2 * s.batch * s.heads * s.seq * s.head_dim;
  const kv = 2 * s.batch * s.kv_heads * s.seq * s.head_dim;
  const bytes = (qo + kv) * DTYPE_BYTES[dtype] * (dir === 'fwd' ? 1 : 2);
  if (flops === 0) return { us: 0, how: 'table', extrapolated: false, flops, bytes };
  const all = c.attention?.[dtype];
  const pts = all ? attnView(all, dir, s.causal ?? true) : undefined;
  if (pts && pts.length) {
    const key = (x: AttentionShape) => `${x.batch}x${x.heads}x${x.kv_heads}x${x.seq}x${x.head_dim}`;
    const tab = sortedRates<AttentionPoint>(pts, (x) => attentionFlops(x, dir), (x) => (dir === 'fwd' ? x.fwd_us : x.bwd_us), key);
    const hit = interpolate(tab, flops, key(s));
    if (hit) return { us: flops / hit.rate, how: hit.exact ? 'table' : 'interpolated', extrapolated: false, flops, bytes };
  }
  const eff = c.attention_efficiency?.[dtype] ?? (c.gemm_efficiency[dtype] ?? 0.5) * 0.6;
  return { us: roofline(c, dtype, flops, bytes, eff), how: 'roofline', extrapolated: true, flops, bytes };
}

const attnViews = new WeakMap<object, Map<string, AttentionPoint[]>>();
function attnView(all: AttentionPoint[], dir: 'fwd' | 'bwd', causal: boolean): AttentionPoint[] {
  let m = attnViews.get(all);
  if (!m) { m = new Map(); attnViews.set(all, m); }
  const k = `${dir}:${causal}`;
  let v = m.get(k);
  if (!v) {
    v = all.filter((x) => (dir === 'fwd' ? x.fwd_us : x.bwd_us) !== undefined && (x.causal ?? true) === causal);
    m.set(k, v);
  }
  return v;
}

/** A memory-bound kernel moving `bytes` (reads + writes) through device memory. */
export function elementwiseTime_us(p: HardwareProfile, device: ComputeDevice, bytes: number): CostEstimate {
  const c = computeOf(p, device);
  return { us: bytes / (c.memory_GBps * 1e3), how: 'roofline', extrapolated: false, flops: 0, bytes };
}

/** Elementwise kernel `kernel` moving `bytes`: its measured rate (compute.kernel_GBps), else memory_GBps. */
export function kernelTime_us(p: HardwareProfile, device: ComputeDevice, kernel: ElementwiseKernel, bytes: number): CostEstimate {
  const c = computeOf(p, device);
  const rate = c.kernel_GBps?.[kernel];
  return { us: bytes / ((rate ?? c.memory_GBps) * 1e3), how: rate !== undefined ? 'table' : 'roofline', extrapolated: false, flops: 0, bytes };
}

/** The GPU (or CPU-rank) optimizer update moving `bytes` through device memory: the measured rate of
 *  the executor's fused AdamW (compute.optimizer_GBps), else the elementwise rate memory_GBps. */
export function optimizerTime_us(p: HardwareProfile, device: ComputeDevice, bytes: number): CostEstimate {
  const measured = computeOf(p, device).optimizer_GBps !== undefined;
  return { us: bytes / optimizerBytesPerUs(p, device), how: measured ? 'table' : 'roofline', extrapolated: false, flops: 0, bytes };
}

/** The rate optimizerTime_us divides the bytes by (bytes/us), for callers that cost many steps. */
export function optimizerBytesPerUs(p: HardwareProfile, device: ComputeDevice): number {
  const c = computeOf(p, device);
  return (c.optimizer_GBps !== undefined ? c.optimizer_GBps : c.memory_GBps) * 1e3;
}

/** Bytes over a link of `GBps` after `latency_us`, alone on the link. */
export function transferTime_us(bytes: number, GBps: number, latency_us = 0): number {
  return latency_us + bytes / (GBps * 1e3);
}

/** Host <-> GPU copy of one GPU alone (no sharing; the simulator models sharing). */
export function hostTransferTime_us(p: HardwareProfile, gpu: number, dir: 'h2d' | 'd2h', bytes: number, pageable = false): number {
  const l = p.links[dir].find((x) => x.gpu === gpu);
  if (!l) throw new RangeError(`profile ${p.id} has no links.${dir} entry for GPU ${gpu}`);
  const bw = pageable ? (l.pageable_GBps ?? l.GBps) : l.GBps;
  return transferTime_us(bytes, bw, l.latency_us ?? 0);
}

/** Piecewise-linear throughput curve: 0 at 0, linear between points, flat after the last. */
export function curveAt(points: readonly { x: number; y: number }[], x: number): number {
  if (points.length === 0 || x <= 0) return 0;
  if (x <= points[0].x) return (points[0].y * x) / points[0].x;
  for (let i = 1; i < points.length; i++) {
    if (x <= points[i].x) {
      const a = points[i - 1];
      const b = points[i];
      return a.y + ((b.y - a.y) * (x - a.x)) / (b.x - a.x);
    }
  }
  return points[points.length - 1].y;
}

/** CPU optimizer update of `params` parameters using `threads` threads (whole machine alone). */
export function cpuOptimizerTime_us(p: HardwareProfile, params: number, threads: number, optimizer?: string): number {
  const o = optimizer === undefined ? p.cpu.optimizers[0] : p.cpu.optimizers.find((x) => x.name === optimizer);
  if (!o) throw new RangeError(`profile ${p.id} has no CPU optimizer curve${optimizer ? ` "${optimizer}"` : ''}`);
  const rate = curveAt(o.points.map((q) => ({ x: q.threads, y: q.params_per_s })), threads);
  if (!(rate > 0)) throw new RangeError(`cpuOptimizerTime_us: threads must be positive (got ${threads})`);
  return (params / rate) * 1e6;
}

/** Read or write of `bytes` on disk path `path` (one transfer alone). */
export function diskTime_us(p: HardwareProfile, path: number, dir: 'read' | 'write', bytes: number): number {
  const d = p.disks[path];
  if (!d) throw new RangeError(`profile ${p.id} has no disk path ${path}`);
  return transferTime_us(bytes, dir === 'read' ? d.read_GBps : d.write_GBps, d.latency_us ?? 0);
}
