import { test } from 'node:test';
import assert from 'node:assert/strict';
import { traceModel, stepsOf } from './trace-model.ts';
import type { ChromeTrace } from '../../sim/trace.ts';

const t: ChromeTrace = {
  displayTimeUnit: 'ms',
  traceEvents: [
    { name: 'process_name', ph: 'M', pid: 2, args: { name: 'gpu1' } },
    { name: 'process_name', ph: 'M', pid: 1, args: { name: 'gpu0' } },
    { name: 'thread_name', ph: 'M', pid: 1, tid: 1, args: { name: 'compute' } },
    { name: 'thread_name', ph: 'M', pid: 1, tid: 2, args: { name: 'h2d' } },
    { name: 'fwd L0 mb0', cat: 'forward', ph: 'X', pid: 1, tid: 1, ts: 10, dur: 5, args: { rank: 0, pc: 0, mb: 0, op: 'forward' } },
    { name: 'backward', cat: 'measured', ph: 'X', pid: 2, tid: 1, ts: 3, dur: 4, args: { rank: 1, pc: 3, step: 1 } },
    { name: 'backward', cat: 'measured', ph: 'X', pid: 2, tid: 1, ts: 30, dur: 4, args: { rank: 1, pc: 3, step: 2 } },
    { name: 'memory bytes', ph: 'C', pid: 1, ts: 0, args: { weights: 100, activations: 0 } },
    { name: 'memory bytes', ph: 'C', pid: 1, ts: 12, args: { weights: 100, activations: 50 } },
    { name: 'memory bytes', ph: 'C', pid: 1, ts: 16, args: { weights: 100, activations: 0 } },
  ],
};

test('lanes follow process order and carry the slices\' opcodes; memory counters sum the classes and keep the peak', () => {
  const m = traceModel(t);
  assert.deepEqual(m.lanes.map((l) => `${l.process}/${l.thread}`), ['gpu0/compute', 'gpu1/thread 1']);
  assert.deepEqual(m.lanes[0]!.slices.map((s) => [s.op, s.start_us, s.dur_us, s.mb]), [['forward', 10, 5, 0]]);
  assert.deepEqual(m.lanes[1]!.slices.map((s) => s.op), ['backward', 'backward']);
  assert.equal(m.memory[0]!.peak_bytes, 150);
  assert.deepEqual(m.memory[0]!.peak_classes, { weights: 100, activations: 50 });
  assert.deepEqual([m.start_us, m.end_us], [3, 34]);
});

test('one measured step keeps that step\'s slices; empty lanes only on request', () => {
  assert.deepEqual(stepsOf(t), [1, 2]);
  const m = traceModel(t, { step: 2 });
  assert.equal(m.lanes.find((l) => l.process === 'gpu1')!.slices.length, 1);
  assert.ok(!traceModel(t).lanes.some((l) => l.thread === 'h2d'));
  assert.ok(traceModel(t, { dropEmpty: false }).lanes.some((l) => l.thread === 'h2d'));
});

test('something that is not a trace is refused', () => {
  assert.throws(() => traceModel({} as ChromeTrace), /not a Chrome trace/);
});
