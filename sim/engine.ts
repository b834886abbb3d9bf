// The discrete-event engine. Virtual time in microseconds; one event kind: "a task's current phase
// ends", in an indexed binary heap keyed by (time, sequence number) so that ties always resolve
// in the same order. Rates (shared links, CPU pool, compute slowdown) change only when a flow or
// task starts or ends; a task whose rate changes has its one heap entry moved (with a fresh
// sequence number). All per-task state lives in typed arrays allocated once per run.
import { SimError } from './errors.ts';
import { R_CPU, R_DISK, R_STREAM, W_CPU, W_FLOW, type SimGraph } from './graph.ts';
import { MEM_CLASSES } from './types.ts';
import type { CriticalPath, MemClass, MemoryReport, ResourceUsage, SimOptions, SimResult } from './types.ts';

const NCLASS = MEM_CLASSES.length;

const S_WAIT = 0;
const S_READY = 1;
const S_FIXED = 2;
const S_VAR = 3;
const S_DONE = 4;

/** Structure derived from a graph once per graph version. */
interface Frozen {
  version: number;
  n: number;
  succOff: Int32Array;
  succ: Int32Array;
  indeg: Int32Array;
  /** Streams: tasks in add order (CSR by resource). */
  qOff: Int32Array;
  qList: Int32Array;
  /** Position of each stream task in its stream's list. */
  /** Per device: its compute streams. */
  devComputeStreams: number[][];
  /** Per resource: offset into a shared running-list array (size = slots). */
  runOff: Int32Array;
  runTotal: number;
  /** Per link: offset of its active-flow slots (capacity = tasks that cross it). */
  lfOff: Int32Array;
  /** Per task: its shared links (sList[sOff[t] .. sOff[t] + sCnt[t])) and its cap including the
   *  links only it can be on (bytes/us). */
  sOff: Int32Array;
  sCnt: Int32Array;
  sList: Int32Array;
  effCap: Float64Array;
  /** Per task: its flow's slowdown while every CPU pool worker is busy (scaled by the busy
   *  fraction); -1: on no host-memory link. */
  cpuSlow: Float64Array;
  /** Links with a slowdown under CPU work. */
  cpuLinks: number[];
  /** Workers of all CPU pools. */
  cpuWorkers: number;
  /** CPU pools with a slowdown under copies. */
  cpuPools: number[];
}

const frozenCache = new WeakMap<SimGraph, Frozen>();

/** Least size (elements) of the arrays pooled per task or edge: enough for the graphs a search
 *  builds, so that its hot code never meets the growth path late (a deoptimisation each). */
const POOL_MIN = 16384;

/** Backing arrays of the frozen form, reused from graph to graph (freeze is synchronous; a Frozen
 *  holds views into them and is current only until the next freeze: `current` is it). */
const fPool: Int32Array[] = [];
let fEff = new Float64Array(POOL_MIN);
let fCpuMul = new Float64Array(POOL_MIN);
let current: Frozen | null = null;
/** A zeroed Int32Array view of n elements over pooled slot `slot`. */
function fI32(slot: number, n: number): Int32Array {
  let a = fPool[slot];
  if (!a || a.length < n) { a = new Int32Array(Math.max(POOL_MIN, 2 * n)); fPool[slot] = a; return a.subarray(0, n); }
  const v = a.subarray(0, n);
  v.fill(0);
  return v;
}

/** A temporary Int32Array of at least n elements, reused (contents undefined). */
let tmp = new Int32Array(POOL_MIN);
function tmpI32(n: number): Int32Array {
  if (tmp.length < n) tmp = new Int32Array(Math.max(n, tmp.length * 2));
  return tmp;
}

