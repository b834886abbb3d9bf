import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { SimGraph, simulate } from './index.ts';

const close = (a: number, b: number, msg?: string) => assert.ok(Math.abs(a - b) <= 1e-6 * Math.max(1, Math.abs(b)), `${msg ?? ''} ${a} != ${b}`);

function oneLink(GBps: number, latency_us = 0) {
  const g = new SimGraph();
  const h = g.device('host', { kind: 'host' });
  const l = g.link(h, 'bridge', { GBps, latency_us });
  return { g, h, l };
}

test('two transfers on a shared link take twice as long as one', () => {
  const a = oneLink(10);
  a.g.task({ bytes: 1e6, links: [a.l] });
  assert.equal(simulate(a.g).makespan_us, 100);
  const b = oneLink(10);
  const x = b.g.task({ bytes: 1e6, links: [b.l] });
  const y = b.g.task({ bytes: 1e6, links: [b.l] });
  const r = simulate(b.g);
  assert.equal(r.end_us[x], 200);
  assert.equal(r.end_us[y], 200);
});

test('max-min fairness with a per-flow cap on a hand-solved case', () => {
  // L1 = 10 GB/s carries A, B, D (D capped at 1); L2 = 6 GB/s carries B, C.
  // D = 1; L2 is the bottleneck for B and C: 3 each; A gets the rest of L1: 10 - 1 - 3 = 6.
  const g = new SimGraph();
  const h = g.device('host', { kind: 'host' });
  const L1 = g.link(h, 'L1', { GBps: 10 });
  const L2 = g.link(h, 'L2', { GBps: 6 });
  const T = 10; // us: with the right rates every flow ends at T
  const A = g.task({ bytes: 6e3 * T, links: [L1] });
  const B = g.task({ bytes: 3e3 * T, links: [L1, L2] });
  const C = g.task({ bytes: 3e3 * T, links: [L2] });
  const D = g.task({ bytes: 1e3 * T, links: [L1], cap_GBps: 1 });
  const r = simulate(g);
  for (const t of [A, B, C, D]) close(r.end_us[t], T, `task ${t}`);
  const l1 = r.resources.find((x) => x.name === 'host/L1')!;
  close(l1.bandwidth_utilisation!, 1);
});

test('a flow that ends early releases its share to the others', () => {
  const { g, l } = oneLink(10);
  const a = g.task({ bytes: 1e5, links: [l] });
  const b = g.task({ bytes: 5e5, links: [l] });
  const r = simulate(g);
  assert.equal(r.end_us[a], 20); // 5 GB/s each
  close(r.end_us[b], 60); // 1e5 moved by 20 us, 4e5 left at 10 GB/s
});

test('link latency comes before the bytes and adds up over a route', () => {
  const g = new SimGraph();
  const h = g.device('host', { kind: 'host' });
  const a = g.link(h, 'a', { GBps: 10, latency_us: 3 });
  const b = g.link(h, 'b', { GBps: 5, latency_us: 2 });
  const t = g.task({ bytes: 5e4, links: [a, b] });
  assert.equal(simulate(g).end_us[t], 5 + 10);
});

test('four GPUs copying from the host behind one bridge get the bridge share, one alone its engine cap', () => {
  for (const n of [1, 4]) {
    const g = new SimGraph();
    const h = g.device('host', { kind: 'host' });
    const bridge = g.link(h, 'bridge', { GBps: 158 });
    const ts: number[] = [];
    for (let i = 0; i < n; i++) {
      const d = g.device(`gpu${i}`, { kind: 'gpu' });
      const eng = g.link(d, 'h2d', { GBps: 55 });
      const s = g.stream(d, 'h2d', { role: 'copy' });
      ts.push(g.task({ on: s, bytes: 1e9, links: [eng, bridge] }));
    }
    const r = simulate(g);
    const rate_GBps = 1e9 / r.end_us[ts[0]] / 1e3;
    close(rate_GBps, n === 1 ? 55 : 158 / 4);
  }
});

