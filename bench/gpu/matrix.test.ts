// The bench matrix's plan lists (bench/gpu/matrix.ts): what a run on a machine of one or two GPUs covers.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { keepMedianProcess, matrixEntries, OFFLOADS } from './matrix.ts';

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

test('a plan timed in three processes keeps the median process\'s result, trace and log, and records every process\'s step time in run order', () => {
  const dir = mkdtempSync(join(tmpdir(), 'mmoc-median-'));
  try {
    const put = (name: string, k: number, step: number | null) => {
      const base = join(dir, k === 1 ? name : `${name}.rep${k}`);
      writeFileSync(`${base}.trace.json`, `trace of process ${k}`);
      writeFileSync(`${base}.err`, `log of process ${k}`);
      if (step !== null) writeFileSync(`${base}.json`, JSON.stringify({ step_s_median: step, tokens_per_s: 8192 / step, process: k }));
    };
    const read = (f: string) => readFileSync(join(dir, f), 'utf8');
    // the first process is the median: nothing moves
    [0.19, 0.21, 0.18].forEach((v, i) => put('a', i + 1, v));
    assert.deepEqual(keepMedianProcess(dir, 'a', 3), { kept: 0, steps: [0.19, 0.21, 0.18] });
    assert.equal(JSON.parse(read('a.json')).process, 1);
    assert.deepEqual(JSON.parse(read('a.json')).processes, [0.19, 0.21, 0.18]);
    // the first process slow (a slow launching thread): the third, the median, takes its place
    [0.21, 0.18, 0.19].forEach((v, i) => put('b', i + 1, v));
    assert.deepEqual(keepMedianProcess(dir, 'b', 3), { kept: 2, steps: [0.21, 0.18, 0.19] });
    const b = JSON.parse(read('b.json'));
    assert.equal(b.step_s_median, 0.19);
    assert.equal(b.process_kept, 2);
    assert.equal(read('b.trace.json'), 'trace of process 3');
    assert.equal(read('b.err'), 'log of process 3');
    assert.equal(JSON.parse(read('b.rep3.json')).step_s_median, 0.21, 'the first process kept beside it');
    assert.equal(read('b.rep3.trace.json'), 'trace of process 1');
    assert.ok(!existsSync(join(dir, 'b.json.swap')) && !existsSync(join(dir, 'b.json.tmp')));
    // a process without a result is left out (the lower of the middle two of the rest)
    [0.2, null, 0.3].forEach((v, i) => put('c', i + 1, v));
    assert.deepEqual(keepMedianProcess(dir, 'c', 3), { kept: 0, steps: [0.2, null, 0.3] });
    [null, null, null].forEach((v, i) => put('d', i + 1, v));
    assert.equal(keepMedianProcess(dir, 'd', 3), null);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
