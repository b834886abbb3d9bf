// The GPU bench matrix (bench/gpu/matrix.sh) and the prediction-error evaluation of bench results
// (test/prediction-error.test.ts).
//
//   node --import tsx bench/gpu/matrix.ts plans <out> <profile.json> [--cpu]   writes <out>/plans/*.json + manifest.json
//   node --import tsx bench/gpu/matrix.ts assemble <out> <profile.json>       writes <out>/bench-result.json
//   node --import tsx bench/gpu/matrix.ts median <runs dir> <name> <n>        keeps the median of a plan's n processes
//
// The plans: every schedule the executor runs (1F1B, GPipe, interleaved 1F1B), LLaMA-2-7B and
// LLaMA-3.2-1B (grouped-query attention), 1 and 2 GPUs, several micro-batch sizes, recompute on
// and off; and the offload policies the executor runs (mostly on the 1B model, whose steps are
// short): the optimizer update on the host (synchronous and delayed), part of it on the GPU,
// streamed parameters, activation offload with recompute, optimizer states partly on disk (under
// /tmp/mmoc-matrix-disk, made by `plans`), and a GPU memory cap (LLaMA-2-7B). A plan the memory
// model says does not fit the device (or its cap) is left out with the reason. `--cpu`: the tiny
// model on CPU ranks (a check of the harness on a machine without GPUs).
import { existsSync, mkdirSync, readFileSync, readdirSync, renameSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { spawnSync } from 'node:child_process';
import { cpus, totalmem } from 'node:os';
import { buildPlan, defaultOptimizer } from '../../planner/plan-build.ts';
import { defaultPolicy, evenPartition } from '../../planner/memory.ts';
import { parsePlan } from '../../planner/plan-schema.ts';
import { planMemory, simulatePlan } from '../../planner/lower.ts';
import { llama2_7b, llama32_1b, tiny } from '../../planner/test-models.ts';
import type { ModelConfig } from '../../planner/model-config.ts';
import type { Plan, Precision, ScheduleName, StagePolicy } from '../../planner/plan-types.ts';
import { parseHardwareProfile, type HardwareProfile } from '../../sim/index.ts';
import { embeddedProfile, evaluateBenchResult as evaluateBench, formatEvaluation, summary, STEP_BOUND, type Evaluation } from '../../planner/bench-eval.ts';

const GiB = 2 ** 30;

export interface MatrixEntry {
  name: string;
  model: ModelConfig;
  gpus: number;
  schedule: ScheduleName;
  /** Virtual stages per rank (interleaved). */
  v: number;
  mbs: number;
  M: number;
  recompute: boolean;
  seq: number;
  /** Offload policy (absent: everything resident on the GPU). */
  offload?: Offload;
}

/** An offload variant of a plan: its name suffix, the stage policy and job settings it changes. */
export interface Offload {
  label: string;
  pol: (p: StagePolicy) => StagePolicy;
  delayed?: boolean;
  /** Optimizer-state tier on disk: the plan gets DISK_DIRS. */
  disk?: boolean;
  capGiB?: number;
}

/** Disk-tier folders of the disk plans (one per rank; `plans` makes them). */
export const DISK_DIRS = ['/tmp/mmoc-matrix-disk/a', '/tmp/mmoc-matrix-disk/b'];

const F = (gpu: number, cpu: number, disk = 0) => ({ gpu, cpu, disk });
const hostAdam = (p: StagePolicy): StagePolicy => ({ ...p, master: F(0, 1), optState: F(0, 1) });
export const OFFLOADS = {
  host: { label: 'hostadam', pol: hostAdam },
  hostDelayed: { label: 'hostadam-delayed', pol: hostAdam, delayed: true },
  part: { label: 'opt50gpu-delayed', pol: (p: StagePolicy) => ({ ...p, master: F(0.5, 0.5), optState: F(0.5, 0.5) }), delayed: true },
  streamed: { label: 'streamed50-hostadam-delayed', pol: (p: StagePolicy) => ({ ...hostAdam(p), params: F(0.5, 0.5) }), delayed: true },
  act: { label: 'actoffload', pol: (p: StagePolicy) => ({ ...p, activations: F(0, 1) }) },
  disk: { label: 'hostadam-opt1disk', pol: (p: StagePolicy) => ({ ...p, master: F(0, 0.99, 0.01), optState: F(0, 0.99, 0.01) }), disk: true },
} satisfies Record<string, Offload>;

/** The matrix of a run: the tiny model on CPU ranks (`cpu`), the two-GPU matrix (LLaMA-2-7B and
 *  LLaMA-3.2-1B on 1 and 2 GPUs), or on a machine of one GPU (`gpus` 1) the one-GPU matrix: the same
 *  schedules but interleaving (which needs two ranks), micro-batch sizes, recompute and every offload
 *  policy on one device, so that a one-GPU machine also gives at least 12 plans. */
export function matrixEntries(cpu: boolean, gpus = 2): MatrixEntry[] {
  const e = (model: ModelConfig, gpus: number, schedule: ScheduleName, v: number, mbs: number, M: number, recompute: boolean, seq: number, offload?: Offload): MatrixEntry => ({
    name: `${model.name}-${gpus}g-${schedule}${v > 1 ? `-v${v}` : ''}-mbs${mbs}x${M}${recompute ? '-rc' : ''}${offload ? `-${offload.label}${offload.capGiB ? `-cap${offload.capGiB}` : ''}` : ''}`,
    model, gpus, schedule, v, mbs, M, recompute, seq, ...(offload ? { offload } : {}),
  });
  const O = OFFLOADS;
  if (cpu) {
    const t = tiny, s = 32;
    return [
      e(t, 2, '1f1b', 1, 2, 8, false, s), e(t, 2, '1f1b', 1, 2, 8, true, s), e(t, 2, 'gpipe', 1, 2, 8, false, s), e(t, 2, 'gpipe', 1, 4, 4, true, s),
      e(t, 2, 'interleaved-1f1b', 2, 2, 8, false, s), e(t, 2, '1f1b', 1, 4, 4, false, s), e(t, 1, 'gpipe', 1, 2, 8, false, s), e(t, 1, 'gpipe', 1, 4, 4, true, s),
      e(t, 2, 'interleaved-1f1b', 2, 1, 8, true, s), e(t, 2, '1f1b', 1, 1, 16, false, s), e(t, 1, '1f1b', 1, 8, 2, false, s), e(t, 2, 'gpipe', 1, 1, 16, true, s),
      // the offload policies
      e(t, 2, '1f1b', 1, 2, 8, false, s, O.host), e(t, 2, '1f1b', 1, 2, 8, false, s, O.hostDelayed), e(t, 2, '1f1b', 1, 2, 8, false, s, O.part),
      e(t, 2, '1f1b', 1, 2, 8, true, s, O.streamed), e(t, 2, '1f1b', 1, 2, 8, true, s, O.act), e(t, 2, '1f1b', 1, 2, 8, false, s, O.disk),
    ];
  }
  const b7 = llama2_7b, b1 = llama32_1b, s = 1024;
  if (gpus === 1) {
    return [
      // LLaMA-3.2-1B resident, 8192 tokens a step
      e(b1, 1, 'gpipe', 1, 1, 8, false, s), e(b1, 1, 'gpipe', 1, 2, 4, true, s), e(b1, 1, '1f1b', 1, 4, 2, false, s),
      e(b1, 1, '1f1b', 1, 2, 4, false, s), e(b1, 1, 'gpipe', 1, 8, 1, true, s), e(b1, 1, '1f1b', 1, 1, 8, false, s),
      // its offload policies (1F1B, 2 x 4)
      e(b1, 1, '1f1b', 1, 2, 4, false, s, O.host), e(b1, 1, '1f1b', 1, 2, 4, false, s, O.hostDelayed), e(b1, 1, '1f1b', 1, 2, 4, false, s, O.part),
      e(b1, 1, '1f1b', 1, 2, 4, false, s, O.streamed), e(b1, 1, '1f1b', 1, 2, 4, true, s, O.act),
      // LLaMA-2-7B: resident with recompute (141 GiB devices; the memory model leaves it out on
      // smaller ones), and the update on the host, delayed, capped at 32 GiB
      e(b7, 1, 'gpipe', 1, 1, 8, true, s), e(b7, 1, '1f1b', 1, 1, 8, true, s, { ...O.hostDelayed, capGiB: 32 }),
      e(b1, 1, '1f1b', 1, 2, 4, false, s, O.disk),
    ];
  }
  return [
    // LLaMA-2-7B, 8192 tokens a step
    e(b7, 2, '1f1b', 1, 1, 8, false, s), e(b7, 2, '1f1b', 1, 1, 8, true, s), e(b7, 2, 'gpipe', 1, 2, 4, false, s),
    e(b7, 2, 'interleaved-1f1b', 2, 1, 8, false, s), e(b7, 2, '1f1b', 1, 2, 4, true, s), e(b7, 1, 'gpipe', 1, 1, 8, true, s),
    // LLaMA-3.2-1B (GQA, tied embeddings), 8192 tokens a step
    e(b1, 1, 'gpipe', 1, 1, 8, false, s), e(b1, 1, 'gpipe', 1, 2, 4, true, s), e(b1, 1, '1f1b', 1, 4, 2, false, s),
    e(b1, 2, '1f1b', 1, 1, 8, false, s), e(b1, 2, 'gpipe', 1, 2, 4, false, s), e(b1, 2, 'interleaved-1f1b', 2, 1, 8, true, s),
    e(b1, 2, '1f1b', 1, 4, 2, true, s), e(b1, 2, '1f1b', 1, 2, 4, false, s),
    // offload, LLaMA-3.2-1B on 2 GPUs (1F1B, 2 x 4): the update on the host (synchronous, delayed),
    // half of it on the GPU, half the parameters streamed, activations on the host with recompute,
    // 1% of the master weights and AdamW states on disk (the update on the host)
    e(b1, 2, '1f1b', 1, 2, 4, false, s, O.host), e(b1, 2, '1f1b', 1, 2, 4, false, s, O.hostDelayed), e(b1, 2, '1f1b', 1, 2, 4, false, s, O.part),
    e(b1, 2, '1f1b', 1, 2, 4, false, s, O.streamed), e(b1, 2, '1f1b', 1, 2, 4, true, s, O.act),
    // LLaMA-2-7B with recompute and the update on the host, delayed, capped at 32 GiB a GPU
    e(b7, 2, '1f1b', 1, 1, 8, true, s, { ...O.hostDelayed, capGiB: 32 }),
    // last (the budget skips it first): the disk tier holds whole parameter groups, so even 1% puts
    // a group on /tmp (about 5.7 s a step predicted on the last profile's 1.1 GB/s)
    e(b1, 2, '1f1b', 1, 2, 4, false, s, O.disk),
  ];
}

export function matrixPlan(x: MatrixEntry, hardware: string, cpu: boolean, steps: number): Plan {
  const precision: Precision = cpu ? 'fp32' : 'bf16-mixed';
  const stageLayers = evenPartition(x.model.num_hidden_layers, x.gpus * x.v);
  return buildPlan({
    hardware, model: x.model, precision, optimizer: { ...defaultOptimizer(), lr: 1e-5, delayedUpdate: x.offload?.delayed ?? false },
    job: { seq: x.seq, microBatchSize: x.mbs, microBatches: x.M, steps, gpuMemCapBytes: x.offload?.capGiB ? x.offload.capGiB * GiB : null, seed: 1 },
    schedule: x.schedule, stageLayers, pipelineRanks: x.gpus, dataParallel: 1,
    rankDevice: Array.from({ length: x.gpus }, (_, i) => (cpu ? -1 : i)),
    policy: stageLayers.map(() => (x.offload ? x.offload.pol(defaultPolicy(x.recompute)) : defaultPolicy(x.recompute))),
    ...(x.offload?.disk ? { diskPaths: DISK_DIRS } : {}),
  });
}

interface Manifest { cpu: boolean; plans: { name: string; file: string; entry: Omit<MatrixEntry, 'model' | 'offload'> & { model: string; offload: string | null } }[]; left_out: { name: string; reason: string }[] }

/** What a plan offloads, in words (the bench result's plan.offload). */
export function offloadSummary(plan: Plan): string {
  const parts: string[] = [];
  const st = plan.policy.stages;
  const frac = (k: 'params' | 'grads' | 'master' | 'optState' | 'activations') => {
    const f = st.reduce((a, p) => ({ gpu: a.gpu + p[k].gpu, cpu: a.cpu + p[k].cpu, disk: a.disk + (p[k].disk ?? 0) }), { gpu: 0, cpu: 0, disk: 0 });
    const n = st.length;
    return f.gpu / n >= 0.9999 ? null : `${k} ${[['gpu', f.gpu], ['cpu', f.cpu], ['disk', f.disk]].filter(([, v]) => (v as number) > 0).map(([t, v]) => `${t} ${Math.round(((v as number) / n) * 100)}%`).join(' ')}`;
  };
  for (const k of ['params', 'grads', 'master', 'optState', 'activations'] as const) { const x = frac(k); if (x) parts.push(x); }
  if (plan.optimizer.delayedUpdate) parts.push('delayed update');
  if (plan.policy.diskPaths.length) parts.push(`disk ${plan.policy.diskPaths.join(', ')}`);
  if (plan.job.gpuMemCapBytes) parts.push(`cap ${(plan.job.gpuMemCapBytes / GiB).toFixed(0)} GiB`);
  return parts.length ? parts.join('; ') : 'none';
}

function cmdPlans(out: string, profilePath: string, cpu: boolean): void {
  const profile = parseHardwareProfile(JSON.parse(readFileSync(profilePath, 'utf8')), profilePath);
  mkdirSync(join(out, 'plans'), { recursive: true });
  const m: Manifest = { cpu, plans: [], left_out: [] };
  for (const x of matrixEntries(cpu, profile.gpus.count >= 2 ? 2 : 1)) {
    if (x.gpus > profile.gpus.count) { m.left_out.push({ name: x.name, reason: `needs ${x.gpus} devices, the profile has ${profile.gpus.count}` }); continue; }
    // offload plans run 4 steps (their first, with the host groups' set-up, is not timed)
    const plan = matrixPlan(x, resolve(profilePath), cpu, cpu ? 5 : x.offload ? 4 : 6);
    parsePlan(JSON.parse(JSON.stringify(plan)), x.name);
    if (!cpu) {
      const mem = planMemory(plan, profile);
      const peak = Math.max(...mem.devices.map((d) => d.total));
      const cap = Math.min(profile.gpus.memory_bytes, plan.job.gpuMemCapBytes ?? Infinity);
      if (peak > 0.96 * cap) {
        m.left_out.push({ name: x.name, reason: `the memory model predicts ${(peak / GiB).toFixed(1)} GiB on a ${(cap / GiB).toFixed(1)} GiB ${plan.job.gpuMemCapBytes ? 'cap' : 'device'}` });
        continue;
      }
    }
    if (plan.policy.diskPaths.length && profile.disks.length === 0) { m.left_out.push({ name: x.name, reason: 'the profile has no disk (calibrate --disk-path)' }); continue; }
    for (const d of plan.policy.diskPaths) mkdirSync(d, { recursive: true });
    const file = join(out, 'plans', `${x.name}.json`);
    writeFileSync(file, JSON.stringify(plan));
    const { offload, ...rest } = x;
    m.plans.push({ name: x.name, file, entry: { ...rest, model: x.model.name, offload: offload?.label ?? null } });
  }
  writeFileSync(join(out, 'plans', 'manifest.json'), JSON.stringify(m, null, 1));
  for (const p of m.plans) console.log(`${p.name}\t${p.file}`);
  for (const l of m.left_out) console.error(`left out ${l.name}: ${l.reason}`);
}

function git(args: string[]): string | undefined {
  const r = spawnSync('git', args, { encoding: 'utf8', timeout: 5000 });
  return r.status === 0 ? r.stdout.trim() : undefined;
}

function cmdAssemble(out: string, profilePath: string): void {
  const profile = parseHardwareProfile(JSON.parse(readFileSync(profilePath, 'utf8')), profilePath);
  const m = JSON.parse(readFileSync(join(out, 'plans', 'manifest.json'), 'utf8')) as Manifest;
  const jobs = new Map<string, { job: Record<string, unknown>; runs: Record<string, unknown>[] }>();
  const jobOf = (model: string, seq: number, tokens: number, gpus: number, cap: number | null = null) => {
    const k = `${model}|${seq}|${tokens}|${gpus}|${cap}`;
    if (!jobs.has(k)) jobs.set(k, { job: { model, seq, tokens_per_step: tokens, gpus, gpu_mem_cap_gib: cap }, runs: [] });
    return jobs.get(k)!;
  };
  let doctor: { devices?: { cuda?: { name: string; totalBytes: number }[] }; build?: { torchVersion?: string; cudaVersion?: string } } = {};
  try { doctor = JSON.parse(readFileSync(join(out, 'doctor.json'), 'utf8')); } catch { /* optional */ }
  for (const p of m.plans) {
    const plan = parsePlan(JSON.parse(readFileSync(p.file, 'utf8')), p.file);
    const tokens = plan.job.seq * plan.job.microBatchSize * plan.job.microBatches;
    const sim = simulatePlan(plan, profile, { criticalPath: false });
    const run: Record<string, unknown> = {
      system: 'mmoc',
      plan: {
        name: p.name, schedule: plan.schedule, layout: plan.layout.stages.map((s) => `[${s.layers[0]},${s.layers[1]})@${plan.layout.rankDevice[s.rank]! >= 0 ? `cuda:${plan.layout.rankDevice[s.rank]}` : `cpu rank ${s.rank}`}`).join(' '),
        micro_batches: plan.job.microBatches, micro_batch_size: plan.job.microBatchSize, recompute: p.entry.recompute, offload: offloadSummary(plan), precision: plan.precision,
        plan: { ...plan, hardware: profile.id },
      },
      predicted: { step_s: +sim.step_s.toFixed(5), tokens_per_s: Math.round(tokens / sim.step_s), peak_gib: sim.peak_bytes.map((b) => +(b / GiB).toFixed(3)), bottleneck: sim.bottleneck },
    };
    const resFile = join(out, 'runs', `${p.name}.json`);
    try {
      const r = JSON.parse(readFileSync(resFile, 'utf8'));
      run.measured = { step_s: +r.step_s_median.toFixed(5), tokens_per_s: Math.round(r.tokens_per_s), peak_gib: (r.peak_bytes ?? []).map((b: number | null) => (typeof b === 'number' ? +(b / GiB).toFixed(3) : null)), steps: r.steps, losses: r.losses.map((x: number) => +x.toFixed(4)), ...(Array.isArray(r.processes) ? { processes_step_s: r.processes, note: `the median of ${r.processes.length} processes' step times (each the median of its steps)` } : {}) };
    } catch (e) {
      let why = `no result (${(e as Error).message.split('\n')[0]})`;
      try { why = readFileSync(join(out, 'runs', `${p.name}.err`), 'utf8').trim().split('\n').slice(-2).join(' ').slice(0, 400) || why; } catch { /* none */ }
      run.measured = null;
      run.failed = why;
    }
    jobOf(p.entry.model, plan.job.seq, tokens, plan.layout.pipelineRanks, plan.job.gpuMemCapBytes ? +(plan.job.gpuMemCapBytes / GiB).toFixed(1) : null).runs.push(run);
  }
  // peers: one JSON line each (.gpu/peers/run_peers.sh)
  if (existsSync(join(out, 'peers.jsonl'))) {
    for (const line of readFileSync(join(out, 'peers.jsonl'), 'utf8').split('\n').filter((l) => l.trim().startsWith('{'))) {
      try {
        const q = JSON.parse(line);
        const model = String(q.model ?? 'llama2-7b').replace('llama-1b', 'llama3.2-1b');
        const tokens = Number(q.tokens_per_step ?? (q.tokens_per_s && q.step_s ? Math.round((q.tokens_per_s * q.step_s) / 1024) * 1024 : 8192)), gpus = Number(q.gpus ?? q.world ?? 2);
        jobOf(model, Number(q.seq ?? 1024), tokens, gpus).runs.push({ system: q.peer, measured: { step_s: q.step_s, tokens_per_s: q.tokens_per_s, peak_gib: [q.peak_gib], note: 'peak_gib: max_memory_allocated, the maximum over ranks' }, raw: q });
      } catch { /* not a result line */ }
    }
  }
  const gpus = doctor.devices?.cuda?.map((g) => `${g.name} ${(g.totalBytes / GiB).toFixed(1)} GiB`) ?? [];
  const result = {
    date: new Date().toISOString().slice(0, 10),
    // the device machine's copy of .git can be older than its working tree: the caller names it
    commit: process.env.MMOC_COMMIT || (git(['rev-parse', '--short', 'HEAD']) ?? 'unknown'),
    machine: {
      gpus, cpu_cores: cpus().length, host_memory_gib: Math.round(totalmem() / GiB), torch: doctor.build?.torchVersion, cuda: doctor.build?.cudaVersion,
      note: `bench/gpu/matrix.sh${m.cpu ? ' (MMOC_BENCH_CPU=1: tiny model on CPU ranks, a harness check)' : ''}: calibrate, then every plan, then the peers, in one command`,
    },
    profile,
    left_out: m.left_out,
    results: [...jobs.values()],
  };
  writeFileSync(join(out, 'bench-result.json'), JSON.stringify(result, null, 1) + '\n');
  const rows = evaluateBenchResult(result, 'bench-result.json', process.cwd());
  console.log(formatEvaluation(rows));
}

// ---- prediction error of a bench result (the CI regression, test/prediction-error.test.ts):
// planner/bench-eval.ts, with the repository's profiles and plan files

export { STEP_BOUND, PEAK_BOUND, TIE, summary, formatEvaluation } from '../../planner/bench-eval.ts';
export type { RunError, Evaluation } from '../../planner/bench-eval.ts';

/** A bench result's profile: embedded, a bundled profile's id, or a file of the repository. */
function resolveProfile(p: unknown, root: string): { profile: HardwareProfile | null; why: string } {
  if (typeof p !== 'string') return embeddedProfile(p);
  try {
    const cands = [join(root, 'configs', 'hardware', `${p}.json`), resolve(root, p)];
    for (const c of cands) if (existsSync(c)) return { profile: parseHardwareProfile(JSON.parse(readFileSync(c, 'utf8')), c), why: c };
    return { profile: null, why: `profile "${p}" is neither embedded nor a file of configs/hardware` };
  } catch (e) {
    return { profile: null, why: (e as Error).message };
  }
}

/** Re-simulates every mmoc run of a bench result on its profile, reading named profiles and plan
 *  files from the repository at `root`. */
export function evaluateBenchResult(json: unknown, source: string, root: string): Evaluation {
  return evaluateBench(json, source, {
    profile: (p) => resolveProfile(p, root),
    planFile: (file) => (existsSync(join(root, file)) ? JSON.parse(readFileSync(join(root, file), 'utf8')) : undefined),
  });
}

/** Files of one process's run of plan `name` under `runsDir`: the first process's `<name>.json`,
 *  `.trace.json` and `.err`; the k-th's (k >= 2) `<name>.rep<k>.json` and so on. */
function processFiles(runsDir: string, name: string, k: number): { json: string; trace: string; err: string } {
  const base = join(runsDir, k === 1 ? name : `${name}.rep${k}`);
  return { json: `${base}.json`, trace: `${base}.trace.json`, err: `${base}.err` };
}

/** A plan timed in `n` processes (matrix.sh: the one-GPU matrix's plans that run in under
 *  MMOC_BENCH_REPEAT_UNDER_S): the process of the median step time (the lower of the middle two for
 *  an even count; processes without a result left out) becomes `<name>.json` with its trace and log
 *  (files swapped with the first process's), and records every process's step time in run order
 *  (`processes`, seconds a step) and which one it is (`process_kept`, 0-based). A launch-bound plan's
 *  step moves with its process: the twentieth matrix run's LLaMA-3.2-1B 1F1B 1 x 8 ran every forward
 *  at 10.3 ms where the GPipe 1 x 8 process of the same run ran them at 7.43 (one process in six
 *  over the last three runs). Null when no process has a result. */
export function keepMedianProcess(runsDir: string, name: string, n: number): { kept: number; steps: (number | null)[] } | null {
  const steps = Array.from({ length: n }, (_, i) => {
    try { const v = JSON.parse(readFileSync(processFiles(runsDir, name, i + 1).json, 'utf8')).step_s_median; return typeof v === 'number' && Number.isFinite(v) ? v : null; } catch { return null; }
  });
  const ok = steps.flatMap((v, i) => (v === null ? [] : [i])).sort((a, b) => steps[a]! - steps[b]! || a - b);
  if (!ok.length) return null;
  const kept = ok[Math.floor((ok.length - 1) / 2)]!;
  if (kept !== 0) {
    const a = processFiles(runsDir, name, 1), b = processFiles(runsDir, name, kept + 1);
    for (const k of ['json', 'trace', 'err'] as const) {
      const tmp = `${a[k]}.swap`;
      if (existsSync(a[k])) renameSync(a[k], tmp);
      if (existsSync(b[k])) renameSync(b[k], a[k]);
      if (existsSync(tmp)) renameSync(tmp, b[k]);
    }
  }
  const first = processFiles(runsDir, name, 1).json;
  const r = JSON.parse(readFileSync(first, 'utf8'));
  writeFileSync(`${first}.tmp`, JSON.stringify({ ...r, processes: steps, process_kept: kept }));
  renameSync(`${first}.tmp`, first);
  return { kept, steps };
}

export function benchResultFiles(root: string): string[] {
  const dir = join(root, 'bench', 'results');
  return existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith('.json')).sort().map((f) => join(dir, f)) : [];
}

