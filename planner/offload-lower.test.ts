// The async offload engine as the lowering models it: each rank's host worker runs its CPU AdamW
// updates in issue order on cores / ranks threads less one (GPU ranks: host-threads.ts), the ranks share the host's (DRAM-bound) total,
// and an upload waits behind every update issued before it on the worker.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildPlan, defaultOptimizer } from './plan-build.ts';
import { defaultPolicy, evenPartition } from './memory.ts';
import { simulatePlan } from './lower.ts';
import { tiny } from './test-models.ts';
import { profile } from '../test/planner-fixtures.ts';
import type { HardwareProfile } from '../sim/index.ts';

const F = (gpu: number, cpu: number) => ({ gpu, cpu, disk: 0 });
function hostPlan(delayed: boolean, gpuShare = 0) {
  const parts = evenPartition(tiny.num_hidden_layers, 2);
  return buildPlan({
    hardware: 'h200x2', model: tiny, precision: 'bf16-mixed', optimizer: { ...defaultOptimizer(), delayedUpdate: delayed },
    job: { seq: 64, microBatchSize: 1, microBatches: 4, steps: 2, gpuMemCapBytes: null, seed: 1 },
    schedule: '1f1b', stageLayers: parts, pipelineRanks: 2, dataParallel: 1, rankDevice: [0, 1],
    policy: parts.map(() => ({ ...defaultPolicy(false), master: F(gpuShare, 1 - gpuShare), optState: F(gpuShare, 1 - gpuShare) })),
  });
}
/** A host whose AdamW gives 1 G params/s on 16 threads and 1.2 G in all on 32 (DRAM-bound). */
function slowHost(): HardwareProfile {
  const p = JSON.parse(JSON.stringify(profile('h200x2'))) as HardwareProfile;
  p.cpu.cores = 32; p.cpu.threads = 32;
  p.cpu.optimizers = [{ name: 'adamw', dtype: 'fp32', points: [{ threads: 16, params_per_s: 1e9 }, { threads: 32, params_per_s: 1.2e9 }] }];
  return p;
}

test('CPU updates: a GPU rank on cores / ranks threads less one, one at a time in issue order; two ranks share the all-cores total', () => {
  const plan = hostPlan(false);
  const sim = simulatePlan(plan, slowHost(), { criticalPath: false });
  const { graph: g, taskOf } = sim.lowered;
  const { start_us: s, end_us: e } = sim.result;
  const cpu: { r: number; t: number }[] = [];
  plan.program.ranks.forEach((prog, r) => prog.forEach((x, pc) => { if (x.op === 'optimizer_step' && x.tier === 'cpu') cpu.push({ r, t: taskOf[r]![pc]! }); }));
  assert.ok(cpu.length >= 4);
  for (const { t } of cpu) assert.equal(g.tWorkers[t], 15, 'each rank\'s worker: 32 cores / 2 ranks, less its launching thread\'s');
  for (let r = 0; r < 2; r++) {
    const mine = cpu.filter((x) => x.r === r).map((x) => x.t);
    for (let i = 1; i < mine.length; i++) assert.ok(s[mine[i]!]! >= e[mine[i - 1]!]! - 1e-6, `rank ${r}: update ${i} overlaps the one before it`);
  }
  // total throughput never above the all-cores figure: the sum of elements over the CPU busy span
  const elems = cpu.reduce((t, x) => t + g.tAmount[x.t]!, 0);
  const span = Math.max(...cpu.map((x) => e[x.t]!)) - Math.min(...cpu.map((x) => s[x.t]!));
  assert.ok(elems / span <= 1.2e9 / 1e6 + 1e-6, `${(elems / span).toFixed(1)} params/us above the host's total`);
});

test('an upload waits for every CPU update issued before it on the rank (delayed update: all of them)', () => {
  const plan = hostPlan(true);
  const sim = simulatePlan(plan, slowHost(), { criticalPath: false });
  const { taskOf } = sim.lowered;
  const { start_us: s, end_us: e } = sim.result;
  plan.program.ranks.forEach((prog, r) => {
    const cpuEnds = prog.map((x, pc) => (x.op === 'optimizer_step' && x.tier === 'cpu' ? e[taskOf[r]![pc]!]! : -Infinity));
    const lastCpu = Math.max(...cpuEnds);
    prog.forEach((x, pc) => { if (x.op === 'upload_params') assert.ok(s[taskOf[r]![pc]!]! >= lastCpu - 1e-6, `rank ${r} upload of layer ${x.layer} before the last CPU update`); });
  });
});

