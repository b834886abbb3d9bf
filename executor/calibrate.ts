// `mmoc calibrate`: runs the native benchmarks (native/src/calibrate.cpp) on this machine and turns
// them into a hardware profile (sim/profile.ts) with provenance. Which benchmarks run follows the
// model and job: GEMMs at the exact shapes of the model's layers (forward and both backward
// products, planner/inventory.ts), attention at the job's sequence lengths, and so on.
//
// Parts (`--only`): gemm, attention, kernels, links, p2p, cpu, memory, disk, overheads. A part not
// measured keeps the base profile's figures (the output file when it exists, else a starting
// profile whose figures say they are estimates).
//
// Per-instruction overhead: the cost model charges every compute instruction `per_instruction_us`
// and every kernel `kernel_launch_us` (planner/lower.ts layerTimes counts the kernels of a layer).
// Both are fitted, by non-negative least squares, to the measured instruction durations of a
// short run of the executor itself (a 2-rank 1F1B plan of the tiny model, 4 micro-batches, on the
// devices being calibrated; 1 rank where there is one device) against the prediction from the
// figures measured just before: this is what makes small models, whose time is mostly fixed
// per-op costs, predictable. On CPU ranks the same run also gives the per-message cost of a c10d
// (Gloo) send/receive: the peer latency is fitted so that the run's simulated step time matches.
// The fit takes each instruction's (and step's) fastest measured repetition: work running beside
// calibrate only ever adds time, and a shared machine should not teach the model its neighbours.
import { hostThreadsPerRank } from '../planner/host-threads.ts';
import { cpus, hostname, totalmem } from 'node:os';
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { parseHardwareProfile, type TraceEvent, type HardwareProfile, type Provenance, type GemmPoint, type AttentionPoint, type Dtype } from '../sim/index.ts';
import { decoderParams, getInventory } from '../planner/inventory.ts';
import type { ModelConfig } from '../planner/model-config.ts';
import { tiny } from '../planner/test-models.ts';
import { buildPlan, defaultOptimizer } from '../planner/plan-build.ts';
import { defaultPolicy, evenPartition } from '../planner/memory.ts';
import { layerTimes, simulatePlan } from '../planner/lower.ts';
import type { Plan, Precision } from '../planner/plan-types.ts';
import { InputError } from '../planner/errors.ts';
import { earlyUpdateLayers } from '../planner/early-update.ts';
import { buildInfo, calibrateTask, devices, type CalibResult, type CalibTask, type NativeDevices, type BuildInfo } from './native.ts';
import { execute } from './launch.ts';

/** Bytes a parameter of a bf16-mixed AdamW update as the cost model counts them (planner/lower.ts:
 *  2 x weight + gradient + 2 x master + 2 x optimizer states). */
export const OPTIMIZER_BYTES_PER_PARAM = 2 * 2 + 2 + 2 * 4 + 2 * 8;
/** Chunk threads per disk path that calibrate times (the plan's default policy.diskConcurrency). */
const DISK_CONCURRENCY = 2;

export const CALIB_PARTS = ['gemm', 'attention', 'kernels', 'links', 'p2p', 'cpu', 'memory', 'disk', 'overheads'] as const;
export type CalibPart = (typeof CALIB_PARTS)[number];

export interface CalibrateOptions {
  parts: ReadonlySet<CalibPart>;
  quick: boolean;
  /** Models whose layer shapes are measured (kernels use the first). */
  models: ModelConfig[];
  seqs: number[];
  microBatchSizes: number[];
  diskPaths: string[];
  id: string;
  description?: string;
  /** The command line, for provenance. */
  command: string;
  /** Figures of parts not measured in this run. */
  base?: HardwareProfile;
  /** 'cpu': a profile whose ranks run on the CPU, even where GPUs exist. Default: GPUs when present. */
  target?: 'cpu' | 'gpu';
  /** CPU-rank profiles: how many ranks (gpus.count). */
  cpuRanks?: number;
  /** CPU-rank profiles: intra-op threads of each rank (default: cores / ranks, at least 1); the
   *  compute benchmarks and the probe run with it: run `mmoc execute --threads` with the same. */
  rankThreads?: number;
  progress?: (done: number, total: number, label: string) => void;
  /** Tests: stand-ins for the addon and the executor (a GPU machine's profile assembled on CPU). */
  deps?: { devices?: () => NativeDevices; buildInfo?: () => BuildInfo; calibrateTask?: typeof calibrateTask; execute?: typeof execute };
}

export interface Measurement {
  part: CalibPart;
  label: string;
  task?: Partial<CalibTask>;
  result?: CalibResult;
  error?: string;
  seconds: number;
  /** What a composite job measured (`--json`): the figures it fitted from, for re-fitting offline. */
  detail?: unknown;
}

export interface CalibrateOutput {
  profile: HardwareProfile;
  measurements: Measurement[];
  skipped: string[];
  seconds: number;
}

const GB = 1e9;
const today = () => new Date().toISOString().slice(0, 10);

/** Dense bf16 peak by GPU name (datasheet), for the efficiency the cost model uses outside the tables. */
function datasheetPeak(name: string): { bf16: number; fp32: number } | null {
  const n = name.toUpperCase();
  if (n.includes('H200') || n.includes('H100')) return { bf16: 989, fp32: 67 };
  if (n.includes('A100')) return { bf16: 312, fp32: 19.5 };
  if (n.includes('L40S')) return { bf16: 362, fp32: 91.6 };
  if (n.includes('L20')) return { bf16: 119.5, fp32: 59.8 };
  if (n.includes('B200')) return { bf16: 2250, fp32: 80 };
  return null;
}

function gitCommit(): string | undefined {
  const r = spawnSync('git', ['rev-parse', '--short', 'HEAD'], { encoding: 'utf8', timeout: 5000 });
  return r.status === 0 ? r.stdout.trim() : undefined;
}

export function machineDescription(devs: NativeDevices): string {
  const cpu = cpus()[0]?.model?.trim() ?? 'unknown CPU';
  const gpus = devs.cuda.length ? `${devs.cuda.length}x ${devs.cuda[0]!.name} (${(devs.cuda[0]!.totalBytes / 2 ** 30).toFixed(1)} GiB)` : 'no GPU';
  return `${hostname()}: ${gpus}; ${cpu}, ${cpus().length} logical cores, ${(totalmem() / 2 ** 30).toFixed(1)} GiB`;
}

/** A starting profile for figures that are not measured (each says it is an estimate). */
function skeleton(o: CalibrateOptions, devs: NativeDevices, gpuMode: boolean): HardwareProfile {
  const date = today();
  const G = gpuMode ? devs.cuda.length : Math.max(1, o.cpuRanks ?? 2);
  const peak = gpuMode ? datasheetPeak(devs.cuda[0]!.name) ?? { bf16: 300, fp32: 30 } : { bf16: 0.1, fp32: 0.1 };
  const link = gpuMode ? 25 : 5;
  const range = Array.from({ length: G }, (_, i) => i);
  return {
    version: 1, id: o.id, description: '',
    provenance: { source: 'estimate', date, how: 'mmoc calibrate starting figures' },
    gpus: gpuMode
      ? { name: devs.cuda[0]!.name, kind: 'gpu', count: G, memory_bytes: devs.cuda[0]!.totalBytes }
      : { name: 'CPU rank', kind: 'cpu', count: G, memory_bytes: Math.floor(totalmem() / (G + 1)) },
    links: {
      h2d: range.map((gpu) => ({ gpu, GBps: link, latency_us: 10 })),
      d2h: range.map((gpu) => ({ gpu, GBps: link, latency_us: 10 })),
      host_groups: range.map((g) => ({ name: `host${g}`, gpus: [g], h2d_GBps: link, d2h_GBps: link })),
      peer: G > 1 ? [{ gpus: range, GBps: gpuMode ? 100 : 2, latency_us: gpuMode ? 10 : 50, ...(gpuMode ? {} : { via_host: false }) }] : [],
    },
    compute: {
      peak_tflops: gpuMode ? { bf16: peak.bf16, fp32: peak.fp32 } : { fp32: peak.fp32 },
      gemm_efficiency: gpuMode ? { bf16: 0.7, fp32: 0.7 } : { fp32: 0.5 },
      memory_GBps: gpuMode ? 2000 : 8,
    },
    cpu: {
      name: cpus()[0]?.model?.trim(), cores: cpus().length, threads: cpus().length, memory_bytes: totalmem(), memory_GBps: 10,
      optimizers: [{ name: 'adamw', dtype: 'fp32', points: [{ threads: 1, params_per_s: 1e8 }] }],
    },
    disks: [],
    overheads: {
      kernel_launch_us: gpuMode ? 5 : 1, per_instruction_us: 30, cuda_context_bytes: gpuMode ? 600 * 2 ** 20 : 0,
      allocator_overhead_fraction: 0.02, comm_buffer_bytes: gpuMode ? 256 * 2 ** 20 : 16 * 2 ** 20,
    },
    compute_slowdown_under_copies: gpuMode ? 0.05 : 0,
  };
}

interface Job {
  part: CalibPart;
  label: string;
  task?: Partial<CalibTask> & { kind: CalibTask['kind'] };
  /** Custom work instead of a native task. */
  run?: () => Promise<unknown>;
  apply?: (r: CalibResult) => void;
}

type GemmShape = { m: number; n: number; k: number };
type AttnShape = { batch: number; heads: number; kv_heads: number; seq: number; head_dim: number };
const gemmKey = (s: GemmShape) => `${s.m}x${s.n}x${s.k}`;
const attnKey = (x: AttnShape) => `${x.batch}x${x.heads}x${x.kv_heads}x${x.seq}x${x.head_dim}`;
/** The GEMMs of `model`'s layers (attention's own products excluded: timed as attention). */
function gemmShapesOf(model: ModelConfig, precision: Precision, mbs: number, seq: number): GemmShape[] {
  return getInventory(model, precision, mbs, seq).layers.flatMap((l) => l.gemms.filter((g) => !g.name.startsWith('attn.')).map((g) => ({ m: g.m, n: g.n, k: g.k })));
}
function attnShapeOf(model: ModelConfig, batch: number, seq: number): AttnShape {
  return { batch, heads: model.num_attention_heads, kv_heads: model.num_key_value_heads, seq, head_dim: model.head_dim };
}
/** An executor trace slice that is an instruction's own time at step `from` or later (not the
 *  asynchronous work of copy streams and the host worker, on tracks 3 and up). */
function isOwnSlice(e: TraceEvent, from: number): e is TraceEvent & { args: { pc: number; step: number } & Record<string, unknown> } {
  return e.ph === 'X' && !!e.args && typeof e.args.pc === 'number' && typeof e.args.step === 'number' && e.args.step >= from && !(typeof e.tid === 'number' && e.tid >= 3);
}

/** Each instruction's simulated duration (us) in `plan` on `prof`: (rank, pc) -> us, NaN where the
 *  lowering made no task of it. */
function simInstrUs(plan: Plan, prof: HardwareProfile): (rank: number, pc: number) => number {
  const r = simulatePlan(plan, prof, { criticalPath: false, hostMemory: false });
  return (rank, pc) => {
    const t = r.lowered.taskOf[rank]?.[pc] ?? -1;
    return t < 0 ? NaN : r.result.end_us[t]! - r.result.start_us[t]!;
  };
}

/** From a one-rank probe run (its plan; each instruction's median measured duration, us, by pc): the
 *  share of the early GPU update's time (planner/early-update.ts) that the step still pays. The
 *  executor issues each early layer's AdamW on a side stream beside the stage's last backward, so
 *  that backward runs longer than the others by what the updates cost it: that growth over the
 *  updates' time in the model without overlap (`us`: the probe's simulated instruction durations, us,
 *  by pc, on a profile without update_overlap), within [0, 1]. NaN when the probe has no early layers or no other backward to compare. */
export function updateShownFromProbe(plan: Plan, us: (pc: number) => number, medUs: Map<number, number>): number {
  const prog = plan.program.ranks[0]!;
  const early = earlyUpdateLayers(prog, 0, plan.layout.stages, plan.model.num_hidden_layers);
  if (!early.size) return NaN;
  const bwd = prog.flatMap((x, pc) => (x.op === 'backward' && medUs.has(pc) ? [pc] : []));
  if (bwd.length < 2) return NaN;
  const last = bwd[bwd.length - 1]!, others = bwd.slice(0, -1).map((pc) => medUs.get(pc)!).sort((a, b) => a - b);
  const growth = medUs.get(last)! - others[Math.floor(others.length / 2)]!;
  let upd = 0;
  prog.forEach((x, pc) => { if (x.op === 'optimizer_step' && early.has(x.layer)) upd += us(pc); });  // (an early step has no interpreter cost)
  if (!(upd > 0)) return NaN;
  return Math.min(1, Math.max(0, growth / upd));
}

/** The host AdamW as the executor ran it, from the trace of a run of probePlan's `hostUpdate` variant (steps from
 *  `fromStep` on): each decoder layer's CPU update (parameters over its slice's duration) while every
 *  other rank also updates, without host copies running (`alone`) and with copies over half of it
 *  (`under`): medians per rank (params/s), and how many slices each. The all-ranks rate is `ranks`
 *  times `alone`. calibrate's own benchmark and DRAM-sharing job (their buffers, their copies) read
 *  6.75 G params/s and no slowdown on a host where the plans' updates ran 5.74 and 1.31x slower under
 *  their copies (sixteenth matrix run). */
