// SimGraph: the simulator's input, built by the caller (planner/lower), stored as struct-of-arrays
// so that `simulate` runs without allocating per task. Add devices, resources and links first,
// then tasks; dependencies may point forward or backward (a cycle is reported by `simulate`).
import { GrowF64, GrowI32 } from './grow.ts';
import { SimError } from './errors.ts';
import { MEM_CLASSES } from './types.ts';
import type {
  CpuPoolSpec, DeviceId, DeviceKind, DeviceSpec, DiskSpec, LinkId, LinkSpec, MemClass, MemEffect, ResourceId, ResourceKind,
  StreamRole, StreamSpec, TaskId, TaskMeta, TaskSpec,
} from './types.ts';

/** Task work kinds (internal). */
export const W_NONE = 0;
export const W_FLOW = 1;
export const W_CPU = 2;

export const R_STREAM = 0;
export const R_CPU = 1;
export const R_DISK = 2;

const ROLE_IDS: Record<StreamRole, number> = { compute: 0, copy: 1, comm: 2, other: 3 };
const CLASS_IDS = new Map<MemClass, number>(MEM_CLASSES.map((c, i) => [c, i]));

/** 1 GB/s = 1e9 bytes/s = 1e3 bytes/us. */
export const GBPS_TO_BYTES_PER_US = 1e3;

export class SimGraph {
  // ---- devices
  readonly deviceName: string[] = [];
  readonly deviceKind: DeviceKind[] = [];
  readonly deviceMemory: (number | null)[] = [];
  readonly deviceSlowdown: number[] = [];
  // ---- resources
  readonly resName: string[] = [];
  readonly resKind: number[] = [];
  readonly resDevice: number[] = [];
  readonly resRole: number[] = [];
  /** cpu: workers; disk: concurrency; stream: 1. */
  readonly resSlots: number[] = [];
  /** cpu: curve (workers ascending, elements/us). */
  readonly resCurveW: number[][] = [];
  readonly resCurveR: number[][] = [];
  /** cpu: slowdown while flows cross links with slowdown_under_cpu, in full from this many flows. */
  readonly resCpuSlowdown: number[] = [];
  readonly resCpuSlowdownCopies: number[] = [];
  /** disk: read link, write link. */
  readonly resReadLink: number[] = [];
  readonly resWriteLink: number[] = [];
  // ---- links
  readonly linkName: string[] = [];
  readonly linkDevice: number[] = [];
  /** bytes/us */
  readonly linkCap: number[] = [];
  readonly linkLatency: number[] = [];
  /** Host-memory links (their transfers draw on host DRAM): slowdown under CPU work (>= 0); else -1. */
  readonly linkCpuSlowdown: number[] = [];

  // ---- tasks (struct of arrays)
  private n = 0;
  private cap = 0;
  tRes = new Int32Array(0);
  tWork = new Uint8Array(0);
  /** Fixed phase: duration + latencies. */
  tFixed = new Float64Array(0);
  /** Bytes (flow) or elements (cpu). */
  tAmount = new Float64Array(0);
  /** Per-flow cap, bytes/us (Infinity: none). */
  tCap = new Float64Array(0);
  tWorkers = new Int32Array(0);
  tLinkOff = new Int32Array(0);
  tLinkCnt = new Int32Array(0);
  tMemOff = new Int32Array(0);
  tMemCnt = new Int32Array(0);
  tRank = new Int32Array(0);
  tPc = new Int32Array(0);
  tMb = new Int32Array(0);
  tStage = new Int32Array(0);
  tLayer = new Int32Array(0);
  tBytesMeta = new Float64Array(0);
  tFlops = new Float64Array(0);
  tOp = new Int32Array(0);
  tName: (string | undefined)[] = [];

  readonly opNames: string[] = [];
  private opIds = new Map<string, number>();

