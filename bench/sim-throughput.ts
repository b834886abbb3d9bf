// Simulator throughput: tasks simulated per second in Node for a pipeline program with offload
// transfers of the LLaMA-2-13B, 8-GPU, 32-micro-batch shape (issue 3's performance target:
// >= 1,000,000 tasks/s on the development machine).
//
//   node --import tsx bench/sim-throughput.ts [--steps 4] [--runs 15] [--profile h200x8]
//        [--out bench/results/<date>-sim-throughput.json]
//
// Each timed run simulates a freshly built graph (so freezing the graph into its CSR form is
// timed too, as in the planner's search, where every candidate is a new graph); building the
// graph is timed separately. The headline is the median over runs after warm-up.
import { execSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, totalmem } from 'node:os';
import { parseHardwareProfile, simulate } from '../sim/index.ts';
import { LLAMA2_13B_8GPU, offloadPipelineGraph } from '../sim/examples.ts';

const args = process.argv.slice(2);
const opt = (name: string, dflt: string) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : dflt;
};
const steps = Number(opt('steps', '4'));
const runs = Number(opt('runs', '15'));
const warmup = Number(opt('warmup', '5'));
const profileId = opt('profile', 'h200x8');
const out = opt('out', '');

const file = new URL(`../configs/hardware/${profileId}.json`, import.meta.url);
const profile = parseHardwareProfile(JSON.parse(readFileSync(file, 'utf8')), `configs/hardware/${profileId}.json`);
const shape = { ...LLAMA2_13B_8GPU, steps };

/** CPU time of this (main) thread in ms, from /proc (Linux; 10 ms ticks, so only sums over many
 *  runs mean much); null elsewhere. Unlike wall time it does not count time the thread waited
 *  for a core on a busy machine, and unlike process.cpuUsage() it leaves out GC helper threads. */
function threadCpu_ms(): number | null {
  try {
    const f = readFileSync('/proc/thread-self/stat', 'utf8');
    const rest = f.slice(f.lastIndexOf(')') + 2).split(' ');
    return (Number(rest[11]) + Number(rest[12])) * 10; // utime + stime, fields 14 and 15
  } catch {
    return null;
  }
}

const median = (xs: number[]) => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)]; };
const buildMs: number[] = [];
const simMs: number[] = [];
const cpuMs: number[] = [];
let tasks = 0;
let last: ReturnType<typeof simulate> | null = null;
let kinds: Record<string, number> = {};
for (let i = 0; i < warmup + runs; i++) {
  const b0 = performance.now();
  const { g } = offloadPipelineGraph(profile, shape);
  const c1 = process.cpuUsage();
  const b1 = performance.now();
  const r = simulate(g, { memorySeries: false, tokens: shape.microBatches * shape.seq * steps });
  const b2 = performance.now();
  const c2 = process.cpuUsage(c1);
  if (i >= warmup) { buildMs.push(b1 - b0); simMs.push(b2 - b1); cpuMs.push((c2.user + c2.system) / 1e3); }
  tasks = g.taskCount;
  last = r;
  if (i === 0) {
    kinds = {};
    for (let t = 0; t < g.taskCount; t++) { const op = g.meta(t).op ?? '?'; kinds[op] = (kinds[op] ?? 0) + 1; }
  }
}
const tps = simMs.map((ms) => tasks / (ms / 1e3));

/** Builds `count` graphs first, then simulates them back to back, reading this thread's CPU time
 *  once around the whole batch (so the 10 ms tick of /proc costs little precision). */
