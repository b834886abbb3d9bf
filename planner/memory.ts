// The memory model: THE one used by `mmoc memory`, the search (pruning) and the lowering (which
// allocates the same buffers in the simulator, so that the simulated peak equals this one).
//
// Per device (one pipeline rank of one data-parallel replica) it predicts the peak *reserved*
// bytes of the caching allocator plus the CUDA context: persistent state (weights, gradients,
// master weights, optimizer states), activations kept for backward (per micro-batch times the
// number of micro-batches in flight at the peak), and temporary buffers, which a caching
// allocator keeps reserved once used, so they count in full: the head's loss workspace, the
// recompute and backward workspaces, streamed-parameter buffers (prefetch depth + 1 layers),
// gradient staging buffers, activation-offload staging, pipeline send/receive buffers and the
// data-parallel all-reduce bucket.
//
// Placement rules (shared with the program generators through the functions below):
//  - params, grads: layer-granular. `residentLayers` picks, in layer order, the layers that fit in
//    the GPU fraction; the others stream (params: fetched from pinned host memory ahead of use;
//    grads: copied to the host after every backward and accumulated there).
//  - master + optimizer states: the GPU fraction is element-wise in every layer (the update of a
//    layer is split between GPU and CPU by `optimizer_step.fraction`); the host-side part of a
//    layer lives in pinned memory or on disk, layer-granular (`residentLayers` on the cpu share).
//  - activations: with recompute a stage keeps only its input per micro-batch; the activations
//    fraction offloads that input to pinned memory (needs recompute).
import type { ModelConfig } from './model-config.ts';
import type { Fractions, Precision, ScheduleName, StagePolicy } from './plan-types.ts';
import type { Program, StageSpec } from './program.ts';
import { buildInventory, KIND_DECODER, KIND_EMBEDDING, KIND_HEAD, layerTable, type Inventory } from './inventory.ts';
import { InputError } from './errors.ts';
import { schedulePasses } from './schedules.ts';

export type OptimizerName = 'adamw' | 'sgd';

export interface MemoryJob {
  model: ModelConfig;
  precision: Precision;
  optimizer: OptimizerName;
  mbs: number;
  seq: number;
  /** Tokens a chunk of the head's logits (Job.lossChunkTokens; absent: not chunked). */
  lossChunkTokens?: number;
  microBatches: number;
  schedule: ScheduleName;
  /** Stages in model order; stage i runs on rank stages[i].rank. */
  stages: StageSpec[];
  pipelineRanks: number;
  dataParallel: number;
  /** ZeRO-1: master weights and optimizer states sharded over the data-parallel replicas. */
  zero1?: boolean;
  /** One policy per stage. */
  policy: StagePolicy[];
  /** Per GPU: CUDA context, allocator and communicator overhead (from the hardware profile). */
  overheadBytes?: number;
  /** Per GPU, device memory of each NCCL communicator beyond those of a 2-rank 1F1B plan (which
   *  overheadBytes includes): the tied embedding's and the data-parallel one (profile). */
  commGroupBytes?: number;
  /** Per GPU, device memory of each point-to-point connection (a send or a receive to one peer on
   *  the forward or the backward communicator) beyond the two of a 2-rank 1F1B rank (profile). */
  p2pConnectionBytes?: number;
  /** Caching-allocator overhead (fragmentation) as a fraction of the other bytes (profile). */
  allocatorOverheadFraction?: number;
  /** Disk paths and concurrent transfers per path (for the host-side disk staging buffers). */
  diskPaths?: number;
  diskConcurrency?: number;
  /** When given, the number of micro-batches in flight is read off the program (interleaved; else
   *  off the schedule's passes, passProgram). */
  program?: Program;
  /** A prebuilt inventory for (model, precision, mbs, seq). */
  inventory?: Inventory;
}

export interface ActivationMemory {
  /** Bytes kept per micro-batch on the GPU, summed over the rank's stages. */
  perMicroBatch: number;
  /** Micro-batches in flight at the peak (the largest over the rank's stages for interleaving). */
  inFlight: number;
  /** Bytes of kept activations at the peak. */
  bytes: number;
  /** Kept activations plus the device gradients allocated at that moment, at its peak. The
   *  executor allocates a stage's gradients in its first backward of the step and frees them at the
   *  step end (native/src/runtime.cpp, Param::zeroGrad), so the activations' peak before the first
   *  backward holds no gradients (GPipe's end of the forwards: LLaMA-2-7B mbs 2 x 4 measured ~2 GiB
   *  under activations + all gradients). */
  withGradients: number;
}

export interface TemporaryMemory {
  /** Head stage: fp32 logits / logit-gradient workspace of one micro-batch. */
  lossWorkspace: number;
  /** Full activations of one micro-batch of the stage while it recomputes (recompute only). */
  recompute: number;
  /** Gradient workspace of backward through one layer (d of its intermediates). */
  backward: number;
  /** Streamed weights: (prefetch depth + 1) layers. */
  paramBuffers: number;
  /** Gradients of host-accumulated layers in flight to the host (2 layers). */
  gradBuffers: number;
  /** Activation offload staging (one going out, one coming back). */
  actStaging: number;
  /** Pipeline send/receive buffers and the data-parallel all-reduce bucket. */
  comm: number;
  total: number;
}

