// The ONE place that loads the native addon (native/build/Release/mmoc_native.node). Everything
// else imports the typed surface below. Arguments are validated here, with exact messages, before
// they cross into C++; C++ errors come back as JS errors whose message starts with the C++
// `[file.cpp:line]` (also on `error.cppLocation`).
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { repoRoot } from './repo-root.ts';
import type { Instr, Opcode } from '../planner/program.ts';
import { InputError } from '../planner/errors.ts';

export interface BuildInfo {
  torchVersion: string;
  compiler: string;
  cuda: boolean;
  cudaVersion: string;
  sdpa: boolean;
  gloo: boolean;
  nccl: boolean;
  fusedAdamw: boolean;
}
export interface CudaDeviceInfo {
  index: number;
  name: string;
  totalBytes: number;
  /** -1 unless read with devices({ free: true }) */
  freeBytes: number;
  computeCapability: string;
  multiProcessors: number;
}
export interface NativeDevices {
  cpuCores: number;
  torchThreads: number;
  cudaAvailable: boolean;
  cuda: CudaDeviceInfo[];
}
export interface SelfTestResult {
  device: string;
  ok: boolean;
  loss: number;
  gradNorm: number;
  ms: number;
  error?: string;
}
export type StDtype = 'F32' | 'F16' | 'BF16' | 'F64' | 'I64' | 'I32' | 'I16' | 'I8' | 'U8' | 'BOOL';
export interface StTensor {
  name: string;
  dtype: StDtype;
  shape: number[];
  data: Uint8Array;
}

/** What one rank runs: the plain struct that crosses into C++ (native/src/api.h RunCfg). */
export interface RankConfig {
  model: { hidden: number; inter: number; layers: number; heads: number; kvHeads: number; headDim: number; vocab: number; eps: number; theta: number; tied: boolean; lossChunk: number };
  optim: { lr: number; beta1: number; beta2: number; eps: number; weightDecay: number; clip: number; warmup: number; cosine: boolean; minLrRatio: number };
  precision: 'fp32' | 'bf16-mixed' | 'bf16';
  seq: number;
  microBatchSize: number;
  microBatches: number;
  steps: number;
  totalSteps: number;
  seed: number;
  stages: { lo: number; hi: number; rank: number; recompute: boolean; recomputeLayers: boolean; prefetch: number }[];
  program: Instr[];
  rank: number;
  world: number;
  /** Ranks in one pipeline (N); world = N x data-parallel replicas, rank = replica * N + pipeline rank. */
  pipelineRanks: number;
  masterAddr: string;
  masterPort: number;
  device: string;
  dataPath: string;
  weightsDir: string;
  saveDir: string;
  statusPath: string;
  /** The plan's disk paths (policy.diskPaths), newline-separated; empty: none. */
  diskPaths: string;
  /** Chunk transfers in flight at once per disk path (policy.diskConcurrency, default 2). */
  diskConcurrency: number;
  /** Alternate the disk groups' order each step (planner/program.ts; delayed update only). */
  diskAlternate: boolean;
  /** Disk groups kept in host memory across the step boundary (the staged groups). */
  diskCacheGroups: number;
  trace: boolean;
  timeoutSec: number;
  threads: number;
  /** The plan's per-GPU memory cap (job.gpuMemCapBytes), enforced through the caching allocator on
   *  CUDA ranks (a smaller card emulated on a larger one); 0: none. */
  gpuMemCapBytes: number;
  /** This rank's share of the host memory budget for offloaded state (bytes); 0: none. */
  hostMemBudgetBytes: number;
}
export interface RankProgress {
  step: number;
  loss: number;
  lr: number;
  gradNorm: number;
  stepSec: number;
  tokens: number;
  memBytes: number;
  peakBytes: number;
}
export interface RankTraceEvent {
  step: number;
  pc: number;
  op: Opcode;
  mb: number;
  stage: number;
  layer: number;
  /** Where the work ran: 'issue' (the interpreter, compute stream), 'd2h' / 'h2d' (copy streams),
   *  'cpu' (the host worker's CPU update), 'disk' (the host worker's disk transfer). */
  track: TraceTrack;
  tsUs: number;
  durUs: number;
  bytes: number;
  memBytes: number;
}
export interface RankResult {
  losses: number[];
  gradNorms: number[];
  stepSec: number[];
  peakBytes: number;
  /** CUDA: the caching allocator's peak allocated bytes (what torch.cuda.max_memory_allocated reports). */
  peakAllocBytes: number;
  /** CUDA: device memory outside the caching allocator (context, NCCL buffers), the largest seen at
   *  a step end; 0 on CPU. */
  overheadBytes: number;
  paramCount: number;
  stepsDone: number;
  stopped: boolean;
  backend: string;
  /** Wall-clock origin of the trace's `tsUs`, microseconds since the Unix epoch. */
  startUs: number;
  /** Parameter streaming: the layers this rank streams, and the most it held on the device at once. */
  streamed: { layers: number; peakResident: number };
  /** Disk tier: group reads from files, and reads served from host memory (alternating order). */
  disk: { reads: number; hits: number };
  trace: RankTraceEvent[];
}

