// What the explorer's views draw, from a Chrome trace (the simulator's prediction, an executor's
// measured trace, or compare's side-by-side of both): one lane per (process, thread) with its
// slices, and the memory counters per process. Pure: trace in, plain data out (it runs in the
// worker, so only this small model crosses to the page, not the trace).
import type { ChromeTrace, TraceEvent } from '../../sim/trace.ts';

export interface Slice {
  /** The instruction's opcode (forward, backward, fetch_params, ...) or the slice's name. */
  op: string;
  name: string;
  start_us: number;
  dur_us: number;
  rank?: number;
  pc?: number;
  mb?: number;
  layer?: number;
}

export interface Lane {
  pid: number;
  tid: number;
  /** Process (device) and thread (stream, pool lane, link) names from the trace's metadata. */
  process: string;
  thread: string;
  slices: Slice[];
}

export interface MemoryPoint {
  t_us: number;
  /** Bytes on the device at t_us, all classes together. */
  bytes: number;
  /** The same by class, as the counter named them. */
  classes: Record<string, number>;
}

export interface MemoryCounter {
  pid: number;
  process: string;
  points: MemoryPoint[];
  peak_bytes: number;
  /** Bytes by class (weights, gradients, optimizer, ...) at the peak, where the trace names them. */
  peak_classes: Record<string, number>;
}

export interface TraceModel {
  lanes: Lane[];
  memory: MemoryCounter[];
  /** The window the slices span (us). */
  start_us: number;
  end_us: number;
}

export interface TraceModelOptions {
  /** Keep only slices of this measured step (args.step); counters are clipped to its window. */
  step?: number;
  /** Lanes with no slices are dropped (default true). */
  dropEmpty?: boolean;
}

const num = (v: unknown): number | undefined => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);

/** The opcode of a slice: args.op, else a category that is an opcode, else the name's first word. */
function opOf(e: TraceEvent): string {
  const a = e.args ?? {};
  if (typeof a.op === 'string') return a.op;
  if (e.cat && e.cat !== 'task' && e.cat !== 'measured') return e.cat;
  return e.name.split(/[\s(]/)[0] || e.name;
}

/** Steps present in a trace's slices (args.step), ascending; empty for a one-step prediction. */
export function stepsOf(t: ChromeTrace): number[] {
  const s = new Set<number>();
  for (const e of t.traceEvents) if (e.ph === 'X' && typeof e.args?.step === 'number') s.add(e.args.step);
  return [...s].sort((a, b) => a - b);
}

export function traceModel(t: ChromeTrace, opts: TraceModelOptions = {}): TraceModel {
  if (!t || !Array.isArray(t.traceEvents)) throw new Error('not a Chrome trace (no traceEvents array)');
  const procName = new Map<number, string>();
  const threadName = new Map<string, string>();
  const procOrder = new Map<number, number>();
  const threadOrder = new Map<string, number>();
  for (const e of t.traceEvents) {
    if (e.ph !== 'M') continue;
    const key = `${e.pid}:${e.tid ?? 0}`;
    if (e.name === 'process_name' && typeof e.args?.name === 'string') procName.set(e.pid, e.args.name);
    else if (e.name === 'thread_name' && typeof e.args?.name === 'string') threadName.set(key, e.args.name);
    else if (e.name === 'process_sort_index' && num(e.args?.sort_index) !== undefined) procOrder.set(e.pid, num(e.args!.sort_index)!);
    else if (e.name === 'thread_sort_index' && num(e.args?.sort_index) !== undefined) threadOrder.set(key, num(e.args!.sort_index)!);
  }
  const lanes = new Map<string, Lane>();
  let start = Infinity, end = -Infinity;
  for (const e of t.traceEvents) {
    if (e.ph !== 'X') continue;
    if (opts.step !== undefined && e.args?.step !== undefined && e.args.step !== opts.step) continue;
    const ts = num(e.ts), dur = num(e.dur) ?? 0;
    if (ts === undefined) continue;
    const tid = e.tid ?? 0;
    const key = `${e.pid}:${tid}`;
    let lane = lanes.get(key);
    if (!lane) {
      lane = { pid: e.pid, tid, process: procName.get(e.pid) ?? `process ${e.pid}`, thread: threadName.get(key) ?? `thread ${tid}`, slices: [] };
      lanes.set(key, lane);
    }
    const a = e.args ?? {};
    lane.slices.push({ op: opOf(e), name: e.name, start_us: ts, dur_us: dur, rank: num(a.rank), pc: num(a.pc), mb: num(a.mb), layer: num(a.layer) });
    if (ts < start) start = ts;
    if (ts + dur > end) end = ts + dur;
  }
  if (!(start <= end)) { start = 0; end = 0; }
  // metadata-only lanes (a stream that ran nothing) when asked
  if (opts.dropEmpty === false) {
    for (const [key, name] of threadName) {
      if (lanes.has(key)) continue;
      const [pid, tid] = key.split(':').map(Number) as [number, number];
      lanes.set(key, { pid, tid, process: procName.get(pid) ?? `process ${pid}`, thread: name, slices: [] });
    }
  }
  const sorted = [...lanes.values()].sort((a, b) =>
    (procOrder.get(a.pid) ?? a.pid) - (procOrder.get(b.pid) ?? b.pid) || a.pid - b.pid ||
    (threadOrder.get(`${a.pid}:${a.tid}`) ?? a.tid) - (threadOrder.get(`${b.pid}:${b.tid}`) ?? b.tid) || a.tid - b.tid);
  for (const l of sorted) l.slices.sort((x, y) => x.start_us - y.start_us);

  const mem = new Map<number, MemoryCounter>();
  for (const e of t.traceEvents) {
    if (e.ph !== 'C' || !/memory/.test(e.name) || num(e.ts) === undefined) continue;
    let bytes = 0;
    const classes: Record<string, number> = {};
    for (const [k, v] of Object.entries(e.args ?? {})) if (typeof v === 'number') { bytes += v; classes[k] = v; }
    let c = mem.get(e.pid);
    if (!c) mem.set(e.pid, (c = { pid: e.pid, process: procName.get(e.pid) ?? `process ${e.pid}`, points: [], peak_bytes: 0, peak_classes: {} }));
    c.points.push({ t_us: e.ts!, bytes, classes });
  }
  for (const c of mem.values()) {
    c.points.sort((a, b) => a.t_us - b.t_us);
    if (opts.step !== undefined && end > start) c.points = c.points.filter((p) => p.t_us >= start && p.t_us <= end);
    let at: MemoryPoint | undefined;
    for (const p of c.points) if (!at || p.bytes > at.bytes) at = p;
    c.peak_bytes = at?.bytes ?? 0;
    c.peak_classes = at?.classes ?? {};
  }
  return { lanes: sorted, memory: [...mem.values()].sort((a, b) => a.pid - b.pid), start_us: start, end_us: end };
}
