// Lowering: a plan's per-rank program into sim/ tasks, costed from the inventory and the hardware
// profile, with the memory effects of memory.ts (so that the simulated peak per device equals the
// memory model's for the same plan).
//
// How instructions become tasks (the dependency rules both interpreters follow):
//  - Compute (forward, backward, GPU optimizer_step) runs on the rank's compute stream in program
//    order. A forward/backward waits for the receive before it (recv_act / recv_grad), the
//    reload_act of its micro-batch, and the fetch_params of the streamed layers it uses (a stage
//    with streamed layers is lowered layer by layer so that each layer waits only for its own
//    fetch).
//  - Sends are asynchronous: a transfer on the sender's comm stream after the pass that produced
//    the tensor; the matching receive has no task of its own: the pass after it waits for the send.
//  - fetch_params / upload_params / reload_act run on the host-to-device stream, offload_grads /
//    offload_act on the device-to-host stream, in program order. A fetch waits for a free slot:
//    the layer use prefetchDepth+1 fetches earlier must be done (release_params).
//  - offload_grads waits for the last backward before it; a backward that streams gradients to
//    the host waits for the previous such pass's last offload (staging buffers), and a forward
//    that offloads its input for the offload two forwards before; allreduce_grads for that backward too,
//    and runs when every replica of the stage has arrived (a ring over the replicas' route).
//  - CPU optimizer_step runs on the host CPU pool after the layer's last offload_grads and its
//    disk_read; upload_params waits for the CPU step of its layer; disk_write waits for the CPU step;
//    a disk_read waits for the disk_write issued just before it on the rank (bounded staging).
//  - grad_norm waits for every rank to reach it (a global all-reduce of one number).
//  - barrier waits for every task of the rank so far; a step ends when every rank's barrier ends.
import {
  SimGraph, GrowI32, GrowF64, buildMachine, simulate, updateShownShare, gemmTime_us, attentionTime_us, elementwiseTime_us, optimizerBytesPerUs, kernelTime_us, computeOf,
  type HardwareProfile, type Machine, type MachineGpu, type SimResult, type TaskId, type MemEffect, type Dtype, type TaskMeta,
} from '../sim/index.ts';
import type { Plan, StagePolicy } from './plan-types.ts';
import type { Instr, StageSpec } from './program.ts';
import { decoderParams, planInventory, type Inventory } from './inventory.ts';
import { bytesPerParam, headHasEmbedding, recomputeMode, memoryModel, placeStageCached, stageKeptBytes, type Bytes, type MemoryReport, type StagePlacement } from './memory.ts';
import { InputError } from './errors.ts';
import { diskAlternates, diskBuffersFor } from './program-gen.ts';
import { hostThreadsPerRank } from './host-threads.ts';
import { earlyUpdateLayers } from './early-update.ts';

/** Elements of a stage's layer `i` updated on the host (its master and AdamW state there): what its
 *  offload_grads copies down, its upload_params up and its disk transfers move (runtime.cpp: a layer
 *  split between the tiers moves the host part only). */
const hostElems = (pl: StagePlacement, i: number) => pl.params[i]! - pl.gpuElems[i]!;

export interface LayerTimes {
  fwd: Float64Array;
  bwd: Float64Array;
}

const timeCache = new WeakMap<Inventory, Map<HardwareProfile, LayerTimes>>();

/** Forward and backward time (us) of one micro-batch through each inventory layer on one device of
 *  `profile` (all GPUs of a profile alike). */
export function layerTimes(inv: Inventory, profile: HardwareProfile): LayerTimes {
  let m = timeCache.get(inv);
  if (!m) { m = new Map(); timeCache.set(inv, m); }
  const hit = m.get(profile);
  if (hit) return hit;
  const dtype: Dtype = inv.precision === 'fp32' ? 'fp32' : 'bf16';
  const dev = profile.gpus.kind === 'cpu' ? 'cpu' : 'gpu';
  const c = computeOf(profile, dev);
  const useDtype: Dtype = c.peak_tflops[dtype] !== undefined ? dtype : (Object.keys(c.peak_tflops)[0] as Dtype);
  const n = inv.layers.length;
  const fwd = new Float64Array(n), bwd = new Float64Array(n);
  const a = inv.actBytes, T = inv.mbs * inv.seq, mc = inv.model;
  const launch = profile.overheads.kernel_launch_us;
  for (let i = 0; i < n; i++) {
    const l = inv.layers[i]!;
    let f = 0, b = 0, nf = 0, nb = 0; // device time; kernel launches
    for (const g of l.gemms) {
      if (g.name.startsWith('attn.')) continue;
      const t = gemmTime_us(profile, dev, useDtype, g.m, g.n, g.k).us * g.batch;
      if (g.pass === 'fwd') f += t; else b += t;
    }
    if (l.kind === 'decoder') {
      const shape = { batch: inv.mbs, heads: mc.num_attention_heads, kv_heads: mc.num_key_value_heads, seq: inv.seq, head_dim: mc.head_dim, causal: true };
      f += attentionTime_us(profile, dev, useDtype, shape, 'fwd').us;
      b += attentionTime_us(profile, dev, useDtype, shape, 'bwd').us;
      // Norms, rotary, SiLU*up, residual adds: about 12 T*h and 4 T*I elements read+written (two
      // norms 4 T*h, two adds 6 T*h, rotary 2 T*h, SwiGLU 4 T*I), each kernel at its own rate;
      // the backward moves twice as much.
      const Th = T * mc.hidden_size * a;
      const ew = kernelTime_us(profile, dev, 'rmsnorm', 4 * Th).us + kernelTime_us(profile, dev, 'add', 6 * Th).us
        + kernelTime_us(profile, dev, 'rotary', 2 * Th).us + kernelTime_us(profile, dev, 'swiglu', 4 * T * mc.intermediate_size * a).us;
      f += ew; nf = 20;
      b += 2 * ew; nb = 40;
    } else if (l.kind === 'embedding') {
      f += elementwiseTime_us(profile, dev, 2 * T * mc.hidden_size * a).us; nf = 1;
      b += elementwiseTime_us(profile, dev, 2 * T * mc.hidden_size * a).us; nb = 2;
    } else {
      // Final norm, the fp32 loss over the logits. The 'loss' rate is calibrate's effective GB/s of
      // an fp32 log-softmax + NLL of compute-precision logits counted as T*V*(a + 4) bytes; the same
      // count here gives back the timed op's duration (the forward and the backward each about one).
      f += kernelTime_us(profile, dev, 'loss', T * mc.vocab_size * (a + 4)).us + kernelTime_us(profile, dev, 'rmsnorm', 4 * T * mc.hidden_size * a).us; nf = 8;
      b += kernelTime_us(profile, dev, 'loss', T * mc.vocab_size * (a + 4)).us + kernelTime_us(profile, dev, 'rmsnorm', 8 * T * mc.hidden_size * a).us; nb = 10;
    }
    // A GPU runs the kernels queued while the host launches the next ones: launches cost time only
    // where they outlast the device work. CPU ranks run each op as it is dispatched.
    fwd[i] = dev === 'gpu' ? Math.max(f, nf * launch) : f + nf * launch;
    bwd[i] = dev === 'gpu' ? Math.max(b, nb * launch) : b + nb * launch;
  }
  const r = { fwd, bwd };
  m.set(profile, r);
  return r;
}

const NO: readonly number[] = [];
const actNames: string[] = [];
/** Interned buffer name of a stage's kept activations of a micro-batch. */
function actName(mb: number, stage: number, K: number): string {
  const i = mb * 64 + stage;
  if (stage >= 64) return `act.${mb}.${stage}`;
  return (actNames[i] ??= `act.${mb}.${stage}`);
}

function realMetaOf(rank: number, pc: number, op: string): TaskMeta {
  return { rank, pc: pc < 0 ? undefined : pc, mb: undefined, stage: undefined, op, layer: undefined, bytes: undefined, flops: undefined };
}
/** A barrier's dependencies: of the rank's tasks, the last of each in-order stream (it ends after
 *  every earlier task of its stream) and every task on no stream (CPU pool, disk, none): exact. */
let lastOnRes = new Int32Array(64), isStream = new Uint8Array(64);
function tails(g: SimGraph, all: Int32Array, n: number, out: IntList): IntList {
  const R = g.resourceCount;
  if (lastOnRes.length < R) { lastOnRes = new Int32Array(2 * R); isStream = new Uint8Array(2 * R); }
  lastOnRes.fill(-1, 0, R);
  for (let r = 0; r < R; r++) isStream[r] = g.resourceKind(r) === 'stream' ? 1 : 0;
  out.n = 0;
  const tRes = g.tRes;
  for (let i = 0; i < n; i++) {
    const t = all[i]!, r = tRes[t]!;
    if (r >= 0 && isStream[r]) lastOnRes[r] = t; else out.push(t);
  }
  for (let r = 0; r < R; r++) if (lastOnRes[r]! >= 0) out.push(lastOnRes[r]!);
  return out;
}

