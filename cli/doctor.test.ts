// `mmoc doctor` and `mmoc execute` through the CLI: JSON shape, exit codes, and the message when
// the native addon is missing (simulated with MMOC_NATIVE_ADDON pointing nowhere).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { repoRoot } from './model-files.ts';
import { nativeUnavailableReason } from '../executor/native.ts';
import { buildPlan, defaultOptimizer } from '../planner/plan-build.ts';
import { defaultPolicy, evenPartition } from '../planner/memory.ts';
import { tiny } from '../planner/test-models.ts';

const reason = nativeUnavailableReason();
const skip = reason ? `native addon not built (${reason.split(';')[0]})` : false;

function mmoc(args: string[], env: Record<string, string> = {}) {
  const r = spawnSync(process.execPath, [join(repoRoot, 'bin', 'mmoc.js'), ...args], {
    cwd: repoRoot, encoding: 'utf8', env: { ...process.env, MMOC_FROM_SOURCE: '1', ...env }, timeout: 120_000,
  });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

test('mmoc doctor --json: libtorch, devices, a passing CPU forward/backward, and what is missing with fixes', { skip }, () => {
  const r = mmoc(['doctor', '--json']);
  assert.equal(r.code, 0, r.err);
  const j = JSON.parse(r.out);
  assert.equal(j.addon.built, true);
  assert.match(j.build.torchVersion, /^\d+\.\d+/);
  assert.ok(j.devices.cpuCores >= 1);
  assert.ok(Array.isArray(j.devices.cuda));
  const cpu = j.selfTests.find((s: { device: string }) => s.device === 'cpu');
  assert.equal(cpu.ok, true);
  assert.ok(Math.abs(cpu.loss - Math.log(256)) < 1);
  for (const m of j.missing) assert.ok(m.fix.length > 0, `${m.what} has a fix`);
  if (j.devices.cuda.length === 0) assert.ok(j.missing.some((m: { what: string }) => m.what === 'gpus'));
});

test('without the addon, doctor and execute say how to build it (exit code 1)', () => {
  const env = { MMOC_NATIVE_ADDON: '/nonexistent/mmoc_native.node' };
  const d = mmoc(['doctor'], env);
  assert.equal(d.code, 1);
  assert.match(d.out, /native-addon: the native addon is not built: run `npm run build:native` \(needs libtorch/);
  assert.match(d.out, /fix: npm run build:native/);
  const dir = mkdtempSync(join(tmpdir(), 'mmoc-cli-'));
  try {
    const parts = evenPartition(tiny.num_hidden_layers, 1);
    const plan = buildPlan({
      hardware: 'cpu', model: tiny, precision: 'fp32', optimizer: defaultOptimizer(),
      job: { seq: 16, microBatchSize: 1, microBatches: 2, steps: 2, gpuMemCapBytes: null, seed: 1 },
      schedule: 'gpipe', stageLayers: parts, pipelineRanks: 1, dataParallel: 1, rankDevice: [-1], policy: parts.map(() => defaultPolicy(false)),
    });
    writeFileSync(join(dir, 'plan.json'), JSON.stringify(plan));
    const e = mmoc(['execute', join(dir, 'plan.json')], env);
    assert.equal(e.code, 1);
    assert.match(e.err, /mmoc: failed: .*the native addon is not built: run `npm run build:native`/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
