// The profile `mmoc calibrate` assembles on a GPU machine, from synthetic measurements (this
// machine has no GPU): every part runs its GPU path in TypeScript and the profile validates.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cpus } from 'node:os';
import { calibrate, CALIB_PARTS, ADAMW_ALL_RANKS_REPS } from './calibrate.ts';
import { llama2_7b, llama32_1b } from '../planner/test-models.ts';
import type { CalibTask, CalibResult } from './native.ts';
import { simulatePlan } from '../planner/lower.ts';
import { probePlan } from './calibrate.ts';
import type { Plan } from '../planner/plan-types.ts';
import type { TraceEvent } from '../sim/index.ts';

// Host DRAM shared (the job that runs copies and the CPU update at once): a CPU update in flight
// makes all-GPU copies 1.6x slower; long H2D copies in flight make the update 1.25x slower, long D2H
// copies 1.4x.
let cpuBusy = 0, copyBusy = 0, d2hBusy = 0, dramUpdates = 0;
const sleep = (ms: number) => new Promise((res) => setTimeout(res, ms));
async function fakeTask(t: Partial<CalibTask> & { kind: CalibTask['kind'] }): Promise<CalibResult> {
  const r = (medianUs: number, value = 0, value2 = 0): CalibResult => ({ medianUs, minUs: medianUs * 0.98, value, value2, samples: 5, note: '' });
  if (t.kind === 'copy' && (t.gpus!.length > 1 && cpuBusy > 0 || (t.iters ?? 0) >= 1000)) {
    const slow = cpuBusy > 0 ? 1.6 : 1;  // as the copies start
    const d2h = t.name === 'd2h';
    if ((t.iters ?? 0) >= 1000) { copyBusy++; if (d2h) d2hBusy++; await sleep(Math.min(1500, 1000 * (t.maxSec ?? 0.3))); copyBusy--; if (d2h) d2hBusy--; }
    return r(t.bytes! / 55e3, (t.gpus!.length > 1 ? 0.7 : 1) * 55 * t.gpus!.length / slow, 55);
  }
  if (t.kind === 'adamw' && !t.device?.startsWith('cuda')) {
    const slow = d2hBusy > 0 ? 1.4 : copyBusy > 0 ? 1.25 : 1;
    const groups = t.dims![1] ?? 1, rate = (groups > 1 ? 2.5e8 * t.threads! * groups : 2e8 * t.threads!) / slow;
    // set-up, warm-up and at least 3 steps, as the native benchmark; a step is every group's parameters at the rate
    const stepMs = (1e3 * t.dims![0]! * groups) / rate;
    // its set-up first (no DRAM contention yet). The DRAM-sharing job's third update of every rank
    // (after its warm-up and the timed one alone) is the long one the copies run inside: it takes
    // 0.5 s longer to set up than the one calibrate estimated it from, what a first copy window misses
    const dram = t.dims!.length > 1 && t.iters !== ADAMW_ALL_RANKS_REPS ? ++dramUpdates : 0;
    await sleep(100 + (dram === 3 ? 500 : 0));
    cpuBusy++; await sleep(stepMs * (Math.max(3, t.iters ?? 3) + 1)); cpuBusy--;
    return r(stepMs * 1e3, rate);
  }
  switch (t.kind) {
    case 'gemm': { const [m, n, k] = t.dims!; return Promise.resolve(r((2 * m! * n! * k!) / 700e6 + 5)); }
    case 'attention': return Promise.resolve(r(300, 300, 750));
    case 'kernel': return Promise.resolve(r(40, 3000, 40 * 3000 * 1e3));
    case 'copy': return Promise.resolve(r(t.bytes! / 55e3, (t.gpus!.length > 1 ? 0.7 : 1) * 55 * t.gpus!.length * (t.name === 'duplex' ? 1.8 : 1), 55));
    case 'p2p': return Promise.resolve(r(t.bytes! / 390e3, 390));
    // the GPU AdamW (device cuda:N): 130G params/s, i.e. 3.9 TB/s at the cost model's 30 bytes a parameter
    // on the CPU 2e8 params/s a thread in one team; thread groups at once (dims [n, groups]) 2.5e8
    case 'adamw': return Promise.resolve(t.device?.startsWith('cuda') ? r(1000, 1.3e11, t.dims![0]) : r(1000, (t.dims![1] ?? 1) > 1 ? 2.5e8 * t.threads! * t.dims![1]! : 2e8 * t.threads!));
    case 'memcpy': return Promise.resolve(r(1000, 150));
    case 'disk': { const slow = cpuBusy > 0 ? 1.5 : 1; await sleep(50); return r(1e6, 1.3 / slow, 1.5 / slow); }
    case 'slowdown': return Promise.resolve(r(1500, 0.04, 1440));
    case 'launch': return Promise.resolve(r(4, 4, 12));
    case 'context': return Promise.resolve(r(0, 520 * 2 ** 20, 0.03));
    // the calibrating process holds 2 GiB on cuda:0 (its context and cached blocks)
    case 'device_used': return Promise.resolve(r(0, 2 * 2 ** 30));
  }
}

