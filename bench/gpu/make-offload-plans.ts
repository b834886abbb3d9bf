// Offload plans for a CUDA check of the offload engine (issue 6): the tiny model on 2 GPUs with the
// optimizer update half on the host, wholly on the host with gradients accumulated there, streamed
// parameters, activation offload, optimizer states on disk; and LLaMA-2-7B with the whole update on
// the host, without and with the delayed update, and with recompute and part of the update on the GPU.
//   node --import tsx bench/gpu/make-offload-plans.ts
import { writeFileSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildPlan, defaultOptimizer } from '../../planner/plan-build.ts';
import { defaultPolicy, evenPartition } from '../../planner/memory.ts';
import { parsePlan } from '../../planner/plan-schema.ts';
import { llama2_7b, tiny } from '../../planner/test-models.ts';
import { parseModelConfig } from '../../planner/model-config.ts';
import { readFileSync } from 'node:fs';
const llama2_13b = parseModelConfig(JSON.parse(readFileSync(join(dirname(fileURLToPath(import.meta.url)), '../../configs/models/llama2-13b.json'), 'utf8')), 'llama2-13b.json', 'llama2-13b');
import type { ModelConfig } from '../../planner/model-config.ts';
import type { Precision, StagePolicy } from '../../planner/plan-types.ts';

const here = dirname(fileURLToPath(import.meta.url));
const F = (gpu: number, cpu: number, disk = 0) => ({ gpu, cpu, disk });
type Pol = (p: StagePolicy) => StagePolicy;
// The plans of earlier runs are records of what ran (their results sit beside them): rewritten only
// with MMOC_REWRITE_ALL=1 (the planner's defaults have moved since: recompute is by layer now).
const onlyNew = new Set(['plan-llama2-7b-1f1b-lean-mbs4x2.json', 'plan-llama2-7b-1f1b-lean-mbs2x4.json', 'plan-llama2-7b-1f1b-lrc-opt45gpu-delayed.json',
  'plan-llama2-7b-1f1b-lrc-opt50gpu-delayed.json', 'plan-llama2-7b-1f1b-lrc-opt55gpu-delayed.json', 'plan-tiny-cuda-2r-fp32-host-delayed.json', 'plan-tiny-cuda-2r-fp32-allstreamed-delayed.json',
  'plan-tiny-cuda-2r-fp32-lrc.json', 'plan-tiny-cuda-2r-fp32-lrc-act.json', 'plan-llama2-7b-1f1b-lean-mbs8x1-chunk.json',
  'plan-llama2-7b-1f1b-lean-mbs4x2-chunk.json', 'plan-llama2-7b-1f1b-lean-mbs8x1-chunk-pf2.json', 'plan-tiny-cuda-2r-fp32-chunk.json']);
