import { test } from 'node:test';
import assert from 'node:assert/strict';
import { bytesPerParam, defaultPolicy, evenPartition, memoryModel, ncclExtraBytes, passProgram, residentLayers, type MemoryJob } from './memory.ts';
import { llama2_7b, tiny } from './test-models.ts';
import type { StagePolicy } from './plan-types.ts';

const P7 = 6_738_415_616;
const T = 1024, h = 4096, I = 11008, V = 32000;

function job7b(over: Partial<MemoryJob> & { K?: number } = {}): MemoryJob {
  const K = over.K ?? 1;
  const parts = evenPartition(32, K);
  return {
    model: llama2_7b, precision: 'bf16-mixed', optimizer: 'adamw', mbs: 1, seq: 1024, microBatches: 1,
    schedule: '1f1b', stages: parts.map((layers, rank) => ({ layers, rank })), pipelineRanks: K, dataParallel: 1,
    policy: parts.map(() => defaultPolicy(false)), ...over,
  };
}

test('bytes a parameter: 16 for mixed AdamW and fp32 AdamW, 8 for pure bf16, 12 for mixed SGD', () => {
  const sum = (b: ReturnType<typeof bytesPerParam>) => b.weight + b.grad + b.master + b.opt;
  assert.equal(sum(bytesPerParam('bf16-mixed', 'adamw')), 16);
  assert.equal(sum(bytesPerParam('fp32', 'adamw')), 16);
  assert.equal(sum(bytesPerParam('bf16', 'adamw')), 8);
  assert.equal(sum(bytesPerParam('bf16-mixed', 'sgd')), 12);
  assert.equal(sum(bytesPerParam('fp32', 'sgd')), 12);
});

test('LLaMA-2-7B on one GPU, mixed AdamW: 16 bytes a parameter of state, activations and workspaces hand-computed', () => {
  const r = memoryModel(job7b());
  const d = r.devices[0]!;
  assert.equal(d.weights, 2 * P7);
  assert.equal(d.gradients, 2 * P7);
  assert.equal(d.masterWeights, 4 * P7);
  assert.equal(d.optimizerStates, 8 * P7);
  assert.equal(d.weights + d.gradients + d.masterWeights + d.optimizerStates, 107_814_649_856);
  // 10 T*h: x, norm1 out, q|k (2), the q|k|v GEMM output kept by the view v (3), attn out,
  // residual, norm2 out; 4 T*I: gate|up (2), silu(gate), the product
  const layer = (10 * T * h + 4 * T * I) * 2 + 2 * T * 4 + 32 * 1024 * 4; // 174,202,880
  assert.equal(layer, 174_202_880);
  // the head keeps cross_entropy's fp32 log-probabilities (T x V x 4), not the bf16 logits
  const head = 2 * T * h * 2 + T * V * 4 + T * 4 * 2 + T * 8; // 16,777,216 + 131,072,000 + 8,192 + 8,192 = 147,865,600
  assert.equal(head, 147_865_600);
  const embed = T * 8;
  assert.equal(d.activations.perMicroBatch, 32 * layer + head + embed);
  assert.equal(d.activations.inFlight, 1);
  // the forward's bf16 logits + fp32 copy (2 + 4 bytes a logit), then the backward's second fp32
  // gradient (4), which fits in none of their freed blocks: 10 bytes a logit stay reserved
  assert.equal(d.temporary.lossWorkspace, T * V * 10);
  // backward workspace: a decoder layer's (T * (2h + 2I) * 2 = 62,128,128); the embedding's dense
  // vocab x hidden bf16 gradient (V * h * 2 = 262,144,000) comes at the end of a micro-batch's
  // backward, when the stage's kept activations (5.6 GB here) are freed: it adds nothing
  assert.equal(d.temporary.backward, T * (2 * h + 2 * I) * 2);
  assert.equal(d.temporary.comm, 0);
  // one micro-batch: its activations (5.6 GB) before the backward, then every gradient (13.5 GB)
  // after it, never both
  assert.equal(d.activations.withGradients, 2 * P7);
  assert.equal(d.total, 107_814_649_856 + T * V * 10 + T * (2 * h + 2 * I) * 2);
  assert.equal(r.hostTotal, 0);
  assert.equal(r.disk.total, 0);
});