export function hostUpdateFromTrace(plan: Plan, events: readonly TraceEvent[], fromStep: number): { alone: number; under: number; nAlone: number; nUnder: number } {
  const L = plan.model.num_hidden_layers;
  const inv = getInventory(plan.model, plan.precision, plan.job.microBatchSize, plan.job.seq);
  const x = events.filter((e) => e.ph === 'X' && e.args && (e.args.step as number) >= fromStep);
  const upd = x.filter((e) => e.name === 'optimizer_step' && (e.dur ?? 0) > 0).flatMap((e) => {
    const ins = plan.program.ranks[e.args!.rank as number]?.[e.args!.pc as number];
    if (!ins || ins.op !== 'optimizer_step' || ins.tier !== 'cpu' || ins.layer < 1 || ins.layer > L) return [];
    return [{ rank: e.args!.rank as number, a: e.ts ?? 0, b: (e.ts ?? 0) + e.dur!, params: inv.layers[ins.layer]!.params * (ins.fraction ?? 1) }];
  });
  const copies = x.filter((e) => /^(offload_grads|upload_params|fetch_params)$/.test(e.name)).map((e) => ({ a: e.ts ?? 0, b: (e.ts ?? 0) + (e.dur ?? 0) }));
  const over = (u: { a: number; b: number }, set: { a: number; b: number }[]) => Math.min(1, set.reduce((s, c) => s + Math.max(0, Math.min(u.b, c.b) - Math.max(u.a, c.a)), 0) / (u.b - u.a));
  const R = plan.layout.pipelineRanks;
  const alone: number[] = [], under: number[] = [];
  for (const u of upd) {
    const others = [...Array(R).keys()].filter((r) => r !== u.rank);
    if (!others.every((r) => over(u, upd.filter((v) => v.rank === r)) > 0.9)) continue;
    const cp = over(u, copies), rate = u.params / ((u.b - u.a) / 1e6);
    if (cp < 0.05) alone.push(rate);
    else if (cp > 0.5) under.push(rate);
  }
  return { alone: upperMedian(alone), under: upperMedian(under), nAlone: alone.length, nUnder: under.length };
}

/** The profile's figures from the executor host-update runs (one a model): the all-ranks rate (params/s)
 *  and the update's slowdown under copies (from the runs with at least 2 slices under copies; null
 *  when none): medians over the models (two models: their mean. The upper middle, which the fits of
 *  many instructions take, would be the faster of two: the seventeenth matrix run's probes read
 *  LLaMA-3.2-1B at 6.95 G params/s and LLaMA-2-7B at 6.06, its 1B plans updated at 6.08 and its 7B
 *  plan at 6.81). */
export function hostExecFigures(runs: readonly { alone: number; under: number; nUnder: number }[], ranks: number): { total: number; slowdown: number | null } {
  const both = runs.filter((x) => x.nUnder >= 2 && Number.isFinite(x.under) && x.under > 0);
  return {
    total: Math.round(ranks * median(runs.map((x) => x.alone))),
    slowdown: both.length ? +Math.max(0, median(both.map((x) => x.alone / x.under - 1))).toFixed(4) : null,
  };
}

function uniq<T>(xs: T[], key: (x: T) => string): T[] {
  const seen = new Set<string>();
  return xs.filter((x) => (seen.has(key(x)) ? false : (seen.add(key(x)), true)));
}

/** The upper middle of `xs` (NaN when empty): the element the fits of measured instructions take. */
const upperMedian = (xs: number[]) => (xs.length ? [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]! : NaN);

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length === 0 ? 0 : s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

/** Bytes of the host's last-level caches (each distinct cache once, from /sys); 0 where unknown. */
export function llcBytes(root = '/sys/devices/system/cpu'): number {
  const seen = new Set<string>();
  let total = 0;
  let cpusDirs: string[] = [];
  try { cpusDirs = readdirSync(root).filter((d) => /^cpu\d+$/.test(d)); } catch { return 0; }
  for (const c of cpusDirs) {
    let best: { level: number; bytes: number; key: string } | null = null;
    let idx: string[] = [];
    try { idx = readdirSync(`${root}/${c}/cache`).filter((d) => d.startsWith('index')); } catch { continue; }
    for (const i of idx) {
      try {
        const dir = `${root}/${c}/cache/${i}`;
        const level = Number(readFileSync(`${dir}/level`, 'utf8').trim());
        const type = readFileSync(`${dir}/type`, 'utf8').trim();
        if (type === 'Instruction') continue;
        const m = /^(\d+)([KMG]?)/.exec(readFileSync(`${dir}/size`, 'utf8').trim());
        if (!m) continue;
        const bytes = Number(m[1]) * ({ '': 1, K: 1024, M: 2 ** 20, G: 2 ** 30 } as Record<string, number>)[m[2]!]!;
        const key = `${level}:${readFileSync(`${dir}/shared_cpu_list`, 'utf8').trim()}`;
        if (!best || level > best.level) best = { level, bytes, key };
      } catch { /* a cache entry without these files: skipped */ }
    }
    if (best && !seen.has(best.key)) { seen.add(best.key); total += best.bytes; }
  }
  return total;
}

/** Timed steps of the all-ranks host AdamW point (each ~60 ms on the 2x H200 host): 7 steps (0.4 s)
 *  read 5.0-5.7 G params/s where the matrix plans' host updates ran at 5.2-6.9 for seconds on end;
 *  the median of more steps moves less with a slow start or a short stall. */
export const ADAMW_ALL_RANKS_REPS = 25;

/** Timed update steps of calibrate's DRAM-sharing job, alone and inside the host copies (each step
 *  ~55 ms on the 2x H200 host). */
export const DRAM_SHARING_REPS = 12;

/** Parameters of the CPU AdamW benchmark: its working set (fp32 master, m, v; bf16 gradient and
 *  weight: 16 bytes a parameter) must be far beyond the last-level cache, or the rate is the
 *  cache's, not DRAM's (16M params on a large-LLC Xeon: 16.6 G params/s, 465 GB/s; 134M: 5.1).
 *  GPU profiles: >= 64M params quick, 128M full, and at least 8x the LLC; CPU-rank profiles keep
 *  a small size (their ranks' own optimizer steps are timed on the rank, not from this curve). */
export function cpuAdamParams(gpuMode: boolean, quick: boolean, llc: number): number {
  if (!gpuMode) return quick ? 2e6 : 8e6;
  const base = quick ? 64 * 2 ** 20 : 128 * 2 ** 20;
  return Math.max(base, Math.ceil((8 * llc) / 16 / 2 ** 20) * 2 ** 20);
}

/** Thread counts of the CPU AdamW curve: the executor's (each rank's worker: cores / ranks, less
 *  one on GPU ranks, planner/host-threads.ts) and all cores (the host's DRAM-bound total when every
 *  rank updates at once: the cost model's cap), 1, and in full mode powers of two between. */
export function cpuAdamThreads(cores: number, ranks: number, quick: boolean, gpu = false): number[] {
  const perRank = hostThreadsPerRank(cores, ranks, gpu);
  const xs = quick ? [1, perRank, cores] : [1, 2, 4, 8, 16, 32, 64, 128].filter((t) => t < cores).concat([perRank, cores]);
  return uniq(xs, String).sort((a, b) => a - b);
}

/** The executor runs calibrate measures (the per-instruction fit, the memory outside the allocator):
 *  the tiny model, or on GPUs `shape`: two decoder layers of the job's model at its sequence length
 *  and micro-batch size, so that the runs load the kernels and library workspaces of the real shapes
 *  (a tiny-model run holds 0.5 GiB less outside the allocator than the real runs on an H200, and its
 *  instructions are all host time). */
export interface ProbeShape { model: ModelConfig; seq: number; mbs: number }
export function probeShapeOf(model: ModelConfig, seq: number, mbs: number, layers = 2): ProbeShape {
  return { model: { ...model, name: `${model.name}-${layers}-layers`, num_hidden_layers: layers }, seq: Math.min(seq, model.max_position_embeddings), mbs };
}

/** Forward device time (us) the sustained-load probe's decoder layers should reach. */
export const SUSTAINED_PROBE_FWD_US = 4000;
/** Decoder layers of the sustained-load probe of `model` at `mbs` x `seq`: enough for about
 *  SUSTAINED_PROBE_FWD_US of forward time on `profile` (2 to 12), and no more than half of
 *  `deviceBytes` holds (16 bytes a parameter, every micro-batch's kept activations).
 *  Its instructions also run the embedding and the head, whose costs the model under-counts by a
 *  few hundred us an instruction (the embedding's dense gradient: bench/gpu/part-probe.py); the fit
 *  gives that excess to the layers' tables. With two LLaMA-3.2-1B layers at one sequence (1.4 ms of
 *  matrix products a forward) it raised the factor to x1.29-1.32 where the plans' own 16-layer
 *  instructions ran x1.10-1.21 (bench/gpu/matrix-2026-11-22h-h200x2/README.md); with more layers the
 *  same excess moves the factor less. */
export function sustainedProbeLayers(model: ModelConfig, seq: number, mbs: number, microBatches: number, profile: HardwareProfile, deviceBytes: number): number {
  const inv = getInventory(model, 'bf16-mixed', mbs, Math.min(seq, model.max_position_embeddings));
  const layer = inv.layers[1]!;
  const fwd = layerTimes(inv, profile).fwd[1]!;
  const want = Math.ceil(SUSTAINED_PROBE_FWD_US / Math.max(1, fwd));
  const perLayer = 16 * layer.params + microBatches * layer.keptBytes;
  const fits = deviceBytes > 0 ? Math.floor((0.5 * deviceBytes) / perLayer) : 12;
  return Math.max(2, Math.min(12, want, fits));
}
/** The executor run calibrate times: `ranks` ranks (GPipe on one, else 1F1B, interleaved with two
 *  virtual stages a rank where asked) of `shape` (the tiny model by default). `hostUpdate`: AdamW on
 *  the host, delayed (as the matrix's host plans), where calibrate times the host update as it runs. */
export function probePlan(gpuMode: boolean, hardware: string, steps: number, ranks = 1, mbs = 2, variant: { tied?: boolean; interleaved?: boolean; hostUpdate?: boolean } = {}, shape?: ProbeShape, microBatches = 4): Plan {
  const precision: Precision = gpuMode ? 'bf16-mixed' : 'fp32';
  const v = variant.interleaved && ranks > 1 ? 2 : 1;
  const base = shape?.model ?? tiny;
  const stageLayers = evenPartition(base.num_hidden_layers, ranks * v);
  return buildPlan({
    hardware, model: variant.tied ? { ...base, tie_word_embeddings: true } : base, precision, optimizer: { ...defaultOptimizer(), delayedUpdate: !!variant.hostUpdate },
    job: { seq: shape?.seq ?? 32, microBatchSize: shape?.mbs ?? mbs, microBatches, steps, gpuMemCapBytes: null, seed: 7 },
    schedule: ranks > 1 ? (v > 1 ? 'interleaved-1f1b' : '1f1b') : 'gpipe', stageLayers, pipelineRanks: ranks, dataParallel: 1,
    rankDevice: Array.from({ length: ranks }, (_, i) => (gpuMode ? i : -1)),
    policy: stageLayers.map(() => (variant.hostUpdate ? { ...defaultPolicy(false), master: { gpu: 0, cpu: 1, disk: 0 }, optState: { gpu: 0, cpu: 1, disk: 0 } } : defaultPolicy(false))),
  });
}

/** The per-instruction overhead (us) fitted robustly to measured instruction durations `y` against
 *  the model's `b + a L + c z` (b: no overheads; a, c: the kernel-launch and per-instruction
 *  coefficients; L: the measured launch cost): each instruction's own estimate (y - b - a L) / c,
 *  outliers beyond 5 scaled MADs of their median dropped, then least squares on the rest, >= 0.
 *  A few instructions that waited on something the model does not know (a lazily created NCCL
 *  communicator, a first cuBLAS call on a new thread, a peer's late arrival) must not raise the
 *  cost of every instruction: a plain least-squares fit to 22 instructions of the 2-rank probe
 *  gave 540 us on an H200 machine where the previous calibration had 0. */
export function fitPerInstruction(y: number[], b: number[], a: number[], c: number[], L: number): { z: number; used: number; outliers: number[] } {
  const idx = y.map((_, i) => i).filter((i) => c[i]! > 0 && Number.isFinite(y[i]!) && Number.isFinite(b[i]!));
  if (idx.length === 0) return { z: 0, used: 0, outliers: [] };
  const r = (i: number) => y[i]! - b[i]! - a[i]! * L;
  const est = idx.map((i) => r(i) / c[i]!);
  const med = median(est);
  const mad = median(est.map((e) => Math.abs(e - med))) * 1.4826;
  const tol = Math.max(5 * mad, 0.05 * Math.abs(med), 1);
  const keep = idx.filter((_, k) => Math.abs(est[k]! - med) <= tol);
  const outliers = idx.filter((_, k) => Math.abs(est[k]! - med) > tol);
  const cc = keep.reduce((t, i) => t + c[i]! * c[i]!, 0);
  const z = cc > 0 ? keep.reduce((t, i) => t + r(i) * c[i]!, 0) / cc : med;
  return { z: Math.max(0, z), used: keep.length, outliers };
}

/** The first step the overhead fit reads of a probe run of `steps` steps (warm-up excluded). */
export function steadyStep(steps: number): number {
  return steps >= 4 ? 2 : 1;
}

