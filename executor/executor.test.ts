// The executor on CPU (Gloo): pipelined runs equal a single rank, loss falls on a memorisation
// task, a dead rank stops the run with a clear error, the measured trace pairs with the plan, and
// a saved checkpoint loads back. Skips (with the reason) only when the native addon is not built.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildPlan, defaultOptimizer } from '../planner/plan-build.ts';
import { defaultPolicy, evenPartition } from '../planner/memory.ts';
import { parsePlan } from '../planner/plan-schema.ts';
import { tiny } from '../planner/test-models.ts';
import type { Plan, ScheduleName } from '../planner/plan-types.ts';
import { nativeUnavailableReason, readSafetensors, writeSafetensors } from './native.ts';
import { execute, ExecuteError } from './launch.ts';

const repoRootDir = join(dirname(fileURLToPath(import.meta.url)), '..');

const reason = nativeUnavailableReason();
const skip = reason ? `native addon not built (${reason.split(';')[0]})` : false;

function plan(schedule: ScheduleName, N: number, o: { M?: number; clip?: number | null; lr?: number; steps?: number; recompute?: boolean; seq?: number; constant?: boolean; tied?: boolean; v?: number; D?: number } = {}): Plan {
  const parts = evenPartition(tiny.num_hidden_layers, N * (o.v ?? 1));
  const model = o.tied ? { ...tiny, name: 'tiny-tied', tie_word_embeddings: true } : tiny;
  const p = buildPlan({
    hardware: 'cpu', model, precision: 'fp32',
    optimizer: { ...defaultOptimizer(), lr: o.lr ?? 1e-3, gradClip: o.clip ?? null, warmupSteps: 1, lrSchedule: o.constant ? 'constant' : 'cosine' },
    job: { seq: o.seq ?? 32, microBatchSize: 2, microBatches: o.M ?? 4, steps: o.steps ?? 5, gpuMemCapBytes: null, seed: 7 },
    schedule, stageLayers: parts, pipelineRanks: N, dataParallel: o.D ?? 1,
    rankDevice: Array.from({ length: N * (o.D ?? 1) }, () => -1), policy: parts.map(() => defaultPolicy(o.recompute ?? false)),
  });
  return parsePlan(JSON.parse(JSON.stringify(p)), 'plan.json');
}

const relDiff = (a: number, b: number) => Math.abs(a - b) / Math.max(Math.abs(a), Math.abs(b), 1e-12);
const run = (p: Plan, extra: Parameters<typeof execute>[1] = {}, hooks: Parameters<typeof execute>[2] = {}) =>
  execute(p, { threads: 1, timeoutSec: 30, ...extra }, hooks);

test('2 ranks x 2 stages (GPipe with clipping, 1F1B, 1F1B with recompute; interleaved 2 x 2) equal 1 rank on the same micro-batches over 5 steps', { skip, timeout: 120_000 }, async () => {
  for (const clip of [0.5, null]) {
    const ref = await run(plan('gpipe', 1, { clip }));
    assert.equal(ref.losses.length, 5);
    const variants: [ScheduleName, boolean][] = clip ? [['gpipe', false]] : [['1f1b', false], ['1f1b', true], ['interleaved-1f1b', false]];
    for (const [sched, recompute] of variants) {
      const r = await run(plan(sched, 2, { clip, recompute, v: sched === 'interleaved-1f1b' ? 2 : 1 }));
      assert.equal(r.ranks, 2);
      assert.equal(r.backend, 'gloo');
      for (let i = 0; i < 5; i++) {
        assert.ok(relDiff(r.losses[i]!, ref.losses[i]!) < 1e-5,
          `${sched}${recompute ? '+recompute' : ''} clip ${clip}: step ${i} loss ${r.losses[i]} vs 1 rank ${ref.losses[i]}`);
      }
      if (clip) for (let i = 0; i < 5; i++) assert.ok(relDiff(r.grad_norms[i]!, ref.grad_norms[i]!) < 1e-5, `grad norm step ${i}`);
    }
    if (!clip) {
      // one rank holding two consecutive stages (transfers to itself chain locally)
      const v2 = await run(plan('interleaved-1f1b', 1, { v: 2 }));
      for (let i = 0; i < 5; i++) assert.ok(relDiff(v2.losses[i]!, ref.losses[i]!) < 1e-5, `1 rank x 2 virtual stages: step ${i}`);
    }
    // training moved the weights: the losses differ from step to step
    assert.notEqual(ref.losses[0], ref.losses[4]);
    if (clip) {
      // the fused paths (weight gradients accumulated by the GEMM) equal plain autograd
      process.env.MMOC_NO_FAST_PATHS = '1';
      try {
        const plain = await run(plan('gpipe', 1, { clip }));
        for (let i = 0; i < 5; i++) assert.ok(relDiff(plain.losses[i]!, ref.losses[i]!) < 1e-5, `fast paths: step ${i}`);
      } finally {
        delete process.env.MMOC_NO_FAST_PATHS;
      }
    }
  }
});

