import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parsePlan } from './plan-schema.ts';
import { buildPlan, defaultOptimizer } from './plan-build.ts';
import { defaultPolicy, evenPartition } from './memory.ts';
import { tiny } from './test-models.ts';
import type { Plan, ScheduleName } from './plan-types.ts';

function plan(schedule: ScheduleName = '1f1b', N = 2, M = 4, v = 1, D = 1): Plan {
  const parts = evenPartition(tiny.num_hidden_layers, N * v);
  return buildPlan({
    hardware: 'cpu', model: tiny, precision: 'fp32', optimizer: defaultOptimizer(),
    job: { seq: 32, microBatchSize: 2, microBatches: M, steps: 5, gpuMemCapBytes: null, seed: 1 },
    schedule, stageLayers: parts, pipelineRanks: N, dataParallel: D,
    rankDevice: Array.from({ length: N * D }, () => -1), policy: parts.map(() => defaultPolicy(false)),
  });
}

/** A deep copy of a valid plan, edited by `edit`, validated; returns the error message. */
function errorOf(edit: (p: any) => void, base: Plan = plan()): string {
  const p = JSON.parse(JSON.stringify(base));
  edit(p);
  try {
    parsePlan(p, 'plan.json');
  } catch (e) {
    return (e as Error).message;
  }
  return '(no error)';
}

test('generated plans validate: gpipe, 1f1b, interleaved, data parallel', () => {
  for (const p of [plan('gpipe'), plan('1f1b'), plan('interleaved-1f1b', 2, 4, 2), plan('1f1b', 2, 4, 1, 2)]) {
    const q = parsePlan(JSON.parse(JSON.stringify(p)), 'plan.json');
    assert.equal(q.program.ranks.length, p.program.ranks.length);
  }
});

const cases: [string, (p: any) => void, string][] = [
  ['a non-boolean disk alternation', (p) => { p.policy.diskAlternate = 'yes'; }, 'plan.json: policy.diskAlternate: "yes" must be true or false'],
  ['an empty stage', (p) => { p.layout.stages[1].layers = [3, 3]; }, 'plan.json: layout.stages[1].layers: [3, 3] is empty'],
  ['a gap between stages', (p) => { p.layout.stages[1].layers = [4, 6]; }, 'plan.json: layout.stages[1].layers: [4, 6] must start at layer 3 (stages cover layers 0..5 contiguously, in order)'],
  ['stages that stop short', (p) => { p.layout.stages[1].layers = [3, 5]; }, 'plan.json: layout.stages: cover layers 0..4 but the model has layers 0..5'],
  ['a stage past the head', (p) => { p.layout.stages[1].layers = [3, 7]; }, 'plan.json: layout.stages[1].layers: [3, 7] goes past the last layer (5: the head of a 4-layer model)'],
  ['a wrong stage rank', (p) => { p.layout.stages[1].rank = 0; }, 'plan.json: layout.stages[1].rank: 0 must be 1 (rank r holds stages r, r+2, ...)'],
  ['fractions not adding to 1', (p) => { p.policy.stages[0].optState = { gpu: 0.5, cpu: 0.25, disk: 0 }; }, 'plan.json: policy.stages[0].optState: gpu 0.5 + cpu 0.25 + disk 0 = 0.75, must add up to 1'],
  ['a fraction above 1', (p) => { p.policy.stages[0].grads.gpu = 2; }, 'plan.json: policy.stages[0].grads.gpu: 2 must be between 0 and 1'],
  ['a misspelt field', (p) => { p.policy.stages[0].recompte = true; }, 'plan.json: policy.stages[0]: unknown field "recompte"'],
  ['a missing field', (p) => { delete p.job.seq; }, 'plan.json: job.seq: is required'],
  ['a bad version', (p) => { p.version = 7; }, 'plan.json: version: 7 is not a plan version this mmoc reads (expected 1)'],
  ['an unknown op', (p) => { p.program.ranks[0][0] = { op: 'jump' }; }, 'plan.json: program.ranks[0][0].op: "jump" is not an instruction'],
  ['a micro-batch out of range', (p) => { p.program.ranks[0][0].mb = 9; }, 'plan.json: program.ranks[0][0].mb: 9 is not a micro-batch (job.microBatches is 4)'],
  ['a stage of another rank', (p) => { p.program.ranks[0][0].stage = 1; }, 'plan.json: program.ranks[0][0].stage: stage 1 runs on pipeline rank 1, not on rank 0 (pipeline rank 0)'],
  ['a layer of another rank', (p) => { p.program.ranks[0].unshift({ op: 'offload_grads', layer: 5 }); }, 'plan.json: program.ranks[0][0].layer: layer 5 belongs to stage 1 on pipeline rank 1, not to rank 0'],
  ['a send without its receive', (p) => { p.program.ranks[1] = p.program.ranks[1].filter((x: any) => !(x.op === 'recv_act' && x.mb === 2)); },
    'send of activations of micro-batch 2 from stage 0 (rank 0) to stage 1 (rank 1) has no matching receive'],
  ['a receive without its send', (p) => { p.program.ranks[1] = p.program.ranks[1].filter((x: any) => !(x.op === 'send_grad' && x.mb === 3)); },
    'plan.json: program.ranks[0][14]: receive of gradients of micro-batch 3 from stage 1 (rank 1) to stage 0 (rank 0) has no matching send'],
  ['a wrong peer', (p) => { const x = p.program.ranks[0].find((i: any) => i.op === 'send_act'); x.peer = 0; }, 'peer: 0 must be 1, the rank of stage 1'],
  ['a missing backward', (p) => { p.program.ranks[0] = p.program.ranks[0].filter((x: any) => !(x.op === 'backward' && x.mb === 1)); },
    'plan.json: program.ranks[0]: runs backward of micro-batch 1 on stage 0 0 times (must be once)'],
  ['too few rank programs', (p) => { p.program.ranks.pop(); }, 'plan.json: program.ranks: has 1 rank programs; pipelineRanks x dataParallel = 2'],
  ['two ranks on one GPU', (p) => { p.layout.rankDevice = [0, 0]; }, 'plan.json: layout.rankDevice[1]: device 0 is already used by rank 0'],
  ['params on disk', (p) => { p.policy.stages[1].params = { gpu: 0, cpu: 0, disk: 1 }; }, 'plan.json: policy.stages[1].params: parameters cannot live on disk'],
  ['disk state without paths', (p) => { p.policy.stages[1].optState = { gpu: 0, cpu: 0, disk: 1 }; p.policy.stages[1].master = { gpu: 0, cpu: 0, disk: 1 }; }, 'plan.json: policy.stages[1].optState: puts state on disk but policy.diskPaths is empty'],
  ['seq beyond the model', (p) => { p.job.seq = 1024; }, 'plan.json: job.seq: 1024 exceeds the model\'s max_position_embeddings (512)'],
  ['a bad model', (p) => { p.model.num_key_value_heads = 3; }, 'plan.json: model: num_key_value_heads (3) must divide num_attention_heads (4)'],
  ['interleaving with gpipe', (p) => { p.schedule = 'gpipe'; }, 'plan.json: layout.virtualStages: gpipe runs one stage per rank (got 2); use interleaved-1f1b'],
];
for (const [what, edit, msg] of cases) {
  test(`the validator names the file and field for ${what}`, () => {
    const base = what === 'interleaving with gpipe' ? plan('interleaved-1f1b', 2, 4, 2) : plan();
    const m = errorOf(edit, base);
    assert.ok(m.includes(msg), `got: ${m}`);
  });
}
