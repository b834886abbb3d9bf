import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildPlan, defaultOptimizer } from './plan-build.ts';
import { defaultPolicy, evenPartition } from './memory.ts';
import { tiny } from './test-models.ts';
import type { Plan, ScheduleName, StagePolicy } from './plan-types.ts';
import { earlyUpdateLayers } from './early-update.ts';
import { simulatePlan } from './lower.ts';
import { profile } from '../test/planner-fixtures.ts';

function plan(N: number, o: { sched?: ScheduleName; v?: number; clip?: number | null; pol?: (p: StagePolicy) => StagePolicy } = {}): Plan {
  const parts = evenPartition(tiny.num_hidden_layers, N * (o.v ?? 1));
  return buildPlan({
    hardware: 'x', model: tiny, precision: 'bf16-mixed', optimizer: { ...defaultOptimizer(), gradClip: o.clip ?? null },
    job: { seq: 32, microBatchSize: 1, microBatches: 4, steps: 1, gpuMemCapBytes: null, seed: 1 },
    schedule: o.sched ?? '1f1b', stageLayers: parts, pipelineRanks: N, dataParallel: 1, rankDevice: Array.from({ length: N }, (_, i) => i),
    policy: parts.map(() => (o.pol ?? ((x) => x))(defaultPolicy(false))),
  });
}
const early = (p: Plan, r: number) => [...earlyUpdateLayers(p.program.ranks[r]!, r, p.layout.stages, p.model.num_hidden_layers)].sort((a, b) => a - b);

test('early update: the first stage of a pipeline (its last backward sends nothing) updates its decoder layers early; a stage that sends its input gradient does not', () => {
  const p = plan(2);
  assert.deepEqual(early(p, 0), [1, 2], 'rank 0: layers 1..2 (not the embedding)');
  assert.deepEqual(early(p, 1), [], 'rank 1 sends its last gradient to rank 0');
  const one = plan(1, { sched: 'gpipe' });
  assert.deepEqual(early(one, 0), [1, 2, 3, 4], 'one rank: every decoder layer, not the head');
  // interleaved: rank 0 holds stages 0 and 2; only stage 0's last backward sends nothing
  const il = plan(2, { sched: 'interleaved-1f1b', v: 2 });
  const s0 = il.layout.stages[0]!.layers;
  assert.deepEqual(early(il, 0), Array.from({ length: s0[1] - Math.max(1, s0[0]) }, (_, i) => Math.max(1, s0[0]) + i));
  assert.deepEqual(early(il, 1), []);
});

test('early update: none with gradient clipping (grad_norm), host or partial updates, and none when turned off', () => {
  assert.deepEqual(early(plan(2, { clip: 1.0 }), 0), []);
  assert.deepEqual(early(plan(2, { pol: (x) => ({ ...x, master: { gpu: 0, cpu: 1, disk: 0 }, optState: { gpu: 0, cpu: 1, disk: 0 } }) }), 0), []);
  assert.deepEqual(early(plan(2, { pol: (x) => ({ ...x, master: { gpu: 0.5, cpu: 0.5, disk: 0 }, optState: { gpu: 0.5, cpu: 0.5, disk: 0 } }) }), 0), []);
  const p = plan(2);
  assert.equal(earlyUpdateLayers(p.program.ranks[0]!, 0, p.layout.stages, tiny.num_hidden_layers, { off: true }).size, 0);
  assert.deepEqual([...earlyUpdateLayers(p.program.ranks[1]!, 1, p.layout.stages, tiny.num_hidden_layers, { all: true })].sort(), [3, 4], 'MMOC_EARLY_UPDATE_ALL: the send rule off');
});

test('early update in the simulator: an early layer\'s step has no interpreter cost and pays profile.update_overlap\'s share; other layers keep the full cost', () => {
  const prof = profile('h200x2');
  const p = plan(2);
  const stepUs = (pr: typeof prof, r: number, layer: number) => {
    const s = simulatePlan(p, pr, { criticalPath: false });
    const pc = p.program.ranks[r]!.findIndex((x) => x.op === 'optimizer_step' && x.layer === layer);
    const t = s.lowered.taskOf[r]![pc]!;
    return s.result.end_us[t]! - s.result.start_us[t]!;
  };
  const full = stepUs(prof, 1, 3), early1 = stepUs(prof, 0, 1);
  const inv = prof.overheads.per_instruction_us;
  assert.ok(Math.abs(full - early1 - inv) < 1e-6 * full + 1e-6, `same layer size: the early one lacks the interpreter cost (${full} vs ${early1}, ${inv} us)`);
  const half = { ...prof, update_overlap: [{ params_per_layer: 1e6, shown: 0.5 }] };
  assert.ok(Math.abs(stepUs(half, 0, 1) - early1 / 2) < 1e-6 * early1, 'half of it paid');
  assert.ok(Math.abs(stepUs(half, 1, 3) - full) < 1e-6 * full, 'a layer not updated early pays all');
});
