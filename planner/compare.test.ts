import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { ChromeTrace, TraceEvent } from '../sim/trace.ts';
import { compareTraces, resourceClassOf, sideBySide } from './compare.ts';

const X = (name: string, pid: number, ts: number, dur: number, args: Record<string, unknown>): TraceEvent =>
  ({ name, ph: 'X', pid, tid: 1, ts, dur, args });

// Predicted: rank 0 runs forward (pc 0, 100 us) then backward (pc 1, 200 us); rank 1 a send (pc 0, 50 us).
const predicted: ChromeTrace = {
  displayTimeUnit: 'ms',
  traceEvents: [
    { name: 'process_name', ph: 'M', pid: 1, args: { name: 'gpu0' } },
    X('forward mb0', 1, 0, 100, { rank: 0, pc: 0, op: 'forward' }),
    X('backward mb0', 1, 100, 200, { rank: 0, pc: 1, op: 'backward' }),
    X('send', 2, 0, 50, { rank: 1, pc: 0, op: 'send_act' }),
  ],
};

// Measured: two steps; step 0 is warm-up (slow); step 1 takes forward 110, backward 180, send 50.
function measuredStep(step: number, t0: number, f: number, b: number): TraceEvent[] {
  return [
    X('forward', 1, t0, f, { rank: 0, pc: 0, step }),
    X('backward', 1, t0 + f, b, { rank: 0, pc: 1, step }),
    X('send_act', 2, t0, 50, { rank: 1, pc: 0, step }),
  ];
}
const measured: ChromeTrace = {
  displayTimeUnit: 'ms',
  traceEvents: [
    { name: 'process_name', ph: 'M', pid: 1, args: { name: 'rank 0' } },
    ...measuredStep(0, 0, 1000, 1000),
    ...measuredStep(1, 5000, 110, 180),
  ],
  otherData: { peak_bytes: [1000, 2000] },
};

test('compare pairs slices by (rank, pc), skips the warm-up step and reports errors by op, resource and peak', () => {
  const r = compareTraces(predicted, measured, { predictedPeakBytes: [1100, 1900] });
  assert.deepEqual(r.measured_steps, [1]);
  assert.equal(r.paired, 3);
  assert.equal(r.only_predicted, 0);
  assert.equal(r.only_measured, 0);
  // step: predicted span 300 us, measured span 290 us
  assert.equal(r.step_s.predicted, 300e-6);
  assert.equal(r.step_s.measured, 290e-6);
  assert.ok(Math.abs(r.step_s.error! - 10 / 290) < 1e-12);
  const fwd = r.by_op.find((o) => o.op === 'forward')!;
  assert.equal(fwd.predicted, 100);
  assert.equal(fwd.measured, 110);
  assert.ok(Math.abs(fwd.error! - (-10 / 110)) < 1e-12);
  const compute0 = r.by_resource.find((x) => x.rank === 0 && x.resource === 'compute')!;
  assert.equal(compute0.predicted, 300);
  assert.equal(compute0.measured, 290);
  assert.deepEqual(r.peak_bytes.map((p) => p.error), [0.1, -0.05]);
});

test('compare counts instructions present in only one trace', () => {
  const extra: ChromeTrace = { ...measured, traceEvents: [...measured.traceEvents, X('grad_norm', 1, 5300, 5, { rank: 0, pc: 2, step: 1 })] };
  const r = compareTraces(predicted, extra);
  assert.equal(r.only_measured, 1);
  assert.equal(r.paired, 3);
});

test('compare rejects something that is not a trace', () => {
  assert.throws(() => compareTraces({} as ChromeTrace, measured), /predicted trace: not a Chrome trace/);
});

test('optimizer steps count as CPU or GPU work by their tier', () => {
  assert.equal(resourceClassOf('optimizer_step', 'cpu'), 'cpu');
  assert.equal(resourceClassOf('optimizer_step', 'gpu'), 'compute');
  assert.equal(resourceClassOf('offload_grads'), 'd2h');
});

test('a host optimizer step counts as CPU work through the plan\'s program when the traces name no tier (not as the GPU\'s compute)', () => {
  // rank 0: forward (pc 0, 100 us), then the layer's update on the host (pc 1, 400 us)
  const p: ChromeTrace = { displayTimeUnit: 'ms', traceEvents: [X('forward', 1, 0, 100, { rank: 0, pc: 0, op: 'forward' }), X('optimizer_step', 1, 100, 400, { rank: 0, pc: 1, op: 'optimizer_step' })] };
  const step = (st: number, t0: number): TraceEvent[] => [X('forward', 1, t0, 90, { rank: 0, pc: 0, step: st }), X('optimizer_step', 1, t0 + 90, 300, { rank: 0, pc: 1, step: st })];
  const m: ChromeTrace = { displayTimeUnit: 'ms', traceEvents: [...step(0, 0), ...step(1, 1000)] };
  const program = { ranks: [[{ op: 'forward' }, { op: 'optimizer_step', tier: 'cpu' }]] };
  const res = (r: ReturnType<typeof compareTraces>) => Object.fromEntries(r.by_resource.map((x) => [x.resource, [x.predicted, x.measured]]));
  assert.deepEqual(res(compareTraces(p, m, { program })), { compute: [100, 90], cpu: [400, 300] });
  // without the program the update is taken for GPU work
  assert.deepEqual(res(compareTraces(p, m)), { compute: [500, 390] });
});

test('the side-by-side trace holds predicted and measured processes for each device, measured from one step', () => {
  const t = sideBySide(predicted, measured, 1);
  const names = t.traceEvents.filter((e) => e.name === 'process_name').map((e) => e.args!.name);
  assert.deepEqual(names, ['predicted: gpu0', 'measured: rank 0']);
  const mx = t.traceEvents.filter((e) => e.ph === 'X' && e.args?.step !== undefined);
  assert.equal(mx.length, 3);
  assert.equal(Math.min(...mx.map((e) => e.ts!)), 0);
});

test('side work at an instruction\'s pc is not its time: a forward\'s own activation copies (measured) and the host adds beside an offload (predicted)', () => {
  const side = (step: number, t0: number): TraceEvent[] => [
    ...measuredStep(step, t0, 110, 180),
    { ...X('offload_act', 1, t0 + 10, 40, { rank: 0, pc: 0, step }), tid: 3 },
    { ...X('reload_act', 1, t0 + 120, 30, { rank: 0, pc: 1, step }), tid: 4 },
  ];
  const m: ChromeTrace = { displayTimeUnit: 'ms', traceEvents: [...side(0, 0), ...side(1, 5000)] };
  const p: ChromeTrace = { ...predicted, traceEvents: [...predicted.traceEvents, X('host_accumulate', 1, 300, 500, { rank: 0, pc: 1, op: 'host_accumulate' })] };
  const r = compareTraces(p, m, {});
  const fwd = r.by_op.find((o) => o.op === 'forward')!, bwd = r.by_op.find((o) => o.op === 'backward')!;
  assert.equal(fwd.measured, 110);
  assert.equal(bwd.measured, 180);
  assert.equal(bwd.predicted, 200);
});