test('GPipe keeps M micro-batches in flight on every stage, 1F1B min(M, K - stage)', () => {
  const g = memoryModel(job7b({ K: 4, microBatches: 8, schedule: 'gpipe' }));
  assert.deepEqual(g.devices.map((d) => d.activations.inFlight), [8, 8, 8, 8]);
  const f = memoryModel(job7b({ K: 4, microBatches: 8, schedule: '1f1b' }));
  assert.deepEqual(f.devices.map((d) => d.activations.inFlight), [4, 3, 2, 1]);
  const few = memoryModel(job7b({ K: 4, microBatches: 2, schedule: '1f1b' }));
  assert.deepEqual(few.devices.map((d) => d.activations.inFlight), [2, 2, 2, 1]);
  assert.equal(f.devices[1]!.activations.bytes, 3 * f.devices[1]!.activations.perMicroBatch);
});

test('gradients exist from a stage\'s first backward: GPipe\'s end of the forwards holds none, 1F1B\'s steady state all', () => {
  const G = (d: { stageGradients: number[] }) => d.stageGradients.reduce((a, b) => a + b, 0);
  // GPipe, 2 stages x 4 micro-batches of 2: the peak is the larger of the forwards' end (4 kept, no
  // gradients) and the first backward's end (3 kept and every gradient)
  const g = memoryModel(job7b({ K: 2, mbs: 2, microBatches: 4, schedule: 'gpipe' }));
  for (const d of g.devices) {
    const k = d.activations.perMicroBatch;
    assert.equal(G(d), d.gradients);
    assert.equal(d.activations.withGradients, Math.max(4 * k, 3 * k + d.gradients));
    assert.ok(d.activations.withGradients < d.activations.bytes + d.gradients);
  }
  // 1F1B with micro-batches left after the first backward: in flight again, now with the gradients
  const f = memoryModel(job7b({ K: 2, mbs: 1, microBatches: 8, schedule: '1f1b' }));
  assert.deepEqual(f.devices.map((d) => d.activations.withGradients), f.devices.map((d) => d.activations.bytes + d.gradients));
  // walked off the program (as for interleaving) it agrees with the closed form
  for (const [sched, mbs, M] of [['gpipe', 2, 4], ['1f1b', 1, 8], ['1f1b', 1, 2]] as const) {
    const j = job7b({ K: 2, mbs, microBatches: M, schedule: sched });
    const closed = memoryModel(j), walked = memoryModel({ ...j, program: passProgram(sched, 2, 1, M) });
    assert.deepEqual(walked.devices.map((d) => d.activations.withGradients), closed.devices.map((d) => d.activations.withGradients), `${sched} ${mbs} x ${M}`);
  }
});

test('recompute by stage keeps only the stage input per micro-batch and reserves one micro-batch of full activations', () => {
  const parts = evenPartition(32, 2);
  const r = memoryModel(job7b({ K: 2, microBatches: 8, schedule: 'gpipe', policy: parts.map(() => ({ ...defaultPolicy(true), recomputeUnit: 'stage' as const })) }));
  const d1 = r.devices[1]!;
  assert.equal(d1.activations.perMicroBatch, T * h * 2);
  assert.equal(d1.activations.bytes, 8 * T * h * 2);
  const layer = 174_202_880, head = 147_865_600; // the head's kept log-probabilities in fp32 (test above)
  assert.equal(d1.temporary.recompute, 16 * layer + head);
  assert.equal(r.devices[0]!.activations.perMicroBatch, T * 8); // token ids
});

test('recompute by layer (the default) keeps every layer input per micro-batch and reserves one layer of full activations', () => {
  const parts = evenPartition(32, 2);
  assert.equal(defaultPolicy(true).recomputeUnit, 'layer');
  const r = memoryModel(job7b({ K: 2, microBatches: 8, schedule: 'gpipe', policy: parts.map(() => defaultPolicy(true)) }));
  const d1 = r.devices[1]!;
  // stage 1 holds decoder layers 17..32 and the head: 17 layer inputs of T x h bf16
  assert.equal(d1.activations.perMicroBatch, 17 * T * h * 2);
  assert.equal(d1.activations.bytes, 8 * 17 * T * h * 2);
  const layer = 174_202_880, head = 147_865_600;
  assert.equal(d1.temporary.recompute, Math.max(layer, head));
  // the embedding's input is the token ids, then 16 decoder layer inputs
  assert.equal(r.devices[0]!.activations.perMicroBatch, T * 8 + 16 * T * h * 2);
  // at 8 micro-batches of GPipe in flight the stage's peak is lower by layer than by stage
  const byStage = memoryModel(job7b({ K: 2, microBatches: 8, schedule: 'gpipe', policy: parts.map(() => ({ ...defaultPolicy(true), recomputeUnit: 'stage' as const })) }));
  assert.ok(d1.activations.bytes + d1.temporary.recompute < byStage.devices[1]!.activations.bytes + byStage.devices[1]!.temporary.recompute);
});