/** Non-negative least squares in two unknowns: min |y - b - a x - c z|^2 over x, z >= 0. */
export function fitTwo(y: number[], b: number[], a: number[], c: number[]): { x: number; z: number } {
  const r = y.map((v, i) => v - b[i]!);
  const dot = (u: number[], v: number[]) => u.reduce((s, ui, i) => s + ui * v[i]!, 0);
  const aa = dot(a, a), cc = dot(c, c), ac = dot(a, c), ar = dot(a, r), cr = dot(c, r);
  const det = aa * cc - ac * ac;
  const cands: { x: number; z: number }[] = [{ x: 0, z: 0 }];
  if (aa > 0) cands.push({ x: Math.max(0, ar / aa), z: 0 });
  if (cc > 0) cands.push({ x: 0, z: Math.max(0, cr / cc) });
  if (Math.abs(det) > 1e-12 * aa * cc) {
    const x = (ar * cc - cr * ac) / det, z = (cr * aa - ar * ac) / det;
    if (x >= 0 && z >= 0) cands.push({ x, z });
  }
  const cost = (p: { x: number; z: number }) => r.reduce((s, ri, i) => s + (ri - a[i]! * p.x - c[i]! * p.z) ** 2, 0);
  return cands.reduce((best, p) => (cost(p) < cost(best) ? p : best));
}

/** The host cost of a kernel `x` (us) and of an instruction `z` (us), fitted to instruction times `y`
 *  of a host-bound probe (the tiny model on GPUs: its kernels take less device time than their
 *  dispatch) against the model y = max(b, n x) + c z (b: device time, n: kernels; the lowering's
 *  max: a GPU runs its queue while the host dispatches the next kernels), from x = L (the dispatch
 *  of a bare op) by fixed-point refits of the linear branch each instruction is on, outliers beyond
 *  5 scaled MADs dropped. `ok` false where no fit within [L, 20 L] explains the probe (the caller
 *  keeps L and fits z alone). */
export function fitHostCosts(y: number[], b: number[], n: number[], c: number[], L: number): { x: number; z: number; ok: boolean; outliers: number[] } {
  let idx = y.map((_, i) => i).filter((i) => Number.isFinite(y[i]!) && Number.isFinite(b[i]!) && n[i]! >= 0 && c[i]! >= 0);
  let x = L, z = 0;
  const outliers: number[] = [];
  for (let round = 0; round < 2; round++) {
    for (let it = 0; it < 8; it++) {
      const hostBound = (i: number) => n[i]! * x > b[i]!;
      const f = fitTwo(idx.map((i) => y[i]!), idx.map((i) => (hostBound(i) ? 0 : b[i]!)), idx.map((i) => (hostBound(i) ? n[i]! : 0)), idx.map((i) => c[i]!));
      if (Math.abs(f.x - x) < 1e-3 && Math.abs(f.z - z) < 1e-3) { x = f.x; z = f.z; break; }
      x = f.x; z = f.z;
    }
    if (round === 1) break;
    const res = idx.map((i) => y[i]! - Math.max(b[i]!, n[i]! * x) - c[i]! * z);
    const med = median(res);
    const mad = median(res.map((r) => Math.abs(r - med))) * 1.4826;
    const tol = Math.max(5 * mad, 1);
    const keep = idx.filter((_, k) => Math.abs(res[k]! - med) <= tol);
    outliers.push(...idx.filter((_, k) => Math.abs(res[k]! - med) > tol));
    idx = keep;
  }
  const ok = idx.length >= 3 && x >= L && x <= 20 * L;
  return { x, z, ok, outliers };
}

/** Non-negative least squares in three unknowns: min |y - s b - x a - z c|^2 over s, x, z >= 0
 *  (every subset of free variables, normal equations, the best feasible one). */
export function fitThree(y: number[], b: number[], a: number[], c: number[]): { s: number; x: number; z: number } {
  const cols = [b, a, c];
  const dot = (u: number[], v: number[]) => u.reduce((t, ui, i) => t + ui * v[i]!, 0);
  let best = { s: 0, x: 0, z: 0 }, bestCost = dot(y, y);
  for (let mask = 1; mask < 8; mask++) {
    const idx = [0, 1, 2].filter((i) => mask & (1 << i));
    const A = idx.map((i) => idx.map((j) => dot(cols[i]!, cols[j]!)));
    const r = idx.map((i) => dot(cols[i]!, y));
    const sol = solve(A, r);
    if (!sol || sol.some((v) => !(v >= 0))) continue;
    const coef = [0, 0, 0];
    idx.forEach((i, k) => { coef[i] = sol[k]!; });
    const cost = y.reduce((t, yi, i) => t + (yi - coef[0]! * b[i]! - coef[1]! * a[i]! - coef[2]! * c[i]!) ** 2, 0);
    if (cost < bestCost) { bestCost = cost; best = { s: coef[0]!, x: coef[1]!, z: coef[2]! }; }
  }
  return best;
}

function solve(A: number[][], r: number[]): number[] | null {
  const n = r.length;
  const M = A.map((row, i) => [...row, r[i]!]);
  for (let i = 0; i < n; i++) {
    let piv = i;
    for (let k = i + 1; k < n; k++) if (Math.abs(M[k]![i]!) > Math.abs(M[piv]![i]!)) piv = k;
    if (Math.abs(M[piv]![i]!) < 1e-12 * Math.max(1, Math.abs(M[i]![i]!))) return null;
    [M[i], M[piv]] = [M[piv]!, M[i]!];
    for (let k = 0; k < n; k++) {
      if (k === i) continue;
      const f = M[k]![i]! / M[i]![i]!;
      for (let j = i; j <= n; j++) M[k]![j]! -= f * M[i]![j]!;
    }
  }
  return M.map((row, i) => row[n]! / row[i]!);
}

/** The profile with every compute time multiplied by `s` (tables, peak, memory bandwidth). */
export function scaleCompute(p: HardwareProfile, s: number, dtype: Dtype): HardwareProfile {
  if (s === 1) return p;
  const c = JSON.parse(JSON.stringify(p.compute)) as HardwareProfile['compute'];
  for (const pts of Object.values(c.gemm ?? {})) for (const g of pts ?? []) { if (g.us !== undefined) g.us = +(g.us * s).toFixed(3); if (g.tflops !== undefined) g.tflops /= s; }
  for (const pts of Object.values(c.attention ?? {})) for (const x of pts ?? []) { if (x.fwd_us !== undefined) x.fwd_us = +(x.fwd_us * s).toFixed(3); if (x.bwd_us !== undefined) x.bwd_us = +(x.bwd_us * s).toFixed(3); }
  for (const k of Object.keys(c.peak_tflops) as Dtype[]) c.peak_tflops[k] = +(c.peak_tflops[k]! / s).toPrecision(4);
  c.memory_GBps = +(c.memory_GBps / s).toPrecision(4);
  void dtype;
  return { ...p, compute: c };
}

/** The GEMM and attention table entries of `model`'s layers (at `seqs` x `mbss`), as keys. */
export function modelShapeKeys(model: ModelConfig, precision: Precision, seqs: number[], mbss: number[]): { gemm: Set<string>; attention: Set<string> } {
  const gemm = new Set<string>(), attention = new Set<string>();
  for (const seq of seqs) for (const mbs of mbss) {
    for (const g of gemmShapesOf(model, precision, mbs, seq)) gemm.add(gemmKey(g));
    attention.add(attnKey(attnShapeOf(model, mbs, seq)));
  }
  return { gemm, attention };
}

/** The GEMM table keys of `model`'s layers by pass: those only the forward uses, those only the
 *  backward uses (its data- and weight-gradient products), and those both use (a square product's
 *  forward and data gradient share a shape). Attention entries hold both passes' times apart. */
export function modelShapeKeysByPass(model: ModelConfig, precision: Precision, seqs: number[], mbss: number[]): { fwd: Set<string>; bwd: Set<string>; both: Set<string>; attention: Set<string> } {
  const f = new Set<string>(), b = new Set<string>(), attention = new Set<string>();
  for (const seq of seqs) for (const mbs of mbss) {
    for (const l of getInventory(model, precision, mbs, seq).layers) for (const g of l.gemms) {
      if (g.name.startsWith('attn.')) continue;
      (g.pass === 'fwd' ? f : b).add(gemmKey(g));
    }
    attention.add(attnKey(attnShapeOf(model, mbs, seq)));
  }
  const both = new Set([...f].filter((k) => b.has(k)));
  return { fwd: new Set([...f].filter((k) => !both.has(k))), bwd: new Set([...b].filter((k) => !both.has(k))), both, attention };
}

/** `p` with the model's table entries scaled by pass: forward-only GEMMs and attention forward times
 *  by `f`, backward-only GEMMs and attention backward times by `b`, shared GEMMs by `both`. */
export function scaleShapesByPass(p: HardwareProfile, keys: ReturnType<typeof modelShapeKeysByPass>, f: number, b: number, both: number, dtype: Dtype): HardwareProfile {
  const c = JSON.parse(JSON.stringify(p.compute)) as HardwareProfile['compute'];
  for (const g of c.gemm?.[dtype] ?? []) {
    const k = gemmKey(g);
    const s = keys.fwd.has(k) ? f : keys.bwd.has(k) ? b : keys.both.has(k) ? both : 1;
    if (s === 1) continue;
    if (g.us !== undefined) g.us = +(g.us * s).toFixed(3);
    if (g.tflops !== undefined) g.tflops = +(g.tflops / s).toPrecision(5);
  }
  for (const x of c.attention?.[dtype] ?? []) {
    if (!keys.attention.has(attnKey(x))) continue;
    if (x.fwd_us !== undefined) x.fwd_us = +(x.fwd_us * f).toFixed(3);
    if (x.bwd_us !== undefined) x.bwd_us = +(x.bwd_us * b).toFixed(3);
  }
  return { ...p, compute: c };
}

/** `p` with the times of the table entries in `keys` (GEMMs and attention, dtype `dtype`) times `s`. */
export function scaleShapes(p: HardwareProfile, keys: { gemm: Set<string>; attention: Set<string> }, s: number, dtype: Dtype): HardwareProfile {
  return scaleShapesByPass(p, { fwd: new Set(), bwd: new Set(), both: keys.gemm, attention: keys.attention }, s, s, s, dtype);
}

/** The largest sustained-load factor a fit returns. 1.5 until the GEMM entries were timed behind
 *  device work ahead (5f5e900): since then a pass whose launches fall behind the GPU reads its host
 *  time against device-only tables (LLaMA-3.2-1B at one sequence, 2x H200: forward x1.5 clamped in
 *  the probe, x1.31-1.61 in the plans of the same run). */
export const SUSTAINED_MAX = 2.0;

/** The sustained-load factor of a model's compute: `meas` instruction durations (us) of an executor
 *  run against the model's `d0` (tables as they are) and `d2` (the model's GEMM and attention
 *  entries doubled): each instruction's s solves d0 + (s - 1)(d2 - d0) = meas; the median, within
 *  [0.8, SUSTAINED_MAX]. NaN without usable instructions. */
export function fitSustained(meas: number[], d0: number[], d2: number[]): number {
  const s = meas.map((m, i) => 1 + (m - d0[i]!) / (d2[i]! - d0[i]!)).filter((x) => Number.isFinite(x) && x > 0).sort((a, b) => a - b);
  if (!s.length) return NaN;
  return Math.min(SUSTAINED_MAX, Math.max(0.8, s[Math.floor(s.length / 2)]!));
}

/** Forward and backward factors this far apart (absolute) mean one pass of the probe ran host-bound
 *  (its launches behind the GPU): named in the profile's provenance. LLaMA-3.2-1B's sized probes at
 *  one sequence read passes 0.06-0.11 apart in normal runs (its forwards carry more host work a
 *  FLOP) and +0.3 or more when its forwards ran host-bound (forward x1.44 against backward x1.12). */
export const SUSTAINED_PASS_SPLIT = 0.2;
/** The sustained-load factors from a probe's `forward` and `backward` instructions (each as
 *  fitSustained takes them): each pass's own fit, and `s` the fit over both (for table entries both
 *  passes use). A pass `SUSTAINED_PASS_SPLIT` above the other is named `hostBound` but kept: until
 *  the fifteenth matrix run such a pass was set aside for the other's factor (a launching thread
 *  behind the GPU was taken for a spell of the probe alone), but with the GEMM entries timed behind
 *  device work ahead (device time only) the probe's host-bound forward is what the plans' forwards
 *  run at too (fifteenth run: the probe's forward x1.5 at the clamp, the 1B one-sequence plans'
 *  forwards x1.31-1.61, under-predicted by 9-23% with the backward's x1.12 in its place). The GPU's
 *  clock slows both passes alike (LLaMA-2-7B's fits within 0.07 in every probe of the matrix runs). */
export function fitSustainedPasses(forward: { meas: number[]; d0: number[]; d2: number[] }, backward: { meas: number[]; d0: number[]; d2: number[] }): { s: number; forward: number; backward: number; hostBound: 'forward' | 'backward' | null } {
  const f = fitSustained(forward.meas, forward.d0, forward.d2), b = fitSustained(backward.meas, backward.d0, backward.d2);
  const both = fitSustained([...forward.meas, ...backward.meas], [...forward.d0, ...backward.d0], [...forward.d2, ...backward.d2]);
  const hostBound = !Number.isFinite(f) || !Number.isFinite(b) || Math.abs(f - b) <= SUSTAINED_PASS_SPLIT ? null : f > b ? 'forward' : 'backward';
  return { s: both, forward: f, backward: b, hostBound };
}

