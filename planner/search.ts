// Search: the fastest plan that fits. Enumerates layouts (pipeline ranks x data-parallel replicas,
// virtual stages), schedules, micro-batch size/count for the global batch, recompute, layer
// partitions (balanced by simulated layer time, or by count), stage-to-GPU mappings (identity, or
// spread over host-link groups), and per-rank offload levels (a ladder from "everything on the
// GPU" to "everything streamed", with host-side optimizer state in pinned memory or on disk, and
// prefetch depths). Every candidate is first checked by the memory model (GPU cap, host memory);
// only those that fit are lowered and simulated. A plan over the cap is never emitted.
import type { HardwareProfile } from '../sim/index.ts';
import type { ModelConfig } from './model-config.ts';
import { PLAN_VERSION, type Fractions, type Layout, type OptimizerSettings, type Plan, type Precision, type ScheduleName, type StagePolicy } from './plan-types.ts';
import { actBytesOf, getInventory, type Inventory } from './inventory.ts';

/** Tokens a chunk of the head's loss in the plans the search writes: 1024 where the logits of a
 *  micro-batch (T x V, a + 8 bytes a logit in the loss) would take more than 1 GiB, else none (the
 *  chunked loss recomputes the head's product in backward: about 1% more compute on its rank). */
export function lossChunkOf(model: ModelConfig, precision: Precision, mbs: number, seq: number): number {
  const T = mbs * seq;
  return T > 1024 && T * model.vocab_size * (actBytesOf(precision) + 8) > 2 ** 30 ? 1024 : 0;
}
import { evenPartition, memoryModel, type MemoryReport } from './memory.ts';
import { buildPlan, defaultOptimizer } from './plan-build.ts';
import { layerTimes, phaseEnds, pipelinePeriod, planMemory, profileOverheadBytes, replicaProfile, simulatePlan } from './lower.ts';
import { diskBuffersFor, generateProgram } from './program-gen.ts';
import { InputError } from './errors.ts';

export interface SearchInput {
  model: ModelConfig;
  profile: HardwareProfile;
  /** GPUs (or CPU ranks) to use. */
  gpus: number;
  /** Per-GPU memory cap; null: the device's memory. */
  gpuMemCapBytes: number | null;
  /** Pinned host memory the plan may use (default 90% of the profile's host memory). */
  hostMemBytes?: number;
  seq: number;
  /** Sequences per step (all replicas together). */
  globalBatch: number;
  steps?: number;
  precision?: Precision;
  optimizer?: OptimizerSettings;
  schedules?: ScheduleName[];
  /** Offload to host memory / disk allowed (default true / the profile has disks). */
  allowOffload?: boolean;
  allowDisk?: boolean;
  /** Consider the one-step-delayed CPU update (changes training semantics; default false). */
  allowDelayedUpdate?: boolean;
  /** Largest micro-batch size considered (default 16). */
  maxMicroBatchSize?: number;
  /** Plans re-simulated with the critical path for the report (default 8). */
  top?: number;
  progress?: (done: number, total: number, best: number | null) => void;
  /** Also return the plan of every Pareto point (`paretoPlans`, in the order of `pareto`), for
   *  viewers that show any point's timeline (the web explorer). Default false. */
  paretoPlans?: boolean;
}

export interface CandidateSummary {
  schedule: ScheduleName;
  pipelineRanks: number;
  dataParallel: number;
  virtualStages: number;
  microBatchSize: number;
  microBatches: number;
  recompute: boolean;
  partition: 'time' | 'even';
  mapping: 'identity' | 'spread';
  /** Offload level per pipeline rank (0 = everything on GPU; see LEVELS). */
  levels: number[];
  hostTier: HostTier;
  prefetch: number;
  delayedUpdate: boolean;
  offload: string;
  stageLayers: [number, number][];
  step_s: number;
  tokens_per_s: number;
  peak_bytes: number;
  bottleneck?: string;
}

export interface Suggestion {
  change: 'larger-cap' | 'more-gpus' | 'disk-offload' | 'shorter-seq' | 'more-host-memory';
  value: number;
  text: string;
}

export interface SearchResult {
  best: Plan | null;
  top: CandidateSummary[];
  pareto: CandidateSummary[];
  /** With `paretoPlans`: the plan of each Pareto point, in the order of `pareto`. */
  paretoPlans?: Plan[];
  /** Why the runner-up lost to the best. */
  runnerUp: string | null;
  counts: { considered: number; pruned: number; simulated: number };
  infeasible: { reason: string; suggestions: Suggestion[] } | null;
  elapsed_s: number;
}

type HostTier = 'cpu' | 'half-disk' | 'disk';

/** The offload ladder, least offload first. */
export const LEVELS = [
  'all on GPU',
  'optimizer 25% on CPU',
  'optimizer 50% on CPU',
  'optimizer 75% on CPU',
  'optimizer on CPU',
  'optimizer on CPU, gradients to host',
  'optimizer on CPU, gradients and activations to host',
  'optimizer on CPU, gradients and activations to host, half the weights streamed',
  'optimizer on CPU, gradients and activations to host, weights streamed',
] as const;
const MAX_LEVEL = LEVELS.length - 1;

