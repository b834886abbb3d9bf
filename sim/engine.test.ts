import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { SimGraph, SimError, simulate } from './index.ts';
import { pipelineGraph } from './examples.ts';

test('GPipe with K equal stages and M micro-batches has bubble fraction (K-1)/(M+K-1) exactly', () => {
  fc.assert(fc.property(fc.integer({ min: 1, max: 8 }), fc.integer({ min: 1, max: 32 }), fc.integer({ min: 1, max: 50 }), (K, M, tf) => {
    const tb = 2 * tf;
    const { g } = pipelineGraph({ K, M, fwd_us: tf, bwd_us: tb, schedule: 'gpipe' });
    const r = simulate(g);
    assert.equal(r.makespan_us, (M + K - 1) * (tf + tb));
    for (const res of r.resources.filter((x) => x.kind === 'stream')) {
      assert.equal(res.busy_us, M * (tf + tb));
      const idle = r.makespan_us - res.busy_us;
      assert.equal(idle * (M + K - 1), (K - 1) * r.makespan_us); // bubble = (K-1)/(M+K-1), in integers
    }
  }), { numRuns: 60 });
});

test('1F1B gives the GPipe makespan with at most K micro-batches of activations in flight', () => {
  for (const [K, M] of [[4, 8], [4, 16], [3, 2], [8, 32], [1, 5]]) {
    const A = 1000;
    const gp = pipelineGraph({ K, M, fwd_us: 10, bwd_us: 20, schedule: 'gpipe', act_bytes: A });
    const ob = pipelineGraph({ K, M, fwd_us: 10, bwd_us: 20, schedule: '1f1b', act_bytes: A });
    const rg = simulate(gp.g);
    const ro = simulate(ob.g);
    assert.equal(ro.makespan_us, rg.makespan_us, `K=${K} M=${M}`);
    for (let s = 0; s < K; s++) {
      assert.equal(rg.memory[s].peak_bytes, M * A, 'GPipe keeps every micro-batch');
      assert.equal(ro.memory[s].peak_bytes, Math.min(K - s, M) * A, `1F1B stage ${s} keeps K-s`);
      assert.ok(ro.memory[s].peak_bytes <= K * A);
      assert.equal(ro.memory[s].end_bytes, 0);
    }
  }
});

test('a stream runs its tasks in the order they were added, even when a later one is ready first', () => {
  const g = new SimGraph();
  const d = g.device('gpu0', { kind: 'gpu' });
  const s = g.stream(d, 'compute');
  const other = g.stream(d, 'other');
  const slow = g.task({ on: other, duration_us: 50, name: 'slow' });
  const a = g.task({ on: s, duration_us: 10, deps: [slow], name: 'a' });
  const b = g.task({ on: s, duration_us: 10, name: 'b' });
  const r = simulate(g);
  assert.equal(r.start_us[a], 50);
  assert.equal(r.start_us[b], 60, 'b waits behind a on the in-order stream');
  assert.deepEqual(r.critical!.tasks, [slow, a, b]);
});

test('the critical path names the resource that bounds the step', () => {
  const g = new SimGraph();
  const d0 = g.device('gpu0', { kind: 'gpu' });
  const c = g.stream(d0, 'compute');
  const h = g.device('host', { kind: 'host' });
  const cpu = g.cpuPool(h, 'cpu', { workers: 1, curve: [{ workers: 1, elements_per_s: 1e6 }] });
  const f = g.task({ on: c, duration_us: 100 });
  const u = g.task({ on: cpu, elements: 500, deps: [f] }); // 500 us
  g.task({ on: c, duration_us: 50, deps: [f] });
  const r = simulate(g);
  assert.equal(r.makespan_us, 600);
  assert.deepEqual(r.critical!.tasks, [f, u]);
  assert.equal(r.critical!.bound, 'host/cpu');
  assert.equal(r.critical!.by_resource[0].us, 500);
});

test('a dependency cycle is a SimError naming the tasks in it', () => {
  const g = new SimGraph();
  const d = g.device('gpu0', { kind: 'gpu' });
  const s = g.stream(d, 'compute');
  const t2 = g.stream(d, 'second');
  g.task({ on: s, duration_us: 1, name: 'free' });
  const a = g.task({ on: t2, duration_us: 1, name: 'send mb3' });
  const b = g.task({ on: t2, duration_us: 1, name: 'recv mb3', deps: [a] });
  g.dep(b, a);
  assert.throws(() => simulate(g), (e: unknown) => {
    assert.ok(e instanceof SimError);
    assert.match(e.message, /cycle/);
    assert.match(e.message, /send mb3/);
    assert.match(e.message, /recv mb3/);
    assert.doesNotMatch(e.message, /"free"/);
    return true;
  });
});

test('stream order that contradicts dependencies is a deadlock naming both tasks', () => {
  const g = new SimGraph();
  const d = g.device('gpu0', { kind: 'gpu' });
  const s = g.stream(d, 'compute');
  const first = g.task({ on: s, duration_us: 1, name: 'backward mb0' });
  const second = g.task({ on: s, duration_us: 1, name: 'forward mb0' });
  g.dep(second, first); // first waits for second, which is queued behind first
  assert.throws(() => simulate(g), /deadlock.*(backward mb0.*forward mb0|forward mb0.*backward mb0)/);
});

