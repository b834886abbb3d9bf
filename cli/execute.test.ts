// `mmoc execute` through the CLI: JSON, progress line, trace file, exit codes, Ctrl-C, and torchrun
// mode (RANK / WORLD_SIZE set: the process is one rank). Skips only when the addon is not built.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { repoRoot } from './model-files.ts';
import { nativeUnavailableReason } from '../executor/native.ts';
import { buildPlan, defaultOptimizer } from '../planner/plan-build.ts';
import { defaultPolicy, evenPartition } from '../planner/memory.ts';
import { tiny } from '../planner/test-models.ts';
import type { ScheduleName } from '../planner/plan-types.ts';

const reason = nativeUnavailableReason();
const skip = reason ? `native addon not built (${reason.split(';')[0]})` : false;
const cliEnv = { ...process.env, MMOC_FROM_SOURCE: '1' } as Record<string, string>;
delete cliEnv.RANK;
delete cliEnv.WORLD_SIZE;

function mmoc(args: string[], env: Record<string, string> = {}) {
  const r = spawnSync(process.execPath, [join(repoRoot, 'bin', 'mmoc.js'), ...args], {
    cwd: repoRoot, encoding: 'utf8', env: { ...cliEnv, ...env }, timeout: 120_000,
  });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

function tinyPlan(schedule: ScheduleName, N: number) {
  const parts = evenPartition(tiny.num_hidden_layers, N);
  return buildPlan({
    hardware: 'cpu', model: tiny, precision: 'fp32', optimizer: defaultOptimizer(),
    job: { seq: 16, microBatchSize: 1, microBatches: 4, steps: 2, gpuMemCapBytes: null, seed: 1 },
    schedule, stageLayers: parts, pipelineRanks: N, dataParallel: 1, rankDevice: Array.from({ length: N }, () => -1), policy: parts.map(() => defaultPolicy(false)),
  });
}

test('mmoc execute --json --trace runs a 2-rank 1F1B plan; bad flags exit with code 2', { skip }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'mmoc-cli-'));
  try {
    const plan = tinyPlan('1f1b', 2);
    const p = join(dir, 'plan.json');
    writeFileSync(p, JSON.stringify(plan));
    const r = mmoc(['execute', p, '--steps', '3', '--threads', '1', '--trace', join(dir, 'm.json'), '--json']);
    assert.equal(r.code, 0, r.err);
    const j = JSON.parse(r.out);
    assert.equal(j.steps, 3);
    assert.equal(j.losses.length, 3);
    assert.equal(j.ranks, 2);
    assert.match(r.err, /step 3\/3 {2}loss \d+\.\d{4}/);
    const t = JSON.parse(readFileSync(join(dir, 'm.json'), 'utf8'));
    assert.equal(t.traceEvents.filter((e: { ph: string }) => e.ph === 'X').length, 3 * (plan.program.ranks[0]!.length + plan.program.ranks[1]!.length));
    const bad = mmoc(['execute', p, '--steps', '0']);
    assert.equal(bad.code, 2);
    assert.match(bad.err, /--steps: "0" must be a positive integer/);
    const missing = mmoc(['execute', p, '--data', join(dir, 'none.bin')]);
    assert.equal(missing.code, 2);
    assert.match(missing.err, /--data: .*none\.bin does not exist/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('Ctrl-C (SIGINT) stops every rank at the same step end: exit code 0, a partial result, no rank left', { skip, timeout: 60_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'mmoc-cli-'));
  try {
    const p = join(dir, 'plan.json');
    writeFileSync(p, JSON.stringify(tinyPlan('1f1b', 2)));
    const child = spawn(process.execPath, [join(repoRoot, 'bin', 'mmoc.js'), 'execute', p, '--steps', '100000', '--threads', '1', '--json'], { cwd: repoRoot, env: cliEnv });
    let out = '', err = '', sent = 0;
    child.stdout.on('data', (d) => { out += d; });
    child.stderr.on('data', (d) => {
      err += d;
      if (!sent && /step 3\/100000/.test(err)) { sent = Date.now(); child.kill('SIGINT'); }
    });
    const code = await new Promise<number | null>((res) => child.on('exit', (c) => res(c)));
    assert.ok(sent, err);
    assert.ok(Date.now() - sent < 10_000, 'stopped within 10 s');
    assert.equal(code, 0, err);
    assert.match(err, /stopping at the end of the current step/);
    const j = JSON.parse(out);
    assert.equal(j.stopped, true);
    assert.ok(j.steps >= 3 && j.steps < 100000);
    assert.equal(j.losses.length, j.steps);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('under torchrun (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT set) each process is one rank', { skip, timeout: 60_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'mmoc-cli-'));
  try {
    const p = join(dir, 'plan.json');
    writeFileSync(p, JSON.stringify(tinyPlan('gpipe', 2)));
    const ref = mmoc(['execute', p, '--threads', '1', '--json']);
    assert.equal(ref.code, 0, ref.err);
    const port = String(20000 + Math.floor(Math.random() * 20000));
    const ranks = [0, 1].map((rank) => spawn(process.execPath, [join(repoRoot, 'bin', 'mmoc.js'), 'execute', p, '--threads', '1', '--json'], {
      cwd: repoRoot, env: { ...cliEnv, RANK: String(rank), LOCAL_RANK: String(rank), WORLD_SIZE: '2', MASTER_ADDR: '127.0.0.1', MASTER_PORT: port },
    }));
    const outs = await Promise.all(ranks.map((c) => new Promise<{ code: number | null; out: string }>((res) => {
      let out = '';
      c.stdout.on('data', (d) => { out += d; });
      c.on('exit', (code) => res({ code, out }));
    })));
    for (const [rank, o] of outs.entries()) {
      assert.equal(o.code, 0);
      const j = JSON.parse(o.out);
      assert.equal(j.rank, rank);
      assert.equal(j.ranks, 2);
      assert.deepEqual(j.losses, JSON.parse(ref.out).losses);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('when `mmoc execute` itself is killed, its rank processes exit too (no orphans)', { skip, timeout: 60_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'mmoc-cli-'));
  let child: ReturnType<typeof spawn> | null = null;
  let ranks: number[] = [];
  try {
    const p = join(dir, 'plan.json');
    writeFileSync(p, JSON.stringify(tinyPlan('1f1b', 2)));
    child = spawn(process.execPath, [join(repoRoot, 'bin', 'mmoc.js'), 'execute', p, '--steps', '100000', '--threads', '1'], { cwd: repoRoot, env: cliEnv });
    let err = '';
    await new Promise<void>((res) => child!.stderr!.on('data', (d) => { err += d; if (/step 2\//.test(err)) res(); }));
    // the launcher's children that run a rank (executor/worker); tsx may have started an esbuild
    // service beside them (it did once: a third child)
    const ps = spawnSync('ps', ['-o', 'pid=,stat=,args=', '--ppid', String(child.pid)], { encoding: 'utf8' });
    const rows = ps.stdout.split('\n').map((s) => s.trim()).filter(Boolean);
    ranks = rows.filter((r) => /worker\.(ts|js)/.test(r) && !/\bZ/.test(r.split(/\s+/)[1] ?? '')).map((r) => Number(r.split(/\s+/)[0]));
    assert.equal(ranks.length, 2, `rank processes:\n${ps.stdout}`);
    child.kill('SIGKILL');
    const t0 = Date.now();
    const alive = () => ranks.filter((pid) => { try { process.kill(pid, 0); return true; } catch { return false; } });
    while (alive().length && Date.now() - t0 < 10_000) await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(alive(), [], 'rank processes still running 10 s after the launcher died');
  } finally {
    // a failed assertion must not leave a 100000-step run behind (one did, for 20 minutes)
    if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    for (const pid of ranks) { try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ } }
    rmSync(dir, { recursive: true, force: true });
  }
});