export interface Lowered {
  graph: SimGraph;
  machine: Machine;
  memory: MemoryReport;
  /** Per rank, the machine device index its tasks run on. */
  rankGpu: number[];
  /** Task of each (rank, pc) instruction (-1 for instructions without a task of their own). */
  taskOf: Int32Array[];
  tokens: number;
}

export interface LowerOptions {
  inventory?: Inventory;
  memory?: MemoryReport;
  /** Record memory effects on the host and disk as well (default true). */
  hostMemory?: boolean;
  /** Per-task metadata for traces (default true). */
  meta?: boolean;
  /** Record memory effects (default true; the search judges memory by the model alone). */
  memoryEffects?: boolean;
  /** Lower only the first `replicas` data-parallel replicas (default all). The search simulates
   *  one replica of a symmetric data-parallel plan on a profile whose shared resources are
   *  scaled to that replica's share (replicaProfile). */
  replicas?: number;
  /** Search fidelity: streamed layers of a pass are fetched and computed in at most 2 chunks,
   *  consecutive per-micro-batch gradient offloads of a backward move as one transfer, and a
   *  stage's end-of-step work (offloads, all-reduces, optimizer steps, uploads) in at most 4
   *  chunks of layers. */
  coarse?: boolean;
  /** Build the tasks into a machine graph kept from the previous call with the same profile,
   *  device count and cap (cleared first), into reused task tables (taskOf), and (simulatePlan)
   *  simulate into reused time arrays: for callers that are done with the previous result (the
   *  search). */
  reuseGraph?: boolean;
}

interface StagePre {
  stages: readonly StageSpec[]; inv: Inventory; place: StagePlacement[]; layerStage: Int32Array; layerIdx: Int32Array;
  kept: { full: number; kept: number; gpu: number; host: number }[]; hostGradStage: boolean[];
  /** Per rank program: its coarse end-of-step groups. */
  groups: WeakMap<readonly Instr[], { grpOf: Int32Array; grpAmt: Float64Array; grpEarly: Float64Array }>;
}
const stageCache = new WeakMap<readonly StagePolicy[], StagePre>();

const NO_GROUPS = new Int32Array(0);
const NO_AMOUNTS = new Float64Array(0);

/** Scratch arrays of the lowering, by slot (contents undefined; at least n long; sized for the
 *  search's graphs from the start, so that its hot code does not meet the growth path late). */
const scratchArrays: Int32Array[] = [];
function scratchI32(slot: number, n: number): Int32Array {
  let a = scratchArrays[slot];
  if (!a || a.length < n) { a = new Int32Array(Math.max(4096, 2 * n)); scratchArrays[slot] = a; }
  return a;
}

const machineCache = new WeakMap<HardwareProfile, Map<string, { graph: SimGraph; machine: Machine }>>();
function machineFor(profile: HardwareProfile, gpus: number, cap: number | undefined, reuse: boolean): { graph: SimGraph; machine: Machine } {
  if (!reuse) { const graph = new SimGraph(); return { graph, machine: buildMachine(graph, profile, { gpus, gpuMemoryBytes: cap }) }; }
  let m = machineCache.get(profile);
  if (!m) { m = new Map(); machineCache.set(profile, m); }
  const key = `${gpus}|${cap}`;
  let e = m.get(key);
  if (!e) { const graph = new SimGraph(); e = { graph, machine: buildMachine(graph, profile, { gpus, gpuMemoryBytes: cap }) }; m.set(key, e); }
  else e.graph.clearTasks();
  return e;
}

/** Memory-model overhead per device from the profile: context and the caching allocator's slack,
 *  plus communicator buffers where the plan has more than one rank (`ranks`; unknown: counted). */
export function profileOverheadBytes(profile: HardwareProfile, ranks = 2): number {
  const ov = profile.overheads;
  return profile.gpus.kind === 'cpu' ? 0 : ov.cuda_context_bytes + (ov.allocator_slack_bytes ?? 0) + (ranks > 1 ? ov.comm_buffer_bytes : 0);
}

/** The memory model of a plan (the same inputs the lowering uses). */
export function planMemory(plan: Plan, profile: HardwareProfile, inv?: Inventory): MemoryReport {
  return memoryModel({
    model: plan.model, precision: plan.precision, optimizer: plan.optimizer.name, mbs: plan.job.microBatchSize,
    seq: plan.job.seq, lossChunkTokens: plan.job.lossChunkTokens, microBatches: plan.job.microBatches, schedule: plan.schedule, stages: plan.layout.stages,
    pipelineRanks: plan.layout.pipelineRanks, dataParallel: plan.layout.dataParallel, policy: plan.policy.stages,
    overheadBytes: profileOverheadBytes(profile, plan.layout.pipelineRanks * plan.layout.dataParallel),
    commGroupBytes: profile.overheads.comm_group_bytes, p2pConnectionBytes: profile.overheads.p2p_connection_bytes, allocatorOverheadFraction: profile.overheads.allocator_overhead_fraction, diskPaths: plan.policy.diskPaths.length,
    diskConcurrency: plan.policy.diskConcurrency ?? 2,
    program: plan.layout.virtualStages > 1 ? plan.program : undefined,
    inventory: inv ?? planInventory(plan),
  });
}

/** Scratch lists (task ids, keys, layers), reused from rank to rank and plan to plan. */
type IntList = GrowI32;
const intList = () => new GrowI32(1024);
/** The lists of a lowering (one lowering runs at a time). */
const LISTS = {
  all: intList(), pendingRecv: intList(), useHistory: intList(), fetchTasks: intList(), fetchSlots: intList(),
  offActList: intList(), offLayers: intList(),
  pfLayer: intList(), pfTask: intList(), pfBytes: new GrowF64(1024), pfSlots: intList(), pfMeta: [] as (TaskMeta | undefined)[],
  chLayer: intList(), chTask: intList(), recvBy: intList(), tails: intList(),
  arKey: intList(), arArrive: intList(), arTask: intList(), deps: intList(),
};

/**
 * One lowering: per-plan tables, then per-rank state, with the work of each opcode in a method of
 * its own (the search lowers many thousands of plans: one large function would be recompiled in
 * full each time one of its paths first sees a case, a small method alone is).
 */