export interface DeviceMemory {
  rank: number;
  stages: number[];
  weights: number;
  gradients: number;
  /** The device gradients of each of `stages` (allocated in its first backward of the step). */
  stageGradients: number[];
  masterWeights: number;
  optimizerStates: number;
  activations: ActivationMemory;
  temporary: TemporaryMemory;
  /** Live bytes while the executor sets the rank up, where above training's: mixed precision
   *  builds every resident parameter's fp32 master on the device at load, and the host groups
   *  take it off only after (0 where no layer is updated on the host). */
  load: number;
  overhead: number;
  total: number;
}

export interface HostMemory {
  weights: number;
  gradients: number;
  masterWeights: number;
  optimizerStates: number;
  activations: number;
  /** Disk staging buffers. */
  buffers: number;
  total: number;
}

export interface MemoryReport {
  params: number;
  /** Per pipeline rank (every data-parallel replica holds the same). */
  devices: DeviceMemory[];
  /** Pinned host memory per pipeline rank, and for all ranks of all replicas together. */
  hostPerRank: HostMemory[];
  hostTotal: number;
  /** Disk bytes for all ranks of all replicas. */
  disk: { masterWeights: number; optimizerStates: number; total: number };
  /** Largest device total. */
  peak: number;
}

export interface Bytes {
  weight: number;
  grad: number;
  master: number;
  opt: number;
}

/** Bytes per parameter of each class of state. */
export function bytesPerParam(precision: Precision, optimizer: OptimizerName): Bytes {
  const w = precision === 'fp32' ? 4 : 2;
  const stateEl = precision === 'bf16' ? 2 : 4;
  return {
    weight: w,
    grad: w,
    master: precision === 'bf16-mixed' ? 4 : 0,
    opt: (optimizer === 'adamw' ? 2 : 1) * stateEl,
  };
}

const EPS = 1e-9;

/** Layer-granular placement: in layer order, the layers whose sizes fit in `fraction` of the total
 *  are resident (true); the others are not. fraction 1 keeps all, 0 none. */
export function residentLayers(sizes: ArrayLike<number>, fraction: number): boolean[] {
  let total = 0;
  for (let i = 0; i < sizes.length; i++) total += sizes[i]!;
  const budget = fraction * total * (1 + EPS);
  const out: boolean[] = new Array(sizes.length);
  let used = 0;
  for (let i = 0; i < sizes.length; i++) {
    const s = sizes[i]!;
    if (fraction >= 1 - EPS || used + s <= budget) { out[i] = true; used += s; } else out[i] = false;
  }
  return out;
}

/** Elements of an `n`-element group updated on the GPU for a GPU fraction `g`. */
export function gpuElements(n: number, g: number): number {
  return Math.round(n * g);
}

/** Parameters a rank stores for layer `layer` (a tied head away from the embedding holds a copy). */
export function storedParams(inv: Inventory, layer: number, headHasEmbedding: boolean): number {
  const t = layerTable(inv);
  return t.kind[layer] === KIND_HEAD && !headHasEmbedding ? t.usesParams[layer]! : t.params[layer]!;
}


/** Micro-batches in flight on `stage` (0-based of K non-interleaved stages) for gpipe and 1F1B. */
export function inFlightFormula(schedule: ScheduleName, stage: number, stages: number, microBatches: number): number {
  if (schedule === 'gpipe') return microBatches;
  return Math.min(microBatches, stages - stage);
}

/** Per rank, the largest number of kept (forward done, backward not yet) micro-batch stage
 *  activations weighted by `bytes[stage]`, read off the program. */
export function programActivationPeak(program: Program, rank: number, bytes: (stage: number) => number): { peak: number; inFlight: number } {
  let live = 0, peak = 0, count = 0, peakCount = 0;
  for (const ins of program.ranks[rank] ?? []) {
    if (ins.op === 'forward') {
      live += bytes(ins.stage); count++;
      if (live > peak) { peak = live; peakCount = count; }
    } else if (ins.op === 'backward') { live -= bytes(ins.stage); count--; }
  }
  return { peak, inFlight: peakCount };
}

/** A program of only the forward and backward passes of a schedule on each of `N` ranks (`v`
 *  stages a rank, `M` micro-batches): the generators emit one forward / backward instruction per
 *  pass in this order, so micro-batches in flight count the same off it as off the full program.
 *  Memoised (the search asks for the same few many times; it is only read). */
export function passProgram(schedule: ScheduleName, N: number, v: number, M: number): Program {
  const key = `${schedule}|${N}|${v}|${M}`;
  let p = passPrograms.get(key);
  if (!p) {
    p = {
      ranks: Array.from({ length: N }, (_, r) => schedulePasses(schedule, N, v, M, r).map((x): Program['ranks'][number][number] =>
        (x.kind === 'F' ? { op: 'forward', mb: x.mb, stage: x.stage } : { op: 'backward', mb: x.mb, stage: x.stage }))),
    };
    if (passPrograms.size > 256) passPrograms.clear();
    passPrograms.set(key, p);
  }
  return p;
}
const passPrograms = new Map<string, Program>();

