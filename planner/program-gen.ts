// Program generator: one step of a schedule (schedules.ts) on every rank, wrapped with pipeline
// transfers and the offload policy of each stage (placement from memory.ts's placeStage, the one
// source of truth shared with the memory model and the lowering):
//  - parameter streaming: before every forward/backward of a stage with streamed layers, a
//    fetch_params per streamed layer in the order the pass uses them (a recomputing backward uses
//    them forward, then backward), and a release_params after; at most prefetchDepth+1 fetched
//    layers are held (a fetch waits for a free slot);
//  - gradients of host-accumulated layers: offload_grads after every backward; gradients kept on
//    the GPU whose update runs (partly) on the CPU: offload_grads after the stage's last backward;
//  - data parallel: allreduce_grads per layer after the stage's last backward;
//  - optimizer: per layer, as soon as its gradients are complete (last backward of its stage), the
//    GPU part and the CPU part (optimizer_step with fraction; then upload_params of resident
//    weights); with gradient clipping, after grad_norm at the end of the step instead; with the
//    one-step-delayed update the CPU parts run at the start of the step on the previous step's
//    gradients (their uploads at the end);
//  - disk tier: groups (layers whose host-side state is on disk) spread round-robin over the disk
//    paths; disk_read ahead of the update, at most `diskBuffers` groups staged at once (a read is
//    issued after the write of the group `diskBuffers` before it), disk_write after the update;
//  - activation offload: offload_act after a recomputing stage's forward, reload_act before its
//    backward.
// Every rank's program ends with a barrier.
import type { Layout, ScheduleName, StagePolicy } from './plan-types.ts';
import type { Instr, Program } from './program.ts';
import type { Inventory } from './inventory.ts';
import { headHasEmbedding, placeStageCached, recomputeMode, type StagePlacement } from './memory.ts';
import { schedulePasses, type Pass } from './schedules.ts';

export interface GenInput {
  inventory: Inventory;
  layout: Layout;
  policy: StagePolicy[];
  schedule: ScheduleName;
  microBatches: number;
  /** Number of disk paths (policy.diskPaths.length). */
  diskPaths: number;
  /** Disk groups staged in host memory at once (memory.ts: paths * concurrency + 1). */
  diskBuffers: number;
  gradClip: boolean;
  delayedUpdate: boolean;
  /** Generate the programs of only the first `replicas` data-parallel replicas (default all; the
   *  search lowers one replica of a symmetric plan). */
  replicas?: number;
  /** Every instruction with the same fields in the same order (absent ones undefined): one object
   *  shape, so that the search's lowering reads them monomorphically; and no release_params (the
   *  lowering paces fetches by slots, not by releases). Only for programs the search lowers and
   *  drops: a plan that is written out or executed needs the regular form. */
  uniform?: boolean;
}

/** Whether a plan's disk groups alternate their order each step (planner/program.ts): with the
 *  delayed update (the host updates are free to run in any order) unless the policy turns it off. */
export function diskAlternates(plan: { optimizer: { delayedUpdate?: boolean }; policy: { diskAlternate?: boolean; diskPaths: readonly string[] } }): boolean {
  return !!plan.optimizer.delayedUpdate && plan.policy.diskAlternate !== false && plan.policy.diskPaths.length > 0;
}

/** Disk groups staged in host memory at once for `paths` paths of `concurrency` transfers. */
export function diskBuffersFor(paths: number, concurrency: number): number {
  return Math.max(1, paths) * Math.max(1, concurrency) + 1;
}

export function generateProgram(g: GenInput): Program {
  const { layout, policy, inventory: inv } = g;
  const N = layout.pipelineRanks, D = layout.dataParallel, K = layout.stages.length, M = g.microBatches;
  const together = headHasEmbedding(layout.stages);
  const place: StagePlacement[] = layout.stages.map((s, i) => placeStageCached(inv, s, policy[i]!, together));
  // Per stage: its streamed layers (in layer order).
  const streamed: number[][] = place.map((pl) => {
    const ls: number[] = [];
    for (let i = 0; i < pl.layers.length; i++) if (!pl.paramsResident[i]) ls.push(pl.layers[i]!);
    return ls;
  });
  const ranks: Instr[][] = [];
  const reps = Math.max(1, Math.min(D, g.replicas ?? D));
  for (let rep = 0; rep < reps; rep++) {
    for (let pr = 0; pr < N; pr++) {
      ranks.push(new RankGen(g, place, streamed, pr, rep * N, K, M).run());
    }
  }
  return { ranks };
}