  readonly linkList = new GrowI32();
  readonly edgeFrom = new GrowI32();
  readonly edgeTo = new GrowI32();
  // memory effects: kind (0 alloc, 1 free), at (0 start, 1 end), buffer id, bytes, class
  readonly memKind = new GrowI32();
  readonly memAt = new GrowI32();
  readonly memBuf = new GrowI32();
  readonly memBytes = new GrowF64();
  readonly memClass = new GrowI32();
  readonly bufName: string[] = [];
  readonly bufDevice: number[] = [];
  /** Per device: buffer name -> buffer id. */
  private bufIds: Map<string, number>[] = [];

  private waits: { task: TaskId; name: string }[] = [];
  private signals = new Map<string, TaskId[]>();
  /** Bumped on every change; the engine caches its frozen form per version. */
  version = 0;

  get taskCount(): number { return this.n; }
  get deviceCount(): number { return this.deviceName.length; }
  get resourceCount(): number { return this.resName.length; }
  get linkCount(): number { return this.linkName.length; }

  device(name: string, spec: DeviceSpec): DeviceId {
    if (this.deviceName.includes(name)) throw new SimError(`device "${name}" is defined twice`);
    const s = spec.slowdown_under_copies ?? 0;
    if (!(s >= 0)) throw new SimError(`device "${name}": slowdown_under_copies must be zero or positive`);
    if (spec.memory_bytes !== undefined && !(spec.memory_bytes >= 0)) throw new SimError(`device "${name}": memory_bytes must be zero or positive`);
    this.deviceName.push(name);
    this.deviceKind.push(spec.kind);
    this.deviceMemory.push(spec.memory_bytes ?? null);
    this.deviceSlowdown.push(s);
    this.version++;
    return this.deviceName.length - 1;
  }

  private addRes(device: DeviceId, name: string, kind: number, slots: number): ResourceId {
    this.checkDevice(device, `resource "${name}"`);
    const full = `${this.deviceName[device]}/${name}`;
    if (this.resName.includes(full)) throw new SimError(`resource "${full}" is defined twice`);
    this.resName.push(full);
    this.resKind.push(kind);
    this.resDevice.push(device);
    this.resRole.push(0);
    this.resSlots.push(slots);
    this.resCurveW.push([]);
    this.resCurveR.push([]);
    this.resCpuSlowdown.push(0);
    this.resCpuSlowdownCopies.push(1);
    this.resReadLink.push(-1);
    this.resWriteLink.push(-1);
    this.version++;
    return this.resName.length - 1;
  }

  /** An in-order stream on `device` (one task at a time, in the order tasks were added). */
  stream(device: DeviceId, name: string, spec: StreamSpec = {}): ResourceId {
    const r = this.addRes(device, name, R_STREAM, 1);
    this.resRole[r] = ROLE_IDS[spec.role ?? 'compute'];
    return r;
  }

  /** A CPU worker pool on `device` with a measured throughput curve. */
  cpuPool(device: DeviceId, name: string, spec: CpuPoolSpec): ResourceId {
    if (!Number.isInteger(spec.workers) || spec.workers < 1) throw new SimError(`cpu pool "${name}": workers must be a positive integer`);
    if (spec.curve.length === 0) throw new SimError(`cpu pool "${name}": curve needs at least one point`);
    const pts = [...spec.curve].sort((a, b) => a.workers - b.workers);
    for (const p of pts) {
      if (!(p.workers > 0) || !(p.elements_per_s > 0)) throw new SimError(`cpu pool "${name}": curve points need positive workers and elements_per_s`);
    }
    const sl = spec.slowdown_under_copies ?? 0;
    if (!(sl >= 0)) throw new SimError(`cpu pool "${name}": slowdown_under_copies must be zero or positive`);
    const r = this.addRes(device, name, R_CPU, spec.workers);
    this.resCpuSlowdown[r] = sl;
    const sc = spec.slowdown_copies ?? 1;
    if (!(Number.isInteger(sc) && sc >= 1)) throw new SimError(`cpu pool "${name}": slowdown_copies must be a positive integer`);
    this.resCpuSlowdownCopies[r] = sc;
    this.resCurveW[r] = pts.map((p) => p.workers);
    this.resCurveR[r] = pts.map((p) => p.elements_per_s / 1e6);
    return r;
  }