/** programActivationPeak of the GPU-kept and of the host-kept bytes per stage at once. */
/** Per rank, off the program: the kept activations' peak (and micro-batches in flight at it), the
 *  host-kept activations' peak, and the peak of kept activations plus the device gradients present
 *  (`grads[stage]`, allocated at the end of the stage's first backward, after that backward freed
 *  its micro-batch's activations: in between, the layers' gradients grow as their activations go). */
function activationPeaks(program: Program, rank: number, gpu: Float64Array, host: Float64Array, grads: Float64Array): { peak: number; inFlight: number; hostPeak: number; withGrads: number } {
  let live = 0, peak = 0, count = 0, peakCount = 0, hLive = 0, hPeak = 0, gNow = 0, both = 0;
  const seen = scratchF64(3, grads.length).fill(0, 0, grads.length);  // 1: the stage's gradients exist
  const ins = program.ranks[rank] ?? [];
  for (let i = 0; i < ins.length; i++) {
    const x = ins[i]!;
    if (x.op === 'forward') {
      live += gpu[x.stage]!; hLive += host[x.stage]!; count++;
      if (live > peak) { peak = live; peakCount = count; }
      if (hLive > hPeak) hPeak = hLive;
      if (live + gNow > both) both = live + gNow;
    } else if (x.op === 'backward') {
      live -= gpu[x.stage]!; hLive -= host[x.stage]!; count--;
      if (!seen[x.stage]) { seen[x.stage] = 1; gNow += grads[x.stage]!; }
      if (live + gNow > both) both = live + gNow;
    }
  }
  return { peak, inFlight: peakCount, hostPeak: hPeak, withGrads: both };
}

/** The same for one non-interleaved stage in closed form: `n` micro-batches in flight at the first
 *  backward, of `M`, `k` bytes kept each, `G` bytes of gradients. GPipe and 1F1B run n forwards,
 *  then the first backward ((n - 1) k + G after it); 1F1B with micro-batches left then holds
 *  n in flight again, now with the gradients. */
export function activationGradientPeak(n: number, M: number, k: number, G: number): number {
  if (n <= 0) return 0;
  return M > n ? n * k + G : Math.max(n * k, (n - 1) * k + G);
}

function checkFractions(f: Fractions, what: string): void {
  const s = f.gpu + f.cpu + f.disk;
  if ([f.gpu, f.cpu, f.disk].some((x) => !(x >= 0 && x <= 1)) || Math.abs(s - 1) > 1e-6) {
    throw new InputError(`${what}: gpu ${f.gpu} + cpu ${f.cpu} + disk ${f.disk} must be fractions adding up to 1`);
  }
}

export interface PolicyProblem {
  /** The StagePolicy field at fault ('dataParallel' for the layout). */
  field: 'params' | 'grads' | 'master' | 'optState' | 'activations' | 'prefetchDepth' | 'dataParallel';
  message: string;
}

/** Placement rules every policy must obey (the plan validator and `mmoc memory` share them). */
export function policyProblems(p: StagePolicy, precision: Precision, dataParallel: number): PolicyProblem[] {
  const out: PolicyProblem[] = [];
  const add = (field: PolicyProblem['field'], message: string) => out.push({ field, message });
  if (p.params.disk > 0) add('params', 'parameters cannot live on disk (use cpu to stream them from pinned memory)');
  if (p.grads.disk > 0) add('grads', 'gradients cannot live on disk');
  if (p.activations.disk > 0) add('activations', 'activations cannot live on disk');
  if (p.activations.cpu > 0 && !p.recompute) add('activations', 'offloading activations needs recompute (only checkpointed stage inputs are offloaded)');
  if (p.params.gpu < 1 && p.optState.gpu > 0) add('optState', 'streamed parameters (params gpu < 1) need the optimizer update on the host (optState gpu 0)');
  if (p.grads.gpu < 1 && p.optState.gpu > 0) add('optState', 'gradients accumulated on the host (grads gpu < 1) need the optimizer update on the host (optState gpu 0)');
  if (precision === 'bf16-mixed' && (Math.abs(p.master.gpu - p.optState.gpu) > 1e-9 || Math.abs(p.master.cpu - p.optState.cpu) > 1e-9)) {
    add('master', 'master weights must live where the optimizer states live (the update runs where both are)');
  }
  if (dataParallel > 1 && p.grads.gpu < 1) add('dataParallel', 'data parallelism needs gradients on the GPU (they are all-reduced there)');
  if (!Number.isInteger(p.prefetchDepth) || p.prefetchDepth < 1) add('prefetchDepth', `prefetchDepth (${p.prefetchDepth}) must be an integer >= 1`);
  return out;
}

/** Per-layer placement of one stage under its policy: the single source of truth for generators,
 *  the memory model and the lowering. Typed arrays (flags 1/0): one shape for every stage, which
 *  the search's many thousands of placements need to stay fast. */
