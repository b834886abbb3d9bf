// Writes calibrate's executor host-update probe (probePlan's `hostUpdate` variant: LLaMA-3.2-1B's
// layers, AdamW on the host, delayed) for one rank as calibrate runs it (GPipe) and as the matrix's
// host plans schedule it (1F1B), so that a GPU run can time both beside a matrix plan
// (bench/gpu/run-host-update-1g.sh).
//   node --import tsx bench/gpu/dump-host-probe-plans.ts <out dir>
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { probePlan, probeShapeOf } from '../../executor/calibrate.ts';
import { buildPlan, defaultOptimizer } from '../../planner/plan-build.ts';
import { defaultPolicy, evenPartition } from '../../planner/memory.ts';
import { llama32_1b } from '../../planner/test-models.ts';
const out = process.argv[2]!;
mkdirSync(out, { recursive: true });
const shape = probeShapeOf(llama32_1b, 1024, 2, 12);
const gpipe = probePlan(true, 'probe', 8, 1, 2, { hostUpdate: true }, shape, 4);
writeFileSync(join(out, 'probe-1b12-gpipe.json'), JSON.stringify(gpipe));
const host = { ...defaultPolicy(false), master: { gpu: 0, cpu: 1, disk: 0 }, optState: { gpu: 0, cpu: 1, disk: 0 } };
for (const [name, model] of [['probe-1b12-1f1b', shape.model], ['probe-1b16-1f1b', llama32_1b]] as const) {
  const stageLayers = evenPartition(model.num_hidden_layers, 1);
  writeFileSync(join(out, `${name}.json`), JSON.stringify(buildPlan({
    hardware: 'probe', model, precision: 'bf16-mixed', optimizer: { ...defaultOptimizer(), delayedUpdate: true },
    job: { seq: shape.seq, microBatchSize: 2, microBatches: 4, steps: 8, gpuMemCapBytes: null, seed: 7 },
    schedule: '1f1b', stageLayers, pipelineRanks: 1, dataParallel: 1, rankDevice: [0], policy: stageLayers.map(() => host),
  })));
}
console.log(`wrote ${out}/probe-1b12-gpipe.json, probe-1b12-1f1b.json, probe-1b16-1f1b.json`);
