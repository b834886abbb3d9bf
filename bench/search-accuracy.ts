// Search-fidelity accuracy: the step time the search estimates for a plan (planner/search.ts
// estimateStep: one replica, coarse lowering, a short run plus the analytic period) against the
// full simulation of the same plan, on a sample of LLaMA-2-13B / h200x8 configurations (every
// schedule, several layouts, micro-batch sizes 1 and 4, offload levels 0, 4, 5, 7, 8, host or disk
// tier, prefetch 1 and 4, with and without the delayed update; every other one of the grid).
//   node --import tsx bench/search-accuracy.ts     (from the repository root)
// Prints the count, mean / median / worst absolute error and the configurations over 5%.
import { readFileSync } from 'node:fs';
import { parseHardwareProfile } from '../sim/index.ts';
import { parseModelConfig } from '../planner/model-config.ts';
import { balancedPartition, estimateStep, levelPolicy } from '../planner/search.ts';
import { buildPlan, defaultOptimizer } from '../planner/plan-build.ts';
import { simulatePlan } from '../planner/lower.ts';
import { getInventory } from '../planner/inventory.ts';
const prof = parseHardwareProfile(JSON.parse(readFileSync('configs/hardware/h200x8.json','utf8')), 'x');
const model = parseModelConfig(JSON.parse(readFileSync('configs/models/llama2-13b.json','utf8')), 'x', 'llama2-13b');
const rows: number[] = []; const bad: string[] = [];
let k = 0;
for (const [schedule, N, D] of [['1f1b', 8, 1], ['1f1b', 4, 2], ['gpipe', 2, 4], ['interleaved-1f1b', 8, 1], ['interleaved-1f1b', 4, 2], ['1f1b', 1, 8], ['1f1b', 2, 1]] as const)
for (const mbs of [1, 4]) for (const level of [0, 4, 5, 7, 8]) for (const tier of ['cpu', 'disk'] as const) for (const prefetch of level >= 7 ? [1, 4] : [1]) for (const delayed of level >= 1 ? [false, true] : [false]) {
  if (level === 0 && tier !== 'cpu') continue;
  if (k++ % 2) continue; // sample
  const v = schedule === 'interleaved-1f1b' ? 2 : 1;
  const recompute = level >= 7;
  const inv = getInventory(model, 'bf16-mixed', mbs, 1024);
  const parts = balancedPartition(Array.from({ length: 42 }, () => 1), N * v);
  const rankDevice = [0, 1, 2, 3, 4, 5, 6, 7].slice(0, N * D);
  const M = 64 / D / mbs;
  if (schedule === 'interleaved-1f1b' && M % N) continue;
  const planFor = (m: number) => buildPlan({
    hardware: prof.id, model, precision: 'bf16-mixed', optimizer: { ...defaultOptimizer(), delayedUpdate: delayed },
    job: { seq: 1024, microBatchSize: mbs, microBatches: m, steps: 1, gpuMemCapBytes: null, seed: 0 }, schedule, stageLayers: parts,
    pipelineRanks: N, dataParallel: D, rankDevice, policy: parts.map(() => levelPolicy(level, recompute, tier, prefetch, D)), inventory: inv,
    diskPaths: prof.disks.map((d) => d.path), diskConcurrency: 2,
  });
  const full = simulatePlan(planFor(M), prof, { criticalPath: false, hostMemory: false }).step_s;
  const est = estimateStep(planFor, prof, { N, D, v, M, delayed, rankDevice, inventory: inv });
  const e = est / full - 1;
  rows.push(Math.abs(e));
  if (Math.abs(e) > 0.05) bad.push(`${schedule} ${N}x${D} mbs ${mbs} L${level} ${tier} pf${prefetch} ${delayed ? 'delayed' : ''}: ${(e * 100).toFixed(1)}%`);
}
rows.sort((a, b) => a - b);
console.log('configurations', rows.length, 'mean', (rows.reduce((a, b) => a + b, 0) / rows.length * 100).toFixed(2) + '%', 'median', (rows[rows.length >> 1]! * 100).toFixed(2) + '%', 'worst', (rows[rows.length - 1]! * 100).toFixed(1) + '%', 'within5', rows.filter((x) => x <= 0.05).length);
for (const b of bad) console.log(b);
process.stdout.on('error', () => {});