/** schedulePasses, memoised (the search generates the same few schedules many times; the passes
 *  are only read). */
const passCache = new Map<number, Pass[]>();
function passesOf(schedule: ScheduleName, N: number, v: number, M: number, r: number): Pass[] {
  if (N >= 64 || v >= 16 || M >= 65536 || r >= 64) return schedulePasses(schedule, N, v, M, r);
  const key = ((((schedule === '1f1b' ? 0 : schedule === 'gpipe' ? 1 : 2) * 64 + N) * 16 + v) * 65536 + M) * 64 + r;
  let p = passCache.get(key);
  if (!p) {
    if (passCache.size > 4096) passCache.clear();
    p = schedulePasses(schedule, N, v, M, r);
    passCache.set(key, p);
  }
  return p;
}

/** Interned instructions of the uniform form (read only: the lowering never changes an
 *  instruction), by a numeric key of their fields (within small()'s range). */
const interned = new Map<number, Instr>();
function small(a: number, b: number, c: number): boolean {
  return a >= 0 && a < 4096 && b >= 0 && b < 4096 && c >= 0 && c < 4096 && Number.isInteger(a) && Number.isInteger(b) && Number.isInteger(c);
}
const U_BARRIER = { op: 'barrier', mb: undefined, stage: undefined, peer: undefined, layer: undefined, tier: undefined, fraction: undefined, path: undefined } as unknown as Instr;
const U_GRAD_NORM = { op: 'grad_norm', mb: undefined, stage: undefined, peer: undefined, layer: undefined, tier: undefined, fraction: undefined, path: undefined } as unknown as Instr;

/** RankGen.diskIndex's storage, reused from rank to rank (one RankGen runs at a time). */
let diskIndexScratch = new Int32Array(64);

/** One rank's program (the per-rank work in small methods: the search generates many thousands). */
class RankGen {
  readonly list: Instr[] = [];
  readonly uniform: boolean;
  readonly myStages: number[] = [];
  readonly eager: boolean;
  /** Host-side updates in the order they will run. */
  readonly updateOrder: { stage: number; i: number }[] = [];
  readonly diskOrder: number[] = [];
  /** By layer: index into diskOrder, or -1. */
  readonly diskIndex: Int32Array;
  readonly B: number;
  readonly paths: number;

  constructor(
    readonly g: GenInput, readonly place: readonly StagePlacement[], readonly streamed: readonly number[][],
    readonly pr: number, readonly base: number, readonly K: number, readonly M: number,
  ) {
    this.uniform = !!g.uniform;
    const layout = g.layout;
    for (let s = 0; s < K; s++) if (layout.stages[s]!.rank === pr) this.myStages.push(s);
    this.eager = !g.gradClip && !g.delayedUpdate;
    this.B = Math.max(1, g.diskBuffers);
    this.paths = Math.max(1, g.diskPaths);
    let nL = 0;
    for (const pl of place) for (const l of pl.layers) if (l + 1 > nL) nL = l + 1;
    if (diskIndexScratch.length < nL) diskIndexScratch = new Int32Array(2 * nL);
    this.diskIndex = diskIndexScratch.fill(-1, 0, nL);
  }