class Lowering {
  // ---- per plan
  readonly g: SimGraph;
  readonly machine: Machine;
  readonly profile: HardwareProfile;
  readonly policy: readonly StagePolicy[];
  readonly place: readonly StagePlacement[];
  readonly layerStage: Int32Array;
  readonly layerIdx: Int32Array;
  readonly kept: readonly { full: number; kept: number; gpu: number; host: number }[];
  readonly hostGradStage: readonly boolean[];
  readonly rankGpu: readonly number[];
  readonly B: Bytes;
  readonly N: number;
  readonly D: number;
  readonly K: number;
  readonly M: number;
  readonly isCpu: boolean;
  readonly perInstr: number;
  /** GPU optimizer step: bytes/us (optimizerTime_us). */
  readonly optRate: number;
  readonly cpuWorkers: number;
  /** Alternating disk-group order (program.ts): the staged groups the previous step wrote last are
   *  the first this step reads, from host memory; 0 where the plan does not alternate. */
  readonly altKeep: number;
  /** This rank alternates (every disk transfer before its first backward), and its reads so far. */
  rankAlt = false;
  readsSeen = 0;
  readonly actBytes: number;
  readonly coarse: boolean;
  readonly withMem: boolean;
  readonly wm: boolean;
  readonly stageF: Float64Array;
  readonly stageB: Float64Array;
  /** Per stage: layers whose inputs a reload_act brings back one by one (recompute by layer), else 1. */
  readonly reloadLayers: Int32Array;
  readonly sendOf: Int32Array;
  /** Pairs: key, consumer task. */
  readonly recvBy = LISTS.recvBy;
  /** All-reduces: the key (layer * N + pipelineRank), arrival task and all-reduce task of each. */
  readonly arKey = LISTS.arKey;
  readonly arArrive = LISTS.arArrive;
  readonly arTask = LISTS.arTask;
  readonly gnArrive: TaskId[] = [];
  readonly gnTasks: TaskId[] = [];
  // ---- per rank
  r = 0;
  pr = 0;
  rep = 0;
  gpu: MachineGpu;
  dev = 0;
  prog: readonly Instr[] = [];
  /** The rank's decoder layers updated early, beside the stage's last backward (early-update.ts). */
  early: Set<number> = new Set();
  /** Share of an early update's time the step pays (profile.update_overlap; 1 without it). */
  earlyShown = 1;
  L = 0;
  /** Per end-of-step group (coarse): its optimizer elements of early-updated layers. */
  grpEarly: Float64Array = new Float64Array(0);
  /** The rank's tasks so far. */
  readonly all = LISTS.all;
  lastBackward = -1;
  /** Per stage: device gradient bytes still to allocate this step (at its first backward). */
  readonly stageGradBytes: Float64Array;
  lastCompute = -1;
  /** The compute task before the latest forward (that forward started when it ended, or later when
   *  its inputs arrived): the layer-by-layer activation offload of that forward starts with it. */
  beforeFwd = -1;
  /** Pair keys awaiting their consumer. */
  readonly pendingRecv = LISTS.pendingRecv;
  /** By mb * K + stage. */
  reloads: Int32Array;
  offActs: Int32Array;
  /** Param streaming: fetches queued for the next pass (layer, task, bytes, slots, meta), and the
   *  history of uses for slots. */
  readonly pfLayer = LISTS.pfLayer;
  readonly pfTask = LISTS.pfTask;
  readonly pfBytes = LISTS.pfBytes;
  readonly pfSlots = LISTS.pfSlots;
  readonly pfMeta = LISTS.pfMeta;
  /** Compute task of each streamed-layer use, in order; fetch k is used by useHistory[k]. */
  readonly useHistory = LISTS.useHistory;
  readonly fetchTasks = LISTS.fetchTasks;
  readonly fetchSlots = LISTS.fetchSlots;
  /** By layer. */
  lastGradOffload: Int32Array;
  /** [0]: bytes of consecutive gradient offloads merged into the next one (a Float64Array: the
   *  field keeps one representation from the first lowering on). */
  readonly offBytes = new Float64Array(1);
  lastHostGradOff = -1;
  readonly offActList = LISTS.offActList;
  readonly offLayers = LISTS.offLayers;
  cpuStep: Int32Array;
  /** Per layer of host-accumulated gradients: the step's last add on the host worker (-2: none
   *  yet, the first micro-batch's copy lands in the accumulator itself; -1: not offloaded yet). */
  accAdd: Int32Array;
  diskReadOf: Int32Array;
  lastDiskWrite = -1;
  /** Per disk path: the rank's last transfer on it (its disk worker runs them in issue order). */
  lastOnPath: number[] = [];
  /** The rank's host worker runs its CPU updates, disk transfers and the issue of its uploads one at
   *  a time in program order: each waits for the worker's previous blocking task (an upload only
   *  queues a copy, so the worker moves on at once). */
  lastWorker = -1;
  /** Coarse mode: group of each instruction (-1 none), bytes or elements of each group, its task. */
  grpOf: Int32Array = NO_GROUPS;
  grpAmt: Float64Array = NO_AMOUNTS;
  grpTask: Int32Array = NO_GROUPS;
  /** Scratch dependency list. */
  readonly deps = LISTS.deps;

  constructor(
    g: SimGraph, machine: Machine, profile: HardwareProfile, plan: Plan, pre: StagePre, inv: Inventory, rankGpu: number[],
    times: LayerTimes, opts: LowerOptions,
  ) {
    const { layout, policy } = plan;
    this.g = g;
    this.machine = machine;
    this.profile = profile;
    this.policy = policy.stages;
    this.place = pre.place;
    this.layerStage = pre.layerStage;
    this.layerIdx = pre.layerIdx;
    this.kept = pre.kept;
    this.stageGradBytes = new Float64Array(pre.kept.length);
    this.hostGradStage = pre.hostGradStage;
    this.rankGpu = rankGpu;
    this.B = bytesPerParam(plan.precision, plan.optimizer.name);
    const N = layout.pipelineRanks, D = layout.dataParallel, K = layout.stages.length, M = plan.job.microBatches;
    this.N = N; this.D = D; this.K = K; this.M = M;
    this.isCpu = profile.gpus.kind === 'cpu';
    this.perInstr = profile.overheads.per_instruction_us;
    this.optRate = optimizerBytesPerUs(profile, this.isCpu ? 'cpu' : 'gpu');
    this.earlyShown = updateShownShare(profile, decoderParams(plan.model));
    this.L = plan.model.num_hidden_layers;
    // Each rank's host worker runs its CPU updates on the executor's share of the host's cores
    // (host-threads.ts: cores / ranks, less one a GPU rank); the pool's curve then gives a rank alone
    // its threads' rate and ranks updating at once the all-ranks total (DRAM-bound), shared. A search
    // that lowers one replica of D (replicaProfile: the curve divided by D) gives its ranks the whole
    // pool likewise.
    const lowered = N * Math.max(1, Math.min(D, opts.replicas ?? D));
    this.cpuWorkers = hostThreadsPerRank(profile.cpu.threads ?? profile.cpu.cores, lowered, !this.isCpu);
    this.altKeep = diskAlternates(plan) ? diskBuffersFor(plan.policy.diskPaths.length, plan.policy.diskConcurrency ?? 2) : 0;
    this.actBytes = inv.mbs * inv.seq * plan.model.hidden_size * inv.actBytes;
    this.coarse = !!opts.coarse;
    this.withMem = opts.memoryEffects !== false;
    this.wm = opts.meta !== false;
    // Per stage: forward/backward time of the whole stage (recompute adds the forward).
    this.stageF = new Float64Array(K);
    this.stageB = new Float64Array(K);
    this.reloadLayers = new Int32Array(K);
    for (let s = 0; s < K; s++) {
      let f = 0, b = 0;
      for (let l = layout.stages[s]!.layers[0]; l < layout.stages[s]!.layers[1]; l++) { f += times.fwd[l]!; b += times.bwd[l]!; }
      this.stageF[s] = f;
      this.stageB[s] = b + (policy.stages[s]!.recompute ? f : 0);
      this.reloadLayers[s] = recomputeMode(policy.stages[s]!) === 2 ? layout.stages[s]!.layers[1] - layout.stages[s]!.layers[0] : 1;
    }
    // Cross-rank pairing by (kind, mb, from-stage, replica): sends, and the compute tasks that
    // consume the matching receive (a receive is not a task of its own: its wait is a dependency).
    this.sendOf = scratchI32(7, 2 * M * K * D).fill(-1);
    this.gpu = machine.gpus[rankGpu[0]!]!;
    const nL = inv.layers.length;
    this.lastGradOffload = scratchI32(0, nL);
    this.cpuStep = scratchI32(1, nL);
    this.accAdd = scratchI32(9, nL);
    this.diskReadOf = scratchI32(2, nL);
    this.reloads = scratchI32(3, M * K);
    this.offActs = scratchI32(4, M * K);
  }

  pairKey(kind: number, mb: number, from: number, rep: number): number {
    return ((kind * this.M + mb) * this.K + from) * this.D + rep;
  }

  /** Metadata of a task (one shared object in the search, which needs none). */
  /** Metadata of a task (fields < 0 absent), or none: the search needs none (it feeds traces). */
  meta(pc: number, op: string, mb: number, stage: number, layer: number, bytes: number): TaskMeta | undefined {
    if (!this.wm) return undefined;
    const m = realMetaOf(this.r, pc, op);
    if (mb >= 0) m.mb = mb;
    if (stage >= 0) m.stage = stage;
    if (layer >= 0) m.layer = layer;
    if (bytes >= 0) m.bytes = bytes;
    return m;
  }

  /** A task with at most one dependency (-1: none). */
  add1(on: number, dur: number, bytes: number, links: readonly number[] | undefined, dep: number, meta: TaskMeta | undefined): TaskId {
    const t = this.g.add(on, dur, bytes, links, 0, 0, 0, meta);
    if (dep >= 0) this.g.dep(dep, t);
    return t;
  }

  /** A task with a list of dependencies. */
  addN(on: number, dur: number, bytes: number, links: readonly number[] | undefined, deps: IntList, meta: TaskMeta | undefined, dir: number, elements: number, workers: number): TaskId {
    const g = this.g;
    const t = g.add(on, dur, bytes, links, dir, elements, workers, meta);
    for (let i = 0; i < deps.n; i++) g.dep(deps.a[i]!, t);
    return t;
  }