test('a disk runs at most `concurrency` transfers at once, sharing its bandwidth', () => {
  const g = new SimGraph();
  const dd = g.device('disk', { kind: 'disk' });
  const disk = g.disk(dd, 'nvme0', { read_GBps: 1, write_GBps: 0.5, concurrency: 2 });
  const a = g.task({ on: disk, dir: 'read', bytes: 1e6 });
  const b = g.task({ on: disk, dir: 'read', bytes: 1e6 });
  const c = g.task({ on: disk, dir: 'read', bytes: 1e6 });
  const w = g.task({ on: disk, dir: 'write', bytes: 5e5, deps: [c] });
  const r = simulate(g);
  assert.equal(r.end_us[a], 2000);
  assert.equal(r.end_us[b], 2000);
  assert.equal(r.start_us[c], 2000);
  assert.equal(r.end_us[c], 3000);
  assert.equal(r.end_us[w], 4000);
  assert.equal(r.resources.find((x) => x.name === 'disk/nvme0')!.bytes, 3.5e6);
});

test('the CPU pool follows its throughput curve, not a linear one', () => {
  const mk = () => {
    const g = new SimGraph();
    const h = g.device('host', { kind: 'host' });
    const p = g.cpuPool(h, 'cpu', { workers: 4, curve: [{ workers: 1, elements_per_s: 1e6 }, { workers: 4, elements_per_s: 2e6 }] });
    return { g, p };
  };
  const one = mk();
  const t1 = one.g.task({ on: one.p, elements: 1000 });
  assert.equal(simulate(one.g).end_us[t1], 1000);
  const two = mk();
  const a = two.g.task({ on: two.p, elements: 1000 });
  const b = two.g.task({ on: two.p, elements: 1000 });
  const r2 = simulate(two.g);
  // 2 busy workers: 1e6 + (2e6 - 1e6) / 3 = 4/3 e6 /s in all, 2/3 e6 each -> 1500 us
  close(r2.end_us[a], 1500);
  close(r2.end_us[b], 1500);
  const four = mk();
  const w = four.g.task({ on: four.p, elements: 1000, workers: 4 });
  const x = four.g.task({ on: four.p, elements: 1000 });
  const r4 = simulate(four.g);
  close(r4.end_us[w], 500);
  assert.equal(r4.start_us[x], 500, 'waits for a free worker');
  close(r4.end_us[x], 1500);
});

test('compute slows down by the device factor while a copy runs on the same device, and only then', () => {
  const g = new SimGraph();
  const d = g.device('gpu0', { kind: 'gpu', slowdown_under_copies: 0.5 });
  const other = g.device('gpu1', { kind: 'gpu', slowdown_under_copies: 0.5 });
  const c = g.stream(d, 'compute');
  const c1 = g.stream(other, 'compute');
  const cp = g.stream(d, 'h2d', { role: 'copy' });
  const l = g.link(d, 'h2d', { GBps: 1 });
  const k = g.task({ on: c, duration_us: 100 });
  const k1 = g.task({ on: c1, duration_us: 100 });
  const x = g.task({ on: cp, bytes: 2e4, links: [l] }); // 20 us
  const r = simulate(g);
  assert.equal(r.end_us[x], 20);
  close(r.end_us[k], 20 + (100 - 20 / 1.5));
  assert.equal(r.end_us[k1], 100);
});

/** Reference fluid model written independently: flows start after `delay`, rates recomputed by
 *  textbook water-filling at every start and end. */
function reference(caps: number[], flows: { links: number[]; bytes: number; delay: number; cap: number }[]): number[] {
  const n = flows.length;
  const rem = flows.map((f) => f.bytes);
  const end = new Array<number>(n).fill(NaN);
  let now = 0;
  for (;;) {
    const active = flows.map((f, i) => i).filter((i) => Number.isNaN(end[i]) && flows[i].delay <= now + 1e-12);
    const pending = flows.map((f, i) => i).filter((i) => Number.isNaN(end[i]) && flows[i].delay > now + 1e-12);
    if (active.length === 0 && pending.length === 0) return end;
    const rate = new Map<number, number>();
    const res = caps.slice();
    let unf = active.slice();
    while (unf.length) {
      let best = Infinity;
      for (let l = 0; l < caps.length; l++) {
        const users = unf.filter((i) => flows[i].links.includes(l)).length;
        if (users) best = Math.min(best, res[l] / users);
      }
      const capMin = Math.min(...unf.map((i) => flows[i].cap));
      const x = Math.min(best, capMin);
      const freeze = capMin <= best
        ? unf.filter((i) => flows[i].cap <= x)
        : unf.filter((i) => flows[i].links.some((l) => { const u = unf.filter((j) => flows[j].links.includes(l)).length; return u > 0 && res[l] / u <= x * (1 + 1e-12); }));
      for (const i of freeze) { rate.set(i, x); for (const l of flows[i].links) res[l] -= x; }
      unf = unf.filter((i) => !freeze.includes(i));
    }
    let dt = Infinity;
    for (const i of active) dt = Math.min(dt, rem[i] / rate.get(i)!);
    for (const i of pending) dt = Math.min(dt, flows[i].delay - now);
    for (const i of active) {
      rem[i] -= rate.get(i)! * dt;
      if (rem[i] <= 1e-9 * flows[i].bytes) end[i] = now + dt;
    }
    now += dt;
  }
}

