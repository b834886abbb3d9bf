// Hardware profile: the machine as the cost model sees it. A versioned JSON file (bundled ones in
// configs/hardware/), validated by `parseHardwareProfile`, whose errors name the file and field:
// `configs/hardware/x.json: links.h2d[0].GBps must be positive`.
// Units: bytes, GB/s (1e9 bytes/s), microseconds, TFLOP/s (1e12 flop/s).
// Change policy: additive only.

export const HARDWARE_PROFILE_VERSION = 1;

/** Where a figure comes from. */
export type FigureSource = 'measured' | 'datasheet' | 'HARDWARE.md' | 'estimate' | 'derived';

export interface Provenance {
  source: FigureSource;
  /** ISO date (YYYY-MM-DD) of the measurement or of writing the profile. */
  date: string;
  /** How: command, benchmark, document. */
  how?: string;
  /** Machine the figures were measured on. */
  machine?: string;
  note?: string;
}

export type Dtype = 'bf16' | 'fp16' | 'fp32' | 'tf32' | 'fp8';

/** A measured GEMM C[m,n] = A[m,k] B[k,n]: time or achieved rate (one of the two). */
export interface GemmPoint {
  m: number;
  n: number;
  k: number;
  us?: number;
  tflops?: number;
}

/** The shape of an attention call: batch x heads (kv_heads for K/V) x seq x head_dim. */
export interface AttentionShape {
  batch: number;
  heads: number;
  kv_heads: number;
  seq: number;
  head_dim: number;
  /** Causal mask (default true): half the score matrix. */
  causal?: boolean;
}

/** A measured attention kernel (fwd and/or bwd) at one shape. */
export interface AttentionPoint extends AttentionShape {
  fwd_us?: number;
  bwd_us?: number;
}

export interface HostLink {
  gpu: number;
  /** Pinned host memory. */
  GBps: number;
  pageable_GBps?: number;
  latency_us?: number;
}

export interface HostGroup {
  name: string;
  /** GPUs behind this bridge / switch / root complex. */
  gpus: number[];
  /** Aggregate host-to-device capacity of the group. */
  h2d_GBps: number;
  d2h_GBps: number;
  /** Aggregate of both directions at once (omitted: the two directions are independent). */
  duplex_GBps?: number;
}

export interface PeerLink {
  /** Every pair of these GPUs is connected by this kind of link; first matching entry wins. */
  gpus: number[];
  /** Per direction, per GPU (egress and ingress are each a link of this capacity). */
  GBps: number;
  latency_us: number;
  /** The transfer also crosses the host groups of both GPUs (PCIe peer-to-peer through the root
   *  complex, or staged through host memory). */
  via_host?: boolean;
}

/** The elementwise kernels calibrate times (native/src/calibrate.cpp `kernel`). */
export const ELEMENTWISE_KERNELS = ['rmsnorm', 'rotary', 'swiglu', 'add', 'loss'] as const;
export type ElementwiseKernel = (typeof ELEMENTWISE_KERNELS)[number];

export interface ComputeProfile {
  /** Dense peak per dtype. */
  peak_tflops: Partial<Record<Dtype, number>>;
  /** Fraction of peak reached by large GEMMs (roofline outside the tables), per dtype. */
  gemm_efficiency: Partial<Record<Dtype, number>>;
  /** Fraction of peak reached by attention outside the tables (default gemm_efficiency * 0.6). */
  attention_efficiency?: Partial<Record<Dtype, number>>;
  /** Device memory bandwidth reached by elementwise / memory-bound kernels. */
  memory_GBps: number;
  /** Device memory bandwidth of the executor's fused multi-tensor AdamW update (bytes as the cost
   *  model counts them: weights, gradients, master weights and optimizer states read and written),
   *  measured by `mmoc calibrate`. Absent in older profiles: memory_GBps stands in. */
  optimizer_GBps?: number;
  /** Effective bandwidth (ideal bytes / time) of each elementwise kernel as the executor runs it,
   *  measured by `mmoc calibrate`; a kernel absent here runs at memory_GBps. */
  kernel_GBps?: Partial<Record<ElementwiseKernel, number>>;
  /** Host dispatch time included in every `gemm` table time (microseconds): calibrate before 5f5e900
   *  timed each GEMM from an idle device (start event, then the host's cuBLAS call), while the
   *  executor queues its GEMMs behind running work. The cost model takes it off the table times.
   *  Absent (as calibrate writes it now: each GEMM timed behind device work ahead): 0. */
  gemm_dispatch_us?: number;
  /** Measured GEMMs per dtype. */
  gemm?: Partial<Record<Dtype, GemmPoint[]>>;
  /** Measured attention per dtype. */
  attention?: Partial<Record<Dtype, AttentionPoint[]>>;
}