  /** A disk path with read and write bandwidth and a concurrency limit. */
  disk(device: DeviceId, name: string, spec: DiskSpec): ResourceId {
    if (!Number.isInteger(spec.concurrency) || spec.concurrency < 1) throw new SimError(`disk "${name}": concurrency must be a positive integer`);
    const cs = spec.slowdown_under_cpu;
    const rl = this.link(device, `${name}.read`, { GBps: spec.read_GBps, latency_us: spec.latency_us ?? 0, slowdown_under_cpu: cs });
    const wl = this.link(device, `${name}.write`, { GBps: spec.write_GBps, latency_us: spec.latency_us ?? 0, slowdown_under_cpu: cs });
    const r = this.addRes(device, name, R_DISK, spec.concurrency);
    this.resReadLink[r] = rl;
    this.resWriteLink[r] = wl;
    return r;
  }

  /** A link owned by `device` (its trace process; flows on it count as copies on that device). */
  link(device: DeviceId, name: string, spec: LinkSpec): LinkId {
    this.checkDevice(device, `link "${name}"`);
    const full = `${this.deviceName[device]}/${name}`;
    if (!(spec.GBps > 0)) throw new SimError(`link "${full}": GBps must be positive`);
    const lat = spec.latency_us ?? 0;
    if (!(lat >= 0)) throw new SimError(`link "${full}": latency_us must be zero or positive`);
    const cs = spec.slowdown_under_cpu ?? -1;  // -1: not a host-memory link
    if (spec.slowdown_under_cpu !== undefined && !(cs >= 0)) throw new SimError(`link "${full}": slowdown_under_cpu must be zero or positive`);
    if (this.linkName.includes(full)) throw new SimError(`link "${full}" is defined twice`);
    this.linkName.push(full);
    this.linkCpuSlowdown.push(cs);
    this.linkDevice.push(device);
    this.linkCap.push(spec.GBps * GBPS_TO_BYTES_PER_US);
    this.linkLatency.push(lat);
    this.version++;
    return this.linkName.length - 1;
  }

  private checkDevice(d: number, what: string): void {
    if (!(d >= 0 && d < this.deviceName.length) || !Number.isInteger(d)) throw new SimError(`${what}: device ${d} does not exist`);
  }

  /** `tasks`: expected task count, to size the arrays once (they grow as needed anyway). */
  constructor(opts: { tasks?: number } = {}) {
    this.hint = Math.max(1024, opts.tasks ?? 0);
  }

  private hint: number;

  private grow(): void {
    const cap = Math.max(this.hint, this.cap * 2);
    const g = <T extends Int32Array | Float64Array | Uint8Array>(a: T, C: new (n: number) => T): T => { const b = new C(cap); b.set(a); return b; };
    this.tRes = g(this.tRes, Int32Array);
    this.tWork = g(this.tWork, Uint8Array);
    this.tFixed = g(this.tFixed, Float64Array);
    this.tAmount = g(this.tAmount, Float64Array);
    this.tCap = g(this.tCap, Float64Array);
    this.tWorkers = g(this.tWorkers, Int32Array);
    this.tLinkOff = g(this.tLinkOff, Int32Array);
    this.tLinkCnt = g(this.tLinkCnt, Int32Array);
    this.tMemOff = g(this.tMemOff, Int32Array);
    this.tMemCnt = g(this.tMemCnt, Int32Array);
    this.tRank = g(this.tRank, Int32Array);
    this.tPc = g(this.tPc, Int32Array);
    this.tMb = g(this.tMb, Int32Array);
    this.tStage = g(this.tStage, Int32Array);
    this.tLayer = g(this.tLayer, Int32Array);
    this.tBytesMeta = g(this.tBytesMeta, Float64Array);
    this.tFlops = g(this.tFlops, Float64Array);
    this.tOp = g(this.tOp, Int32Array);
    this.cap = cap;
  }

