import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { repoRoot, resolveModel } from './model-files.ts';
import * as models from '../planner/test-models.ts';

function mmoc(...args: string[]) {
  const r = spawnSync(process.execPath, [join(repoRoot, 'bin', 'mmoc.js'), ...args], { cwd: repoRoot, encoding: 'utf8', env: { ...process.env, MMOC_FROM_SOURCE: '1' } });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

test('mmoc memory --json gives the LLaMA-2-7B breakdown in bytes: 16 bytes a parameter of state', () => {
  const r = mmoc('memory', '--model', 'llama2-7b', '--json');
  assert.equal(r.code, 0, r.err);
  const j = JSON.parse(r.out);
  assert.equal(j.params, 6_738_415_616);
  const d = j.memory.devices[0];
  assert.equal(d.weights + d.gradients + d.masterWeights + d.optimizerStates, 16 * 6_738_415_616);
  assert.equal(j.memory.peak, d.total);
});

test('mmoc memory splits stages and reports host and disk for offloaded states', () => {
  const r = mmoc('memory', '--model', 'llama2-7b', '--stages', '2', '--microbatches', '8', '--optim', 'cpu:0.5,disk:0.5', '--json');
  assert.equal(r.code, 0, r.err);
  const j = JSON.parse(r.out);
  assert.equal(j.memory.devices.length, 2);
  assert.deepEqual(j.memory.devices.map((d: { activations: { inFlight: number } }) => d.activations.inFlight), [2, 1]);
  assert.ok(j.memory.disk.total > 0 && j.memory.hostTotal > 0);
  assert.equal(j.memory.devices[0].optimizerStates, 0);
});

test('mmoc memory --recompute keeps every layer input and one layer of activations (by layer, the default); --recompute stage the stage input and the whole stage', () => {
  const run = (...a: string[]) => {
    const r = mmoc('memory', '--model', 'llama2-7b', '--stages', '2', '--microbatches', '8', '--schedule', 'gpipe', '--json', ...a);
    assert.equal(r.code, 0, r.err);
    return JSON.parse(r.out).memory.devices[1] as { activations: { perMicroBatch: number }; temporary: { recompute: number } };
  };
  const byLayer = run('--recompute'), byStage = run('--recompute', 'stage');
  assert.equal(byLayer.activations.perMicroBatch, 17 * byStage.activations.perMicroBatch); // 16 decoder layers and the head
  assert.ok(byLayer.temporary.recompute * 10 < byStage.temporary.recompute);
});

test('mmoc memory prints a human table in GiB by default', () => {
  const r = mmoc('memory', '--model', 'tiny', '--stages', '2');
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /GiB per device/);
  assert.match(r.out, /rank 1 \[3,6\)/);
  assert.match(r.out, /peak per device/);
});

test('mmoc memory --schedule interleaved-1f1b counts activations in flight as the planner does (off the schedule)', async () => {
  const { buildPlan, defaultOptimizer } = await import('../planner/plan-build.ts');
  const { defaultPolicy, evenPartition, memoryModel } = await import('../planner/memory.ts');
  const r = mmoc('memory', '--model', 'llama2-7b', '--stages', '2', '--schedule', 'interleaved-1f1b', '--virtual-stages', '2', '--microbatches', '4', '--json');
  assert.equal(r.code, 0, r.err);
  const j = JSON.parse(r.out);
  assert.equal(j.job.virtualStages, 2);
  assert.deepEqual(j.job.layers, evenPartition(32, 4));
  const parts = evenPartition(32, 4), policy = parts.map(() => defaultPolicy(false));
  const plan = buildPlan({
    hardware: 'x', model: models.llama2_7b, precision: 'bf16-mixed', optimizer: defaultOptimizer(),
    job: { seq: 1024, microBatchSize: 1, microBatches: 4, steps: 1, gpuMemCapBytes: null, seed: 0 },
    schedule: 'interleaved-1f1b', stageLayers: parts, pipelineRanks: 2, dataParallel: 1, rankDevice: [0, 1], policy,
  });
  const want = memoryModel({
    model: models.llama2_7b, precision: 'bf16-mixed', optimizer: 'adamw', mbs: 1, seq: 1024, microBatches: 4, schedule: 'interleaved-1f1b',
    stages: parts.map((layers, i) => ({ layers, rank: i % 2 })), pipelineRanks: 2, dataParallel: 1, policy, overheadBytes: 0,
    diskPaths: 1, diskConcurrency: 2, program: plan.program,
  });
  assert.deepEqual(j.memory.devices.map((d: { activations: unknown }) => d.activations), want.devices.map((d) => d.activations));
  assert.deepEqual(j.memory.devices.map((d: { stages: number[] }) => d.stages), [[0, 2], [1, 3]]);
  assert.equal(j.memory.peak, want.peak);
});