/** The third GPU matrix run's calibrated 2x H200 profile (GEMM and attention tables of both models). */
async function matrixProfile() {
  const { readFileSync } = await import('node:fs');
  const { parseHardwareProfile } = await import('../sim/index.ts');
  const file = new URL('../bench/gpu/matrix-2026-11-22c-h200x2/profile.json', import.meta.url);
  return parseHardwareProfile(JSON.parse(readFileSync(file, 'utf8')), 'matrix profile');
}

test('a 2-GPU profile assembles from every part and drives the simulator', { timeout: 120_000 }, async () => {
  const gpu = { index: 0, name: 'NVIDIA H200', totalBytes: 150e9, freeBytes: 149e9, computeCapability: '9.0', multiProcessors: 132 };
  dramUpdates = 0;  // the fake's count of the DRAM-sharing job's updates (the third sets up late)
  const out = await calibrate({
    parts: new Set(CALIB_PARTS), quick: true, models: [llama2_7b, llama32_1b], seqs: [1024], microBatchSizes: [1, 2], diskPaths: ['/tmp'],
    id: 'fake-h200x2', command: 'mmoc calibrate (test)',
    deps: {
      devices: () => ({ cpuCores: 32, torchThreads: 32, cudaAvailable: true, cuda: [gpu, { ...gpu, index: 1 }] }),
      buildInfo: () => ({ torchVersion: '2.11.0', compiler: 'gcc 13', cuda: true, cudaVersion: '13.0', sdpa: true, gloo: false, nccl: true, fusedAdamw: true }),
      calibrateTask: fakeTask,
      // outside the allocator on rank 0 (the 2 GiB of the calibrating process included): 1 rank
      // 3.25 GiB, 2-rank 1F1B 5.5, with a split tied embedding 6, interleaved 5.9
      execute: async (plan: Plan) => {
        const G = 2 ** 30, N = plan.layout.pipelineRanks;
        const out = N === 1 ? 3.25 : plan.model.tie_word_embeddings ? 6 : plan.layout.virtualStages > 1 ? 5.9 : 5.5;
        // the allocator holds 0.25 GiB of cached free blocks at the 1-rank probe's peak, 0.2 at the others'
        const slack = N === 1 ? 0.25 : 0.2;
        return { trace: { traceEvents: [] }, peak_bytes: Array.from({ length: N }, () => 2 * G + out * G), peak_reserved_bytes: Array.from({ length: N }, () => 2 * G), peak_allocated_bytes: Array.from({ length: N }, () => (2 - slack) * G) } as never;
      },
    },
  });
  assert.deepEqual(out.measurements.filter((m) => m.error).map((m) => `${m.label}: ${m.error}`), []);
  const p = out.profile;
  assert.equal(p.gpus.count, 2);
  assert.equal(p.gpus.kind, 'gpu');
  assert.ok(p.compute.gemm!.bf16!.length >= 20, `${p.compute.gemm!.bf16!.length} GEMM shapes`);
  assert.ok(p.compute.attention!.bf16!.length >= 4);
  assert.equal(p.links.h2d.length, 2);
  assert.equal(p.links.host_groups.length, 1, 'all-at-once below 85% of the sum: one shared group');
  assert.ok(p.links.host_total);
  assert.equal(p.links.peer.length, 1);
  assert.equal(p.links.peer[0]!.GBps, 390);
  assert.equal(p.disks[0]!.write_GBps, 1.3);
  // by difference of the probe runs, the calibrating process's 2 GiB taken off
  assert.equal(p.overheads.cuda_context_bytes, 1.25 * 2 ** 30);
  assert.equal(p.overheads.comm_buffer_bytes, 2.25 * 2 ** 30);
  assert.equal(p.overheads.comm_group_bytes, 0.5 * 2 ** 30);
  assert.equal(p.overheads.p2p_connection_bytes, Math.round(0.2 * 2 ** 30));
  assert.equal(p.overheads.kernel_launch_us, 4);
  assert.equal(p.overheads.allocator_slack_bytes, Math.round(0.2 * 2 ** 30), 'the median of the probes\' reserved less allocated');
  assert.equal(p.compute_slowdown_under_copies, 0.04);
  // host DRAM shared by the copies and the CPU update, each measured inside the other
  assert.equal(p.copy_slowdown_under_cpu_update, 0.6);
  // the update inside H2D copies 1.25x slower, inside D2H copies 1.4x: the larger
  assert.equal(p.cpu_update_slowdown_under_copies, 0.4);
  assert.match(p.figures!['cpu_update_slowdown_under_copies']!.how ?? '', /h2d .*x1\.25.*d2h .*x1\.40/);
  assert.equal(p.figures!['copy_slowdown_under_cpu_update']!.source, 'measured');
  assert.equal(p.disk_slowdown_under_cpu_update, 0.5, 'the disk tier inside the update');
  // the update's step time comes from its measured rate (the native benchmark runs at least 3
  // steps, so wall times of 1 and 3 steps told nothing), and the job stays short
  const dramJob = out.measurements.find((m) => m.label === 'host copies and the CPU update at once')!;
  const d = dramJob.detail as { updateStepSec: number; updateSetupSec: number; cpuAlone_params_per_s: number };
  assert.ok(d.updateStepSec > 0.005 && d.updateStepSec < 0.5, `update step ${d.updateStepSec} s`);
  assert.ok(d.updateSetupSec >= 0 && d.updateSetupSec < 0.5, `update set-up ${d.updateSetupSec} s`);
  assert.ok(dramJob.seconds < 25, `the DRAM-sharing job took ${dramJob.seconds} s`);  // 18 s here: six updates of the fake's pace
  assert.equal(p.compute.optimizer_GBps, 3900, 'GPU AdamW: 1.3e11 params/s x 30 bytes');
  // the host's all-ranks point is timed as the executor runs it: a thread group a rank, at once
  const cores = cpus().length, perRank = Math.max(1, Math.floor(cores / 2));
  const adam = p.cpu.optimizers.find((o) => o.name === 'adamw')!.points;
  assert.deepEqual(adam.at(-1), { threads: perRank * 2, params_per_s: 2.5e8 * perRank * 2 });
  assert.equal(new Set(adam.map((x) => x.threads)).size, adam.length, 'one point a thread count');
  assert.deepEqual(Object.keys(p.compute.kernel_GBps ?? {}).sort(), ['add', 'loss', 'rmsnorm', 'rotary', 'swiglu']);
  assert.equal(p.compute.kernel_GBps!.add, 3000, 'kernel add: 40 us for 40 * 3000 * 1e3 bytes');
  assert.equal(p.figures!['compute.optimizer_GBps']!.source, 'measured');
  assert.ok(p.compute.gemm_efficiency.bf16! > 0.5 && p.compute.gemm_efficiency.bf16! <= 1);
  assert.equal(p.figures!['links']!.source, 'measured');
  const sim = simulatePlan(probePlan(true, 'fake', 3, 2), p);
  assert.ok(sim.step_s > 0);
});

