// Instantiates a hardware profile's resources in a SimGraph: per GPU a device (memory pool) with
// compute, host-to-device, device-to-host and communication streams and its copy links; the host
// (memory pool, CPU optimizer pool, the shared host-link groups); disks. Routes are link lists to
// pass as a transfer task's `links`.
import type { SimGraph } from './graph.ts';
import type { HardwareProfile } from './profile.ts';
import type { DeviceId, LinkId, ResourceId } from './types.ts';

export interface MachineGpu {
  index: number;
  device: DeviceId;
  /** Compute stream. */
  compute: ResourceId;
  /** Copy streams (in-order queues); transfers on them use the routes below. */
  h2d: ResourceId;
  d2h: ResourceId;
  /** Point-to-point / collective stream. */
  comm: ResourceId;
  /** Host -> this GPU: own copy engine, duplex cap, host group (and its duplex cap), host total. */
  h2dRoute: LinkId[];
  /** This GPU -> host. */
  d2hRoute: LinkId[];
}

export interface Machine {
  host: DeviceId;
  gpus: MachineGpu[];
  /** CPU worker pool whose curve is the profile's optimizer curve (elements = parameters). */
  cpu: ResourceId;
  /** Disk device (one trace process for all disk paths) and one resource per profile disk. */
  diskDevice: DeviceId;
  disks: ResourceId[];
  /** Route of a GPU-to-GPU transfer (throws for a == b). */
  peerRoute(a: number, b: number): LinkId[];
}

export interface MachineOptions {
  /** GPUs to instantiate (default all of the profile's). */
  gpus?: number;
  /** Which optimizer curve drives the CPU pool (default the first). */
  optimizer?: string;
  /** CPU workers (default cpu.threads or cpu.cores). */
  cpuWorkers?: number;
  /** Per-GPU memory cap in bytes (default the profile's GPU memory). */
  gpuMemoryBytes?: number;
  /** Apply compute_slowdown_under_copies (default true). */
  slowdown?: boolean;
}

