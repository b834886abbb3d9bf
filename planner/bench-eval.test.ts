import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { embeddedProfile, evaluateBenchResult, summary, STEP_BOUND } from './bench-eval.ts';

const root = join(fileURLToPath(import.meta.url), '..', '..');
const committed = JSON.parse(readFileSync(join(root, 'bench', 'results', '2026-11-23-matrix-h200-2.json'), 'utf8'));

test('a bench result with its profile and plans embedded re-simulates without any file: every run paired with its measurement', () => {
  const ev = evaluateBenchResult(committed, 'r.json');
  assert.equal(ev.qualifies, true);
  assert.equal(ev.runs.length, 14);
  assert.deepEqual(ev.skipped, []);
  const s = summary(ev);
  assert.ok(s.stepWorst <= STEP_BOUND && s.peaks === 14);
});

test('a measured step moved by 20% shows as a 20% error, and a contradicting pair in the ranking', () => {
  const moved = structuredClone(committed);
  const run = moved.results[0].runs[2]; // LLaMA-3.2-1B 1F1B 4 x 2, the fastest plan of its job
  run.measured.step_s *= 1.6;
  run.measured.tokens_per_s /= 1.6;
  const ev = evaluateBenchResult(moved, 'moved.json');
  const r = ev.runs.find((x) => x.label.endsWith(run.plan.name))!;
  assert.ok(r.step.error < -0.35, `${r.step.error}`);
  assert.ok(ev.ranking.some((x) => x.includes(run.plan.name)));
});

test('a profile given by name is resolved only through the caller; without one the result says so', () => {
  const named = { ...committed, profile: 'h200x2' };
  const ev = evaluateBenchResult(named, 'named.json');
  assert.equal(ev.runs.length, 0);
  assert.match(ev.reason, /profile "h200x2" is not embedded/);
  assert.equal(embeddedProfile(undefined).why, 'no profile');
});