const fr = (gpu: number, cpu: number, disk = 0): Fractions => ({ gpu, cpu, disk });

/** The stage policy of an offload level. */
export function levelPolicy(level: number, recompute: boolean, hostTier: HostTier, prefetch: number, dataParallel = 1): StagePolicy {
  const optGpu = [1, 0.75, 0.5, 0.25][level] ?? 0;
  const host = 1 - optGpu;
  const disk = hostTier === 'disk' ? host : hostTier === 'half-disk' ? host / 2 : 0;
  const opt = fr(optGpu, host - disk, disk);
  return {
    params: level >= 8 ? fr(0, 1) : level >= 7 ? fr(0.5, 0.5) : fr(1, 0),
    grads: level >= 5 && dataParallel === 1 ? fr(0, 1) : fr(1, 0), // replicas all-reduce on the GPU
    master: { ...opt },
    optState: opt,
    activations: level >= 6 && recompute ? fr(0, 1) : fr(1, 0),
    recompute,
    ...(recompute ? { recomputeUnit: 'layer' as const } : {}),
    prefetchDepth: level >= 7 ? prefetch : 1,
  };
}

/** Contiguous partition of `cost` into `k` non-empty parts minimising the largest part. */
export function balancedPartition(cost: readonly number[], k: number): [number, number][] {
  const n = cost.length;
  if (k > n) throw new InputError(`cannot split ${n} layers into ${k} stages`);
  const pre = new Float64Array(n + 1);
  for (let i = 0; i < n; i++) pre[i + 1] = pre[i]! + cost[i]!;
  // best[j][i]: minimal max over j parts of the first i layers.
  const best: Float64Array[] = [], cut: Int32Array[] = [];
  for (let j = 0; j <= k; j++) { best.push(new Float64Array(n + 1).fill(Infinity)); cut.push(new Int32Array(n + 1)); }
  best[0]![0] = 0;
  for (let j = 1; j <= k; j++) {
    for (let i = j; i <= n - (k - j); i++) {
      let b = Infinity, c = -1;
      for (let p = j - 1; p < i; p++) {
        const v = Math.max(best[j - 1]![p]!, pre[i]! - pre[p]!);
        if (v < b - 1e-9) { b = v; c = p; }
      }
      best[j]![i] = b;
      cut[j]![i] = c;
    }
  }
  const parts: [number, number][] = [];
  let i = n;
  for (let j = k; j >= 1; j--) { const p = cut[j]![i]!; parts.push([p, i]); i = p; }
  return parts.reverse();
}

function divisors(n: number): number[] {
  const out: number[] = [];
  for (let d = 1; d <= n; d++) if (n % d === 0) out.push(d);
  return out;
}

/** GPU orders for the mappings: identity (GPUs 0..G-1), and round-robin over the host-link
 *  groups of the whole machine (so that consecutive ranks sit behind different host links). */
function mappings(profile: HardwareProfile, gpus: number): { name: 'identity' | 'spread'; order: number[] }[] {
  const id = Array.from({ length: gpus }, (_, i) => i);
  const out: { name: 'identity' | 'spread'; order: number[] }[] = [{ name: 'identity', order: id }];
  if (profile.gpus.kind === 'cpu') return out;
  const groups = profile.links.host_groups.map((g) => [...g.gpus].sort((a, b) => a - b)).filter((g) => g.length > 0);
  if (groups.length < 2) return out;
  const all: number[] = [];
  const longest = Math.max(...groups.map((g) => g.length));
  for (let i = 0; i < longest; i++) for (const g of groups) if (g[i] !== undefined) all.push(g[i]!);
  for (let i = 0; i < profile.gpus.count; i++) if (!all.includes(i)) all.push(i);
  const spread = all.slice(0, gpus);
  if (spread.join() !== id.join()) out.push({ name: 'spread', order: spread });
  return out;
}

interface Layout0 {
  N: number; D: number; v: number; schedule: ScheduleName; mbs: number; M: number; recompute: boolean;
  partition: 'time' | 'even'; stageLayers: [number, number][];
  /** The stage list of the layout (shared by its candidates' plans). */
  stages: Layout['stages'];
}

function offloadText(levels: number[], tier: HostTier, prefetch: number, delayed: boolean): string {
  const uniq = [...new Set(levels)];
  const lv = uniq.length === 1 ? LEVELS[uniq[0]!] : levels.map((l, r) => `rank ${r}: ${LEVELS[l]}`).join('; ');
  const extras: string[] = [];
  if (levels.some((l) => l >= 1) && tier !== 'cpu') extras.push(tier === 'disk' ? 'host-side optimizer state on disk' : 'half the host-side optimizer state on disk');
  if (levels.some((l) => l >= 7)) extras.push(`prefetch ${prefetch}`);
  if (delayed) extras.push('delayed update');
  return extras.length ? `${lv} (${extras.join(', ')})` : lv;
}