export type TraceTrack = 'issue' | 'd2h' | 'h2d' | 'cpu' | 'disk';
/** Track numbering shared with native/src/runtime.cpp (enum Track). */
const TRACKS: readonly TraceTrack[] = ['issue', 'd2h', 'h2d', 'cpu', 'disk'];

/** Opcode numbering shared with native/src/api.h (enum Op). */
export const OPCODES: readonly Opcode[] = [
  'forward', 'backward', 'send_act', 'recv_act', 'send_grad', 'recv_grad', 'fetch_params', 'release_params',
  'offload_grads', 'allreduce_grads', 'offload_act', 'reload_act', 'grad_norm', 'optimizer_step', 'upload_params',
  'disk_read', 'disk_write', 'barrier',
];

/** benchDiskIO: groups written then read through the disk tier's I/O (bench/disk-io.ts). */
export interface DiskIOBench { writeGBps: number; readGBps: number; writeSec: number; readSec: number; bytes: number; direct: boolean[] }
export interface CpuAdamBench { n: number; threads: number; oursF32: number; oursBf16: number; torch: number; torchImpl: string; copySec: number; /** s: torch with the bf16 conversions the executor folds into its pass */ torchJob: number }

interface RawAddon {
  buildInfo(): BuildInfo;
  benchCpuAdamW(n: number, threads: number, reps: number): CpuAdamBench;
  benchDiskIO(paths: string[], groupBytes: number, groups: number, concurrency: number): DiskIOBench;
  devices(withFree?: boolean): NativeDevices;
  selfTest(device: string): Promise<SelfTestResult>;
  readSafetensors(path: string): StTensor[];
  writeSafetensors(path: string, tensors: StTensor[]): void;
  runRank(cfg: unknown, onProgress: (p: RankProgress) => void): Promise<{
    losses: Float64Array; gradNorms: Float64Array; stepSec: Float64Array; peakBytes: number; peakAllocBytes: number; overheadBytes: number; paramCount: number;
    stepsDone: number; stopped: boolean; backend: string; startUs: number; traceInts: Int32Array; traceNums: Float64Array;
    streamedLayers: number; streamedPeakResident: number; diskReads: number; diskReadHits: number;
  }>;
  requestStop(): void;
}

export const addonPath = process.env.MMOC_NATIVE_ADDON ?? join(repoRoot, 'native', 'build', 'Release', 'mmoc_native.node');

export const NOT_BUILT_HELP =
  'the native addon is not built: run `npm run build:native` (needs libtorch: `sudo apt-get install -y libtorch-dev libgloo-dev` ' +
  'on Debian/Ubuntu, or CMAKE_PREFIX_PATH=$(python3 -c "import torch; print(torch.utils.cmake_prefix_path)") with PyTorch)';

export class NativeNotBuiltError extends Error {
  override name = 'NativeNotBuiltError';
}

let cached: RawAddon | null = null;
let loadError: Error | null = null;

function raw(): RawAddon {
  if (cached) return cached;
  if (loadError) throw loadError;
  if (!existsSync(addonPath)) {
    loadError = new NativeNotBuiltError(`${NOT_BUILT_HELP}; looked for ${addonPath}`);
    throw loadError;
  }
  try {
    cached = createRequire(import.meta.url)(addonPath) as RawAddon;
    return cached;
  } catch (e) {
    loadError = new NativeNotBuiltError(
      `the native addon at ${addonPath} does not load: ${(e as Error).message.split('\n')[0]} ` +
        '(rebuild with `npm run build:native -- --force`; when libtorch is not on the loader path set LD_LIBRARY_PATH to its lib/)',
    );
    throw loadError;
  }
}