function freeze(g: SimGraph): Frozen {
  g.resolveSignals();
  const cached = frozenCache.get(g);
  if (cached && cached.version === g.version && cached === current) return cached;
  const n = g.taskCount;
  const E = g.edgeFrom.n;
  const ef = g.edgeFrom.a;
  const et = g.edgeTo.a;
  const indeg = fI32(0, n);
  const succOff = fI32(1, n + 1);
  for (let e = 0; e < E; e++) {
    const a = ef[e];
    const b = et[e];
    if (!(a >= 0 && a < n)) {
      throw new SimError(`task ${b} "${b >= 0 && b < n ? g.taskName(b) : '?'}" depends on task ${a}, which does not exist (the graph has ${n} tasks)`, [b]);
    }
    if (!(b >= 0 && b < n)) throw new SimError(`a dependency on task ${a} "${g.taskName(a)}" names task ${b}, which does not exist`, [a]);
    indeg[b]++;
    succOff[a + 1]++;
  }
  for (let i = 0; i < n; i++) succOff[i + 1] += succOff[i];
  const fill = tmpI32(n);
  fill.set(succOff.subarray(0, n));
  const succ = fI32(2, E);
  for (let e = 0; e < E; e++) succ[fill[ef[e]]++] = et[e];

  const R = g.resourceCount;
  const L = g.linkCount;
  const tRes = g.tRes, tLinkOff = g.tLinkOff, tLinkCnt = g.tLinkCnt, tCap = g.tCap, linkCap = g.linkCap;
  const isStream = fI32(13, R);
  for (let r = 0; r < R; r++) isStream[r] = g.resKind[r] === R_STREAM ? 1 : 0;
  // One pass over the tasks: stream queue lengths, and the owner of each link: a link crossed only
  // by tasks of one in-order stream never carries two flows at once: for sharing it is exactly a
  // per-flow cap, so progressive filling leaves it out.
  const qCnt = fI32(3, R + 1);
  const owner = fI32(9, L).fill(-2); // -2 unused, -1 shared, else the stream
  const ll = g.linkList.a;
  for (let t = 0; t < n; t++) {
    const r = tRes[t];
    const own = r >= 0 && isStream[r] === 1 ? r : -1;
    if (own >= 0) qCnt[own]++;
    const c = tLinkCnt[t];
    if (c === 0) continue;
    for (let i = tLinkOff[t], e = i + c; i < e; i++) {
      const l = ll[i];
      if (owner[l] === -2) owner[l] = own;
      else if (owner[l] !== own) owner[l] = -1;
    }
  }
  const qOff = fI32(4, R + 1);
  for (let r = 0; r < R; r++) qOff[r + 1] = qOff[r] + qCnt[r];
  const qFill = fI32(5, R);
  qFill.set(qOff.subarray(0, R));
  const qList = fI32(6, qOff[R]);

  const devComputeStreams: number[][] = g.deviceName.map(() => []);
  for (let r = 0; r < R; r++) if (g.resKind[r] === R_STREAM && g.resRole[r] === 0) devComputeStreams[g.resDevice[r]].push(r);
  const runOff = fI32(7, R + 1);
  for (let r = 0; r < R; r++) runOff[r + 1] = runOff[r] + g.resSlots[r];
  const lfOff = fI32(8, L + 1);
  for (let i = 0; i < g.linkList.n; i++) lfOff[ll[i] + 1]++;
  for (let l = 0; l < L; l++) lfOff[l + 1] += lfOff[l];
  // One more pass: the stream queues (tasks in add order), and per task its shared links and its
  // cap including the links only it can be on.
  const sOff = fI32(10, n);
  const sCnt = fI32(11, n);
  const sList = fI32(12, g.linkList.n);
  if (fEff.length < n) fEff = new Float64Array(2 * n);
  const effCap = fEff.subarray(0, n);
  let k = 0;
  for (let t = 0; t < n; t++) {
    const r = tRes[t];
    if (r >= 0 && isStream[r] === 1) qList[qFill[r]++] = t;
    let cap = tCap[t];
    sOff[t] = k;
    for (let i = tLinkOff[t], e = i + tLinkCnt[t]; i < e; i++) {
      const l = ll[i];
      if (owner[l] >= 0) { if (linkCap[l] < cap) cap = linkCap[l]; }
      else sList[k++] = l;
    }
    sCnt[t] = k - sOff[t];
    effCap[t] = cap;
  }
  // per flow, the largest slowdown under CPU work of its links (-1: on no host-memory link); the
  // links with a slowdown
  if (fCpuMul.length < n) fCpuMul = new Float64Array(2 * n);
  const cpuSlow = fCpuMul.subarray(0, n);
  const cpuLinks: number[] = [];
  let hostLinks = 0;
  for (let l = 0; l < L; l++) { const x = g.linkCpuSlowdown[l]!; if (x >= 0) hostLinks++; if (x > 0) cpuLinks.push(l); }
  for (let t = 0; t < n; t++) {
    let s = -1;
    if (hostLinks) for (let i = tLinkOff[t], e = i + tLinkCnt[t]; i < e; i++) { const x = g.linkCpuSlowdown[ll[i]]!; if (x > s) s = x; }
    cpuSlow[t] = s;
  }
  let cpuWorkers = 0;
  const cpuPools: number[] = [];
  for (let r = 0; r < R; r++) if (g.resKind[r] === R_CPU) { cpuWorkers += g.resSlots[r]; if (g.resCpuSlowdown[r]! > 0) cpuPools.push(r); }
  const f: Frozen = {
    version: g.version, n, succOff, succ, indeg, qOff, qList, devComputeStreams, runOff, runTotal: runOff[R], lfOff,
    sOff, sCnt, sList, effCap, cpuSlow, cpuLinks, cpuWorkers, cpuPools,
  };
  frozenCache.set(g, f);
  current = f;
  return f;
}

/** Per-task work arrays reused from run to run (simulate is synchronous and not re-entrant), so
 *  the search's many runs do not churn the garbage collector. Results get fresh arrays. */
interface Scratch {
  cap: number;
  hT: Float64Array; hS: Float64Array; hK: Int32Array; hPos: Int32Array;
  depLeft: Int32Array; state: Uint8Array; rem: Float64Array; rate: Float64Array; last: Float64Array;
  readyAt: Float64Array; lastDep: Int32Array; critPred: Int32Array; fifoNext: Int32Array;
  mark: Int32Array; compF: Int32Array; newRate: Float64Array;
}
let pool: Scratch | null = null;
const sharedEpoch = { value: 0 };
function scratch(n: number): Scratch {
  if (pool && pool.cap >= n) return pool;
  const c = Math.max(POOL_MIN, n, pool ? pool.cap * 2 : 0);
  pool = {
    cap: c,
    hT: new Float64Array(c), hS: new Float64Array(c), hK: new Int32Array(c), hPos: new Int32Array(c),
    depLeft: new Int32Array(c), state: new Uint8Array(c), rem: new Float64Array(c), rate: new Float64Array(c), last: new Float64Array(c),
    readyAt: new Float64Array(c), lastDep: new Int32Array(c), critPred: new Int32Array(c), fifoNext: new Int32Array(c),
    mark: new Int32Array(c), compF: new Int32Array(c), newRate: new Float64Array(c),
  };
  sharedEpoch.value = 0;
  return pool;
}

/** Pooled small arrays by slot (at least n long; contents undefined). */
const poolI32: Int32Array[] = [], poolF64: Float64Array[] = [], poolU8: Uint8Array[] = [];
function pI32(slot: number, n: number): Int32Array {
  let a = poolI32[slot];
  if (!a || a.length < n) { a = new Int32Array(Math.max(16, n)); poolI32[slot] = a; }
  return a;
}
function pF64(slot: number, n: number): Float64Array {
  let a = poolF64[slot];
  if (!a || a.length < n) { a = new Float64Array(Math.max(slot >= 12 ? POOL_MIN : 16, n)); poolF64[slot] = a; }
  return a;
}
function pU8(slot: number, n: number): Uint8Array {
  let a = poolU8[slot];
  if (!a || a.length < n) { a = new Uint8Array(Math.max(16, n)); poolU8[slot] = a; }
  return a;
}