export interface StagePlacement {
  layers: Int32Array;
  /** Stored parameters per layer (same order as `layers`). */
  params: Float64Array;
  /** Params resident on the GPU (else streamed from host). */
  paramsResident: Uint8Array;
  /** Grads accumulated on the GPU (else offloaded after each backward, accumulated on host). */
  gradsResident: Uint8Array;
  /** Elements of each layer updated on the GPU (master + optimizer state there). */
  gpuElems: Float64Array;
  /** Host-side state of the layer in pinned memory (1) or on disk (0). */
  hostStateInCpu: Uint8Array;
}

export function placeStage(inv: Inventory, spec: StageSpec, p: StagePolicy, headHasEmbedding: boolean): StagePlacement {
  const lo = spec.layers[0], n = Math.max(0, spec.layers[1] - lo);
  const layers = new Int32Array(n), params = new Float64Array(n), gpuElems = new Float64Array(n), hostSide = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    layers[i] = lo + i;
    params[i] = storedParams(inv, lo + i, headHasEmbedding);
    gpuElems[i] = gpuElements(params[i]!, p.optState.gpu);
    hostSide[i] = params[i]! - gpuElems[i]!;
  }
  const hostCpuShare = p.optState.cpu + p.optState.disk > 0 ? p.optState.cpu / (p.optState.cpu + p.optState.disk) : 1;
  const pl = {
    layers,
    params,
    paramsResident: residentFlags(params, p.params.gpu),
    gradsResident: residentFlags(params, p.grads.gpu),
    gpuElems,
    hostStateInCpu: residentFlags(hostSide, hostCpuShare),
  };
  // A tied embedding whose head is on another rank: both ranks keep a copy, sum its gradient across
  // the two and apply the same update (native/src/runtime.cpp syncTied); that runs on the GPU, so
  // the two tied layers keep their weights, gradients and update there whatever the policy says.
  if (inv.model.tie_word_embeddings && !headHasEmbedding) {
    const L = inv.model.num_hidden_layers;
    for (let i = 0; i < n; i++) {
      if (lo + i !== 0 && lo + i !== L + 1) continue;
      pl.gpuElems[i] = params[i]!;
      hostSide[i] = 0;
      pl.paramsResident[i] = 1;
      pl.gradsResident[i] = 1;
      pl.hostStateInCpu[i] = 1;
    }
  }
  return pl;
}

/** residentLayers as 1/0 flags. */
function residentFlags(sizes: Float64Array, fraction: number): Uint8Array {
  const r = residentLayers(sizes, fraction);
  const out = new Uint8Array(r.length);
  for (let i = 0; i < r.length; i++) out[i] = r[i] ? 1 : 0;
  return out;
}

/** Ids of the contents of a policy that placement (`place`) and a stage's memory (`mem`, but for
 *  the prefetch depth, which memoryModel applies) depend on:
 *  equal contents, equal ids. Kept per policy object, with the fields they were derived from (a
 *  policy changed since gets new ones). */
interface PolicyIds {
  paramsGpu: number; gradsGpu: number; optGpu: number; optCpu: number; optDisk: number; recompute: 0 | 1 | 2; actCpu: number; prefetch: number;
  place: number; mem: number;
}
const policyIds = new WeakMap<StagePolicy, PolicyIds>();
const placeIdOfText = new Map<string, number>(), memIdOfText = new Map<string, number>();
function idsOf(p: StagePolicy): PolicyIds {
  const e = policyIds.get(p);
  if (e && e.paramsGpu === p.params.gpu && e.gradsGpu === p.grads.gpu && e.optGpu === p.optState.gpu && e.optCpu === p.optState.cpu
    && e.optDisk === p.optState.disk && e.recompute === recomputeMode(p) && e.actCpu === p.activations.cpu && e.prefetch === p.prefetchDepth) return e;
  const placeText = `${p.params.gpu},${p.grads.gpu},${p.optState.gpu},${p.optState.cpu},${p.optState.disk}`;
  let place = placeIdOfText.get(placeText);
  if (place === undefined) { place = placeIdOfText.size; placeIdOfText.set(placeText, place); }
  const memText = `${place},${recomputeMode(p)},${p.activations.cpu}`;
  let mem = memIdOfText.get(memText);
  if (mem === undefined) { mem = memIdOfText.size; memIdOfText.set(memText, mem); }
  const ids: PolicyIds = {
    paramsGpu: p.params.gpu, gradsGpu: p.grads.gpu, optGpu: p.optState.gpu, optCpu: p.optState.cpu, optDisk: p.optState.disk,
    recompute: recomputeMode(p), actCpu: p.activations.cpu, prefetch: p.prefetchDepth, place, mem,
  };
  policyIds.set(p, ids);
  return ids;
}

/** placeStage, memoised per (inventory, policy contents, stage range, headHasEmbedding) for callers
 *  that place the same stages under the same policies many times (the search). The result is
 *  shared: callers must not change it. */
