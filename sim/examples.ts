// Small graph generators for tests, benchmarks and documentation. They show how a caller lowers
// a pipeline schedule into tasks; planner/ has the real lowering.
import { attentionTime_us, gemmTime_us } from './cost.ts';
import { SimGraph } from './graph.ts';
import { buildMachine, type Machine } from './machine.ts';
import type { HardwareProfile } from './profile.ts';
import type { MemEffect, TaskId } from './types.ts';

export interface PipelineExample {
  /** Stages (one device and compute stream each). */
  K: number;
  /** Micro-batches. */
  M: number;
  fwd_us: number;
  bwd_us: number;
  schedule: 'gpipe' | '1f1b';
  /** Activation bytes kept per (stage, micro-batch) from forward to backward. */
  act_bytes?: number;
}

export interface PipelineGraph {
  g: SimGraph;
  F: TaskId[][];
  B: TaskId[][];
  devices: number[];
}

/** Order of (kind, mb) on stage s of K for M micro-batches. */
export function stageOrder(schedule: 'gpipe' | '1f1b', K: number, M: number, s: number): ['F' | 'B', number][] {
  const out: ['F' | 'B', number][] = [];
  if (schedule === 'gpipe') {
    for (let m = 0; m < M; m++) out.push(['F', m]);
    for (let m = 0; m < M; m++) out.push(['B', m]);
    return out;
  }
  const warm = Math.min(K - s - 1, M);
  for (let m = 0; m < warm; m++) out.push(['F', m]);
  for (let i = 0; i < M - warm; i++) { out.push(['F', warm + i]); out.push(['B', i]); }
  for (let m = M - warm; m < M; m++) out.push(['B', m]);
  return out;
}

/** K stages x M micro-batches on K devices, no communication cost; activations as memory. */
export function pipelineGraph(p: PipelineExample): PipelineGraph {
  const g = new SimGraph();
  const devices: number[] = [];
  const streams: number[] = [];
  for (let s = 0; s < p.K; s++) {
    const d = g.device(`gpu${s}`, { kind: 'gpu' });
    devices.push(d);
    streams.push(g.stream(d, 'compute'));
  }
  const F: TaskId[][] = Array.from({ length: p.K }, () => new Array<number>(p.M).fill(-1));
  const B: TaskId[][] = Array.from({ length: p.K }, () => new Array<number>(p.M).fill(-1));
  // add tasks stage by stage in stream order; dependencies across stages are added afterwards
  for (let s = 0; s < p.K; s++) {
    for (const [kind, m] of stageOrder(p.schedule, p.K, p.M, s)) {
      const buf = `act s${s} mb${m}`;
      if (kind === 'F') {
        F[s][m] = g.task({
          on: streams[s], duration_us: p.fwd_us, meta: { op: 'forward', stage: s, mb: m, rank: s },
          mem: p.act_bytes ? [{ op: 'alloc', device: devices[s], buffer: buf, bytes: p.act_bytes, class: 'activations' }] : undefined,
        });
      } else {
        B[s][m] = g.task({
          on: streams[s], duration_us: p.bwd_us, meta: { op: 'backward', stage: s, mb: m, rank: s },
          mem: p.act_bytes ? [{ op: 'free', device: devices[s], buffer: buf }] : undefined,
        });
      }
    }
  }
  for (let s = 0; s < p.K; s++) {
    for (let m = 0; m < p.M; m++) {
      if (s > 0) g.dep(F[s - 1][m], F[s][m]);
      if (s < p.K - 1) g.dep(B[s + 1][m], B[s][m]);
      else g.dep(F[s][m], B[s][m]);
    }
  }
  return { g, F, B, devices };
}

export interface OffloadPipelineExample {
  /** Decoder layers (LLaMA-2-13B: 40), split evenly over `stages` GPUs. */
  layers: number;
  stages: number;
  microBatches: number;
  /** Steps simulated back to back (each step's forward of a layer waits for its update). */
  steps: number;
  hidden: number;
  intermediate: number;
  heads: number;
  seq: number;
  /** Layers whose weights are fetched ahead of use. */
  prefetchDepth: number;
}