class Engine {
  readonly g: SimGraph;
  readonly f: Frozen;
  now = 0;
  seq = 0;
  // heap
  hT: Float64Array;
  hS: Float64Array;
  hK: Int32Array;
  hPos: Int32Array;
  hN = 0;
  // tasks
  depLeft: Int32Array;
  state: Uint8Array;
  rem: Float64Array;
  rate: Float64Array;
  last: Float64Array;
  start: Float64Array;
  end: Float64Array;
  readyAt: Float64Array;
  lastDep: Int32Array;
  critPred: Int32Array;
  done = 0;
  // resources
  qHead: Int32Array; // streams: index into qList of the next task to run
  busy: Int32Array; // streams: running task or -1
  slots: Int32Array; // pools: free slots
  fifoHead: Int32Array;
  fifoTail: Int32Array;
  fifoNext: Int32Array;
  lastOnRes: Int32Array;
  resRunning: Int32Array;
  resBusySince: Float64Array;
  resBusy: Float64Array;
  resBytes: Float64Array;
  runList: Int32Array;
  runCnt: Int32Array;
  busyWorkers: Int32Array;
  // links
  /** Active flows per link: lf[lfOff[l] .. lfOff[l] + lfN[l]). */
  lf: Int32Array;
  lfN: Int32Array;
  linkBusySince: Float64Array;
  linkBusy: Float64Array;
  linkBytes: Float64Array;
  devCopies: Int32Array;
  /** Busy workers of all CPU pools: a host-memory flow's slowdown scales with their fraction. */
  cpuBusy = 0;
  /** cpuBusy changed at `now`: the host-memory flows' rates are updated before time moves on. */
  cpuDirty = false;
  /** Flows running on host-memory links: CPU pools with slowdown_under_copies slow with their number. */
  hostFlows = 0;
  private cpuSeen: number[] = [];
  // progressive filling scratch
  mark: Int32Array; // per task epoch (shared scratch: epochs grow across runs)
  lmark: Int32Array; // per link epoch
  compF: Int32Array;
  compL: Int32Array;
  lres: Float64Array;
  lunf: Int32Array;
  newRate: Float64Array;
  // link rate log (SimOptions.linkSeries)
  logLinks = false;
  llT: number[] = [];
  llL: number[] = [];
  llD: number[] = [];
  // memory
  cur: Float64Array;
  curClass: Float64Array;
  peak: Float64Array;
  peakTime: Float64Array;
  peakClass: Float64Array;
  peakLog: Int32Array;
  bufLive: Uint8Array;
  bufOwner: Int32Array;
  logEff: Int32Array;
  logTime: Float64Array;
  logN = 0;

  constructor(g: SimGraph, f: Frozen, reuse: boolean) {
    this.g = g;
    this.f = f;
    const n = f.n;
    const sc = scratch(n);
    this.hT = sc.hT;
    this.hS = sc.hS;
    this.hK = sc.hK;
    this.hPos = sc.hPos; this.hPos.fill(-1, 0, n);
    this.depLeft = sc.depLeft; this.depLeft.set(f.indeg);
    this.state = sc.state; this.state.fill(0, 0, n);
    this.rem = sc.rem;
    this.rate = sc.rate;
    this.last = sc.last;
    this.start = reuse ? pF64(12, n).subarray(0, n).fill(0) : new Float64Array(n);
    this.end = reuse ? pF64(13, n).subarray(0, n).fill(0) : new Float64Array(n);
    this.readyAt = sc.readyAt; this.readyAt.fill(0, 0, n);
    this.lastDep = sc.lastDep; this.lastDep.fill(-1, 0, n);
    this.critPred = sc.critPred; this.critPred.fill(-1, 0, n);
    this.fifoNext = sc.fifoNext; this.fifoNext.fill(-1, 0, n);
    this.mark = sc.mark;
    this.compF = sc.compF;
    this.newRate = sc.newRate;
    // Per-resource, per-link and per-device state: pooled (sized by the graph's machine, which a
    // caller that simulates many graphs reuses), reset here. Nothing of it goes into results.
    const R = g.resourceCount;
    this.qHead = pI32(0, R); this.qHead.set(f.qOff.subarray(0, R));
    this.busy = pI32(1, R); this.busy.fill(-1, 0, R);
    this.slots = pI32(2, R); for (let r = 0; r < R; r++) this.slots[r] = g.resSlots[r];
    this.fifoHead = pI32(3, R); this.fifoHead.fill(-1, 0, R);
    this.fifoTail = pI32(4, R); this.fifoTail.fill(-1, 0, R);
    this.lastOnRes = pI32(5, R); this.lastOnRes.fill(-1, 0, R);
    this.resRunning = pI32(6, R); this.resRunning.fill(0, 0, R);
    this.resBusySince = pF64(0, R); this.resBusySince.fill(0, 0, R);
    this.resBusy = pF64(1, R); this.resBusy.fill(0, 0, R);
    this.resBytes = pF64(2, R); this.resBytes.fill(0, 0, R);
    this.runList = pI32(7, f.runTotal);
    this.runCnt = pI32(8, R); this.runCnt.fill(0, 0, R);
    this.busyWorkers = pI32(9, R); this.busyWorkers.fill(0, 0, R);
    const L = g.linkCount;
    this.lf = pI32(10, f.lfOff[L]);
    this.lfN = pI32(11, L); this.lfN.fill(0, 0, L);
    this.linkBusySince = pF64(3, L); this.linkBusySince.fill(0, 0, L);
    this.linkBusy = pF64(4, L); this.linkBusy.fill(0, 0, L);
    this.linkBytes = pF64(5, L); this.linkBytes.fill(0, 0, L);
    this.devCopies = pI32(12, g.deviceCount); this.devCopies.fill(0, 0, g.deviceCount);
    this.cpuBusy = 0;
    this.cpuDirty = false;
    this.hostFlows = 0;
    this.lmark = pI32(13, L); this.lmark.fill(0, 0, L);
    this.compL = pI32(14, Math.max(16, L));
    this.lres = pF64(6, L);
    this.lunf = pI32(15, L);
    const D = g.deviceCount;
    this.cur = pF64(7, D); this.cur.fill(0, 0, D);
    this.curClass = pF64(8, D * NCLASS); this.curClass.fill(0, 0, D * NCLASS);
    this.peak = pF64(9, D); this.peak.fill(0, 0, D);
    this.peakTime = pF64(10, D); this.peakTime.fill(0, 0, D);
    this.peakClass = pF64(11, D * NCLASS); this.peakClass.fill(0, 0, D * NCLASS);
    this.peakLog = pI32(16, D); this.peakLog.fill(-1, 0, D);
    const nb = g.bufName.length;
    this.bufLive = pU8(0, nb); this.bufLive.fill(0, 0, nb);
    this.bufOwner = pI32(17, nb); this.bufOwner.fill(-1, 0, nb);
    const M = g.memKind.n;
    this.logEff = new Int32Array(M);
    this.logTime = new Float64Array(M);
  }

  // ---------------------------------------------------------------- heap
  // Indexed binary heap of (time, seq) with one entry per task at most: rescheduling a task
  // moves its entry (with a fresh sequence number), so no stale events pile up.
  /** Schedules (or reschedules) the end of task's current phase at `time`. */
  push(time: number, task: number): void {
    const s = this.seq++;
    const p = this.hPos[task];
    if (p >= 0) {
      const old = this.hT[p];
      this.hT[p] = time;
      this.hS[p] = s;
      if (time < old) this.up(p); else this.down(p);
      return;
    }
    if (this.hN === this.hT.length) this.growHeap();
    const i = this.hN++;
    this.hT[i] = time; this.hS[i] = s; this.hK[i] = task; this.hPos[task] = i;
    this.up(i);
  }