function write(name: string, model: ModelConfig, o: { M: number; seq: number; precision: Precision; pol: Pol; recompute?: boolean; diskPaths?: string[]; steps?: number; delayed?: boolean; capGiB?: number; mbs?: number; lossChunk?: number }) {
  const parts = evenPartition(model.num_hidden_layers, 2);
  const plan = buildPlan({
    hardware: 'h200x2', model, precision: o.precision, optimizer: { ...defaultOptimizer(), lr: 1e-5, delayedUpdate: o.delayed ?? false },
    job: { seq: o.seq, microBatchSize: o.mbs ?? 1, microBatches: o.M, steps: o.steps ?? 5, gpuMemCapBytes: o.capGiB ? o.capGiB * 2 ** 30 : null, seed: 1, ...(o.lossChunk ? { lossChunkTokens: o.lossChunk } : {}) },
    schedule: '1f1b', stageLayers: parts, pipelineRanks: 2, dataParallel: 1,
    rankDevice: [0, 1], policy: parts.map(() => o.pol(defaultPolicy(o.recompute ?? false))),
    ...(o.diskPaths ? { diskPaths: o.diskPaths } : {}),
  });
  parsePlan(JSON.parse(JSON.stringify(plan)), name);
  if (!process.env.MMOC_REWRITE_ALL && !onlyNew.has(name)) return;
  writeFileSync(join(here, name), JSON.stringify(plan, null, 1) + '\n');
}
const host: Pol = (p) => ({ ...p, master: F(0, 1), optState: F(0, 1) });
const half: Pol = (p) => ({ ...p, master: F(0.5, 0.5), optState: F(0.5, 0.5) });
const hostGrads: Pol = (p) => ({ ...host(p), grads: F(0, 1) });
const streamed: Pol = (p) => ({ ...host(p), params: F(0.5, 0.5) });
const act: Pol = (p) => ({ ...p, activations: F(0, 1) });
const disk: Pol = (p) => ({ ...p, master: F(0, 0, 1), optState: F(0, 0, 1) });
const t = { M: 4, seq: 64 };
write('plan-tiny-cuda-2r-fp32-host.json', tiny, { ...t, precision: 'fp32', pol: host });
write('plan-tiny-cuda-2r-fp32-half.json', tiny, { ...t, precision: 'fp32', pol: half });
write('plan-tiny-cuda-2r-fp32-hostgrads.json', tiny, { ...t, precision: 'fp32', pol: hostGrads });
write('plan-tiny-cuda-2r-fp32-streamed.json', tiny, { ...t, precision: 'fp32', pol: streamed });
write('plan-tiny-cuda-2r-fp32-disk.json', tiny, { ...t, precision: 'fp32', pol: disk, diskPaths: ['/tmp/mmoc-disk-a', '/tmp/mmoc-disk-b'] });
write('plan-tiny-cuda-2r-fp32-rc.json', tiny, { ...t, precision: 'fp32', pol: (p) => p, recompute: true });
write('plan-tiny-cuda-2r-fp32-act.json', tiny, { ...t, precision: 'fp32', pol: act, recompute: true });
write('plan-tiny-cuda-2r-host.json', tiny, { ...t, precision: 'bf16-mixed', pol: host });
write('plan-tiny-cuda-2r-half.json', tiny, { ...t, precision: 'bf16-mixed', pol: half });
write('plan-llama2-7b-1f1b-hostadam.json', llama2_7b, { M: 8, seq: 1024, precision: 'bf16-mixed', pol: host, steps: 4 });
// the same with the one-step-delayed update (the host AdamW hides under the next step's compute), and
// with recompute and a fraction of the update kept on the GPU (issue 6's second target: <= 34 GiB a GPU)
write('plan-llama2-7b-1f1b-hostadam-delayed.json', llama2_7b, { M: 8, seq: 1024, precision: 'bf16-mixed', pol: host, steps: 4, delayed: true });
const part = (g: number): Pol => (p) => ({ ...p, master: F(g, 1 - g), optState: F(g, 1 - g) });
write('plan-llama2-7b-1f1b-rc-opt40gpu-delayed.json', llama2_7b, { M: 8, seq: 1024, precision: 'bf16-mixed', pol: part(0.4), recompute: true, steps: 4, delayed: true });
for (const g of [0.3, 0.35, 0.45, 0.5]) write(`plan-llama2-7b-1f1b-rc-opt${g * 100}gpu-delayed.json`, llama2_7b, { M: 8, seq: 1024, precision: 'bf16-mixed', pol: part(g), recompute: true, steps: 4, delayed: true });
// issue 6's third target: LLaMA-2-13B on 2 GPUs capped at 48 GiB each (an L20's memory), the update on the host
write('plan-llama2-13b-1f1b-rc-hostadam-cap48.json', llama2_13b, { M: 8, seq: 1024, precision: 'bf16-mixed', pol: host, recompute: true, steps: 4, capGiB: 48 });
write('plan-llama2-7b-1f1b-rc-hostadam-delayed.json', llama2_7b, { M: 8, seq: 1024, precision: 'bf16-mixed', pol: host, recompute: true, steps: 4, delayed: true });
// issue 6's first target: LLaMA-2-7B at FSDP2 + CPUOffloadPolicy's peak (~4.6 GiB allocated): every
// layer streamed (prefetch depth 1), gradients accumulated on the host, activations of the
// recomputed stages on the host, the update on the host, delayed
const lean: Pol = (p) => ({ ...host(p), params: F(0, 1), grads: F(0, 1), activations: F(0, 1), prefetchDepth: 1 });
for (const [mbs, M] of [[1, 8], [4, 2]] as const) {
  write(`plan-llama2-7b-1f1b-streamed-mbs${mbs}x${M}.json`, llama2_7b, { M, mbs, seq: 1024, precision: 'bf16-mixed', pol: lean, recompute: true, steps: 4, delayed: true });
}
write('plan-tiny-cuda-2r-allstreamed.json', tiny, { M: 4, seq: 64, precision: 'fp32', pol: (p) => ({ ...host(p), params: F(0, 1), grads: F(0, 1), activations: F(0, 1), prefetchDepth: 1 }), recompute: true });
write('plan-tiny-cuda-2r-allstreamed-norc.json', tiny, { M: 4, seq: 64, precision: 'fp32', pol: (p) => ({ ...host(p), params: F(0, 1), grads: F(0, 1), prefetchDepth: 1 }) });