/** True when the addon is built and loads (tests skip with a message otherwise). */
export function nativeAvailable(): boolean {
  try {
    raw();
    return true;
  } catch {
    return false;
  }
}
/** Why the addon is unavailable, or null. */
export function nativeUnavailableReason(): string | null {
  try {
    raw();
    return null;
  } catch (e) {
    return (e as Error).message;
  }
}

export function buildInfo(): BuildInfo {
  return raw().buildInfo();
}
/** The host AdamW against torch's CPU AdamW (seconds a step, median of `reps`; bench/cpu-adam.ts). */
export function benchCpuAdamW(n: number, threads: number, reps: number): CpuAdamBench {
  for (const [k, v] of [['n', n], ['threads', threads], ['reps', reps]] as const) {
    if (!Number.isInteger(v) || v <= 0) throw new InputError(`benchCpuAdamW: ${k} must be a positive integer, got ${v}`);
  }
  return raw().benchCpuAdamW(n, threads, reps);
}
/** Writes then reads `groups` groups of `groupBytes` bytes round-robin over `paths` (one thread per
 *  path, `concurrency` chunk threads each) with the disk tier's I/O; GB/s and whether O_DIRECT was used per path. */
export function benchDiskIO(paths: string[], groupBytes: number, groups: number, concurrency: number): DiskIOBench {
  if (!Array.isArray(paths) || paths.length === 0 || !paths.every((p) => typeof p === 'string' && p !== '')) {
    throw new InputError('benchDiskIO: paths must be a non-empty list of non-empty directory paths');
  }
  for (const [k, v] of [['groupBytes', groupBytes], ['groups', groups], ['concurrency', concurrency]] as const) {
    if (!Number.isSafeInteger(v) || v <= 0) throw new InputError(`benchDiskIO: ${k} must be a positive integer, got ${v}`);
  }
  if (concurrency > 64) throw new InputError(`benchDiskIO: concurrency ${concurrency} must be at most 64`);
  return raw().benchDiskIO(paths, groupBytes, groups, concurrency);
}
/** CPU cores and CUDA devices. `free: true` also reads each GPU's free memory, which creates a CUDA
 *  context on every GPU (about 0.5 GiB each on an H200, held until the process exits): only for a
 *  process that uses the GPUs itself (doctor, calibrate), never the launcher of a run. */
export function devices(opts: { free?: boolean } = {}): NativeDevices {
  return raw().devices(opts.free === true);
}

const DEVICE_RE = /^(cpu|cuda:\d+)$/;
export function selfTest(device: string): Promise<SelfTestResult> {
  if (!DEVICE_RE.test(device)) throw new InputError(`device: "${device}" must be "cpu" or "cuda:N"`);
  return raw().selfTest(device);
}

const ST_DTYPES = new Set(['F32', 'F16', 'BF16', 'F64', 'I64', 'I32', 'I16', 'I8', 'U8', 'BOOL']);
const ST_SIZE: Record<string, number> = { F32: 4, F16: 2, BF16: 2, F64: 8, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1 };

export function readSafetensors(path: string): StTensor[] {
  if (typeof path !== 'string' || path === '') throw new InputError('readSafetensors: path must be a non-empty string');
  return raw().readSafetensors(path);
}
export function writeSafetensors(path: string, tensors: StTensor[]): void {
  if (typeof path !== 'string' || path === '') throw new InputError('writeSafetensors: path must be a non-empty string');
  const seen = new Set<string>();
  for (const t of tensors) {
    if (seen.has(t.name)) throw new InputError(`writeSafetensors: tensor '${t.name}' appears twice`);
    seen.add(t.name);
    if (!ST_DTYPES.has(t.dtype)) throw new InputError(`writeSafetensors: tensor '${t.name}': dtype "${t.dtype}" is not one of ${[...ST_DTYPES].join(', ')}`);
    if (!t.shape.every((d) => Number.isInteger(d) && d >= 0)) throw new InputError(`writeSafetensors: tensor '${t.name}': shape [${t.shape}] must hold non-negative integers`);
    const need = t.shape.reduce((a, b) => a * b, 1) * ST_SIZE[t.dtype]!;
    if (t.data.byteLength !== need) throw new InputError(`writeSafetensors: tensor '${t.name}': ${t.data.byteLength} bytes of data, but ${t.dtype} [${t.shape.join(', ')}] needs ${need}`);
  }
  raw().writeSafetensors(path, tensors);
}