  private lastOp = '';
  private lastOpId = -1;
  private opId(op: string): number {
    if (op === this.lastOp) return this.lastOpId;
    let id = this.opIds.get(op);
    if (id === undefined) { id = this.opNames.length; this.opNames.push(op); this.opIds.set(op, id); }
    this.lastOp = op; this.lastOpId = id;
    return id;
  }

  private static label(spec: TaskSpec, t: number): string {
    return spec.name ?? spec.meta?.op ?? `task${t}`;
  }

  /** Adds a task; returns its id (dense, in order). */
  task(spec: TaskSpec): TaskId {
    const t = this.n;
    if (t === this.cap) this.grow();
    const on = spec.on ?? -1;
    if (on !== -1 && !(Number.isInteger(on) && on >= 0 && on < this.resName.length)) throw new SimError(`task ${t} "${SimGraph.label(spec, t)}": resource ${on} does not exist`);
    const kind = on === -1 ? -1 : this.resKind[on];
    let fixed = spec.duration_us ?? 0;
    if (!(fixed >= 0) || !Number.isFinite(fixed)) throw new SimError(`task ${t} "${SimGraph.label(spec, t)}": duration_us must be a finite number >= 0`);
    fixed += spec.latency_us ?? 0;
    let work = W_NONE;
    let amount = 0;
    const linkOff = this.linkList.n;
    let linkCnt = 0;
    const bytes = spec.bytes ?? 0;
    if (!(bytes >= 0)) throw new SimError(`task ${t} "${SimGraph.label(spec, t)}": bytes must be >= 0`);
    if (kind === R_DISK) {
      if (spec.dir !== 'read' && spec.dir !== 'write') throw new SimError(`task ${t} "${SimGraph.label(spec, t)}": a disk task needs dir 'read' or 'write'`);
      const l = spec.dir === 'read' ? this.resReadLink[on] : this.resWriteLink[on];
      this.linkList.push(l);
      linkCnt++;
      fixed += this.linkLatency[l];
    }
    if (spec.links) {
      for (const l of spec.links) {
        if (!(Number.isInteger(l) && l >= 0 && l < this.linkName.length)) throw new SimError(`task ${t} "${SimGraph.label(spec, t)}": link ${l} does not exist`);
        this.linkList.push(l);
        linkCnt++;
        fixed += this.linkLatency[l];
      }
    }
    if (bytes > 0) {
      if (linkCnt === 0) throw new SimError(`task ${t} "${SimGraph.label(spec, t)}": bytes need links (or a disk) to move over`);
      work = W_FLOW;
      amount = bytes;
    }
    let workers = 0;
    if (spec.elements !== undefined && spec.elements > 0) {
      if (kind !== R_CPU) throw new SimError(`task ${t} "${SimGraph.label(spec, t)}": elements need a cpu pool resource`);
      if (work !== W_NONE) throw new SimError(`task ${t} "${SimGraph.label(spec, t)}": a task is either a transfer or CPU work, not both`);
      work = W_CPU;
      amount = spec.elements;
    }
    if (kind === R_CPU) {
      workers = spec.workers ?? 1;
      if (!Number.isInteger(workers) || workers < 1 || workers > this.resSlots[on]) {
        throw new SimError(`task ${t} "${SimGraph.label(spec, t)}": workers must be an integer in 1..${this.resSlots[on]}`);
      }
    } else if (kind === R_DISK) {
      workers = 1;
    }
    const capBw = spec.cap_GBps === undefined ? Infinity : spec.cap_GBps * GBPS_TO_BYTES_PER_US;
    if (!(capBw > 0)) throw new SimError(`task ${t} "${SimGraph.label(spec, t)}": cap_GBps must be positive`);
    this.n++;
    this.tRes[t] = on;
    this.tWork[t] = work;
    this.tFixed[t] = fixed;
    this.tAmount[t] = amount;
    this.tCap[t] = capBw;
    this.tWorkers[t] = workers;
    this.tLinkOff[t] = linkOff;
    this.tLinkCnt[t] = linkCnt;
    const m: TaskMeta = spec.meta ?? {};
    this.tRank[t] = m.rank ?? -1;
    this.tPc[t] = m.pc ?? -1;
    this.tMb[t] = m.mb ?? -1;
    this.tStage[t] = m.stage ?? -1;
    this.tLayer[t] = m.layer ?? -1;
    this.tBytesMeta[t] = m.bytes ?? (bytes > 0 ? bytes : NaN);
    this.tFlops[t] = m.flops ?? NaN;
    this.tOp[t] = m.op === undefined ? -1 : this.opId(m.op);
    this.tName[t] = spec.name;
    if (spec.deps) for (const d of spec.deps) this.dep(d, t);
    this.tMemOff[t] = this.memKind.n;
    this.tMemCnt[t] = 0;
    if (spec.mem) {
      for (const e of spec.mem) this.memEffect(t, e.op, e.device, e.buffer, e.bytes ?? 0, e.class ?? 'buffers', e.at);
    }
    if (spec.waitFor) for (const w of spec.waitFor) this.waits.push({ task: t, name: w });
    if (spec.signal !== undefined) {
      for (const s of typeof spec.signal === 'string' ? [spec.signal] : spec.signal) {
        let l = this.signals.get(s);
        if (!l) { l = []; this.signals.set(s, l); }
        l.push(t);
      }
    }
    this.version++;
    return t;
  }

