import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { chromeTrace, chromeTraceJSON, parseHardwareProfile, simulate, SimGraph } from './index.ts';
import type { ChromeTrace } from './index.ts';
import { offloadPipelineGraph, LLAMA2_13B_8GPU, pipelineGraph } from './examples.ts';

const profile = parseHardwareProfile(JSON.parse(readFileSync(new URL('../configs/hardware/l20x4.json', import.meta.url), 'utf8')), 'configs/hardware/l20x4.json');
const small = { ...LLAMA2_13B_8GPU, layers: 8, stages: 4, microBatches: 6 };

test('the same input gives a byte-identical trace', () => {
  const a = offloadPipelineGraph(profile, small).g;
  const b = offloadPipelineGraph(profile, small).g;
  const ja = chromeTraceJSON(a, simulate(a), { profile: profile.id });
  const jb = chromeTraceJSON(b, simulate(b), { profile: profile.id });
  assert.equal(ja, jb);
  assert.equal(chromeTraceJSON(a, simulate(a), { profile: profile.id }), ja, 'simulating twice');
  assert.ok(ja.length > 10_000);
});

function checkWellFormed(tr: ChromeTrace) {
  const procs = new Set<number>();
  const threads = new Set<string>();
  for (const e of tr.traceEvents) {
    if (e.ph === 'M' && e.name === 'process_name') { assert.equal(typeof e.args?.name, 'string'); procs.add(e.pid); }
    if (e.ph === 'M' && e.name === 'thread_name') { assert.equal(typeof e.args?.name, 'string'); threads.add(`${e.pid}:${e.tid}`); }
  }
  const slices = new Map<string, { s: number; e: number }[]>();
  let counters = 0;
  for (const e of tr.traceEvents) {
    assert.ok(procs.has(e.pid), `process ${e.pid} has a name`);
    if (e.ph === 'X') {
      assert.ok(threads.has(`${e.pid}:${e.tid}`), `thread ${e.pid}:${e.tid} has a name`);
      assert.ok(Number.isFinite(e.ts) && Number.isFinite(e.dur) && e.dur! >= 0);
      const k = `${e.pid}:${e.tid}`;
      if (!slices.has(k)) slices.set(k, []);
      slices.get(k)!.push({ s: Math.round(e.ts! * 1000), e: Math.round((e.ts! + e.dur!) * 1000) });
    }
    if (e.ph === 'C') {
      counters++;
      const vals = Object.values(e.args ?? {});
      assert.ok(vals.length > 0, 'a counter has values');
      for (const v of vals) assert.ok(typeof v === 'number' && Number.isFinite(v) && v >= 0);
    }
  }
  // slices on one thread nest: any two are disjoint or one contains the other
  for (const [k, list] of slices) {
    list.sort((x, y) => x.s - y.s || y.e - x.e);
    const stack: { s: number; e: number }[] = [];
    for (const x of list) {
      while (stack.length && stack[stack.length - 1].e <= x.s) stack.pop();
      if (stack.length) assert.ok(x.e <= stack[stack.length - 1].e, `slices on ${k} overlap without nesting`);
      stack.push(x);
    }
  }
  return { counters, slices: [...slices.values()].reduce((s, l) => s + l.length, 0) };
}

test('the trace is well formed: slices on a thread nest, counters have values, every process and thread is named', () => {
  const { g } = offloadPipelineGraph(profile, small);
  const r = simulate(g);
  const tr = chromeTrace(g, r);
  const { counters, slices } = checkWellFormed(tr);
  assert.equal(slices, g.taskCount, 'one slice per task');
  assert.ok(counters > 0, 'memory counters present');
  // slices carry the instruction they came from
  const fwd = tr.traceEvents.find((e) => e.ph === 'X' && e.args?.op === 'forward')!;
  for (const k of ['rank', 'pc', 'mb', 'stage', 'flops']) assert.ok(k in fwd.args!, `args.${k}`);
  const fetch = tr.traceEvents.find((e) => e.ph === 'X' && e.args?.op === 'fetch_params')!;
  assert.ok((fetch.args!.bytes as number) > 0);
});

test('concurrent tasks of a CPU pool or an unqueued link get separate lanes', () => {
  const g = new SimGraph();
  const h = g.device('host', { kind: 'host' });
  const p = g.cpuPool(h, 'cpu', { workers: 3, curve: [{ workers: 1, elements_per_s: 1e6 }] });
  const l = g.link(h, 'bus', { GBps: 1 });
  for (let i = 0; i < 3; i++) g.task({ on: p, elements: 100 * (i + 1) });
  for (let i = 0; i < 2; i++) g.task({ bytes: 1000 * (i + 1), links: [l] });
  g.task({ duration_us: 5 });
  const tr = chromeTrace(g, simulate(g));
  checkWellFormed(tr);
  const cpuThreads = new Set(tr.traceEvents.filter((e) => e.ph === 'X' && e.pid === 1).map((e) => e.tid));
  assert.equal(cpuThreads.size, 5, '3 pool lanes + 2 link lanes');
});

test('memory counters follow the allocations of a pipeline', () => {
  const { g } = pipelineGraph({ K: 2, M: 3, fwd_us: 1, bwd_us: 2, schedule: 'gpipe', act_bytes: 10 });
  const tr = chromeTrace(g, simulate(g));
  const c0 = tr.traceEvents.filter((e) => e.ph === 'C' && e.pid === 1).map((e) => (e.args as Record<string, number>).activations);
  assert.deepEqual(c0, [10, 20, 30, 20, 10, 0]);
});

test('offload pipelines of 1-8 stages and 1-12 micro-batches run to completion with memory returned', () => {
  for (const [stages, mbs, steps] of [[1, 1, 1], [2, 3, 2], [4, 12, 1], [8, 5, 2]]) {
    const p8 = parseHardwareProfile(JSON.parse(readFileSync(new URL('../configs/hardware/h200x8.json', import.meta.url), 'utf8')), 'h200x8');
    const { g } = offloadPipelineGraph(p8, { ...LLAMA2_13B_8GPU, layers: stages * 2, stages, microBatches: mbs, steps });
    const r = simulate(g);
    assert.ok(r.makespan_us > 0);
    for (const m of r.memory) assert.equal(m.end_bytes, 0, `${m.device} frees everything`);
    const gpu0 = r.memory.find((m) => m.device === 'gpu0')!;
    assert.ok(gpu0.peak_by_class.weights > 0 && gpu0.peak_by_class.activations > 0);
  }
});

test('with linkSeries, the trace has a GB/s counter per link that follows the flows', () => {
  const g = new SimGraph();
  const h = g.device('host', { kind: 'host' });
  const l = g.link(h, 'bridge', { GBps: 10 });
  g.task({ bytes: 40e3, links: [l], cap_GBps: 4 }); // 0..10 us at 4 GB/s
  g.task({ duration_us: 5, bytes: 50e3, links: [l] }); // from 5 us: 6 GB/s (the rest); alone from 10 us: 10 GB/s, ends at 12
  const r = simulate(g, { linkSeries: true });
  const tr = chromeTrace(g, r);
  checkWellFormed(tr);
  const c = tr.traceEvents.filter((e) => e.ph === 'C' && e.name === 'host/bridge GB/s').map((e) => [e.ts, (e.args as { GBps: number }).GBps]);
  assert.deepEqual(c, [[0, 4], [5, 10], [10, 10], [12, 0]]);
  assert.equal(simulate(g).link_log, undefined, 'off by default');
});
