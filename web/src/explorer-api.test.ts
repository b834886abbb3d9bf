import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { join, basename } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { fileURLToPath } from 'node:url';
import { createExplorerApi, type SearchRequest } from './explorer-api.ts';
import { parsePlan } from '../../planner/plan-schema.ts';

const root = join(fileURLToPath(import.meta.url), '..', '..', '..');
const dirJson = (d: string) => Object.fromEntries(readdirSync(join(root, d)).filter((f) => f.endsWith('.json')).map((f) => [basename(f, '.json'), JSON.parse(readFileSync(join(root, d, f), 'utf8'))]));
const api = createExplorerApi({ models: dirJson('configs/models'), profiles: dirJson('configs/hardware') });
const req: SearchRequest = { model: 'llama2-7b', hardware: 'h200x2', gpus: 2, seq: 1024, globalBatch: 8, capGiB: 40, offload: true, disk: true, delayedUpdate: false };
const GiB = 2 ** 30;

test('the explorer offers the bundled models and profiles', () => {
  const o = api.options();
  assert.ok(o.models.includes('llama2-7b') && o.models.includes('tiny'));
  assert.ok(o.hardware.some((h) => h.id === 'h200x2' && h.gpus === 2));
});

test('a search returns a Pareto front, faster with more memory, under the cap, and any point simulates with its timeline and memory curve', () => {
  const ticks: number[] = [];
  const r = api.search(req, (done) => ticks.push(done));
  assert.ok(r.pareto.length >= 2 && ticks.length > 0);
  for (let i = 1; i < r.pareto.length; i++) {
    assert.ok(r.pareto[i]!.peak_bytes >= r.pareto[i - 1]!.peak_bytes);
    assert.ok(r.pareto[i]!.step_s < r.pareto[i - 1]!.step_s);
  }
  assert.equal(r.best, r.pareto.length - 1);
  for (const q of r.pareto) assert.ok(q.peak_bytes <= 40 * GiB);
  const v = api.view(0);
  assert.ok(Math.abs(v.step_s - r.pareto[0]!.step_s) < 1e-9, `${v.step_s} against the front's ${r.pareto[0]!.step_s}`);
  const ops = new Set(v.trace.lanes.flatMap((l) => l.slices.map((s) => s.op)));
  for (const op of ['forward', 'backward']) assert.ok(ops.has(op), op);
  const gpuMem = v.trace.memory.filter((m) => m.process.startsWith('gpu'));
  assert.equal(gpuMem.length, 2);
  // the memory curve's peak is the predicted peak
  for (let d = 0; d < 2; d++) assert.ok(Math.abs(gpuMem[d]!.peak_bytes - v.peak_bytes[d]!) / v.peak_bytes[d]! < 0.01, `${gpuMem[d]!.peak_bytes} against ${v.peak_bytes[d]}`);
  assert.equal(v.cap_bytes, 40 * GiB);
  // the point's plan file: a valid plan (as mmoc plan -o writes) that simulates to the same step
  const file = JSON.parse(api.planJson(0));
  assert.equal(parsePlan(file, 'download.json').layout.pipelineRanks, r.pareto[0]!.pipelineRanks);
  assert.ok(Math.abs(file.prediction.step_s - v.step_s) < 1e-9);
  assert.ok(Math.abs(api.viewPlan(file, 'download.json').step_s - v.step_s) < 1e-9);
});

test('a cap nothing fits under answers with the planner\'s reason and the smallest changes, and no front', () => {
  const r = api.search({ ...req, capGiB: 1 });
  assert.equal(r.pareto.length, 0);
  assert.equal(r.best, -1);
  assert.ok(r.infeasible && r.infeasible.reason.length > 0 && r.infeasible.suggestions.length > 0);
  assert.throws(() => api.view(0), /Pareto point 0: the last search has 0/);
});

test('bad requests are refused with the field named', () => {
  assert.throws(() => api.search({ ...req, model: 'gpt5' }), /model: "gpt5" is not bundled/);
  assert.throws(() => api.search({ ...req, gpus: 3 }), /GPUs: 3 asked, profile h200x2 has 2/);
  assert.throws(() => api.search({ ...req, capGiB: -1 }), /memory cap/);
  assert.throws(() => api.search({ ...req, seq: 1.5 }), /sequence length/);
});