function batch(count: number, make: () => { g: Parameters<typeof simulate>[0] }): { tasks_per_thread_cpu_s: number | null; tasks_per_s: number } {
  const gs = Array.from({ length: count }, () => make().g);
  let n = 0;
  const th1 = threadCpu_ms();
  const a = performance.now();
  for (const g of gs) { simulate(g, { memorySeries: false }); n += g.taskCount; }
  const b = performance.now();
  const th2 = threadCpu_ms();
  return {
    tasks_per_thread_cpu_s: th1 !== null && th2 !== null && th2 > th1 ? Math.round(n / ((th2 - th1) / 1e3)) : null,
    tasks_per_s: Math.round(n / ((b - a) / 1e3)),
  };
}
const mainBatch = batch(runs, () => offloadPipelineGraph(profile, shape));
const result = {
  date: new Date().toISOString().slice(0, 10),
  commit: (() => { try { return execSync('git rev-parse HEAD', { encoding: 'utf8' }).trim(); } catch { return null; } })(),
  machine: {
    cpu_model: cpus()[0]?.model ?? 'unknown',
    cpu_cores: cpus().length,
    host_memory_bytes: totalmem(),
    node: process.version,
    runner: 'node --import tsx',
    loadavg_1m_at_end: Number(loadavg()[0].toFixed(2)),
    note: 'development machine shared with other builds; load varies between runs',
  },
  profile: profile.id,
  results: [{
    job: { model: 'llama2-13b (generated program of that shape)', seq: shape.seq, tokens_per_step: shape.microBatches * shape.seq, gpus: shape.stages, gpu_mem_cap_gib: null },
    runs: [{
      system: 'mmoc sim',
      plan: {
        schedule: '1f1b', stages: shape.stages, layers_per_stage: shape.layers / shape.stages, micro_batches: shape.microBatches, steps,
        offload: 'weights fetched host->GPU per layer and micro-batch (prefetch depth 2); gradients offloaded GPU->host per layer and micro-batch over shared host links; CPU AdamW per layer',
        tasks, tasks_by_op: kinds,
      },
      measured: {
        tasks_per_s_median: Math.round(median(tps)),
        tasks_per_s_best: Math.round(Math.max(...tps)),
        tasks_per_s_worst: Math.round(Math.min(...tps)),
        simulate_ms_median: Number(median(simMs).toFixed(2)),
        // CPU time of the process (all its threads, GC included) per run: less sensitive to other
        // jobs on a shared machine than wall time
        tasks_per_cpu_s_median: Math.round(median(cpuMs.map((ms) => tasks / (ms / 1e3)))),
        // a batch of `runs` prebuilt graphs simulated back to back: tasks over the main thread's
        // CPU time (/proc; leaves out waiting for a core and GC helper threads) and over wall time
        tasks_per_thread_cpu_s: mainBatch.tasks_per_thread_cpu_s,
        tasks_per_s_batch: mainBatch.tasks_per_s,
        build_ms_median: Number(median(buildMs).toFixed(2)),
        runs, warmup,
      },
      predicted: { step_s: last!.step_s / steps, tokens_per_s: last!.tokens_per_s, bound: last!.critical?.bound ?? null },
    }],
  }],
};
const fmt = (x: number) => Math.round(x).toLocaleString('en-US');

