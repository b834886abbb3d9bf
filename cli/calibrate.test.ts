// `mmoc calibrate` and the live CPU loop: calibrate --quick, plan the tiny model on 2 CPU ranks with
// that profile, execute it, compare predicted against measured.
//
// The loop's error bound (CPU timing noise): |step-time error| <= 60%, the prediction against the
// fastest of the measured steps 2-8 (calibrate fits the fastest repetitions too). On a 2-core machine
// two ranks plus their Gloo threads share the two cores, so repeated runs of the same plan differ by
// 20-30%, and so does the prediction: `--quick` fits the per-instruction overhead from a few short
// probe runs, and on an idle 2-core VM the predicted step of this plan moved between 116 and 184 ms
// over five loops (errors -8%, +12%, +39%, +44%, +55%; 2026-11-22). 60% still fails what the loop
// exists to catch: an uncalibrated profile (-92% on this plan), a missing instruction class or a
// structural mismatch between the two interpreters. Peak memory is reported, not
// checked, on CPU: the executor reports a CPU rank's peak RSS (Node + libtorch), the memory model
// counts tensors (GPU profiles compare the caching allocator's peak, which the model predicts).
// Each rank runs with cores / ranks intra-op threads (`mmoc execute --threads`), as calibrate
// measured them. A loop that misses the bound runs once more before the test fails.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { buildPlan, defaultOptimizer } from '../planner/plan-build.ts';
import { defaultPolicy, evenPartition } from '../planner/memory.ts';
import { tiny } from '../planner/test-models.ts';
import { parseHardwareProfile } from '../sim/index.ts';
import { calibrateTask, nativeUnavailableReason } from '../executor/native.ts';
import { fitThree, fitTwo } from '../executor/calibrate.ts';
import { parseParts } from './calibrate.ts';
import { repoRoot } from './model-files.ts';

export const CPU_LOOP_STEP_BOUND = 0.6;

const reason = nativeUnavailableReason();
const skip = reason ? `native addon not built (${reason.split(';')[0]})` : false;
const mmoc = (...args: string[]) => spawnSync(process.execPath, [join(repoRoot, 'bin', 'mmoc.js'), ...args], { encoding: 'utf8', timeout: 180_000, cwd: repoRoot });

test('--only names parts; unknown parts are bad input', () => {
  assert.deepEqual([...parseParts('gemm,cpu')], ['gemm', 'cpu']);
  assert.equal(parseParts(undefined).size, 9);
  assert.throws(() => parseParts('gemm,gpu'), /--only: "gpu" is not a part/);
  const r = mmoc('calibrate', '--only', 'nope');
  assert.equal(r.status, 2);
  assert.match(r.stderr, /--only: "nope" is not a part/);
});

test('the overhead fit recovers known coefficients and never goes negative', () => {
  const b = [100, 200, 300, 50], a = [20, 40, 40, 0], c = [1, 1, 1, 1];
  const y = b.map((v, i) => v + a[i]! * 3 + c[i]! * 25);
  const f = fitTwo(y, b, a, c);
  assert.ok(Math.abs(f.x - 3) < 1e-9 && Math.abs(f.z - 25) < 1e-9, JSON.stringify(f));
  const g = fitTwo(b.map((v) => v * 0.5), b, a, c);
  assert.deepEqual(g, { x: 0, z: 0 });
  const h = fitThree(b.map((v, i) => 1.3 * v + a[i]! * 2 + 10), b, a, c);
  assert.ok(Math.abs(h.s - 1.3) < 1e-9 && Math.abs(h.x - 2) < 1e-9 && Math.abs(h.z - 10) < 1e-9, JSON.stringify(h));
  assert.deepEqual(fitThree(b.map((v) => -v), b, a, c), { s: 0, x: 0, z: 0 });
});

test('native benchmarks on the CPU give positive figures; GPU-only ones say the build has no CUDA', { skip, timeout: 60_000 }, async () => {
  const q = { warmup: 1, iters: 3, maxSec: 0.1 };
  const g = await calibrateTask({ kind: 'gemm', dims: [64, 48, 32], ...q });
  assert.ok(g.medianUs > 0 && g.minUs > 0 && g.minUs <= g.medianUs && g.samples >= 3);
  const at = await calibrateTask({ kind: 'attention', dims: [1, 4, 2, 16, 8], ...q });
  assert.ok(at.value > 0 && at.value2 > 0, 'attention forward and backward');
  for (const name of ['rmsnorm', 'rotary', 'swiglu', 'add', 'loss']) {
    const k = await calibrateTask({ kind: 'kernel', name, dims: [16, 64], ...q });
    assert.ok(k.value > 0 && k.value2 > 0, name);
  }
  assert.ok((await calibrateTask({ kind: 'adamw', dims: [100_000], threads: 1, ...q })).value > 0);
  assert.ok((await calibrateTask({ kind: 'memcpy', bytes: 1 << 20, threads: 1, ...q })).value > 0);
  const d = await calibrateTask({ kind: 'disk', name: tmpdir(), bytes: 2 << 20, iters: 2, warmup: 0, maxSec: 1 });
  assert.ok(d.value > 0 && d.value2 > 0);
  const l = await calibrateTask({ kind: 'launch', ...q });
  assert.ok(l.value > 0 && l.value2 > 0);
  await assert.rejects(calibrateTask({ kind: 'copy', name: 'h2d', gpus: [0], bytes: 1024 }), /no CUDA/);
  await assert.rejects(calibrateTask({ kind: 'kernel', name: 'nope', dims: [4, 4] }), /unknown kernel 'nope'/);
  await assert.rejects(calibrateTask({ kind: 'gemm', dims: [0, 4, 4] }), /dims must be positive integers/);
});