export function placeStageCached(inv: Inventory, spec: StageSpec, p: StagePolicy, headHasEmbedding: boolean): StagePlacement {
  const lo = spec.layers[0], hi = spec.layers[1];
  if (!(lo >= 0 && hi < 4096)) return placeStage(inv, spec, p, headHasEmbedding);
  let m = placeCache.get(inv);
  if (!m) { m = new Map(); placeCache.set(inv, m); }
  const key = ((idsOf(p).place * 4096 + lo) * 4096 + hi) * 2 + (headHasEmbedding ? 1 : 0);
  let place = m.get(key);
  if (!place) { place = placeStage(inv, spec, p, headHasEmbedding); m.set(key, place); }
  return place;
}
const placeCache = new WeakMap<Inventory, Map<number, StagePlacement>>();

/** Does the rank that runs the head also run the embedding (tied weights need no copy)? */
export function headHasEmbedding(stages: StageSpec[]): boolean {
  const first = stages[0]!, last = stages[stages.length - 1]!;
  return first.rank === last.rank;
}

/** How a policy recomputes: 0 not at all, 1 the whole stage from its input, 2 layer by layer. */
export function recomputeMode(p: StagePolicy): 0 | 1 | 2 {
  return !p.recompute ? 0 : p.recomputeUnit === 'layer' ? 2 : 1;
}

/** Activation bytes of one micro-batch of a stage: `full` every layer's (no recompute), `kept` what
 *  stays between its forward and backward (the stage input, or every layer's input with per-layer
 *  recompute), split into `gpu` and `host` (activation offload), `work` what recompute brings
 *  back at once (the whole stage's, or the largest layer's with per-layer recompute), and `staging`
 *  the device bytes activation offload moves at once (the stage input out and back in; per layer,
 *  each input leaves as it is made and comes back one layer ahead: two at a time). */
export function stageKeptBytes(inv: Inventory, spec: StageSpec, p: StagePolicy): { full: number; kept: number; gpu: number; host: number; work: number; staging: number } {
  let full = 0, inputs = 0, maxLayer = 0, maxInput = 0;
  const t = layerTable(inv);
  for (let l = spec.layers[0]; l < spec.layers[1]; l++) {
    full += t.keptBytes[l]!;
    inputs += t.inputBytes[l]!;
    maxLayer = Math.max(maxLayer, t.keptBytes[l]!);
    maxInput = Math.max(maxInput, t.inputBytes[l]!);
  }
  const mode = recomputeMode(p);
  const input = t.inputBytes[spec.layers[0]]!;
  const kept = mode === 0 ? full : mode === 1 ? input : inputs;
  const host = mode === 0 ? 0 : Math.round(kept * p.activations.cpu);
  const work = mode === 0 ? 0 : mode === 1 ? full : maxLayer;
  const staging = host === 0 ? 0 : mode === 1 ? 2 * host : 2 * maxInput;
  return { full, kept, gpu: kept - host, host, work, staging };
}

/** What one stage under its policy adds to its rank's memory (memoryModel sums these per rank;
 *  every figure is an integer count of bytes, so the sums do not depend on the order). Disk bytes
 *  are for one replica. */
interface StageMemory {
  weights: number; grads: number; master: number; opt: number;
  hW: number; hG: number; hM: number; hO: number;
  diskMaster: number; diskOpt: number; diskGroups: number; maxDiskGroup: number;
  /** The embedding's dense backward gradient (0 without it). */
  embeddingGradWs: number;
  /** Streamed layers and the largest of them (bytes): the parameter buffers hold prefetch depth + 1. */
  streamed: number; maxStreamed: number;
  gradBuf: number;
  hasHead: boolean; hasDecoder: boolean;
  /** Set-up (native/src/runtime.cpp settleLayer): a layer is built on the device with its whole fp32
   *  master, then its host part moves out before the next is built: the largest such layer's master
   *  (and a streamed layer's weights), and whether any layer is updated on the host. */
  loadMaster: number; hostUpdated: boolean;
  /** Largest layer gradient (the data-parallel all-reduce bucket). */
  maxLayerGrad: number;
  kept: { full: number; kept: number; gpu: number; host: number; work: number; staging: number };
}