  /** Starts rank r: resets the per-rank state and adds its setup task. */
  beginRank(r: number, prog: readonly Instr[], mem: MemoryReport, wantHost: boolean, pre: StagePre): void {
    const N = this.N, K = this.K, M = this.M;
    this.r = r;
    this.pr = r % N;
    this.rep = Math.floor(r / N);
    this.gpu = this.machine.gpus[this.rankGpu[r]!]!;
    this.dev = this.gpu.device;
    this.prog = prog;
    this.early = earlyUpdateLayers(prog, r, pre.stages, this.L);
    this.all.n = 0;
    this.lastBackward = -1;
    this.lastCompute = -1;
    this.beforeFwd = -1;
    this.pendingRecv.n = 0;
    this.reloads.fill(-1, 0, M * K);
    this.offActs.fill(-1, 0, M * K);
    this.pfLayer.n = 0; this.pfTask.n = 0; this.pfBytes.n = 0; this.pfSlots.n = 0;
    this.useHistory.n = 0;
    this.fetchTasks.n = 0;
    this.fetchSlots.n = 0;
    const nL = this.layerStage.length;
    this.lastGradOffload.fill(-1, 0, nL);
    this.offBytes[0] = 0;
    this.lastHostGradOff = -1;
    this.offActList.n = 0;
    this.offLayers.n = 0;
    this.cpuStep.fill(-1, 0, nL);
    this.accAdd.fill(-1, 0, nL);
    this.diskReadOf.fill(-1, 0, nL);
    this.lastDiskWrite = -1;
    this.lastOnPath.length = 0;
    this.lastWorker = -1;
    this.readsSeen = 0;
    this.rankAlt = false;
    if (this.altKeep > 0) {
      // as the executor decides (native/src/runtime.cpp planDisk): every disk transfer of the rank
      // comes before its first backward
      let seenBackward = false, ok = true, any = false;
      for (const x of prog) {
        if (x.op === 'backward') seenBackward = true;
        else if (x.op === 'disk_read' || x.op === 'disk_write') { any = true; if (seenBackward) { ok = false; break; } }
      }
      this.rankAlt = ok && any;
    }
    this.groups(pre);
    this.setup(mem, wantHost);
  }

  /** Persistent state and reserved workspaces, allocated at the step start. */
  setup(mem: MemoryReport, wantHost: boolean): void {
    const pr = this.pr, r = this.r, dev = this.dev, g = this.g;
    const dm = mem.devices[pr]!, hm = mem.hostPerRank[pr]!;
    const setupMem: MemEffect[] = [];
    if (this.withMem) {
      const persist = (buffer: string, bytes: number, cls: MemEffect['class']) => { if (bytes > 0) setupMem.push({ op: 'alloc', device: dev, buffer, bytes, class: cls }); };
      persist('weights', dm.weights, 'weights');
      // gradients: allocated in each stage's first backward (pass), freed at the step end
      this.stageGradBytes.fill(0);
      dm.stages.forEach((st, i) => { this.stageGradBytes[st] = dm.stageGradients[i]!; });
      persist('master', dm.masterWeights, 'master');
      persist('optimizer', dm.optimizerStates, 'optimizer');
      persist('workspaces', dm.temporary.total, 'buffers');
      persist('context', dm.overhead, 'buffers');
      if (wantHost && !this.isCpu && hm.total > 0) setupMem.push({ op: 'alloc', device: this.machine.host, buffer: `host.r${r}`, bytes: hm.total, class: 'buffers' });
    }
    const setup = this.add1(-1, 0, 0, undefined, -1, this.meta(-1, 'setup', -1, -1, -1, -1));
    for (const e of setupMem) g.mem(setup, e);
    this.all.push(setup);
    // the set-up transient (memory.ts DeviceMemory.load: the layer being built with its whole fp32
    // master) beyond what set-up keeps: first on the compute stream, held through set-up only
    const loadExtra = dm.load - (dm.weights + dm.masterWeights + dm.optimizerStates + dm.temporary.total);
    if (loadExtra > 0 && this.withMem) {
      const t = this.add1(this.gpu.compute, 0, 0, undefined, setup, this.meta(-1, 'setup', -1, -1, -1, -1));
      g.mem(t, { op: 'alloc', device: dev, buffer: 'load', bytes: loadExtra, class: 'master', at: 'start' });
      g.mem(t, { op: 'free', device: dev, buffer: 'load', at: 'end' });
      this.all.push(t);
    }
  }

  /** Search fidelity: the end-of-step work of a stage (gradient offloads of resident layers,
   *  all-reduces, optimizer steps, uploads) moves in at most 4 chunks of consecutive layers. */
  groups(pre: StagePre): void {
    this.grpOf = NO_GROUPS;
    this.grpAmt = NO_AMOUNTS;
    this.grpEarly = NO_AMOUNTS;
    this.grpTask = NO_GROUPS;
    if (!this.coarse) return;
    const prog = this.prog, K = this.K, B = this.B;
    const cached = pre.groups.get(prog);
    if (cached) {
      this.grpOf = cached.grpOf;
      this.grpAmt = cached.grpAmt;
      this.grpEarly = cached.grpEarly;
      this.grpTask = scratchI32(6, cached.grpAmt.length).fill(-1);
      return;
    }
    const grpOf = new Int32Array(prog.length).fill(-1);
    const amt: number[] = [], early: number[] = [];
    const keys = scratchI32(5, 4 * 2 * K * 4 * 2).fill(-1);
    let phase = 0;
    for (let pc = 0; pc < prog.length; pc++) {
      const x = prog[pc]!;
      if (x.op === 'forward') phase = 1;
      if (x.op !== 'offload_grads' && x.op !== 'allreduce_grads' && x.op !== 'optimizer_step' && x.op !== 'upload_params') continue;
      const st = this.layerStage[x.layer]!, i = this.layerIdx[x.layer]!, pl = this.place[st]!;
      if (x.op === 'offload_grads' && !pl.gradsResident[i]) continue;
      if (!pl.hostStateInCpu[i] && pl.params[i]! > pl.gpuElems[i]!) continue; // disk groups keep their own order
      const G = Math.ceil(pl.layers.length / 4);
      const opc = x.op === 'offload_grads' ? 0 : x.op === 'allreduce_grads' ? 1 : x.op === 'optimizer_step' ? 2 : 3;
      const key = ((((opc * 2 + (x.op === 'optimizer_step' && x.tier === 'cpu' ? 1 : 0)) * K + st) * 4 + Math.floor(i / G)) * 2) + phase;
      let gi = keys[key]!;
      if (gi < 0) { gi = amt.length; keys[key] = gi; amt.push(0); early.push(0); }
      grpOf[pc] = gi;
      const n = pl.params[i]!;
      amt[gi]! += x.op === 'optimizer_step' ? Math.round(n * (x.fraction ?? 1))
        : x.op === 'upload_params' ? hostElems(pl, i) * B.weight : x.op === 'offload_grads' ? hostElems(pl, i) * B.grad : n * B.grad;
      if (x.op === 'optimizer_step' && x.tier === 'gpu' && this.early.has(x.layer)) early[gi]! += Math.round(n * (x.fraction ?? 1));
    }
    const grpAmt = Float64Array.from(amt), grpEarly = Float64Array.from(early);
    this.grpOf = grpOf;
    this.grpAmt = grpAmt;
    this.grpEarly = grpEarly;
    this.grpTask = scratchI32(6, grpAmt.length).fill(-1);
    pre.groups.set(prog, { grpOf, grpAmt, grpEarly });
  }

  /** Lowers the rank's program; fills tOf. */
  rank(tOf: Int32Array): void {
    const prog = this.prog;
    for (let pc = 0; pc < prog.length; pc++) {
      const x = prog[pc]!;
      let t: TaskId;
      switch (x.op) {
        case 'forward': case 'backward': t = this.pass(x.op === 'forward', x.mb, x.stage, pc); break;
        case 'send_act': case 'send_grad': t = this.send(x.op === 'send_act', x.mb, x.stage, x.peer, pc); break;
        case 'recv_act': this.pendingRecv.push(this.pairKey(0, x.mb, x.stage - 1, this.rep)); t = -1; break;
        case 'recv_grad': this.pendingRecv.push(this.pairKey(1, x.mb, x.stage + 1, this.rep)); t = -1; break;
        case 'fetch_params': t = this.fetch(x.layer, pc); break;
        case 'release_params': t = -1; break;
        case 'offload_grads': t = this.offloadGrads(x.layer, pc); break;
        case 'allreduce_grads': t = this.allreduce(x.layer, pc); break;
        case 'offload_act': t = this.offloadAct(x.mb, x.stage, pc); break;
        case 'reload_act': t = this.reloadAct(x.mb, x.stage, pc); break;
        case 'grad_norm': t = this.gradNorm(pc); break;
        case 'optimizer_step': t = this.optimizerStep(x.layer, x.tier === 'cpu', x.fraction, pc); break;
        case 'upload_params': t = this.upload(x.layer, pc); break;
        case 'disk_read': case 'disk_write': t = this.disk(x.op === 'disk_read', x.layer, x.path, pc); break;
        case 'barrier': t = this.barrier(pc); break;
      }
      if (t >= 0) { tOf[pc] = t; this.all.push(t); }
    }
    // A fetch waits for a free slot: the use `slots` fetches earlier has finished.
    const fetchTasks = this.fetchTasks.a, fetchSlots = this.fetchSlots.a, useHistory = this.useHistory.a, uses = this.useHistory.n;
    for (let k = 0, n = this.fetchTasks.n; k < n; k++) {
      const j = k - fetchSlots[k]!;
      if (j >= 0 && j < uses) this.g.dep(useHistory[j]!, fetchTasks[k]!);
    }
    if (this.pfLayer.n) throw new InputError(`program.ranks[${this.r}]: fetch_params of layer ${this.pfLayer.a[0]} is not followed by a forward or backward that uses it`);
  }

