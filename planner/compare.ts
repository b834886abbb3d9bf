// Predicted against measured: pairs the simulator's trace and the executor's trace task by task
// through the instruction each slice came from (args.rank, args.pc), and reports where the cost
// model is wrong. Pure: traces in, report out (the CLI and the web UI both call it).
import type { ChromeTrace, TraceEvent } from '../sim/trace.ts';

/** Which resource an instruction keeps busy, by opcode (and tier for optimizer steps). */
export type ResourceClass = 'compute' | 'p2p' | 'h2d' | 'd2h' | 'cpu' | 'disk' | 'collective' | 'other';

export function resourceClassOf(op: string, tier?: unknown): ResourceClass {
  switch (op) {
    case 'forward': case 'backward': return 'compute';
    case 'optimizer_step': return tier === 'cpu' ? 'cpu' : 'compute';
    case 'send_act': case 'recv_act': case 'send_grad': case 'recv_grad': return 'p2p';
    case 'fetch_params': case 'upload_params': case 'reload_act': return 'h2d';
    case 'offload_grads': case 'offload_act': return 'd2h';
    case 'disk_read': case 'disk_write': return 'disk';
    case 'allreduce_grads': case 'grad_norm': return 'collective';
    default: return 'other';
  }
}

export interface ErrorRow {
  predicted: number;
  measured: number;
  /** (predicted - measured) / measured; null when nothing was measured. */
  error: number | null;
}

export interface CompareReport {
  /** Step time in seconds. */
  step_s: ErrorRow;
  /** Steps of the measured trace used (after warm-up). */
  measured_steps: number[];
  /** Per opcode: summed per-step durations in microseconds over all ranks. */
  by_op: (ErrorRow & { op: string; count: number })[];
  /** Per rank and resource class: busy microseconds a step. */
  by_resource: (ErrorRow & { rank: number; resource: ResourceClass })[];
  /** Per rank: peak device bytes. */
  peak_bytes: (ErrorRow & { rank: number })[];
  paired: number;
  /** (rank, pc) keys present in one trace only. */
  only_predicted: number;
  only_measured: number;
}

/** Busy time (us a step) under which a row's relative error is timer noise: `mmoc compare` and the
 *  web explorer print no error for it (a barrier's 0.001 ms against 0 is not -100%). */
export const NOISE_US = 10;
export const isNoise = (r: { predicted: number; measured: number }): boolean => Math.max(r.predicted, r.measured) < NOISE_US;

const rel = (p: number, m: number): number | null => (m > 0 ? (p - m) / m : p === 0 ? 0 : null);
const row = (predicted: number, measured: number): ErrorRow => ({ predicted, measured, error: rel(predicted, measured) });

interface Slice { rank: number; pc: number; op: string; ts: number; dur: number; step: number; tier?: unknown }

function slices(t: ChromeTrace, source: string): Slice[] {
  if (!t || !Array.isArray(t.traceEvents)) throw new Error(`${source}: not a Chrome trace (no traceEvents array)`);
  const out: Slice[] = [];
  for (const e of t.traceEvents) {
    if (e.ph !== 'X' || !e.args) continue;
    const rank = e.args.rank, pc = e.args.pc;
    if (typeof rank !== 'number' || typeof pc !== 'number') continue;
    const op = typeof e.args.op === 'string' ? e.args.op : e.name;
    out.push({ rank, pc, op, ts: e.ts ?? 0, dur: e.dur ?? 0, step: typeof e.args.step === 'number' ? e.args.step : 0, tier: e.args.tier });
  }
  return out;
}