test('a committed GPU run opens as predicted against measured: the report and one step side by side', () => {
  const dir = join(root, 'bench', 'gpu', 'matrix-2026-11-23e-h200');
  const name = 'llama2-7b-1g-gpipe-mbs1x8-rc';
  const plan = JSON.parse(readFileSync(join(dir, 'plans', `${name}.json`), 'utf8'));
  const measured = JSON.parse(gunzipSync(readFileSync(join(dir, 'runs', `${name}.trace.json.gz`))).toString('utf8'));
  const profile = JSON.parse(readFileSync(join(dir, 'profile.json'), 'utf8'));
  // the plan's profile (calibrated on the GPU machine) is not bundled: without the profile file, the message says so
  assert.throws(() => api.compare(plan, 'plan.json', measured, 'measured.json'), /plan.json: hardware: no hardware profile ".*profile.json" here .* open the profile file too/);
  const c = api.compare(plan, 'plan.json', measured, 'measured.json', profile);
  assert.ok(Math.abs(c.report.step_s.error!) < 0.1);
  const procs = new Set(c.trace.lanes.map((l) => l.process));
  assert.ok([...procs].some((p) => p.startsWith('predicted: ')) && [...procs].some((p) => p.startsWith('measured: ')));
  const v = api.viewPlan(plan, 'plan.json', profile);
  assert.ok(Math.abs(v.step_s - c.report.step_s.predicted) < 1e-9);
  assert.throws(() => api.compare(plan, 'plan.json', { nope: 1 }, 'm.json', profile), /m.json: not a Chrome trace/);
});

test('a calibrated profile and a model config the user opens become searchable; a malformed one names its file and field', () => {
  const fresh = createExplorerApi({ models: {}, profiles: {} });
  const prof = JSON.parse(readFileSync(join(root, 'bench', 'gpu', 'matrix-2026-11-23e-h200', 'profile.json'), 'utf8'));
  const id = fresh.addProfile(prof, 'profile.json');
  const name = fresh.addModel(JSON.parse(readFileSync(join(root, 'configs', 'models', 'llama3.2-1b.json'), 'utf8')), 'config.json', 'my-1b');
  assert.deepEqual(fresh.options().models, ['my-1b']);
  assert.equal(fresh.options().hardware[0]!.id, id);
  assert.equal(fresh.options().hardware[0]!.measured, true);
  const r = fresh.search({ ...req, model: name, hardware: id, gpus: 1, capGiB: 24 });
  assert.ok(r.pareto.length >= 1 && r.pareto.every((q) => q.peak_bytes <= 24 * GiB));
  assert.throws(() => fresh.addProfile({ ...prof, gpus: { ...prof.gpus, count: -1 } }, 'bad.json'), /bad\.json.*gpus\.count/);
  assert.throws(() => fresh.addModel({ hidden_size: 'x' }, 'cfg.json', 'm'), /cfg\.json/);
});

test('a committed bench result opens with its plans re-simulated as the CI test does, within its bounds', () => {
  const json = JSON.parse(readFileSync(join(root, 'bench', 'results', '2026-11-23-matrix-h200-2.json'), 'utf8'));
  const b = api.bench(json, '2026-11-23-matrix-h200-2.json');
  assert.equal(b.summary.plans, 14);
  assert.ok(b.within && b.summary.stepMape < 0.05 && b.summary.peakWorst < 0.03);
  assert.match(b.title, /1x NVIDIA H200/);
  // one of its plans: the step the measurement was compared with, with its timeline
  const run = b.evaluation.runs.find((r) => r.label.endsWith('llama2-7b-1g-gpipe-mbs1x8-rc'))!;
  const v = api.benchPlan(run.label);
  assert.ok(Math.abs(v.step_s - run.step.predicted) < 1e-9);
  assert.ok(v.trace.lanes.some((l) => l.slices.some((x) => x.op === 'backward')));
  assert.throws(() => api.benchPlan('nope'), /no run "nope"/);
  assert.throws(() => api.bench({ date: 'x' }, 'x.json'), /x.json: not a bench result/);
  assert.throws(() => api.bench({ results: [], profile: 'h200x2' }, 'y.json'), /y.json: no run to re-simulate \(profile "h200x2" is not embedded\)/);
});

test('view before any search says what to do', () => {
  const fresh = createExplorerApi({ models: {}, profiles: {} });
  assert.throws(() => fresh.view(0), /no search yet/);
});