test('optimizer and master on the CPU leave 4 bytes a parameter on the GPU and put 16 on the host', () => {
  const cpu = { gpu: 0, cpu: 1, disk: 0 };
  const p: StagePolicy = { ...defaultPolicy(false), master: cpu, optState: cpu };
  const r = memoryModel(job7b({ policy: [p] }));
  const d = r.devices[0]!;
  assert.equal(d.weights + d.gradients, 4 * P7);
  assert.equal(d.masterWeights + d.optimizerStates, 0);
  const host = r.hostPerRank[0]!;
  assert.equal(host.masterWeights, 4 * P7);
  assert.equal(host.optimizerStates, 8 * P7);
  assert.equal(host.gradients, 2 * P7); // gradients land on the host for the CPU update
  assert.equal(host.weights, 2 * P7); // the updated bf16 weights, written on the host, then uploaded
  assert.equal(r.hostTotal, 16 * P7);
});

test('host AdamW: set-up builds one layer at a time and moves its host part out before the next (native settleLayer): the transient is one layer\'s fp32 master beyond the resident weights, not every layer\'s', () => {
  const cpu = { gpu: 0, cpu: 1, disk: 0 };
  const rc: StagePolicy = { ...defaultPolicy(true), master: cpu, optState: cpu };
  const d = memoryModel(job7b({ policy: [rc] })).devices[0]!;
  // the largest layer of a stage holding embedding or head: vocab x hidden = 131,072,000 params; a
  // decoder layer 202,383,360: the transient is the larger one's 4-byte master on top of the weights
  assert.equal(d.load, d.weights + 4 * 202_383_360, 'weights + one decoder layer\'s fp32 master');
  assert.ok(d.load < 6 * P7 / 2, 'far below building every master first (6 bytes a parameter)');
  // training is the peak again
  assert.equal(d.total, Math.max(d.load, d.weights + d.masterWeights + d.optimizerStates + d.activations.withGradients + d.temporary.total) + d.overhead);
  // a split layer: its device part's master and states are training's, plus one whole master
  const split = { gpu: 0.5, cpu: 0.5, disk: 0 };
  const ds = memoryModel(job7b({ policy: [{ ...rc, master: split, optState: split }] })).devices[0]!;
  assert.equal(ds.load, ds.weights + ds.masterWeights + ds.optimizerStates + 4 * 202_383_360);
  // all on the GPU, or fp32: no transient beyond training
  assert.equal(memoryModel(job7b()).devices[0]!.load, 0);
  assert.equal(memoryModel(job7b({ precision: 'fp32', policy: [{ ...defaultPolicy(false), master: { gpu: 0, cpu: 0, disk: 0 }, optState: cpu }] })).devices[0]!.load, 0);
});

test('optimizer states on disk: disk holds master + m + v, the host only staging buffers', () => {
  const disk = { gpu: 0, cpu: 0, disk: 1 };
  const p: StagePolicy = { ...defaultPolicy(false), master: disk, optState: disk };
  const r = memoryModel({ ...job7b({ policy: [p] }), diskPaths: 2, diskConcurrency: 2 });
  assert.equal(r.disk.total, 12 * P7);
  // Staging: paths * concurrency + 1 groups of the largest group (a decoder layer, 202,383,360
  // parameters, 12 bytes each of master + m + v).
  assert.equal(r.hostPerRank[0]!.buffers, 5 * 12 * 202_383_360);
});

test('ZeRO-1 shards master weights and optimizer states over the data-parallel replicas', () => {
  const r = memoryModel(job7b({ dataParallel: 4, zero1: true }));
  const d = r.devices[0]!;
  assert.ok(Math.abs(d.masterWeights - P7) < 40); // 4 bytes / 4 replicas, per-layer ceil
  assert.ok(Math.abs(d.optimizerStates - 2 * P7) < 80);
  assert.equal(d.gradients, 2 * P7);
  assert.equal(d.temporary.comm, 202_383_360 * 2); // all-reduce bucket: the largest layer's grads
});

test('streamed parameters keep prefetch depth + 1 layers of weights on the GPU', () => {
  const p: StagePolicy = { ...defaultPolicy(false), params: { gpu: 0, cpu: 1, disk: 0 }, master: { gpu: 0, cpu: 1, disk: 0 }, optState: { gpu: 0, cpu: 1, disk: 0 }, prefetchDepth: 2 };
  const r = memoryModel(job7b({ policy: [p] }));
  const d = r.devices[0]!;
  assert.equal(d.weights, 0);
  assert.equal(d.temporary.paramBuffers, 3 * 202_383_360 * 2);
  assert.equal(r.hostPerRank[0]!.weights, 2 * P7);
});

