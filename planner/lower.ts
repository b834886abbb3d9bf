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
  SimGraph, buildMachine, simulate, gemmTime_us, attentionTime_us, elementwiseTime_us, optimizerTime_us, kernelTime_us, computeOf,
  type HardwareProfile, type Machine, type SimResult, type TaskId, type MemEffect, type Dtype, type TaskSpec, type TaskMeta,
} from '../sim/index.ts';
import type { Plan, StagePolicy } from './plan-types.ts';
import type { Instr, StageSpec } from './program.ts';
import { getInventory, type Inventory } from './inventory.ts';
import { bytesPerParam, headHasEmbedding, memoryModel, placeStage, stageKeptBytes, type MemoryReport, type StagePlacement } from './memory.ts';
import { InputError } from './errors.ts';

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
      // Final norm, the fp32 loss over the logits (read logits, write fp32, softmax, gradient).
      f += kernelTime_us(profile, dev, 'loss', T * mc.vocab_size * (a + 8)).us + kernelTime_us(profile, dev, 'rmsnorm', 4 * T * mc.hidden_size * a).us; nf = 8;
      b += kernelTime_us(profile, dev, 'loss', T * mc.vocab_size * (8 + a)).us + kernelTime_us(profile, dev, 'rmsnorm', 8 * T * mc.hidden_size * a).us; nb = 10;
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

/** Task specs and metas of one shape (keeps SimGraph.task monomorphic: the search builds millions). */
function spec(
  on: number | undefined, duration_us: number, bytes: number, links: readonly number[] | undefined, deps: readonly number[],
  mem: readonly MemEffect[] | undefined, meta: TaskMeta, dir?: 'read' | 'write', elements?: number, workers?: number,
): TaskSpec {
  return { name: undefined, on, duration_us, bytes, links, cap_GBps: undefined, latency_us: undefined, dir, elements, workers, deps, waitFor: undefined, signal: undefined, mem, meta };
}
function realMetaOf(rank: number, pc: number, op: string): TaskMeta {
  return { rank, pc: pc < 0 ? undefined : pc, mb: undefined, stage: undefined, op, layer: undefined, bytes: undefined, flops: undefined };
}
const SHARED_META: TaskMeta = realMetaOf(0, -1, 'task');
/** Search runs need no per-task metadata (it feeds traces): one shared, scribbled-on object. */
function sharedMetaOf(): TaskMeta { return SHARED_META; }
/** A barrier's dependencies: of the rank's tasks, the last of each in-order stream (it ends after
 *  every earlier task of its stream) and every task on no stream (CPU pool, disk, none): exact. */