function encodeProgram(program: Instr[], where: string): Int32Array {
  const out = new Int32Array(program.length * 7);
  program.forEach((ins, pc) => {
    const op = OPCODES.indexOf(ins.op);
    if (op < 0) throw new InputError(`${where}[${pc}]: unknown op "${(ins as { op: string }).op}"`);
    const a = ins as Partial<Record<'mb' | 'stage' | 'peer' | 'layer' | 'path', number>> & { tier?: string; fraction?: number };
    const fraction = a.fraction ?? 1;
    if (!(fraction > 0 && fraction <= 1)) throw new InputError(`${where}[${pc}]: fraction ${fraction} must be in (0, 1]`);
    out.set([op, a.mb ?? -1, a.stage ?? -1, a.peer ?? a.path ?? -1, a.layer ?? a.path ?? -1, a.tier === 'cpu' ? 1 : 0, Math.round(fraction * 1e6)], pc * 7);
  });
  return out;
}

/** Validates a rank's config with exact messages (InputError), before anything reaches C++. */
export function validateRankConfig(c: RankConfig): void {
  const posInt = (v: number, name: string) => {
    if (!Number.isInteger(v) || v <= 0) throw new InputError(`${name}: ${v} must be a positive integer`);
  };
  const nonNeg = (v: number, name: string) => {
    if (!(Number.isFinite(v) && v >= 0)) throw new InputError(`${name}: ${v} must be a non-negative number`);
  };
  for (const k of ['hidden', 'inter', 'layers', 'heads', 'kvHeads', 'headDim', 'vocab'] as const) posInt(c.model[k], `model.${k}`);
  if (c.model.heads % c.model.kvHeads !== 0) throw new InputError(`model.kvHeads (${c.model.kvHeads}) must divide model.heads (${c.model.heads})`);
  if (c.model.headDim % 2 !== 0) throw new InputError(`model.headDim (${c.model.headDim}) must be even (rotary embeddings)`);
  if (!(c.optim.lr > 0)) throw new InputError(`optimizer.lr: ${c.optim.lr} must be positive`);
  for (const k of ['beta1', 'beta2'] as const) {
    if (!(c.optim[k] >= 0 && c.optim[k] < 1)) throw new InputError(`optimizer.${k}: ${c.optim[k]} must be in [0, 1)`);
  }
  nonNeg(c.optim.eps, 'optimizer.eps');
  nonNeg(c.optim.weightDecay, 'optimizer.weightDecay');
  nonNeg(c.optim.clip, 'optimizer.gradClip');
  if (!['fp32', 'bf16-mixed', 'bf16'].includes(c.precision)) throw new InputError(`precision: "${c.precision}" must be fp32, bf16-mixed or bf16`);
  posInt(c.seq, 'job.seq');
  posInt(c.microBatchSize, 'job.microBatchSize');
  posInt(c.microBatches, 'job.microBatches');
  posInt(c.steps, 'steps');
  if (!Number.isInteger(c.world) || c.world < 1) throw new InputError(`WORLD_SIZE: ${c.world} must be a positive integer`);
  if (!Number.isInteger(c.rank) || c.rank < 0 || c.rank >= c.world) throw new InputError(`RANK: ${c.rank} must be in 0..${c.world - 1}`);
  if (!Number.isInteger(c.pipelineRanks) || c.pipelineRanks < 1 || c.world % c.pipelineRanks !== 0) {
    throw new InputError(`WORLD_SIZE: ${c.world} must be a multiple of layout.pipelineRanks (${c.pipelineRanks}) x layout.dataParallel`);
  }
  const prank = c.rank % c.pipelineRanks;
  if (!Number.isInteger(c.masterPort) || c.masterPort < 1 || c.masterPort > 65535) throw new InputError(`MASTER_PORT: ${c.masterPort} must be a port number (1-65535)`);
  if (!(Number.isInteger(c.hostMemBudgetBytes) && c.hostMemBudgetBytes >= 0)) throw new InputError(`--host-mem: ${c.hostMemBudgetBytes} bytes a rank must be a whole number (0: no budget)`);
  if (!(Number.isInteger(c.gpuMemCapBytes) && c.gpuMemCapBytes >= 0)) throw new InputError(`job.gpuMemCapBytes: ${c.gpuMemCapBytes} must be a whole number of bytes (0: no cap)`);
  if (!DEVICE_RE.test(c.device)) throw new InputError(`device: "${c.device}" must be "cpu" or "cuda:N"`);
  if (typeof c.diskAlternate !== 'boolean') throw new InputError(`policy.diskAlternate: ${String(c.diskAlternate)} must be true or false`);
  if (!(Number.isInteger(c.diskCacheGroups) && c.diskCacheGroups >= 0)) throw new InputError(`disk cache groups: ${c.diskCacheGroups} must be a whole number`);
  if (!(Number.isInteger(c.diskConcurrency) && c.diskConcurrency >= 1 && c.diskConcurrency <= 64)) {
    throw new InputError(`policy.diskConcurrency: ${c.diskConcurrency} must be an integer in 1..64 (transfers in flight per disk path)`);
  }
  const L = c.model.layers;
  let next = 0;
  c.stages.forEach((s, i) => {
    if (s.lo !== next) throw new InputError(`layout.stages[${i}].layers: starts at ${s.lo}, expected ${next} (stages must cover layers 0..${L + 1} in order)`);
    if (!(s.hi > s.lo)) throw new InputError(`layout.stages[${i}].layers: [${s.lo}, ${s.hi}) is empty`);
    if (!Number.isInteger(s.rank) || s.rank < 0 || s.rank >= c.pipelineRanks) throw new InputError(`layout.stages[${i}].rank: ${s.rank} must be a pipeline rank in 0..${c.pipelineRanks - 1}`);
    next = s.hi;
  });
  if (next !== L + 2) throw new InputError(`layout.stages: cover layers 0..${next - 1}, but the model has layers 0..${L + 1} (embedding, ${L} decoder layers, head)`);
  c.program.forEach((ins, pc) => {
    const where = `program.ranks[${c.rank}][${pc}]`;
    const a = ins as Partial<Record<'mb' | 'stage' | 'peer' | 'layer', number>>;
    if (a.mb !== undefined && !(Number.isInteger(a.mb) && a.mb >= 0 && a.mb < c.microBatches)) throw new InputError(`${where}: mb ${a.mb} must be in 0..${c.microBatches - 1}`);
    if (a.stage !== undefined) {
      if (!(Number.isInteger(a.stage) && a.stage >= 0 && a.stage < c.stages.length)) throw new InputError(`${where}: stage ${a.stage} must be in 0..${c.stages.length - 1}`);
      if (c.stages[a.stage]!.rank !== prank && (ins.op === 'forward' || ins.op === 'backward')) throw new InputError(`${where}: ${ins.op} of stage ${a.stage}, which runs on pipeline rank ${c.stages[a.stage]!.rank}`);
    }
    if (a.peer !== undefined && !(Number.isInteger(a.peer) && a.peer >= 0 && a.peer < c.world)) throw new InputError(`${where}: peer ${a.peer} must be a rank in 0..${c.world - 1}`);
    if (a.layer !== undefined && !(Number.isInteger(a.layer) && a.layer >= 0 && a.layer <= L + 1)) throw new InputError(`${where}: layer ${a.layer} must be in 0..${L + 1}`);
  });
}