  // ---- instructions (the uniform form has every field, absent ones undefined, and is interned:
  // the search's programs share one object per distinct instruction, which nothing changes)
  mbStage(op: 'forward' | 'backward' | 'offload_act' | 'reload_act', mb: number, stage: number): void {
    if (!this.uniform) { this.list.push({ op, mb, stage }); return; }
    const key = small(mb, stage, 0) ? (((op === 'forward' ? 0 : op === 'backward' ? 1 : op === 'offload_act' ? 2 : 3) * 4096 + mb) * 4096 + stage) * 4 : -1;
    let x = key >= 0 ? interned.get(key) : undefined;
    if (x === undefined) {
      x = { op, mb, stage, peer: undefined, layer: undefined, tier: undefined, fraction: undefined, path: undefined } as unknown as Instr;
      if (key >= 0) interned.set(key, x);
    }
    this.list.push(x);
  }
  p2p(op: 'send_act' | 'recv_act' | 'send_grad' | 'recv_grad', mb: number, stage: number, peer: number): void {
    if (!this.uniform) { this.list.push({ op, mb, stage, peer }); return; }
    const key = small(mb, stage, peer) ? ((((op === 'send_act' ? 0 : op === 'recv_act' ? 1 : op === 'send_grad' ? 2 : 3) * 4096 + mb) * 4096 + stage) * 4096 + peer) * 4 + 1 : -1;
    let x = key >= 0 ? interned.get(key) : undefined;
    if (x === undefined) {
      x = { op, mb, stage, peer, layer: undefined, tier: undefined, fraction: undefined, path: undefined } as unknown as Instr;
      if (key >= 0) interned.set(key, x);
    }
    this.list.push(x);
  }
  layerOp(op: 'fetch_params' | 'release_params' | 'offload_grads' | 'allreduce_grads' | 'upload_params', layer: number): void {
    if (!this.uniform) { this.list.push({ op, layer }); return; }
    const key = small(layer, 0, 0)
      ? ((op === 'fetch_params' ? 0 : op === 'release_params' ? 1 : op === 'offload_grads' ? 2 : op === 'allreduce_grads' ? 3 : 4) * 4096 + layer) * 4 + 2 : -1;
    let x = key >= 0 ? interned.get(key) : undefined;
    if (x === undefined) {
      x = { op, mb: undefined, stage: undefined, peer: undefined, layer, tier: undefined, fraction: undefined, path: undefined } as unknown as Instr;
      if (key >= 0) interned.set(key, x);
    }
    this.list.push(x);
  }
  diskOp(op: 'disk_read' | 'disk_write', layer: number, path: number): void {
    if (!this.uniform) { this.list.push({ op, layer, path }); return; }
    const key = small(layer, path, 0) ? (((op === 'disk_read' ? 0 : 1) * 4096 + layer) * 4096 + path) * 4 + 3 : -1;
    let x = key >= 0 ? interned.get(key) : undefined;
    if (x === undefined) {
      x = { op, mb: undefined, stage: undefined, peer: undefined, layer, tier: undefined, fraction: undefined, path } as unknown as Instr;
      if (key >= 0) interned.set(key, x);
    }
    this.list.push(x);
  }
  step(layer: number, tier: 'gpu' | 'cpu', frac: number): void {
    this.list.push(this.uniform
      ? { op: 'optimizer_step', mb: undefined, stage: undefined, peer: undefined, layer, tier, fraction: frac < 1 ? frac : undefined, path: undefined } as unknown as Instr
      : frac < 1 ? { op: 'optimizer_step', layer, tier, fraction: frac } : { op: 'optimizer_step', layer, tier });
  }
  bare(op: 'grad_norm' | 'barrier'): void {
    this.list.push(this.uniform
      ? (op === 'barrier' ? U_BARRIER : U_GRAD_NORM)
      : { op });
  }

  peer(stage: number): number { return this.base + this.g.layout.stages[stage]!.rank; }
  pathOf(j: number): number { return j % this.paths; }
  diskRead(j: number): void { this.diskOp('disk_read', this.diskOrder[j]!, this.pathOf(j)); }

  hostUpdate(s: number, i: number, upload: boolean): void {
    const pl = this.place[s]!, layer = pl.layers[i]!;
    const hostEl = pl.params[i]! - pl.gpuElems[i]!;
    if (hostEl <= 0) return;
    this.step(layer, 'cpu', hostEl / pl.params[i]!);
    const j = this.diskIndex[layer]!;
    if (j >= 0) {
      this.diskOp('disk_write', layer, this.pathOf(j));
      if (j + this.B < this.diskOrder.length) this.diskRead(j + this.B);
    }
    if (upload && pl.paramsResident[i]) this.layerOp('upload_params', layer);
  }

  gpuUpdate(s: number, i: number): void {
    const pl = this.place[s]!, g1 = pl.gpuElems[i]!;
    if (g1 <= 0) return;
    this.step(pl.layers[i]!, 'gpu', g1 / pl.params[i]!);
  }