test('per-instruction fit: one huge outlier (a lazily created NCCL communicator) does not move it', async () => {
  const { fitPerInstruction } = await import('./calibrate.ts');
  // 22 instructions of the 2-rank probe: model b + 3 launches x 5 us + 12 us each
  const b = Array.from({ length: 22 }, (_, i) => 40 + 7 * i), a = b.map(() => 3), c = b.map(() => 1);
  const y = b.map((v, i) => v + a[i]! * 5 + 12);
  assert.ok(Math.abs(fitPerInstruction(y, b, a, c, 5).z - 12) < 1e-9);
  const spoiled = [...y];
  spoiled[7]! += 11_900; // ~12 ms inside one measured instruction: the least-squares fit gave 540 us
  const r = fitPerInstruction(spoiled, b, a, c, 5);
  assert.ok(Math.abs(r.z - 12) < 1e-9, `fit ${r.z}`);
  assert.deepEqual(r.outliers, [7]);
  // a noisy set: the fit stays near the true value with two outliers
  const noisy = y.map((v, i) => v + ((i * 37) % 7) - 3);
  noisy[3]! += 5000; noisy[15]! += 800;
  const n = fitPerInstruction(noisy, b, a, c, 5);
  assert.ok(Math.abs(n.z - 12) < 2, `noisy fit ${n.z}`);
  // never negative; nothing to fit: 0
  assert.equal(fitPerInstruction(b.map((v) => v - 50), b, a, c, 5).z, 0);
  assert.equal(fitPerInstruction([], [], [], [], 5).z, 0);
});

test('CPU AdamW calibration: beyond the last-level cache, at the executor thread counts', async () => {
  const { cpuAdamParams, cpuAdamThreads, steadyStep, llcBytes } = await import('./calibrate.ts');
  const M = 2 ** 20;
  assert.ok(cpuAdamParams(true, true, 0) >= 64 * M);
  assert.ok(cpuAdamParams(true, false, 0) >= 128 * M);
  // a 1 GiB LLC (16 bytes a parameter): at least 8x it
  assert.ok(cpuAdamParams(true, true, 2 ** 30) * 16 >= 8 * 2 ** 30);
  assert.deepEqual(cpuAdamThreads(32, 2, true), [1, 16, 32]);
  // GPU ranks leave a core each to their kernel-launching thread (planner/host-threads.ts)
  assert.deepEqual(cpuAdamThreads(32, 2, true, true), [1, 15, 32]);
  assert.deepEqual(cpuAdamThreads(48, 2, false), [1, 2, 4, 8, 16, 24, 32, 48]);
  assert.deepEqual(cpuAdamThreads(8, 1, true), [1, 8]);
  assert.equal(steadyStep(4), 2);
  assert.equal(steadyStep(2), 1);
  assert.ok(llcBytes() >= 0);
  assert.equal(llcBytes('/nonexistent'), 0);
});

