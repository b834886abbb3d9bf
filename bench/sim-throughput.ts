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
        build_ms_median: Number(median(buildMs).toFixed(2)),
        runs, warmup,
      },
      predicted: { step_s: last!.step_s / steps, tokens_per_s: last!.tokens_per_s, bound: last!.critical?.bound ?? null },
    }],
  }],
};
const fmt = (x: number) => Math.round(x).toLocaleString('en-US');
console.log(`${tasks} tasks; simulate median ${median(simMs).toFixed(1)} ms -> ${fmt(median(tps))} tasks/s wall (best ${fmt(Math.max(...tps))}), ${fmt(median(cpuMs.map((ms) => tasks / (ms / 1e3))))} tasks/cpu-s; build ${median(buildMs).toFixed(1)} ms; load ${loadavg()[0].toFixed(2)}`);
if (out) { writeFileSync(out, JSON.stringify(result, null, 2) + '\n'); console.log(`wrote ${out}`); }