  run(): Instr[] {
    const g = this.g, place = this.place, M = this.M;
    const passes = passesOf(g.schedule, g.layout.pipelineRanks, g.layout.virtualStages, M, this.pr);
    // Host-side updates in the order they will run: stages in the order their gradients complete
    // (eager) or last stage first, layers last first; with the delayed update all at the start of
    // the step (a streamed layer's fetches read the weights of the update before: the executor
    // keeps two host copies and swaps them at the step end). Disk groups follow it.
    const myStages = this.myStages;
    const stageOrder: number[] = [];
    if (this.eager) {
      const left = new Int32Array(this.K);
      for (const s of myStages) left[s] = M;
      for (const p of passes) if (p.kind === 'B' && --left[p.stage]! === 0) stageOrder.push(p.stage);
    } else for (let si = myStages.length - 1; si >= 0; si--) stageOrder.push(myStages[si]!);
    const updateOrder = this.updateOrder;
    for (const s of stageOrder) for (let i = place[s]!.layers.length - 1; i >= 0; i--) updateOrder.push({ stage: s, i });
    const addDisk = (u: { stage: number; i: number }) => {
      const pl = place[u.stage]!;
      if (!pl.hostStateInCpu[u.i] && pl.params[u.i]! - pl.gpuElems[u.i]! > 0) this.diskOrder.push(pl.layers[u.i]!);
    };
    for (const u of updateOrder) addDisk(u);
    for (let j = 0; j < this.diskOrder.length; j++) this.diskIndex[this.diskOrder[j]!] = j;

    // Disk reads of the first groups start the step.
    for (let j = 0; j < Math.min(this.B, this.diskOrder.length); j++) this.diskRead(j);
    // One-step-delayed update: the host-side updates of the previous step's gradients first.
    if (g.delayedUpdate) {
      for (const u of updateOrder) this.hostUpdate(u.stage, u.i, false);
    }
    const remaining = new Int32Array(this.K);
    for (const s of myStages) remaining[s] = M;
    for (const p of passes) {
      if (p.kind === 'F') this.forward(p.mb, p.stage);
      else this.backward(p.mb, p.stage, --remaining[p.stage]! === 0);
    }
    if (g.gradClip) this.bare('grad_norm');
    if (!this.eager) {
      for (const u of updateOrder) {
        this.gpuUpdate(u.stage, u.i);
        const pl = place[u.stage]!;
        if (!g.delayedUpdate) this.hostUpdate(u.stage, u.i, true);
        else if (pl.paramsResident[u.i] && pl.params[u.i]! - pl.gpuElems[u.i]! > 0) this.layerOp('upload_params', pl.layers[u.i]!);
      }
    }
    this.bare('barrier');
    return this.list;
  }

  forward(mb: number, s: number): void {
    const pol = this.g.policy[s]!, st = this.streamed[s]!;
    const last = this.g.layout.stages.length - 1;
    if (s > 0) this.p2p('recv_act', mb, s, this.peer(s - 1));
    for (const l of st) this.layerOp('fetch_params', l);
    this.mbStage('forward', mb, s);
    if (!this.uniform) for (const l of st) this.layerOp('release_params', l);
    if (pol.recompute && pol.activations.cpu > 0) this.mbStage('offload_act', mb, s);
    if (s < last) this.p2p('send_act', mb, s, this.peer(s + 1));
  }

  backward(mb: number, s: number, lastOfStage: boolean): void {
    const g = this.g, pol = g.policy[s]!, pl = this.place[s]!, st = this.streamed[s]!;
    const last = g.layout.stages.length - 1;
    if (s < last) this.p2p('recv_grad', mb, s, this.peer(s + 1));
    if (pol.recompute && pol.activations.cpu > 0) this.mbStage('reload_act', mb, s);
    // A stage that recomputes as a whole uses its streamed layers forward, then backward; one that
    // recomputes layer by layer runs each layer's recompute and backward on one fetch.
    const wholeStage = recomputeMode(pol) === 1;
    if (wholeStage) for (const l of st) this.layerOp('fetch_params', l);
    for (let i = st.length - 1; i >= 0; i--) this.layerOp('fetch_params', st[i]!);
    this.mbStage('backward', mb, s);
    if (!this.uniform) {
      if (wholeStage) for (const l of st) this.layerOp('release_params', l);
      for (let i = st.length - 1; i >= 0; i--) this.layerOp('release_params', st[i]!);
    }
    for (let i = pl.layers.length - 1; i >= 0; i--) if (!pl.gradsResident[i]) this.layerOp('offload_grads', pl.layers[i]!);
    if (s > 0) this.p2p('send_grad', mb, s, this.peer(s - 1));
    if (lastOfStage) {
      // The stage's gradients are complete.
      const D = g.layout.dataParallel;
      for (let i = pl.layers.length - 1; i >= 0; i--) {
        const layer = pl.layers[i]!;
        if (D > 1) this.layerOp('allreduce_grads', layer);
        if (pl.gradsResident[i] && pl.params[i]! - pl.gpuElems[i]! > 0) this.layerOp('offload_grads', layer);
        if (this.eager) { this.gpuUpdate(s, i); this.hostUpdate(s, i, true); }
      }
    }
  }
}