test('the host costs of a kernel and of an instruction are recovered from a host-bound probe (an outlier dropped); a device-bound probe cannot tell a kernel\'s host cost: the fit says so', async () => {
  const { fitHostCosts } = await import('./calibrate.ts');
  // instructions of a tiny model: forward (40 kernels), backward (80), optimizer step (2), a send (0)
  const n = [40, 80, 2, 0, 41, 82, 2, 0, 40, 80];
  const b = n.map((k) => 3 * k + 5);  // device time: 3 us a kernel, well under the host's
  const c = n.map(() => 1);
  const y = n.map((k, i) => Math.max(b[i]!, 20 * k) + 60 + (i % 3) - 1);
  y[9] = y[9]! + 5000;  // a lazily created communicator, say
  const r = fitHostCosts(y, b, n, c, 7.5);
  assert.ok(r.ok, JSON.stringify(r));
  assert.ok(Math.abs(r.x - 20) < 0.5, `kernel ${r.x}`);
  assert.ok(Math.abs(r.z - 60) < 5, `instruction ${r.z}`);
  assert.deepEqual(r.outliers, [9]);
  // every instruction device-bound (1 ms a kernel): the kernels' host cost is hidden
  const big = n.map((k) => 1000 * k + 5);
  const r2 = fitHostCosts(n.map((k, i) => big[i]! + 60), big, n, c, 7.5);
  assert.equal(r2.ok, false);
});

test('sustained compute: the fit recovers the factor a hot run shows, and only that model\'s table entries move', async () => {
  const { modelShapeKeys, scaleShapes, fitSustained, probeShapeOf: shapeOf } = await import('./calibrate.ts');
  const p = await matrixProfile();
  const keys7 = modelShapeKeys(llama2_7b, 'bf16-mixed', [1024], [1]);
  const keys1 = modelShapeKeys(llama32_1b, 'bf16-mixed', [1024], [1]);
  const plan = probePlan(true, 'fake', 6, 1, 2, {}, shapeOf(llama2_7b, 1024, 1), 8);
  const dur = (prof: typeof p) => {
    const r = simulatePlan(plan, prof, { criticalPath: false, hostMemory: false });
    return Array.from(r.lowered.taskOf[0]!, (t, pc) => ({ pc, op: plan.program.ranks[0]![pc]!.op, us: t < 0 ? NaN : r.result.end_us[t]! - r.result.start_us[t]! }))
      .filter((x) => (x.op === 'forward' || x.op === 'backward') && Number.isFinite(x.us));
  };
  const hot = dur(scaleShapes(p, keys7, 1.12, 'bf16'));
  const d0 = dur(p), d2 = dur(scaleShapes(p, keys7, 2, 'bf16'));
  assert.ok(hot.length >= 16, `${hot.length} instructions`);
  assert.ok(hot.every((x, i) => x.us > d0[i]!.us), 'the hot run is slower');
  const s = fitSustained(hot.map((x) => x.us), d0.map((x) => x.us), d2.map((x) => x.us));
  assert.ok(Math.abs(s - 1.12) < 0.01, `fitted ${s}`);
  const q = scaleShapes(p, keys7, s, 'bf16');
  const entry = (prof: typeof p, key: string) => prof.compute.gemm!.bf16!.find((g) => `${g.m}x${g.n}x${g.k}` === key);
  const only1 = [...keys1.gemm].find((k) => !keys7.gemm.has(k) && entry(p, k));
  assert.ok(only1, 'a 1B shape in the table');
  assert.equal(entry(q, only1!)!.us, entry(p, only1!)!.us, 'the 1B entry did not move');
  const k7 = [...keys7.gemm].find((k) => entry(p, k))!;
  assert.ok(Math.abs(entry(q, k7)!.us! / entry(p, k7)!.us! - s) < 1e-3);
  assert.ok(Number.isNaN(fitSustained([], [], [])));
  assert.equal(fitSustained([10], [5], [6]), 2, 'clamped at SUSTAINED_MAX');
  assert.equal(fitSustained([4.5], [5], [6]), 0.8, 'clamped at 0.8');
});