let lastOnRes = new Int32Array(64), isStream = new Uint8Array(64);
function tails(g: SimGraph, all: readonly number[]): number[] {
  const R = g.resourceCount;
  if (lastOnRes.length < R) { lastOnRes = new Int32Array(2 * R); isStream = new Uint8Array(2 * R); }
  lastOnRes.fill(-1, 0, R);
  for (let r = 0; r < R; r++) isStream[r] = g.resourceKind(r) === 'stream' ? 1 : 0;
  const out: number[] = [];
  const tRes = g.tRes;
  for (let i = 0; i < all.length; i++) {
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
   *  device count and cap (cleared first): for callers that are done with the previous result
   *  (the search). */
  reuseGraph?: boolean;
}

interface StagePre {
  stages: readonly StageSpec[]; inv: Inventory; place: StagePlacement[]; layerStage: Int32Array; layerIdx: Int32Array;
  kept: { full: number; kept: number; gpu: number; host: number }[]; hostGradStage: boolean[];
  /** Per rank program: its coarse end-of-step groups. */
  groups: WeakMap<readonly Instr[], { grpOf: Int32Array; grpAmt: number[] }>;
}
const stageCache = new WeakMap<readonly StagePolicy[], StagePre>();

/** Scratch arrays of the lowering, by slot (contents undefined; at least n long). */
const scratchArrays: Int32Array[] = [];
function scratchI32(slot: number, n: number): Int32Array {
  let a = scratchArrays[slot];
  if (!a || a.length < n) { a = new Int32Array(Math.max(64, 2 * n)); scratchArrays[slot] = a; }
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

/** Memory-model overhead per device from the profile: context, plus communicator buffers where
 *  the plan has more than one rank (`ranks`; unknown: counted). */
export function profileOverheadBytes(profile: HardwareProfile, ranks = 2): number {
  return profile.gpus.kind === 'cpu' ? 0 : profile.overheads.cuda_context_bytes + (ranks > 1 ? profile.overheads.comm_buffer_bytes : 0);
}

/** The memory model of a plan (the same inputs the lowering uses). */
export function planMemory(plan: Plan, profile: HardwareProfile, inv?: Inventory): MemoryReport {
  return memoryModel({
    model: plan.model, precision: plan.precision, optimizer: plan.optimizer.name, mbs: plan.job.microBatchSize,
    seq: plan.job.seq, microBatches: plan.job.microBatches, schedule: plan.schedule, stages: plan.layout.stages,
    pipelineRanks: plan.layout.pipelineRanks, dataParallel: plan.layout.dataParallel, policy: plan.policy.stages,
    overheadBytes: profileOverheadBytes(profile, plan.layout.pipelineRanks * plan.layout.dataParallel),
    commGroupBytes: profile.overheads.comm_group_bytes, p2pConnectionBytes: profile.overheads.p2p_connection_bytes, allocatorOverheadFraction: profile.overheads.allocator_overhead_fraction, diskPaths: plan.policy.diskPaths.length,
    diskConcurrency: plan.policy.diskConcurrency ?? 2,
    program: plan.layout.virtualStages > 1 ? plan.program : undefined,
    inventory: inv ?? getInventory(plan.model, plan.precision, plan.job.microBatchSize, plan.job.seq),
  });
}

export function lowerPlan(plan: Plan, profile: HardwareProfile, opts: LowerOptions = {}): Lowered {
  const inv = opts.inventory ?? getInventory(plan.model, plan.precision, plan.job.microBatchSize, plan.job.seq);
  const mem = opts.memory ?? planMemory(plan, profile, inv);
  const { layout, policy } = plan;
  const N = layout.pipelineRanks, D = layout.dataParallel, K = layout.stages.length;
  const isCpu = profile.gpus.kind === 'cpu';
  const rankGpu = layout.rankDevice.map((d, r) => (d >= 0 ? d : r));
  let maxGpu = 0;
  for (const gi of rankGpu) {
    if (gi >= profile.gpus.count) throw new InputError(`layout.rankDevice: device ${gi} is not in hardware profile ${profile.id} (${profile.gpus.count} ${isCpu ? 'CPU ranks' : 'GPUs'})`);
    maxGpu = Math.max(maxGpu, gi);
  }
  const { graph: g, machine } = machineFor(profile, maxGpu + 1, plan.job.gpuMemCapBytes ?? undefined, !!opts.reuseGraph);
  const times = layerTimes(inv, profile);
  const B = bytesPerParam(plan.precision, plan.optimizer.name);
  const together = headHasEmbedding(layout.stages);
  // Placement per stage (a search that lowers one program for several mappings passes the same
  // stage and policy arrays: computed once for them).
  let pre = opts.reuseGraph ? stageCache.get(policy.stages) : undefined;
  if (!pre || pre.stages !== layout.stages || pre.inv !== inv) {
    const place: StagePlacement[] = layout.stages.map((s, i) => placeStage(inv, s, policy.stages[i]!, together));
    const layerStage = new Int32Array(inv.layers.length);
    const layerIdx = new Int32Array(inv.layers.length);
    layout.stages.forEach((s, i) => { for (let l = s.layers[0]; l < s.layers[1]; l++) { layerStage[l] = i; layerIdx[l] = l - s.layers[0]; } });
    const kept = layout.stages.map((s, i) => stageKeptBytes(inv, s, policy.stages[i]!));
    const hostGradStage = place.map((p) => p.gradsResident.some((x) => !x));
    pre = { stages: layout.stages, inv, place, layerStage, layerIdx, kept, hostGradStage, groups: new WeakMap() };
    if (opts.reuseGraph) stageCache.set(policy.stages, pre);
  }
  const { place, layerStage, layerIdx, kept, hostGradStage } = pre;
  const nL = inv.layers.length;
  const actBytes = inv.mbs * inv.seq * plan.model.hidden_size * inv.actBytes;
  const perInstr = profile.overheads.per_instruction_us;
  // Each rank's host worker runs its CPU updates on cores / ranks threads (the executor's split of
  // the host between its ranks); the pool's curve then gives a rank alone its cores' rate and ranks
  // updating at once the all-cores total (DRAM-bound), shared. A search that lowers one replica of
  // D (replicaProfile: the curve divided by D) gives its ranks the whole pool likewise.
  const lowered = N * Math.max(1, Math.min(D, opts.replicas ?? D));
  const cpuWorkers = Math.max(1, Math.floor((profile.cpu.threads ?? profile.cpu.cores) / lowered));
  const wantHost = opts.hostMemory !== false;
  const coarse = !!opts.coarse;
  const withMem = opts.memoryEffects !== false;
  const metaOf = opts.meta === false ? sharedMetaOf : realMetaOf;

  // Per stage: forward/backward time of the whole stage (recompute adds the forward).
  const stageF = new Float64Array(K), stageB = new Float64Array(K);
  for (let s = 0; s < K; s++) {
    let f = 0, b = 0;
    for (let l = layout.stages[s]!.layers[0]; l < layout.stages[s]!.layers[1]; l++) { f += times.fwd[l]!; b += times.bwd[l]!; }
    stageF[s] = f;
    stageB[s] = b + (policy.stages[s]!.recompute ? f : 0);
  }

  const taskOf: Int32Array[] = [];
  // Cross-rank pairing: key -> task.
  // Cross-rank pairing by (kind, mb, from-stage, replica): sends, and the compute tasks that
  // consume the matching receive (a receive is not a task of its own: its wait is a dependency).
  const M = plan.job.microBatches;
  const pairKey = (kind: number, mb: number, from: number, rep: number) => ((kind * M + mb) * K + from) * D + rep;
  const sendOf = new Int32Array(2 * M * K * D).fill(-1);
  const recvBy: number[] = []; // pairs: key, consumer task
  const arArrive = new Map<number, TaskId[]>(); // allreduce: layer * N + pipelineRank -> arrive tasks
  const arTasks = new Map<number, TaskId[]>();
  const gnArrive: TaskId[] = [], gnTasks: TaskId[] = [];
  const barriers: TaskId[] = [];

  // Per-rank scratch (refilled for each rank).
  const perLayerA = scratchI32(0, nL), perLayerB = scratchI32(1, nL), perLayerC = scratchI32(2, nL);
  const perMbA = scratchI32(3, M * K), perMbB = scratchI32(4, M * K);
  for (let r = 0; r < lowered; r++) {
    const pr = r % N, rep = Math.floor(r / N);
    const gpu = machine.gpus[rankGpu[r]!]!;
    const dev = gpu.device;
    const prog = plan.program.ranks[r]!;
    const tOf = new Int32Array(prog.length).fill(-1);
    taskOf.push(tOf);
    const all: TaskId[] = [];
    const dm = mem.devices[pr]!, hm = mem.hostPerRank[pr]!;
    // Persistent state and reserved workspaces, allocated at the step start.
    const setupMem: MemEffect[] = [];
    const persist = (buffer: string, bytes: number, cls: MemEffect['class']) => { if (bytes > 0 && withMem) setupMem.push({ op: 'alloc', device: dev, buffer, bytes, class: cls }); };
    persist('weights', dm.weights, 'weights');
    persist('gradients', dm.gradients, 'gradients');
    persist('master', dm.masterWeights, 'master');
    persist('optimizer', dm.optimizerStates, 'optimizer');
    persist('workspaces', dm.temporary.total, 'buffers');
    persist('context', dm.overhead, 'buffers');
    // the set-up transient (memory.ts DeviceMemory.load: the fp32 masters built at load before the
    // host groups take them), beyond what set-up keeps: held through set-up only
    const loadExtra = dm.load - (dm.weights + dm.gradients + dm.masterWeights + dm.optimizerStates + dm.temporary.total);
    if (wantHost && withMem && !isCpu) {
      if (hm.total > 0) setupMem.push({ op: 'alloc', device: machine.host, buffer: `host.r${r}`, bytes: hm.total, class: 'buffers' });
    }
    const setup = g.task(spec(undefined, 0, 0, undefined, NO, setupMem, metaOf(r, -1, 'setup')));
    all.push(setup);
    if (loadExtra > 0 && withMem) {
      // first on the compute stream: training allocates nothing before it is gone
      const lm: MemEffect[] = [{ op: 'alloc', device: dev, buffer: 'load', bytes: loadExtra, class: 'master', at: 'start' }, { op: 'free', device: dev, buffer: 'load', at: 'end' }];
      all.push(g.task(spec(gpu.compute, 0, 0, undefined, [setup], lm, metaOf(r, -1, 'setup'))));
    }

    let lastBackward = -1 as TaskId;
    let lastCompute = -1 as TaskId;
    const pendingRecv: number[] = []; // pair keys awaiting their consumer
    const reloads = perMbA.fill(-1); // by mb * K + stage
    const offActs = perMbB.fill(-1);
    // Param streaming: fetch tasks queued for the next pass, and the history of uses for slots.
    let pendingFetch: { layer: number; task: TaskId; bytes: number; slots: number; meta: TaskMeta }[] = [];
    const useHistory: TaskId[] = []; // compute task of each streamed-layer use, in order
    const fetchTasks: TaskId[] = []; // fetch k is used by useHistory[k]
    const fetchSlots: number[] = [];
    const lastGradOffload = perLayerA.fill(-1); // by layer
    let offBytes = 0;
    let lastHostGradOff = -1 as TaskId;
    const offActList: TaskId[] = [];
    const offLayers: number[] = [];
    const cpuStep = perLayerB.fill(-1);
    const diskReadOf = perLayerC.fill(-1);
    let lastDiskWrite = -1 as TaskId;
    // The rank's host worker runs its CPU updates, disk transfers and the issue of its uploads one
    // at a time in program order: each waits for the worker's previous blocking task (an upload
    // only queues a copy, so the worker moves on at once).
    let lastWorker = -1 as TaskId;
    const slotsOf = (s: number) => policy.stages[s]!.prefetchDepth + 1;
    // Search fidelity: the end-of-step work of a stage (gradient offloads of resident layers,
    // all-reduces, optimizer steps, uploads) moves in at most 4 chunks of consecutive layers.
    let grpOf: Int32Array | null = null;
    let grpAmt: number[] = [];
    const grpTask: number[] = [];
    const cachedGroups = coarse ? pre.groups.get(prog) : undefined;
    if (cachedGroups) {
      grpOf = cachedGroups.grpOf;
      grpAmt = cachedGroups.grpAmt;
      for (let i = 0; i < grpAmt.length; i++) grpTask.push(-1);
    } else if (coarse) {
      grpOf = new Int32Array(prog.length).fill(-1);
      pre.groups.set(prog, { grpOf, grpAmt });
      const keys = scratchI32(5, 4 * 2 * K * 4 * 2).fill(-1);
      let phase = 0;
      for (let pc = 0; pc < prog.length; pc++) {
        const x = prog[pc]!;
        if (x.op === 'forward') phase = 1;
        if (x.op !== 'offload_grads' && x.op !== 'allreduce_grads' && x.op !== 'optimizer_step' && x.op !== 'upload_params') continue;
        const st = layerStage[x.layer]!, i = layerIdx[x.layer]!, pl = place[st]!;
        if (x.op === 'offload_grads' && !pl.gradsResident[i]) continue;
        if (!pl.hostStateInCpu[i] && pl.params[i]! > pl.gpuElems[i]!) continue; // disk groups keep their own order
        const G = Math.ceil(pl.layers.length / 4);
        const opc = x.op === 'offload_grads' ? 0 : x.op === 'allreduce_grads' ? 1 : x.op === 'optimizer_step' ? 2 : 3;
        const key = ((((opc * 2 + (x.op === 'optimizer_step' && x.tier === 'cpu' ? 1 : 0)) * K + st) * 4 + Math.floor(i / G)) * 2) + phase;
        let gi = keys[key]!;
        if (gi < 0) { gi = grpAmt.length; keys[key] = gi; grpAmt.push(0); grpTask.push(-1); }
        grpOf[pc] = gi;
        const n = pl.params[i]!;
        grpAmt[gi]! += x.op === 'optimizer_step' ? Math.round(n * (x.fraction ?? 1))
          : x.op === 'upload_params' ? (n - pl.gpuElems[i]!) * B.weight : n * B.grad;
      }
    }

    for (let pc = 0; pc < prog.length; pc++) {
      const x = prog[pc]! as Instr;
      const meta = metaOf(r, pc, x.op);
      let t = -1 as TaskId;
      switch (x.op) {
        case 'forward':
        case 'backward': {
          const s = x.stage, fwd = x.op === 'forward';
          meta.mb = x.mb; meta.stage = s;
          const deps: TaskId[] = [];
          const recvKeys = pendingRecv.length ? pendingRecv.splice(0) : null;
          const key = x.mb * K + s;
          if (!fwd && reloads[key]! >= 0) deps.push(reloads[key]!);
          // Staging buffers pace the compute: a backward that streams gradients to the host waits
          // until the previous pass's gradients have left; a forward that offloads its input waits
          // for the offload of two forwards before (two staging buffers).
          if (!fwd && hostGradStage[s] && lastHostGradOff >= 0) deps.push(lastHostGradOff);
          if (fwd && policy.stages[s]!.recompute && kept[s]!.host > 0 && offActList.length >= 2) deps.push(offActList[offActList.length - 2]!);
          const memEff: MemEffect[] = [];
          if (withMem && kept[s]!.gpu > 0) {
            memEff.push(fwd
              ? { op: 'alloc', device: dev, buffer: actName(x.mb, s, K), bytes: kept[s]!.gpu, class: 'activations', at: 'start' }
              : { op: 'free', device: dev, buffer: actName(x.mb, s, K), at: 'end' });
          }
          const dur = (fwd ? stageF[s]! : stageB[s]!) + perInstr;
          let firstOfPass = -1 as TaskId;
          if (pendingFetch.length === 0) {
            t = g.task(spec(gpu.compute, dur, 0, undefined, deps, memEff, meta));
            firstOfPass = t;
          } else {
            // Layer by layer: each streamed use waits for its fetch.
            let fetches = pendingFetch;
            pendingFetch = [];
            if (coarse) {
              // At most 2 chunks of consecutive layers; slots counted in chunks.
              const G = Math.ceil(fetches.length / 2);
              const chunks: typeof fetches = [];
              for (let c = 0; c < fetches.length; c += G) {
                const head = fetches[c]!;
                let bytes = 0;
                for (let j = c, e = Math.min(fetches.length, c + G); j < e; j++) bytes += fetches[j]!.bytes;
                const ft = g.task(spec(gpu.h2d, 0, bytes, gpu.h2dRoute, NO, undefined, head.meta));
                all.push(ft);
                fetchTasks.push(ft);
                fetchSlots.push(Math.max(1, Math.ceil(head.slots / G)));
                chunks.push({ layer: head.layer, task: ft, bytes, slots: head.slots, meta: head.meta });
              }
              fetches = chunks;
            }
            const totalLayers = fetches.length;
            const per = dur / totalLayers;
            let first = true;
            for (let i = 0; i < totalLayers; i++) {
              const fdeps = first ? [...deps, fetches[i]!.task] : [fetches[i]!.task];
              const subMeta = metaOf(r, pc, x.op); subMeta.mb = meta.mb; subMeta.stage = meta.stage; subMeta.layer = fetches[i]!.layer;
              const sub = g.task(spec(gpu.compute, per, 0, undefined, fdeps, memEff.filter((e) => (e.op === 'alloc' ? first : i === totalLayers - 1)), subMeta));
              useHistory.push(sub);
              all.push(sub);
              if (first) firstOfPass = sub;
              first = false;
              t = sub;
            }
          }
          if (recvKeys) for (const k of recvKeys) recvBy.push(k, firstOfPass);
          if (fwd) lastCompute = t; else { lastBackward = t; lastCompute = t; }
          break;
        }
        case 'send_act':
        case 'send_grad': {
          const to = x.op === 'send_act' ? x.stage + 1 : x.stage - 1;
          const peerGpu = rankGpu[x.peer]!;
          const route = peerGpu === rankGpu[r] ? [] : machine.peerRoute(rankGpu[r]!, peerGpu);
          meta.mb = x.mb; meta.stage = x.stage; meta.bytes = actBytes;
          t = g.task(spec(gpu.comm, 0, route.length ? actBytes : 0, route, lastCompute >= 0 ? [lastCompute] : NO, undefined, meta));
          sendOf[pairKey(x.op === 'send_act' ? 0 : 1, x.mb, x.stage, rep)] = t;
          break;
        }
        case 'recv_act':
        case 'recv_grad': {
          const from = x.op === 'recv_act' ? x.stage - 1 : x.stage + 1;
          pendingRecv.push(pairKey(x.op === 'recv_act' ? 0 : 1, x.mb, from, rep));
          break;
        }
        case 'fetch_params': {
          const s = layerStage[x.layer]!;
          const bytes = place[s]!.params[layerIdx[x.layer]!]! * B.weight;
          meta.layer = x.layer; meta.bytes = bytes;
          if (coarse) { pendingFetch.push({ layer: x.layer, task: -1, bytes, slots: slotsOf(s), meta }); break; }
          t = g.task(spec(gpu.h2d, 0, bytes, gpu.h2dRoute, NO, undefined, meta));
          fetchTasks.push(t);
          fetchSlots.push(slotsOf(s));
          pendingFetch.push({ layer: x.layer, task: t, bytes, slots: slotsOf(s), meta });
          break;
        }
        case 'release_params':
          break;
        case 'offload_grads': {
          const s = layerStage[x.layer]!, i = layerIdx[x.layer]!;
          const pl = place[s]!;
          const bytes = pl.params[i]! * B.grad;
          meta.layer = x.layer; meta.bytes = bytes;
          const grp = grpOf ? grpOf[pc]! : -1;
          if (grp >= 0 && grpTask[grp]! >= 0) { lastGradOffload[x.layer] = grpTask[grp]!; break; }
          if (coarse && grp < 0 && prog[pc + 1]?.op === 'offload_grads' && !pl.gradsResident[layerIdx[(prog[pc + 1] as { layer: number }).layer]!]) { offBytes += bytes; offLayers.push(x.layer); break; }
          t = g.task(spec(gpu.d2h, 0, grp >= 0 ? grpAmt[grp]! : bytes + offBytes, gpu.d2hRoute, lastBackward >= 0 ? [lastBackward] : NO, undefined, meta));
          if (grp >= 0) grpTask[grp] = t;
          lastGradOffload[x.layer] = t;
          if (!pl.gradsResident[i]) lastHostGradOff = t;
          for (const l of offLayers) lastGradOffload[l] = t;
          offBytes = 0; offLayers.length = 0;
          break;
        }
        case 'allreduce_grads': {
          const s = layerStage[x.layer]!;
          const grp = grpOf ? grpOf[pc]! : -1;
          if (grp >= 0 && grpTask[grp]! >= 0) { lastGradOffload[x.layer] = grpTask[grp]!; break; }
          const bytes = grp >= 0 ? grpAmt[grp]! : place[s]!.params[layerIdx[x.layer]!]! * B.grad;
          meta.layer = x.layer; meta.bytes = bytes;
          const am = metaOf(r, pc, 'allreduce_arrive'); am.layer = x.layer;
          const arrive = g.task(spec(undefined, 0, 0, undefined, lastBackward >= 0 ? [lastBackward] : NO, undefined, am));
          all.push(arrive);
          const nextRep = (rep + 1) % D;
          const peerGpu = rankGpu[nextRep * N + pr]!;
          const route = peerGpu === rankGpu[r] ? [] : machine.peerRoute(rankGpu[r]!, peerGpu);
          const ringBytes = D > 1 ? (2 * (D - 1) / D) * bytes : 0;
          t = g.task(spec(gpu.comm, 0, route.length ? ringBytes : 0, route, NO, undefined, meta));
          const k = x.layer * N + pr;
          (arArrive.get(k) ?? (arArrive.set(k, []), arArrive.get(k)!)).push(arrive);
          (arTasks.get(k) ?? (arTasks.set(k, []), arTasks.get(k)!)).push(t);
          lastGradOffload[x.layer] = t;
          if (grp >= 0) grpTask[grp] = t;
          break;
        }
        case 'offload_act': {
          const bytes = kept[x.stage]!.host;
          meta.mb = x.mb; meta.stage = x.stage; meta.bytes = bytes;
          t = g.task(spec(gpu.d2h, 0, bytes, gpu.d2hRoute, lastCompute >= 0 ? [lastCompute] : NO, undefined, meta));
          offActs[x.mb * K + x.stage] = t;
          offActList.push(t);
          break;
        }
        case 'reload_act': {
          const bytes = kept[x.stage]!.host;
          meta.mb = x.mb; meta.stage = x.stage; meta.bytes = bytes;
          const off0 = offActs[x.mb * K + x.stage]!; const off = off0 >= 0 ? off0 : undefined;
          t = g.task(spec(gpu.h2d, 0, bytes, gpu.h2dRoute, off !== undefined ? [off] : NO, undefined, meta));
          reloads[x.mb * K + x.stage] = t;
          break;
        }
        case 'grad_norm': {
          const arrive = g.task(spec(undefined, 0, 0, undefined, all.length ? [all[all.length - 1]!] : NO, undefined, metaOf(r, pc, 'grad_norm_arrive')));
          all.push(arrive);
          gnArrive.push(arrive);
          t = g.task(spec(gpu.comm, 50 + perInstr, 0, undefined, NO, undefined, meta));
          gnTasks.push(t);
          lastCompute = t;
          break;
        }
        case 'optimizer_step': {
          const s = layerStage[x.layer]!, i = layerIdx[x.layer]!;
          const grp = grpOf ? grpOf[pc]! : -1;
          if (grp >= 0 && grpTask[grp]! >= 0) { if (x.tier === 'cpu') cpuStep[x.layer] = grpTask[grp]!; break; }
          const n = place[s]!.params[i]!;
          const elems = grp >= 0 ? grpAmt[grp]! : Math.round(n * (x.fraction ?? 1));
          meta.layer = x.layer;
          const deps: TaskId[] = [];
          const off0 = lastGradOffload[x.layer]!; const off = off0 >= 0 ? off0 : undefined;
          if (x.tier === 'gpu') {
            if (lastBackward >= 0) deps.push(lastBackward);
            if (off !== undefined) deps.push(off);
            const bytes = elems * (2 * B.weight + B.grad + 2 * B.master + 2 * B.opt);
            t = g.task(spec(gpu.compute, optimizerTime_us(profile, isCpu ? 'cpu' : 'gpu', bytes).us + perInstr, 0, undefined, deps, undefined, meta));
            lastCompute = t;
          } else {
            if (off !== undefined) deps.push(off);
            const rd = diskReadOf[x.layer]!;
            if (rd >= 0) deps.push(rd);
            if (lastWorker >= 0) deps.push(lastWorker);
            t = g.task(spec(machine.cpu, 0, 0, undefined, deps, undefined, meta, undefined, elems, cpuWorkers));
            cpuStep[x.layer] = t;
            lastWorker = t;
          }
          if (grp >= 0) grpTask[grp] = t;
          break;
        }
        case 'upload_params': {
          const s = layerStage[x.layer]!, i = layerIdx[x.layer]!;
          const pl = place[s]!;
          const grp = grpOf ? grpOf[pc]! : -1;
          if (grp >= 0 && grpTask[grp]! >= 0) break;
          const bytes = grp >= 0 ? grpAmt[grp]! : (pl.params[i]! - pl.gpuElems[i]!) * B.weight;
          meta.layer = x.layer; meta.bytes = bytes;
          // queued on the worker behind every CPU update and disk transfer issued before it
          const st0 = lastWorker >= 0 ? lastWorker : cpuStep[x.layer]!; const st = st0 >= 0 ? st0 : undefined;
          t = g.task(spec(gpu.h2d, 0, bytes, gpu.h2dRoute, st !== undefined ? [st] : NO, undefined, meta));
          if (grp >= 0) grpTask[grp] = t;
          break;
        }
        case 'disk_read':
        case 'disk_write': {
          const s = layerStage[x.layer]!, i = layerIdx[x.layer]!;
          const pl = place[s]!;
          const hostEl = pl.params[i]! - pl.gpuElems[i]!;
          const bytes = hostEl * (B.master + B.opt);
          meta.layer = x.layer; meta.bytes = bytes;
          const disk = machine.disks[x.path % Math.max(1, machine.disks.length)];
          if (disk === undefined) throw new InputError(`hardware profile ${profile.id} has no disks for the plan's disk tier`);
          const deps: TaskId[] = [];
          if (x.op === 'disk_read') { if (lastDiskWrite >= 0) deps.push(lastDiskWrite); }
          else { const st = cpuStep[x.layer]!; if (st >= 0) deps.push(st); }
          if (lastWorker >= 0) deps.push(lastWorker);
          t = g.task(spec(disk, 0, bytes, undefined, deps, undefined, meta, x.op === 'disk_read' ? 'read' : 'write'));
          if (x.op === 'disk_read') diskReadOf[x.layer] = t; else lastDiskWrite = t;
          lastWorker = t;
          break;
        }
        case 'barrier': {
          t = g.task(spec(undefined, 0, 0, undefined, tails(g, all), undefined, meta));
          barriers.push(t);
          break;
        }
      }
      if (t >= 0) { tOf[pc] = t; all.push(t); }
    }
    // A fetch waits for a free slot: the use `slots` fetches earlier has finished.
    for (let k = 0; k < fetchTasks.length; k++) {
      const j = k - fetchSlots[k]!;
      if (j >= 0 && useHistory[j] !== undefined) g.dep(useHistory[j]!, fetchTasks[k]!);
    }
    if (pendingFetch.length) throw new InputError(`program.ranks[${r}]: fetch_params of layer ${pendingFetch[0]!.layer} is not followed by a forward or backward that uses it`);
  }
  // Pair sends and receives.
  for (let i = 0; i < recvBy.length; i += 2) {
    const send = sendOf[recvBy[i]!]!;
    if (send < 0) throw new InputError(`program: a receive (pair ${recvBy[i]}) has no matching send`);
    g.dep(send, recvBy[i + 1]!);
  }
  for (const [k, arrives] of arArrive) for (const t of arTasks.get(k)!) for (const a of arrives) g.dep(a, t);
  for (const t of gnTasks) for (const a of gnArrive) g.dep(a, t);
  return { graph: g, machine, memory: mem, rankGpu, taskOf, tokens: plan.job.microBatchSize * plan.job.seq * plan.job.microBatches * D };
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
export function simulatePlan(plan: Plan, profile: HardwareProfile, opts: LowerOptions & { memorySeries?: boolean; criticalPath?: boolean; peaks?: boolean } = {}): PlanSimulation {
  const lowered = lowerPlan(plan, profile, opts);
  const result = simulate(lowered.graph, { tokens: lowered.tokens, memorySeries: opts.memorySeries ?? false, criticalPath: opts.criticalPath ?? true });
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

/**
 * The steady-state period of a pipeline (seconds per micro-batch): the busiest resource's work
 * per micro-batch, over every rank of every replica: compute (forward, backward, recompute; slowed
 * by concurrent copies), each GPU's host-to-device and device-to-host copies (streamed weights,
 * activation reloads / offloads, host-accumulated gradients) on its copy engines, their shared
 * host-link groups, and pipeline sends on the peer links. A flow shop's step is the fill plus
 * (M-1) periods; the search extrapolates with it (search.ts estimateStep).
 */
export function pipelinePeriod(plan: Plan, profile: HardwareProfile, inv?: Inventory): number {
  inv ??= getInventory(plan.model, plan.precision, plan.job.microBatchSize, plan.job.seq);
  const { layout, policy } = plan;
  const N = layout.pipelineRanks, D = layout.dataParallel, K = layout.stages.length;
  const times = layerTimes(inv, profile);
  const B = bytesPerParam(plan.precision, plan.optimizer.name);
  const together = headHasEmbedding(layout.stages);
  const perInstr = profile.overheads.per_instruction_us;
  const act = inv.mbs * inv.seq * plan.model.hidden_size * inv.actBytes;
  const comp = new Float64Array(N), h2d = new Float64Array(N), d2h = new Float64Array(N), p2p = new Float64Array(N);
  for (let s = 0; s < K; s++) {
    const spec = layout.stages[s]!, p = policy.stages[s]!, r = spec.rank;
    const pl = placeStage(inv, spec, p, together);
    let f = 0, b = 0;
    for (let l = spec.layers[0]; l < spec.layers[1]; l++) { f += times.fwd[l]!; b += times.bwd[l]!; }
    comp[r] += f + b + (p.recompute ? f : 0) + 2 * perInstr;
    for (let i = 0; i < pl.layers.length; i++) {
      if (!pl.paramsResident[i]) h2d[r] += pl.params[i]! * B.weight * (p.recompute ? 3 : 2);
      if (!pl.gradsResident[i]) d2h[r] += pl.params[i]! * B.grad;
    }
    const host = stageKeptBytes(inv, spec, p).host;
    h2d[r] += host; d2h[r] += host;
    if (s > 0) p2p[r] += act;
    if (s < K - 1) p2p[r] += act;
  }
  const gpuOf = (rank: number) => (layout.rankDevice[rank]! >= 0 ? layout.rankDevice[rank]! : rank);
  let period = 0;
  const groupH = new Map<number, number>(), groupD = new Map<number, number>();
  for (let rank = 0; rank < N * D; rank++) {
    const r = rank % N, gi = gpuOf(rank);
    const hl = profile.links.h2d.find((x) => x.gpu === gi), dl = profile.links.d2h.find((x) => x.gpu === gi);
    const tH = hl ? h2d[r]! / (hl.GBps * 1e3) : 0, tD = dl ? d2h[r]! / (dl.GBps * 1e3) : 0;
    const dx = profile.links.duplex?.find((x) => x.gpu === gi);
    const tX = dx ? (h2d[r]! + d2h[r]!) / (dx.GBps * 1e3) : 0;
    const copies = Math.max(tH, tD, tX);
    const c = comp[r]! * (1 + (copies > 0 ? profile.compute_slowdown_under_copies * Math.min(1, copies / Math.max(1e-9, comp[r]!)) : 0));
    const peer = profile.links.peer.find((e) => e.gpus.includes(gi));
    const tP = peer ? p2p[r]! / 2 / (peer.GBps * 1e3) : 0;
    period = Math.max(period, c, copies, tP);
    const g = profile.links.host_groups.findIndex((x) => x.gpus.includes(gi));
    if (g >= 0) { groupH.set(g, (groupH.get(g) ?? 0) + h2d[r]!); groupD.set(g, (groupD.get(g) ?? 0) + d2h[r]!); }
  }
  for (const [g, bytes] of groupH) {
    const hg = profile.links.host_groups[g]!;
    const db = groupD.get(g) ?? 0;
    period = Math.max(period, bytes / (hg.h2d_GBps * 1e3), db / (hg.d2h_GBps * 1e3), hg.duplex_GBps ? (bytes + db) / (hg.duplex_GBps * 1e3) : 0);
  }
  return period / 1e6;
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