export function buildMachine(g: SimGraph, p: HardwareProfile, opts: MachineOptions = {}): Machine {
  const n = opts.gpus ?? p.gpus.count;
  if (!(Number.isInteger(n) && n >= 1 && n <= p.gpus.count)) {
    throw new RangeError(`buildMachine: ${n} GPUs requested; profile ${p.id} has ${p.gpus.count}`);
  }
  const isCpu = p.gpus.kind === 'cpu';
  const host = g.device('host', { kind: 'host', memory_bytes: p.cpu.memory_bytes });
  const slow = opts.slowdown === false ? 0 : p.compute_slowdown_under_copies;
  // every link of a host-GPU route: its DMA shares host DRAM with a CPU update
  const cpuSlow = opts.slowdown === false ? 0 : p.copy_slowdown_under_cpu_update ?? 0;

  // host groups: one h2d and one d2h link each (+ duplex)
  const groupOf = new Map<number, { h2d: LinkId; d2h: LinkId; duplex: LinkId | -1 }>();
  for (const hg of p.links.host_groups) {
    const members = hg.gpus.filter((x) => x < n);
    if (members.length === 0) continue;
    const h2d = g.link(host, `${hg.name}.h2d`, { GBps: hg.h2d_GBps, slowdown_under_cpu: cpuSlow });
    const d2h = g.link(host, `${hg.name}.d2h`, { GBps: hg.d2h_GBps, slowdown_under_cpu: cpuSlow });
    const duplex = hg.duplex_GBps !== undefined ? g.link(host, `${hg.name}.duplex`, { GBps: hg.duplex_GBps, slowdown_under_cpu: cpuSlow }) : -1;
    for (const x of members) groupOf.set(x, { h2d, d2h, duplex });
  }

  const total = p.links.host_total;
  const totalLinks = total ? {
    h2d: g.link(host, 'host-total.h2d', { GBps: total.h2d_GBps, slowdown_under_cpu: cpuSlow }),
    d2h: g.link(host, 'host-total.d2h', { GBps: total.d2h_GBps, slowdown_under_cpu: cpuSlow }),
    duplex: total.duplex_GBps !== undefined ? g.link(host, 'host-total.duplex', { GBps: total.duplex_GBps, slowdown_under_cpu: cpuSlow }) : -1,
  } : null;

  const gpus: MachineGpu[] = [];
  for (let i = 0; i < n; i++) {
    const name = isCpu ? `cpu-rank${i}` : `gpu${i}`;
    const device = g.device(name, { kind: isCpu ? 'cpu' : 'gpu', memory_bytes: opts.gpuMemoryBytes ?? p.gpus.memory_bytes, slowdown_under_copies: slow });
    const compute = g.stream(device, 'compute', { role: 'compute' });
    const h2d = g.stream(device, 'h2d', { role: 'copy' });
    const d2h = g.stream(device, 'd2h', { role: 'copy' });
    const comm = g.stream(device, 'comm', { role: 'comm' });
    const hl = p.links.h2d.find((x) => x.gpu === i)!;
    const dl = p.links.d2h.find((x) => x.gpu === i)!;
    const h2dLink = g.link(device, 'h2d-engine', { GBps: hl.GBps, latency_us: hl.latency_us ?? 0, slowdown_under_cpu: cpuSlow });
    const d2hLink = g.link(device, 'd2h-engine', { GBps: dl.GBps, latency_us: dl.latency_us ?? 0, slowdown_under_cpu: cpuSlow });
    const h2dRoute = [h2dLink];
    const d2hRoute = [d2hLink];
    const dx = p.links.duplex?.find((x) => x.gpu === i);
    if (dx) {
      const l = g.link(device, 'duplex', { GBps: dx.GBps, slowdown_under_cpu: cpuSlow });
      h2dRoute.push(l);
      d2hRoute.push(l);
    }
    const grp = groupOf.get(i);
    if (grp) {
      h2dRoute.push(grp.h2d);
      d2hRoute.push(grp.d2h);
      if (grp.duplex !== -1) { h2dRoute.push(grp.duplex); d2hRoute.push(grp.duplex); }
    }
    if (totalLinks) {
      h2dRoute.push(totalLinks.h2d);
      d2hRoute.push(totalLinks.d2h);
      if (totalLinks.duplex !== -1) { h2dRoute.push(totalLinks.duplex); d2hRoute.push(totalLinks.duplex); }
    }
    gpus.push({ index: i, device, compute, h2d, d2h, comm, h2dRoute, d2hRoute });
  }

  // peer links: per entry, per member GPU an egress and an ingress link (created on first use)
  const peerLinks = new Map<string, LinkId>();
  const peerLink = (entry: number, gpu: number, dir: 'out' | 'in'): LinkId => {
    const key = `${entry}:${gpu}:${dir}`;
    let l = peerLinks.get(key);
    if (l === undefined) {
      const e = p.links.peer[entry];
      l = g.link(gpus[gpu].device, `peer${entry}.${dir}`, { GBps: e.GBps, latency_us: dir === 'out' ? e.latency_us : 0 });
      peerLinks.set(key, l);
    }
    return l;
  };
  const routes: (LinkId[] | undefined)[] = new Array(n * n).fill(undefined); // by a * n + b
  const peerRoute = (a: number, b: number): LinkId[] => {
    if (a === b || !(a >= 0 && a < n && b >= 0 && b < n)) throw new RangeError(`peerRoute: no route from GPU ${a} to GPU ${b}`);
    return routes[a * n + b] ?? newRoute(a, b);
  };
  // A pair's first route: apart from peerRoute, which the lowering calls for every transfer (the
  // closures below would make every call of it allocate).
  const newRoute = (a: number, b: number): LinkId[] => {
    let r: LinkId[];
    const entry = p.links.peer.findIndex((e) => e.gpus.includes(a) && e.gpus.includes(b));
    if (entry === -1) {
      // no peer link: staged through host memory
      r = [...gpus[a].d2hRoute, ...gpus[b].h2dRoute];
    } else {
      r = [peerLink(entry, a, 'out'), peerLink(entry, b, 'in')];
      if (p.links.peer[entry].via_host) {
        const ga = groupOf.get(a);
        const gb = groupOf.get(b);
        if (ga && gb && ga !== gb) r.push(ga.d2h, gb.h2d);
      }
    }
    routes[a * n + b] = r;
    return r;
  };

  const opt = opts.optimizer === undefined ? p.cpu.optimizers[0] : p.cpu.optimizers.find((o) => o.name === opts.optimizer);
  if (!opt) throw new RangeError(`buildMachine: profile ${p.id} has no CPU optimizer curve "${opts.optimizer}"`);
  const workers = opts.cpuWorkers ?? p.cpu.threads ?? p.cpu.cores;
  const cpu = g.cpuPool(host, 'cpu-pool', {
    workers,
    curve: opt.points.map((x) => ({ workers: x.threads, elements_per_s: x.params_per_s })),
    slowdown_under_copies: opts.slowdown === false ? 0 : p.cpu_update_slowdown_under_copies ?? 0,
    slowdown_copies: Math.max(1, p.gpus.count),  // calibrate times it with every GPU copying at once
  });

  const diskDevice = g.device('disk', { kind: 'disk', memory_bytes: p.disks.reduce((s, d) => s + (d.capacity_bytes ?? 0), 0) || undefined });
  const disks = p.disks.map((d, i) => g.disk(diskDevice, `path${i}`, {
    read_GBps: d.read_GBps, write_GBps: d.write_GBps, concurrency: d.concurrency, latency_us: d.latency_us ?? 0,
    slowdown_under_cpu: opts.slowdown === false ? 0 : p.disk_slowdown_under_cpu_update ?? 0,
  }));

  return { host, gpus, cpu, diskDevice, disks, peerRoute };
}