test('sustained compute: a pass whose launches fell behind the GPU is named and keeps its own factor, two passes that agree are fitted together', async () => {
  const { fitSustainedPasses, SUSTAINED_PASS_SPLIT } = await import('./calibrate.ts');
  // tables: 1000 us of which 800 us matrix products (d2 doubles them), per instruction
  const pass = (s: number, n: number) => ({ meas: Array.from({ length: n }, (_, i) => 200 + 800 * s + (i % 3) - 1), d0: Array(n).fill(1000), d2: Array(n).fill(1800) });
  // the fifteenth matrix run's LLaMA-3.2-1B mbs-1 probe: forward x1.5 (its launches behind the GPU,
  // as the plans' forwards ran), backward x1.12: each pass its own, the shared entries between
  const slowFwd = fitSustainedPasses(pass(1.6, 32), pass(1.12, 32));
  assert.equal(slowFwd.hostBound, 'forward');
  assert.ok(Math.abs(slowFwd.forward - 1.6) < 0.005 && Math.abs(slowFwd.backward - 1.12) < 0.005, JSON.stringify(slowFwd));
  assert.ok(slowFwd.s >= 1.12 - 0.005 && slowFwd.s <= 1.6 + 0.005, JSON.stringify(slowFwd));
  const slowBwd = fitSustainedPasses(pass(1.15, 16), pass(1.40, 16));
  assert.equal(slowBwd.hostBound, 'backward');
  assert.ok(Math.abs(slowBwd.backward - 1.40) < 0.005 && Math.abs(slowBwd.forward - 1.15) < 0.005);
  // passes within SUSTAINED_PASS_SPLIT: one fit over every instruction, between the two
  const agree = fitSustainedPasses(pass(1.13, 16), pass(1.16, 16));
  assert.equal(agree.hostBound, null);
  assert.ok(agree.s >= 1.13 - 0.005 && agree.s <= 1.16 + 0.005, JSON.stringify(agree));
  assert.ok(SUSTAINED_PASS_SPLIT > 0.05, 'wider than the passes\' spread in normal probes');
  // LLaMA-3.2-1B at one sequence in a normal probe (the GEMM A/B on one H200): forward x1.17, backward
  // x1.06, each kept for its own pass
  const normal1b = fitSustainedPasses(pass(1.17, 32), pass(1.06, 32));
  assert.equal(normal1b.hostBound, null);
  assert.ok(Math.abs(normal1b.forward - 1.17) < 0.005 && Math.abs(normal1b.backward - 1.06) < 0.005, JSON.stringify(normal1b));
  // one pass missing (no backward instructions timed): the forward alone
  const only = fitSustainedPasses(pass(1.2, 8), { meas: [], d0: [], d2: [] });
  assert.equal(only.hostBound, null);
  assert.ok(Math.abs(only.s - 1.2) < 0.005);
});

test('sustained compute: the probe gets enough layers that a per-instruction cost the model lacks moves the factor little', async () => {
  const { modelShapeKeys, scaleShapes, fitSustained, probeShapeOf: shapeOf, sustainedProbeLayers } = await import('./calibrate.ts');
  const p = await matrixProfile();
  const keys = modelShapeKeys(llama32_1b, 'bf16-mixed', [1024], [1]);
  // a hot GPU: the layers' products 1.1x their table, and 300 us an instruction the model does not
  // have (the embedding's dense gradient, the head's host work)
  const fitWith = (layers: number) => {
    const plan = probePlan(true, 'fake', 6, 1, 2, {}, shapeOf(llama32_1b, 1024, 1, layers), 8);
    const dur = (prof: typeof p) => {
      const r = simulatePlan(plan, prof, { criticalPath: false, hostMemory: false });
      return Array.from(r.lowered.taskOf[0]!, (t, pc) => ({ op: plan.program.ranks[0]![pc]!.op, us: t < 0 ? NaN : r.result.end_us[t]! - r.result.start_us[t]! }))
        .filter((x) => (x.op === 'forward' || x.op === 'backward') && Number.isFinite(x.us)).map((x) => x.us);
    };
    const d0 = dur(p), d2 = dur(scaleShapes(p, keys, 2, 'bf16'));
    return fitSustained(d0.map((x, i) => x + 0.1 * (d2[i]! - x) + 300), d0, d2);
  };
  const sized = sustainedProbeLayers(llama32_1b, 1024, 1, 32, p, 141e9);
  assert.ok(sized >= 8, `${sized} layers for 1B at one sequence on an H200`);
  const two = fitWith(2), many = fitWith(sized);
  assert.ok(Math.abs(many - 1.1) < 0.08, `sized probe fitted ${many}`);
  assert.ok(Math.abs(many - 1.1) < 0.4 * Math.abs(two - 1.1), `2 layers fitted ${two}, ${sized} layers ${many}`);
  // a large model at four sequences needs no more than two; memory caps the count
  assert.equal(sustainedProbeLayers(llama2_7b, 1024, 4, 8, p, 141e9), 2);
  assert.equal(sustainedProbeLayers(llama32_1b, 1024, 1, 32, p, 24e9), 2);
});