test('an unmatched receive (waitFor with no signal) is a SimError naming the task and the event', () => {
  const g = new SimGraph();
  const d = g.device('gpu1', { kind: 'gpu' });
  const s = g.stream(d, 'comm', { role: 'comm' });
  g.task({ on: s, duration_us: 5, name: 'send act mb0', signal: 'act s0 mb0' });
  g.task({ on: s, duration_us: 5, name: 'recv act mb1', waitFor: ['act s0 mb1'] });
  assert.throws(() => simulate(g), /unmatched.*recv act mb1.*act s0 mb1/);
});

test('waitFor/signal pairs a send with its receive', () => {
  const g = new SimGraph();
  const d0 = g.device('gpu0', { kind: 'gpu' });
  const d1 = g.device('gpu1', { kind: 'gpu' });
  const s0 = g.stream(d0, 'compute');
  const s1 = g.stream(d1, 'compute');
  const recv = g.task({ on: s1, duration_us: 5, waitFor: ['x'] });
  g.task({ on: s0, duration_us: 7, signal: 'x' });
  const r = simulate(g);
  assert.equal(r.start_us[recv], 7);
});

test('a dependency on a task that does not exist is a SimError', () => {
  const g = new SimGraph();
  const d = g.device('gpu0', { kind: 'gpu' });
  const s = g.stream(d, 'compute');
  g.task({ on: s, duration_us: 1, deps: [5], name: 'orphan' });
  assert.throws(() => simulate(g), /orphan.*task 5.*does not exist/);
});

test('a long chain of zero-duration tasks runs without deep recursion', () => {
  const g = new SimGraph();
  let prev = -1;
  for (let i = 0; i < 200_000; i++) prev = g.task({ deps: prev >= 0 ? [prev] : [] });
  const r = simulate(g);
  assert.equal(r.makespan_us, 0);
  assert.equal(r.tasks, 200_000);
});

test('random DAGs: every task starts after its dependencies end and streams never overlap', () => {
  const arb = fc.record({
    n: fc.integer({ min: 1, max: 60 }),
    streams: fc.integer({ min: 1, max: 4 }),
    seed: fc.array(fc.tuple(fc.nat(), fc.nat(), fc.integer({ min: 0, max: 20 })), { minLength: 60, maxLength: 60 }),
  });
  fc.assert(fc.property(arb, ({ n, streams, seed }) => {
    const g = new SimGraph();
    const d = g.device('gpu0', { kind: 'gpu' });
    const ss = Array.from({ length: streams }, (_, i) => g.stream(d, `s${i}`));
    const deps: number[][] = [];
    const onStream: number[][] = ss.map(() => []);
    for (let t = 0; t < n; t++) {
      const [a, b, dur] = seed[t];
      const dd = t > 0 && a % 3 !== 0 ? [b % t] : [];
      deps.push(dd);
      const on = a % 4 === 0 ? undefined : b % streams;
      if (on !== undefined) onStream[on].push(t);
      g.task({ on: on === undefined ? undefined : ss[on], duration_us: dur, deps: dd });
    }
    const r = simulate(g);
    let sum = 0;
    for (let t = 0; t < n; t++) {
      sum += seed[t][2];
      for (const p of deps[t]) assert.ok(r.start_us[t] >= r.end_us[p]);
      assert.equal(r.end_us[t] - r.start_us[t], seed[t][2]);
    }
    assert.ok(r.makespan_us <= sum);
    for (const list of onStream) {
      for (let i = 1; i < list.length; i++) assert.ok(r.start_us[list[i]] >= r.end_us[list[i - 1]], 'in order, one at a time');
    }
    const r2 = simulate(g);
    assert.deepEqual(Array.from(r2.start_us), Array.from(r.start_us), 'deterministic');
    for (const res of r.resources) assert.ok(res.busy_us <= r.makespan_us + 1e-9);
  }), { numRuns: 150 });
});

test('a cycle is reported in order: each task waits for the next, the last for the first', () => {
  const g = new SimGraph();
  const n = ['a', 'b', 'c', 'd'].map((name) => g.task({ name, duration_us: 1 }));
  // a waits for b, b for c, c for d, d for a
  g.dep(n[1], n[0]);
  g.dep(n[2], n[1]);
  g.dep(n[3], n[2]);
  g.dep(n[0], n[3]);
  assert.throws(() => simulate(g), (e: unknown) => {
    assert.ok(e instanceof SimError);
    const order = [...e.message.matchAll(/task \d+ "(\w)"/g)].map((m) => m[1]).join('');
    assert.ok(['abcd', 'bcda', 'cdab', 'dabc'].includes(order.slice(0, 4)), `order ${order}`);
    assert.deepEqual([...e.tasks].sort(), [0, 1, 2, 3]);
    return true;
  });
});