  /** Waits for every task of the rank so far. */
  barrier(pc: number): TaskId {
    const deps = tails(this.g, this.all.a, this.all.n, LISTS.tails);
    const t = this.g.add(-1, 0, 0, undefined, 0, 0, 0, this.meta(pc, 'barrier', -1, -1, -1, -1));
    for (let i = 0; i < deps.n; i++) this.g.dep(deps.a[i]!, t);
    return t;
  }

  /** forward / backward of micro-batch mb through stage s. */
  pass(fwd: boolean, mb: number, s: number, pc: number): TaskId {
    const g = this.g, K = this.K, kept = this.kept[s]!;
    const meta = this.meta(pc, fwd ? 'forward' : 'backward', mb, s, -1, -1);
    const deps = this.deps;
    deps.n = 0;
    const key = mb * K + s;
    if (!fwd && this.reloads[key]! >= 0) deps.push(this.reloads[key]!);
    // Staging buffers pace the compute: a backward that streams gradients to the host waits
    // until the previous pass's gradients have left; a forward that offloads its input waits
    // for the offload of two forwards before (two staging buffers).
    if (!fwd && this.hostGradStage[s] && this.lastHostGradOff >= 0) deps.push(this.lastHostGradOff);
    const offActList = this.offActList;
    if (fwd && this.policy[s]!.recompute && kept.host > 0 && offActList.n >= 2) deps.push(offActList.a[offActList.n - 2]!);
    let eff: MemEffect | null = null;
    if (this.withMem && kept.gpu > 0) {
      eff = fwd
        ? { op: 'alloc', device: this.dev, buffer: actName(mb, s, K), bytes: kept.gpu, class: 'activations', at: 'start' }
        : { op: 'free', device: this.dev, buffer: actName(mb, s, K), at: 'end' };
    }
    // the stage's first backward of the step allocates its gradients (after freeing its
    // micro-batch's activations: the layers' gradients grow as their activations go)
    let gEff: MemEffect | null = null;
    if (!fwd && this.withMem && this.stageGradBytes[s]! > 0) {
      gEff = { op: 'alloc', device: this.dev, buffer: `gradients.s${s}`, bytes: this.stageGradBytes[s]!, class: 'gradients', at: 'end' };
      this.stageGradBytes[s] = 0;
    }
    const dur = (fwd ? this.stageF[s]! : this.stageB[s]!) + this.perInstr;
    const compute = this.gpu.compute;
    let firstOfPass: TaskId, t: TaskId;
    if (this.pfLayer.n === 0) {
      t = this.addN(compute, dur, 0, undefined, deps, meta, 0, 0, 0);
      if (eff) g.mem(t, eff);
      if (gEff) g.mem(t, gEff);
      firstOfPass = t;
    } else {
      // Layer by layer: each streamed use waits for its fetch.
      let useLayer = this.pfLayer, useTask = this.pfTask;
      if (this.coarse) { this.chunkFetches(); useLayer = LISTS.chLayer; useTask = LISTS.chTask; }
      const n = useLayer.n;
      const per = dur / n;
      firstOfPass = -1;
      t = -1;
      for (let i = 0; i < n; i++) {
        const first = i === 0;
        const subMeta = this.meta(pc, fwd ? 'forward' : 'backward', mb, s, useLayer.a[i]!, -1);
        const ft = useTask.a[i]!;
        const sub = first ? this.addN(compute, per, 0, undefined, deps, subMeta, 0, 0, 0) : this.add1(compute, per, 0, undefined, ft, subMeta);
        if (first) g.dep(ft, sub);
        if (eff && (eff.op === 'alloc' ? first : i === n - 1)) g.mem(sub, eff);
        if (gEff && i === n - 1) g.mem(sub, gEff);
        this.useHistory.push(sub);
        this.all.push(sub);
        if (first) firstOfPass = sub;
        t = sub;
      }
      this.pfLayer.n = 0; this.pfTask.n = 0; this.pfBytes.n = 0; this.pfSlots.n = 0;
    }
    const pending = this.pendingRecv;
    if (pending.n) {
      for (let i = 0; i < pending.n; i++) { this.recvBy.push(pending.a[i]!); this.recvBy.push(firstOfPass); }
      pending.n = 0;
    }
    if (fwd) { this.beforeFwd = this.lastCompute; this.lastCompute = t; } else { this.lastBackward = t; this.lastCompute = t; }
    return t;
  }

  /** Search fidelity: a pass's fetches in at most 2 chunks of consecutive layers; slots counted
   *  in chunks. */
  chunkFetches(): void {
    const nf = this.pfLayer.n, layers = this.pfLayer.a, byt = this.pfBytes.a, slots = this.pfSlots.a;
    const G = Math.ceil(nf / 2);
    const chLayer = LISTS.chLayer, chTask = LISTS.chTask;
    chLayer.n = 0; chTask.n = 0;
    const h2d = this.gpu.h2d, route = this.gpu.h2dRoute;
    for (let c = 0; c < nf; c += G) {
      let bytes = 0;
      for (let j = c, e = Math.min(nf, c + G); j < e; j++) bytes += byt[j]!;
      const ft = this.add1(h2d, 0, bytes, route, -1, this.pfMeta[c]!);
      this.all.push(ft);
      this.fetchTasks.push(ft);
      this.fetchSlots.push(Math.max(1, Math.ceil(slots[c]! / G)));
      chLayer.push(layers[c]!);
      chTask.push(ft);
    }
  }

  send(act: boolean, mb: number, stage: number, peer: number, pc: number): TaskId {
    const peerGpu = this.rankGpu[peer]!, mine = this.rankGpu[this.r]!;
    const route = peerGpu === mine ? NO : this.machine.peerRoute(mine, peerGpu);
    const meta = this.meta(pc, act ? 'send_act' : 'send_grad', mb, stage, -1, this.actBytes);
    const t = this.add1(this.gpu.comm, 0, route.length ? this.actBytes : 0, route, this.lastCompute, meta);
    this.sendOf[this.pairKey(act ? 0 : 1, mb, stage, this.rep)] = t;
    return t;
  }

  fetch(layer: number, pc: number): TaskId {
    const s = this.layerStage[layer]!;
    const bytes = this.place[s]!.params[this.layerIdx[layer]!]! * this.B.weight;
    const meta = this.meta(pc, 'fetch_params', -1, -1, layer, bytes);
    const slots = this.policy[s]!.prefetchDepth + 1;
    const t = this.coarse ? -1 : this.add1(this.gpu.h2d, 0, bytes, this.gpu.h2dRoute, -1, meta);
    if (t >= 0) { this.fetchTasks.push(t); this.fetchSlots.push(slots); }
    this.pfMeta[this.pfLayer.n] = meta;
    this.pfLayer.push(layer); this.pfTask.push(t); this.pfBytes.push(bytes); this.pfSlots.push(slots);
    return t;
  }

