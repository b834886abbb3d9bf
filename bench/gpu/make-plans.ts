// Writes the plans the GPU runs use (bench/gpu/run.sh): until `mmoc plan` lands they are built
// here through planner/plan-build.ts, resident (no offload), and validated by planner/plan-schema.
//   node --import tsx bench/gpu/make-plans.ts
import { writeFileSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildPlan, defaultOptimizer } from '../../planner/plan-build.ts';
import { defaultPolicy, evenPartition } from '../../planner/memory.ts';
import { parsePlan } from '../../planner/plan-schema.ts';
import { llama2_7b, tiny } from '../../planner/test-models.ts';
import type { ModelConfig } from '../../planner/model-config.ts';
import type { Precision, ScheduleName } from '../../planner/plan-types.ts';

const here = dirname(fileURLToPath(import.meta.url));

function write(name: string, model: ModelConfig, o: { N: number; M: number; seq: number; schedule: ScheduleName; precision: Precision; steps: number; hardware: string }) {
  const parts = evenPartition(model.num_hidden_layers, o.N);
  const plan = buildPlan({
    hardware: o.hardware, model, precision: o.precision, optimizer: { ...defaultOptimizer(), lr: 1e-5 },
    job: { seq: o.seq, microBatchSize: 1, microBatches: o.M, steps: o.steps, gpuMemCapBytes: null, seed: 1 },
    schedule: o.schedule, stageLayers: parts, pipelineRanks: o.N, dataParallel: 1,
    rankDevice: Array.from({ length: o.N }, (_, i) => i), policy: parts.map(() => defaultPolicy(false)),
  });
  parsePlan(JSON.parse(JSON.stringify(plan)), name);
  writeFileSync(join(here, name), JSON.stringify(plan, null, 1) + '\n');
}

// The benchmark job: LLaMA-2-7B, 2 GPUs, sequence 1024, 8 micro-batches of 1 (8192 tokens), 1F1B.
write('plan-llama2-7b-1f1b.json', llama2_7b, { N: 2, M: 8, seq: 1024, schedule: '1f1b', precision: 'bf16-mixed', steps: 6, hardware: 'h200x2' });
// A short CUDA check of the whole path (NCCL p2p, fused AdamW, CUDA-event trace) on the tiny model.
write('plan-tiny-cuda-2r.json', tiny, { N: 2, M: 4, seq: 64, schedule: '1f1b', precision: 'bf16-mixed', steps: 5, hardware: 'h200x2' });
write('plan-tiny-cuda-1r.json', tiny, { N: 1, M: 4, seq: 64, schedule: 'gpipe', precision: 'fp32', steps: 5, hardware: 'h200x2' });
write('plan-tiny-cuda-2r-fp32.json', tiny, { N: 2, M: 4, seq: 64, schedule: '1f1b', precision: 'fp32', steps: 5, hardware: 'h200x2' });