  /** The hot-path form of `task` for callers that build many graphs (planner/lower): the fields
   *  positional (no name, cap, latency, waitFor or signal; `dir` 0 none, 1 read, 2 write;
   *  `elements` 0 for none), the same checks; dependencies and memory effects are added right after
   *  with `dep` and `mem`. Without `meta` the task's metadata is empty. */
  add(on: number, duration_us: number, bytes: number, links: readonly number[] | undefined, dir: number, elements: number, workers: number, meta: TaskMeta | undefined): TaskId {
    const t = this.n;
    if (t === this.cap) this.grow();
    if (on !== -1 && !(Number.isInteger(on) && on >= 0 && on < this.resName.length)) throw new SimError(`task ${t} "${meta?.op ?? `task${t}`}": resource ${on} does not exist`);
    const kind = on === -1 ? -1 : this.resKind[on];
    let fixed = duration_us;
    if (!(fixed >= 0) || !Number.isFinite(fixed)) throw new SimError(`task ${t} "${meta?.op ?? `task${t}`}": duration_us must be a finite number >= 0`);
    let work = W_NONE;
    let amount = 0;
    const linkList = this.linkList;
    const linkOff = linkList.n;
    let linkCnt = 0;
    if (!(bytes >= 0)) throw new SimError(`task ${t} "${meta?.op ?? `task${t}`}": bytes must be >= 0`);
    if (kind === R_DISK) {
      if (dir !== 1 && dir !== 2) throw new SimError(`task ${t} "${meta?.op ?? `task${t}`}": a disk task needs dir 'read' or 'write'`);
      const l = dir === 1 ? this.resReadLink[on] : this.resWriteLink[on];
      linkList.push(l);
      linkCnt++;
      fixed += this.linkLatency[l];
    }
    if (links !== undefined) {
      const nL = this.linkName.length;
      for (let i = 0; i < links.length; i++) {
        const l = links[i]!;
        if (!(Number.isInteger(l) && l >= 0 && l < nL)) throw new SimError(`task ${t} "${meta?.op ?? `task${t}`}": link ${l} does not exist`);
        linkList.push(l);
        linkCnt++;
        fixed += this.linkLatency[l];
      }
    }
    if (bytes > 0) {
      if (linkCnt === 0) throw new SimError(`task ${t} "${meta?.op ?? `task${t}`}": bytes need links (or a disk) to move over`);
      work = W_FLOW;
      amount = bytes;
    }
    let w = 0;
    if (elements > 0) {
      if (kind !== R_CPU) throw new SimError(`task ${t} "${meta?.op ?? `task${t}`}": elements need a cpu pool resource`);
      if (work !== W_NONE) throw new SimError(`task ${t} "${meta?.op ?? `task${t}`}": a task is either a transfer or CPU work, not both`);
      work = W_CPU;
      amount = elements;
    }
    if (kind === R_CPU) {
      w = workers;
      if (!Number.isInteger(w) || w < 1 || w > this.resSlots[on]) throw new SimError(`task ${t} "${meta?.op ?? `task${t}`}": workers must be an integer in 1..${this.resSlots[on]}`);
    } else if (kind === R_DISK) {
      w = 1;
    }
    this.n++;
    this.tRes[t] = on;
    this.tWork[t] = work;
    this.tFixed[t] = fixed;
    this.tAmount[t] = amount;
    this.tCap[t] = Infinity;
    this.tWorkers[t] = w;
    this.tLinkOff[t] = linkOff;
    this.tLinkCnt[t] = linkCnt;
    if (meta !== undefined) {
      this.tRank[t] = meta.rank ?? -1;
      this.tPc[t] = meta.pc ?? -1;
      this.tMb[t] = meta.mb ?? -1;
      this.tStage[t] = meta.stage ?? -1;
      this.tLayer[t] = meta.layer ?? -1;
      this.tBytesMeta[t] = meta.bytes ?? (bytes > 0 ? bytes : NaN);
      this.tFlops[t] = meta.flops ?? NaN;
      this.tOp[t] = meta.op === undefined ? -1 : this.opId(meta.op);
    } else {
      this.tRank[t] = -1; this.tPc[t] = -1; this.tMb[t] = -1; this.tStage[t] = -1; this.tLayer[t] = -1;
      this.tBytesMeta[t] = bytes > 0 ? bytes : NaN;
      this.tFlops[t] = NaN;
      this.tOp[t] = -1;
    }
    this.tName[t] = undefined;
    this.tMemOff[t] = this.memKind.n;
    this.tMemCnt[t] = 0;
    this.version++;
    return t;
  }