function stageMemory(inv: Inventory, spec: StageSpec, p: StagePolicy, tiedTogether: boolean, B: Bytes, shard: number): StageMemory {
  const pl = placeStageCached(inv, spec, p, tiedTogether);
  const table = layerTable(inv);
  let weights = 0, grads = 0, master = 0, opt = 0, hW = 0, hG = 0, hM = 0, hO = 0;
  let diskMaster = 0, diskOpt = 0, diskGroups = 0, maxDiskGroup = 0, embeddingGradWs = 0, maxLayerGrad = 0;
  let maxStreamed = 0, streamed = 0, maxHostGrad = 0, hasDecoder = false, hasHead = false;
  let loadMaster = 0, hostUpdated = false;
  for (let i = 0; i < pl.layers.length; i++) {
    const n = pl.params[i]!;
    const kind = table.kind[pl.layers[i]!]!;
    if (kind === KIND_DECODER) hasDecoder = true;
    if (kind === KIND_HEAD) hasHead = true;
    // The embedding's backward materializes a dense vocab x hidden gradient (at::embedding's
    // backward) before it is added to the stored one.
    if (kind === KIND_EMBEDDING && pl.gradsResident[i]) embeddingGradWs = Math.max(embeddingGradWs, n * B.grad);
    maxLayerGrad = Math.max(maxLayerGrad, n * B.grad);
    const g = pl.gpuElems[i]!, hostEl = n - g;
    if (pl.paramsResident[i]) weights += n * B.weight;
    else { hW += n * B.weight; streamed++; maxStreamed = Math.max(maxStreamed, n * B.weight); }
    // A CPU update writes the new compute-precision weights on the host before the upload.
    if (pl.paramsResident[i] && hostEl > 0) hW += hostEl * B.weight;
    if (pl.gradsResident[i]) grads += n * B.grad;
    else maxHostGrad = Math.max(maxHostGrad, n * B.grad);
    // Host gradients: host-accumulated layers in full, else the CPU-updated part.
    if (!pl.gradsResident[i]) hG += n * B.grad; else hG += hostEl * B.grad;
    master += Math.ceil(g / shard) * B.master;
    opt += Math.ceil(g / shard) * B.opt;
    if (hostEl > 0 && B.master > 0) {
      hostUpdated = true;
      loadMaster = Math.max(loadMaster, n * (B.master + (pl.paramsResident[i] ? 0 : B.weight)));
    }
    const hm = Math.ceil(hostEl / shard) * B.master, ho = Math.ceil(hostEl / shard) * B.opt;
    if (pl.hostStateInCpu[i]) { hM += hm; hO += ho; } else if (hostEl > 0) {
      diskMaster += hm; diskOpt += ho; diskGroups++;
      maxDiskGroup = Math.max(maxDiskGroup, hm + ho);
    }
  }
  return {
    weights, grads, master, opt, hW, hG, hM, hO, diskMaster, diskOpt, diskGroups, maxDiskGroup, embeddingGradWs,
    streamed, maxStreamed,
    gradBuf: maxHostGrad > 0 ? 2 * maxHostGrad : 0,
    hasHead, hasDecoder, loadMaster, hostUpdated, maxLayerGrad, kept: stageKeptBytes(inv, spec, p),
  };
}

/** stageMemory, memoised like placeStageCached (by the policy contents it reads, the optimizer and
 *  the sharding). Shared: callers must not change it. */
function stageMemoryCached(inv: Inventory, spec: StageSpec, p: StagePolicy, tiedTogether: boolean, optimizer: OptimizerName, B: Bytes, shard: number): StageMemory {
  const lo = spec.layers[0], hi = spec.layers[1];
  if (!(lo >= 0 && hi < 4096)) return stageMemory(inv, spec, p, tiedTogether, B, shard);
  let m = stageMemCache.get(inv);
  if (!m) { m = new Map(); stageMemCache.set(inv, m); }
  const key = ((((idsOf(p).mem * 4096 + lo) * 4096 + hi) * 2 + (tiedTogether ? 1 : 0)) * 2) + (optimizer === 'adamw' ? 0 : 1);
  const e = m.get(key);
  if (e && e.shard === shard) return e.mem;
  const mem = stageMemory(inv, spec, p, tiedTogether, B, shard);
  m.set(key, { shard, mem });
  return mem;
}
const stageMemCache = new WeakMap<Inventory, Map<number, { shard: number; mem: StageMemory }>>();

/** Scratch arrays of memoryModel by slot (at least n long; contents undefined): the search runs it
 *  many thousand times. */
const scratchF64s: Float64Array[] = [];
function scratchF64(slot: number, n: number): Float64Array {
  let a = scratchF64s[slot];
  if (!a || a.length < n) { a = new Float64Array(Math.max(64, 2 * n)); scratchF64s[slot] = a; }
  return a;
}

