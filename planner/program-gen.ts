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
import { headHasEmbedding, placeStage, type StagePlacement } from './memory.ts';
import { schedulePasses } from './schedules.ts';

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

/** An instruction with every field of every op, absent ones undefined (one hidden class). */
function uniformInstr(x: Instr): Instr {
  const a = x as { op: Instr['op']; mb?: number; stage?: number; peer?: number; layer?: number; tier?: 'gpu' | 'cpu'; fraction?: number; path?: number };
  return { op: a.op, mb: a.mb, stage: a.stage, peer: a.peer, layer: a.layer, tier: a.tier, fraction: a.fraction, path: a.path } as unknown as Instr;
}

/** Disk groups staged in host memory at once for `paths` paths of `concurrency` transfers. */
export function diskBuffersFor(paths: number, concurrency: number): number {
  return Math.max(1, paths) * Math.max(1, concurrency) + 1;
}

export function generateProgram(g: GenInput): Program {
  const { layout, policy, inventory: inv } = g;
  const N = layout.pipelineRanks, D = layout.dataParallel, K = layout.stages.length, M = g.microBatches;
  const together = headHasEmbedding(layout.stages);
  const place: StagePlacement[] = layout.stages.map((s, i) => placeStage(inv, s, policy[i]!, together));
  const ranks: Instr[][] = [];
  const reps = Math.max(1, Math.min(D, g.replicas ?? D));
  for (let rep = 0; rep < reps; rep++) {
    for (let pr = 0; pr < N; pr++) {
      ranks.push(rankProgram(g, place, pr, rep * N, K, M));
    }
  }
  return { ranks };
}