  offloadGrads(layer: number, pc: number): TaskId {
    const s = this.layerStage[layer]!, i = this.layerIdx[layer]!;
    const pl = this.place[s]!;
    // the host part's gradients only (gradients accumulated on the host are the whole layer's: no GPU part)
    const bytes = hostElems(pl, i) * this.B.grad;
    const meta = this.meta(pc, 'offload_grads', -1, -1, layer, bytes);
    const grp = this.coarse ? this.grpOf[pc]! : -1;
    if (grp >= 0 && this.grpTask[grp]! >= 0) { this.lastGradOffload[layer] = this.grpTask[grp]!; return -1; }
    if (this.coarse && grp < 0) {
      const nx = this.prog[pc + 1];
      if (nx !== undefined && nx.op === 'offload_grads' && !pl.gradsResident[this.layerIdx[nx.layer]!]) { this.offBytes[0] += bytes; this.offLayers.push(layer); return -1; }
    }
    // host-accumulated gradients (every micro-batch to the host): the first lands in the accumulator,
    // each later one in a staging buffer that the host worker adds in (in its order, behind the work
    // issued before: read two, write one, compute-precision bytes; the next copy to the staging
    // buffer waits for that add)
    const acc = !pl.gradsResident[i] && this.M > 1;
    const prevAdd = acc ? this.accAdd[layer]! : -1;
    const amount = grp >= 0 ? this.grpAmt[grp]! : bytes + this.offBytes[0]!;
    let t: TaskId;
    if (prevAdd >= 0) {
      const deps = this.deps;
      deps.n = 0;
      if (this.lastBackward >= 0) deps.push(this.lastBackward);
      deps.push(prevAdd);
      t = this.addN(this.gpu.d2h, 0, amount, this.gpu.d2hRoute, deps, meta, 0, 0, 0);
    } else {
      t = this.add1(this.gpu.d2h, 0, amount, this.gpu.d2hRoute, this.lastBackward, meta);
    }
    if (acc) {
      if (this.accAdd[layer] === -1) this.accAdd[layer] = -2;
      else {
        const deps = this.deps;
        deps.n = 0;
        deps.push(t);
        if (this.lastWorker >= 0) deps.push(this.lastWorker);
        // an add moves 3 x `grad` bytes a parameter; the pool's rate is AdamW's (28 bytes a parameter)
        const add = this.addN(this.machine.cpu, 0, 0, undefined, deps, this.meta(pc, 'host_accumulate', -1, -1, layer, -1), 0, Math.round(amount * 3 / 28), this.cpuWorkers);
        this.accAdd[layer] = add;
        this.lastWorker = add;
      }
    }
    if (grp >= 0) this.grpTask[grp] = t;
    this.lastGradOffload[layer] = t;
    if (!pl.gradsResident[i]) this.lastHostGradOff = t;
    const offLayers = this.offLayers;
    for (let k = 0; k < offLayers.n; k++) this.lastGradOffload[offLayers.a[k]!] = t;
    this.offBytes[0] = 0; offLayers.n = 0;
    return t;
  }

  allreduce(layer: number, pc: number): TaskId {
    const s = this.layerStage[layer]!;
    const grp = this.coarse ? this.grpOf[pc]! : -1;
    if (grp >= 0 && this.grpTask[grp]! >= 0) { this.lastGradOffload[layer] = this.grpTask[grp]!; return -1; }
    const bytes = grp >= 0 ? this.grpAmt[grp]! : this.place[s]!.params[this.layerIdx[layer]!]! * this.B.grad;
    const meta = this.meta(pc, 'allreduce_grads', -1, -1, layer, bytes);
    const am = this.meta(pc, 'allreduce_arrive', -1, -1, layer, -1);
    const arrive = this.add1(-1, 0, 0, undefined, this.lastBackward, am);
    this.all.push(arrive);
    const D = this.D, N = this.N, pr = this.pr;
    const nextRep = (this.rep + 1) % D;
    const peerGpu = this.rankGpu[nextRep * N + pr]!, mine = this.rankGpu[this.r]!;
    const route = peerGpu === mine ? NO : this.machine.peerRoute(mine, peerGpu);
    const ringBytes = D > 1 ? (2 * (D - 1) / D) * bytes : 0;
    const t = this.add1(this.gpu.comm, 0, route.length ? ringBytes : 0, route, -1, meta);
    const k = layer * N + pr;
    this.arKey.push(k);
    this.arArrive.push(arrive);
    this.arTask.push(t);
    this.lastGradOffload[layer] = t;
    if (grp >= 0) this.grpTask[grp] = t;
    return t;
  }

  offloadAct(mb: number, stage: number, pc: number): TaskId {
    const bytes = this.kept[stage]!.host;
    const nl = this.reloadLayers[stage]!;
    // Recompute by layer: the forward sends each layer's input to the host as soon as it exists
    // (runtime.cpp forward, `early`; the instruction then only confirms), so all but the last
    // layer's share moves under the forward. (After the forward, as before, the one-GPU H100
    // matrix plan with activation offload had 11 ms a step of offload the executor hid.)
    const last = nl > 1 ? Math.round(bytes / nl) : bytes;
    if (nl > 1) this.add1(this.gpu.d2h, 0, bytes - last, this.gpu.d2hRoute, this.beforeFwd, this.meta(pc, 'offload_act', mb, stage, -1, bytes - last));
    const t = this.add1(this.gpu.d2h, 0, last, this.gpu.d2hRoute, this.lastCompute, this.meta(pc, 'offload_act', mb, stage, -1, last));
    this.offActs[mb * this.K + stage] = t;
    this.offActList.push(t);
    return t;
  }

  reloadAct(mb: number, stage: number, pc: number): TaskId {
    const bytes = this.kept[stage]!.host;
    const meta = this.meta(pc, 'reload_act', mb, stage, -1, bytes);
    const off = this.offActs[mb * this.K + stage]!;
    // With recompute by layer the executor brings each layer's input back one layer ahead of its
    // use, during the backward: the backward waits for the first layer's share only (the last
    // layer's input), the rest streams in under it.
    const nl = this.reloadLayers[stage]!;
    if (nl > 1) {
      const first = Math.round(bytes / nl);
      const t = this.add1(this.gpu.h2d, 0, first, this.gpu.h2dRoute, off >= 0 ? off : -1, meta);
      this.add1(this.gpu.h2d, 0, bytes - first, this.gpu.h2dRoute, t, this.meta(pc, 'reload_act', mb, stage, -1, bytes - first));
      this.reloads[mb * this.K + stage] = t;
      return t;
    }
    const t = this.add1(this.gpu.h2d, 0, bytes, this.gpu.h2dRoute, off >= 0 ? off : -1, meta);
    this.reloads[mb * this.K + stage] = t;
    return t;
  }

  gradNorm(pc: number): TaskId {
    const all = this.all;
    const arrive = this.add1(-1, 0, 0, undefined, all.n ? all.a[all.n - 1]! : -1, this.meta(pc, 'grad_norm_arrive', -1, -1, -1, -1));
    all.push(arrive);
    this.gnArrive.push(arrive);
    const t = this.add1(this.gpu.comm, 50 + this.perInstr, 0, undefined, -1, this.meta(pc, 'grad_norm', -1, -1, -1, -1));
    this.gnTasks.push(t);
    this.lastCompute = t;
    return t;
  }

  optimizerStep(layer: number, cpu: boolean, fraction: number | undefined, pc: number): TaskId {
    const s = this.layerStage[layer]!, i = this.layerIdx[layer]!;
    const grp = this.coarse ? this.grpOf[pc]! : -1;
    if (grp >= 0 && this.grpTask[grp]! >= 0) { if (cpu) this.cpuStep[layer] = this.grpTask[grp]!; return -1; }
    const n = this.place[s]!.params[i]!;
    const elems = grp >= 0 ? this.grpAmt[grp]! : Math.round(n * (fraction ?? 1));
    const meta = this.meta(pc, 'optimizer_step', -1, -1, layer, -1);
    const deps = this.deps;
    deps.n = 0;
    const off = this.lastGradOffload[layer]!;
    let t: TaskId;
    if (!cpu) {
      if (this.lastBackward >= 0) deps.push(this.lastBackward);
      if (off >= 0) deps.push(off);
      const B = this.B;
      // an early update (early-update.ts) ran beside the stage's last backward, launched from the
      // gradient hook (its instruction only orders the stream after it: no interpreter cost): the
      // step pays the share of it the backward did not hide (profile.update_overlap), here after
      // the backward
      const early = grp >= 0 ? this.grpEarly[grp]! : this.early.has(layer) ? elems : 0;
      const paid = elems - early * (1 - this.earlyShown);
      const bytes = paid * (2 * B.weight + B.grad + 2 * B.master + 2 * B.opt);
      const instr = early > 0 && early >= elems ? 0 : this.perInstr;
      t = this.addN(this.gpu.compute, bytes / this.optRate + instr, 0, undefined, deps, meta, 0, 0, 0);
      this.lastCompute = t;
    } else {
      if (off >= 0) deps.push(off);
      const rd = this.diskReadOf[layer]!;
      if (rd >= 0) deps.push(rd);
      if (this.lastWorker >= 0) deps.push(this.lastWorker);
      t = this.addN(this.machine.cpu, 0, 0, undefined, deps, meta, 0, elems, this.cpuWorkers);
      this.cpuStep[layer] = t;
      this.lastWorker = t;
    }
    if (grp >= 0) this.grpTask[grp] = t;
    return t;
  }