test('progressive filling matches an independent fluid model on random flows (property)', () => {
  const arb = fc.record({
    caps: fc.array(fc.integer({ min: 1, max: 20 }), { minLength: 1, maxLength: 4 }),
    flows: fc.array(fc.record({
      mask: fc.integer({ min: 1, max: 15 }),
      bytes: fc.integer({ min: 1, max: 100 }),
      delay: fc.integer({ min: 0, max: 30 }),
      cap: fc.option(fc.integer({ min: 1, max: 15 }), { nil: undefined }),
    }), { minLength: 1, maxLength: 8 }),
  });
  fc.assert(fc.property(arb, ({ caps, flows }) => {
    const g = new SimGraph();
    const h = g.device('host', { kind: 'host' });
    const links = caps.map((c, i) => g.link(h, `l${i}`, { GBps: c }));
    const spec = flows.map((f) => {
      let ls = caps.map((_, i) => i).filter((i) => f.mask & (1 << i));
      if (ls.length === 0) ls = [f.mask % caps.length];
      return { links: ls, bytes: f.bytes * 1e3, delay: f.delay, cap: f.cap === undefined ? Infinity : f.cap * 1e3 };
    });
    const ts = spec.map((f) => g.task({ duration_us: f.delay, bytes: f.bytes, links: f.links.map((i) => links[i]), cap_GBps: f.cap === Infinity ? undefined : f.cap / 1e3 }));
    const r = simulate(g);
    const ref = reference(caps.map((c) => c * 1e3), spec);
    ts.forEach((t, i) => close(r.end_us[t], ref[i], `flow ${i}`));
  }), { numRuns: 200 });
});

test('a link used by one in-order stream only acts as a cap: same times as the unqueued flows (property)', () => {
  const arb = fc.record({
    caps: fc.array(fc.integer({ min: 1, max: 20 }), { minLength: 2, maxLength: 5 }),
    flows: fc.array(fc.record({ mask: fc.integer({ min: 1, max: 31 }), bytes: fc.integer({ min: 1, max: 100 }), delay: fc.integer({ min: 0, max: 30 }) }), { minLength: 1, maxLength: 6 }),
  });
  fc.assert(fc.property(arb, ({ caps, flows }) => {
    const build = (queued: boolean) => {
      const g = new SimGraph();
      const h = g.device('host', { kind: 'host' });
      const links = caps.map((c, i) => g.link(h, `l${i}`, { GBps: c }));
      const ts = flows.map((f, i) => {
        const own = g.link(h, `engine${i}`, { GBps: 7 });
        let ls = caps.map((_, j) => j).filter((j) => f.mask & (1 << j));
        if (ls.length === 0) ls = [0];
        const on = queued ? g.stream(h, `s${i}`, { role: 'copy' }) : undefined;
        return g.task({ on, duration_us: f.delay, bytes: f.bytes * 1e3, links: [own, ...ls.map((j) => links[j])] });
      });
      const r = simulate(g);
      return ts.map((t) => r.end_us[t]);
    };
    const a = build(true);
    const b = build(false);
    a.forEach((x, i) => close(x, b[i], `flow ${i}`));
  }), { numRuns: 150 });
});