test('sustained compute: each micro-batch size\'s factor scales its own entries, and a shared entry only once', async () => {
  const { modelShapeKeys, applySustained } = await import('./calibrate.ts');
  const p = await matrixProfile();
  const k1 = modelShapeKeys(llama32_1b, 'bf16-mixed', [1024], [1]), k2 = modelShapeKeys(llama32_1b, 'bf16-mixed', [1024], [2]);
  const entry = (prof: typeof p, key: string) => prof.compute.gemm!.bf16!.find((g) => `${g.m}x${g.n}x${g.k}` === key);
  const only = (a: Set<string>, b: Set<string>) => [...a].find((k) => !b.has(k) && entry(p, k));
  const a1 = only(k1.gemm, k2.gemm), a2 = only(k2.gemm, k1.gemm);
  assert.ok(a1 && a2, 'a shape of each size in the table');
  const q = applySustained(p, [{ s: 1.1, keys: k1 }, { s: 1.02, keys: k2 }], 'bf16');
  assert.ok(Math.abs(entry(q, a1!)!.us! / entry(p, a1!)!.us! - 1.1) < 1e-3);
  assert.ok(Math.abs(entry(q, a2!)!.us! / entry(p, a2!)!.us! - 1.02) < 1e-3);
  // the same keys fitted twice: the first factor only (not 1.1 x 1.02)
  const r = applySustained(p, [{ s: 1.1, keys: k1 }, { s: 1.02, keys: k1 }], 'bf16');
  assert.ok(Math.abs(entry(r, a1!)!.us! / entry(p, a1!)!.us! - 1.1) < 1e-3);
  assert.equal(entry(p, a1!)!.us, p.compute.gemm!.bf16!.find((g) => `${g.m}x${g.n}x${g.k}` === a1)!.us, 'the input profile is not changed');
});

test('sustained compute: each pass\'s table entries take that pass\'s own factor', async () => {
  const { modelShapeKeys, modelShapeKeysByPass, applySustained } = await import('./calibrate.ts');
  const p = await matrixProfile();
  const keys = modelShapeKeys(llama32_1b, 'bf16-mixed', [1024], [1]);
  const byPass = modelShapeKeysByPass(llama32_1b, 'bf16-mixed', [1024], [1]);
  // every GEMM shape of the model is in exactly one of the three sets
  assert.equal(byPass.fwd.size + byPass.bwd.size + byPass.both.size, keys.gemm.size);
  assert.ok(byPass.fwd.size > 0 && byPass.bwd.size > 0, JSON.stringify({ f: byPass.fwd.size, b: byPass.bwd.size }));
  const q = applySustained(p, [{ s: 1.12, keys, passes: { forward: 1.05, backward: 1.15, keys: byPass } }], 'bf16');
  const entry = (prof: typeof p, key: string) => prof.compute.gemm!.bf16!.find((g) => `${g.m}x${g.n}x${g.k}` === key);
  const ratio = (key: string) => entry(q, key)!.us! / entry(p, key)!.us!;
  const inTable = (ks: Set<string>) => [...ks].filter((k) => entry(p, k)?.us);
  for (const k of inTable(byPass.fwd)) assert.ok(Math.abs(ratio(k) - 1.05) < 1e-3, `forward-only ${k}: x${ratio(k)}`);
  for (const k of inTable(byPass.bwd)) assert.ok(Math.abs(ratio(k) - 1.15) < 1e-3, `backward-only ${k}: x${ratio(k)}`);
  for (const k of inTable(byPass.both)) assert.ok(Math.abs(ratio(k) - 1.12) < 1e-3, `shared ${k}: x${ratio(k)}`);
  const a0 = p.compute.attention!.bf16!.find((x) => byPass.attention.has(`${x.batch}x${x.heads}x${x.kv_heads}x${x.seq}x${x.head_dim}`));
  if (a0) {
    const a1 = q.compute.attention!.bf16!.find((x) => x.batch === a0.batch && x.heads === a0.heads && x.kv_heads === a0.kv_heads && x.seq === a0.seq && x.head_dim === a0.head_dim)!;
    assert.ok(Math.abs(a1.fwd_us! / a0.fwd_us! - 1.05) < 1e-3 && Math.abs(a1.bwd_us! / a0.bwd_us! - 1.15) < 1e-3);
  }
  // a fit without both passes (no passes): one factor everywhere
  const r = applySustained(p, [{ s: 1.12, keys, passes: null }], 'bf16');
  for (const k of inTable(byPass.fwd).slice(0, 3)) assert.ok(Math.abs(entry(r, k)!.us! / entry(p, k)!.us! - 1.12) < 1e-3);
});

test('GEMMs timed behind device work ahead: the table is device time and no host dispatch is taken off it', { timeout: 60_000 }, async () => {
  const gpu = { index: 0, name: 'NVIDIA H200', totalBytes: 150e9, freeBytes: 149e9, computeCapability: '9.0', multiProcessors: 132 };
  const run = (note: string) => calibrate({
    parts: new Set(['gemm']), quick: true, models: [llama32_1b], seqs: [1024], microBatchSizes: [1], diskPaths: [], id: 'fake-h200', command: 'mmoc calibrate (test)',
    deps: {
      devices: () => ({ cpuCores: 16, torchThreads: 16, cudaAvailable: true, cuda: [gpu] }),
      buildInfo: () => ({ torchVersion: '2.11.0', compiler: 'gcc 13', cuda: true, cudaVersion: '13.0', sdpa: true, gloo: false, nccl: true, fusedAdamw: true }),
      // every GEMM 12 us above its FLOPs at 700 TFLOP/s
      calibrateTask: async (t) => ({ ...(await fakeTask(t)), ...(t.kind === 'gemm' ? { medianUs: (2 * t.dims![0]! * t.dims![1]! * t.dims![2]!) / 700e6 + 12, note } : {}) }),
    },
  });
  const idle = (await run('')).profile.compute, ahead = (await run('device time behind 340 us of GEMMs ahead')).profile.compute;
  assert.ok(idle.gemm_dispatch_us! > 5, `timed from an idle device: ${idle.gemm_dispatch_us} us of dispatch taken off`);
  assert.equal(ahead.gemm_dispatch_us, undefined, 'timed behind work ahead: none');
});