export function search(input: SearchInput): SearchResult {
  const t0 = Date.now();
  const { model, profile } = input;
  const G = input.gpus;
  if (!Number.isInteger(G) || G < 1) throw new InputError(`--gpus: ${G} must be a positive integer`);
  if (G > profile.gpus.count) throw new InputError(`--gpus: ${G} exceeds the ${profile.gpus.count} ${profile.gpus.kind === 'cpu' ? 'CPU ranks' : 'GPUs'} of hardware profile ${profile.id}`);
  if (input.seq > model.max_position_embeddings) throw new InputError(`--seq: ${input.seq} exceeds the model's max_position_embeddings (${model.max_position_embeddings})`);
  const isCpu = profile.gpus.kind === 'cpu';
  const precision: Precision = input.precision ?? (isCpu ? 'fp32' : 'bf16-mixed');
  const baseOpt = input.optimizer ?? defaultOptimizer();
  const cap = input.gpuMemCapBytes ?? profile.gpus.memory_bytes;
  const hostCap = input.hostMemBytes ?? profile.cpu.memory_bytes * 0.9;
  // CPU ranks keep their state in host memory already: offload means nothing there.
  const allowOffload = input.allowOffload !== false && !isCpu;
  const allowDisk = allowOffload && (input.allowDisk ?? profile.disks.length > 0) && profile.disks.length > 0;
  const schedules = input.schedules ?? ['1f1b', 'gpipe', 'interleaved-1f1b'];
  const L = model.num_hidden_layers, nLayers = L + 2;
  const diskPaths = allowDisk ? profile.disks.map((d) => `${d.path}/mmoc`) : [];
  const diskConc = allowDisk ? Math.min(...profile.disks.map((d) => d.concurrency)) : 2;
  const counts = { considered: 0, pruned: 0, simulated: 0 };
  const overheadBytes = profileOverheadBytes(profile, G);
  const allocFrac = profile.overheads.allocator_overhead_fraction;
  const maps = mappings(profile, G);

  // Layouts.
  const layouts: Layout0[] = [];
  for (const N of divisors(G)) {
    const D = G / N;
    if (input.globalBatch % D !== 0) continue;
    const perReplica = input.globalBatch / D;
    for (const schedule of schedules) {
      const vs = schedule === 'interleaved-1f1b' ? (N >= 2 ? [2] : []) : [1];
      for (const v of vs) {
        if (N * v > nLayers) continue;
        for (const mbs of divisors(perReplica)) {
          if (mbs > (input.maxMicroBatchSize ?? 16)) continue;
          const M = perReplica / mbs;
          if (schedule === 'interleaved-1f1b' && M % N !== 0) continue;
          if (N === 1 && schedule !== '1f1b') continue; // one stage: the schedules coincide
          for (const recompute of [false, true]) {
            const inv = getInventory(model, precision, mbs, input.seq, lossChunkOf(model, precision, mbs, input.seq));
            const t = layerTimes(inv, profile);
            const cost = Array.from({ length: nLayers }, (_, l) => t.fwd[l]! * (recompute ? 2 : 1) + t.bwd[l]!);
            const parts: { name: 'time' | 'even'; layers: [number, number][] }[] = [{ name: 'time', layers: balancedPartition(cost, N * v) }];
            const even = evenPartition(L, N * v);
            if (even.join() !== parts[0]!.layers.join()) parts.push({ name: 'even', layers: even });
            for (const p of parts) {
              const stages = p.layers.map((layers, i) => ({ layers: [layers[0], layers[1]] as [number, number], rank: i % N }));
              layouts.push({ N, D, v, schedule, mbs, M, recompute, partition: p.name, stageLayers: p.layers, stages });
            }
          }
        }
      }
    }
  }

  interface Cand { lay: Layout0; levels: number[]; tier: HostTier; prefetch: number; delayed: boolean; mapping: (typeof maps)[number]; mem: MemoryReport; policy: StagePolicy[] }
  const feasible: Cand[] = [];
  let smallestPeak = Infinity, smallestPeakMem: MemoryReport | null = null, hostShort = Infinity;

  const memOf = (lay: Layout0, inv: Inventory, policy: StagePolicy[]): MemoryReport => memoryModel({
    model, precision, optimizer: baseOpt.name, mbs: lay.mbs, seq: input.seq, microBatches: lay.M, schedule: lay.schedule,
    stages: lay.stages, pipelineRanks: lay.N, dataParallel: lay.D,
    policy, overheadBytes, allocatorOverheadFraction: allocFrac, diskPaths: diskPaths.length, diskConcurrency: diskConc,
    commGroupBytes: profile.overheads.comm_group_bytes, p2pConnectionBytes: profile.overheads.p2p_connection_bytes,
    // (interleaved schedules: micro-batches in flight counted off the schedule's passes)
    inventory: inv,
  });
  function jobOf(lay: Layout0, capBytes: number | null) {
    const chunk = lossChunkOf(model, precision, lay.mbs, input.seq);
    return { seq: input.seq, microBatchSize: lay.mbs, microBatches: lay.M, steps: input.steps ?? 10, gpuMemCapBytes: capBytes, seed: 0, ...(chunk ? { lossChunkTokens: chunk } : {}) };
  }

  // Stage policies of this search, one object per distinct (level, recompute, tier, prefetch,
  // replicas) (shared by the candidates: never changed), and a canonical id per distinct content.
  const polMemo = new Map<number, { policy: StagePolicy; id: number }>();
  const polIds = new Map<string, number>();
  const policyOf = (level: number, recompute: boolean, tier: HostTier, prefetch: number, dataParallel: number) => {
    const key = ((((level * 2 + (recompute ? 1 : 0)) * 3 + (tier === 'cpu' ? 0 : tier === 'half-disk' ? 1 : 2)) * 8 + prefetch) * 2) + (dataParallel === 1 ? 0 : 1);
    let e = polMemo.get(key);
    if (!e) {
      const policy = levelPolicy(level, recompute, tier, prefetch, dataParallel);
      const text = JSON.stringify(policy);
      let id = polIds.get(text);
      if (id === undefined) { id = polIds.size; polIds.set(text, id); }
      e = { policy, id };
      polMemo.set(key, e);
    }
    return e;
  };
  const tiers: HostTier[] = allowDisk ? ['cpu', 'half-disk', 'disk'] : ['cpu'];
  const maxLevel = allowOffload ? MAX_LEVEL : 0;
  for (const lay of layouts) {
    const inv = getInventory(model, precision, lay.mbs, input.seq, lossChunkOf(model, precision, lay.mbs, input.seq));
    const K = lay.N * lay.v;
    // Per rank, the least offload level that fits (uniform levels, checked rank by rank).
    const minLevel = new Array<number>(lay.N).fill(-1);
    for (let lv = 0; lv <= maxLevel && minLevel.some((x) => x < 0); lv++) {
      if (lv === 6 && !lay.recompute) continue;
      const pol = Array.from({ length: K }, () => policyOf(lv, lay.recompute, 'cpu', 2, lay.D).policy);
      const m = memOf(lay, inv, pol);
      m.devices.forEach((d, r) => { if (minLevel[r]! < 0 && d.total <= cap) minLevel[r] = lv; });
    }
    const base = minLevel.map((x) => (x < 0 ? maxLevel : x));
    const seen = new Set<string>();
    // Levels below a rank's least fitting one are considered too (and pruned by the memory model);
    // those above it trade speed for memory (the Pareto front).
    for (let delta = -maxLevel; delta <= maxLevel; delta++) {
      const levels = base.map((x) => {
        let l = Math.max(0, Math.min(maxLevel, x + delta));
        if (l === 6 && !lay.recompute) l = delta > 0 ? 7 : 5;
        return Math.min(l, maxLevel);
      });
      const key = levels.map((l) => policyOf(l, lay.recompute, 'cpu', 1, lay.D).id).join();
      if (seen.has(key)) continue;
      seen.add(key);
      const anyHost = levels.some((l) => l >= 1);
      const anyStream = levels.some((l) => l >= 7);
      for (const tier of anyHost ? tiers : ['cpu' as HostTier]) {
        for (const prefetch of anyStream ? [1, 2, 4] : [1]) {
          // The memory model does not depend on the delayed update (the policy is the same).
          const policy = Array.from({ length: K }, (_, s) => policyOf(levels[s % lay.N]!, lay.recompute, tier, prefetch, lay.D).policy);
          const mem = memOf(lay, inv, policy);
          for (const delayed of input.allowDelayedUpdate && anyHost ? [false, true] : [false]) {
            for (const mapping of maps) {
              counts.considered++;
              const host = mem.hostTotal;
              if (mem.peak > cap || host > hostCap) {
                counts.pruned++;
                if (mem.peak < smallestPeak) { smallestPeak = mem.peak; smallestPeakMem = mem; }
                if (mem.peak <= cap) hostShort = Math.min(hostShort, host);
                continue;
              }
              if (mem.peak < smallestPeak) { smallestPeak = mem.peak; smallestPeakMem = mem; }
              feasible.push({ lay, levels, tier, prefetch, delayed, mapping, mem, policy });
            }
          }
        }
      }
    }
  }

  const planOf = (c: Cand): Plan => {
    const rankDevice = isCpu ? Array.from({ length: c.lay.N * c.lay.D }, () => -1) : c.mapping.order.slice(0, c.lay.N * c.lay.D);
    const K = c.lay.N * c.lay.v;
    return buildPlan({
      hardware: profile.id, model, precision, optimizer: { ...baseOpt, delayedUpdate: c.delayed },
      job: jobOf(c.lay, input.gpuMemCapBytes), schedule: c.lay.schedule, stageLayers: c.lay.stageLayers,
      pipelineRanks: c.lay.N, dataParallel: c.lay.D, rankDevice,
      policy: Array.from({ length: K }, (_, s) => levelPolicy(c.levels[s % c.lay.N]!, c.lay.recompute, c.tier, c.prefetch, c.lay.D)),
      diskPaths, diskConcurrency: diskConc, inventory: getInventory(model, precision, c.lay.mbs, input.seq, lossChunkOf(model, precision, c.lay.mbs, input.seq))
    });
  };
  let lastProg: { lay: Layout0; levels: number[]; tier: HostTier; prefetch: number; delayed: boolean; M: number; replicas: number; program: Plan['program']; policy: StagePolicy[] } | null = null;
  // The last few programs: a program does not depend on the prefetch depth (the lowering paces the
  // fetches by it), so candidates that differ only in it share one.
  const progRing: { lay: Layout0; levels: number[]; tier: HostTier; delayed: boolean; M: number; replicas: number; program: Plan['program'] }[] = [];
  // The plan the search simulates: buildPlan's, with the programs of only the replicas lowered.
  const searchPlanOf = (c: Cand, replicas: number, M: number): Plan => {
    const N = c.lay.N, D = c.lay.D;
    const rankDevice = isCpu ? Array.from({ length: N * D }, () => -1) : c.mapping.order.slice(0, N * D);
    const optimizer = { ...baseOpt, delayedUpdate: c.delayed };
    // Candidates that differ only in the mapping (consecutive in the search) share the program,
    // the policy and the stage list (the lowering caches placements by them).
    const last = lastProg;
    const same = !!last && last.lay === c.lay && last.levels === c.levels && last.tier === c.tier && last.prefetch === c.prefetch
      && last.delayed === c.delayed && last.M === M && last.replicas === replicas;
    // The candidate's stage policies: the array its memory model was computed with (shared by the
    // candidates that differ only in the delayed update or the mapping).
    const policy = c.policy;
    const stages = c.lay.stages;
    const layout: Layout = { pipelineRanks: N, dataParallel: D, virtualStages: c.lay.v, stages, rankDevice };
    let program = same ? last.program : null;
    if (!program) {
      for (const e of progRing) {
        if (e.lay === c.lay && e.levels === c.levels && e.tier === c.tier && e.delayed === c.delayed && e.M === M && e.replicas === replicas) { program = e.program; break; }
      }
    }
    if (!program) {
      program = generateProgram({
        inventory: getInventory(model, precision, c.lay.mbs, input.seq, lossChunkOf(model, precision, c.lay.mbs, input.seq)), layout, policy, schedule: c.lay.schedule, microBatches: M,
        diskPaths: diskPaths.length, diskBuffers: diskBuffersFor(diskPaths.length, diskConc), gradClip: optimizer.gradClip !== null,
        delayedUpdate: c.delayed, replicas, uniform: true,
      });
      progRing.unshift({ lay: c.lay, levels: c.levels, tier: c.tier, delayed: c.delayed, M, replicas, program });
      if (progRing.length > 4) progRing.pop();
    }
    if (!same) lastProg = { lay: c.lay, levels: c.levels, tier: c.tier, prefetch: c.prefetch, delayed: c.delayed, M, replicas, program, policy };
    return {
      version: PLAN_VERSION, hardware: profile.id, model, precision, optimizer, job: { ...jobOf(c.lay, input.gpuMemCapBytes), microBatches: M }, layout,
      schedule: c.lay.schedule, policy: { stages: policy, diskPaths, diskConcurrency: diskConc }, program,
    };
  };
  const summary = (c: Cand, step_s: number, tokens_per_s: number, bottleneck?: string): CandidateSummary => ({
    schedule: c.lay.schedule, pipelineRanks: c.lay.N, dataParallel: c.lay.D, virtualStages: c.lay.v, microBatchSize: c.lay.mbs,
    microBatches: c.lay.M, recompute: c.lay.recompute, partition: c.lay.partition, mapping: c.mapping.name, levels: c.levels,
    hostTier: c.tier, prefetch: c.prefetch, delayedUpdate: c.delayed, offload: offloadText(c.levels, c.tier, c.prefetch, c.delayed),
    stageLayers: c.lay.stageLayers, step_s, tokens_per_s, peak_bytes: c.mem.peak, ...(bottleneck ? { bottleneck } : {}),
  });

  // The step time of a candidate, as the search judges it: a data-parallel plan is simulated one
  // replica at a time on that replica's share of the machine (replicaProfile), at search fidelity
  // (lowerPlan's coarse mode), and a plan with more micro-batches than the two short runs below is
  // extrapolated from them. The plans reported are then simulated in full.
  const simulateCandidate = (c: Cand): number => {
    const inv = getInventory(model, precision, c.lay.mbs, input.seq, lossChunkOf(model, precision, c.lay.mbs, input.seq));
    const rankDevice = isCpu ? Array.from({ length: c.lay.N * c.lay.D }, () => -1) : c.mapping.order.slice(0, c.lay.N * c.lay.D);
    return estimateStep((M) => searchPlanOf(c, 1, M), profile, {
      N: c.lay.N, D: c.lay.D, v: c.lay.v, M: c.lay.M, delayed: c.delayed, rankDevice, memory: c.mem, inventory: inv,
    });
  };
  const results: { c: Cand; step: number; tps: number }[] = [];
  let best: number | null = null;
  for (let i = 0; i < feasible.length; i++) {
    const c = feasible[i]!;
    const step = simulateCandidate(c);
    counts.simulated++;
    const tokens = c.lay.mbs * input.seq * c.lay.M * c.lay.D;
    const sim = { step_s: step, tokens_per_s: tokens / step };
    results.push({ c, step: sim.step_s, tps: sim.tokens_per_s });
    if (best === null || sim.step_s < best) best = sim.step_s;
    if (input.progress && (i % 200 === 0 || i === feasible.length - 1)) input.progress(i + 1, feasible.length, best);
  }
  // Fastest first; ties: less memory, then less offload.
  results.sort((a, b) => a.step - b.step || a.c.mem.peak - b.c.mem.peak || sumOf(a.c.levels) - sumOf(b.c.levels));
  // Among plans within 0.5% of the fastest, prefer the least offload, then the least memory.
  if (results.length > 1) {
    const lim = results[0]!.step * 1.005;
    let n = 0;
    while (n < results.length && results[n]!.step <= lim) n++;
    const near = results.slice(0, n).sort((a, b) => offloadRank(a.c) - offloadRank(b.c) || a.step - b.step || a.c.mem.peak - b.c.mem.peak);
    results.splice(0, n, ...near);
  }

  let infeasible: SearchResult['infeasible'] = null;
  if (results.length === 0) {
    infeasible = explainInfeasible(input, precision, baseOpt.name, cap, hostCap, smallestPeak, smallestPeakMem, hostShort, allowDisk);
    return { best: null, top: [], pareto: [], runnerUp: null, counts, infeasible, elapsed_s: (Date.now() - t0) / 1000 };
  }

  // The leaders are simulated in full (all replicas, every micro-batch) and ranked by that.
  const topN = Math.min(input.top ?? 8, results.length);
  {
    const lead = results.slice(0, Math.min(results.length, topN * 3)).map((r) => {
      const plan = planOf(r.c);
      // Only the step time counts here (the memory bookkeeping, metadata and reports do not change
      // it; the plans reported are simulated with them below).
      const step = simulatePlan(plan, profile, {
        memory: r.c.mem, inventory: getInventory(model, precision, r.c.lay.mbs, input.seq, lossChunkOf(model, precision, r.c.lay.mbs, input.seq)), criticalPath: false, hostMemory: false,
        peaks: false, usage: false, memoryEffects: false, meta: false, reuseGraph: true,
      }).step_s;
      return { ...r, step, tps: (r.c.lay.mbs * input.seq * r.c.lay.M * r.c.lay.D) / step };
    });
    lead.sort((a, b) => a.step - b.step || a.c.mem.peak - b.c.mem.peak);
    if (lead.length > 1) {
      const lim = lead[0]!.step * 1.005;
      let n = 0;
      while (n < lead.length && lead[n]!.step <= lim) n++;
      const near = lead.slice(0, n).sort((a, b) => offloadRank(a.c) - offloadRank(b.c) || a.step - b.step || a.c.mem.peak - b.c.mem.peak);
      lead.splice(0, n, ...near);
    }
    results.splice(0, lead.length, ...lead);
  }
  const top: CandidateSummary[] = [];
  let bestPlan: Plan | null = null;
  const topSims: { step: number; bound: string; util: string }[] = [];
  for (let i = 0; i < topN; i++) {
    const r = results[i]!;
    const plan = planOf(r.c);
    const sim = simulatePlan(plan, profile, { memory: r.c.mem, inventory: getInventory(model, precision, r.c.lay.mbs, input.seq, lossChunkOf(model, precision, r.c.lay.mbs, input.seq)), criticalPath: true });
    const bound = sim.bottleneck;
    const res = sim.result.resources.find((x) => `${x.device}/${x.name}` === bound || x.name === bound);
    topSims.push({ step: sim.step_s, bound, util: res ? `${(res.utilisation * 100).toFixed(0)}% busy` : '' });
    top.push(summary(r.c, sim.step_s, sim.tokens_per_s, bound));
    if (i === 0) {
      const mem = planMemory(plan, profile);
      plan.prediction = {
        step_s: sim.step_s, tokens_per_s: sim.tokens_per_s, peak_bytes: sim.peak_bytes,
        peak_breakdown: mem.devices.map((d) => ({
          weights: d.weights, gradients: d.gradients, master: d.masterWeights, optimizer: d.optimizerStates,
          activations: d.activations.bytes, buffers: d.temporary.total, overhead: d.overhead,
        })),
        host_bytes: mem.hostTotal, disk_bytes: mem.disk.total, bottleneck: bound,
      };
      bestPlan = plan;
    }
  }
  // Pareto front: tokens/s against peak GPU memory.
  const byMem = [...results].sort((a, b) => a.c.mem.peak - b.c.mem.peak || a.step - b.step);
  const pareto: CandidateSummary[] = [];
  const paretoPlans: Plan[] = [];
  let bestSoFar = Infinity;
  for (const r of byMem) {
    if (r.step < bestSoFar - 1e-12) {
      bestSoFar = r.step;
      pareto.push(summary(r.c, r.step, r.tps));
      if (input.paretoPlans) paretoPlans.push(planOf(r.c));
    }
  }
  let runnerUp: string | null = null;
  if (top.length > 1) runnerUp = whyLost(top[0]!, top[1]!, topSims[0]!, topSims[1]!);
  return { best: bestPlan, top, pareto, ...(input.paretoPlans ? { paretoPlans } : {}), runnerUp, counts, infeasible: null, elapsed_s: (Date.now() - t0) / 1000 };
}

