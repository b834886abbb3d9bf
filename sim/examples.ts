// Small graph generators for tests, benchmarks and documentation. They show how a caller lowers
// a pipeline schedule into tasks; planner/ has the real lowering.
import { SimGraph } from './graph.ts';
import type { TaskId } from './types.ts';

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
