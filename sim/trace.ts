// Chrome trace event JSON of a simulated run (opens in Perfetto and chrome://tracing): one process
// per device, one thread per stream, CPU pool lane, disk lane, or link (flows without a queue);
// ph "X" slices with ts/dur in microseconds (rounded to the nanosecond), ph "C" memory counters by
// class, ph "M" names. Deterministic: the same graph and result give byte-identical JSON.
import { R_STREAM, type SimGraph } from './graph.ts';
import { MEM_CLASSES } from './types.ts';
import type { SimResult, TaskMeta } from './types.ts';

export interface TraceEvent {
  name: string;
  ph: 'X' | 'C' | 'M';
  pid: number;
  tid?: number;
  ts?: number;
  dur?: number;
  cat?: string;
  args?: Record<string, unknown>;
}

export interface ChromeTrace {
  traceEvents: TraceEvent[];
  displayTimeUnit: 'ms' | 'ns';
  otherData?: Record<string, unknown>;
}

const ns = (us: number) => Math.round(us * 1000);

/** Builds the trace object. `otherData` is copied into the trace (e.g. plan id, profile id). */
export function chromeTrace(g: SimGraph, r: SimResult, otherData?: Record<string, unknown>): ChromeTrace {
  const n = g.taskCount;
  const R = g.resourceCount;
  const L = g.linkCount;
  // thread of each task: (owner index, lane); owner = resource r, or R + link for unqueued flows
  const owner = new Int32Array(n);
  const lane = new Int32Array(n);
  const byOwner: number[][] = Array.from({ length: R + L }, () => []);
  for (let t = 0; t < n; t++) {
    const res = g.tRes[t];
    const o = res >= 0 ? res : g.tLinkCnt[t] > 0 ? R + g.linkList.a[g.tLinkOff[t]] : -1;
    owner[t] = o;
    if (o >= 0) byOwner[o].push(t);
  }
  const lanesOf = new Int32Array(R + L);
  for (let o = 0; o < R + L; o++) {
    const ts = byOwner[o];
    if (o < R && g.resKind[o] === R_STREAM) { lanesOf[o] = 1; continue; }
    ts.sort((a, b) => r.start_us[a] - r.start_us[b] || a - b);
    const laneEnd: number[] = [];
    for (const t of ts) {
      const s = ns(r.start_us[t]);
      let k = 0;
      while (k < laneEnd.length && laneEnd[k] > s) k++;
      laneEnd[k] = ns(r.end_us[t]);
      lane[t] = k;
    }
    lanesOf[o] = Math.max(o < R ? 1 : 0, laneEnd.length);
  }
  // tids
  const tidBase = new Int32Array(R + L);
  let next = 1;
  const ev: TraceEvent[] = [];
  const ownerDevice = (o: number) => (o < R ? g.resDevice[o] : g.linkDevice[o - R]);
  const ownerName = (o: number) => {
    const full = o < R ? g.resName[o] : g.linkName[o - R];
    const d = g.deviceName[ownerDevice(o)];
    return full.startsWith(`${d}/`) ? full.slice(d.length + 1) : full;
  };
  for (let d = 0; d < g.deviceCount; d++) {
    ev.push({ name: 'process_name', ph: 'M', pid: d + 1, args: { name: g.deviceName[d] } });
    ev.push({ name: 'process_sort_index', ph: 'M', pid: d + 1, args: { sort_index: d } });
  }
  for (let o = 0; o < R + L; o++) {
    tidBase[o] = next;
    const k = lanesOf[o];
    for (let j = 0; j < k; j++) {
      const tid = next++;
      const name = k > 1 ? `${ownerName(o)} #${j}` : ownerName(o);
      ev.push({ name: 'thread_name', ph: 'M', pid: ownerDevice(o) + 1, tid, args: { name } });
      ev.push({ name: 'thread_sort_index', ph: 'M', pid: ownerDevice(o) + 1, tid, args: { sort_index: tid } });
    }
  }
  const needUnqueued = owner.some((o) => o < 0);
  const unqueuedTid = next++;
  if (needUnqueued) {
    // tasks with neither a queue nor links: a process of their own, laned
    ev.push({ name: 'process_name', ph: 'M', pid: g.deviceCount + 1, args: { name: '(unqueued)' } });
  }
  const unq: number[] = [];
  for (let t = 0; t < n; t++) if (owner[t] < 0) unq.push(t);
  const unqLane = new Map<number, number>();
  {
    unq.sort((a, b) => r.start_us[a] - r.start_us[b] || a - b);
    const laneEnd: number[] = [];
    for (const t of unq) {
      const s = ns(r.start_us[t]);
      let k = 0;
      while (k < laneEnd.length && laneEnd[k] > s) k++;
      laneEnd[k] = ns(r.end_us[t]);
      unqLane.set(t, k);
    }
    for (let j = 0; j < laneEnd.length; j++) {
      ev.push({ name: 'thread_name', ph: 'M', pid: g.deviceCount + 1, tid: unqueuedTid + j, args: { name: `delays #${j}` } });
    }
  }

  for (let t = 0; t < n; t++) {
    const m: TaskMeta = g.meta(t);
    const s = ns(r.start_us[t]);
    const e = ns(r.end_us[t]);
    const o = owner[t];
    const args: Record<string, unknown> = { task: t };
    if (m.rank !== undefined) args.rank = m.rank;
    if (m.pc !== undefined) args.pc = m.pc;
    if (m.mb !== undefined) args.mb = m.mb;
    if (m.stage !== undefined) args.stage = m.stage;
    if (m.layer !== undefined) args.layer = m.layer;
    if (m.op !== undefined) args.op = m.op;
    if (m.bytes !== undefined) args.bytes = m.bytes;
    if (m.flops !== undefined) args.flops = m.flops;
    ev.push({
      name: g.taskName(t), cat: m.op ?? 'task', ph: 'X',
      pid: o >= 0 ? ownerDevice(o) + 1 : g.deviceCount + 1,
      tid: o >= 0 ? tidBase[o] + lane[t] : unqueuedTid + unqLane.get(t)!,
      ts: s / 1000, dur: (e - s) / 1000, args,
    });
  }

  // memory counters: replay the log, one counter event per device per distinct time
  const log = r.mem_log;
  if (log) {
    const NC = MEM_CLASSES.length;
    const cls = new Float64Array(g.deviceCount * NC);
    const allocAt = new Int32Array(g.bufName.length);
    const pending = new Uint8Array(g.deviceCount);
    for (let i = 0; i < log.count; i++) {
      const eff = log.effect[i];
      const b = g.memBuf.a[eff];
      const d = g.bufDevice[b];
      if (g.memKind.a[eff] === 0) { allocAt[b] = eff; cls[d * NC + g.memClass.a[eff]] += g.memBytes.a[eff]; }
      else cls[d * NC + g.memClass.a[allocAt[b]]] -= g.memBytes.a[allocAt[b]];
      pending[d] = 1;
      // after the last change at this time: one counter per device that changed, in device order
      if (i + 1 < log.count && log.time_us[i + 1] === log.time_us[i]) continue;
      for (let dd = 0; dd < g.deviceCount; dd++) {
        if (!pending[dd]) continue;
        pending[dd] = 0;
        const args: Record<string, number> = {};
        for (let k = 0; k < NC; k++) args[MEM_CLASSES[k]] = cls[dd * NC + k];
        ev.push({ name: 'memory bytes', ph: 'C', pid: dd + 1, ts: ns(log.time_us[i]) / 1000, args });
      }
    }
  }
  // link bandwidth counters (when simulated with linkSeries): GB/s in use, one event per link
  // per distinct time at which it changed
  const ll = r.link_log;
  if (ll) {
    const inUse = new Float64Array(L);
    const pending = new Uint8Array(L);
    for (let i = 0; i < ll.count; i++) {
      const l = ll.link[i];
      inUse[l] += ll.delta_bytes_per_us[i];
      pending[l] = 1;
      if (i + 1 < ll.count && ll.time_us[i + 1] === ll.time_us[i]) continue;
      for (let k = 0; k < L; k++) {
        if (!pending[k]) continue;
        pending[k] = 0;
        const GBps = Math.max(0, Math.round(inUse[k]) / 1e3); // bytes/us -> GB/s, to the MB/s
        ev.push({ name: `${g.linkName[k]} GB/s`, ph: 'C', pid: g.linkDevice[k] + 1, ts: ns(ll.time_us[i]) / 1000, args: { GBps } });
      }
    }
  }
  const out: ChromeTrace = { traceEvents: ev, displayTimeUnit: 'ms' };
  if (otherData) out.otherData = otherData;
  return out;
}

/** The trace as JSON text (deterministic). */
export function chromeTraceJSON(g: SimGraph, r: SimResult, otherData?: Record<string, unknown>): string {
  return JSON.stringify(chromeTrace(g, r, otherData));
}