/** ' (the forward x1.600 ran host-bound)' where one pass read SUSTAINED_PASS_SPLIT above the other, else ''. */
function hostBoundNote(x: { hostBound: 'forward' | 'backward' | null; forward: number; backward: number }): string {
  if (!x.hostBound) return '';
  return ` (the ${x.hostBound} ran host-bound: its launches behind the GPU)`;
}

/** Runs of the smallest micro-batch size's probe. Its passes are the nearest to host-bound (LLaMA-3.2-1B
 *  at one sequence: about 24 kernels a layer at 15-20 us of dispatch each against 25-30 us of device
 *  time), so a slow spell of the probe's launching thread reads as a slow device: the twenty-first
 *  matrix run's probe read its forward x1.42 and backward x1.47 (step by step 5.9 ms, then 6.7-7.3 ms
 *  a forward, the GPU's utilization down to 75-83%), the twentieth's x1.05 / x1.15, and both runs'
 *  plans at one sequence ran their forwards at the faster figure (7.35-7.49 ms; one of four at 10.3).
 *  Two runs; the faster is kept. */
export const PROBE_RUNS_SMALLEST = 2;

/** The index of the run whose factors are lowest (the mean of its forward and backward fits, else
 *  its both-pass fit); runs without a finite fit are passed over (index 0 when none has one). */
export function fasterProbeRun(fits: { forward: number; backward: number; s: number }[]): number {
  const score = (f: { forward: number; backward: number; s: number }) => (Number.isFinite(f.forward) && Number.isFinite(f.backward) ? (f.forward + f.backward) / 2 : f.s);
  let best = 0;
  fits.forEach((f, i) => {
    const a = score(f), b = score(fits[best]!);
    if (Number.isFinite(a) && (!Number.isFinite(b) || a < b)) best = i;
  });
  return best;
}

/** A fit's factors by pass: the forward's own fit to the entries
 *  only forwards use, the backward's to those only backwards use (LLaMA-3.2-1B at one sequence: its
 *  forwards fit 0.05-0.1 below its backwards in five of six matrix runs' probes, and its recompute
 *  plans, whose forwards are half their instructions, were over-predicted by up to 11%). */
export interface PassFits { forward: number; backward: number; keys: ReturnType<typeof modelShapeKeysByPass> }

/** `p` with each fitted factor applied to its keys' table entries, once: an entry shared by two
 *  fits (two models' or two micro-batch sizes' shapes) takes the first one's factor. A fit with
 *  `passes` (both passes fitted) scales each pass's entries by its own factor. */
export function applySustained(p: HardwareProfile, fits: { s: number; keys: { gemm: Set<string>; attention: Set<string> }; passes?: PassFits | null }[], dtype: Dtype): HardwareProfile {
  const done = { gemm: new Set<string>(), attention: new Set<string>() };
  let q = p;
  for (const x of fits) {
    const own = { gemm: new Set([...x.keys.gemm].filter((k) => !done.gemm.has(k))), attention: new Set([...x.keys.attention].filter((k) => !done.attention.has(k))) };
    const ps = x.passes;
    if (ps && Number.isFinite(ps.forward) && Number.isFinite(ps.backward)) {
      const mine = (ks: Set<string>) => new Set([...ks].filter((k) => own.gemm.has(k)));
      q = scaleShapesByPass(q, { fwd: mine(ps.keys.fwd), bwd: mine(ps.keys.bwd), both: mine(ps.keys.both), attention: new Set([...ps.keys.attention].filter((k) => own.attention.has(k))) }, ps.forward, ps.backward, x.s, dtype);
    } else q = scaleShapes(q, own, x.s, dtype);
    for (const k of own.gemm) done.gemm.add(k);
    for (const k of own.attention) done.attention.add(k);
  }
  return q;
}