/** Runs one rank's program on a native thread. `onProgress` gets one call per step. */
export async function runRank(cfg: RankConfig, onProgress: (p: RankProgress) => void): Promise<RankResult> {
  validateRankConfig(cfg);
  const program = encodeProgram(cfg.program, `program.ranks[${cfg.rank}]`);
  const r = await raw().runRank({ ...cfg, program }, onProgress);
  const trace: RankTraceEvent[] = [];
  for (let i = 0; i < r.traceInts.length / 7; i++) {
    const I = r.traceInts, N = r.traceNums;
    trace.push({
      step: I[i * 7]!, pc: I[i * 7 + 1]!, op: OPCODES[I[i * 7 + 2]!]!, mb: I[i * 7 + 3]!, stage: I[i * 7 + 4]!, layer: I[i * 7 + 5]!,
      track: TRACKS[I[i * 7 + 6]!] ?? 'issue',
      tsUs: N[i * 4]!, durUs: N[i * 4 + 1]!, bytes: N[i * 4 + 2]!, memBytes: N[i * 4 + 3]!,
    });
  }
  return {
    losses: [...r.losses], gradNorms: [...r.gradNorms], stepSec: [...r.stepSec], peakBytes: r.peakBytes, peakAllocBytes: r.peakAllocBytes, overheadBytes: r.overheadBytes,
    paramCount: r.paramCount, stepsDone: r.stepsDone, stopped: r.stopped, backend: r.backend, startUs: r.startUs, trace,
    streamed: { layers: r.streamedLayers, peakResident: r.streamedPeakResident },
    disk: { reads: r.diskReads, hits: r.diskReadHits },
  };
}

