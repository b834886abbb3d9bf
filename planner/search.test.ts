import { test } from 'node:test';
import assert from 'node:assert/strict';
import { balancedPartition, levelPolicy, LEVELS, search } from './search.ts';
import { buildPlan, defaultOptimizer } from './plan-build.ts';
import { memoryModel } from './memory.ts';
import { planMemory, profileOverheadBytes, simulatePlan } from './lower.ts';
import { getInventory } from './inventory.ts';
import type { ModelConfig } from './model-config.ts';
import type { Plan } from './plan-types.ts';
import { llama2_7b, llama2_13b, tiny } from './test-models.ts';
import { profile } from '../test/planner-fixtures.ts';

const GiB = 1024 ** 3;

test('balancedPartition minimises the heaviest stage over contiguous splits', () => {
  assert.deepEqual(balancedPartition([5, 1, 1, 1, 1, 5], 2), [[0, 3], [3, 6]]);
  assert.deepEqual(balancedPartition([9, 1, 1, 1, 1, 1], 2), [[0, 1], [1, 6]]);
  assert.deepEqual(balancedPartition([1, 1, 1], 3), [[0, 1], [1, 2], [2, 3]]);
});

test('no cap: the plan keeps everything on the GPU', () => {
  const r = search({ model: llama2_7b, profile: profile('h200x2'), gpus: 2, gpuMemCapBytes: null, seq: 1024, globalBatch: 8 });
  assert.ok(r.best);
  for (const p of r.best!.policy.stages) {
    assert.equal(p.params.gpu, 1); assert.equal(p.grads.gpu, 1); assert.equal(p.optState.gpu, 1); assert.equal(p.activations.gpu, 1);
  }
  assert.equal(r.counts.simulated + r.counts.pruned, r.counts.considered);
  assert.ok(r.pareto.length >= 1 && r.top.length >= 2 && r.runnerUp);
});

test('a cap too small for everything on the GPU: the plan offloads, and stays under the cap', () => {
  const cap = 40 * GiB;
  const prof = profile('h200x2');
  const r = search({ model: llama2_7b, profile: prof, gpus: 2, gpuMemCapBytes: cap, seq: 1024, globalBatch: 8 });
  assert.ok(r.best);
  assert.ok(r.best!.policy.stages.some((p) => p.optState.gpu < 1), 'some optimizer state leaves the GPU');
  assert.ok(r.counts.pruned > 0);
  for (const b of r.best!.prediction!.peak_bytes) assert.ok(b <= cap, `${b} over the cap`);
  // every plan on the front fits too
  for (const q of r.pareto) assert.ok(q.peak_bytes <= cap);
});

test('with paretoPlans, every Pareto point comes with a plan that simulates to its step time and peak', () => {
  const prof = profile('h200x2');
  const r = search({ model: llama2_7b, profile: prof, gpus: 2, gpuMemCapBytes: 40 * GiB, seq: 1024, globalBatch: 8, paretoPlans: true });
  assert.ok(r.paretoPlans && r.paretoPlans.length === r.pareto.length && r.pareto.length >= 2);
  for (let i = 0; i < r.pareto.length; i++) {
    const q = r.pareto[i]!;
    const plan: Plan = r.paretoPlans![i]!;
    assert.equal(plan.schedule, q.schedule);
    assert.equal(plan.job.microBatchSize, q.microBatchSize);
    assert.deepEqual(plan.layout.stages.map((s) => s.layers), q.stageLayers);
    assert.ok(Math.max(...planMemory(plan, prof).devices.map((d) => d.total)) <= 40 * GiB);
  }
  assert.equal(search({ model: tiny, profile: profile('cpu'), gpus: 2, gpuMemCapBytes: null, seq: 64, globalBatch: 8 }).paretoPlans, undefined);
});