  up(i: number): void {
    const hT = this.hT, hS = this.hS, hK = this.hK, pos = this.hPos;
    const t = hT[i], s = hS[i], k = hK[i];
    while (i > 0) {
      const p = (i - 1) >> 1;
      const pt = hT[p];
      if (pt < t || (pt === t && hS[p] < s)) break;
      hT[i] = pt; hS[i] = hS[p]; hK[i] = hK[p]; pos[hK[i]] = i;
      i = p;
    }
    hT[i] = t; hS[i] = s; hK[i] = k; pos[k] = i;
  }

  down(i: number): void {
    const hT = this.hT, hS = this.hS, hK = this.hK, pos = this.hPos;
    const n = this.hN;
    const t = hT[i], s = hS[i], k = hK[i];
    for (;;) {
      let c = 2 * i + 1;
      if (c >= n) break;
      const c2 = c + 1;
      if (c2 < n && (hT[c2] < hT[c] || (hT[c2] === hT[c] && hS[c2] < hS[c]))) c = c2;
      if (t < hT[c] || (t === hT[c] && s < hS[c])) break;
      hT[i] = hT[c]; hS[i] = hS[c]; hK[i] = hK[c]; pos[hK[i]] = i;
      i = c;
    }
    hT[i] = t; hS[i] = s; hK[i] = k; pos[k] = i;
  }

  growHeap(): void {
    const c = this.hT.length * 2;
    const a = new Float64Array(c); a.set(this.hT); this.hT = a;
    const b = new Float64Array(c); b.set(this.hS); this.hS = b;
    const k = new Int32Array(c); k.set(this.hK); this.hK = k;
  }

  /** Removes the root; the caller read it first. */
  popRoot(): void {
    const hT = this.hT, hS = this.hS, hK = this.hK, pos = this.hPos;
    pos[hK[0]] = -1;
    const n = --this.hN;
    if (n === 0) return;
    // Bottom-up (Floyd): the smaller child moves up into the hole down to a leaf, the last entry
    // fills it and sifts up (about half the comparisons of sifting the last entry down from the
    // root; keys are unique, so the order of pops is the same).
    let i = 0;
    for (;;) {
      let c = 2 * i + 1;
      if (c >= n) break;
      const c2 = c + 1;
      if (c2 < n && (hT[c2] < hT[c] || (hT[c2] === hT[c] && hS[c2] < hS[c]))) c = c2;
      hT[i] = hT[c]; hS[i] = hS[c]; hK[i] = hK[c]; pos[hK[i]] = i;
      i = c;
    }
    hT[i] = hT[n]; hS[i] = hS[n]; hK[i] = hK[n]; pos[hK[i]] = i;
    this.up(i);
  }

  // ---------------------------------------------------------------- run
  run(): void {
    const n = this.f.n;
    const g = this.g;
    // initial ready tasks, in index order
    for (let t = 0; t < n; t++) if (this.depLeft[t] === 0) this.makeReady(t);
    while (this.hN > 0) {
      const time = this.hT[0];
      // the CPU pools' busy workers changed at `now`: host-memory flows take their new rates once,
      // after every event of that instant (a layer's update ending as the next one starts is no change)
      if (this.cpuDirty && time > this.now) { this.cpuDirty = false; this.cpuChanged(); continue; }
      const t = this.hK[0];
      this.popRoot();
      this.now = time;
      if (this.state[t] === S_FIXED) {
        const w = g.tWork[t];
        if (w === W_FLOW) { this.beginFlow(t); continue; }
        if (w === W_CPU) { this.state[t] = S_VAR; this.rem[t] = g.tAmount[t]; this.rate[t] = 0; this.last[t] = time; this.cpuRates(g.tRes[t]); continue; }
      }
      this.complete(t);
    }
    if (this.done < n) this.deadlock();
  }

  makeReady(t: number): void {
    const g = this.g;
    const r = g.tRes[t];
    this.state[t] = S_READY;
    if (r < 0) { this.begin(t); return; }
    if (g.resKind[r] === R_STREAM) {
      if (this.busy[r] < 0 && this.f.qList[this.qHead[r]] === t) this.begin(t);
      return;
    }
    const w = g.tWorkers[t];
    if (this.fifoHead[r] < 0 && this.slots[r] >= w) { this.begin(t); return; }
    // enqueue
    if (this.fifoTail[r] < 0) this.fifoHead[r] = t; else this.fifoNext[this.fifoTail[r]] = t;
    this.fifoTail[r] = t;
  }

  begin(t: number): void {
    const g = this.g;
    const now = this.now;
    const r = g.tRes[t];
    this.state[t] = S_FIXED;
    this.start[t] = now;
    this.critPred[t] = now > this.readyAt[t] && r >= 0 ? this.lastOnRes[r] : this.lastDep[t];
    if (r >= 0) {
      if (this.resRunning[r]++ === 0) this.resBusySince[r] = now;
      const k = g.resKind[r];
      if (k === R_STREAM) this.busy[r] = t;
      else {
        this.slots[r] -= g.tWorkers[t];
        if (k === R_CPU) {
          this.runList[this.f.runOff[r] + this.runCnt[r]++] = t;
          this.busyWorkers[r] += g.tWorkers[t];
          this.cpuBusy += g.tWorkers[t];
          if (this.f.cpuLinks.length) this.cpuDirty = true;
        }
      }
    }
    if (g.tMemCnt[t] > 0) this.memEffects(t, 0);
    const fixed = g.tFixed[t];
    let rate = 1;
    if (r >= 0 && g.resKind[r] === R_STREAM && g.resRole[r] === 0) {
      const d = g.resDevice[r];
      if (this.devCopies[d] > 0 && g.deviceSlowdown[d] > 0) rate = 1 / (1 + g.deviceSlowdown[d]);
    }
    this.rem[t] = fixed;
    this.rate[t] = rate;
    this.last[t] = now;
    const w = g.tWork[t];
    if (fixed === 0 && w === W_FLOW) { this.beginFlow(t); return; }
    if (fixed === 0 && w === W_CPU) { this.state[t] = S_VAR; this.rem[t] = g.tAmount[t]; this.rate[t] = 0; this.cpuRates(r); return; }
    if (w === W_CPU) this.cpuRates(r);
    this.push(fixed > 0 ? now + fixed / rate : now, t);
  }