test('early update share: the probe\'s last backward, longer than the others by part of its early updates\' time, gives that part; none longer gives 0; a probe without early updates gives NaN', async () => {
  const { updateShownFromProbe, probePlan: pp, probeShapeOf: shapeOf } = await import('./calibrate.ts');
  const p = await matrixProfile();
  const plan = pp(true, 'fake', 4, 1, 2, {}, shapeOf(llama32_1b, 1024, 2, 4), 8);
  const prog = plan.program.ranks[0]!;
  const r = simulatePlan(plan, p, { criticalPath: false, hostMemory: false });
  const us = (pc: number) => { const t = r.lowered.taskOf[0]![pc]!; return r.result.end_us[t]! - r.result.start_us[t]!; };
  // the probe's four decoder layers are updated early (one rank: its last backward sends nothing)
  const upd = prog.reduce((a, x, pc) => a + (x.op === 'optimizer_step' && x.layer >= 1 && x.layer <= 4 ? us(pc) : 0), 0);
  assert.ok(upd > 0);
  const bwd = prog.flatMap((x, pc) => (x.op === 'backward' ? [pc] : []));
  const med = (extra: number) => new Map(bwd.map((pc, i) => [pc, 10_000 + (i % 3) + (i === bwd.length - 1 ? extra : 0)] as [number, number]));
  assert.ok(Math.abs(updateShownFromProbe(plan, us, med(0.6 * upd)) - 0.6) < 1e-3);
  assert.equal(updateShownFromProbe(plan, us, med(0)), 0);
  assert.equal(updateShownFromProbe(plan, us, med(3 * upd)), 1, 'within [0, 1]');
  const clipped = { ...plan, program: { ...plan.program, ranks: [[...prog.slice(0, bwd.at(-1)! + 1), { op: 'grad_norm' as const }, ...prog.slice(bwd.at(-1)! + 1)]] } };
  assert.ok(Number.isNaN(updateShownFromProbe(clipped, us, med(upd))), 'grad_norm: no early update');
});

test('host update from the executor\'s trace: slices while every rank updates, apart without copies and under them; a slice updating alone or half under copies counts in neither', async () => {
  const { probePlan: pp, probeShapeOf: shapeOf, hostUpdateFromTrace } = await import('./calibrate.ts');
  const { getInventory } = await import('../planner/inventory.ts');
  const plan = pp(true, 'fake', 6, 2, 2, { hostUpdate: true }, shapeOf(llama32_1b, 1024, 2, 4), 4);
  const dp = getInventory(plan.model, plan.precision, 2, 1024).layers[1]!.params;
  const cpuSteps = (r: number) => plan.program.ranks[r]!.flatMap((x, pc) => (x.op === 'optimizer_step' && x.tier === 'cpu' && x.layer >= 1 && x.layer <= 4 ? [pc] : []));
  assert.equal(cpuSteps(0).length, 2, 'two decoder layers a rank, updated on the host');
  const ev: TraceEvent[] = [];
  const slice = (name: string, rank: number, pc: number, ts: number, dur: number, step = 3) => ev.push({ name, ph: 'X', pid: rank + 1, tid: 5, ts, dur, args: { rank, pc, step } });
  // step 3: both ranks' first layers at once, 20 ms (no copies); their second layers at once, 26 ms
  // under a copy; step 1 (before fromStep) ignored; rank 0's extra slice alone (rank 1 idle)
  slice('optimizer_step', 0, cpuSteps(0)[0]!, 0, 20_000); slice('optimizer_step', 1, cpuSteps(1)[0]!, 0, 20_000);
  slice('optimizer_step', 0, cpuSteps(0)[1]!, 30_000, 26_000); slice('optimizer_step', 1, cpuSteps(1)[1]!, 30_000, 26_000);
  slice('offload_grads', 1, 0, 29_000, 30_000);
  slice('optimizer_step', 0, cpuSteps(0)[0]!, 100_000, 5_000, 1);
  slice('optimizer_step', 0, cpuSteps(0)[0]!, 200_000, 10_000);
  const h = hostUpdateFromTrace(plan, ev, 2);
  assert.equal(h.nAlone, 2);
  assert.equal(h.nUnder, 2);
  assert.ok(Math.abs(h.alone - dp / 0.020) < 1, `${h.alone}`);
  assert.ok(Math.abs(h.under - dp / 0.026) < 1, `${h.under}`);
});

