import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync, existsSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { repoRoot } from './model-files.ts';

function mmoc(...args: string[]) {
  const r = spawnSync(process.execPath, [join(repoRoot, 'bin', 'mmoc.js'), ...args], { cwd: repoRoot, encoding: 'utf8', env: { ...process.env, MMOC_FROM_SOURCE: '1' } });
  return { code: r.status, out: r.stdout, err: r.stderr };
}
const dir = mkdtempSync(join(tmpdir(), 'mmoc-plan-'));

test('mmoc plan --json plans the tiny model on the cpu profile and writes plan and trace', () => {
  const plan = join(dir, 'plan.json'), trace = join(dir, 'trace.json');
  const r = mmoc('plan', '--model', 'tiny', '--hardware', 'cpu', '--gpus', '2', '--seq', '128', '--global-batch', '8', '-o', plan, '--trace', trace, '--json');
  assert.equal(r.code, 0, r.err);
  const j = JSON.parse(r.out);
  assert.ok(j.step_s > 0 && j.tokens_per_s > 0);
  assert.equal(j.peak_gib.length, 2);
  for (const k of ['considered', 'pruned', 'simulated']) assert.equal(typeof j.counts[k], 'number');
  assert.match(r.err, /simulated/); // progress on stderr
  const p = JSON.parse(readFileSync(plan, 'utf8'));
  assert.equal(p.version, 1);
  assert.deepEqual(p.layout.rankDevice, [-1, -1]);
  assert.ok(Array.isArray(JSON.parse(readFileSync(trace, 'utf8')).traceEvents));
  assert.deepEqual(readdirSync(dir).filter((f) => f.includes('.tmp-')), []); // no temporary left behind
});

test('mmoc simulate re-predicts a plan file, and a hand-edited one', () => {
  const plan = join(dir, 'plan.json');
  const r = mmoc('simulate', plan, '--json');
  assert.equal(r.code, 0, r.err);
  const j = JSON.parse(r.out);
  assert.ok(Math.abs(j.step_s - j.recorded.step_s) / j.step_s < 1e-9);
  const p = JSON.parse(readFileSync(plan, 'utf8'));
  p.job.microBatchSize = p.job.microBatchSize * 2; // a hand edit: twice the tokens a micro-batch
  const edited = join(dir, 'edited.json');
  writeFileSync(edited, JSON.stringify(p));
  const e = mmoc('simulate', edited, '--json');
  assert.equal(e.code, 0, e.err);
  assert.ok(JSON.parse(e.out).step_s > j.step_s);
  const h = mmoc('simulate', plan);
  assert.match(h.out, /tokens\/s/);
});

test('mmoc simulate names the file and field of a broken plan (exit 2)', () => {
  const p = JSON.parse(readFileSync(join(dir, 'plan.json'), 'utf8'));
  p.layout.stages[0].layers = [0, 0];
  const bad = join(dir, 'bad.json');
  writeFileSync(bad, JSON.stringify(p));
  const r = mmoc('simulate', bad);
  assert.equal(r.code, 2);
  assert.match(r.err, /bad\.json: layout\.stages\[0\]\.layers: \[0, 0\] is empty/);
});

test('mmoc plan answers an infeasible job with what would fit (exit 1)', () => {
  const r = mmoc('plan', '--model', 'llama2-7b', '--hardware', 'h200x2', '--gpus', '2', '--gpu-mem', '1GiB', '--seq', '1024', '--global-batch', '8', '--json');
  assert.equal(r.code, 1, r.err);
  const j = JSON.parse(r.out);
  assert.equal(j.feasible, false);
  assert.ok(j.infeasible.suggestions.some((s: { change: string }) => s.change === 'larger-cap'));
});

const bad: [string[], string][] = [
  [['--hardware', 'cpu', '--global-batch', '8'], '--model is required'],
  [['--model', 'tiny', '--global-batch', '8'], '--hardware is required'],
  [['--model', 'tiny', '--hardware', 'nope', '--global-batch', '8'], '--hardware: "nope" is neither a bundled hardware profile nor a file'],
  [['--model', 'tiny', '--hardware', 'cpu', '--gpus', '3', '--global-batch', '8'], '--gpus: 3 exceeds the 2 CPU ranks of hardware profile cpu'],
  [['--model', 'tiny', '--hardware', 'cpu', '--global-batch', '0'], '--global-batch: "0" must be a positive integer'],
  [['--model', 'tiny', '--hardware', 'cpu', '--global-batch', '8', '--gpu-mem', 'big'], '--gpu-mem: "big" is not a size'],
  [['--model', 'tiny', '--hardware', 'cpu', '--global-batch', '8', '--schedules', 'zb'], '--schedules: "zb" must be one of gpipe, 1f1b, interleaved-1f1b'],
];
for (const [args, msg] of bad) {
  test(`mmoc plan ${args.join(' ')} exits 2 with "${msg}"`, () => {
    const r = mmoc('plan', ...args);
    assert.equal(r.code, 2, r.err);
    assert.ok(r.err.includes(msg), r.err);
  });
}
test('mmoc simulate of a missing file exits 2', () => {
  const r = mmoc('simulate', join(dir, 'missing.json'));
  assert.equal(r.code, 2);
  assert.match(r.err, /missing\.json: cannot read plan: ENOENT/);
  assert.ok(!existsSync(join(dir, 'missing.json')));
});