  complete(t: number): void {
    const g = this.g;
    const f = this.f;
    const now = this.now;
    const st = this.state[t];
    this.state[t] = S_DONE;
    this.end[t] = now;
    this.done++;
    const r = g.tRes[t];
    if (g.tWork[t] === W_FLOW && st === S_VAR) this.endFlow(t);
    if (g.tMemCnt[t] > 0) this.memEffects(t, 1);
    if (r >= 0) {
      if (--this.resRunning[r] === 0) this.resBusy[r] += now - this.resBusySince[r];
      this.lastOnRes[r] = t;
      const k = g.resKind[r];
      if (k === R_STREAM) {
        this.busy[r] = -1;
        const h = ++this.qHead[r];
        if (h < f.qOff[r + 1]) {
          const nx = f.qList[h];
          if (this.state[nx] === S_READY) this.begin(nx);
        }
      } else {
        this.slots[r] += g.tWorkers[t];
        if (k === R_CPU) {
          const off = f.runOff[r];
          const c = --this.runCnt[r];
          for (let i = 0; i <= c; i++) if (this.runList[off + i] === t) { this.runList[off + i] = this.runList[off + c]; break; }
          this.busyWorkers[r] -= g.tWorkers[t];
          this.cpuBusy -= g.tWorkers[t];
          if (f.cpuLinks.length) this.cpuDirty = true;
          this.cpuRates(r);
        } else if (k === R_DISK) this.resBytes[r] += g.tAmount[t];
        // start queued tasks in FIFO order while they fit
        let h = this.fifoHead[r];
        while (h >= 0 && this.slots[r] >= g.tWorkers[h]) {
          const nx = this.fifoNext[h];
          this.fifoNext[h] = -1;
          this.fifoHead[r] = nx;
          if (nx < 0) this.fifoTail[r] = -1;
          this.begin(h);
          h = nx;
        }
      }
    }
    const so = f.succOff;
    const succ = f.succ;
    for (let i = so[t], e = so[t + 1]; i < e; i++) {
      const s = succ[i];
      if (--this.depLeft[s] === 0) {
        this.readyAt[s] = now;
        this.lastDep[s] = t;
        this.makeReady(s);
      }
    }
  }

  // ---------------------------------------------------------------- CPU pool
  cpuRates(r: number): void {
    const g = this.g;
    const bw = this.busyWorkers[r];
    if (bw === 0) return;
    const W = g.resCurveW[r];
    const Rt = g.resCurveR[r];
    let total: number;
    if (bw <= W[0]) total = (Rt[0] * bw) / W[0];
    else if (bw >= W[W.length - 1]) total = Rt[Rt.length - 1];
    else {
      let i = 1;
      while (W[i] < bw) i++;
      total = Rt[i - 1] + ((Rt[i] - Rt[i - 1]) * (bw - W[i - 1])) / (W[i] - W[i - 1]);
    }
    // slowed in proportion to the host copies running, up to the pool's full slowdown at
    // slowdown_copies of them (what calibrate timed: every GPU copying at once)
    const sl = g.resCpuSlowdown[r];
    const per = (sl > 0 && this.hostFlows > 0 ? total / (1 + sl * Math.min(1, this.hostFlows / g.resCpuSlowdownCopies[r])) : total) / bw;
    const off = this.f.runOff[r];
    for (let i = 0, c = this.runCnt[r]; i < c; i++) {
      const t = this.runList[off + i];
      if (this.state[t] !== S_VAR) continue;
      const nr = per * g.tWorkers[t];
      if (nr === this.rate[t]) continue;
      this.retime(t, nr);
    }
  }

  /** Sets a running task's rate at `now` and schedules its phase end. */
  retime(t: number, nr: number): void {
    const now = this.now;
    let rem = this.rem[t] - this.rate[t] * (now - this.last[t]);
    if (rem < 0) rem = 0;
    this.rem[t] = rem;
    this.last[t] = now;
    this.rate[t] = nr;
    this.push(now + rem / nr, t);
  }

  // ---------------------------------------------------------------- flows
  beginFlow(t: number): void {
    const g = this.g;
    this.state[t] = S_VAR;
    this.rem[t] = g.tAmount[t];
    this.rate[t] = 0;
    this.last[t] = this.now;
    const off = g.tLinkOff[t];
    const cnt = g.tLinkCnt[t];
    const ll = g.linkList.a;
    for (let i = 0; i < cnt; i++) {
      const l = ll[off + i];
      const c = this.lfN[l]++;
      if (c === 0) this.linkBusySince[l] = this.now;
      this.lf[this.f.lfOff[l] + c] = t;
      const d = g.linkDevice[l];
      if (this.devCopies[d]++ === 0 && g.deviceSlowdown[d] > 0) this.slowdownChanged(d);
    }
    const f = this.f;
    if (f.cpuSlow[t] >= 0) { this.hostFlows++; if (f.cpuPools.length) this.copiesChanged(); }
    let alone = true;
    let bw = f.effCap[t];
    for (let i = f.sOff[t], e = i + f.sCnt[t]; i < e; i++) {
      const l = f.sList[i];
      if (this.lfN[l] > 1) { alone = false; break; }
      if (g.linkCap[l] < bw) bw = g.linkCap[l];
    }
    if (alone) {
      if (this.cpuBusy > 0 && f.cpuSlow[t] > 0) bw *= this.cpuMul(t);
      if (this.logLinks) this.linkRate(t, bw);
      this.rate[t] = bw;
      this.push(this.now + this.rem[t] / bw, t);
      return;
    }
    this.refill(t);
  }

  endFlow(t: number): void {
    if (this.logLinks) this.linkRate(t, 0);
    const g = this.g;
    if (this.f.cpuSlow[t] >= 0) { this.hostFlows--; if (this.f.cpuPools.length) this.copiesChanged(); }
    const off = g.tLinkOff[t];
    const cnt = g.tLinkCnt[t];
    const ll = g.linkList.a;
    const bytes = g.tAmount[t];
    let others = false;
    for (let i = 0; i < cnt; i++) {
      const l = ll[off + i];
      const lo = this.f.lfOff[l];
      const c = --this.lfN[l];
      // swap-remove; order inside a link never affects rates
      for (let j = lo; j <= lo + c; j++) if (this.lf[j] === t) { this.lf[j] = this.lf[lo + c]; break; }
      this.linkBytes[l] += bytes;
      if (c === 0) this.linkBusy[l] += this.now - this.linkBusySince[l];
      else others = true;
      const d = g.linkDevice[l];
      if (--this.devCopies[d] === 0 && g.deviceSlowdown[d] > 0) this.slowdownChanged(d);
    }
    if (others) this.refill(t);
  }