/**
 * The step time of a plan as the search judges it (search fidelity): a data-parallel plan is
 * simulated one replica at a time on that replica's share of the machine (replicaProfile), in
 * lowerPlan's coarse mode, with one micro-batch (N for interleaved schedules); more micro-batches
 * add the pipeline's steady-state period each (a flow shop: the fill plus (M-1) periods; the period
 * is the busiest resource's work per micro-batch, lower.ts pipelinePeriod). With the delayed update
 * the CPU update runs from the step start and the step ends at the later of that fixed chain and
 * the moved compute. The plans the search reports are simulated in full.
 */
export function estimateStep(
  planFor: (microBatches: number) => Plan, profile: HardwareProfile,
  o: { N: number; D: number; v: number; M: number; delayed: boolean; rankDevice: number[]; memory?: MemoryReport; inventory?: Inventory },
): number {
  const prof = o.D > 1 ? replicaProfile(profile, o.rankDevice, o.N, o.D) : profile;
  const run = (p: Plan) => {
    const sim = simulatePlan(p, prof, { memory: o.memory, inventory: o.inventory, criticalPath: false, hostMemory: false, replicas: 1, coarse: true, peaks: false, usage: false, memoryEffects: false, meta: false, reuseGraph: true });
    return { step: sim.step_s, ends: phaseEnds(p, sim.lowered, sim.result) };
  };
  const { N, M } = o;
  const m1 = o.v > 1 ? N : 1;
  if (M > m1) {
    const short = planFor(m1);
    const a = run(short);
    const grow = pipelinePeriod(short, profile, o.inventory) * (M - m1);
    if (!o.delayed) return a.step + grow;
    // The delayed CPU update runs from the step start: the step ends at the later of that fixed
    // chain and the (moved) compute, plus what follows both.
    const fixed = Math.max(a.ends.cpu, a.ends.disk);
    const after = a.step - Math.max(a.ends.compute, fixed);
    return Math.max(a.step, a.ends.compute + grow + Math.max(0, after));
  }
  return run(planFor(M)).step;
}