function median(xs: number[]): number {
  if (xs.length === 0) return 0;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

export interface CompareOptions {
  /** Measured steps to skip at the start (warm-up). Default: 1 when the trace holds more than one step. */
  warmupSteps?: number;
  /** Predicted peak bytes per rank (from the plan's prediction or the simulation). */
  predictedPeakBytes?: number[];
  /** Measured peak bytes per rank (default: the measured trace's otherData.peak_bytes). */
  measuredPeakBytes?: number[];
  /** Predicted step seconds (default: the span of the predicted trace). */
  predictedStepS?: number;
  /** The plan's per-rank program: an instruction's own operands (an optimizer step's `tier`)
   *  decide its resource where neither trace's slice carries them. Without it, an optimizer step
   *  whose slices name no tier counts as GPU compute. */
  program?: { ranks: readonly (readonly { op: string; tier?: unknown }[])[] };
}

/** Pairs a predicted trace (one step) with a measured trace (one or more steps). */
export function compareTraces(predicted: ChromeTrace, measured: ChromeTrace, opts: CompareOptions = {}): CompareReport {
  const P = slices(predicted, 'predicted trace');
  const M = slices(measured, 'measured trace');
  const stepsAll = [...new Set(M.map((s) => s.step))].sort((a, b) => a - b);
  const warm = opts.warmupSteps ?? (stepsAll.length > 1 ? 1 : 0);
  const steps = stepsAll.slice(Math.min(warm, Math.max(0, stepsAll.length - 1)));
  const used = new Set(steps);
  const Mu = M.filter((s) => used.has(s.step));

  // step time: predicted span, measured median of per-step spans
  const span = (xs: Slice[]) => (xs.length ? Math.max(...xs.map((s) => s.ts + s.dur)) - Math.min(...xs.map((s) => s.ts)) : 0);
  const predStep = opts.predictedStepS ?? span(P) / 1e6;
  const measStep = median(steps.map((st) => span(Mu.filter((s) => s.step === st)))) / 1e6;

  // per (rank, pc): predicted sum of task durations; measured median over steps
  const key = (s: Slice) => `${s.rank}:${s.pc}`;
  const pDur = new Map<string, { dur: number; s: Slice }>();
  // Side work at an instruction's pc is not the instruction's own time: the host adds of
  // accumulated gradients the simulator lowers beside an offload_grads, and the activation copies a
  // forward or backward issues itself (slices of another opcode at its pc in the measured trace).
  for (const s of P) {
    if (s.op === 'host_accumulate') continue;
    const k = key(s);
    const cur = pDur.get(k);
    if (cur) cur.dur += s.dur; else pDur.set(k, { dur: s.dur, s });
  }
  const mDurs = new Map<string, { durs: Map<number, number>; s: Slice }>();
  for (const s of Mu) {
    const k = key(s);
    let cur = mDurs.get(k);
    if (!cur) mDurs.set(k, (cur = { durs: new Map(), s }));
    else if (s.op !== cur.s.op && (cur.s.op === 'forward' || cur.s.op === 'backward')) continue;
    cur.durs.set(s.step, (cur.durs.get(s.step) ?? 0) + s.dur);
  }
  const byOp = new Map<string, { p: number; m: number; n: number }>();
  const byRes = new Map<string, { rank: number; resource: ResourceClass; p: number; m: number }>();
  let paired = 0, onlyP = 0;
  for (const [k, { dur, s }] of pDur) {
    const meas = mDurs.get(k);
    if (!meas) { onlyP++; continue; }
    paired++;
    const m = median([...meas.durs.values()]);
    // the executor names a slice by its opcode; the simulator may name the task it lowered to
    const opName = meas.s.op;
    const o = byOp.get(opName) ?? { p: 0, m: 0, n: 0 };
    o.p += dur; o.m += m; o.n++;
    byOp.set(opName, o);
    const resource = resourceClassOf(opName, s.tier ?? meas.s.tier ?? opts.program?.ranks[s.rank]?.[s.pc]?.tier);
    const rk = `${s.rank}:${resource}`;
    const r = byRes.get(rk) ?? { rank: s.rank, resource, p: 0, m: 0 };
    r.p += dur; r.m += m;
    byRes.set(rk, r);
  }
  let onlyM = 0;
  for (const k of mDurs.keys()) if (!pDur.has(k)) onlyM++;

  const measPeaks = opts.measuredPeakBytes ?? (Array.isArray(measured.otherData?.peak_bytes) ? (measured.otherData!.peak_bytes as number[]) : []);
  const predPeaks = opts.predictedPeakBytes ?? [];
  const peak_bytes = measPeaks.map((m, rank) => ({ rank, ...row(predPeaks[rank] ?? 0, m) }));

  return {
    step_s: row(predStep, measStep),
    measured_steps: steps,
    by_op: [...byOp].sort((a, b) => a[0].localeCompare(b[0])).map(([op, v]) => ({ op, count: v.n, ...row(v.p, v.m) })),
    by_resource: [...byRes.values()].sort((a, b) => a.rank - b.rank || a.resource.localeCompare(b.resource)).map((v) => ({ rank: v.rank, resource: v.resource, ...row(v.p, v.m) })),
    peak_bytes,
    paired,
    only_predicted: onlyP,
    only_measured: onlyM,
  };
}

/** One trace with predicted and measured as two processes per device (for Perfetto and the web UI).
 *  Measured time is shifted so that the first used step starts where the prediction starts. */
export function sideBySide(predicted: ChromeTrace, measured: ChromeTrace, step?: number): ChromeTrace {
  const out: TraceEvent[] = [];
  const pids = (t: ChromeTrace) => [...new Set(t.traceEvents.map((e) => e.pid))].sort((a, b) => a - b);
  const pBase = 0, mBase = Math.max(0, ...pids(predicted)) + 1;
  const chosen = step ?? Math.max(0, ...measured.traceEvents.filter((e) => e.ph === 'X' && typeof e.args?.step === 'number').map((e) => e.args!.step as number));
  const mX = measured.traceEvents.filter((e) => e.ph === 'X' && (e.args?.step ?? chosen) === chosen);
  const mStart = mX.length ? Math.min(...mX.map((e) => e.ts ?? 0)) : 0;
  const mEnd = mX.length ? Math.max(...mX.map((e) => (e.ts ?? 0) + (e.dur ?? 0))) : 0;
  const pX = predicted.traceEvents.filter((e) => e.ph === 'X');
  const pStart = pX.length ? Math.min(...pX.map((e) => e.ts ?? 0)) : 0;
  for (const e of predicted.traceEvents) {
    const c: TraceEvent = { ...e, pid: e.pid + pBase };
    if (e.ph === 'M' && e.name === 'process_name') c.args = { name: `predicted: ${String(e.args?.name)}` };
    if (e.ph === 'M' && e.name === 'process_sort_index') c.args = { sort_index: 2 * Number(e.args?.sort_index ?? e.pid) };
    if (e.ts !== undefined) c.ts = e.ts - pStart;
    out.push(c);
  }
  for (const e of measured.traceEvents) {
    if (e.ph !== 'M' && (e.ts === undefined || e.ts < mStart || e.ts > mEnd)) continue;
    if (e.ph === 'X' && e !== undefined && (e.args?.step ?? chosen) !== chosen) continue;
    const c: TraceEvent = { ...e, pid: e.pid + mBase };
    if (e.ph === 'M' && e.name === 'process_name') c.args = { name: `measured: ${String(e.args?.name)}` };
    if (e.ph === 'M' && e.name === 'process_sort_index') c.args = { sort_index: 2 * Number(e.args?.sort_index ?? e.pid) + 1 };
    if (e.ts !== undefined) c.ts = e.ts - mStart;
    out.push(c);
  }
  return { traceEvents: out, displayTimeUnit: 'ms', otherData: { kind: 'predicted-vs-measured', measured_step: chosen } };
}