test('the set-up transient of a host-updated plan is the simulated peak where training needs less (memory model and simulator agree)', async () => {
  const { planMemory } = await import('./lower.ts');
  const plan = hostPlan(true);
  const p = slowHost();
  const mem = planMemory(plan, p);
  const sim = simulatePlan(plan, p, { criticalPath: false });
  for (let r = 0; r < 2; r++) {
    const d = mem.devices[r]!;
    assert.ok(d.load > 0);
    assert.equal(sim.peak_bytes[r], d.total, `rank ${r}`);
    assert.ok(sim.peak_bytes[r]! >= d.load + d.overhead);
  }
});

test('alternating disk-group order: with the delayed update the first diskBuffers reads of a rank\'s step are served from host memory (no disk transfer); fixed order, or no delayed update, reads every group', () => {
  const parts = evenPartition(tiny.num_hidden_layers, 2);
  const D = { gpu: 0, cpu: 0, disk: 1 };
  const mk = (delayed: boolean, alternate: boolean | undefined) => {
    const p = buildPlan({
      hardware: 'h200x2', model: tiny, precision: 'bf16-mixed', optimizer: { ...defaultOptimizer(), delayedUpdate: delayed },
      job: { seq: 64, microBatchSize: 1, microBatches: 4, steps: 2, gpuMemCapBytes: null, seed: 1 },
      schedule: '1f1b', stageLayers: parts, pipelineRanks: 2, dataParallel: 1, rankDevice: [0, 1],
      policy: parts.map(() => ({ ...defaultPolicy(false), master: D, optState: D })), diskPaths: ['/a'],
    });
    return { ...p, policy: { ...p.policy, diskConcurrency: 1, ...(alternate === undefined ? {} : { diskAlternate: alternate }) } };
  };
  const readsFromDisk = (plan: ReturnType<typeof mk>) => {
    const sim = simulatePlan(plan, profile('h200x2'), { criticalPath: false });
    const { graph: g, taskOf } = sim.lowered;
    let disk = 0, total = 0;
    plan.program.ranks.forEach((prog, r) => prog.forEach((x, pc) => {
      if (x.op !== 'disk_read') return;
      total++;
      if (g.tRes[taskOf[r]![pc]!]! >= 0) disk++;  // on a disk resource (a hit runs on none)
    }));
    return { disk, total, step: sim.step_s };
  };
  const alt = readsFromDisk(mk(true, undefined)), fixed = readsFromDisk(mk(true, false)), eager = readsFromDisk(mk(false, undefined));
  // 3 groups a rank, 1 path x concurrency 1: 2 staged groups; 2 ranks
  assert.deepEqual([alt.total, alt.disk], [6, 2]);
  assert.deepEqual([fixed.total, fixed.disk], [6, 6]);
  assert.equal(eager.disk, eager.total, 'without the delayed update the order is the backward\'s: no alternation');
  assert.ok(alt.step <= fixed.step, `fewer disk reads are not slower: ${alt.step} vs ${fixed.step}`);
});

test('a rank\'s disk transfers on two paths overlap (a disk worker a path), each path\'s in issue order', () => {
  const parts = evenPartition(tiny.num_hidden_layers, 2);
  const D = { gpu: 0, cpu: 0, disk: 1 };
  const p = buildPlan({
    hardware: 'h200x2', model: tiny, precision: 'bf16-mixed', optimizer: { ...defaultOptimizer() },
    job: { seq: 64, microBatchSize: 1, microBatches: 4, steps: 2, gpuMemCapBytes: null, seed: 1 },
    schedule: '1f1b', stageLayers: parts, pipelineRanks: 2, dataParallel: 1, rankDevice: [0, 1],
    policy: parts.map(() => ({ ...defaultPolicy(false), master: D, optState: D })), diskPaths: ['/a', '/b'],
  });
  const prof = JSON.parse(JSON.stringify(profile('h200x2'))) as HardwareProfile;
  const d0 = prof.disks[0] ?? { path: '/a', read_GBps: 1, write_GBps: 1, concurrency: 2, latency_us: 100 };
  prof.disks = [{ ...d0, path: '/a', read_GBps: 0.01, write_GBps: 0.01 }, { ...d0, path: '/b', read_GBps: 0.01, write_GBps: 0.01 }];
  const sim = simulatePlan(p, prof, { criticalPath: false });
  const { taskOf } = sim.lowered;
  const { start_us: s, end_us: e } = sim.result;
  const prog = p.program.ranks[0]!;
  const spans = prog.flatMap((x, pc) => (x.op === 'disk_read' || x.op === 'disk_write' ? [{ path: (x as { path: number }).path, t: taskOf[0]![pc]! }] : []))
    .filter((x) => x.t >= 0).map((x) => ({ path: x.path, a: s[x.t]!, b: e[x.t]! }));
  assert.ok(new Set(spans.map((x) => x.path)).size === 2, 'both paths used');
  const overlap = spans.some((x) => spans.some((y) => y.path !== x.path && x.a < y.b && y.a < x.b));
  assert.ok(overlap, 'transfers on the two paths overlap in time');
  for (const path of [0, 1]) {
    const on = spans.filter((x) => x.path === path);
    for (let i = 1; i < on.length; i++) assert.ok(on[i]!.a >= on[i - 1]!.b - 1e-6, `path ${path}: in issue order, one at a time`);
  }
});