if (import.meta.url === `file://${process.argv[1]}` || process.argv[1]?.endsWith('bench/gpu/matrix.ts')) {
  const [cmd, out, profile] = process.argv.slice(2);
  if (cmd === 'plans' && out && profile) cmdPlans(out, profile, process.argv.includes('--cpu'));
  else if (cmd === 'assemble' && out && profile) cmdAssemble(out, profile);
  else if (cmd === 'evaluate' && out) {
    const files = out === 'all' ? benchResultFiles(process.cwd()) : [out];
    for (const f of files) console.log(formatEvaluation(evaluateBenchResult(JSON.parse(readFileSync(f, 'utf8')), f, process.cwd())));
  } else if (cmd === 'row' && out) {
    // the README.md results-table row of a bench result's prediction errors (bench/gpu/commit-matrix.sh)
    const ev = evaluateBenchResult(JSON.parse(readFileSync(out, 'utf8')), out, process.cwd());
    const s = summary(ev);
    const offl = ev.runs.filter((r) => /hostadam|offload|streamed|disk|opt\d+gpu|cap\d+/.test(r.label)).length;
    const pct = (x: number) => `${(x * 100).toFixed(1)}%`;
    const ok = ev.qualifies && s.plans >= 12 && s.stepMape <= 0.05 && s.peakWorst <= 0.03 && s.stepWorst <= STEP_BOUND && ev.ranking.length === 0;
    console.log(`| prediction error, GPU bench matrix: ${s.plans} plans (${offl} with offload) on ${ev.machine ?? 'the GPU machine'}, \`bash bench/gpu/matrix.sh\` at ${process.argv[4] ?? 'HEAD'} | step time MAPE **${pct(s.stepMape)}** (worst ${pct(s.stepWorst)}), peak memory MAPE **${pct(s.peakMape)}** (worst ${pct(s.peakWorst)}), ranking ${ev.ranking.length ? `${ev.ranking.length} inversions` : 'consistent'}${ok ? '' : ' (issue 7 goal not met)'} | — | \`${out}\` |`);
  } else if (cmd === 'median' && out && profile) {
    // matrix.sh, after a plan's repeats: `median <runs dir> <name> <processes>`
    const r = keepMedianProcess(out, profile, Number(process.argv[5] ?? 3));
    console.log(r ? `x${r.steps.length}: ${r.steps.map((v) => (v === null ? 'failed' : v.toFixed(4))).join(' ')} s/step, process ${r.kept + 1} (the median) kept` : 'no process has a result');
  } else {
    console.error('usage: matrix.ts plans <out> <profile.json> [--cpu] | assemble <out> <profile.json> | evaluate <result.json|all> | row <result.json> [commit] | median <runs dir> <name> <processes>');
    process.exit(2);
  }
}