/** The memory model. Throws InputError on an inconsistent job. */
export function memoryModel(job: MemoryJob): MemoryReport {
  const K = job.stages.length;
  if (job.policy.length !== K) throw new InputError(`memory: ${K} stages but ${job.policy.length} policies`);
  const inv = job.inventory ?? buildInventory(job.model, job.precision, job.mbs, job.seq, job.lossChunkTokens ?? 0);
  const B = bytesPerParam(job.precision, job.optimizer);
  const D = job.dataParallel;
  const shard = job.zero1 && D > 1 ? D : 1;
  const a = inv.actBytes;
  const T = job.mbs * job.seq;
  const h = job.model.hidden_size, I = job.model.intermediate_size;
  const tiedTogether = headHasEmbedding(job.stages);
  const N = job.pipelineRanks;
  const virtual = K / N;
  const diskPaths = Math.max(1, job.diskPaths ?? 1);
  const diskConc = Math.max(1, job.diskConcurrency ?? 2);

  const devices: DeviceMemory[] = [];
  const hostPerRank: HostMemory[] = [];
  let diskMaster = 0, diskOpt = 0;

  for (let r = 0; r < N; r++) {
    const myStages: number[] = [];
    for (let s = 0; s < K; s++) if (job.stages[s]!.rank === r) myStages.push(s);
    let weights = 0, grads = 0, master = 0, opt = 0;
    let hW = 0, hG = 0, hM = 0, hO = 0, hAct = 0, hBuf = 0;
    let lossWs = 0, recompute = 0, bwdWs = 0, paramBuf = 0, gradBuf = 0, actStage = 0, comm = 0;
    let perMb = 0;
    let maxDiskGroup = 0, diskGroups = 0;
    let loadMaster = 0, hostUpdated = false;
    const keptByStage = scratchF64(0, K).fill(0, 0, K), keptHostByStage = scratchF64(1, K).fill(0, 0, K);
    const gradsByStage = scratchF64(2, K).fill(0, 0, K);
    let actBytes = 0, inFlightPeak = 0, actGrads = 0;

    let maxLayerGrad = 0;
    for (const s of myStages) {
      const spec = job.stages[s]!, p = job.policy[s]!;
      const m = stageMemoryCached(inv, spec, p, tiedTogether, job.optimizer, B, shard);
      weights += m.weights; grads += m.grads; master += m.master; opt += m.opt;
      gradsByStage[s] = m.grads;
      hW += m.hW; hG += m.hG; hM += m.hM; hO += m.hO;
      diskMaster += m.diskMaster * D; diskOpt += m.diskOpt * D; diskGroups += m.diskGroups;
      maxDiskGroup = Math.max(maxDiskGroup, m.maxDiskGroup);
      // the embedding's dense gradient of a micro-batch (before it is added to .grad) exists at the
      // end of that micro-batch's backward through the stage, whose kept activations autograd has
      // freed by then: it adds only what it exceeds them by
      bwdWs = Math.max(bwdWs, m.embeddingGradWs - m.kept.gpu);
      if (m.streamed > 0) paramBuf = Math.max(paramBuf, Math.min(p.prefetchDepth + 1, m.streamed) * m.maxStreamed);
      gradBuf = Math.max(gradBuf, m.gradBuf);
      maxLayerGrad = Math.max(maxLayerGrad, m.maxLayerGrad);
      loadMaster = Math.max(loadMaster, m.loadMaster);
      hostUpdated = hostUpdated || m.hostUpdated;
      const k = m.kept;
      keptByStage[s] = k.gpu;
      keptHostByStage[s] = k.host;
      perMb += k.gpu;
      recompute = Math.max(recompute, k.work);
      actStage = Math.max(actStage, k.staging);
      // Beyond the kept fp32 log-probabilities: in the forward the bf16 logits and their fp32 copy
      // (a + 4 bytes a logit), freed when it returns; in the backward the gradients of the
      // log-probabilities and of the fp32 logits (4 + 4 bytes). The caching allocator reserves both:
      // the first backward buffer takes the fp32 copy's block, the second fits in no freed block (the
      // bf16 logits' is half its size), so a + 8 bytes a logit stay reserved, not max(a + 4, 8)
      // (the measured reserved-over-allocated of the 1B head ranks: T x V x 2 bytes).
      if (m.hasHead) lossWs = Math.max(lossWs, inv.lossWorkspaceBytes);
      if (m.hasDecoder) bwdWs = Math.max(bwdWs, T * (2 * h + 2 * I) * a);
      const boundary = T * h * a;
      comm = Math.max(comm, (s < K - 1 ? 2 * boundary : 0) + (s > 0 ? boundary : 0));
    }
    if (D > 1) comm += maxLayerGrad;
    if (diskGroups > 0) hBuf = Math.min(diskGroups, diskPaths * diskConc + 1) * maxDiskGroup;

    // Activations in flight at the peak.
    if (virtual === 1 && !job.program) {
      const s = myStages[0];
      if (s !== undefined) {
        inFlightPeak = inFlightFormula(job.schedule, s, K, job.microBatches);
        actBytes = inFlightPeak * keptByStage[s]!;
        hAct = inFlightPeak * keptHostByStage[s]!;
        actGrads = activationGradientPeak(inFlightPeak, job.microBatches, keptByStage[s]!, gradsByStage[s]!);
      }
    } else {
      const pk = activationPeaks(job.program ?? passProgram(job.schedule, N, virtual, job.microBatches), r, keptByStage, keptHostByStage, gradsByStage);
      actBytes = pk.peak; inFlightPeak = pk.inFlight;
      hAct = pk.hostPeak;
      actGrads = pk.withGrads;
    }
    // a rank with no backward in its program (none here) would hold its gradients all step
    actGrads = Math.max(actGrads, actBytes, grads);

    const temporary: TemporaryMemory = {
      lossWorkspace: lossWs, recompute, backward: bwdWs, paramBuffers: paramBuf, gradBuffers: gradBuf,
      actStaging: actStage, comm, total: 0,
    };
    temporary.total = lossWs + recompute + bwdWs + paramBuf + gradBuf + actStage + comm;
    // The set-up transient: the resident weights, the device's masters and states, and the layer
    // being built (its whole fp32 master). Building every layer before moving any out held 6 bytes
    // a parameter (13B capped at 48 GiB, host AdamW: 36.37 GiB allocated = 3 x its bf16 weights,
    // bench/gpu/targets-2026-11-22-h200x2); layers now settle one by one.
    const load = hostUpdated ? weights + master + opt + loadMaster : 0;
    const train = weights + master + opt + actGrads + temporary.total;
    const live = Math.max(train, load);
    const overhead = (job.overheadBytes ?? 0) + ncclExtraBytes(job, r) + Math.round(live * (job.allocatorOverheadFraction ?? 0));
    const total = live + overhead;
    devices.push({
      rank: r, stages: myStages, weights, gradients: grads, stageGradients: myStages.map((s) => gradsByStage[s]!), masterWeights: master, optimizerStates: opt,
      activations: { perMicroBatch: perMb, inFlight: inFlightPeak, bytes: actBytes, withGradients: actGrads },
      temporary, load, overhead, total,
    });
    hostPerRank.push({
      weights: hW, gradients: hG, masterWeights: hM, optimizerStates: hO, activations: hAct, buffers: hBuf,
      total: hW + hG + hM + hO + hAct + hBuf,
    });
  }
  let hostTotal = 0;
  for (const hm of hostPerRank) hostTotal += hm.total * D;
  let peak = 0;
  for (const d of devices) peak = Math.max(peak, d.total);
  return {
    params: inv.params, devices, hostPerRank, hostTotal,
    disk: { masterWeights: diskMaster, optimizerStates: diskOpt, total: diskMaster + diskOpt },
    peak,
  };
}