  /** A memory effect of task `t`, the task last added (see `add`). */
  mem(t: TaskId, e: MemEffect): void {
    this.memEffect(t, e.op, e.device, e.buffer, e.bytes ?? 0, e.class ?? 'buffers', e.at);
  }

  /** Removes every task (with its dependencies, memory effects, buffers and named events), keeping
   *  the devices, resources and links: a caller that simulates many graphs on one machine builds
   *  the machine once and refills it. */
  clearTasks(): void {
    this.n = 0;
    // tName keeps its length (its entries below n are rewritten as tasks are added): shrinking it
    // would free and regrow its storage for every graph of a search.
    this.linkList.n = 0;
    this.edgeFrom.n = 0;
    this.edgeTo.n = 0;
    this.memKind.n = 0;
    this.memAt.n = 0;
    this.memBuf.n = 0;
    this.memBytes.n = 0;
    this.memClass.n = 0;
    this.bufName.length = 0;
    this.bufDevice.length = 0;
    this.bufIds = [];
    this.waits = [];
    this.signals.clear();
    this.version++;
  }

  /** `after` may start only once `before` has ended. */
  dep(before: TaskId, after: TaskId): void {
    this.edgeFrom.push(before);
    this.edgeTo.push(after);
    this.version++;
  }

  private memEffect(t: TaskId, op: 'alloc' | 'free', device: DeviceId, buffer: string, bytes: number, cls: MemClass, at?: 'start' | 'end'): void {
    if (this.tMemOff[t] + this.tMemCnt[t] !== this.memKind.n) {
      throw new SimError(`task ${t}: memory effects must be given with the task`);
    }
    if (!(Number.isInteger(device) && device >= 0 && device < this.deviceName.length)) {
      throw new SimError(`task ${t} "${this.taskName(t)}" memory effect on "${buffer}": device ${device} does not exist`);
    }
    if (op !== 'alloc' && op !== 'free') throw new SimError(`task ${t} "${this.taskName(t)}": memory effect op must be 'alloc' or 'free'`);
    const c = CLASS_IDS.get(cls);
    if (c === undefined) throw new SimError(`task ${t} "${this.taskName(t)}": unknown memory class "${cls}" (${MEM_CLASSES.join(', ')})`);
    if (op === 'alloc' && !(bytes >= 0 && Number.isFinite(bytes))) throw new SimError(`task ${t} "${this.taskName(t)}": alloc of "${buffer}" needs bytes >= 0`);
    while (this.bufIds.length <= device) this.bufIds.push(new Map());
    const ids = this.bufIds[device];
    let b = ids.get(buffer);
    if (b === undefined) { b = this.bufName.length; this.bufName.push(buffer); this.bufDevice.push(device); ids.set(buffer, b); }
    this.memKind.push(op === 'alloc' ? 0 : 1);
    this.memAt.push((at ?? (op === 'alloc' ? 'start' : 'end')) === 'start' ? 0 : 1);
    this.memBuf.push(b);
    this.memBytes.push(bytes);
    this.memClass.push(c);
    this.tMemCnt[t]++;
  }