  /** Progressive filling (max-min fairness with per-flow caps) over the component of flows
   *  connected to task t's links; reschedules flows whose rate changed. */
  refill(t: number): void {
    const g = this.g;
    const ll = this.f.sList;
    const tLinkOff = this.f.sOff;
    const tLinkCnt = this.f.sCnt;
    const tCap = this.f.effCap;
    const linkCap = g.linkCap;
    const lf = this.lf;
    const lfN = this.lfN;
    const lfOff = this.f.lfOff;
    const mark = this.mark;
    const lmark = this.lmark;
    const ep = ++sharedEpoch.value;
    if (ep === 0x3fffffff) { sharedEpoch.value = 1; this.mark.fill(0); this.lmark.fill(0); }
    const compF = this.compF;
    const compL = this.compL;
    let nf = 0;
    let nl = 0;
    // seed with t's links (t may have just ended: then it is not in any list)
    const off0 = tLinkOff[t];
    for (let i = 0, c = tLinkCnt[t]; i < c; i++) {
      const l = ll[off0 + i];
      if (lmark[l] !== ep) { lmark[l] = ep; compL[nl++] = l; }
    }
    let li = 0;
    let fi = 0;
    while (li < nl || fi < nf) {
      while (li < nl) {
        const l = compL[li++];
        const lo = lfOff[l];
        for (let j = lo, je = lo + lfN[l]; j < je; j++) {
          const x = lf[j];
          if (mark[x] !== ep) { mark[x] = ep; compF[nf++] = x; }
        }
      }
      while (fi < nf) {
        const x = compF[fi++];
        const o = tLinkOff[x];
        for (let i = 0, c = tLinkCnt[x]; i < c; i++) {
          const l = ll[o + i];
          if (lmark[l] !== ep) { lmark[l] = ep; compL[nl++] = l; }
        }
      }
    }
    if (nf === 0) return;
    const now = this.now;
    if (nf === 1) {
      // alone in its component: its cap or its narrowest link
      const x = compF[0];
      let r = tCap[x];
      const o = tLinkOff[x];
      for (let j = 0, c = tLinkCnt[x]; j < c; j++) { const cl = linkCap[ll[o + j]]; if (cl < r) r = cl; }
      if (this.cpuBusy > 0 && this.f.cpuSlow[x] > 0) r *= this.cpuMul(x);
      if (r !== this.rate[x]) {
        if (this.logLinks) this.linkRate(x, r);
        if (this.rate[x] === 0) { this.rate[x] = r; this.last[x] = now; this.push(now + this.rem[x] / r, x); }
        else this.retime(x, r);
      }
      return;
    }
    const lres = this.lres;
    const lunf = this.lunf;
    for (let i = 0; i < nl; i++) { const l = compL[i]; lres[l] = linkCap[l]; lunf[l] = lfN[l]; }
    const nr = this.newRate;
    // unfrozen flows: nr < 0
    for (let i = 0; i < nf; i++) nr[compF[i]] = -1;
    let left = nf;
    while (left > 0) {
      let share = Infinity;
      for (let i = 0; i < nl; i++) {
        const l = compL[i];
        if (lunf[l] > 0) { const s = lres[l] / lunf[l]; if (s < share) share = s; }
      }
      let capMin = Infinity;
      for (let i = 0; i < nf; i++) { const x = compF[i]; if (nr[x] < 0 && tCap[x] < capMin) capMin = tCap[x]; }
      const byCap = capMin <= share;
      const rate = byCap ? capMin : share;
      const lim = share * (1 + 1e-12);
      // freeze: flows at their cap, or every unfrozen flow crossing a bottleneck link
      for (let i = 0; i < nf; i++) {
        const x = compF[i];
        if (nr[x] >= 0) continue;
        const o = tLinkOff[x];
        const c = tLinkCnt[x];
        let hit = false;
        if (byCap) hit = tCap[x] <= capMin;
        else {
          for (let j = 0; j < c; j++) { const l = ll[o + j]; if (lres[l] / lunf[l] <= lim) { hit = true; break; } }
        }
        if (!hit) continue;
        nr[x] = rate;
        left--;
        for (let j = 0; j < c; j++) { const l = ll[o + j]; lres[l] -= rate; lunf[l]--; }
        // links already decremented keep their bottleneck status for flows later in this pass:
        // their share only grows when a flow at the bottleneck share leaves (residual/unfrozen
        // stays equal), so later flows on them are still found.
      }
    }
    const slowed = this.cpuBusy > 0 && this.f.cpuLinks.length > 0;
    for (let i = 0; i < nf; i++) {
      const x = compF[i];
      const r = slowed ? nr[x] * this.cpuMul(x) : nr[x];
      if (r !== this.rate[x]) {
        if (this.logLinks) this.linkRate(x, r);
        if (this.rate[x] === 0) { this.rate[x] = r; this.last[x] = now; this.push(now + this.rem[x] / r, x); }
        else this.retime(x, r);
      }
    }
  }

  /** Logs the change of flow x's rate (before it is applied) on every link it crosses. */
  linkRate(x: number, nr: number): void {
    const g = this.g;
    const d = nr - this.rate[x];
    if (d === 0) return;
    const ll = g.linkList.a;
    for (let i = g.tLinkOff[x], e = i + g.tLinkCnt[x]; i < e; i++) {
      this.llT.push(this.now);
      this.llL.push(ll[i]);
      this.llD.push(d);
    }
  }

  /** Flow x's progress factor now: 1 / (1 + its slowdown x the busy fraction of the CPU pools'
   *  workers) (calibrate timed the full slowdown with every rank's update running). */
  cpuMul(x: number): number {
    const s = this.f.cpuSlow[x];
    return s > 0 && this.cpuBusy > 0 ? 1 / (1 + s * Math.min(1, this.cpuBusy / this.f.cpuWorkers)) : 1;
  }

  /** CPU pool workers went busy or idle: the flows on links with a slowdown under CPU work take
   *  their new rates (each component refilled). Allocations stay max-min fair; only the progress
   *  of an affected flow scales. */
  cpuChanged(): void {
    const seen = this.cpuSeen;
    seen.length = 0;
    for (const l of this.f.cpuLinks) {
      const lo = this.f.lfOff[l];
      for (let j = lo, je = lo + this.lfN[l]; j < je; j++) seen.push(this.lf[j]);
    }
    // a refill marks every flow of the component it recomputes with a new epoch: a flow marked
    // after `start` has its new rate already (a flow on three host links is listed three times)
    const start = sharedEpoch.value;
    for (const x of seen) if (this.state[x] === S_VAR && !(this.mark[x] > start && sharedEpoch.value >= start)) this.refill(x);
  }