/** Asks a running rank to stop after its current step (all ranks agree at the step end). */
export function requestStop(): void {
  if (cached) cached.requestStop();
}

// ---- calibrate (`mmoc calibrate`; executor/calibrate.ts, native/src/calibrate.h): one native benchmark a call
export type CalibKind = 'gemm' | 'attention' | 'kernel' | 'copy' | 'p2p' | 'adamw' | 'memcpy' | 'disk' | 'slowdown' | 'launch' | 'context' | 'device_used';
export interface CalibTask {
  kind: CalibKind;
  /** 'cpu' or 'cuda:N'. */
  device: string;
  dtype: 'fp32' | 'bf16' | 'fp16';
  /** kernel: rmsnorm | rotary | swiglu | loss | add; copy: h2d | d2h | duplex; disk: the folder. */
  name: string;
  /** gemm: [m, n, k]; attention: [batch, heads, kv_heads, seq, head_dim]; kernel: [tokens, width]; adamw: [params]. */
  dims: number[];
  /** copy: GPUs copying at once; p2p: [source, destination]. */
  gpus: number[];
  bytes: number;
  threads: number;
  pinned: boolean;
  warmup: number;
  iters: number;
  maxSec: number;
}
/** Median and minimum per repetition (us) and the kind's figures (native/src/calibrate.cpp). */
export interface CalibResult {
  medianUs: number;
  minUs: number;
  value: number;
  value2: number;
  samples: number;
  note: string;
}
const CALIB_KINDS = new Set<CalibKind>(['gemm', 'attention', 'kernel', 'copy', 'p2p', 'adamw', 'memcpy', 'disk', 'slowdown', 'launch', 'context', 'device_used']);
/** Runs one calibration benchmark on a native thread. */
export async function calibrateTask(task: Partial<CalibTask> & { kind: CalibKind }): Promise<CalibResult> {
  const t: CalibTask = {
    device: 'cpu', dtype: 'fp32', name: '', dims: [], gpus: [], bytes: 0, threads: 0, pinned: true, warmup: 2, iters: 7, maxSec: 1, ...task,
  };
  if (!CALIB_KINDS.has(t.kind)) throw new InputError(`calibrate: unknown benchmark kind "${t.kind}"`);
  if (!DEVICE_RE.test(t.device)) throw new InputError(`calibrate: device "${t.device}" must be cpu or cuda:N`);
  for (const d of t.dims) if (!Number.isInteger(d) || d <= 0) throw new InputError(`calibrate ${t.kind}: dims must be positive integers (got ${t.dims.join(', ')})`);
  if (!(t.maxSec > 0) || !Number.isInteger(t.iters) || t.iters < 1 || !Number.isInteger(t.warmup) || t.warmup < 0) {
    throw new InputError(`calibrate ${t.kind}: iters, warmup and maxSec must be positive`);
  }
  const fn = (raw() as unknown as { calibrate?: (x: CalibTask) => Promise<CalibResult> }).calibrate;
  if (!fn) throw new NativeNotBuiltError(`the native addon at ${addonPath} predates \`mmoc calibrate\`: rebuild it with \`npm run build:native\``);
  return fn(t);
}
// ---- end calibrate
