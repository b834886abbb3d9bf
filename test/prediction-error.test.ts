// CI regression of predicted against measured: every committed bench result (bench/results/*.json,
// the bench-result format of ARCHITECTURE.md) is re-simulated with its committed profile and plans.
// A result qualifies when its profile was measured on that machine (`mmoc calibrate`: provenance
// source "measured"); for those, a plan fails the test when its step-time error exceeds 10% or a
// device's peak-memory error exceeds 5%, and the run fails when the predicted throughput ranking
// of its plans contradicts the measured one beyond ties within 3%. Results on datasheet or
// HARDWARE.md profiles are re-simulated and reported, not bounded. Runs that neither embed a plan
// nor name a plan file, executor ablations and failed runs are skipped with the reason.
// Goal (issue 7): step-time MAPE <= 5% and every peak-memory error <= 3%; bounds tighten as the
// model improves.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { benchResultFiles, evaluateBenchResult, formatEvaluation, PEAK_BOUND, STEP_BOUND, TIE, summary } from '../bench/gpu/matrix.ts';

const root = join(fileURLToPath(import.meta.url), '..', '..');

test('every committed bench result re-simulates within the bounds (10% step time, 5% peak memory, ranking beyond 3% ties)', () => {
  const files = benchResultFiles(root);
  const evals = files.map((f) => evaluateBenchResult(JSON.parse(readFileSync(f, 'utf8')), basename(f), root));
  for (const ev of evals) console.log(formatEvaluation(ev));
  const bounded = evals.filter((e) => e.qualifies && e.runs.length > 0);
  if (bounded.length === 0) {
    console.log(`no qualifying bench result yet (${files.length} files in bench/results/; none holds mmoc runs measured against a calibrated profile): nothing to bound`);
    return;
  }
  const failures: string[] = [];
  for (const ev of bounded) {
    for (const r of ev.runs) {
      if (Math.abs(r.step.error) > STEP_BOUND) failures.push(`${ev.source}: ${r.label}: step-time error ${(r.step.error * 100).toFixed(1)}% exceeds ${STEP_BOUND * 100}%`);
      r.peak.forEach((p, i) => {
        if (Math.abs(p.error) > PEAK_BOUND) failures.push(`${ev.source}: ${r.label}: device ${i} peak-memory error ${(p.error * 100).toFixed(1)}% exceeds ${PEAK_BOUND * 100}%`);
      });
    }
    for (const x of ev.ranking) failures.push(`${ev.source}: ranking beyond ${TIE * 100}% ties: ${x}`);
    const s = summary(ev);
    console.log(`${ev.source}: ${s.plans} plans bounded; step MAPE ${(s.stepMape * 100).toFixed(1)}%, peak MAPE ${(s.peakMape * 100).toFixed(1)}%`);
  }
  assert.deepEqual(failures, []);
});

test('the evaluation bounds a measured profile, reports a datasheet one, and skips runs without a plan', () => {
  const planFile = 'bench/gpu/plan-tiny-cuda-2r-fp32.json';
  const plan = JSON.parse(readFileSync(join(root, planFile), 'utf8'));
  const profile = JSON.parse(readFileSync(join(root, 'configs', 'hardware', 'h200x2.json'), 'utf8'));
  const result = (source: string, measuredStep: (predicted: number) => number) => {
    const base = evaluateBenchResult({ profile: { ...profile, provenance: { ...profile.provenance, source } }, results: [{ job: { model: 'tiny' }, runs: [{ system: 'mmoc', plan: { file: planFile }, measured: { step_s: 1, peak_gib: [1] } }] }] }, 'x', root);
    const pred = base.runs[0]!.step.predicted;
    return evaluateBenchResult({
      profile: { ...profile, provenance: { ...profile.provenance, source } },
      results: [{ job: { model: 'tiny' }, runs: [
        { system: 'mmoc', plan: { file: planFile }, measured: { step_s: measuredStep(pred), peak_gib: base.runs[0]!.peak.map((p) => p.predicted) } },
        { system: 'mmoc', plan: { name: 'no plan' }, measured: { step_s: 1 } },
        { system: 'torch-pipelining-1f1b', measured: { step_s: 1 } },
        { system: 'mmoc', plan: { plan }, measured: null, failed: 'rank 1 died' },
      ] }],
    }, 'synthetic', root);
  };
  const ok = result('measured', (p) => p * 1.05);
  assert.equal(ok.qualifies, true);
  assert.equal(ok.runs.length, 1);
  assert.ok(Math.abs(ok.runs[0]!.step.error + 0.0476) < 0.001, String(ok.runs[0]!.step.error));
  assert.ok(ok.runs[0]!.peak.every((p) => Math.abs(p.error) < 0.01));
  assert.deepEqual(ok.skipped.map((s) => s.reason.split(':')[0]), ['the result neither embeds its plan nor names a plan file in the repository', 'not measured']);
  const bad = result('measured', (p) => p * 1.5);
  assert.ok(Math.abs(bad.runs[0]!.step.error) > STEP_BOUND);
  assert.equal(result('datasheet', (p) => p).qualifies, false);
});