function rankProgram(g: GenInput, place: StagePlacement[], pr: number, base: number, K: number, M: number): Instr[] {
  const { layout, policy } = g;
  const D = layout.dataParallel;
  const list: Instr[] = [];
  const out = g.uniform ? { push: (x: Instr) => list.push(uniformInstr(x)) } : list;
  const passes = schedulePasses(g.schedule, layout.pipelineRanks, layout.virtualStages, M, pr);
  const peer = (stage: number) => base + layout.stages[stage]!.rank;
  const myStages: number[] = [];
  for (let s = 0; s < K; s++) if (layout.stages[s]!.rank === pr) myStages.push(s);

  // Host-side updates in the order they will run: stages in the order their gradients complete
  // (eager) or last stage first, layers last first; with the delayed update, resident-weight
  // layers first (at the start of the step), streamed ones at the end. Disk groups follow it.
  const eager = !g.gradClip && !g.delayedUpdate;
  const stageOrder: number[] = [];
  if (eager) {
    const left = new Map<number, number>(myStages.map((s) => [s, M]));
    for (const p of passes) if (p.kind === 'B') { const n = left.get(p.stage)! - 1; left.set(p.stage, n); if (n === 0) stageOrder.push(p.stage); }
  } else for (let si = myStages.length - 1; si >= 0; si--) stageOrder.push(myStages[si]!);
  const updateOrder: { stage: number; i: number }[] = [];
  for (const s of stageOrder) for (let i = place[s]!.layers.length - 1; i >= 0; i--) updateOrder.push({ stage: s, i });
  const hostSeq = g.delayedUpdate
    ? [...updateOrder.filter((u) => place[u.stage]!.paramsResident[u.i]), ...updateOrder.filter((u) => !place[u.stage]!.paramsResident[u.i])]
    : updateOrder;
  const diskOrder: number[] = [];
  for (const u of hostSeq) {
    const pl = place[u.stage]!;
    if (!pl.hostStateInCpu[u.i] && pl.params[u.i]! - pl.gpuElems[u.i]! > 0) diskOrder.push(pl.layers[u.i]!);
  }
  const diskIndex = new Map<number, number>();
  diskOrder.forEach((l, j) => diskIndex.set(l, j));
  const pathOf = (j: number) => j % Math.max(1, g.diskPaths);
  const B = Math.max(1, g.diskBuffers);
  const diskRead = (j: number) => out.push({ op: 'disk_read', layer: diskOrder[j]!, path: pathOf(j) });

  const hostUpdate = (s: number, i: number, upload: boolean) => {
    const pl = place[s]!, layer = pl.layers[i]!;
    const hostEl = pl.params[i]! - pl.gpuElems[i]!;
    if (hostEl <= 0) return;
    const frac = hostEl / pl.params[i]!;
    const step: Instr = frac < 1 ? { op: 'optimizer_step', layer, tier: 'cpu', fraction: frac } : { op: 'optimizer_step', layer, tier: 'cpu' };
    out.push(step);
    const j = diskIndex.get(layer);
    if (j !== undefined) {
      out.push({ op: 'disk_write', layer, path: pathOf(j) });
      if (j + B < diskOrder.length) diskRead(j + B);
    }
    if (upload && pl.paramsResident[i]) out.push({ op: 'upload_params', layer });
  };
  const gpuUpdate = (s: number, i: number) => {
    const pl = place[s]!, g1 = pl.gpuElems[i]!;
    if (g1 <= 0) return;
    const frac = g1 / pl.params[i]!;
    out.push(frac < 1 ? { op: 'optimizer_step', layer: pl.layers[i]!, tier: 'gpu', fraction: frac } : { op: 'optimizer_step', layer: pl.layers[i]!, tier: 'gpu' });
  };

  // Disk reads of the first groups start the step.
  for (let j = 0; j < Math.min(B, diskOrder.length); j++) diskRead(j);
  // One-step-delayed update: the host-side updates of the previous step's gradients first.
  if (g.delayedUpdate) {
    for (const u of updateOrder) if (place[u.stage]!.paramsResident[u.i]) hostUpdate(u.stage, u.i, false);
  }

  const remaining = new Map<number, number>();
  for (const s of myStages) remaining.set(s, M);
  const streamed = (s: number) => {
    const pl = place[s]!;
    const ls: number[] = [];
    for (let i = 0; i < pl.layers.length; i++) if (!pl.paramsResident[i]) ls.push(pl.layers[i]!);
    return ls;
  };
  for (const p of passes) {
    const s = p.stage, pol = policy[s]!, pl = place[s]!;
    const st = streamed(s);
    const offAct = pol.recompute && pol.activations.cpu > 0;
    if (p.kind === 'F') {
      if (s > 0) out.push({ op: 'recv_act', mb: p.mb, stage: s, peer: peer(s - 1) });
      for (const l of st) out.push({ op: 'fetch_params', layer: l });
      out.push({ op: 'forward', mb: p.mb, stage: s });
      if (!g.uniform) for (const l of st) out.push({ op: 'release_params', layer: l });
      if (offAct) out.push({ op: 'offload_act', mb: p.mb, stage: s });
      if (s < g.layout.stages.length - 1) out.push({ op: 'send_act', mb: p.mb, stage: s, peer: peer(s + 1) });
    } else {
      if (s < g.layout.stages.length - 1) out.push({ op: 'recv_grad', mb: p.mb, stage: s, peer: peer(s + 1) });
      if (offAct) out.push({ op: 'reload_act', mb: p.mb, stage: s });
      const order = pol.recompute ? [...st, ...[...st].reverse()] : [...st].reverse();
      for (const l of order) out.push({ op: 'fetch_params', layer: l });
      out.push({ op: 'backward', mb: p.mb, stage: s });
      if (!g.uniform) for (const l of order) out.push({ op: 'release_params', layer: l });
      for (let i = pl.layers.length - 1; i >= 0; i--) if (!pl.gradsResident[i]) out.push({ op: 'offload_grads', layer: pl.layers[i]! });
      if (s > 0) out.push({ op: 'send_grad', mb: p.mb, stage: s, peer: peer(s - 1) });
      const left = remaining.get(s)! - 1;
      remaining.set(s, left);
      if (left === 0) {
        // The stage's gradients are complete.
        for (let i = pl.layers.length - 1; i >= 0; i--) {
          const layer = pl.layers[i]!;
          if (D > 1) out.push({ op: 'allreduce_grads', layer });
          if (pl.gradsResident[i] && pl.params[i]! - pl.gpuElems[i]! > 0) out.push({ op: 'offload_grads', layer });
          if (eager) { gpuUpdate(s, i); hostUpdate(s, i, true); }
        }
      }
    }
  }
  if (g.gradClip) out.push({ op: 'grad_norm' });
  if (!eager) {
    for (const u of updateOrder) {
      gpuUpdate(u.stage, u.i);
      if (!g.delayedUpdate || !place[u.stage]!.paramsResident[u.i]) hostUpdate(u.stage, u.i, true);
      else if (place[u.stage]!.params[u.i]! - place[u.stage]!.gpuElems[u.i]! > 0) out.push({ op: 'upload_params', layer: place[u.stage]!.layers[u.i]! });
    }
  }
  out.push({ op: 'barrier' });
  return list;
}