/** LLaMA-2-13B on 8 GPUs, 32 micro-batches of one 4096-token sequence. */
export const LLAMA2_13B_8GPU: OffloadPipelineExample = {
  layers: 40, stages: 8, microBatches: 32, steps: 1, hidden: 5120, intermediate: 13824, heads: 40, seq: 4096, prefetchDepth: 2,
};

/**
 * A pipeline program with offload, of the shape planner/ lowers: 1F1B over `stages` GPUs; per
 * micro-batch and layer a forward and a backward kernel on the compute stream, each preceded by a
 * host-to-device weight fetch (prefetch depth bounded by dependencies) on the GPU's copy stream
 * over its shared host links; activation and gradient sends between stages over peer links;
 * per layer and micro-batch a gradient offload device-to-host; per layer and step a CPU AdamW
 * update. Memory effects on GPUs (weights, activations, gradients) and host (gradients).
 */
export function offloadPipelineGraph(p: HardwareProfile, x: OffloadPipelineExample): { g: SimGraph; machine: Machine } {
  const g = new SimGraph();
  const machine = buildMachine(g, p, { gpus: x.stages });
  const K = x.stages;
  const M = x.microBatches;
  const perStage = x.layers / K;
  if (!Number.isInteger(perStage)) throw new RangeError('layers must divide evenly into stages');
  const h = x.hidden;
  const tok = x.seq;
  const layerParams = 4 * h * h + 3 * h * x.intermediate;
  const wBytes = 2 * layerParams;
  const actBytes = 2 * tok * h;
  const gem = (m: number, n: number, k: number) => gemmTime_us(p, 0, 'bf16', m, n, k).us;
  const fwdGemm = 4 * gem(tok, h, h) + 2 * gem(tok, x.intermediate, h) + gem(tok, h, x.intermediate);
  const att = { batch: 1, heads: x.heads, kv_heads: x.heads, seq: x.seq, head_dim: h / x.heads };
  const fwd_us = fwdGemm + attentionTime_us(p, 0, 'bf16', att, 'fwd').us;
  const bwd_us = 2 * fwdGemm + attentionTime_us(p, 0, 'bf16', att, 'bwd').us;
  const flopsF = 2 * tok * layerParams;
  const host = machine.host;
  let lastUpdate: TaskId[] = new Array<number>(x.layers).fill(-1);
  for (let step = 0; step < x.steps; step++) {
    const fLast: TaskId[][] = Array.from({ length: K }, () => new Array<number>(M).fill(-1));
    const bLast: TaskId[][] = Array.from({ length: K }, () => new Array<number>(M).fill(-1));
    const sendF: TaskId[][] = Array.from({ length: K }, () => new Array<number>(M).fill(-1));
    const sendB: TaskId[][] = Array.from({ length: K }, () => new Array<number>(M).fill(-1));
    const updates: TaskId[] = new Array<number>(x.layers).fill(-1);
    // issue per stage in program order; cross-stage dependencies by signal names
    for (let s = 0; s < K; s++) {
      const gpu = machine.gpus[s];
      const recent: TaskId[] = []; // compute tasks in issue order (prefetch window)
      const offloads: TaskId[][] = Array.from({ length: perStage }, () => []);
      let pc = 0;
      for (const [kind, m] of stageOrder('1f1b', K, M, s)) {
        const layers = Array.from({ length: perStage }, (_, i) => s * perStage + i);
        if (kind === 'B') layers.reverse();
        let prev = -1;
        if (kind === 'F' && s > 0) {
          prev = g.task({ on: gpu.comm, duration_us: 0, waitFor: [`act ${step} ${s - 1} ${m}`], meta: { op: 'recv_act', rank: s, pc: pc++, mb: m, stage: s } });
        }
        if (kind === 'B' && s < K - 1) {
          prev = g.task({ on: gpu.comm, duration_us: 0, waitFor: [`grad ${step} ${s + 1} ${m}`], meta: { op: 'recv_grad', rank: s, pc: pc++, mb: m, stage: s } });
        }
        for (const l of layers) {
          const wbuf = `w${l} ${kind}${m}`;
          const fdeps: TaskId[] = [];
          if (recent.length >= x.prefetchDepth) fdeps.push(recent[recent.length - x.prefetchDepth]);
          if (lastUpdate[l] >= 0) fdeps.push(lastUpdate[l]);
          const fetch = g.task({
            on: gpu.h2d, bytes: wBytes, links: gpu.h2dRoute, deps: fdeps,
            mem: [{ op: 'alloc', device: gpu.device, buffer: wbuf, bytes: wBytes, class: 'weights' }],
            meta: { op: 'fetch_params', rank: s, pc: pc++, layer: l + 1, mb: m, stage: s },
          });
          const deps = prev >= 0 ? [fetch, prev] : [fetch];
          const mem: MemEffect[] = [{ op: 'free', device: gpu.device, buffer: wbuf }];
          if (kind === 'F') mem.push({ op: 'alloc', device: gpu.device, buffer: `act ${l} ${m}`, bytes: actBytes, class: 'activations' });
          else {
            mem.push({ op: 'free', device: gpu.device, buffer: `act ${l} ${m}` });
            mem.push({ op: 'alloc', device: gpu.device, buffer: `g${l} ${m}`, bytes: wBytes, class: 'gradients', at: 'end' });
          }
          const k = g.task({
            on: gpu.compute, duration_us: kind === 'F' ? fwd_us : bwd_us, deps, mem,
            meta: { op: kind === 'F' ? 'forward' : 'backward', rank: s, pc: pc++, mb: m, stage: s, layer: l + 1, flops: kind === 'F' ? flopsF : 2 * flopsF },
          });
          recent.push(k);
          prev = k;
          if (kind === 'B') {
            const off = g.task({
              on: gpu.d2h, bytes: wBytes, links: gpu.d2hRoute, deps: [k],
              mem: [{ op: 'free', device: gpu.device, buffer: `g${l} ${m}` }],
              meta: { op: 'offload_grads', rank: s, pc: pc++, layer: l + 1, mb: m },
            });
            offloads[l - s * perStage].push(off);
          }
        }
        if (kind === 'F') {
          fLast[s][m] = prev;
          if (s < K - 1) {
            sendF[s][m] = g.task({
              on: gpu.comm, bytes: actBytes, links: machine.peerRoute(s, s + 1), deps: [prev], signal: `act ${step} ${s} ${m}`,
              meta: { op: 'send_act', rank: s, pc: pc++, mb: m, stage: s },
            });
          }
        } else {
          bLast[s][m] = prev;
          if (s > 0) {
            sendB[s][m] = g.task({
              on: gpu.comm, bytes: actBytes, links: machine.peerRoute(s, s - 1), deps: [prev], signal: `grad ${step} ${s} ${m}`,
              meta: { op: 'send_grad', rank: s, pc: pc++, mb: m, stage: s },
            });
          }
        }
      }
      for (let i = 0; i < perStage; i++) {
        const l = s * perStage + i;
        updates[l] = g.task({
          on: machine.cpu, elements: layerParams, workers: 4, deps: offloads[i],
          mem: [{ op: 'alloc', device: host, buffer: `update ${step} ${l}`, bytes: 4 * layerParams, class: 'buffers' }, { op: 'free', device: host, buffer: `update ${step} ${l}` }],
          meta: { op: 'optimizer_step', rank: s, pc: pc++, layer: l + 1 },
        });
      }
    }
    lastUpdate = updates;
  }
  return { g, machine };
}