export interface OptimizerCurve {
  /** e.g. 'adamw'. */
  name: string;
  dtype: Dtype;
  /** Parameters/s of the whole update against threads (piecewise-linear). */
  points: { threads: number; params_per_s: number }[];
}

export interface CpuProfile {
  name?: string;
  cores: number;
  threads?: number;
  memory_bytes: number;
  /** Host memory bandwidth (read + write, memcpy). */
  memory_GBps: number;
  optimizers: OptimizerCurve[];
  /** Compute of a CPU rank (profiles whose devices are CPUs). */
  compute?: ComputeProfile;
}

export interface DiskProfile {
  path: string;
  read_GBps: number;
  write_GBps: number;
  concurrency: number;
  latency_us?: number;
  capacity_bytes?: number;
}

export interface Overheads {
  kernel_launch_us: number;
  /** Interpreter cost per program instruction. */
  per_instruction_us: number;
  cuda_context_bytes: number;
  /** Caching-allocator overhead (fragmentation) as a fraction of live bytes. */
  allocator_overhead_fraction: number;
  /** Device memory of the communicators of a 2-rank 1F1B run (NCCL: forward, backward and world
   *  communicators, one send and one receive connection), per GPU of a plan of several ranks. */
  comm_buffer_bytes: number;
  /** Per GPU, each further communicator (a split tied embedding's, data parallelism's). Absent: 0. */
  comm_group_bytes?: number;
  /** Per GPU, each further point-to-point connection (a send or a receive to one peer on the forward
   *  or backward communicator, e.g. both directions under interleaving). Absent: 0. */
  p2p_connection_bytes?: number;
  /** Per GPU, what the caching allocator holds beyond its live blocks at the peak (reserved less
   *  allocated: cached free blocks), measured on calibrate's probe runs. Absent: 0. */
  allocator_slack_bytes?: number;
}

export interface HardwareProfile {
  version: typeof HARDWARE_PROFILE_VERSION;
  id: string;
  description: string;
  provenance: Provenance;
  /** Per-figure provenance, keyed by field path (`links.h2d`, `compute.gemm.bf16`, ...), where it
   *  differs from `provenance`. */
  figures?: Record<string, Provenance>;
  gpus: {
    name: string;
    /** 'cpu': ranks run on the host CPU (memory_bytes is then the share of host memory). */
    kind?: 'gpu' | 'cpu';
    count: number;
    memory_bytes: number;
  };
  links: {
    /** One per GPU. */
    h2d: HostLink[];
    d2h: HostLink[];
    /** Per-GPU cap on both directions at once (one GPU copying both ways). */
    duplex?: { gpu: number; GBps: number }[];
    host_groups: HostGroup[];
    /** The host's total across all groups (root complex / memory), where it binds below the sum
     *  of the groups. */
    host_total?: { h2d_GBps: number; d2h_GBps: number; duplex_GBps?: number };
    peer: PeerLink[];
  };
  compute: ComputeProfile;
  cpu: CpuProfile;
  disks: DiskProfile[];
  overheads: Overheads;
  /** Compute runs 1 + f slower while copies run on the same GPU. */
  compute_slowdown_under_copies: number;
  /** Host-GPU copies run 1 + f slower while the host CPU runs an optimizer update (both draw on
   *  host DRAM); measured by `mmoc calibrate` (links part). Absent: 0. */
  copy_slowdown_under_cpu_update?: number;
  /** The host CPU's optimizer update runs 1 + f slower while host-GPU copies (or disk transfers) run
   *  (calibrate: on a multi-GPU host the executor's own update under its copies against without, in
   *  a run with AdamW on the host; else the larger of inside H2D and inside D2H copies on every
   *  GPU). Absent: 0. */
  cpu_update_slowdown_under_copies?: number;
  /** Disk transfers run 1 + f slower while the host CPU runs an optimizer update. Absent: 0. */
  disk_slowdown_under_cpu_update?: number;
  /** The early GPU update (planner/early-update.ts: a decoder layer's AdamW on a side stream as
   *  soon as its gradient is complete in the stage's last backward): `shown` is the share of the
   *  update's time (0..1) that the step still pays, the rest hidden beside the backward; by decoder
   *  layer size (parameters), measured by `mmoc calibrate` from its sustained-load probes (the last
   *  micro-batch's backward against the others). The entry nearest in size applies. Absent: 1
   *  (the update after the backward, none of it hidden). */
  update_overlap?: UpdateOverlap[];
}