  /** Host copies started or all ended: the CPU pools that slow under them take their new rates. */
  copiesChanged(): void {
    for (const r of this.f.cpuPools) if (this.busyWorkers[r] > 0) this.cpuRates(r);
  }

  slowdownChanged(d: number): void {
    const g = this.g;
    const rate = this.devCopies[d] > 0 ? 1 / (1 + g.deviceSlowdown[d]) : 1;
    const streams = this.f.devComputeStreams[d];
    for (let i = 0; i < streams.length; i++) {
      const t = this.busy[streams[i]];
      if (t >= 0 && this.state[t] === S_FIXED && this.rate[t] !== rate) {
        if (g.tFixed[t] > 0) this.retime(t, rate);
        else this.rate[t] = rate;
      }
    }
  }

  // ---------------------------------------------------------------- memory
  memEffects(t: number, at: number): void {
    const g = this.g;
    const o = g.tMemOff[t];
    const memAt = g.memAt.a;
    const memBuf = g.memBuf.a;
    const memKind = g.memKind.a;
    const memBytes = g.memBytes.a;
    const memClass = g.memClass.a;
    const bufLive = this.bufLive;
    const cur = this.cur;
    const now = this.now;
    for (let i = o, e = o + g.tMemCnt[t]; i < e; i++) {
      if (memAt[i] !== at) continue;
      const b = memBuf[i];
      const d = g.bufDevice[b];
      let delta: number;
      let c: number;
      if (memKind[i] === 0) {
        if (bufLive[b]) this.memError(t, b, true);
        bufLive[b] = 1;
        delta = memBytes[i];
        c = memClass[i];
        this.bufOwner[b] = t;
        this.allocEff[b] = i;
      } else {
        if (!bufLive[b]) this.memError(t, b, false);
        bufLive[b] = 0;
        const ai = this.allocEff[b];
        delta = -memBytes[ai];
        c = memClass[ai];
      }
      const v = cur[d] + delta;
      cur[d] = v;
      this.curClass[d * NCLASS + c] += delta;
      const n = this.logN;
      this.logEff[n] = i;
      this.logTime[n] = now;
      this.logN = n + 1;
      if (v > this.peak[d]) {
        this.peak[d] = v;
        this.peakTime[d] = now;
        this.peakLog[d] = n + 1;
        const base = d * NCLASS;
        for (let k = 0; k < NCLASS; k++) this.peakClass[base + k] = this.curClass[base + k];
      }
    }
  }

  memError(t: number, b: number, alloc: boolean): never {
    const g = this.g;
    const dn = g.deviceName[g.bufDevice[b]];
    if (alloc) {
      const o2 = this.bufOwner[b];
      throw new SimError(`task ${t} "${g.taskName(t)}" allocates "${g.bufName[b]}" on ${dn}, which is still live (allocated by task ${o2} "${g.taskName(o2)}")`, [t, o2]);
    }
    throw new SimError(`task ${t} "${g.taskName(t)}" frees "${g.bufName[b]}" on ${dn}, which is not allocated`, [t]);
  }
  allocEff = new Int32Array(0);

  // ---------------------------------------------------------------- errors
  deadlock(): never {
    const g = this.g;
    const f = this.f;
    const n = f.n;
    // wait-for graph among unfinished tasks: unfinished deps, and the previous task of a stream
    const preds: number[][] = [];
    for (let t = 0; t < n; t++) preds.push([]);
    for (let a = 0; a < n; a++) {
      if (this.state[a] === S_DONE) continue;
      for (let i = f.succOff[a]; i < f.succOff[a + 1]; i++) { const b = f.succ[i]; if (this.state[b] !== S_DONE) preds[b].push(a); }
    }
    for (let r = 0; r < g.resourceCount; r++) {
      for (let i = f.qOff[r] + 1; i < f.qOff[r + 1]; i++) {
        const a = f.qList[i - 1];
        const b = f.qList[i];
        if (this.state[a] !== S_DONE && this.state[b] !== S_DONE) preds[b].push(a);
      }
    }
    // iterative DFS for a cycle
    const color = new Uint8Array(n);
    const parent = new Int32Array(n).fill(-1);
    const stuck: number[] = [];
    for (let t = 0; t < n; t++) if (this.state[t] !== S_DONE) stuck.push(t);
    for (const s of stuck) {
      if (color[s] !== 0) continue;
      const stack: number[] = [s];
      const idx: number[] = [0];
      color[s] = 1;
      while (stack.length) {
        const u = stack[stack.length - 1];
        const k = idx[idx.length - 1];
        if (k < preds[u].length) {
          idx[idx.length - 1]++;
          const v = preds[u][k];
          if (color[v] === 0) { color[v] = 1; parent[v] = u; stack.push(v); idx.push(0); }
          else if (color[v] === 1) {
            // cycle: v waits ... u waits on v
            const back: number[] = [];
            for (let x = u; x !== v && x >= 0; x = parent[x]) back.push(x);
            const cyc = [v, ...back.reverse()]; // each waits for the next, the last for the first
            const names = cyc.map((x) => `task ${x} "${g.taskName(x)}"`);
            throw new SimError(`deadlock: ${stuck.length} task(s) can never start; cycle (each waits for the next, by dependency or stream order): ${names.join(' -> ')} -> task ${v}`, cyc);
          }
        } else { color[u] = 2; stack.pop(); idx.pop(); }
      }
    }
    const names = stuck.slice(0, 10).map((x) => `task ${x} "${g.taskName(x)}"`);
    throw new SimError(`deadlock: ${stuck.length} task(s) never started: ${names.join(', ')}${stuck.length > 10 ? ', ...' : ''}`, stuck.slice(0, 10));
  }
}

/** Runs the graph to completion and reports. Throws SimError when tasks can never start. */
export function simulate(g: SimGraph, opts: SimOptions = {}): SimResult {
  const f = freeze(g);
  const e = new Engine(g, f, opts.reuse === true);
  e.allocEff = new Int32Array(g.bufName.length);
  e.logLinks = opts.linkSeries === true;
  e.run();
  return report(g, f, e, opts);
}