test('CUDA context overhead from the profile adds to every device', () => {
  const a = memoryModel(job7b({ K: 2 }));
  const b = memoryModel({ ...job7b({ K: 2 }), overheadBytes: 1 << 30 });
  assert.deepEqual(b.devices.map((d, i) => d.total - a.devices[i]!.total), [1 << 30, 1 << 30]);
});

test('residentLayers keeps layers in order while they fit the fraction', () => {
  assert.deepEqual(residentLayers([1, 1, 1, 1], 0.5), [true, true, false, false]);
  assert.deepEqual(residentLayers([3, 1, 1], 0.5), [false, true, true]);
  assert.deepEqual(residentLayers([1, 2], 1), [true, true]);
  assert.deepEqual(residentLayers([1, 2], 0), [false, false]);
});

test('evenPartition covers layers contiguously, embedding first and head last', () => {
  assert.deepEqual(evenPartition(32, 2), [[0, 17], [17, 34]]);
  assert.deepEqual(evenPartition(4, 3), [[0, 3], [3, 4], [4, 6]]);
  assert.deepEqual(evenPartition(4, 6), [[0, 1], [1, 2], [2, 3], [3, 4], [4, 5], [5, 6]]);
  const tinyParts = evenPartition(tiny.num_hidden_layers, 2);
  assert.deepEqual(tinyParts, [[0, 3], [3, 6]]);
});

test('NCCL memory beyond a 2-rank 1F1B rank: a communicator for a split tied embedding, a connection per further peer and direction', () => {
  const G = 500, C = 200;
  const stages = (ranks: number[]) => ranks.map((rank, i) => ({ layers: [i, i + 1] as [number, number], rank }));
  const job = (ranks: number[], tied = false) => ({ model: { ...llama2_7b, tie_word_embeddings: tied }, stages: stages(ranks), dataParallel: 1, commGroupBytes: G, p2pConnectionBytes: C });
  // 2-rank 1F1B: the profile's comm_buffer_bytes covers it
  assert.deepEqual([0, 1].map((r) => ncclExtraBytes(job([0, 1]), r)), [0, 0]);
  // interleaved on 2 ranks: both directions on the forward and the backward communicators
  assert.deepEqual([0, 1].map((r) => ncclExtraBytes(job([0, 1, 0, 1]), r)), [2 * C, 2 * C]);
  // a tied embedding split across ranks 0 and 3 of 4: its communicator on those two; the middle
  // ranks send and receive both ways
  assert.deepEqual([0, 1, 2, 3].map((r) => ncclExtraBytes(job([0, 1, 2, 3], true), r)), [G, 2 * C, 2 * C, G]);
  assert.equal(ncclExtraBytes(job([0]), 0), 0);
  // the memory model adds it to each device's overhead
  const m = memoryModel(job7b({ K: 2, model: { ...llama2_7b, tie_word_embeddings: true }, overheadBytes: 1000, commGroupBytes: G, p2pConnectionBytes: C }));
  assert.deepEqual(m.devices.map((d) => d.overhead), [1000 + G, 1000 + G]);
});

test('interleaved schedules: without a program, micro-batches in flight are counted off the schedule, as off the generated program', async () => {
  const { buildPlan, defaultOptimizer } = await import('./plan-build.ts');
  const K = 2, V = 2, M = 4;
  const parts = evenPartition(32, K * V);
  const policy = parts.map(() => defaultPolicy(false));
  const job: MemoryJob = {
    model: llama2_7b, precision: 'bf16-mixed', optimizer: 'adamw', mbs: 1, seq: 1024, microBatches: M, schedule: 'interleaved-1f1b',
    stages: parts.map((layers, i) => ({ layers, rank: i % K })), pipelineRanks: K, dataParallel: 1, policy,
  };
  const plan = buildPlan({
    hardware: 'x', model: llama2_7b, precision: 'bf16-mixed', optimizer: defaultOptimizer(),
    job: { seq: 1024, microBatchSize: 1, microBatches: M, steps: 1, gpuMemCapBytes: null, seed: 0 },
    schedule: 'interleaved-1f1b', stageLayers: parts, pipelineRanks: K, dataParallel: 1, rankDevice: [0, 1], policy,
  });
  const a = memoryModel(job), b = memoryModel({ ...job, program: plan.program });
  assert.deepEqual(a, b);
  // Rank 0 runs 4 warm-up forwards ((K - 1) * 2 + (V - 1) * K) and a fifth before the first backward.
  assert.deepEqual(a.devices.map((d) => d.activations.inFlight), [5, 3]);
});