function sumOf(a: number[]): number { let s = 0; for (const x of a) s += x; return s; }
function offloadRank(c: { levels: number[]; tier: HostTier; delayed: boolean; prefetch: number }): number {
  return sumOf(c.levels) * 8 + (c.tier === 'cpu' ? 0 : c.tier === 'half-disk' ? 2 : 4) + (c.delayed ? 1 : 0) + (c.prefetch > 1 ? 0.5 : 0);
}

const GiB = 1024 ** 3;
const gib = (b: number) => `${(b / GiB).toFixed(1)} GiB`;

function describe(c: CandidateSummary): string {
  return `${c.schedule}${c.virtualStages > 1 ? ` (v=${c.virtualStages})` : ''}, ${c.pipelineRanks} stage(s) x ${c.dataParallel} replica(s), ` +
    `micro-batch ${c.microBatchSize} x ${c.microBatches}, recompute ${c.recompute ? 'on' : 'off'}, partition by ${c.partition}, mapping ${c.mapping}, ${c.offload}`;
}

function whyLost(a: CandidateSummary, b: CandidateSummary, sa: { step: number; bound: string; util: string }, sb: { step: number; bound: string; util: string }): string {
  const diffs: string[] = [];
  const fields: [keyof CandidateSummary, string][] = [
    ['schedule', 'schedule'], ['pipelineRanks', 'stages'], ['dataParallel', 'replicas'], ['microBatchSize', 'micro-batch size'],
    ['microBatches', 'micro-batches'], ['recompute', 'recompute'], ['partition', 'partition'], ['mapping', 'mapping'], ['offload', 'offload'],
  ];
  for (const [k, name] of fields) if (JSON.stringify(a[k]) !== JSON.stringify(b[k])) diffs.push(`${name} ${JSON.stringify(b[k])} instead of ${JSON.stringify(a[k])}`);
  const pct = ((sb.step / sa.step - 1) * 100).toFixed(1);
  return `runner-up (${describe(b)}) is ${pct}% slower (${sb.step.toFixed(3)} s vs ${sa.step.toFixed(3)} s a step)` +
    `${diffs.length ? `; it differs in ${diffs.join(', ')}` : ''}; its bound is ${sb.bound}${sb.util ? ` (${sb.util})` : ''}, the best's is ${sa.bound}${sa.util ? ` (${sa.util})` : ''}`;
}