test('a cap below what even full offload needs: the infeasibility answer with the smallest changes', () => {
  const r = search({ model: llama2_7b, profile: profile('h200x2'), gpus: 2, gpuMemCapBytes: 3 * GiB, seq: 4096, globalBatch: 8, allowDisk: false });
  assert.equal(r.best, null);
  assert.ok(r.infeasible);
  assert.match(r.infeasible!.reason, /even the leanest plan needs .* over the 3\.0 GiB cap/);
  assert.ok(r.counts.considered > 0 && r.counts.pruned === r.counts.considered && r.counts.simulated === 0);
  const kinds = r.infeasible!.suggestions.map((s) => s.change);
  assert.ok(kinds.includes('larger-cap'));
  assert.ok(kinds.includes('more-gpus') || kinds.includes('shorter-seq'));
  const capS = r.infeasible!.suggestions.find((s) => s.change === 'larger-cap')!;
  assert.ok(capS.value > 3 * GiB);
});

test('where GPUs share a host link, the mapping separates the transfer-heavy stages', () => {
  // l20x4: GPUs 0,1 behind one PCIe switch, 2,3 behind another. Two heavily offloading stages.
  const prof = profile('l20x4');
  const r = search({ model: llama2_7b, profile: prof, gpus: 2, gpuMemCapBytes: 12 * GiB, seq: 1024, globalBatch: 8, allowDisk: false });
  assert.ok(r.best);
  const devs = r.best!.layout.rankDevice;
  const groupOf = (g: number) => prof.links.host_groups.findIndex((h) => h.gpus.includes(g));
  if (r.best!.layout.pipelineRanks * r.best!.layout.dataParallel === 2) {
    assert.notEqual(groupOf(devs[0]!), groupOf(devs[1]!), `ranks on GPUs ${devs} share a host link`);
  }
  // And the separated mapping is predicted faster than the shared one for the same plan.
  const shared = { ...r.best!, layout: { ...r.best!.layout, rankDevice: [0, 1] } };
  const apart = { ...r.best!, layout: { ...r.best!.layout, rankDevice: [0, 2] } };
  assert.ok(simulatePlan(apart, prof).step_s < simulatePlan(shared, prof).step_s);
});

test('where no GPUs share a host link beyond the whole host, mapping is irrelevant to the prediction', () => {
  const prof = profile('h200x4'); // one host group holding all four GPUs
  const r = search({ model: llama2_7b, profile: prof, gpus: 2, gpuMemCapBytes: 24 * GiB, seq: 1024, globalBatch: 8, allowDisk: false });
  assert.ok(r.best);
  const a = simulatePlan({ ...r.best!, layout: { ...r.best!.layout, rankDevice: [0, 1] } }, prof).step_s;
  const b = simulatePlan({ ...r.best!, layout: { ...r.best!.layout, rankDevice: [3, 2] } }, prof).step_s;
  assert.equal(a, b);
});

test('the tiny model plans on the cpu profile (2 CPU ranks, rankDevice -1)', () => {
  const r = search({ model: tiny, profile: profile('cpu'), gpus: 2, gpuMemCapBytes: null, seq: 128, globalBatch: 8 });
  assert.ok(r.best);
  assert.deepEqual(r.best!.layout.rankDevice, [-1, -1]);
  assert.equal(r.best!.precision, 'fp32');
});

