// The example of sim/README.md, run as written (keep the two in step).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { SimGraph, buildMachine, parseHardwareProfile, simulate, chromeTraceJSON, gemmTime_us } from './index.ts';

test('the README example runs and reports what it says', () => {
  const json = JSON.parse(readFileSync(new URL('../configs/hardware/h200x4.json', import.meta.url), 'utf8'));
  const profile = parseHardwareProfile(json, 'configs/hardware/h200x4.json');
  const g = new SimGraph();
  const m = buildMachine(g, profile, { gpus: 2 });
  const [g0, g1] = m.gpus;
  const fwd_us = gemmTime_us(profile, 0, 'bf16', 4096, 5120, 5120).us;
  const fetch = g.task({ on: g0.h2d, bytes: 634e6, links: g0.h2dRoute,
    mem: [{ op: 'alloc', device: g0.device, buffer: 'w1', bytes: 634e6, class: 'weights' }],
    meta: { rank: 0, pc: 0, op: 'fetch_params', layer: 1 } });
  const f0 = g.task({ on: g0.compute, duration_us: fwd_us, deps: [fetch], meta: { rank: 0, pc: 1, op: 'forward', mb: 0, stage: 0 } });
  g.task({ on: g0.comm, bytes: 42e6, links: m.peerRoute(0, 1), deps: [f0], signal: 'act 0 0', meta: { rank: 0, pc: 2, op: 'send_act', mb: 0, stage: 0 } });
  const f1 = g.task({ on: g1.compute, duration_us: fwd_us, waitFor: ['act 0 0'], meta: { rank: 1, pc: 1, op: 'forward', mb: 0, stage: 1 } });
  const r = simulate(g, { tokens: 4096 });
  assert.equal(r.critical?.bound, 'gpu0/h2d');
  assert.equal(r.memory.find((x) => x.device === 'gpu0')?.peak_by_class.weights, 634e6);
  assert.ok(r.tokens_per_s! > 0);
  assert.equal(r.end_us[f1], r.makespan_us);
  assert.ok(chromeTraceJSON(g, r, { profile: profile.id }).includes('"send_act"'));
});