const bad: [string[], string][] = [
  [['--model', 'nope'], '--model: "nope" is neither a bundled model'],
  [['--model', 'llama2-7b', '--precision', 'fp8'], '--precision: "fp8" must be one of bf16-mixed, fp32, bf16'],
  [['--model', 'llama2-7b', '--optimizer', 'lion'], '--optimizer: "lion" must be one of adamw, sgd'],
  [['--model', 'llama2-7b', '--mbs', '0'], '--mbs: "0" must be a positive integer'],
  [['--model', 'llama2-7b', '--stages', '40'], '--stages: 40 stages exceed the model\'s 34 layers'],
  [['--model', 'llama2-7b', '--optim', 'gpu:0.5,cpu:0.6'], '--optim: fractions in "gpu:0.5,cpu:0.6" add up to 1.1, not 1'],
  [['--model', 'llama2-7b', '--params', 'nvme'], '--params: "nvme" is not a tier'],
  [['--model', 'llama2-7b', '--params', 'disk'], '--params: parameters cannot live on disk'],
  [['--model', 'llama2-7b', '--activations', 'cpu'], '--activations: offloading activations needs recompute'],
  [['--model', 'llama2-7b', '--params', 'cpu'], '--optim: streamed parameters (params gpu < 1) need the optimizer update on the host'],
  [['--model', 'llama2-7b', '--schedule', 'zb'], '--schedule: "zb" must be one of gpipe, 1f1b'],
  [['--model', 'llama2-7b', '--virtual-stages', '2'], '--virtual-stages: 1f1b runs one stage a rank'],
  [['--model', 'llama2-7b', '--stages', '2', '--schedule', 'interleaved-1f1b', '--microbatches', '3'], '--microbatches: interleaved-1f1b needs the micro-batches (3) to be a multiple of the stages (2)'],
  [['--model', 'llama2-7b', '--seq', '8192'], '--seq: 8192 exceeds the model\'s max_position_embeddings (4096)'],
  [['--model', 'llama2-7b', '--overhead', 'lots'], '--overhead: "lots" is not a size'],
  [['--model', 'llama2-7b', '--recompute', 'often'], '--recompute: "often" must be "layer" or "stage"'],
  [[], '--model is required'],
];
for (const [args, msg] of bad) {
  test(`mmoc memory ${args.join(' ')} exits 2 with "${msg}"`, () => {
    const r = mmoc('memory', ...args);
    assert.equal(r.code, 2);
    assert.ok(r.err.includes(msg), r.err);
    assert.equal(r.out, '');
  });
}

test('planner test models mirror configs/models', () => {
  for (const [name, m] of [['llama2-7b', models.llama2_7b], ['llama2-13b', models.llama2_13b], ['llama3.2-1b', models.llama32_1b], ['tiny', models.tiny]] as const) {
    const c = resolveModel(name).config;
    for (const k of ['hidden_size', 'intermediate_size', 'num_hidden_layers', 'num_attention_heads', 'num_key_value_heads', 'head_dim', 'vocab_size', 'tie_word_embeddings'] as const) {
      assert.equal(m[k], c[k], `${name}.${k}`);
    }
  }
});