test('early update (a layer updated from its gradient hook during the last backward) equals the update at the optimizer_step instruction (1F1B, GPipe with recompute)', { skip, timeout: 120_000 }, async () => {
  for (const [sched, recompute] of [['1f1b', false], ['gpipe', true]] as [ScheduleName, boolean][]) {
    process.env.MMOC_NO_EARLY_UPDATE = '1';
    let late;
    try { late = await run(plan(sched, 2, { recompute })); } finally { delete process.env.MMOC_NO_EARLY_UPDATE; }
    const early = await run(plan(sched, 2, { recompute }));
    for (let i = 0; i < 5; i++) assert.ok(relDiff(early.losses[i]!, late.losses[i]!) < 1e-6, `${sched}: step ${i} loss ${early.losses[i]} vs ${late.losses[i]}`);
    assert.notEqual(early.losses[0], early.losses[4]);
  }
});

test('tied embeddings with the embedding and the head on different ranks equal 1 rank (1F1B, and GPipe with clipping)', { skip, timeout: 120_000 }, async () => {
  for (const [sched, clip] of [['1f1b', null], ['gpipe', 0.5]] as const) {
    const ref = await run(plan('gpipe', 1, { clip, tied: true }));
    const r = await run(plan(sched, 2, { clip, tied: true }));
    for (let i = 0; i < 5; i++) {
      assert.ok(relDiff(r.losses[i]!, ref.losses[i]!) < 1e-5, `tied ${sched}: step ${i} loss ${r.losses[i]} vs 1 rank ${ref.losses[i]}`);
      if (clip) assert.ok(relDiff(r.grad_norms[i]!, ref.grad_norms[i]!) < 1e-5, `tied ${sched}: grad norm step ${i}`);
    }
    assert.equal(r.params, ref.params, 'the tied copy is not counted twice');
  }
});

test('data parallel: 2 replicas x 1 stage, and 2 replicas x 2 stages with tied embeddings and clipping, equal 1 rank on the same micro-batches', { skip, timeout: 120_000 }, async () => {
  for (const tied of [false, true]) {
    const ref = await run(plan('gpipe', 1, { M: 4, clip: 0.5, tied, steps: 4 }));
    const variants: [ScheduleName, number][] = tied ? [['1f1b', 2]] : [['gpipe', 1]];
    for (const [sched, N] of variants) {
      const r = await run(plan(sched, N, { M: 2, D: 2, clip: 0.5, tied, steps: 4 }));
      assert.equal(r.ranks, 2 * N);
      assert.equal(r.tokens_per_step, ref.tokens_per_step);
      for (let i = 0; i < 4; i++) {
        assert.ok(relDiff(r.losses[i]!, ref.losses[i]!) < 1e-5, `D=2 N=${N} tied=${tied}: step ${i} loss ${r.losses[i]} vs ${ref.losses[i]}`);
        assert.ok(relDiff(r.grad_norms[i]!, ref.grad_norms[i]!) < 1e-5, `D=2 N=${N} tied=${tied}: grad norm step ${i}`);
      }
    }
  }
});

