// The bench matrix's plan lists (bench/gpu/matrix.ts): what a run on a machine of one or two GPUs covers.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { matrixEntries, OFFLOADS } from './matrix.ts';

const labels = Object.values(OFFLOADS).map((o) => o.label);

test('the one-GPU matrix holds at least 12 plans on one device, both models, GPipe and 1F1B, recompute on and off, every offload policy', () => {
  const es = matrixEntries(false, 1);
  assert.ok(es.length >= 12, `${es.length} plans`);
  assert.ok(es.every((e) => e.gpus === 1), 'every plan on one GPU');
  assert.deepEqual(new Set(es.map((e) => e.model.name)), new Set(['llama2-7b', 'llama3.2-1b']));
  assert.deepEqual(new Set(es.map((e) => e.schedule)), new Set(['gpipe', '1f1b']));
  assert.deepEqual(new Set(es.map((e) => e.recompute)), new Set([true, false]));
  assert.ok(new Set(es.map((e) => e.mbs)).size >= 3, 'several micro-batch sizes');
  for (const l of labels) assert.ok(es.some((e) => e.offload?.label === l), `offload ${l}`);
  assert.ok(es.some((e) => e.offload?.capGiB), 'a memory cap');
  assert.equal(new Set(es.map((e) => e.name)).size, es.length, 'names are unique');
});

test('the two-GPU matrix runs plans on 1 and 2 GPUs, every schedule and every offload policy', () => {
  const es = matrixEntries(false, 2);
  assert.ok(es.length >= 12);
  assert.deepEqual(new Set(es.map((e) => e.gpus)), new Set([1, 2]));
  assert.deepEqual(new Set(es.map((e) => e.schedule)), new Set(['gpipe', '1f1b', 'interleaved-1f1b']));
  for (const l of labels) assert.ok(es.some((e) => e.offload?.label === l), `offload ${l}`);
  assert.equal(new Set(es.map((e) => e.name)).size, es.length);
});