export interface UpdateOverlap {
  /** Parameters of one decoder layer of the model it was measured on. */
  params_per_layer: number;
  /** Share of the early update's time (0..1) the step pays. */
  shown: number;
}

/** The share of an early GPU update's time the step pays for decoder layers of `paramsPerLayer`
 *  parameters: the profile's update_overlap entry nearest in size (by ratio), else 1. */
export function updateShownShare(p: HardwareProfile, paramsPerLayer: number): number {
  let best = 1, dist = Infinity;
  for (const e of p.update_overlap ?? []) {
    const d = Math.abs(Math.log(e.params_per_layer / Math.max(1, paramsPerLayer)));
    if (d < dist) { dist = d; best = e.shown; }
  }
  return best;
}

/** A profile that fails validation. The message names the source and the field. */
export class ProfileError extends Error {
  override name = 'ProfileError';
}

const DTYPES: readonly Dtype[] = ['bf16', 'fp16', 'fp32', 'tf32', 'fp8'];
const SOURCES: readonly FigureSource[] = ['measured', 'datasheet', 'HARDWARE.md', 'estimate', 'derived'];

type Obj = Record<string, unknown>;

class V {
  constructor(readonly source: string) {}
  fail(path: string, msg: string): never {
    throw new ProfileError(`${this.source}: ${path} ${msg}`);
  }
  obj(x: unknown, path: string): Obj {
    if (x === null || typeof x !== 'object' || Array.isArray(x)) this.fail(path, 'must be an object');
    return x as Obj;
  }
  arr(x: unknown, path: string): unknown[] {
    if (!Array.isArray(x)) this.fail(path, 'must be an array');
    return x;
  }
  str(x: unknown, path: string): string {
    if (typeof x !== 'string' || x.length === 0) this.fail(path, 'must be a non-empty string');
    return x;
  }
  num(x: unknown, path: string): number {
    if (typeof x !== 'number' || !Number.isFinite(x)) this.fail(path, 'must be a finite number');
    return x;
  }
  pos(x: unknown, path: string): number {
    const n = this.num(x, path);
    if (!(n > 0)) this.fail(path, 'must be positive');
    return n;
  }
  nonneg(x: unknown, path: string): number {
    const n = this.num(x, path);
    if (n < 0) this.fail(path, 'must be zero or positive');
    return n;
  }
  int(x: unknown, path: string, min = 1): number {
    const n = this.num(x, path);
    if (!Number.isInteger(n)) this.fail(path, 'must be an integer');
    if (n < min) this.fail(path, min === 1 ? 'must be positive' : `must be at least ${min}`);
    return n;
  }
  frac(x: unknown, path: string): number {
    const n = this.num(x, path);
    if (!(n > 0 && n <= 1)) this.fail(path, 'must be in (0, 1]');
    return n;
  }
  optPos(o: Obj, k: string, path: string): void {
    if (o[k] !== undefined) this.pos(o[k], `${path}.${k}`);
  }
  optNonneg(o: Obj, k: string, path: string): void {
    if (o[k] !== undefined) this.nonneg(o[k], `${path}.${k}`);
  }
  gpu(x: unknown, path: string, count: number): number {
    const g = this.int(x, path, 0);
    if (g >= count) this.fail(path, `(${g}) must name a GPU below gpus.count (${count})`);
    return g;
  }
}