test('on a small space the search finds the same optimum as brute force', () => {
  // 6 decoder layers, 2 GPUs, a cap that forces offload on some layouts. Brute force: every
  // contiguous 2-way partition, every micro-batch size, recompute on/off, every pair of per-rank
  // offload levels, gpipe and 1f1b, and 1 stage x 2 replicas.
  const model: ModelConfig = { ...llama2_7b, name: 'small', num_hidden_layers: 6 };
  const prof = profile('h200x2');
  const cap = 9 * GiB, gb = 4, seq = 1024;
  const r = search({ model, profile: prof, gpus: 2, gpuMemCapBytes: cap, seq, globalBatch: gb, schedules: ['1f1b', 'gpipe'], allowDisk: false });
  assert.ok(r.best);
  let best = Infinity;
  const nLayers = 8;
  for (const mbs of [1, 2, 4]) {
    for (const recompute of [false, true]) {
      const inv = getInventory(model, 'bf16-mixed', mbs, seq);
      const layouts: { N: number; D: number; parts: [number, number][]; sched: ('1f1b' | 'gpipe')[] }[] = [{ N: 1, D: 2, parts: [[0, nLayers]], sched: ['1f1b'] }];
      for (let c = 1; c < nLayers; c++) layouts.push({ N: 2, D: 1, parts: [[0, c], [c, nLayers]], sched: ['1f1b', 'gpipe'] });
      for (const lay of layouts) {
        const M = gb / lay.D / mbs;
        if (!Number.isInteger(M) || M < 1) continue;
        for (const schedule of lay.sched) {
          const levelSets: number[][] = [];
          for (let a = 0; a < LEVELS.length; a++) for (let b = 0; b < LEVELS.length; b++) levelSets.push(lay.N === 1 ? [a] : [a, b]);
          for (const levels of levelSets) {
            if (lay.N === 1 && levels.length !== 1) continue;
            const policy = lay.parts.map((_, s) => levelPolicy(levels[s]!, recompute, 'cpu', 1, lay.D));
            const mem = memoryModel({
              model, precision: 'bf16-mixed', optimizer: 'adamw', mbs, seq, microBatches: M, schedule, stages: lay.parts.map((layers, i) => ({ layers, rank: i })),
              pipelineRanks: lay.N, dataParallel: lay.D, policy, overheadBytes: profileOverheadBytes(prof), allocatorOverheadFraction: prof.overheads.allocator_overhead_fraction, inventory: inv,
            });
            if (mem.peak > cap || mem.hostTotal > prof.cpu.memory_bytes * 0.9) continue;
            const plan = buildPlan({
              hardware: prof.id, model, precision: 'bf16-mixed', optimizer: defaultOptimizer(),
              job: { seq, microBatchSize: mbs, microBatches: M, steps: 1, gpuMemCapBytes: cap, seed: 0 }, schedule, stageLayers: lay.parts,
              pipelineRanks: lay.N, dataParallel: lay.D, rankDevice: [0, 1].slice(0, lay.N * lay.D), policy, inventory: inv,
            });
            best = Math.min(best, simulatePlan(plan, prof, { criticalPath: false }).step_s);
          }
        }
      }
    }
  }
  assert.ok(r.best!.prediction!.step_s <= best * (1 + 1e-9), `search ${r.best!.prediction!.step_s} vs brute force ${best}`);
  assert.ok(planMemory(r.best!, prof).peak <= cap);
});

test('the search-fidelity estimate stays within 5% of the full simulation for pipelines with and without optimizer offload', async () => {
  const { estimateStep } = await import('./search.ts');
  const prof = profile('h200x8');
  const worst: string[] = [];
  for (const [schedule, N, D, mbs, level] of [
    ['1f1b', 8, 1, 1, 0], ['1f1b', 8, 1, 2, 4], ['gpipe', 4, 2, 1, 2], ['interleaved-1f1b', 4, 2, 1, 0], ['1f1b', 2, 4, 1, 4], ['1f1b', 1, 8, 1, 1],
  ] as const) {
    const v = schedule === 'interleaved-1f1b' ? 2 : 1;
    const inv = getInventory(llama2_13b, 'bf16-mixed', mbs, 1024);
    const parts = balancedPartition(Array.from({ length: 42 }, () => 1), N * v);
    const rankDevice = [0, 1, 2, 3, 4, 5, 6, 7].slice(0, N * D);
    const M = 64 / D / mbs;
    const planFor = (m: number) => buildPlan({
      hardware: prof.id, model: llama2_13b, precision: 'bf16-mixed', optimizer: defaultOptimizer(),
      job: { seq: 1024, microBatchSize: mbs, microBatches: m, steps: 1, gpuMemCapBytes: null, seed: 0 }, schedule, stageLayers: parts,
      pipelineRanks: N, dataParallel: D, rankDevice, policy: parts.map(() => levelPolicy(level, false, 'cpu', 1, D)), inventory: inv,
    });
    const full = simulatePlan(planFor(M), prof, { criticalPath: false }).step_s;
    const est = estimateStep(planFor, prof, { N, D, v, M, delayed: false, rankDevice, inventory: inv });
    if (Math.abs(est / full - 1) > 0.05) worst.push(`${schedule} ${N}x${D} mbs ${mbs} level ${level}: ${est} vs ${full}`);
  }
  assert.deepEqual(worst, []);
});