function report(g: SimGraph, f: Frozen, e: Engine, opts: SimOptions): SimResult {
  const n = f.n;
  let makespan = 0;
  let lastT = -1;
  for (let t = 0; t < n; t++) if (lastT < 0 || e.end[t] > makespan) { makespan = e.end[t]; lastT = t; }
  const util = (busy: number) => (makespan > 0 ? busy / makespan : 0);
  const resources: ResourceUsage[] = [];
  const memory: MemoryReport[] = [];
  if (opts.usage !== false) usage(g, e, opts, makespan, util, resources, memory);

  let critical: CriticalPath | null = null;
  if (opts.criticalPath !== false && lastT >= 0) {
    const tasks: number[] = [];
    for (let t = lastT; t >= 0; t = e.critPred[t]) tasks.push(t);
    tasks.reverse();
    const acc = new Map<string, number>();
    for (const t of tasks) {
      const name = resourceLabel(g, t);
      acc.set(name, (acc.get(name) ?? 0) + (e.end[t] - e.start[t]));
    }
    const by_resource = [...acc].map(([name, us]) => ({ name, us })).sort((a, b) => b.us - a.us || (a.name < b.name ? -1 : 1));
    critical = { tasks, by_resource, bound: by_resource.length ? by_resource[0].name : '' };
  }
  const tokens = opts.tokens;
  return {
    makespan_us: makespan,
    step_s: makespan / 1e6,
    tokens_per_s: tokens !== undefined && makespan > 0 ? tokens / (makespan / 1e6) : null,
    start_us: e.start,
    end_us: e.end,
    resources,
    memory,
    critical,
    tasks: n,
    mem_log: { time_us: e.logTime, effect: e.logEff, count: e.logN },
    link_log: e.logLinks ? { time_us: Float64Array.from(e.llT), link: Int32Array.from(e.llL), delta_bytes_per_us: Float64Array.from(e.llD), count: e.llT.length } : undefined,
  };
}

/** Per-resource usage and per-device memory of a run (into `resources` and `memory`). */
function usage(
  g: SimGraph, e: Engine, opts: SimOptions, makespan: number, util: (busy: number) => number, resources: ResourceUsage[], memory: MemoryReport[],
): void {
  for (let r = 0; r < g.resourceCount; r++) {
    const u: ResourceUsage = { name: g.resName[r], kind: g.resourceKind(r), device: g.deviceName[g.resDevice[r]], busy_us: e.resBusy[r], utilisation: util(e.resBusy[r]) };
    if (g.resKind[r] === R_DISK) u.bytes = e.resBytes[r];
    resources.push(u);
  }
  for (let l = 0; l < g.linkCount; l++) {
    resources.push({
      name: g.linkName[l], kind: 'link', device: g.deviceName[g.linkDevice[l]], busy_us: e.linkBusy[l], utilisation: util(e.linkBusy[l]),
      bytes: e.linkBytes[l], bandwidth_utilisation: makespan > 0 ? e.linkBytes[l] / (g.linkCap[l] * makespan) : 0,
    });
  }

  // memory
  const wantSeries = opts.memorySeries !== false;
  const D = g.deviceCount;
  const series = Array.from({ length: D }, () => ({ t_us: [] as number[], bytes: [] as number[] }));
  const peakBuffers: MemoryReport['peak_buffers'][] = Array.from({ length: D }, () => []);
  {
    const cur = new Float64Array(D);
    const allocAt = new Int32Array(g.bufName.length);
    const live = new Uint8Array(g.bufName.length);
    const peakAt = new Int32Array(e.logN + 1).fill(-1); // log position -> device whose peak it is
    const peakNext = new Int32Array(D).fill(-1);
    for (let d = 0; d < D; d++) if (e.peakLog[d] > 0) { peakNext[d] = peakAt[e.peakLog[d]]; peakAt[e.peakLog[d]] = d; }
    // without the series, replay only up to the last peak
    let stop = e.logN;
    if (!wantSeries) { stop = 0; for (let d = 0; d < D; d++) if (e.peakLog[d] > stop) stop = e.peakLog[d]; }
    const memBuf = g.memBuf.a;
    const memKind = g.memKind.a;
    const memBytes = g.memBytes.a;
    for (let i = 0; i < stop; i++) {
      const eff = e.logEff[i];
      const b = memBuf[eff];
      const d = g.bufDevice[b];
      if (memKind[eff] === 0) { allocAt[b] = eff; cur[d] += memBytes[eff]; live[b] = 1; }
      else { cur[d] -= memBytes[allocAt[b]]; live[b] = 0; }
      if (wantSeries) {
        const s = series[d];
        const tm = e.logTime[i];
        if (s.t_us.length > 0 && s.t_us[s.t_us.length - 1] === tm) s.bytes[s.bytes.length - 1] = cur[d];
        else { s.t_us.push(tm); s.bytes.push(cur[d]); }
      }
      for (let pd = peakAt[i + 1]; pd >= 0; pd = peakNext[pd]) {
        const list: MemoryReport['peak_buffers'] = [];
        for (let bb = 0; bb < live.length; bb++) {
          if (live[bb] && g.bufDevice[bb] === pd) { const ae = allocAt[bb]; list.push({ buffer: g.bufName[bb], bytes: g.memBytes.a[ae], class: MEM_CLASSES[g.memClass.a[ae]] }); }
        }
        list.sort((x, y) => y.bytes - x.bytes || (x.buffer < y.buffer ? -1 : x.buffer > y.buffer ? 1 : 0));
        peakBuffers[pd] = list.slice(0, 32);
      }
    }
  }
  for (let d = 0; d < D; d++) {
    const by = {} as Record<MemClass, number>;
    for (let k = 0; k < NCLASS; k++) by[MEM_CLASSES[k]] = e.peakClass[d * NCLASS + k];
    memory.push({
      device: g.deviceName[d], capacity_bytes: g.deviceMemory[d], peak_bytes: e.peak[d], peak_time_us: e.peakTime[d],
      peak_by_class: by, peak_buffers: peakBuffers[d], end_bytes: e.cur[d], series: series[d],
    });
  }
}

/** Where a task runs, for reports: its resource, else the first link of its flow. */
export function resourceLabel(g: SimGraph, t: number): string {
  const r = g.tRes[t];
  if (r >= 0) return g.resName[r];
  if (g.tLinkCnt[t] > 0) return g.linkName[g.linkList.a[g.tLinkOff[t]]];
  return '(unqueued)';
}