function checkProvenance(v: V, x: unknown, path: string): void {
  const p = v.obj(x, path);
  const s = v.str(p.source, `${path}.source`);
  if (!SOURCES.includes(s as FigureSource)) v.fail(`${path}.source`, `must be one of ${SOURCES.join(', ')} (got "${s}")`);
  const d = v.str(p.date, `${path}.date`);
  if (!/^\d{4}-\d{2}-\d{2}/.test(d)) v.fail(`${path}.date`, `must be an ISO date YYYY-MM-DD (got "${d}")`);
  for (const k of ['how', 'machine', 'note']) if (p[k] !== undefined) v.str(p[k], `${path}.${k}`);
}

function checkDtypeMap(v: V, x: unknown, path: string, each: (val: unknown, p: string) => void): void {
  const o = v.obj(x, path);
  for (const k of Object.keys(o)) {
    if (!DTYPES.includes(k as Dtype)) v.fail(`${path}.${k}`, `is not a dtype (${DTYPES.join(', ')})`);
    each(o[k], `${path}.${k}`);
  }
}

function checkCompute(v: V, x: unknown, path: string): void {
  const c = v.obj(x, path);
  checkDtypeMap(v, c.peak_tflops, `${path}.peak_tflops`, (n, p) => v.pos(n, p));
  if (Object.keys(c.peak_tflops as Obj).length === 0) v.fail(`${path}.peak_tflops`, 'must name at least one dtype');
  checkDtypeMap(v, c.gemm_efficiency, `${path}.gemm_efficiency`, (n, p) => v.frac(n, p));
  for (const k of Object.keys(c.gemm_efficiency as Obj)) {
    if ((c.peak_tflops as Obj)[k] === undefined) v.fail(`${path}.gemm_efficiency.${k}`, `has no peak_tflops.${k}`);
  }
  if (c.attention_efficiency !== undefined) checkDtypeMap(v, c.attention_efficiency, `${path}.attention_efficiency`, (n, p) => v.frac(n, p));
  v.pos(c.memory_GBps, `${path}.memory_GBps`);
  v.optPos(c, 'optimizer_GBps', path);
  if (c.gemm_dispatch_us !== undefined) v.nonneg(c.gemm_dispatch_us, `${path}.gemm_dispatch_us`);
  if (c.kernel_GBps !== undefined) {
    const k = v.obj(c.kernel_GBps, `${path}.kernel_GBps`);
    for (const name of Object.keys(k)) {
      if (!(ELEMENTWISE_KERNELS as readonly string[]).includes(name)) v.fail(`${path}.kernel_GBps.${name}`, `is not a kernel (${ELEMENTWISE_KERNELS.join(', ')})`);
      v.pos(k[name], `${path}.kernel_GBps.${name}`);
    }
  }
  if (c.gemm !== undefined) {
    checkDtypeMap(v, c.gemm, `${path}.gemm`, (a, p) => {
      v.arr(a, p).forEach((pt, i) => {
        const q = v.obj(pt, `${p}[${i}]`);
        for (const k of ['m', 'n', 'k']) v.int(q[k], `${p}[${i}].${k}`);
        if (q.us === undefined && q.tflops === undefined) v.fail(`${p}[${i}]`, 'needs us or tflops');
        v.optPos(q, 'us', `${p}[${i}]`);
        v.optPos(q, 'tflops', `${p}[${i}]`);
      });
    });
  }
  if (c.attention !== undefined) {
    checkDtypeMap(v, c.attention, `${path}.attention`, (a, p) => {
      v.arr(a, p).forEach((pt, i) => {
        const q = v.obj(pt, `${p}[${i}]`);
        for (const k of ['batch', 'heads', 'kv_heads', 'seq', 'head_dim']) v.int(q[k], `${p}[${i}].${k}`);
        if (q.fwd_us === undefined && q.bwd_us === undefined) v.fail(`${p}[${i}]`, 'needs fwd_us or bwd_us');
        v.optPos(q, 'fwd_us', `${p}[${i}]`);
        v.optPos(q, 'bwd_us', `${p}[${i}]`);
        if (q.causal !== undefined && typeof q.causal !== 'boolean') v.fail(`${p}[${i}].causal`, 'must be true or false');
      });
    });
  }
}