// Issue 6, third session: recompute layer by layer (the default now) and the delayed update of
// streamed layers (their update runs under the step; fetches read the update before)
// target 1 (<= 4.6 GiB allocated at >= 4x FSDP2 + CPU offload): every layer streamed
for (const [mbs, M] of [[4, 2], [2, 4]] as const) {
  write(`plan-llama2-7b-1f1b-lean-mbs${mbs}x${M}.json`, llama2_7b, { M, mbs, seq: 1024, precision: 'bf16-mixed', pol: lean, recompute: true, steps: 5, delayed: true });
}
// target 2 (<= 34 GiB at >= 0.9x GPipe): part of the update on the GPU, delayed, recompute by layer
for (const g of [0.45, 0.5, 0.55]) write(`plan-llama2-7b-1f1b-lrc-opt${Math.round(g * 100)}gpu-delayed.json`, llama2_7b, { M: 8, seq: 1024, precision: 'bf16-mixed', pol: part(g), recompute: true, steps: 5, delayed: true });
// CUDA equality of the streamed delayed update: the same losses as the resident delayed run
write('plan-tiny-cuda-2r-fp32-host-delayed.json', tiny, { ...t, precision: 'fp32', pol: host, delayed: true });
write('plan-tiny-cuda-2r-fp32-allstreamed-delayed.json', tiny, { ...t, precision: 'fp32', pol: (p) => ({ ...host(p), params: F(0, 1), grads: F(0, 1), activations: F(0, 1), prefetchDepth: 1 }), recompute: true, delayed: true });
// recompute by layer on CUDA (the tiny model, fp32: equal to the resident run), with activation offload
write('plan-tiny-cuda-2r-fp32-lrc.json', tiny, { ...t, precision: 'fp32', pol: (p) => p, recompute: true });
write('plan-tiny-cuda-2r-fp32-lrc-act.json', tiny, { ...t, precision: 'fp32', pol: (p) => ({ ...act(p), params: F(0, 1), master: F(0, 1), optState: F(0, 1), prefetchDepth: 1 }), recompute: true });
// target 1 again: one micro-batch of 8 (no host gradient accumulation: the gradients land in the
// host buffer once; the loss a chunk of 1024 tokens at a time; layer inputs kept on the GPU), and
// micro-batches of 4 with the chunked loss
const leanKeepAct: Pol = (p) => ({ ...host(p), params: F(0, 1), grads: F(0, 1), prefetchDepth: 1 });
write('plan-llama2-7b-1f1b-lean-mbs8x1-chunk.json', llama2_7b, { M: 1, mbs: 8, seq: 1024, precision: 'bf16-mixed', pol: leanKeepAct, recompute: true, steps: 5, delayed: true, lossChunk: 1024 });
write('plan-llama2-7b-1f1b-lean-mbs8x1-chunk-pf2.json', llama2_7b, { M: 1, mbs: 8, seq: 1024, precision: 'bf16-mixed', pol: (p) => ({ ...leanKeepAct(p), prefetchDepth: 2 }), recompute: true, steps: 5, delayed: true, lossChunk: 1024 });
write('plan-llama2-7b-1f1b-lean-mbs4x2-chunk.json', llama2_7b, { M: 2, mbs: 4, seq: 1024, precision: 'bf16-mixed', pol: lean, recompute: true, steps: 5, delayed: true, lossChunk: 1024 });
write('plan-tiny-cuda-2r-fp32-chunk.json', tiny, { ...t, precision: 'fp32', pol: (p) => p, lossChunk: 16 });