test('host DRAM shared: a copy slows while a CPU update runs and the update slows while the copy runs, each by its own factor', () => {
  const mk = (copySlow: number, cpuSlow: number) => {
    const g = new SimGraph();
    const h = g.device('host', { kind: 'host' });
    const l = g.link(h, 'h2d', { GBps: 10, slowdown_under_cpu: copySlow });
    const other = g.link(h, 'peer', { GBps: 10 });
    const p = g.cpuPool(h, 'cpu', { workers: 1, curve: [{ workers: 1, elements_per_s: 1e6 }], slowdown_under_copies: cpuSlow });
    return { g, l, other, p };
  };
  // alone: 1e6 bytes at 10 GB/s = 100 us; 100 elements at 1e6/s = 100 us
  const a = mk(1, 0);
  const c = a.g.task({ bytes: 1e6, links: [a.l] });
  const u = a.g.task({ on: a.p, elements: 50 }); // 50 us of update at the start
  const ra = simulate(a.g);
  close(ra.end_us[u], 50, 'the update, not slowed (factor 0)');
  // 50 us at 5 GB/s (2.5e5 bytes), then 7.5e5 bytes at 10 GB/s
  close(ra.end_us[c], 50 + 75, 'the copy, half speed while the update ran');
  // the reverse factor: the update runs at 1 / (1 + 0.5) while the copy moves
  const b = mk(0, 0.5);
  const c2 = b.g.task({ bytes: 5e5, links: [b.l] }); // 50 us
  const u2 = b.g.task({ on: b.p, elements: 100 });
  const rb = simulate(b.g);
  close(rb.end_us[c2], 50);
  // 50 us at 2/3 e6/s = 33.3 elements, the remaining 66.7 at 1e6/s
  close(rb.end_us[u2], 50 + (100 - 50 / 1.5));
  // a flow on a link without the factor is not slowed, nor does it slow the update
  const d = mk(1, 1);
  const c3 = d.g.task({ bytes: 1e6, links: [d.other] });
  const u3 = d.g.task({ on: d.p, elements: 100 });
  const rd = simulate(d.g);
  close(rd.end_us[c3], 100);
  close(rd.end_us[u3], 100);
  assert.throws(() => mk(-1, 0), /slowdown_under_cpu must be zero or positive/);
  assert.throws(() => mk(0, -1), /slowdown_under_copies must be zero or positive/);
});

test('a disk with slowdown_under_cpu moves its transfers that much slower while a CPU update runs', () => {
  const g = new SimGraph();
  const h = g.device('host', { kind: 'host' });
  const dd = g.device('disk', { kind: 'disk' });
  const disk = g.disk(dd, 'nvme0', { read_GBps: 1, write_GBps: 1, concurrency: 1, slowdown_under_cpu: 1 });
  const p = g.cpuPool(h, 'cpu', { workers: 1, curve: [{ workers: 1, elements_per_s: 1e6 }] });
  const rd = g.task({ on: disk, dir: 'read', bytes: 1e6 }); // 1000 us alone
  const u = g.task({ on: p, elements: 500 }); // 500 us
  const r = simulate(g);
  close(r.end_us[u], 500);
  // 500 us at 0.5 GB/s (2.5e5 bytes), then 7.5e5 at 1 GB/s
  close(r.end_us[rd], 500 + 750);
});

test('host DRAM shared, in proportion: half the CPU workers busy slow a copy by half the factor, one of two copies slows the update by half', () => {
  const g = new SimGraph();
  const h = g.device('host', { kind: 'host' });
  const a = g.link(h, 'h2d0', { GBps: 10, slowdown_under_cpu: 1 });
  const b = g.link(h, 'h2d1', { GBps: 10, slowdown_under_cpu: 1 });
  const p = g.cpuPool(h, 'cpu', { workers: 2, curve: [{ workers: 1, elements_per_s: 1e6 }, { workers: 2, elements_per_s: 2e6 }], slowdown_under_copies: 1, slowdown_copies: 2 });
  const c = g.task({ bytes: 1e6, links: [a] }); // 100 us alone
  const u = g.task({ on: p, elements: 100 }); // 1 of 2 workers: 100 us alone
  const r = simulate(g);
  // while both run: the copy at 10 / (1 + 1 x 1/2) GB/s, the update at 1e6 / (1 + 1 x 1/2) a s
  // (one copy of the two that bring the full factor): both 150 us
  close(r.end_us[c], 150);
  close(r.end_us[u], 150);
  const g2 = new SimGraph();
  const h2 = g2.device('host', { kind: 'host' });
  const l0 = g2.link(h2, 'h2d0', { GBps: 10, slowdown_under_cpu: 0 });
  const l1 = g2.link(h2, 'h2d1', { GBps: 10, slowdown_under_cpu: 0 });
  const p2 = g2.cpuPool(h2, 'cpu', { workers: 1, curve: [{ workers: 1, elements_per_s: 1e6 }], slowdown_under_copies: 1, slowdown_copies: 2 });
  g2.task({ bytes: 2e6, links: [l0] });
  g2.task({ bytes: 2e6, links: [l1] });
  const u2 = g2.task({ on: p2, elements: 100 });
  close(simulate(g2).end_us[u2], 200, 'two copies: the full factor');
  void b;
});