/**
 * Validates a parsed hardware profile; `source` (the file name) starts every error message.
 * Returns the same object, typed. Throws ProfileError.
 */
export function parseHardwareProfile(json: unknown, source: string): HardwareProfile {
  const v = new V(source);
  const o = v.obj(json, '(profile)');
  if (o.version !== HARDWARE_PROFILE_VERSION) v.fail('version', `must be ${HARDWARE_PROFILE_VERSION} (got ${JSON.stringify(o.version)})`);
  v.str(o.id, 'id');
  if (typeof o.description !== 'string') v.fail('description', 'must be a string');
  checkProvenance(v, o.provenance, 'provenance');
  if (o.figures !== undefined) {
    const f = v.obj(o.figures, 'figures');
    for (const k of Object.keys(f)) checkProvenance(v, f[k], `figures.${k}`);
  }

  const g = v.obj(o.gpus, 'gpus');
  v.str(g.name, 'gpus.name');
  if (g.kind !== undefined && g.kind !== 'gpu' && g.kind !== 'cpu') v.fail('gpus.kind', 'must be "gpu" or "cpu"');
  const count = v.int(g.count, 'gpus.count');
  v.pos(g.memory_bytes, 'gpus.memory_bytes');

  const l = v.obj(o.links, 'links');
  for (const dir of ['h2d', 'd2h'] as const) {
    const a = v.arr(l[dir], `links.${dir}`);
    const seen = new Set<number>();
    a.forEach((x, i) => {
      const p = `links.${dir}[${i}]`;
      const e = v.obj(x, p);
      const gi = v.gpu(e.gpu, `${p}.gpu`, count);
      if (seen.has(gi)) v.fail(`${p}.gpu`, `(${gi}) appears twice`);
      seen.add(gi);
      v.pos(e.GBps, `${p}.GBps`);
      v.optPos(e, 'pageable_GBps', p);
      v.optNonneg(e, 'latency_us', p);
    });
    for (let i = 0; i < count; i++) if (!seen.has(i)) v.fail(`links.${dir}`, `has no entry for GPU ${i}`);
  }
  if (l.duplex !== undefined) {
    v.arr(l.duplex, 'links.duplex').forEach((x, i) => {
      const e = v.obj(x, `links.duplex[${i}]`);
      v.gpu(e.gpu, `links.duplex[${i}].gpu`, count);
      v.pos(e.GBps, `links.duplex[${i}].GBps`);
    });
  }
  const inGroup = new Set<number>();
  v.arr(l.host_groups, 'links.host_groups').forEach((x, i) => {
    const p = `links.host_groups[${i}]`;
    const e = v.obj(x, p);
    v.str(e.name, `${p}.name`);
    const gs = v.arr(e.gpus, `${p}.gpus`);
    if (gs.length === 0) v.fail(`${p}.gpus`, 'must list at least one GPU');
    gs.forEach((gg, j) => {
      const gi = v.gpu(gg, `${p}.gpus[${j}]`, count);
      if (inGroup.has(gi)) v.fail(`${p}.gpus[${j}]`, `(${gi}) is already in another host group`);
      inGroup.add(gi);
    });
    v.pos(e.h2d_GBps, `${p}.h2d_GBps`);
    v.pos(e.d2h_GBps, `${p}.d2h_GBps`);
    v.optPos(e, 'duplex_GBps', p);
  });
  if (l.host_total !== undefined) {
    const e = v.obj(l.host_total, 'links.host_total');
    v.pos(e.h2d_GBps, 'links.host_total.h2d_GBps');
    v.pos(e.d2h_GBps, 'links.host_total.d2h_GBps');
    v.optPos(e, 'duplex_GBps', 'links.host_total');
  }
  v.arr(l.peer, 'links.peer').forEach((x, i) => {
    const p = `links.peer[${i}]`;
    const e = v.obj(x, p);
    v.arr(e.gpus, `${p}.gpus`).forEach((gg, j) => v.gpu(gg, `${p}.gpus[${j}]`, count));
    v.pos(e.GBps, `${p}.GBps`);
    v.nonneg(e.latency_us, `${p}.latency_us`);
    if (e.via_host !== undefined && typeof e.via_host !== 'boolean') v.fail(`${p}.via_host`, 'must be true or false');
  });

  checkCompute(v, o.compute, 'compute');

  const c = v.obj(o.cpu, 'cpu');
  v.int(c.cores, 'cpu.cores');
  if (c.threads !== undefined) v.int(c.threads, 'cpu.threads');
  v.pos(c.memory_bytes, 'cpu.memory_bytes');
  v.pos(c.memory_GBps, 'cpu.memory_GBps');
  v.arr(c.optimizers, 'cpu.optimizers').forEach((x, i) => {
    const p = `cpu.optimizers[${i}]`;
    const e = v.obj(x, p);
    v.str(e.name, `${p}.name`);
    if (!DTYPES.includes(e.dtype as Dtype)) v.fail(`${p}.dtype`, `must be one of ${DTYPES.join(', ')}`);
    const pts = v.arr(e.points, `${p}.points`);
    if (pts.length === 0) v.fail(`${p}.points`, 'must have at least one point');
    let prev = 0;
    pts.forEach((pt, j) => {
      const q = v.obj(pt, `${p}.points[${j}]`);
      const t = v.int(q.threads, `${p}.points[${j}].threads`);
      if (t <= prev) v.fail(`${p}.points[${j}].threads`, 'must increase from point to point');
      prev = t;
      v.pos(q.params_per_s, `${p}.points[${j}].params_per_s`);
    });
  });
  if (c.compute !== undefined) checkCompute(v, c.compute, 'cpu.compute');

  v.arr(o.disks, 'disks').forEach((x, i) => {
    const p = `disks[${i}]`;
    const e = v.obj(x, p);
    v.str(e.path, `${p}.path`);
    v.pos(e.read_GBps, `${p}.read_GBps`);
    v.pos(e.write_GBps, `${p}.write_GBps`);
    v.int(e.concurrency, `${p}.concurrency`);
    v.optNonneg(e, 'latency_us', p);
    v.optPos(e, 'capacity_bytes', p);
  });

  const ov = v.obj(o.overheads, 'overheads');
  for (const k of ['kernel_launch_us', 'per_instruction_us', 'cuda_context_bytes', 'comm_buffer_bytes']) v.nonneg(ov[k], `overheads.${k}`);
  for (const k of ['comm_group_bytes', 'p2p_connection_bytes', 'allocator_slack_bytes']) if (ov[k] !== undefined) v.nonneg(ov[k], `overheads.${k}`);
  const af = v.nonneg(ov.allocator_overhead_fraction, 'overheads.allocator_overhead_fraction');
  if (af >= 1) v.fail('overheads.allocator_overhead_fraction', 'must be below 1');
  v.nonneg(o.compute_slowdown_under_copies, 'compute_slowdown_under_copies');
  for (const k of ['copy_slowdown_under_cpu_update', 'cpu_update_slowdown_under_copies', 'disk_slowdown_under_cpu_update']) if (o[k] !== undefined) v.nonneg(o[k], k);
  if (o.update_overlap !== undefined) v.arr(o.update_overlap, 'update_overlap').forEach((x, i) => {
    const e = v.obj(x, `update_overlap[${i}]`);
    if (!(v.nonneg(e.params_per_layer, `update_overlap[${i}].params_per_layer`) > 0)) v.fail(`update_overlap[${i}].params_per_layer`, 'must be positive');
    if (v.nonneg(e.shown, `update_overlap[${i}].shown`) > 1) v.fail(`update_overlap[${i}].shown`, 'must be at most 1 (a share of the update\'s time)');
  });
  return o as unknown as HardwareProfile;
}