test('loss falls on a memorisation task (2 sequences, 1F1B on 2 ranks)', { skip, timeout: 120_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'mmoc-mem-'));
  try {
    const S = 32;
    const toks = new Uint16Array(2 * (S + 1));
    for (let i = 0; i < toks.length; i++) toks[i] = (i * 37 + 11) % 256;
    writeFileSync(join(dir, 'tokens.bin'), toks);
    const r = await run(plan('1f1b', 2, { M: 2, lr: 3e-2, steps: 40, seq: S, constant: true }), { dataPath: join(dir, 'tokens.bin') });
    const first = r.losses[0]!, last = r.losses.at(-1)!;
    assert.ok(first > 5, `first loss ${first} should be near ln(256)`);
    assert.ok(last < first * 0.25, `loss fell from ${first} to ${last}, expected below ${first * 0.25}`);
    for (let i = 5; i < r.losses.length; i += 5) assert.ok(r.losses[i]! < r.losses[i - 5]!, `loss rose between steps ${i - 5} and ${i}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('killing one rank mid-run ends the run within 10 s with an error naming the rank and its last instruction', { skip, timeout: 60_000 }, async () => {
  const pids: number[] = [];
  let t0 = 0;
  const p = plan('1f1b', 2, { steps: 100000, seq: 64 });
  const started = Date.now();
  const err = await run(p, {}, {
    onSpawn: (rank, pid) => { pids[rank] = pid; },
    onProgress: (q) => {
      if (q.step === 2 && !t0) {
        t0 = Date.now();
        process.kill(pids[1]!, 'SIGKILL');
      }
    },
  }).then(() => null, (e: unknown) => e);
  assert.ok(err instanceof ExecuteError, `expected an ExecuteError, got ${String(err)}`);
  assert.ok(t0 > 0, 'the run failed before the kill');
  const took = (Date.now() - t0) / 1000;
  assert.ok(took < 10, `took ${took.toFixed(1)} s to stop`);
  assert.match(err.message, /^rank 1 was killed \(SIGKILL\) at step \d+ pc \d+ \((forward|backward|send_act|recv_act|send_grad|recv_grad|optimizer_step|barrier)[^)]*\); the other ranks stopped/);
  // no orphan: both processes are gone
  for (const pid of pids) assert.throws(() => process.kill(pid, 0), `process ${pid} is still alive`);
  assert.ok(Date.now() - started < 60_000);
});

test('the store\'s port taken before rank 0 listens on it: the ranks start again on another port and the run completes', { skip, timeout: 60_000 }, async () => {
  const { createServer } = await import('node:net');
  const { freePort } = await import('./launch.ts');
  const blocker = createServer();
  const taken = await new Promise<number>((res) => blocker.listen(0, '127.0.0.1', () => res((blocker.address() as { port: number }).port)));
  const spawned: number[] = [];
  try {
    const r = await execute(plan('1f1b', 2, { steps: 2 }), { threads: 1 }, { firstPort: taken, onSpawn: (rank) => { spawned.push(rank); } });
    assert.equal(r.losses.length, 2);
    assert.deepEqual(spawned, [0, 1, 0, 1], 'both ranks started twice');
  } finally {
    blocker.close();
  }
  const p = await freePort();
  assert.ok(p >= 20000 && p < 32768, `port ${p} below the ephemeral range`);
});

test('the measured trace has one slice per executed instruction and pairs with the plan by rank and pc', { skip, timeout: 60_000 }, async () => {
  const p = plan('1f1b', 2, { steps: 2 });
  const r = await run(p, { trace: true });
  const t = r.trace!;
  const slices = t.traceEvents.filter((e) => e.ph === 'X');
  for (let rank = 0; rank < 2; rank++) {
    const mine = slices.filter((e) => e.args!.rank === rank);
    assert.equal(mine.length, p.program.ranks[rank]!.length * 2, `rank ${rank}: one slice per instruction per step`);
    for (const e of mine) {
      const ins = p.program.ranks[rank]![e.args!.pc as number]!;
      assert.equal(e.name, ins.op, `rank ${rank} pc ${String(e.args!.pc)}`);
      if ('mb' in ins) assert.equal(e.args!.mb, ins.mb);
      if ('stage' in ins) assert.equal(e.args!.stage, ins.stage);
      assert.ok(e.dur! >= 0 && e.ts! >= 0);
      if (ins.op === 'forward' || ins.op === 'backward') assert.ok((e.args!.flops as number) > 0, 'compute slices carry their FLOPs');
      if (ins.op.startsWith('send') || ins.op.startsWith('recv')) assert.equal(e.args!.bytes, 2 * 32 * 64 * 4, 'p2p slices carry their bytes');
    }
  }
  assert.ok(t.traceEvents.some((e) => e.ph === 'C' && e.name === 'memory'), 'memory counters');
  assert.ok(t.traceEvents.some((e) => e.ph === 'M' && e.name === 'process_name'), 'process names');
  assert.equal((t.otherData!.peak_bytes as number[]).length, 2);
  assert.ok(r.tokens_per_s > 0);
  assert.equal(r.mfu, null); // CPU
  JSON.parse(JSON.stringify(t)); // serialisable as is
});

test('a checkpoint saved by 2 ranks (sharded, HF names + index) loads back into 1 rank', { skip, timeout: 120_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'mmoc-ckpt-'));
  try {
    const S = 32;
    const toks = new Uint16Array(S + 1).map((_, i) => (i * 13 + 5) % 256);
    writeFileSync(join(dir, 'one.bin'), toks); // every micro-batch the same sequence
    const data = join(dir, 'one.bin');
    const save = join(dir, 'ckpt');
    mkdirSync(save);
    await run(plan('1f1b', 2, { steps: 2 }), { dataPath: data, saveDir: save });
    const cont = await run(plan('1f1b', 2, { steps: 3 }), { dataPath: data });
    const loaded = await run(plan('gpipe', 1, { steps: 1 }), { dataPath: data, weightsDir: save });
    // the loaded model's first loss is the loss after two updates
    assert.ok(relDiff(loaded.losses[0]!, cont.losses[2]!) < 1e-5, `${loaded.losses[0]} vs ${cont.losses[2]}`);
    // the same weights stored as BF16 in one file (HF's usual release format) load too
    const bfDir = join(dir, 'bf16');
    mkdirSync(bfDir);
    const all = readdirSync(save).filter((f) => f.endsWith('.safetensors')).flatMap((f) => readSafetensors(join(save, f)));
    assert.equal(all.length, 2 + 9 * tiny.num_hidden_layers + 1);
    writeSafetensors(join(bfDir, 'model.safetensors'), all.map((t) => {
      const f = new Float32Array(t.data.buffer.slice(t.data.byteOffset, t.data.byteOffset + t.data.byteLength));
      const u = new Uint32Array(f.buffer);
      const b = new Uint16Array(u.length).map((_, i) => (u[i]! + 0x7fff + ((u[i]! >> 16) & 1)) >>> 16);
      return { ...t, dtype: 'BF16' as const, data: new Uint8Array(b.buffer) };
    }));
    // the folder's tokenizer goes along into the fine-tuned copy (a whole HF model folder)
    for (const f of ['tokenizer.json', 'tokenizer_config.json']) copyFileSync(join(repoRootDir, 'configs', 'tokenizers', 'tiny', f), join(bfDir, f));
    const tuned = join(dir, 'tuned');
    mkdirSync(tuned);
    const fromBf16 = await run(plan('gpipe', 1, { steps: 1 }), { dataPath: data, weightsDir: bfDir, saveDir: tuned });
    assert.ok(relDiff(fromBf16.losses[0]!, cont.losses[2]!) < 2e-2, `bf16 weights: ${fromBf16.losses[0]} vs ${cont.losses[2]}`);
    for (const f of ['tokenizer.json', 'tokenizer_config.json', 'config.json']) assert.ok(existsSync(join(tuned, f)), f);
    assert.deepEqual(readFileSync(join(tuned, 'tokenizer.json')), readFileSync(join(bfDir, 'tokenizer.json')));
    assert.ok(!existsSync(join(save, 'tokenizer.json')), 'a model initialised at random has no tokenizer to keep');
    // a folder without weights is refused with its name
    await assert.rejects(run(plan('gpipe', 1, { steps: 1 }), { weightsDir: dir }), /no model\.safetensors or model\.safetensors\.index\.json/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('bad input is refused in TypeScript with exact messages before it reaches C++', { skip, timeout: 30_000 }, async () => {
  const p = plan('1f1b', 2);
  await assert.rejects(run(p, { device: 'gpu0' }), { message: 'device: "gpu0" must be "cpu" or "cuda:N"' });
  const q = JSON.parse(JSON.stringify(plan('gpipe', 1))) as Plan;
  // an instruction the rank cannot run fails in C++ with the rank, step, pc and file:line
  q.program.ranks[0]!.unshift({ op: 'upload_params', layer: 1 });
  await assert.rejects(run(q), /rank 0 step 0 pc 0 \(upload_params layer 1\): \[runtime\.cpp:\d+\] layer 1 has no optimizer_step on tier cpu in the program/);
});

test('a plan predicted to peak over its own per-GPU cap is refused before any rank starts, naming the rank, its stages and the bytes', async () => {
  const p = plan('1f1b', 2);
  const peak = 3 * 2 ** 30;
  const capped: Plan = { ...p, job: { ...p.job, gpuMemCapBytes: 2 * 2 ** 30 }, prediction: { ...(p.prediction ?? { step_s: 1, tokens_per_s: 1 }), peak_bytes: [peak / 2, peak] } as Plan['prediction'] };
  let spawned = 0;
  await assert.rejects(execute(capped, { threads: 1 }, { onSpawn: () => { spawned++; } }), (e: Error) => {
    assert.match(e.message, /rank 1 \(stage 1 \(layers \d+-\d+\)\) is predicted to peak at 3\.00 GiB \(3221225472 bytes\), over the plan's job\.gpuMemCapBytes of 2\.00 GiB .* by 1\.00 GiB: re-plan under the cap \(mmoc plan --gpu-mem 2GiB\)/);
    return true;
  });
  assert.equal(spawned, 0, 'no rank was started');
});