/** NCCL device memory of rank `r` beyond a 2-rank 1F1B rank's (which the profile's
 *  comm_buffer_bytes measures): every communicator holds its own buffers, and every peer and
 *  direction a rank sends to or receives from on the forward and backward communicators its own
 *  connection (the executor: native/src/runtime.cpp, fwd / bwd / world, tied, dp). */
export function ncclExtraBytes(job: Pick<MemoryJob, 'model' | 'stages' | 'dataParallel' | 'commGroupBytes' | 'p2pConnectionBytes'>, r: number): number {
  const G = job.commGroupBytes ?? 0, C = job.p2pConnectionBytes ?? 0;
  if (G === 0 && C === 0) return 0;
  const st = job.stages, K = st.length;
  const first = st[0]!.rank, last = st[K - 1]!.rank;
  let groups = job.dataParallel > 1 ? 1 : 0;
  // a tied embedding split across ranks: its gradient is summed on a communicator of its two ranks
  if (job.model.tie_word_embeddings && first !== last && (r === first || r === last)) groups++;
  const conns = new Set<string>();
  for (let s = 0; s < K - 1; s++) {
    const a = st[s]!.rank, b = st[s + 1]!.rank;
    if (a === b) continue;
    // activations a -> b on the forward communicator, gradients b -> a on the backward one
    if (r === a) { conns.add(`fs${b}`); conns.add(`br${b}`); }
    if (r === b) { conns.add(`fr${a}`); conns.add(`bs${a}`); }
  }
  return groups * G + Math.max(0, conns.size - 2) * C;
}

/** Splits layers 0..L+1 into `count` contiguous stages: decoder layers as even as possible (the
 *  first stages take the remainder), the embedding with the first, the head with the last. */
export function evenPartition(numLayers: number, count: number): [number, number][] {
  if (count < 1) throw new InputError(`stages (${count}) must be at least 1`);
  if (count > numLayers + 2) throw new InputError(`stages (${count}) exceed the model's ${numLayers + 2} layers (embedding, ${numLayers} decoder layers, head)`);
  const out: [number, number][] = [];
  if (count > numLayers) {
    // More stages than decoder layers: spread all L+2 layers evenly.
    const n = numLayers + 2, base = Math.floor(n / count), extra = n % count;
    let lo = 0;
    for (let s = 0; s < count; s++) { const hi = lo + base + (s < extra ? 1 : 0); out.push([lo, hi]); lo = hi; }
    return out;
  }
  // Decoder layers as even as possible (the first stages take the remainder); the embedding joins
  // the first stage, the head the last.
  const base = Math.floor(numLayers / count), extra = numLayers % count;
  let lo = 0;
  for (let s = 0; s < count; s++) {
    let n = base + (s < extra ? 1 : 0);
    if (s === 0) n += 1;
    const hi = s === count - 1 ? numLayers + 2 : lo + n;
    out.push([lo, hi]);
    lo = hi;
  }
  return out;
}

export const ALL_GPU: Fractions = { gpu: 1, cpu: 0, disk: 0 };

export function defaultPolicy(recompute = false): StagePolicy {
  return {
    params: { ...ALL_GPU }, grads: { ...ALL_GPU }, master: { ...ALL_GPU }, optState: { ...ALL_GPU },
    activations: { ...ALL_GPU }, recompute, ...(recompute ? { recomputeUnit: 'layer' as const } : {}), prefetchDepth: 1,
  };
}

export { checkFractions };