/** What does not fit, and the smallest changes that would (memory model only). */
function explainInfeasible(
  input: SearchInput, precision: Precision, opt: 'adamw' | 'sgd', cap: number, hostCap: number, smallestPeak: number,
  mem: MemoryReport | null, hostShort: number, allowDisk: boolean,
): { reason: string; suggestions: Suggestion[] } {
  const suggestions: Suggestion[] = [];
  let reason: string;
  if (mem && smallestPeak <= cap && hostShort < Infinity) {
    reason = `the GPUs fit but pinned host memory does not: the leanest fitting plan needs ${gib(hostShort)} of host memory, ${gib(hostCap)} available`;
    suggestions.push({ change: 'more-host-memory', value: hostShort, text: `host memory of ${gib(hostShort)}` });
    if (!allowDisk && input.profile.disks.length > 0) suggestions.push({ change: 'disk-offload', value: 1, text: 'allow disk offload of optimizer states' });
  } else if (mem) {
    const d = mem.devices.reduce((x, y) => (y.total > x.total ? y : x));
    reason = `even the leanest plan needs ${gib(smallestPeak)} on rank ${d.rank} (weights ${gib(d.weights)}, gradients ${gib(d.gradients)}, ` +
      `optimizer ${gib(d.optimizerStates + d.masterWeights)}, activations ${gib(d.activations.bytes)}, buffers ${gib(d.temporary.total)}, overhead ${gib(d.overhead)}) ` +
      `over the ${gib(cap)} cap`;
    suggestions.push({ change: 'larger-cap', value: smallestPeak, text: `a per-GPU cap of ${gib(Math.ceil(smallestPeak / (GiB / 10)) * (GiB / 10))}` });
  } else {
    reason = 'no layout exists for this job (check the global batch against the GPU count)';
  }
  // Shorter sequences and more GPUs, judged by the memory model with full offload.
  const lean = (gpus: number, seq: number, disk: boolean): number => {
    let bestPeak = Infinity;
    for (const N of divisors(gpus)) {
      const D = gpus / N;
      if (input.globalBatch % D !== 0 || N > input.model.num_hidden_layers + 2) continue;
      const parts = evenPartition(input.model.num_hidden_layers, N);
      const lv = input.allowOffload === false ? 0 : MAX_LEVEL;
      const pol = parts.map(() => levelPolicy(lv, true, disk ? 'disk' : 'cpu', 1, D));
      const m = memoryModel({
        model: input.model, precision, optimizer: opt, mbs: 1, seq, microBatches: Math.max(1, input.globalBatch / D), schedule: '1f1b',
        stages: parts.map((layers, i) => ({ layers, rank: i })), pipelineRanks: N, dataParallel: D, policy: pol,
        overheadBytes: profileOverheadBytes(input.profile, gpus), allocatorOverheadFraction: input.profile.overheads.allocator_overhead_fraction,
        diskPaths: Math.max(1, input.profile.disks.length), diskConcurrency: 2,
      });
      if (m.hostTotal <= hostCap || disk) bestPeak = Math.min(bestPeak, m.peak);
    }
    return bestPeak;
  };
  for (let s = Math.floor(input.seq / 2); s >= 128; s = Math.floor(s / 2)) {
    if (lean(input.gpus, s, allowDisk) <= cap) { suggestions.push({ change: 'shorter-seq', value: s, text: `a sequence of ${s} tokens` }); break; }
  }
  for (let g = input.gpus * 2; g <= Math.max(64, input.gpus * 2); g *= 2) {
    if (lean(g, input.seq, allowDisk) <= cap) { suggestions.push({ change: 'more-gpus', value: g, text: `${g} GPUs` }); break; }
  }
  if (!allowDisk && input.profile.disks.length > 0 && lean(input.gpus, input.seq, true) <= cap && !suggestions.some((x) => x.change === 'disk-offload')) {
    suggestions.push({ change: 'disk-offload', value: 1, text: 'allow disk offload of optimizer states' });
  }
  void diskBuffersFor;
  return { reason, suggestions };
}
