// The bundled tiny model on 2 CPU ranks, 1F1B, everything resident: the plan CLI tests execute.
import { buildPlan, defaultOptimizer } from '../planner/plan-build.ts';
import { defaultPolicy, evenPartition } from '../planner/memory.ts';
import { tiny } from '../planner/test-models.ts';
import type { Plan } from '../planner/plan-types.ts';

export function tinyCpuPlan(job: { seq: number; microBatchSize: number; microBatches: number; steps: number }): Plan {
  const parts = evenPartition(tiny.num_hidden_layers, 2);
  return buildPlan({
    hardware: 'cpu', model: tiny, precision: 'fp32', optimizer: defaultOptimizer(),
    job: { ...job, gpuMemCapBytes: null, seed: 1 },
    schedule: '1f1b', stageLayers: parts, pipelineRanks: 2, dataParallel: 1, rankDevice: [-1, -1],
    policy: parts.map(() => defaultPolicy(false)),
  });
}
