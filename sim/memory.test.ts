import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SimGraph, SimError, simulate } from './index.ts';

// Hand-computed schedule on one GPU (compute stream) and the host:
//   t=0..10   load  : alloc weights W (100) at start
//   t=10..30  fwd   : alloc act A (50) at start
//   t=30..40  bwd   : alloc grads G (100) at start, free A at end
//   t=40..45  step  : alloc optimizer O (200) at start, free G at end; host buffer H (7) alloc
// GPU live: [0,10) 100; [10,30) 150; [30,40) 250; [40,45) 400 -> peak 400 at t=40;
// at the end: W 100 + O 200 = 300.
function schedule() {
  const g = new SimGraph();
  const gpu = g.device('gpu0', { kind: 'gpu', memory_bytes: 1000 });
  const host = g.device('host', { kind: 'host' });
  const s = g.stream(gpu, 'compute');
  g.task({ on: s, duration_us: 10, mem: [{ op: 'alloc', device: gpu, buffer: 'W', bytes: 100, class: 'weights' }] });
  g.task({ on: s, duration_us: 20, mem: [{ op: 'alloc', device: gpu, buffer: 'A', bytes: 50, class: 'activations' }] });
  g.task({ on: s, duration_us: 10, mem: [{ op: 'alloc', device: gpu, buffer: 'G', bytes: 100, class: 'gradients' }, { op: 'free', device: gpu, buffer: 'A' }] });
  g.task({
    on: s, duration_us: 5,
    mem: [
      { op: 'alloc', device: gpu, buffer: 'O', bytes: 200, class: 'optimizer' },
      { op: 'free', device: gpu, buffer: 'G' },
      { op: 'alloc', device: host, buffer: 'H', bytes: 7, class: 'master' },
    ],
  });
  return g;
}

test('peak memory, its time and its breakdown on a hand-computed schedule', () => {
  const r = simulate(schedule());
  const gpu = r.memory[0];
  assert.equal(gpu.device, 'gpu0');
  assert.equal(gpu.capacity_bytes, 1000);
  assert.equal(gpu.peak_bytes, 400);
  assert.equal(gpu.peak_time_us, 40);
  assert.deepEqual(gpu.peak_by_class, { weights: 100, gradients: 100, optimizer: 200, master: 0, activations: 0, buffers: 0 });
  assert.deepEqual(gpu.peak_buffers.map((b) => b.buffer), ['O', 'G', 'W']);
  assert.equal(gpu.end_bytes, 300);
  assert.deepEqual(gpu.series.t_us, [0, 10, 30, 40, 45]);
  assert.deepEqual(gpu.series.bytes, [100, 150, 250, 400, 300]);
  assert.equal(r.memory[1].peak_bytes, 7);
  assert.deepEqual(r.memory[1].peak_by_class.master, 7);
});

test('the memory series can be switched off without changing the peak', () => {
  const r = simulate(schedule(), { memorySeries: false });
  assert.equal(r.memory[0].peak_bytes, 400);
  assert.deepEqual(r.memory[0].series.t_us, []);
});

test('allocating a live buffer or freeing a dead one is a SimError naming task and buffer', () => {
  const g = new SimGraph();
  const d = g.device('gpu0', { kind: 'gpu' });
  const s = g.stream(d, 'compute');
  g.task({ on: s, name: 'fetch layer 3', mem: [{ op: 'alloc', device: d, buffer: 'w3', bytes: 1 }] });
  g.task({ on: s, name: 'fetch layer 3 again', mem: [{ op: 'alloc', device: d, buffer: 'w3', bytes: 1 }] });
  assert.throws(() => simulate(g), (e: unknown) => e instanceof SimError && /fetch layer 3 again.*"w3".*still live.*fetch layer 3/.test(e.message));
  const h = new SimGraph();
  const d2 = h.device('gpu0', { kind: 'gpu' });
  h.task({ name: 'release', mem: [{ op: 'free', device: d2, buffer: 'nope' }] });
  assert.throws(() => simulate(h), /release.*frees "nope".*not allocated/);
});

test('the same buffer name on two devices is two buffers', () => {
  const g = new SimGraph();
  const a = g.device('gpu0', { kind: 'gpu' });
  const b = g.device('gpu1', { kind: 'gpu' });
  g.task({ mem: [{ op: 'alloc', device: a, buffer: 'x', bytes: 3 }, { op: 'alloc', device: b, buffer: 'x', bytes: 5 }] });
  const r = simulate(g);
  assert.equal(r.memory[0].peak_bytes, 3);
  assert.equal(r.memory[1].peak_bytes, 5);
});