test('the executor host-update runs combine by their median: two models give the mean of their rates, not the faster; the slowdown only from runs with slices under copies', async () => {
  const { hostExecFigures } = await import('./calibrate.ts');
  // the seventeenth matrix run's figures (params/s a rank)
  const r = hostExecFigures([{ alone: 3.028e9, under: 2.398e9, nUnder: 17 }, { alone: 3.475e9, under: 3.040e9, nUnder: 36 }], 2);
  assert.equal(r.total, Math.round(2 * (3.028e9 + 3.475e9) / 2));
  assert.equal(r.slowdown, +(((3.028 / 2.398 - 1) + (3.475 / 3.040 - 1)) / 2).toFixed(4));
  const one = hostExecFigures([{ alone: 3e9, under: NaN, nUnder: 0 }, { alone: 2e9, under: 1e9, nUnder: 1 }, { alone: 4e9, under: 2e9, nUnder: 5 }], 2);
  assert.equal(one.total, 6e9, 'the middle of three');
  assert.equal(one.slowdown, 1, 'only the run with 5 slices under copies');
  assert.equal(hostExecFigures([{ alone: 3e9, under: NaN, nUnder: 0 }], 2).slowdown, null);
});

test('sustained compute: the smallest micro-batch size\'s probe runs twice and the faster run\'s factors are kept; larger sizes run once', { timeout: 60_000 }, async () => {
  const { fasterProbeRun, PROBE_RUNS_SMALLEST } = await import('./calibrate.ts');
  assert.equal(fasterProbeRun([{ forward: 1.42, backward: 1.47, s: 1.45 }, { forward: 1.05, backward: 1.15, s: 1.1 }]), 1);
  assert.equal(fasterProbeRun([{ forward: 1.05, backward: 1.15, s: 1.1 }, { forward: 1.42, backward: 1.47, s: 1.45 }]), 0);
  assert.equal(fasterProbeRun([{ forward: NaN, backward: NaN, s: NaN }, { forward: NaN, backward: NaN, s: 1.3 }]), 1, 'a run without a fit is passed over');
  const gpu = { index: 0, name: 'NVIDIA H200', totalBytes: 150e9, freeBytes: 149e9, computeCapability: '9.0', multiProcessors: 132 };
  const probes: number[] = [];  // the micro-batch size of each sustained-load probe run
  const out = await calibrate({
    parts: new Set(['gemm', 'overheads']), quick: true, models: [llama32_1b], seqs: [1024], microBatchSizes: [1, 2], diskPaths: [], id: 'fake-h200', command: 'mmoc calibrate (test)',
    deps: {
      devices: () => ({ cpuCores: 16, torchThreads: 16, cudaAvailable: true, cuda: [gpu] }),
      buildInfo: () => ({ torchVersion: '2.11.0', compiler: 'gcc 13', cuda: true, cudaVersion: '13.0', sdpa: true, gloo: false, nccl: true, fusedAdamw: true }),
      calibrateTask: fakeTask,
      execute: async (plan: Plan) => {
        const traceEvents: TraceEvent[] = [];
        if (plan.model.hidden_size === llama32_1b.hidden_size) {
          const mbs = plan.job.microBatchSize;
          probes.push(mbs);
          // the first run at one sequence in a slow spell (every pass far beyond the tables: the
          // fit's ceiling), the second and the larger size's as the probe is sized (~4 ms a forward)
          const slow = mbs === 1 && probes.filter((x) => x === 1).length === 1;
          plan.program.ranks[0]!.forEach((x, pc) => {
            if (x.op !== 'forward' && x.op !== 'backward') return;
            const us = slow ? 1e9 : (x.op === 'forward' ? 4000 : 8000) * mbs;
            for (let step = 0; step < plan.job.steps; step++) traceEvents.push({ name: x.op, ph: 'X', pid: 1, tid: 1, ts: step * 1e6 + pc, dur: us, args: { rank: 0, pc, step } });
          });
        }
        return { trace: { traceEvents }, peak_bytes: [3e9], peak_reserved_bytes: [2e9], peak_allocated_bytes: [1.8e9] } as never;
      },
    },
  });
  assert.deepEqual(probes, [...Array(PROBE_RUNS_SMALLEST).fill(1), 2]);
  const job = out.measurements.find((m) => m.label === 'sustained compute: llama3.2-1b\'s layers in the executor')!;
  assert.equal(job.error, undefined);
  const [one, two] = job.detail as { mbs: number; forward: number; backward: number; runs?: { forward: number; kept: boolean }[] }[];
  assert.ok(one!.forward < 2 && one!.backward < 2, `the fast run kept: forward x${one!.forward}, backward x${one!.backward}`);
  assert.deepEqual(one!.runs!.map((r) => [r.forward, r.kept]), [[2, false], [one!.forward, true]]);
  assert.equal(two!.runs, undefined, 'one run at two sequences');
  assert.match(out.profile.figures!['compute.sustained']!.how ?? '', /llama3\.2-1b mbs 1 forward x[01]\.\d+, backward x[01]\.\d+ \(kept over a second run's forward x2\.000, backward x2\.000\)/);
});