test('the caching allocator\'s slack from the profile adds to every GPU\'s predicted peak, once', () => {
  const plan = hostPlan(false);
  const base = profile('h200x2');
  const slack = 300 * 2 ** 20;
  const withSlack = { ...base, overheads: { ...base.overheads, allocator_slack_bytes: slack } } as HardwareProfile;
  const a = simulatePlan(plan, base, { criticalPath: false }), b = simulatePlan(plan, withSlack, { criticalPath: false });
  assert.equal(a.peak_bytes.length, 2);
  a.peak_bytes.forEach((x, i) => assert.equal(b.peak_bytes[i]! - x, slack, `GPU ${i}`));
});

test('a layer split between the tiers offloads the gradients of its host part only (as the executor copies them): half the update on the host, half the gradient bytes and half the upload bytes of the whole-host plan', () => {
  const bytesOf = (plan: ReturnType<typeof hostPlan>, op: string) => {
    const sim = simulatePlan(plan, slowHost(), { criticalPath: false });
    const { graph: g, taskOf } = sim.lowered;
    let sum = 0;
    plan.program.ranks.forEach((prog, r) => prog.forEach((x, pc) => { const t = taskOf[r]![pc]!; if (x.op === op && t >= 0) sum += g.tAmount[t]!; }));
    return sum;
  };
  const whole = hostPlan(true), split = hostPlan(true, 0.5);
  assert.ok(split.program.ranks.flat().some((x) => x.op === 'optimizer_step' && x.tier === 'cpu' && x.fraction === 0.5), 'the split plan updates half of each layer on the host');
  for (const op of ['offload_grads', 'upload_params']) {
    const r = bytesOf(split, op) / bytesOf(whole, op);
    assert.ok(Math.abs(r - 0.5) < 0.01, `${op}: split/whole bytes ${r.toFixed(3)}`);
  }
});

test('activation offload with recompute by layer: all but the last layer\'s share moves under its forward (the executor sends each input as it exists)', () => {
  const plan = buildPlan({
    hardware: 'h200x2', model: tiny, precision: 'bf16-mixed', optimizer: defaultOptimizer(),
    job: { seq: 64, microBatchSize: 1, microBatches: 4, steps: 2, gpuMemCapBytes: null, seed: 1 },
    schedule: '1f1b', stageLayers: [[0, tiny.num_hidden_layers + 2]], pipelineRanks: 1, dataParallel: 1, rankDevice: [0],
    policy: [{ ...defaultPolicy(true), activations: F(0, 1) }],
  });
  const sim = simulatePlan(plan, profile('h200x2'), { criticalPath: false });
  const { graph: g, taskOf } = sim.lowered;
  const { start_us: s, end_us: e } = sim.result;
  const prog = plan.program.ranks[0]!;
  let checked = 0;
  prog.forEach((x, pc) => {
    if (x.op !== 'offload_act') return;
    const fwdPc = prog.findLastIndex((y, q) => q < pc && y.op === 'forward' && y.mb === x.mb);
    const fwd = taskOf[0]![fwdPc]!, tail = taskOf[0]![pc]!;
    // the instruction's own task is the tail share, after the forward; the bulk is the task added just before it
    const bulk = tail - 1;
    assert.equal(g.tPc[bulk], pc, 'the bulk is the same instruction\'s');
    assert.ok(g.tAmount[bulk]! > g.tAmount[tail]!, 'the bulk is the larger share');
    assert.ok(s[bulk]! < e[fwd]!, `mb ${x.mb}: the bulk starts ${s[bulk]} before the forward ends ${e[fwd]}`);
    assert.ok(s[tail]! >= e[fwd]! - 1e-6, 'the last share after the forward');
    checked++;
  });
  assert.equal(checked, 4);
});
