import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { buildMachine, parseHardwareProfile, SimGraph, simulate } from './index.ts';

const load = (f: string) => parseHardwareProfile(JSON.parse(readFileSync(new URL(`../configs/hardware/${f}`, import.meta.url), 'utf8')), f);
const close = (a: number, b: number, msg = '') => assert.ok(Math.abs(a - b) <= 1e-6 * Math.abs(b), `${msg} ${a} != ${b}`);

/** GB/s each of `gpus` gets when they all copy `bytes` host-to-device at once. */
function h2dRates(profile: string, gpus: number[], bytes = 1e10): number[] {
  const p = load(profile);
  const g = new SimGraph();
  const m = buildMachine(g, p);
  const ts = gpus.map((i) => g.task({ on: m.gpus[i].h2d, bytes, links: m.gpus[i].h2dRoute }));
  const r = simulate(g);
  const lat = p.links.h2d[0].latency_us ?? 0;
  return ts.map((t) => bytes / (r.end_us[t] - lat) / 1e3);
}

test('H200 x4: one GPU alone copies at 55.5 GB/s, all four share the 158 GB/s host link', () => {
  close(h2dRates('h200x4.json', [0])[0], 55.5);
  for (const r of h2dRates('h200x4.json', [0, 1, 2, 3])) close(r, 158 / 4);
});

test('H200 x2: two GPUs copy without contention', () => {
  for (const r of h2dRates('h200x2.json', [0, 1])) close(r, 54.5);
});

test('L20 x4: GPUs behind the same switch share it, GPUs behind different switches do not', () => {
  for (const r of h2dRates('l20x4.json', [0, 1])) close(r, 12.5, 'same switch');
  for (const r of h2dRates('l20x4.json', [0, 2])) close(r, 24, 'different switches');
});

test('H200 x2: copying both ways at once on one GPU is capped by the duplex figure', () => {
  const p = load('h200x2.json');
  const g = new SimGraph();
  const m = buildMachine(g, p);
  const gpu = m.gpus[0];
  const a = g.task({ on: gpu.h2d, bytes: 1e10, links: gpu.h2dRoute });
  const b = g.task({ on: gpu.d2h, bytes: 1e10, links: gpu.d2hRoute });
  const r = simulate(g);
  close(r.end_us[a] - 10, 1e10 / (49.5 * 1e3));
  close(r.end_us[b] - 10, 1e10 / (49.5 * 1e3));
});

test('peer routes: NVLink on H200, through the host across L20 switches', () => {
  const h = buildMachine(new SimGraph(), load('h200x8.json'));
  assert.equal(h.peerRoute(0, 7).length, 2);
  const g = new SimGraph();
  const l = buildMachine(g, load('l20x4.json'));
  assert.equal(l.peerRoute(0, 1).length, 2);
  assert.deepEqual(l.peerRoute(0, 2).map((x) => g.linkName[x]), ['gpu0/peer2.out', 'gpu2/peer2.in', 'host/pcie-switch0.d2h', 'host/pcie-switch1.h2d']);
  assert.throws(() => l.peerRoute(1, 1), /no route/);
});

test('the CPU pool of a machine follows the profile optimizer curve', () => {
  const p = load('h200x4.json');
  const g = new SimGraph();
  const m = buildMachine(g, p);
  const t = g.task({ on: m.cpu, elements: 6.2e9, workers: 64 });
  assert.equal(simulate(g).end_us[t], 1e6);
});

test('L20 x4: the host total binds when all four GPUs copy both ways at once', () => {
  const p = load('l20x4.json');
  const g = new SimGraph();
  const m = buildMachine(g, p);
  const ts = m.gpus.flatMap((x) => [g.task({ on: x.h2d, bytes: 1e10, links: x.h2dRoute }), g.task({ on: x.d2h, bytes: 1e10, links: x.d2hRoute })]);
  const r = simulate(g);
  // each switch's duplex cap (40) would give 10 per flow; the host duplex total (80) gives 10 too,
  // so tighten the total to see it bind
  for (const t of ts) close(r.end_us[t] - 10, 1e10 / (10 * 1e3));
  const q = structuredClone(p);
  q.links.host_total = { h2d_GBps: 50, d2h_GBps: 50, duplex_GBps: 40 };
  const g2 = new SimGraph();
  const m2 = buildMachine(g2, q);
  const t2 = m2.gpus.flatMap((x) => [g2.task({ on: x.h2d, bytes: 1e10, links: x.h2dRoute }), g2.task({ on: x.d2h, bytes: 1e10, links: x.d2hRoute })]);
  const r2 = simulate(g2);
  for (const t of t2) close(r2.end_us[t] - 10, 1e10 / (5 * 1e3));
});
