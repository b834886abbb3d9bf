// What each rank is told to run under: the per-GPU cap (the plan's, or the automatic one of a plan
// that streams weights), on the plan mmoc plan wrote for issue 6's first target.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parsePlan } from '../planner/plan-schema.ts';
import type { Plan } from '../planner/plan-types.ts';
import { AUTO_CAP_HEADROOM, gpuCapOf, rankConfig } from './rank-config.ts';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const load = (f: string): Plan => parsePlan(JSON.parse(readFileSync(join(root, f), 'utf8')), f);
const rv = (rank: number) => ({ rank, world: 2, masterAddr: '127.0.0.1', masterPort: 1, statusPath: '' });

test('a plan that streams weights runs capped at its predicted peak plus the headroom; --no-auto-cap lifts it; the plan\'s own cap wins', () => {
  const p = load('bench/gpu/plan-llama2-7b-1f1b-t1-planned.json');
  const peaks = p.prediction!.peak_bytes;
  assert.ok(p.job.gpuMemCapBytes === null && p.policy.stages.every((s) => s.params.gpu === 0));
  for (const r of [0, 1]) {
    assert.equal(gpuCapOf(p, r), Math.ceil(peaks[r]! * (1 + AUTO_CAP_HEADROOM)));
    assert.equal(rankConfig(p, rv(r), {}).gpuMemCapBytes, gpuCapOf(p, r));
    assert.equal(rankConfig(p, rv(r), { autoCap: false }).gpuMemCapBytes, 0);
  }
  const capped = load('bench/gpu/plan-llama2-7b-1f1b-t1-planned-cap8.5.json');
  assert.equal(gpuCapOf(capped, 0), 8.5 * 2 ** 30);
  assert.equal(gpuCapOf(capped, 0, { autoCap: false }), 8.5 * 2 ** 30);
});

test('a plan whose weights stay on the GPU, or without a prediction, runs uncapped', () => {
  const p = load('bench/gpu/plan-llama2-7b-1f1b-t1-planned.json');
  const resident: Plan = { ...p, policy: { ...p.policy, stages: p.policy.stages.map((s) => ({ ...s, params: { gpu: 1, cpu: 0, disk: 0 } })) } };
  assert.equal(gpuCapOf(resident, 0), 0);
  const { prediction: _, ...bare } = p;
  assert.equal(gpuCapOf(bare as Plan, 0), 0);
});
