// `mmoc compare` end to end on CPU: plan by hand (2 stages, 1F1B), execute for real, compare.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, readFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { gzipSync } from 'node:zlib';
import { tinyCpuPlan } from '../test/tiny-plan.ts';
import { nativeUnavailableReason } from '../executor/native.ts';
import { repoRoot } from './model-files.ts';

const reason = nativeUnavailableReason();
const skip = reason ? `native addon not built (${reason.split(';')[0]})` : false;
const mmoc = (...args: string[]) => spawnSync(process.execPath, [join(repoRoot, 'bin', 'mmoc.js'), ...args], { encoding: 'utf8', timeout: 120_000 });

function tinyPlanFile(dir: string): string {
  const path = join(dir, 'plan.json');
  writeFileSync(path, JSON.stringify(tinyCpuPlan({ seq: 32, microBatchSize: 2, microBatches: 4, steps: 3 })));
  return path;
}

test('compare pairs every instruction of an executed plan with its prediction and writes a side-by-side trace', { skip, timeout: 180_000 }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'mmoc-compare-'));
  const plan = tinyPlanFile(dir);
  const measured = join(dir, 'measured.json');
  const ex = mmoc('execute', plan, '--steps', '3', '--trace', measured, '--json');
  assert.equal(ex.status, 0, ex.stderr);
  const sbs = join(dir, 'sbs.json');
  const r = mmoc('compare', plan, measured, '--side-by-side', sbs, '--json');
  assert.equal(r.status, 0, r.stderr);
  const report = JSON.parse(r.stdout);
  assert.ok(report.paired > 0);
  // the simulator models receives as dependencies of the matching send (no task of their own):
  // every measured instruction but the receives pairs with a predicted task
  const planJson = JSON.parse(readFileSync(plan, 'utf8'));
  const receives = planJson.program.ranks.flat().filter((i: { op: string }) => i.op.startsWith('recv_')).length;
  assert.equal(report.only_measured, receives);
  assert.equal(report.only_predicted, 0);
  assert.deepEqual(report.measured_steps, [1, 2]);
  assert.ok(report.step_s.predicted > 0 && report.step_s.measured > 0);
  assert.ok(Number.isFinite(report.step_s.error));
  for (const op of ['forward', 'backward', 'send_act', 'send_grad', 'optimizer_step']) assert.ok(report.by_op.some((o: { op: string }) => o.op === op), op);
  assert.equal(report.peak_bytes.length, 2);
  assert.equal(report.peak_comparable, false, 'CPU ranks report the resident set: peaks are not compared');
  assert.ok(existsSync(sbs));
  // the measured trace gzip-compressed (as bench/gpu keeps them): the same report
  const gz = join(dir, 'measured.json.gz');
  writeFileSync(gz, gzipSync(readFileSync(measured)));
  const rz = mmoc('compare', plan, gz, '--json');
  assert.equal(rz.status, 0, rz.stderr);
  assert.equal(JSON.parse(rz.stdout).paired, report.paired);
  const names = JSON.parse(readFileSync(sbs, 'utf8')).traceEvents.filter((e: { name: string }) => e.name === 'process_name').map((e: { args: { name: string } }) => e.args.name);
  assert.ok(names.some((n: string) => n.startsWith('predicted: ')) && names.some((n: string) => n.startsWith('measured: ')));
});

test('compare counts a host-AdamW plan\'s updates as host CPU time, not GPU compute, on a GPU run\'s trace (and prints no error for sub-10 us rows)', () => {
  // LLaMA-2-7B, one H200, AdamW on the host (delayed), capped at 32 GiB: the 25th matrix run
  const dir = join(repoRoot, 'bench', 'gpu', 'matrix-2026-11-23g-h200');
  const name = 'llama2-7b-1g-1f1b-mbs1x8-rc-hostadam-delayed-cap32';
  const args = [join(dir, 'plans', `${name}.json`), join(dir, 'runs', `${name}.trace.json.gz`), '--hardware', join(dir, 'profile.json')];
  const r = mmoc('compare', ...args, '--json');
  assert.equal(r.status, 0, r.stderr);
  const rep = JSON.parse(r.stdout) as { by_op: { op: string; predicted: number; measured: number }[]; by_resource: { resource: string; predicted: number; measured: number }[] };
  const res = (k: string) => rep.by_resource.find((x) => x.resource === k)!;
  const op = (k: string) => rep.by_op.find((x) => x.op === k)!;
  assert.equal(res('cpu').predicted, op('optimizer_step').predicted);
  assert.equal(res('cpu').measured, op('optimizer_step').measured);
  assert.ok(Math.abs(res('compute').measured - (op('forward').measured + op('backward').measured)) < 1e-6);
  const text = mmoc('compare', ...args).stdout;
  assert.match(text, /rank 0 cpu +\d+\.\d+ ms +\d+\.\d+ ms +[+-]\d+\.\d%/);
  assert.match(text, /barrier x\d+ +0\.00 ms +0\.00 ms +-\n/);
});

test('compare answers bad input with exit code 2 and names the file', () => {
  const dir = mkdtempSync(join(tmpdir(), 'mmoc-compare-'));
  const plan = tinyPlanFile(dir);
  const notTrace = join(dir, 'x.json');
  writeFileSync(notTrace, '{"foo": 1}');
  const r = mmoc('compare', plan, notTrace);
  assert.equal(r.status, 2);
  assert.match(r.stderr, /x\.json: not a Chrome trace/);
  const missing = mmoc('compare', join(dir, 'nope.json'), notTrace);
  assert.equal(missing.status, 2);
  assert.match(missing.stderr, /nope\.json: cannot read plan/);
});