test('live CPU loop: calibrate --quick, plan the tiny model on 2 CPU ranks, execute, compare', { skip, timeout: 400_000 }, () => {
  // CPU timing noise: a loop that misses the bound is run once more (calibrate, execute, compare)
  // before the test fails; both errors are printed
  const first = cpuLoop();
  if (Math.abs(first) <= CPU_LOOP_STEP_BOUND) return;
  const second = cpuLoop();
  assert.ok(Math.abs(second) <= CPU_LOOP_STEP_BOUND, `step-time error ${(first * 100).toFixed(1)}%, then ${(second * 100).toFixed(1)}%, exceeds the CPU loop bound ${CPU_LOOP_STEP_BOUND * 100}%`);
});

/** One loop; returns the step-time error. */
function cpuLoop(): number {
  const dir = mkdtempSync(join(tmpdir(), 'mmoc-calibrate-'));
  const profilePath = join(dir, 'cpu-calibrated.json');
  const rankThreads = Math.max(1, Math.floor(cpus().length / 2));
  const t0 = Date.now();
  const cal = mmoc('calibrate', '--quick', '--only', 'gemm,attention,kernels,cpu,overheads', '--model', 'tiny', '--seq', '32', '--mbs', '2',
    '--target', 'cpu', '--cpu-ranks', '2', '-o', profilePath, '--json');
  const calSeconds = (Date.now() - t0) / 1e3;
  assert.equal(cal.status, 0, cal.stderr);
  assert.ok(calSeconds < 30, `calibrate --quick took ${calSeconds} s`);
  assert.match(cal.stderr, /\[#+\.*\]/); // progress on stderr
  const out = JSON.parse(cal.stdout);
  assert.deepEqual(out.measurements.filter((m: { error?: string }) => m.error), []);
  const profile = parseHardwareProfile(JSON.parse(readFileSync(profilePath, 'utf8')), profilePath);
  assert.equal(profile.provenance.source, 'measured');
  assert.match(profile.provenance.how ?? '', /^mmoc calibrate --quick/);
  assert.match(profile.provenance.note ?? '', /torch .*node .*mmoc/);
  assert.equal(profile.gpus.kind, 'cpu');
  assert.equal(profile.gpus.count, 2);
  assert.ok((profile.compute.gemm?.fp32?.length ?? 0) >= 9, 'GEMMs at every tiny-model shape');
  assert.equal(profile.compute.attention?.fp32?.length, 1);
  assert.ok(profile.cpu.optimizers[0]!.points.length >= 1);
  assert.equal(profile.figures?.['overheads.per_instruction_us']?.source, 'measured');
  assert.equal(profile.figures?.['links.peer']?.source, 'measured');
  assert.equal(profile.figures?.['disks']?.source, 'estimate'); // not measured in this run: says so

  // plan (by hand: the executor runs one pipeline; `mmoc plan` may choose data parallelism)
  const parts = evenPartition(tiny.num_hidden_layers, 2);
  const plan = buildPlan({
    hardware: profilePath, model: tiny, precision: 'fp32', optimizer: defaultOptimizer(),
    job: { seq: 32, microBatchSize: 2, microBatches: 8, steps: 5, gpuMemCapBytes: null, seed: 1 },
    schedule: '1f1b', stageLayers: parts, pipelineRanks: 2, dataParallel: 1, rankDevice: [-1, -1],
    policy: parts.map(() => defaultPolicy(false)),
  });
  const planPath = join(dir, 'plan.json');
  writeFileSync(planPath, JSON.stringify(plan));
  const measured = join(dir, 'measured.json');
  // each rank gets cores / ranks intra-op threads, as calibrate measured them (no oversubscription)
  const ex = mmoc('execute', planPath, '--steps', '8', '--threads', String(rankThreads), '--trace', measured, '--json');
  assert.equal(ex.status, 0, ex.stderr);
  const r = mmoc('compare', planPath, measured, '--json');
  assert.equal(r.status, 0, r.stderr);
  const report = JSON.parse(r.stdout);
  // the fastest measured step (after the first), as calibrate fits the fastest repetitions:
  // work running beside the test only ever adds time
  const spans = new Map<number, [number, number]>();
  for (const e of JSON.parse(readFileSync(measured, 'utf8')).traceEvents) {
    if (e.ph !== 'X' || typeof e.args?.step !== 'number' || e.args.step < 1) continue;
    const sp = spans.get(e.args.step) ?? [Infinity, -Infinity];
    spans.set(e.args.step, [Math.min(sp[0], e.ts), Math.max(sp[1], e.ts + e.dur)]);
  }
  const fastest = Math.min(...[...spans.values()].map(([a, b]) => b - a)) / 1e6;
  const err = report.step_s.predicted / fastest - 1;
  const peaks = report.peak_bytes.map((p: { error: number | null; measured: number | null }) => (p.measured ? `${((p.error ?? 0) * 100).toFixed(0)}%` : 'not measured'));
  console.log(`CPU loop: calibrate --quick ${calSeconds.toFixed(1)} s; step predicted ${(report.step_s.predicted * 1e3).toFixed(1)} ms, ` +
    `measured ${(fastest * 1e3).toFixed(1)} ms fastest (${(report.step_s.measured * 1e3).toFixed(1)} ms median), error ${(err * 100).toFixed(1)}% ` +
    `(${(report.step_s.error * 100).toFixed(1)}% against the median; bound ${CPU_LOOP_STEP_BOUND * 100}% on the fastest); ` +
    `peak memory (not checked on CPU ranks) ${peaks.join(', ')}`);
  assert.ok(Number.isFinite(err));
  return err;
}
