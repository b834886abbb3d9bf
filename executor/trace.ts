// The measured trace: Chrome trace event JSON in the simulator's format (sim/trace.ts), one process
// per rank, a compute track and a point-to-point track, one slice per executed instruction carrying
// the instruction it came from (args.rank, args.pc, args.mb, args.stage, args.step), memory
// counters, and the run's figures (tokens/s, MFU, per-device peak) in otherData.
import type { ChromeTrace, TraceEvent } from '../sim/trace.ts';
import { planInventory, flopsPerStep as inventoryFlopsPerStep, type Inventory } from '../planner/inventory.ts';
import type { Plan } from '../planner/plan-types.ts';
import type { RankResult, RankTraceEvent } from './native.ts';

export type MeasuredTrace = ChromeTrace;

/** Dense bf16 peak FLOP/s by GPU name (datasheet); null for CPU or an unknown device. */
const PEAK_BF16: [RegExp, number][] = [
  [/H200|H100/i, 989.4e12],
  [/B200/i, 2250e12],
  [/A100/i, 312e12],
  [/L40S/i, 362e12],
  [/L20/i, 119.5e12],
];

export function peakFlops(devices: string[]): number | null {
  let sum = 0;
  for (const d of devices) {
    if (!d.startsWith('cuda')) return null;
    const hit = PEAK_BF16.find(([re]) => re.test(d));
    if (!hit) return null;
    sum += hit[1];
  }
  return sum || null;
}

/** Training FLOPs of one step (forward + backward of every micro-batch), from the planner's
 *  inventory: the same FLOP count the simulator predicts with. */
export function flopsPerStep(plan: Plan): number {
  const inv = planInventory(plan);
  return inventoryFlopsPerStep(inv, plan.job.microBatches) * plan.layout.dataParallel;
}

/** FLOPs of one instruction (forward or backward of a micro-batch over a stage), else 0. */
function instrFlops(plan: Plan, inv: Inventory, op: string, stage: number): number {
  if ((op !== 'forward' && op !== 'backward') || stage < 0) return 0;
  const [lo, hi] = plan.layout.stages[stage]!.layers;
  let f = 0;
  for (let l = lo; l < hi; l++) {
    const li = inv.layers[l]!;
    f += op === 'forward' ? li.fwdFlops : li.bwdFlops + (plan.policy.stages[stage]?.recompute ? li.fwdFlops : 0);
  }
  return f;
}

const P2P = new Set(['send_act', 'recv_act', 'send_grad', 'recv_grad']);
/** Asynchronous work on its own tracks: [track, tid, name]. */
const ASYNC_TRACKS: readonly [RankTraceEvent['track'], number, string][] = [
  ['d2h', 3, 'copy GPU -> host'], ['h2d', 4, 'copy host -> GPU'], ['cpu', 5, 'CPU update'], ['disk', 6, 'disk'],
];

export function measuredTrace(plan: Plan, results: RankResult[], devices: string[], figures: Record<string, unknown>): MeasuredTrace {
  const t0 = Math.min(...results.map((r) => r.startUs));
  const inv = planInventory(plan);
  const ev: TraceEvent[] = [];
  results.forEach((r, rank) => {
    const pid = rank + 1;
    ev.push({ name: 'process_name', ph: 'M', pid, args: { name: `rank ${rank} (${devices[rank] ?? '?'})` } });
    ev.push({ name: 'process_sort_index', ph: 'M', pid, args: { sort_index: rank } });
    ev.push({ name: 'thread_name', ph: 'M', pid, tid: 1, args: { name: 'compute' } });
    ev.push({ name: 'thread_name', ph: 'M', pid, tid: 2, args: { name: 'p2p' } });
    const used = new Set(r.trace.map((e) => e.track));
    for (const [track, tid, name] of ASYNC_TRACKS) if (used.has(track)) ev.push({ name: 'thread_name', ph: 'M', pid, tid, args: { name } });
    const off = r.startUs - t0;
    let lastMem = -1;
    for (const e of r.trace) {
      const ts = Math.round((off + e.tsUs) * 1000) / 1000;
      const args: Record<string, unknown> = { rank, pc: e.pc, step: e.step };
      if (e.mb >= 0) args.mb = e.mb;
      if (e.stage >= 0) args.stage = e.stage;
      if (e.layer >= 0) args.layer = e.layer;
      if (e.bytes > 0) args.bytes = e.bytes;
      const flops = instrFlops(plan, inv, e.op, e.stage);
      if (flops > 0) args.flops = flops;
      const tid = ASYNC_TRACKS.find(([t]) => t === e.track)?.[1] ?? (P2P.has(e.op) ? 2 : 1);
      ev.push({ name: e.op, ph: 'X', pid, tid, ts, dur: Math.round(e.durUs * 1000) / 1000, cat: 'measured', args });
      if (e.memBytes > 0 && e.memBytes !== lastMem) {
        ev.push({ name: 'memory', ph: 'C', pid, ts, args: { bytes: e.memBytes } });
        lastMem = e.memBytes;
      }
    }
  });
  return {
    traceEvents: ev,
    displayTimeUnit: 'ms',
    otherData: {
      source: 'measured',
      hardware: plan.hardware,
      model: plan.model.name,
      schedule: plan.schedule,
      precision: plan.precision,
      stages: plan.layout.stages.map((s) => s.layers),
      devices,
      peak_bytes: results.map((r) => r.peakBytes + r.overheadBytes),
      peak_reserved_bytes: results.map((r) => r.peakBytes),
      backend: results[0]?.backend,
      ...figures,
    },
  };
}