  upload(layer: number, pc: number): TaskId {
    const s = this.layerStage[layer]!, i = this.layerIdx[layer]!;
    const pl = this.place[s]!;
    const grp = this.coarse ? this.grpOf[pc]! : -1;
    if (grp >= 0 && this.grpTask[grp]! >= 0) return -1;
    const bytes = grp >= 0 ? this.grpAmt[grp]! : hostElems(pl, i) * this.B.weight;
    const meta = this.meta(pc, 'upload_params', -1, -1, layer, bytes);
    // queued on the host worker behind every CPU update issued before it (disk transfers run on
    // their paths' own workers)
    const st = this.lastWorker >= 0 ? this.lastWorker : this.cpuStep[layer]!;
    const t = this.add1(this.gpu.h2d, 0, bytes, this.gpu.h2dRoute, st >= 0 ? st : -1, meta);
    if (grp >= 0) this.grpTask[grp] = t;
    return t;
  }

  disk(read: boolean, layer: number, path: number, pc: number): TaskId {
    const s = this.layerStage[layer]!, i = this.layerIdx[layer]!;
    const pl = this.place[s]!;
    const bytes = hostElems(pl, i) * (this.B.master + this.B.opt);
    const meta = this.meta(pc, read ? 'disk_read' : 'disk_write', -1, -1, layer, bytes);
    const disks = this.machine.disks;
    const disk = disks[path % Math.max(1, disks.length)];
    if (disk === undefined) throw new InputError(`hardware profile ${this.profile.id} has no disks for the plan's disk tier`);
    let dep = -1;
    if (read) dep = this.lastDiskWrite;
    else dep = this.cpuStep[layer]!;
    // alternating order: the step's first reads find their groups still staged (no transfer)
    const hit = read && this.rankAlt && this.readsSeen++ < this.altKeep;
    const t = hit ? this.g.add(-1, 0, 0, undefined, 0, 0, 0, meta) : this.g.add(disk, 0, bytes, undefined, read ? 1 : 2, 0, 0, meta);
    if (dep >= 0) this.g.dep(dep, t);
    // each path has a disk worker of its own (in issue order); the host worker does not wait for them
    const prev = this.lastOnPath[path] ?? -1;
    if (prev >= 0 && prev !== dep) this.g.dep(prev, t);
    this.lastOnPath[path] = t;
    if (read) this.diskReadOf[layer] = t; else this.lastDiskWrite = t;
    return t;
  }
}

export function lowerPlan(plan: Plan, profile: HardwareProfile, opts: LowerOptions = {}): Lowered {
  const inv = opts.inventory ?? planInventory(plan);
  const mem = opts.memory ?? planMemory(plan, profile, inv);
  const { layout, policy } = plan;
  const N = layout.pipelineRanks, D = layout.dataParallel;
  const isCpu = profile.gpus.kind === 'cpu';
  const rankGpu = layout.rankDevice.map((d, r) => (d >= 0 ? d : r));
  let maxGpu = 0;
  for (const gi of rankGpu) {
    if (gi >= profile.gpus.count) throw new InputError(`layout.rankDevice: device ${gi} is not in hardware profile ${profile.id} (${profile.gpus.count} ${isCpu ? 'CPU ranks' : 'GPUs'})`);
    maxGpu = Math.max(maxGpu, gi);
  }
  const { graph: g, machine } = machineFor(profile, maxGpu + 1, plan.job.gpuMemCapBytes ?? undefined, !!opts.reuseGraph);
  const times = layerTimes(inv, profile);
  // Placement per stage (a search that lowers one program for several mappings passes the same
  // stage and policy arrays: computed once for them).
  let pre = opts.reuseGraph ? stageCache.get(policy.stages) : undefined;
  if (!pre || pre.stages !== layout.stages || pre.inv !== inv) {
    pre = stagePre(inv, layout.stages, policy.stages);
    if (opts.reuseGraph) stageCache.set(policy.stages, pre);
  }
  const low = new Lowering(g, machine, profile, plan, pre, inv, rankGpu, times, opts);
  low.recvBy.n = 0; low.arKey.n = 0; low.arArrive.n = 0; low.arTask.n = 0;
  const taskOf: Int32Array[] = [];
  const lowered = N * Math.max(1, Math.min(D, opts.replicas ?? D));
  const wantHost = opts.hostMemory !== false;
  for (let r = 0; r < lowered; r++) {
    const prog = plan.program.ranks[r]!;
    const tOf = opts.reuseGraph ? pooledTaskOf(r, prog.length) : new Int32Array(prog.length).fill(-1);
    taskOf.push(tOf);
    low.beginRank(r, prog, mem, wantHost, pre);
    low.rank(tOf);
  }
  // Pair sends and receives.
  const recvBy = low.recvBy.a, sendOf = low.sendOf;
  for (let i = 0, n = low.recvBy.n; i < n; i += 2) {
    const send = sendOf[recvBy[i]!]!;
    if (send < 0) throw new InputError(`program: a receive (pair ${recvBy[i]}) has no matching send`);
    g.dep(send, recvBy[i + 1]!);
  }
  // All-reduces: each waits for every replica's arrival at the same (layer, pipeline rank), keys in
  // the order they first occur.
  const arKey = low.arKey.a, arArrive = low.arArrive.a, arTask = low.arTask.a, nAr = low.arKey.n;
  const arDone = scratchI32(8, nAr).fill(0, 0, nAr);
  for (let i = 0; i < nAr; i++) {
    if (arDone[i]) continue;
    const k = arKey[i]!;
    for (let j = i; j < nAr; j++) {
      if (arKey[j] !== k) continue;
      arDone[j] = 1;
      for (let l = i; l < nAr; l++) if (arKey[l] === k) g.dep(arArrive[l]!, arTask[j]!);
    }
  }
  for (const t of low.gnTasks) for (const a of low.gnArrive) g.dep(a, t);
  return { graph: g, machine, memory: mem, rankGpu, taskOf, tokens: plan.job.microBatchSize * plan.job.seq * plan.job.microBatches * D };
}

/** Task tables of the reused lowerings, by rank (views of pooled arrays, filled with -1). */
const taskOfPool: Int32Array[] = [];
function pooledTaskOf(r: number, n: number): Int32Array {
  let a = taskOfPool[r];
  if (!a || a.length < n) { a = new Int32Array(Math.max(4096, 2 * n)); taskOfPool[r] = a; }
  return a.subarray(0, n).fill(-1);
}

function stagePre(inv: Inventory, stages: readonly StageSpec[], policy: readonly StagePolicy[]): StagePre {
  const together = headHasEmbedding(stages as StageSpec[]);
  const place: StagePlacement[] = stages.map((s, i) => placeStageCached(inv, s, policy[i]!, together));
  const layerStage = new Int32Array(inv.layers.length);
  const layerIdx = new Int32Array(inv.layers.length);
  stages.forEach((s, i) => { for (let l = s.layers[0]; l < s.layers[1]; l++) { layerStage[l] = i; layerIdx[l] = l - s.layers[0]; } });
  const kept = stages.map((s, i) => stageKeptBytes(inv, s, policy[i]!));
  const hostGradStage = place.map((p) => p.gradsResident.some((x) => !x));
  return { stages, inv, place, layerStage, layerIdx, kept, hostGradStage, groups: new WeakMap() };
}


export interface PlanSimulation {
  lowered: Lowered;
  result: SimResult;
  step_s: number;
  tokens_per_s: number;
  /** Per rank (pipeline rank of replica 0), peak bytes on its device. */
  peak_bytes: number[];
  bottleneck: string;
}

/** Lowers and simulates a plan. */
export function simulatePlan(
  plan: Plan, profile: HardwareProfile, opts: LowerOptions & { memorySeries?: boolean; criticalPath?: boolean; peaks?: boolean; usage?: boolean } = {},
): PlanSimulation {
  const lowered = lowerPlan(plan, profile, opts);
  const result = simulate(lowered.graph, { tokens: lowered.tokens, memorySeries: opts.memorySeries ?? false, criticalPath: opts.criticalPath ?? true, usage: opts.usage ?? true, reuse: !!opts.reuseGraph });
  const N = plan.layout.pipelineRanks;
  const peak_bytes: number[] = [];
  if (opts.peaks !== false) for (let r = 0; r < lowered.taskOf.length; r++) {
    const name = lowered.graph.deviceName[lowered.machine.gpus[lowered.rankGpu[r]!]!.device]!;
    peak_bytes.push(result.memory.find((m) => m.device === name)?.peak_bytes ?? 0);
  }
  return {
    lowered, result, step_s: result.step_s, tokens_per_s: result.tokens_per_s ?? lowered.tokens / result.step_s,
    peak_bytes, bottleneck: result.critical?.bound ?? 'unknown',
  };
}

/** pipelinePeriod's per-rank and per-group sums, reused from call to call (it is synchronous). */
let periodF64 = new Float64Array(64);
let periodGroups = new Float64Array(64);