export async function calibrate(o: CalibrateOptions): Promise<CalibrateOutput> {
  const t0 = Date.now();
  let devs: NativeDevices, build: BuildInfo;
  devs = (o.deps?.devices ?? devices)();
  build = (o.deps?.buildInfo ?? buildInfo)();
  const gpuMode = o.target ? o.target === 'gpu' : devs.cudaAvailable && devs.cuda.length > 0;
  if (gpuMode && !(devs.cudaAvailable && devs.cuda.length > 0)) throw new InputError('--target gpu: this machine (or this build of the addon) has no CUDA GPU');
  const G = gpuMode ? devs.cuda.length : Math.max(1, o.cpuRanks ?? 2);
  const dev = gpuMode ? 'cuda:0' : 'cpu';
  const dtype: 'bf16' | 'fp32' = gpuMode ? 'bf16' : 'fp32';
  const rankThreads = gpuMode ? 0 : Math.max(1, o.rankThreads ?? Math.floor(cpus().length / G));
  const date = today();
  const machine = machineDescription(devs);
  const how = (what: string): Provenance => ({ source: 'measured', date, how: `mmoc calibrate: ${what}`, machine });

  const base = o.base && o.base.gpus.count === G && (o.base.gpus.kind === 'cpu') === !gpuMode ? o.base : undefined;
  const p: HardwareProfile = JSON.parse(JSON.stringify(base ?? skeleton(o, devs, gpuMode)));
  p.id = o.id;
  const figures: Record<string, Provenance> = { ...(p.figures ?? {}) };
  if (!base) {
    const est: Provenance = { source: 'estimate', date, how: 'mmoc calibrate starting figure (not measured in this run)' };
    for (const k of ['links', 'compute', 'cpu', 'disks', 'overheads', 'compute_slowdown_under_copies']) figures[k] = est;
  }
  const mark = (path: string, what: string) => { figures[path] = how(what); };
  const parts = o.parts;
  const quick = o.quick;
  const rep = { ...(quick ? { warmup: 1, iters: 3, maxSec: 0.15 } : { warmup: 2, iters: 9, maxSec: 0.8 }), threads: rankThreads };
  const jobs: Job[] = [];
  const skipped: string[] = [];
  // CPU quick: GEMMs and attention above this many flops are left to the roofline (time budget)
  const flopBudget = gpuMode ? Infinity : quick ? 3e9 : 6e10;

  // ---- compute: GEMMs at the model's shapes (and the overhead probe's), attention, kernels
  const shapes: GemmShape[] = [];
  const addShapes = (model: ModelConfig, mbs: number, seq: number) => shapes.push(...gemmShapesOf(model, gpuMode ? 'bf16-mixed' : 'fp32', mbs, seq));
  for (const model of o.models) for (const seq of o.seqs) for (const mbs of o.microBatchSizes) addShapes(model, mbs, seq);
  if (parts.has('overheads')) addShapes(tiny, 2, 32);
  const gemmPts: GemmPoint[] = [];
  let gemmAhead = 0;  // GEMM points timed behind device work ahead (device time, no host dispatch in them)
  if (parts.has('gemm')) {
    const us = uniq(shapes, gemmKey).sort((a, b) => a.m * a.n * a.k - b.m * b.n * b.k);
    let over = 0;
    for (const s of us) {
      if (2 * s.m * s.n * s.k > flopBudget) { over++; continue; }
      jobs.push({
        part: 'gemm', label: `gemm ${dtype} ${s.m}x${s.n}x${s.k}`, task: { kind: 'gemm', device: dev, dtype, dims: [s.m, s.n, s.k], ...rep },
        apply: (r) => { gemmPts.push({ m: s.m, n: s.n, k: s.k, us: +r.medianUs.toFixed(3) }); if (/behind \d+ us of GEMMs ahead/.test(r.note ?? '')) gemmAhead++; },
      });
    }
    if (over) skipped.push(`gemm: ${over} shapes above ${flopBudget.toExponential(0)} flops on the CPU${quick ? ' (--quick)' : ''}: the roofline with the measured efficiency covers them`);
  }
  const attnPts: AttentionPoint[] = [];
  if (parts.has('attention')) {
    const shapesA: AttnShape[] = [];
    const add = (m: ModelConfig, batch: number, seq: number) => shapesA.push(attnShapeOf(m, batch, seq));
    for (const model of o.models) for (const seq of o.seqs) for (const mbs of o.microBatchSizes) add(model, mbs, seq);
    if (parts.has('overheads')) add(tiny, 2, 32);
    for (const s of uniq(shapesA, attnKey)) {
      const flops = 4 * s.batch * s.heads * s.seq * s.seq * s.head_dim;
      if (flops * 3.5 > flopBudget * 2) { skipped.push(`attention ${s.batch}x${s.heads}x${s.seq}x${s.head_dim}: above the CPU time budget`); continue; }
      jobs.push({
        part: 'attention', label: `attention ${dtype} b${s.batch} h${s.heads}/${s.kv_heads} s${s.seq} d${s.head_dim}`,
        task: { kind: 'attention', device: dev, dtype, dims: [s.batch, s.heads, s.kv_heads, s.seq, s.head_dim], ...rep, ...(gpuMode ? { warmup: Math.max(3, rep.warmup), iters: Math.max(7, rep.iters), maxSec: Math.max(0.3, rep.maxSec) } : {}) },
        apply: (r) => attnPts.push({ ...s, causal: true, fwd_us: +r.value.toFixed(3), bwd_us: +r.value2.toFixed(3) }),
      });
    }
  }
  const kern: { bytes: number; us: number; name: string }[] = [];
  if (parts.has('kernels')) {
    const m = o.models[0]!, T = o.microBatchSizes[0]! * o.seqs[0]!;
    const cap = gpuMode ? Infinity : quick ? 4e6 : 3e7; // elements: CPU time budget
    const Tk = Math.max(1, Math.min(T, Math.floor(cap / Math.max(m.intermediate_size, m.vocab_size))));
    for (const [name, width] of [['rmsnorm', m.hidden_size], ['rotary', m.hidden_size], ['swiglu', m.intermediate_size], ['add', m.hidden_size], ['loss', m.vocab_size]] as const) {
      jobs.push({
        part: 'kernels', label: `kernel ${name} ${Tk}x${width}`, task: { kind: 'kernel', device: dev, dtype, name, dims: [Tk, width], ...rep },
        apply: (r) => kern.push({ bytes: r.value2, us: r.medianUs, name }),
      });
    }
  }

  // the executor's GPU AdamW (fused multi-tensor kernel) on a decoder layer's worth of parameters:
  // the optimizer_step rate, far above the unfused elementwise kernels' memory_GBps
  let gpuAdamw: { params_per_s: number; params: number; note: string } | null = null;
  if (parts.has('kernels') && gpuMode) {
    const m = o.models[0]!;
    const layer = 2 * m.hidden_size * m.hidden_size + 2 * m.hidden_size * (m.num_key_value_heads * (m.hidden_size / m.num_attention_heads)) + 3 * m.hidden_size * m.intermediate_size;
    const n = Math.max(1 << 20, Math.round(layer));
    jobs.push({
      part: 'kernels', label: `adamw ${(n / 1e6).toFixed(0)}M params on ${dev}`, task: { kind: 'adamw', device: dev, dims: [n], ...rep },
      apply: (r) => { if (r.value > 0) gpuAdamw = { params_per_s: r.value, params: n, note: r.note ?? '' }; },
    });
  }

  // ---- links: host <-> GPU alone, all at once, duplex; peer copies
  const linkBytes = quick ? 64 * 2 ** 20 : 256 * 2 ** 20;
  const alone = new Map<string, number>();
  const together = new Map<string, number>();
  if (parts.has('links') && gpuMode) {
    for (let g = 0; g < G; g++) {
      for (const dir of ['h2d', 'd2h', 'duplex'] as const) {
        jobs.push({ part: 'links', label: `${dir} pinned cuda:${g}`, task: { kind: 'copy', name: dir, gpus: [g], bytes: linkBytes, pinned: true, ...rep }, apply: (r) => alone.set(`${dir}:${g}`, r.value) });
      }
      jobs.push({ part: 'links', label: `h2d pageable cuda:${g}`, task: { kind: 'copy', name: 'h2d', gpus: [g], bytes: linkBytes / 2, pinned: false, ...rep, iters: 3 }, apply: (r) => alone.set(`pageable:${g}`, r.value) });
      jobs.push({ part: 'links', label: `h2d latency cuda:${g}`, task: { kind: 'copy', name: 'h2d', gpus: [g], bytes: 4096, pinned: true, ...rep }, apply: (r) => alone.set(`lat:${g}`, r.medianUs) });
    }
    if (G > 1) {
      const all = Array.from({ length: G }, (_, i) => i);
      for (const dir of ['h2d', 'd2h', 'duplex'] as const) {
        jobs.push({ part: 'links', label: `${dir} pinned on all ${G} GPUs at once`, task: { kind: 'copy', name: dir, gpus: all, bytes: linkBytes, pinned: true, ...rep }, apply: (r) => together.set(dir, r.value) });
      }
    }
  } else if (parts.has('links')) skipped.push('links: no GPU (a CPU-rank profile takes its host links from the memory part)');
  const peers: { a: number; b: number; GBps: number; lat: number }[] = [];
  if (parts.has('p2p') && gpuMode && G > 1) {
    for (let a = 0; a < G; a++) for (let b = a + 1; b < G; b++) {
      const entry = { a, b, GBps: 0, lat: 0 };
      peers.push(entry);
      jobs.push({ part: 'p2p', label: `peer cuda:${a} -> cuda:${b}`, task: { kind: 'p2p', gpus: [a, b], bytes: linkBytes, ...rep }, apply: (r) => { entry.GBps = r.value; } });
      jobs.push({ part: 'p2p', label: `peer latency cuda:${a} -> cuda:${b}`, task: { kind: 'p2p', gpus: [a, b], bytes: 4096, ...rep }, apply: (r) => { entry.lat = r.medianUs; } });
    }
  } else if (parts.has('p2p')) skipped.push(gpuMode ? 'p2p: one GPU' : 'p2p: no GPU (CPU ranks talk through Gloo; the peer link keeps its base figure)');

  // ---- CPU optimizer, host memory, disks
  const nCores = cpus().length;
  const adamPts: { threads: number; params_per_s: number }[] = [];
  const adamN = cpuAdamParams(gpuMode, quick, llcBytes());
  if (parts.has('cpu')) {
    const ths = cpuAdamThreads(nCores, G, quick, gpuMode);
    const n = adamN;
    const perRank = hostThreadsPerRank(nCores, G, gpuMode);
    for (const th of ths) {
      if (gpuMode && G > 1 && th === nCores) {
        // every rank's host worker at once, as the executor runs them (a thread group a rank, its
        // own buffers): 2 x 15 threads update faster than one 32-thread team on the GPU hosts
        const all = perRank * G;
        jobs.push({ part: 'cpu', label: `adamw ${(n / 1e6).toFixed(0)}M params x ${G} ranks at once, ${perRank} threads each`, task: { kind: 'adamw', dims: [n, G], ...rep, iters: Math.max(rep.iters, ADAMW_ALL_RANKS_REPS), threads: perRank }, apply: (r) => adamPts.push({ threads: all, params_per_s: Math.round(r.value) }) });
        continue;
      }
      jobs.push({ part: 'cpu', label: `adamw ${(n / 1e6).toFixed(0)}M params, ${th} threads`, task: { kind: 'adamw', dims: [n], ...rep, threads: th }, apply: (r) => adamPts.push({ threads: th, params_per_s: Math.round(r.value) }) });
    }
  }
  // ---- the host update where it runs: an executor run of each model's layers with AdamW on the
  // host (delayed) on every GPU (1F1B; GPipe on one), its CPU-update slices while every rank updates,
  // without and under copies
  const hostExec: { model: string; alone: number; under: number; nAlone: number; nUnder: number }[] = [];
  if (gpuMode && G >= 1 && parts.has('cpu') && parts.has('overheads')) {
    for (const model of o.models) {
      jobs.push({
        part: 'cpu', label: `host AdamW in the executor: ${model.name}'s layers on ${G} ranks`,
        run: async () => {
          const dp = decoderParams(model);
          // about 800M parameters a rank (LLaMA-2-7B: 4 layers, LLaMA-3.2-1B: 12): with 2 LLaMA-2-7B
          // layers a rank every update slice of 6 steps met a copy (none without, on 2x H200)
          const layers = G * Math.max(2, Math.min(12, Math.round(800e6 / dp)));
          const steps = 8;
          const plan = probePlan(true, o.id, steps, G, 2, { hostUpdate: true }, probeShapeOf(model, o.seqs[0]!, 2, layers), 4);
          const res = await (o.deps?.execute ?? execute)(plan, { steps, trace: true });
          const h = hostUpdateFromTrace(plan, res.trace?.traceEvents ?? [], 2);
          if (Number.isFinite(h.alone)) hostExec.push({ model: model.name, ...h });
          return { layers, ...h };
        },
      });
    }
  }
  // ---- host DRAM, shared: host-GPU copies (every GPU at once) while every rank's CPU update runs,
  // and the update while the copies run, each against itself alone. On the 2x H200 host a plan
  // that streamed half of LLaMA-3.2-1B's weights fetched them 1.6x slower than the links alone
  // while its delayed host update ran, and the update took 1.2x its own rate.
  /** Rates alone and inside the other side (GB/s, params/s); the disk's 0 when not measured. */
  let dram: { copyAlone_GBps: number; copyUnder_GBps: number; cpuAlone_params_per_s: number; cpuUnder_params_per_s: number; cpuUnderD2h_params_per_s: number; diskAlone_GBps: number; diskUnder_GBps: number; updateSetupSec: number; updateStepSec: number } | null = null;
  if (gpuMode && parts.has('links') && parts.has('cpu')) {
    jobs.push({
      part: 'links', label: 'host copies and the CPU update at once',
      run: async () => {
        const task = o.deps?.calibrateTask ?? calibrateTask;
        const all = Array.from({ length: G }, (_, i) => i);
        const perRank = hostThreadsPerRank(nCores, G, true);
        const copy = (iters: number, maxSec: number, name: 'h2d' | 'd2h' = 'h2d'): Partial<CalibTask> & { kind: 'copy' } => ({ kind: 'copy', name, gpus: all, bytes: linkBytes, pinned: true, warmup: 1, iters, maxSec });
        const update = (reps: number): Partial<CalibTask> & { kind: 'adamw' } => ({ kind: 'adamw', dims: G > 1 ? [adamN, G] : [adamN], threads: perRank, warmup: 0, iters: reps, maxSec: 60 });
        const now = () => performance.now() / 1e3;
        const after = (sec: number) => new Promise((r) => setTimeout(r, Math.max(0, sec) * 1e3));
        const copyAlone = (await task(copy(20, 0.3))).value;
        // the update's set-up (allocating and filling its buffers: about a second) comes before its
        // warm-up and timed steps, and the other side must run while the steps do. A step's time
        // from the measured rate (every group's parameters once: the groups run at once), the
        // set-up from the wall time less the warm-up and the timed steps. (The native benchmark
        // runs at least 3 steps, so the wall times of "1" and of 3 steps differed by noise alone:
        // a negative difference made the step 1 ms and the next update 1500 steps long, and a
        // matrix run's calibrate never finished.) The first update warms the host (its pages, the
        // thread teams) and is not timed.
        // The rates alone and inside the copies are medians of DRAM_SHARING_REPS steps each: of 3, the
        // thirteenth run read the update 8% faster inside the copies than alone (a slowdown of 0,
        // where its plans' traces show the host update 1.4-1.5x slower while the gradients' copies
        // run), and its host-update plans came out 5-14% under.
        const N = DRAM_SHARING_REPS;
        await task(update(3));
        const t0 = now();
        const cpuAlone = (await task(update(N))).value;
        const wallN = now() - t0;
        const stepSec = cpuAlone > 0 ? Math.max(1e-3, (adamN * Math.max(1, G)) / cpuAlone) : 0.1;
        const setupSec = Math.max(0, wallN - (N + 1) * stepSec);
        /** Update steps for about `sec` seconds (at least 4, at most 20 s worth of them). */
        const stepsFor = (sec: number) => Math.max(4, Math.min(Math.ceil(sec / stepSec), Math.ceil(20 / stepSec)));
        // the copies inside about 2.5 s of update steps: three windows of 0.25 s, the slowest taken.
        // One window of 0.4 s read a slowdown of 0.08 on a one-H200 host where the plans' fetches ran
        // 1.34-1.36x slower under the update on three hosts (x 0.57 by the job on one of them): a
        // window that starts while the update still sets up (its set-up estimated from the run
        // before) sees no contention; the slowest of three lands inside.
        const longUpdate = task(update(stepsFor(2.5)));
        await after(setupSec + stepSec + 0.1);
        const windows: number[] = [];
        for (let i = 0; i < 3; i++) windows.push((await task(copy(1000, 0.25))).value);
        await longUpdate;
        const copyUnder = Math.min(...windows);
        // the update's steps inside copies that last through its set-up, warm-up, steps and a margin
        const longCopy = task(copy(1e6, setupSec + (N + 2) * stepSec + 0.5));
        await after(0.1);
        const cpuUnder = (await task(update(N))).value;
        await longCopy;
        // and inside D2H copies: the gradients' offload, which every host-AdamW plan runs beside its
        // update. The fourteenth run read the update 4% slower inside H2D copies while its plans'
        // traces show it 1.4x slower while the gradients' D2H copies ran (LLaMA-3.2-1B layers 21 ->
        // 30 ms, LLaMA-2-7B 52 -> 69 ms); a probe on the same host type had H2D x1.41, D2H x1.90.
        const longCopyD2h = task(copy(1e6, setupSec + (N + 2) * stepSec + 0.5, 'd2h'));
        await after(0.1);
        const cpuUnderD2h = (await task(update(N))).value;
        await longCopyD2h;
        // the disk tier's I/O (two 512 MiB group files read back and rewritten, as the disk job does) alone and inside the update
        let diskAlone = 0, diskUnder = 0;
        if (parts.has('disk') && o.diskPaths.length) {
          const io = { kind: 'disk' as const, name: o.diskPaths[0]!, dims: [DISK_CONCURRENCY], bytes: 512 * 2 ** 20, iters: 1, warmup: 0, maxSec: 1 };
          const t1 = now();
          const a = await task(io);
          const ioSec = now() - t1;
          diskAlone = 2 / (1 / a.value + 1 / a.value2);  // GB/s over the write and the read
          const longUpdate2 = task(update(stepsFor(2 * ioSec + 0.5)));
          await after(setupSec + stepSec + 0.1);
          const u = await task(io);
          await longUpdate2;
          diskUnder = 2 / (1 / u.value + 1 / u.value2);
        }
        const rates = { copyAlone_GBps: copyAlone, copyUnder_GBps: copyUnder, cpuAlone_params_per_s: cpuAlone, cpuUnder_params_per_s: cpuUnder, cpuUnderD2h_params_per_s: cpuUnderD2h, diskAlone_GBps: diskAlone, diskUnder_GBps: diskUnder, updateSetupSec: setupSec, updateStepSec: stepSec };
        if (copyAlone > 0 && copyUnder > 0 && cpuAlone > 0 && cpuUnder > 0) dram = rates;
        return rates;
      },
    });
  }
  let memGBps = 0;
  if (parts.has('memory')) {
    jobs.push({ part: 'memory', label: `memcpy ${nCores} threads`, task: { kind: 'memcpy', bytes: Math.min(2 ** 31, Math.max(quick ? 256 * 2 ** 20 : 512 * 2 ** 20, 4 * llcBytes())), ...rep, threads: nCores }, apply: (r) => { memGBps = r.value; } });
  }
  const diskRes: { path: string; w: number; r: number; lat: number }[] = [];
  if (parts.has('disk')) {
    if (o.diskPaths.length === 0) skipped.push('disk: no --disk-path given');
    for (const path of o.diskPaths) {
      const e = { path, w: 0, r: 0, lat: 0 };
      diskRes.push(e);
      // two group files of this size through the disk tier's own I/O, read back and rewritten
      // (renamed over) round after round as its steps do, 2 threads (the tier's default concurrency)
      const groupBytes = quick ? (gpuMode ? 512 * 2 ** 20 : 32 * 2 ** 20) : 1024 * 2 ** 20;
      // rounds: the median of 4 on a GPU host (of 2, a 2x H200 host's job read 2.28-2.67 GB/s within
      // two minutes while a disk-tier plan between the jobs read 2.18-2.33: bench/gpu/disk-drift.ts)
      const rounds = quick ? (gpuMode ? 4 : 2) : 5;
      jobs.push({ part: 'disk', label: `disk ${path}`, task: { kind: 'disk', name: path, dims: [DISK_CONCURRENCY], bytes: groupBytes, iters: rounds, warmup: 0, maxSec: quick ? 3 * rounds : 40 }, apply: (r) => { e.w = r.value; e.r = r.value2; } });
    }
  }

  // ---- overheads: launch, context and allocator, slowdown under copies, then the per-instruction fit
  let launchUs: number | null = null;
  let ctx: { bytes: number; frac: number } | null = null;
  let slowdown: number | null = null;
  let fit: { launch: number; perInstr: number; scale: number; instructions: number; before: number; after: number; excluded: string[]; firstStep: number } | null = null;
  let peerFit: { latency: number; measuredStep: number[]; after: number[] } | null = null;
  let probeOutside: number | null = null;
  let hostCostFit = false;  // GPUs: kernel_launch_us fitted to the host-bound probe (else the bare dispatch)
  /** Device memory outside the allocator (rank 0, cuda:0) of the memory probes, less what this
   *  process holds on cuda:0: 1 rank; 2-rank 1F1B; with a split tied embedding; interleaved. */
  let outside: { one: number; two: number; tied: number; inter: number } | null = null;
  let allocatorSlack: number | null = null;
  if (parts.has('overheads')) {
    jobs.push({ part: 'overheads', label: `launch ${dev}`, task: { kind: 'launch', device: dev, ...rep, iters: Math.max(5, rep.iters) }, apply: (r) => { launchUs = r.value; } });
    if (gpuMode) {
      jobs.push({ part: 'overheads', label: 'CUDA context and allocator cuda:0', task: { kind: 'context', device: dev }, apply: (r) => { ctx = { bytes: r.value, frac: r.value2 }; } });
      jobs.push({ part: 'overheads', label: 'compute slowdown under copies cuda:0', task: { kind: 'slowdown', device: dev, dtype: 'bf16', dims: [quick ? 4096 : 8192], bytes: linkBytes, ...rep }, apply: (r) => { slowdown = r.value; } });
    }
    jobs.push({
      part: 'overheads', label: `host costs a kernel and an instruction (${Math.min(2, G)}-rank tiny-model runs of the executor)${gpuMode ? `, memory outside the allocator (${o.models[0]!.name} 2-layer runs)` : ''}`,
      run: async () => {
        const shape = gpuMode ? probeShapeOf(o.models[0]!, o.seqs[0]!, o.microBatchSizes[0]!) : undefined;
        applyCompute();
        // on GPUs the tiny model's steps take milliseconds: 10 (16) steps, 8 (14) timed, so that the
        // fit's minimum per instruction is stable (4 steps gave 113, 195 and 329 us an instruction
        // in three runs on one machine)
        const steps = gpuMode ? (quick ? 10 : 16) : (quick ? 4 : 6);
        const N = Math.min(2, G);
        // two micro-batch sizes on CPU ranks (separates fixed from size-proportional costs)
        const sizes = gpuMode ? [2] : [1, 4];
        const probes: { plan: Plan; byPc: Map<string, number[]>; opOf: Map<string, string>; step: number }[] = [];
        for (const mbs of sizes) {
          // the tiny model: host-bound (its instructions' time is the host's dispatch, which the fit
          // is after); the memory probes below run the real shapes
          const plan = probePlan(gpuMode, o.id, steps, N, mbs);
          const res = await (o.deps?.execute ?? execute)(plan, { steps, trace: true, threads: gpuMode ? undefined : rankThreads });
          // device memory outside the caching allocator of each rank at its peak (context, library
          // workspaces and, on more than one rank, the NCCL communicators' buffers)
          const pk = (res as { peak_bytes?: number[]; peak_reserved_bytes?: number[] });
          if (gpuMode && N > 1 && Array.isArray(pk.peak_bytes) && Array.isArray(pk.peak_reserved_bytes)) {
            const outside = pk.peak_bytes.map((b, i) => b - (pk.peak_reserved_bytes![i] ?? b)).filter((x) => Number.isFinite(x));
            if (outside.length) probeOutside = Math.max(probeOutside ?? 0, ...outside);
          }
          const byPc = new Map<string, number[]>();
          const opOf = new Map<string, string>();
          const spans = new Map<number, [number, number]>();
          // steady state: the first step (and, with 4 steps or more, the second) warm up: NCCL
          // creates its point-to-point communicators lazily at the first send/receive, cuBLAS its
          // handles at a thread's first call, the caching allocator grows
          const firstSteady = steadyStep(steps);
          for (const e of res.trace?.traceEvents ?? []) {
            if (!isOwnSlice(e, firstSteady)) continue;
            const sp = spans.get(e.args.step) ?? [Infinity, -Infinity];
            spans.set(e.args.step, [Math.min(sp[0], e.ts ?? 0), Math.max(sp[1], (e.ts ?? 0) + (e.dur ?? 0))]);
            const op = String(e.args.op ?? e.name);
            if (!['forward', 'backward', 'optimizer_step'].includes(op)) continue;
            const k = `${e.args.rank}:${e.args.pc}`;
            (byPc.get(k) ?? (byPc.set(k, []), byPc.get(k)!)).push(e.dur ?? 0);
            opOf.set(k, op);
          }
          probes.push({ plan, byPc, opOf, step: Math.min(...[...spans.values()].map(([x, y]) => y - x)) });
        }
        if (gpuMode && N > 1) {
          // Memory outside the caching allocator, by difference of executor runs: the ranks read
          // cudaMemGetInfo, which counts every process on the device, this one too (its context and
          // the blocks its benchmarks keep cached): that is measured first and taken off.
          const here = (await (o.deps?.calibrateTask ?? calibrateTask)({ kind: 'device_used', device: 'cuda:0' })).value;
          const slacks: number[] = [];
          const rank0Outside = async (plan: Plan) => {
            const r = await (o.deps?.execute ?? execute)(plan, { steps: 2 }) as { peak_bytes?: number[]; peak_reserved_bytes?: number[]; peak_allocated_bytes?: number[] };
            const b = r.peak_bytes?.[0], res = r.peak_reserved_bytes?.[0], al = r.peak_allocated_bytes?.[0];
            // what the caching allocator holds beyond its live blocks at the peak (cached free blocks)
            if (typeof res === 'number' && typeof al === 'number' && res >= al) slacks.push(res - al);
            return typeof b === 'number' && typeof res === 'number' ? b - res - here : NaN;
          };
          const one = await rank0Outside(probePlan(gpuMode, o.id, 2, 1, 2, {}, shape));
          const two = await rank0Outside(probePlan(gpuMode, o.id, 2, 2, 2, {}, shape));
          const tied = await rank0Outside(probePlan(gpuMode, o.id, 2, 2, 2, { tied: true }, shape));
          const inter = await rank0Outside(probePlan(gpuMode, o.id, 2, 2, 2, { interleaved: true }, shape));
          if ([one, two, tied, inter].every(Number.isFinite) && one > 0) outside = { one, two, tied, inter };
          if (slacks.length) allocatorSlack = [...slacks].sort((u, v) => u - v)[Math.floor(slacks.length / 2)]!;
        }
        const sim = (plan: Plan, q: HardwareProfile) => simulatePlan(plan, q, { criticalPath: false, hostMemory: false });
        const withOv = (q: HardwareProfile, launch: number, perInstr: number, peerLat?: number): HardwareProfile => ({
          ...q, overheads: { ...q.overheads, kernel_launch_us: launch, per_instruction_us: perInstr },
          links: peerLat === undefined ? q.links : { ...q.links, peer: q.links.peer.map((x) => ({ ...x, latency_us: peerLat })) },
        });
        const y: number[] = [], b: number[] = [], a: number[] = [], c: number[] = [], nK: number[] = [];
        const keys: string[] = [];
        let excluded: string[] = [];
        for (const pr of probes) {
          const durs = (launch: number, perInstr: number) => {
            const us = simInstrUs(pr.plan, withOv(p, launch, perInstr));
            return (key: string) => us(...(key.split(':').map(Number) as [number, number]));
          };
          const d0 = durs(0, 0), dL = durs(1, 0), dP = durs(0, 1), dK = durs(1000, 0);
          for (const k of pr.byPc.keys()) {
            if (!Number.isFinite(d0(k))) continue;
            y.push(Math.min(...pr.byPc.get(k)!)); b.push(d0(k)); a.push(dL(k) - d0(k)); c.push(dP(k) - d0(k));
            nK.push(Math.max(0, Math.round((dK(k) - d0(k)) / 1000)));  // kernels the model charges it
            keys.push(`rank ${k.split(':')[0]} pc ${k.split(':')[1]} ${pr.opOf.get(k) ?? ''}`.trim());
          }
        }
        // GPUs: the tables hold (scale 1); the host cost of a kernel and of an instruction are fitted
        // to the host-bound probe (the model takes max(device, kernels x that cost) a layer, so a
        // large kernel is not overcharged); where that fit fails, a kernel costs the measured
        // dispatch of a bare op and only the per-instruction cost is fitted. CPU ranks: scale, kernel
        // and instruction.
        let f: { s: number; x: number; z: number };
        if (gpuMode) {
          const L = launchUs ?? p.overheads.kernel_launch_us;
          const hc = fitHostCosts(y, b, nK, c, L);
          if (hc.ok) {
            f = { s: 1, x: hc.x, z: hc.z };
            hostCostFit = true;
            excluded = hc.outliers.map((i) => `${keys[i]} ${(y[i]! - Math.max(b[i]!, nK[i]! * hc.x) - c[i]! * hc.z).toFixed(0)} us`);
          } else {
            const rf = fitPerInstruction(y, b, a, c, L);
            f = { s: 1, x: L, z: rf.z };
            excluded = rf.outliers.map((i) => `${keys[i]} ${(y[i]! - b[i]! - a[i]! * L).toFixed(0)} us`);
          }
        } else f = fitThree(y, b, a, c);
        const sum = (xs: number[]) => xs.reduce((t, v) => t + v, 0);
        const before = sum(y.map((_, i) => b[i]! + a[i]! * p.overheads.kernel_launch_us + c[i]! * p.overheads.per_instruction_us));
        const after = sum(y.map((_, i) => (gpuMode && hostCostFit ? Math.max(b[i]!, nK[i]! * f.x) : f.s * b[i]! + a[i]! * f.x) + c[i]! * f.z));
        fit = { launch: f.x, perInstr: f.z, scale: f.s, instructions: y.length, before: before / sum(y) - 1, after: after / sum(y) - 1, excluded, firstStep: steadyStep(steps) };
        // CPU ranks: the per-message cost of a c10d (Gloo) send/receive, fitted so that the probes'
        // simulated step times match the measured ones (least squares of the relative errors)
        if (!gpuMode && N > 1 && p.links.peer.length && probes.every((pr) => pr.step > 0)) {
          const q = scaleCompute(p, f.s, dtype);
          const cost = (lat: number) => sum(probes.map((pr) => (sim(pr.plan, withOv(q, f.x, f.z, lat)).step_s * 1e6 / pr.step - 1) ** 2));
          let best = 0, bestCost = cost(0);
          for (let i = 0; i <= 40; i++) { const lat = 10 * 1.25 ** i; const v = cost(lat); if (v < bestCost) { best = lat; bestCost = v; } }
          for (let i = 0; i < 20; i++) { const lat = best * (0.8 + 0.02 * i); const v = cost(lat); if (v < bestCost) { best = lat; bestCost = v; } }
          const rel = probes.map((pr) => sim(pr.plan, withOv(q, f.x, f.z, best)).step_s * 1e6 / pr.step - 1);
          peerFit = { latency: best, measuredStep: probes.map((pr) => pr.step), after: rel };
        }
      },
    });
  }

  // ---- sustained compute: the GEMM tables are timed in short bursts from an idle GPU, at its top
  // clock; a training run keeps the GPU busy for minutes, and its clock settles lower (an H200 ran
  // a LLaMA-2-7B layer 6.7% slower after 8 s of back-to-back work, 1905 -> 1830 MHz, while a GEMM
  // alone still timed within 0.5% of its cold figure: bench/gpu/diagnose-layer.py). Each model's
  // two-layer probe runs in the executor long enough to heat the GPU; its later instructions'
  // durations fit one factor on that model's GEMM and attention entries.
  const sustained: { model: string; mbs: number; s: number; instructions: number; layers: number; keys: { gemm: Set<string>; attention: Set<string> }; passes: PassFits | null; hostBound: 'forward' | 'backward' | null; forward: number; backward: number; params: number; shown: number; others: { forward: number; backward: number; s: number }[] }[] = [];
  if (gpuMode && parts.has('overheads') && parts.has('gemm')) {
    for (const model of o.models) {
      jobs.push({
        part: 'overheads', label: `sustained compute: ${model.name}'s layers in the executor`,
        run: async () => {
          applyCompute();
          // heat: large GEMMs back to back on the probe's GPU (its clock settles as in a training
          // run), then one probe per micro-batch size (each has its own shapes: a factor fitted at
          // micro-batch 1 was 5-8% too much for LLaMA-3.2-1B's micro-batch 2 and 4 plans), whose
          // later halves are timed
          await (o.deps?.calibrateTask ?? calibrateTask)({ kind: 'gemm', device: dev, dtype, dims: [8192, 8192, 8192], warmup: 1, iters: 100000, maxSec: quick ? 6 : 8 });
          const steps = quick ? 12 : 24;
          const q = fit ? { ...p, overheads: { ...p.overheads, kernel_launch_us: fit.launch, per_instruction_us: fit.perInstr } } : p;
          const detail: unknown[] = [];
          const smallest = Math.min(...o.microBatchSizes);
          for (const mbs of o.microBatchSizes) {
            const nmb = Math.max(8, Math.round(32 / mbs));  // about 32 sequences a step at every size
            const layers = sustainedProbeLayers(model, o.seqs[0]!, mbs, nmb, q, devs.cuda[0]?.totalBytes ?? 0);
            const plan = probePlan(true, o.id, steps, 1, 2, {}, probeShapeOf(model, o.seqs[0]!, mbs, layers), nmb);
            const keys = modelShapeKeys(model, 'bf16-mixed', o.seqs, [mbs]);
            const dur = (prof: HardwareProfile) => { const us = simInstrUs(plan, prof); return (pc: number) => us(0, pc); };
            // (without update_overlap: the early updates' full time, which updateShownFromProbe
            // sets the last backward's growth against; forward and backward do not depend on it)
            const q0 = { ...q, update_overlap: undefined };
            const d0 = dur(q0), d2 = dur(scaleShapes(q0, keys, 2, dtype));
            const from = Math.floor(steps / 2);  // the later half: the GPU has been busy for seconds
            // the smallest micro-batch's probe runs twice and the faster run is kept (PROBE_RUNS_SMALLEST)
            const runs: { byPc: Map<number, number[]>; opOf: Map<number, string>; pcs: number[]; fit: ReturnType<typeof fitSustainedPasses> }[] = [];
            for (let rep = 0; rep < (mbs === smallest ? PROBE_RUNS_SMALLEST : 1); rep++) {
              const res = await (o.deps?.execute ?? execute)(plan, { steps, trace: true });
              const byPc = new Map<number, number[]>();
              const opOf = new Map<number, string>();
              for (const e of res.trace?.traceEvents ?? []) {
                const op = String(e.args?.op ?? e.name);
                if (!isOwnSlice(e, from) || !['forward', 'backward'].includes(op)) continue;
                (byPc.get(e.args.pc) ?? (byPc.set(e.args.pc, []), byPc.get(e.args.pc)!)).push(e.dur ?? 0);
                opOf.set(e.args.pc, op);
              }
              const pcs = [...byPc.keys()].filter((pc) => Number.isFinite(d0(pc)));
              const pass = (op: string) => { const xs = pcs.filter((pc) => opOf.get(pc) === op); return { meas: xs.map((pc) => upperMedian(byPc.get(pc)!)), d0: xs.map(d0), d2: xs.map(d2) }; };
              runs.push({ byPc, opOf, pcs, fit: fitSustainedPasses(pass('forward'), pass('backward')) });
            }
            const kept = fasterProbeRun(runs.map((r) => r.fit));
            const { byPc, opOf, pcs, fit } = runs[kept]!;
            const s = fit.s;
            const passes = Number.isFinite(fit.forward) && Number.isFinite(fit.backward) ? { forward: fit.forward, backward: fit.backward, keys: modelShapeKeysByPass(model, 'bf16-mixed', o.seqs, [mbs]) } : null;
            // the last micro-batch's backward carries the early GPU updates beside it
            const shown = updateShownFromProbe(plan, d0, new Map(pcs.map((pc) => [pc, upperMedian(byPc.get(pc)!)])));
            const params = decoderParams(model);
            if (Number.isFinite(s)) sustained.push({ model: model.name, mbs, s, instructions: pcs.length, layers, keys, passes, hostBound: fit.hostBound, forward: fit.forward, backward: fit.backward, params, shown, others: runs.filter((_, i) => i !== kept).map((r) => r.fit) });
            detail.push({ mbs, s, forward: fit.forward, backward: fit.backward, hostBound: fit.hostBound, perPass: !!passes, ...(runs.length > 1 ? { runs: runs.map((r, i) => ({ forward: r.fit.forward, backward: r.fit.backward, kept: i === kept })) } : {}), update_shown: Number.isFinite(shown) ? +shown.toFixed(3) : null, steps, microBatches: nmb, layers, instructions: pcs.map((pc) => ({ pc, op: opOf.get(pc), measured_us: byPc.get(pc), d0_us: +d0(pc).toFixed(2), d2_us: +d2(pc).toFixed(2) })) });
          }
          return detail;
        },
      });
    }
  }

  // ---- run
  const measurements: Measurement[] = [];
  let computeApplied = false;
  function applyCompute() {
    if (computeApplied) return;
    computeApplied = true;
    const c = p.compute;
    if (gemmPts.length) {
      c.gemm = { ...(c.gemm ?? {}), [dtype]: gemmPts };
      const best = Math.max(...gemmPts.map((g) => (2 * g.m * g.n * g.k) / g.us! / 1e6));
      if (gpuMode) {
        const peak = c.peak_tflops[dtype] ?? best / 0.8;
        c.peak_tflops[dtype] = Math.max(peak, best);
        c.gemm_efficiency[dtype] = Math.min(1, +(best / c.peak_tflops[dtype]!).toFixed(3));
        // Each GEMM is timed from an idle device (start event, then the host's cuBLAS call), so every
        // table time includes the host dispatch; the executor queues its GEMMs behind running work.
        // The smallest GEMMs (the probe model's, a few MFLOP: a few us on the device) take little
        // more than that dispatch: their least time, less their roofline at peak, estimates it.
        // Since the native GEMM timing queues each product behind ~300 us of device work (its note
        // says so), the table times are the device's and no dispatch is taken off them.
        const pk = c.peak_tflops[dtype]!;
        const gap = gemmAhead === gemmPts.length ? 0 : Math.min(...gemmPts.map((g) => g.us! - (2 * g.m * g.n * g.k) / (pk * 1e6)));
        if (gap > 0) {
          c.gemm_dispatch_us = +gap.toFixed(2);
          mark('compute.gemm_dispatch_us', `host dispatch in the GEMM table times: the least table time (${Math.min(...gemmPts.map((g) => g.us!)).toFixed(1)} us, a probe-model GEMM) less its FLOPs at peak`);
        } else delete c.gemm_dispatch_us;
      } else {
        // CPU: the best measured rate is the peak; efficiency 1 at it (outside the table: roofline at the best rate)
        c.peak_tflops = { fp32: +best.toPrecision(4) };
        c.gemm_efficiency = { fp32: 1 };
      }
      mark('compute.gemm', `${gemmPts.length} GEMMs at the shapes of ${o.models.map((m) => m.name).join(', ')} (seq ${o.seqs.join(', ')}, micro-batch ${o.microBatchSizes.join(', ')}) and the probe model, ${dtype}, median of ${rep.iters}`);
    }
    if (attnPts.length) {
      c.attention = { ...(c.attention ?? {}), [dtype]: attnPts };
      mark('compute.attention', `causal attention forward and backward at seq ${o.seqs.join(', ')}, ${dtype}${build.sdpa ? ' (SDPA)' : ' (math path)'}, on the model's q|k|v views${gpuMode ? ', device time (each repetition queued behind about 3 ms of GEMMs: no host dispatch or autograd hand-off in the figure)' : ''}, median of ${gpuMode ? Math.max(7, rep.iters) : rep.iters} after ${gpuMode ? Math.max(3, rep.warmup) : rep.warmup} untimed (lazy kernel loading and autograd start-up on the first shape)`);
    }
    if (kern.length) {
      const bytes = kern.reduce((s, k) => s + k.bytes, 0), us = kern.reduce((s, k) => s + k.us, 0);
      c.memory_GBps = +(bytes / us / 1e3).toPrecision(4);
      mark('compute.memory_GBps', `effective bandwidth of RMSNorm, rotary, SwiGLU, residual add and loss kernels together (${kern.map((k) => `${k.name} ${(k.bytes / k.us / 1e3).toFixed(1)}`).join(', ')} GB/s)`);
      if (gpuMode) {
        // each kernel's own rate: the cost model charges a layer's norms, adds, rotary and SwiGLU
        // and the head's loss at theirs (the blend above is weighted by this byte mix, mostly loss)
        c.kernel_GBps = Object.fromEntries(kern.filter((k) => k.us > 0).map((k) => [k.name, +(k.bytes / k.us / 1e3).toPrecision(4)]));
        mark('compute.kernel_GBps', `effective bandwidth of each kernel as the executor runs it (ideal bytes / time, back to back behind a GEMM): ${kern.map((k) => `${k.name} ${(k.bytes / k.us / 1e3).toFixed(1)}`).join(', ')} GB/s`);
      }
    }
    if (gpuAdamw) {
      const a = gpuAdamw as { params_per_s: number; params: number; note: string };
      // in the cost model's byte count of a bf16-mixed AdamW update (sim/cost.ts optimizerTime_us):
      // weights 2x2, gradient 2, master 2x4, m and v 2x8 = 30 bytes a parameter
      c.optimizer_GBps = +(a.params_per_s * OPTIMIZER_BYTES_PER_PARAM / 1e9).toPrecision(4);
      mark('compute.optimizer_GBps', `the executor's GPU AdamW on ${(a.params / 1e6).toFixed(0)}M parameters: ${(a.params_per_s / 1e9).toFixed(2)}G params/s x ${OPTIMIZER_BYTES_PER_PARAM} bytes (${a.note})`);
    }
  }

  const total = jobs.length;
  for (let i = 0; i < jobs.length; i++) {
    const j = jobs[i]!;
    o.progress?.(i, total, j.label);
    const s = Date.now();
    const m: Measurement = { part: j.part, label: j.label, seconds: 0 };
    try {
      if (j.run) { const d = await j.run(); if (d !== undefined) m.detail = d; }
      else {
        m.task = j.task;
        m.result = await (o.deps?.calibrateTask ?? calibrateTask)(j.task!);
        j.apply?.(m.result);
      }
    } catch (e) {
      m.error = (e as Error).message;
    }
    m.seconds = (Date.now() - s) / 1e3;
    measurements.push(m);
  }
  o.progress?.(total, total, 'done');
  applyCompute();

  // links
  if (alone.size) {
    const l = p.links;
    l.h2d = []; l.d2h = []; l.duplex = [];
    for (let g = 0; g < G; g++) {
      const lat = alone.get(`lat:${g}`);
      l.h2d.push({ gpu: g, GBps: +(alone.get(`h2d:${g}`) ?? 1).toFixed(2), pageable_GBps: alone.has(`pageable:${g}`) ? +alone.get(`pageable:${g}`)!.toFixed(2) : undefined, latency_us: lat !== undefined ? +lat.toFixed(1) : undefined });
      l.d2h.push({ gpu: g, GBps: +(alone.get(`d2h:${g}`) ?? 1).toFixed(2), latency_us: lat !== undefined ? +lat.toFixed(1) : undefined });
      if (alone.has(`duplex:${g}`)) l.duplex.push({ gpu: g, GBps: +alone.get(`duplex:${g}`)!.toFixed(2) });
    }
    // host groups: GPUs copying at once reach the sum of their alone figures (own links), or less (shared)
    const sum = (dir: string) => Array.from({ length: G }, (_, g) => alone.get(`${dir}:${g}`) ?? 0).reduce((a, b) => a + b, 0);
    const shared = G > 1 && together.has('h2d') && together.get('h2d')! < 0.85 * sum('h2d');
    if (shared) {
      l.host_groups = [{ name: 'host', gpus: Array.from({ length: G }, (_, g) => g), h2d_GBps: +together.get('h2d')!.toFixed(2), d2h_GBps: +(together.get('d2h') ?? together.get('h2d')!).toFixed(2), duplex_GBps: together.has('duplex') ? +together.get('duplex')!.toFixed(2) : undefined }];
    } else {
      l.host_groups = Array.from({ length: G }, (_, g) => ({ name: `host${g}`, gpus: [g], h2d_GBps: +(alone.get(`h2d:${g}`) ?? 1).toFixed(2), d2h_GBps: +(alone.get(`d2h:${g}`) ?? 1).toFixed(2), duplex_GBps: alone.has(`duplex:${g}`) ? +alone.get(`duplex:${g}`)!.toFixed(2) : undefined }));
    }
    if (G > 1 && together.has('h2d')) {
      l.host_total = { h2d_GBps: +together.get('h2d')!.toFixed(2), d2h_GBps: +(together.get('d2h') ?? together.get('h2d')!).toFixed(2), duplex_GBps: together.has('duplex') ? +together.get('duplex')!.toFixed(2) : undefined };
    }
    mark('links', `pinned ${linkBytes / 2 ** 20} MiB copies per GPU alone${G > 1 ? ` and on all ${G} at once (${shared ? 'shared: one host group' : 'no contention: a group per GPU'})` : ''}, duplex, pageable, 4 KiB latency`);
  }
  if (peers.some((x) => x.GBps > 0)) {
    const ok = peers.filter((x) => x.GBps > 0);
    const med = median(ok.map((x) => x.GBps));
    const uniform = ok.every((x) => Math.abs(x.GBps - med) <= 0.15 * med);
    p.links.peer = uniform
      ? [{ gpus: Array.from({ length: G }, (_, g) => g), GBps: +med.toFixed(2), latency_us: +median(ok.map((x) => x.lat)).toFixed(1) }]
      : ok.map((x) => ({ gpus: [x.a, x.b], GBps: +x.GBps.toFixed(2), latency_us: +x.lat.toFixed(1) }));
    mark('links.peer', `device-to-device copies of ${linkBytes / 2 ** 20} MiB per pair (tensor copy, peer access) and 4 KiB latency`);
  }
  if (adamPts.length) {
    // one point a thread count (the ranks-at-once point, measured last, wins a tie)
    const pts = [...new Map(adamPts.map((x) => [x.threads, x])).values()].sort((a, b) => a.threads - b.threads);
    p.cpu.optimizers = [{ name: 'adamw', dtype: 'fp32', points: pts }, ...p.cpu.optimizers.filter((x) => x.name !== 'adamw')];
    mark('cpu.optimizers', `the executor's CPU AdamW update (bf16 gradients and weights, fp32 master, m, v) on ${(adamN / 1e6).toFixed(0)}M parameters (beyond the ${(llcBytes() / 2 ** 20).toFixed(0)} MiB last-level cache: DRAM-bound) by thread count (${pts.map((x) => x.threads).join(', ')}: each rank's worker has cores / ranks${gpuMode ? ' less one (its kernel-launching thread keeps a core)' : ''}; the last point is the host's total when every rank updates at once${gpuMode && G > 1 ? `, timed as the executor runs it: ${G} thread groups at once, one a rank` : ''})`);
  }
  p.cpu.cores = nCores;
  p.cpu.threads = nCores;
  p.cpu.memory_bytes = totalmem();
  p.cpu.name = cpus()[0]?.model?.trim();
  if (memGBps > 0) {
    p.cpu.memory_GBps = +memGBps.toFixed(2);
    mark('cpu.memory_GBps', `memcpy with ${nCores} threads (read + write)`);
    if (!gpuMode) {
      // CPU ranks: a "host transfer" is a copy within host memory (one direction = half of read + write)
      const one = +(memGBps / 2).toFixed(2);
      for (const d of [p.links.h2d, p.links.d2h]) for (const e of d) e.GBps = one;
      for (const hg of p.links.host_groups) { hg.h2d_GBps = one; hg.d2h_GBps = one; hg.duplex_GBps = one; }
      mark('links', 'derived from the host memcpy bandwidth (CPU ranks)');
    }
  }
  if (diskRes.some((d) => d.w > 0)) {
    p.disks = diskRes.filter((d) => d.w > 0).map((d) => ({ path: d.path, read_GBps: +d.r.toFixed(3), write_GBps: +d.w.toFixed(3), concurrency: DISK_CONCURRENCY, latency_us: 100 }));
    mark('disks', `the disk tier's own I/O per path, as its steps use it: two optimizer-state group files read back (checksums verified) and written again through a temporary name renamed over them, round after round (8 MiB chunks, ${DISK_CONCURRENCY} threads, fsync; O_DIRECT where the filesystem allows)`);
  }
  if (launchUs !== null) {
    p.overheads.kernel_launch_us = +(launchUs as number).toFixed(3);
    mark('overheads.kernel_launch_us', `median dispatch time of a tiny in-place op on ${dev}`);
  }
  if (ctx) {
    const c = ctx as { bytes: number; frac: number };
    p.overheads.cuda_context_bytes = Math.round(c.bytes);
    p.overheads.allocator_overhead_fraction = Math.min(0.5, +c.frac.toFixed(4));
    mark('overheads.cuda_context_bytes', 'device memory in use outside the caching allocator after the first allocation (context, cuBLAS workspace)');
  }
  if (allocatorSlack !== null) {
    p.overheads.allocator_slack_bytes = Math.round(allocatorSlack as number);
    mark('overheads.allocator_slack_bytes', `rank 0's caching allocator: reserved less allocated bytes at the peak, the median of the executor runs of ${gpuMode ? `two decoder layers of ${o.models[0]!.name}` : 'the tiny model'} (1 rank, 2-rank 1F1B, tied, interleaved)`);
  }
  if (outside) {
    // A 1-rank run's memory outside the allocator is the executor's context (with the kernels and
    // library workspaces it loads, more than a bare context); each further structure of a multi-rank
    // run adds NCCL memory: the communicators of a 2-rank 1F1B run, a further communicator (the
    // tied embedding's), two further point-to-point connections per rank (interleaving sends both
    // ways on the forward and the backward communicators).
    const x = outside as { one: number; two: number; tied: number; inter: number };
    p.overheads.cuda_context_bytes = Math.round(x.one);
    p.overheads.comm_buffer_bytes = Math.max(0, Math.round(x.two - x.one));
    p.overheads.comm_group_bytes = Math.max(0, Math.round(x.tied - x.two));
    p.overheads.p2p_connection_bytes = Math.max(0, Math.round((x.inter - x.two) / 2));
    const how = `rank 0's device memory outside the caching allocator in executor runs of ${gpuMode ? `two decoder layers of ${o.models[0]!.name} (seq ${o.seqs[0]}, micro-batch ${o.microBatchSizes[0]})` : 'the tiny model'} (less what the calibrating process holds on cuda:0)`;
    mark('overheads.cuda_context_bytes', `${how}: 1 rank`);
    mark('overheads.comm_buffer_bytes', `${how}: 2-rank 1F1B less 1 rank`);
    mark('overheads.comm_group_bytes', `${how}: 2-rank 1F1B with a split tied embedding less without`);
    mark('overheads.p2p_connection_bytes', `${how}: 2-rank interleaved 1F1B less 1F1B, halved (two more connections a rank)`);
  } else if (probeOutside !== null && probeOutside > 0) {
    // what a multi-rank run holds outside the allocator beyond the context: NCCL buffers and the
    // workspaces of the executor's streams (the memory model adds it on plans of more than one rank)
    p.overheads.comm_buffer_bytes = Math.max(0, Math.round((probeOutside as number) - p.overheads.cuda_context_bytes));
    mark('overheads.comm_buffer_bytes', `device memory outside the caching allocator at the peak of a ${Math.min(2, G)}-rank executor run (NCCL), less cuda_context_bytes`);
  }
  if (dram !== null) {
    const d = dram as NonNullable<typeof dram>;
    const slowdown = (alone: number, under: number) => +Math.max(0, alone / under - 1).toFixed(4);
    p.copy_slowdown_under_cpu_update = slowdown(d.copyAlone_GBps, d.copyUnder_GBps);
    // the update meets copies of both directions in a plan (gradients down, weights up): the larger
    // slowdown of the two (one figure in the model)
    const underH2d = slowdown(d.cpuAlone_params_per_s, d.cpuUnder_params_per_s);
    const underD2h = d.cpuUnderD2h_params_per_s > 0 ? slowdown(d.cpuAlone_params_per_s, d.cpuUnderD2h_params_per_s) : 0;
    p.cpu_update_slowdown_under_copies = Math.max(underH2d, underD2h);
    const what = `h2d pinned on all ${G} GPUs at once alone (${d.copyAlone_GBps.toFixed(1)} GB/s) against inside every rank's CPU AdamW update (${d.copyUnder_GBps.toFixed(1)} GB/s): both draw on host DRAM`;
    mark('copy_slowdown_under_cpu_update', what);
    mark('cpu_update_slowdown_under_copies', `every rank's CPU AdamW update alone (${(d.cpuAlone_params_per_s / 1e9).toFixed(2)} G params/s) against inside pinned copies on all ${G} GPUs at once: h2d ${(d.cpuUnder_params_per_s / 1e9).toFixed(2)} (x${(1 + underH2d).toFixed(2)}), d2h ${d.cpuUnderD2h_params_per_s > 0 ? (d.cpuUnderD2h_params_per_s / 1e9).toFixed(2) : '-'} (x${(1 + underD2h).toFixed(2)}); the larger (a plan's update meets both: the gradients' copies down, the weights' up), medians of ${DRAM_SHARING_REPS} steps each`);
    if (d.diskAlone_GBps > 0 && d.diskUnder_GBps > 0) {
      p.disk_slowdown_under_cpu_update = slowdown(d.diskAlone_GBps, d.diskUnder_GBps);
      mark('disk_slowdown_under_cpu_update', `the disk tier's I/O on ${o.diskPaths[0]} (two 512 MiB group files read back and rewritten, as the disk job does) alone (${d.diskAlone_GBps.toFixed(2)} GB/s) against inside every rank's CPU AdamW update (${d.diskUnder_GBps.toFixed(2)} GB/s)`);
    }
  }
  if (hostExec.length) {
    // the executor's own figures over the benchmark's: the all-ranks point, and the update's
    // slowdown under copies where the run had slices of both kinds (medians over the models)
    const perRank = hostThreadsPerRank(nCores, G, gpuMode), all = perRank * G;
    const { total, slowdown: under } = hostExecFigures(hostExec, G);
    const adam = p.cpu.optimizers.find((x) => x.name === 'adamw');
    if (adam) adam.points = [...adam.points.filter((x) => x.threads !== all), { threads: all, params_per_s: total }].sort((a, b) => a.threads - b.threads);
    const what = hostExec.map((x) => `${x.model} ${(G * x.alone / 1e9).toFixed(2)} G params/s in all (${x.nAlone} slices)${Number.isFinite(x.under) ? `, ${(G * x.under / 1e9).toFixed(2)} under copies (${x.nUnder})` : ''}`).join('; ');
    mark('cpu.optimizers', `${figures['cpu.optimizers']?.how?.replace(/^mmoc calibrate: /, '') ?? ''}; the all-ranks point (${all} threads) from a ${G}-rank executor run with AdamW on the host, its update slices while every rank updates and no copy runs: ${what}`);
    if (under !== null) {
      const job = p.cpu_update_slowdown_under_copies ?? 0;
      p.cpu_update_slowdown_under_copies = under;
      mark('cpu_update_slowdown_under_copies', `the executor's host update under its own copies against without (${G}-rank runs with AdamW on the host: ${what}; the DRAM-sharing job's copies read x${(1 + job).toFixed(2)})`);
    }
  }
  if (slowdown !== null) {
    p.compute_slowdown_under_copies = +(slowdown as number).toFixed(4);
    mark('compute_slowdown_under_copies', 'bf16 GEMM alone against while H2D and D2H pinned copies run on the same GPU');
  }
  if (fit) {
    const f = fit as { launch: number; perInstr: number; scale: number; instructions: number; before: number; after: number; excluded: string[]; firstStep: number };
    p.overheads.kernel_launch_us = +f.launch.toFixed(3);
    p.overheads.per_instruction_us = +f.perInstr.toFixed(2);
    const where = gpuMode ? `cuda:0${G > 1 ? ', cuda:1' : ''}` : `the CPU (micro-batches of 1 and 4 sequences, ${rankThreads} thread${rankThreads > 1 ? 's' : ''} a rank)`;
    const how = gpuMode && hostCostFit ? ', with kernel_launch_us as the host cost of a kernel (the model: max(device time, kernels x it) + instructions x per_instruction_us)' : gpuMode ? ', kernel_launch_us the measured dispatch time' : ', with kernel_launch_us and a scale on the table times';
    mark('overheads.per_instruction_us', `fitted (non-negative least squares${how}) to ${f.instructions} measured instruction durations of ${Math.min(2, G)}-rank tiny-model runs of the executor on ${where} (host-bound: their kernels take less device time than their dispatch); summed-duration error ${(f.before * 100).toFixed(1)}% before the fit, ${(f.after * 100).toFixed(1)}% after${gpuMode ? `; steps from ${f.firstStep}, each instruction's fastest; robust (median, outliers beyond 5 MADs dropped${f.excluded.length ? `: ${f.excluded.join(', ')}` : ': none'})` : ''}`);
    if (!gpuMode || hostCostFit) figures['overheads.kernel_launch_us'] = figures['overheads.per_instruction_us']!;
    if (!gpuMode && Math.abs(f.scale - 1) > 1e-3) {
      Object.assign(p, scaleCompute(p, f.scale, dtype));
      mark('compute.scale', `GEMM and attention tables, peak and memory bandwidth scaled by ${f.scale.toFixed(3)} (time): the executor's layers ran that much ${f.scale > 1 ? 'slower' : 'faster'} than the isolated benchmarks (same fit)`);
    }
  }
  if (sustained.length) {
    Object.assign(p, applySustained(p, sustained, dtype));
    // per model: the median over its micro-batch sizes of the early update's share shown
    const byModel = new Map<string, { params: number; xs: number[] }>();
    for (const x of sustained) if (Number.isFinite(x.shown)) { const e = byModel.get(x.model) ?? { params: x.params, xs: [] }; e.xs.push(x.shown); byModel.set(x.model, e); }
    if (byModel.size) {
      const entries = [...byModel].map(([model, e]) => ({ model, params_per_layer: e.params, shown: +upperMedian(e.xs).toFixed(3) }));
      p.update_overlap = entries.map(({ params_per_layer, shown }) => ({ params_per_layer, shown }));
      mark('update_overlap', `the early GPU update's share the step pays, by decoder layer size: ${entries.map((e) => `${e.model} (${(e.params_per_layer / 1e6).toFixed(1)}M a layer) ${e.shown}`).join(', ')} (the sustained-load probes' last backward, which runs the early updates beside it, against their other backwards, over the updates' time in the model; median over the micro-batch sizes ${sustained.filter((x) => Number.isFinite(x.shown)).map((x) => `${x.model} mbs ${x.mbs} ${x.shown.toFixed(2)}`).join(', ')})`);
    }
    mark('compute.sustained', `GEMM and attention entries of each model's shapes at each micro-batch size scaled (time) to its layers under sustained load, each pass's entries by that pass's fit: ${sustained.map((x) => `${x.model} mbs ${x.mbs} ${x.passes ? `forward x${x.forward.toFixed(3)}, backward x${x.backward.toFixed(3)}` : `x${x.s.toFixed(3)}`}${hostBoundNote(x)}${x.others.map((r) => ` (kept over a second run's forward x${r.forward.toFixed(3)}, backward x${r.backward.toFixed(3)})`).join('')}`).join(', ')} (the smallest micro-batch size's probe run ${PROBE_RUNS_SMALLEST} times, the faster kept: its passes are the nearest to host-bound; median over ${sustained.map((x) => x.instructions).join(' / ')} forward and backward instructions of the later half of a ${quick ? 12 : 24}-step executor run of ${sustained.map((x) => x.layers).join(' / ')} decoder layers at that shape (about ${SUSTAINED_PROBE_FWD_US / 1000} ms of forward), about 32 sequences a step, right after ${quick ? 6 : 8} s of large GEMMs on the GPU: its clock settled as in a training run; the tables themselves are timed in short bursts at the top clock)`);
  }
  if (peerFit) {
    const f = peerFit as { latency: number; measuredStep: number[]; after: number[] };
    for (const x of p.links.peer) x.latency_us = +f.latency.toFixed(1);
    mark('links.peer', `latency fitted to the measured step times (${f.measuredStep.map((x) => (x / 1e3).toFixed(2)).join(', ')} ms) of the 2-rank 1F1B tiny-model runs of the executor (c10d Gloo send/receive per message); step-time error after the fit ${f.after.map((x) => `${(x * 100).toFixed(1)}%`).join(', ')}`);
  }

  const versions = `torch ${build.torchVersion}${build.cuda ? `, CUDA ${build.cudaVersion}` : ''}, node ${process.versions.node}, mmoc ${gitCommit() ?? 'unknown commit'}`;
  p.description = o.description ?? `Calibrated by mmoc calibrate on ${machine} (${gpuMode ? `${G} GPU${G > 1 ? 's' : ''}` : `${G} CPU ranks`}).`;
  p.provenance = { source: 'measured', date, how: o.command, machine, note: `${versions};${gpuMode ? '' : ` CPU ranks with ${rankThreads} intra-op thread${rankThreads > 1 ? 's' : ''} each (mmoc execute --threads ${rankThreads});`} parts measured: ${[...parts].join(', ')}${quick ? ' (--quick)' : ''}` };
  for (const k of Object.keys(figures)) if (figures[k]!.source === 'estimate' && figures[k]!.note === undefined) figures[k] = { ...figures[k]!, note: 'not measured: a starting estimate' };
  p.figures = figures;
  const out = parseHardwareProfile(JSON.parse(JSON.stringify(p)), `calibrated profile ${o.id}`);
  return { profile: out, measurements, skipped, seconds: (Date.now() - t0) / 1e3 };
}

export { GB };
export type { Dtype };
