import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { buildPlan, defaultOptimizer } from './plan-build.ts';
import { defaultPolicy, evenPartition } from './memory.ts';
import { parsePlan } from './plan-schema.ts';
import { simulatePlan, planMemory } from './lower.ts';
import { schedulePasses } from './schedules.ts';
import type { Fractions, ScheduleName, StagePolicy } from './plan-types.ts';
import type { ModelConfig } from './model-config.ts';
import { tiny } from './test-models.ts';
import { profile } from '../test/planner-fixtures.ts';

// 14 decoder layers: up to 8 pipeline ranks, and 2 virtual stages on up to 8 ranks.
const model: ModelConfig = { ...tiny, name: 'tiny14', num_hidden_layers: 14 };
const F = (gpu: number, cpu: number, disk = 0): Fractions => ({ gpu, cpu, disk });

const policyArb = fc.record({
  recompute: fc.boolean(),
  opt: fc.constantFrom(F(1, 0), F(0.5, 0.5), F(0, 1), F(0, 0.5, 0.5), F(0, 0, 1), F(0.25, 0.25, 0.5)),
  params: fc.constantFrom(1, 0.5, 0),
  grads: fc.constantFrom(1, 0),
  actCpu: fc.constantFrom(0, 0.5, 1),
  prefetch: fc.integer({ min: 1, max: 3 }),
});

function policyOf(p: { recompute: boolean; opt: Fractions; params: number; grads: number; actCpu: number; prefetch: number }, dp: number): StagePolicy {
  const streamed = p.params < 1 || p.grads < 1;
  const opt = streamed && p.opt.gpu > 0 ? F(0, p.opt.cpu + p.opt.gpu, p.opt.disk) : p.opt;
  return {
    ...defaultPolicy(p.recompute),
    params: F(p.params, 1 - p.params),
    grads: dp > 1 ? F(1, 0) : F(p.grads, 1 - p.grads),
    optState: opt, master: opt,
    activations: p.recompute ? F(1 - p.actCpu, p.actCpu) : F(1, 0),
    prefetchDepth: p.prefetch,
  };
}

const caseArb = fc.record({
  schedule: fc.constantFrom<ScheduleName>('gpipe', '1f1b', 'interleaved-1f1b'),
  N: fc.integer({ min: 1, max: 8 }),
  M: fc.integer({ min: 1, max: 64 }),
  dp: fc.constantFrom(1, 1, 2),
  pol: policyArb,
  perStage: fc.boolean(),
  pol2: policyArb,
  clip: fc.boolean(),
  delayed: fc.boolean(),
});

test('every generator yields programs that validate and that sim runs without deadlock (1-8 stages, 1-64 micro-batches, every offload combination), with the memory model\'s peak', () => {
  const prof = profile('h200x8');
  fc.assert(fc.property(caseArb, (c) => {
    const N = c.schedule === 'interleaved-1f1b' ? Math.max(2, c.N) : c.N;
    const v = c.schedule === 'interleaved-1f1b' ? 2 : 1;
    const D = N * c.dp <= 8 ? c.dp : 1;
    const M = c.schedule === 'interleaved-1f1b' ? Math.max(N, Math.floor(c.M / N) * N) : c.M;
    const parts = evenPartition(model.num_hidden_layers, N * v);
    const plan = buildPlan({
      hardware: prof.id, model, precision: 'bf16-mixed', optimizer: { ...defaultOptimizer(), gradClip: c.clip ? 1 : null, delayedUpdate: c.delayed },
      job: { seq: 64, microBatchSize: 1, microBatches: M, steps: 1, gpuMemCapBytes: null, seed: 0 },
      schedule: c.schedule, stageLayers: parts, pipelineRanks: N, dataParallel: D,
      rankDevice: Array.from({ length: N * D }, (_, i) => i),
      policy: parts.map((_, i) => policyOf(c.perStage && i % 2 ? c.pol2 : c.pol, D)),
      diskPaths: ['/nvme0/mmoc', '/nvme1/mmoc'],
    });
    parsePlan(JSON.parse(JSON.stringify(plan)), 'generated.json');
    const sim = simulatePlan(plan, prof, { criticalPath: false });
    assert.ok(sim.step_s > 0 && Number.isFinite(sim.step_s));
    const mem = planMemory(plan, prof);
    for (let r = 0; r < N; r++) assert.equal(sim.peak_bytes[r], mem.devices[r]!.total, `rank ${r} peak`);
  }), { numRuns: 150, seed: 42 });
});

test('1F1B keeps at most K - stage micro-batches in flight; GPipe all M', () => {
  for (const [sched, M, K] of [['1f1b', 8, 4], ['gpipe', 8, 4], ['1f1b', 2, 4]] as const) {
    for (let r = 0; r < K; r++) {
      let live = 0, peak = 0;
      for (const p of schedulePasses(sched, K, 1, M, r)) { live += p.kind === 'F' ? 1 : -1; peak = Math.max(peak, live); }
      assert.equal(peak, sched === 'gpipe' ? M : Math.min(M, K - r));
    }
  }
});

test('interleaved 1F1B runs every (micro-batch, chunk) once and backward after forward', () => {
  const N = 4, v = 2, M = 8;
  for (let r = 0; r < N; r++) {
    const passes = schedulePasses('interleaved-1f1b', N, v, M, r);
    assert.equal(passes.length, 2 * M * v);
    const seen = new Set<string>();
    for (const p of passes) {
      const k = `${p.mb}:${p.stage}`;
      if (p.kind === 'F') { assert.ok(!seen.has(k)); seen.add(k); } else assert.ok(seen.has(k));
      assert.equal(p.stage % N, r);
    }
  }
});

test('a no-offload 7B pipeline: GPipe and 1F1B reach the same step time, 1F1B with less memory', async () => {
  const { llama2_7b } = await import('./test-models.ts');
  const prof = profile('h200x2');
  const mk = (schedule: ScheduleName) => {
    const parts = evenPartition(32, 2);
    return buildPlan({
      hardware: prof.id, model: llama2_7b, precision: 'bf16-mixed', optimizer: defaultOptimizer(),
      job: { seq: 1024, microBatchSize: 1, microBatches: 8, steps: 1, gpuMemCapBytes: null, seed: 0 },
      schedule, stageLayers: parts, pipelineRanks: 2, dataParallel: 1, rankDevice: [0, 1], policy: parts.map(() => defaultPolicy(false)),
    });
  };
  const g = simulatePlan(mk('gpipe'), prof), f = simulatePlan(mk('1f1b'), prof);
  assert.ok(Math.abs(g.step_s - f.step_s) / g.step_s < 0.02, `${g.step_s} vs ${f.step_s}`);
  assert.ok(Math.max(...f.peak_bytes) < Math.max(...g.peak_bytes));
});