/**
 * The steady-state period of a pipeline (seconds per micro-batch): the busiest resource's work
 * per micro-batch, over every rank of every replica: compute (forward, backward, recompute; slowed
 * by concurrent copies), each GPU's host-to-device and device-to-host copies (streamed weights,
 * activation reloads / offloads, host-accumulated gradients) on its copy engines, their shared
 * host-link groups, and pipeline sends on the peer links. A flow shop's step is the fill plus
 * (M-1) periods; the search extrapolates with it (search.ts estimateStep).
 */
export function pipelinePeriod(plan: Plan, profile: HardwareProfile, inv?: Inventory): number {
  inv ??= planInventory(plan);
  const { layout, policy } = plan;
  const N = layout.pipelineRanks, D = layout.dataParallel, K = layout.stages.length;
  const times = layerTimes(inv, profile);
  const B = bytesPerParam(plan.precision, plan.optimizer.name);
  const together = headHasEmbedding(layout.stages);
  const perInstr = profile.overheads.per_instruction_us;
  const act = inv.mbs * inv.seq * plan.model.hidden_size * inv.actBytes;
  // comp, h2d, d2h, p2p per rank at P[0..N), P[N..2N), P[2N..3N), P[3N..4N)
  if (periodF64.length < 4 * N) periodF64 = new Float64Array(8 * N);
  const P = periodF64;
  P.fill(0, 0, 4 * N);
  const H = N, DD = 2 * N, Q = 3 * N;
  // The placements and kept bytes of a plan the search has just lowered are in its tables.
  const pre = stageCache.get(policy.stages);
  const known = pre !== undefined && pre.stages === layout.stages && pre.inv === inv;
  for (let s = 0; s < K; s++) {
    const spec = layout.stages[s]!, p = policy.stages[s]!, r = spec.rank;
    const pl = known ? pre.place[s]! : placeStageCached(inv, spec, p, together);
    let f = 0, b = 0;
    for (let l = spec.layers[0]; l < spec.layers[1]; l++) { f += times.fwd[l]!; b += times.bwd[l]!; }
    P[r] += f + b + (p.recompute ? f : 0) + 2 * perInstr;
    for (let i = 0; i < pl.layers.length; i++) {
      if (!pl.paramsResident[i]) P[H + r] += pl.params[i]! * B.weight * (recomputeMode(p) === 1 ? 3 : 2);
      if (!pl.gradsResident[i]) P[DD + r] += pl.params[i]! * B.grad;
    }
    const host = known ? pre.kept[s]!.host : stageKeptBytes(inv, spec, p).host;
    P[H + r] += host; P[DD + r] += host;
    if (s > 0) P[Q + r] += act;
    if (s < K - 1) P[Q + r] += act;
  }
  const gpuOf = (rank: number) => (layout.rankDevice[rank]! >= 0 ? layout.rankDevice[rank]! : rank);
  const links = gpuLinks(profile);
  let period = 0;
  const nG = profile.links.host_groups.length;
  // groupH, groupD, used per host group at G[0..nG), G[nG..2nG), G[2nG..3nG)
  if (periodGroups.length < 3 * nG) periodGroups = new Float64Array(6 * nG);
  const G = periodGroups;
  G.fill(0, 0, 3 * nG);
  const GD = nG, GU = 2 * nG;
  for (let rank = 0; rank < N * D; rank++) {
    const r = rank % N, gi = gpuOf(rank);
    const hl = links.h2d[gi] ?? 0, dl = links.d2h[gi] ?? 0, dx = links.duplex[gi] ?? 0, peer = links.peer[gi] ?? 0;
    const tH = hl ? P[H + r]! / (hl * 1e3) : 0, tD = dl ? P[DD + r]! / (dl * 1e3) : 0;
    const tX = dx ? (P[H + r]! + P[DD + r]!) / (dx * 1e3) : 0;
    const copies = Math.max(tH, tD, tX);
    const c = P[r]! * (1 + (copies > 0 ? profile.compute_slowdown_under_copies * Math.min(1, copies / Math.max(1e-9, P[r]!)) : 0));
    const tP = peer ? P[Q + r]! / 2 / (peer * 1e3) : 0;
    period = Math.max(period, c, copies, tP);
    const g = links.group[gi] ?? -1;
    if (g >= 0) { G[g] += P[H + r]!; G[GD + g] += P[DD + r]!; G[GU + g] = 1; }
  }
  for (let g = 0; g < nG; g++) {
    if (!G[GU + g]) continue;
    const hg = profile.links.host_groups[g]!;
    const bytes = G[g]!, db = G[GD + g]!;
    period = Math.max(period, bytes / (hg.h2d_GBps * 1e3), db / (hg.d2h_GBps * 1e3), hg.duplex_GBps ? (bytes + db) / (hg.duplex_GBps * 1e3) : 0);
  }
  return period / 1e6;
}

/** Per GPU of a profile: the GB/s of its first host-to-device, device-to-host, duplex and peer
 *  link entries (0: none) and its host group (-1: none). */
interface GpuLinks { h2d: Float64Array; d2h: Float64Array; duplex: Float64Array; peer: Float64Array; group: Int32Array }
const gpuLinkCache = new WeakMap<HardwareProfile, GpuLinks>();
function gpuLinks(profile: HardwareProfile): GpuLinks {
  let t = gpuLinkCache.get(profile);
  if (t) return t;
  const n = profile.gpus.count;
  t = { h2d: new Float64Array(n), d2h: new Float64Array(n), duplex: new Float64Array(n), peer: new Float64Array(n), group: new Int32Array(n).fill(-1) };
  for (let gi = 0; gi < n; gi++) {
    t.h2d[gi] = profile.links.h2d.find((x) => x.gpu === gi)?.GBps ?? 0;
    t.d2h[gi] = profile.links.d2h.find((x) => x.gpu === gi)?.GBps ?? 0;
    t.duplex[gi] = profile.links.duplex?.find((x) => x.gpu === gi)?.GBps ?? 0;
    t.peer[gi] = profile.links.peer.find((e) => e.gpus.includes(gi))?.GBps ?? 0;
    t.group[gi] = profile.links.host_groups.findIndex((x) => x.gpus.includes(gi));
  }
  gpuLinkCache.set(profile, t);
  return t;
}

/** When the last forward/backward, the last CPU optimizer step and the last disk transfer of the
 *  simulated step ended (seconds). */
export function phaseEnds(plan: Plan, lowered: Lowered, result: SimResult): { compute: number; cpu: number; disk: number } {
  let compute = 0, cpu = 0, disk = 0;
  for (let r = 0; r < lowered.taskOf.length; r++) {
    const prog = plan.program.ranks[r]!, tOf = lowered.taskOf[r]!;
    for (let pc = 0; pc < prog.length; pc++) {
      const t = tOf[pc]!;
      if (t < 0) continue;
      const x = prog[pc]!, e = result.end_us[t]!;
      if (x.op === 'forward' || x.op === 'backward') { if (e > compute) compute = e; }
      else if (x.op === 'optimizer_step' && x.tier === 'cpu') { if (e > cpu) cpu = e; }
      else if (x.op === 'disk_read' || x.op === 'disk_write') { if (e > disk) disk = e; }
    }
  }
  return { compute: compute / 1e6, cpu: cpu / 1e6, disk: disk / 1e6 };
}

const replicaCache = new Map<string, HardwareProfile>();

/** The share of `profile` one data-parallel replica sees when all `D` replicas run alike: host
 *  groups scaled by the replica's part of the GPUs in use behind them, the CPU optimizer pool and
 *  the disks divided by D. */
export function replicaProfile(profile: HardwareProfile, rankDevice: number[], N: number, D: number): HardwareProfile {
  if (D <= 1) return profile;
  const key = `${profile.id}|${rankDevice.join()}|${N}|${D}`;
  let p = replicaCache.get(key);
  if (p) return p;
  p = JSON.parse(JSON.stringify(profile)) as HardwareProfile;
  const gpuOf = (r: number) => (rankDevice[r]! >= 0 ? rankDevice[r]! : r);
  const mine = new Set(Array.from({ length: N }, (_, r) => gpuOf(r)));
  const used = new Set(Array.from({ length: N * D }, (_, r) => gpuOf(r)));
  for (const g of p.links.host_groups) {
    const m = g.gpus.filter((x) => mine.has(x)).length, u = g.gpus.filter((x) => used.has(x)).length;
    if (m > 0 && u > m) {
      const f = m / u;
      g.h2d_GBps *= f; g.d2h_GBps *= f;
      if (g.duplex_GBps !== undefined) g.duplex_GBps *= f;
    }
  }
  for (const o of p.cpu.optimizers) for (const pt of o.points) pt.params_per_s /= D;
  for (const d of p.disks) { d.read_GBps /= D; d.write_GBps /= D; }
  if (replicaCache.size > 64) replicaCache.clear();
  replicaCache.set(key, p);
  return p;
}