// The same shape as planner/ lowers it (when planner/ can: it is built in parallel, so a failure
// here is reported, not fatal): LLaMA-2-13B, 8 stages, 32 micro-batches, 1F1B, every offload on
// (optimizer on CPU, gradients and activations to host, weights streamed with prefetch 2).
async function plannerProgram(): Promise<Record<string, unknown>> {
  try {
    const { buildPlan, defaultOptimizer } = await import('../planner/plan-build.ts');
    const { levelPolicy, balancedPartition } = await import('../planner/search.ts');
    const { lowerPlan } = await import('../planner/lower.ts');
    const { parseModelConfig } = await import('../planner/model-config.ts');
    const model = parseModelConfig(JSON.parse(readFileSync(new URL('../configs/models/llama2-13b.json', import.meta.url), 'utf8')), 'configs/models/llama2-13b.json');
    const N = 8;
    const stageLayers = balancedPartition(new Array<number>(model.num_hidden_layers + 2).fill(1), N);
    const plan = buildPlan({
      hardware: profile.id, model, precision: 'bf16-mixed', optimizer: defaultOptimizer(), schedule: '1f1b',
      job: { seq: 4096, microBatchSize: 1, microBatches: 32, steps: 1, gpuMemCapBytes: null, seed: 0 },
      stageLayers, pipelineRanks: N, dataParallel: 1, rankDevice: [0, 1, 2, 3, 4, 5, 6, 7],
      policy: stageLayers.map(() => levelPolicy(8, true, 'cpu', 2)),
    });
    const lowerMs: number[] = [];
    const ms: number[] = [];
    const cpu: number[] = [];
    let n = 0;
    let step_s = 0;
    let bound: string | null = null;
    for (let i = 0; i < warmup + runs; i++) {
      const a = performance.now();
      const low = lowerPlan(plan, profile);
      const c1 = process.cpuUsage();
      const b = performance.now();
      const r = simulate(low.graph, { memorySeries: false, tokens: low.tokens });
      const c = performance.now();
      const c2 = process.cpuUsage(c1);
      if (i >= warmup) { lowerMs.push(b - a); ms.push(c - b); cpu.push((c2.user + c2.system) / 1e3); }
      n = low.graph.taskCount;
      step_s = r.step_s;
      bound = r.critical?.bound ?? null;
    }
    const pb = batch(3 * runs, () => ({ g: lowerPlan(plan, profile).graph }));
    const out = {
      tasks: n,
      tasks_per_s_median: Math.round(median(ms.map((x) => n / (x / 1e3)))),
      tasks_per_s_best: Math.round(Math.max(...ms.map((x) => n / (x / 1e3)))),
      tasks_per_cpu_s_median: Math.round(median(cpu.map((x) => n / (x / 1e3)))),
      tasks_per_thread_cpu_s: pb.tasks_per_thread_cpu_s,
      tasks_per_s_batch: pb.tasks_per_s,
      simulate_ms_median: Number(median(ms).toFixed(2)),
      lower_ms_median: Number(median(lowerMs).toFixed(2)),
      predicted_step_s: step_s,
      bound,
    };
    console.log(`planner-lowered program: ${n} tasks; ${fmt(out.tasks_per_s_median)} tasks/s wall (best ${fmt(out.tasks_per_s_best)}), ${fmt(out.tasks_per_cpu_s_median)} tasks/cpu-s, ${out.tasks_per_thread_cpu_s === null ? '?' : fmt(out.tasks_per_thread_cpu_s)} tasks/thread-cpu-s; lowering ${out.lower_ms_median} ms`);
    return out;
  } catch (e) {
    console.log(`planner-lowered program: not measured (${(e as Error).message})`);
    return { error: (e as Error).message };
  }
}
const planner = args.includes('--no-planner') ? null : await plannerProgram();
if (planner) {
  (result.results[0].runs as unknown[]).push({
    system: 'mmoc sim (program lowered by planner/)',
    plan: { schedule: '1f1b', stages: 8, micro_batches: 32, steps: 1, offload: 'planner level 8: optimizer on CPU, gradients and activations to host, weights streamed (prefetch 2), recompute' },
    measured: planner,
  });
}
console.log(`${tasks} tasks; simulate median ${median(simMs).toFixed(1)} ms -> ${fmt(median(tps))} tasks/s wall (best ${fmt(Math.max(...tps))}), ${fmt(median(cpuMs.map((ms) => tasks / (ms / 1e3))))} tasks/cpu-s, ${mainBatch.tasks_per_thread_cpu_s === null ? '?' : fmt(mainBatch.tasks_per_thread_cpu_s)} tasks/thread-cpu-s (batch); build ${median(buildMs).toFixed(1)} ms; load ${loadavg()[0].toFixed(2)}`);
if (out) { writeFileSync(out, JSON.stringify(result, null, 2) + '\n'); console.log(`wrote ${out}`); }