  /** Name of a task for messages: its name, else op@rank/pc, else task<i>. */
  taskName(t: TaskId): string {
    const n = this.tName[t];
    if (n !== undefined) return n;
    const op = this.tOp[t] >= 0 ? this.opNames[this.tOp[t]] : `task${t}`;
    const parts: string[] = [];
    if (this.tRank[t] >= 0) parts.push(`rank ${this.tRank[t]}`);
    if (this.tPc[t] >= 0) parts.push(`pc ${this.tPc[t]}`);
    if (this.tMb[t] >= 0) parts.push(`mb ${this.tMb[t]}`);
    if (this.tStage[t] >= 0) parts.push(`stage ${this.tStage[t]}`);
    if (this.tLayer[t] >= 0) parts.push(`layer ${this.tLayer[t]}`);
    return parts.length ? `${op} (${parts.join(', ')})` : op;
  }

  /** Meta of a task as an object (for results and traces). */
  meta(t: TaskId): TaskMeta {
    const m: TaskMeta = {};
    if (this.tRank[t] >= 0) m.rank = this.tRank[t];
    if (this.tPc[t] >= 0) m.pc = this.tPc[t];
    if (this.tMb[t] >= 0) m.mb = this.tMb[t];
    if (this.tStage[t] >= 0) m.stage = this.tStage[t];
    if (this.tLayer[t] >= 0) m.layer = this.tLayer[t];
    if (this.tOp[t] >= 0) m.op = this.opNames[this.tOp[t]];
    if (!Number.isNaN(this.tBytesMeta[t])) m.bytes = this.tBytesMeta[t];
    if (!Number.isNaN(this.tFlops[t])) m.flops = this.tFlops[t];
    return m;
  }

  /** Resolves waitFor/signal into dependencies. Throws SimError for a name nobody signals. */
  resolveSignals(): void {
    if (this.waits.length === 0) return;
    const unmatched: string[] = [];
    for (const w of this.waits) {
      const s = this.signals.get(w.name);
      if (!s) { unmatched.push(`task ${w.task} "${this.taskName(w.task)}" waits for "${w.name}"`); continue; }
      for (const from of s) { this.edgeFrom.push(from); this.edgeTo.push(w.task); }
    }
    if (unmatched.length) {
      throw new SimError(`unmatched: nothing signals what ${unmatched.length} task(s) wait for: ${unmatched.slice(0, 10).join('; ')}${unmatched.length > 10 ? '; ...' : ''}`);
    }
    this.waits = [];
    this.version++;
  }

  /** Kind of a resource as a public name. */
  resourceKind(r: ResourceId): ResourceKind {
    return this.resKind[r] === R_STREAM ? 'stream' : this.resKind[r] === R_CPU ? 'cpu' : 'disk';
  }
}
