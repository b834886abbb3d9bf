// `mmoc plan` (search for the fastest plan that fits) and `mmoc simulate` (re-predict a plan file,
// a hand-edited one too): thin shells over planner/search.ts and planner/lower.ts.
import type { Command } from 'commander';
import { existsSync, renameSync, writeFileSync, unlinkSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { action, emit, InputError, JobError, log, parseBytes, parsePositiveInt } from './common.ts';
import { displayPath, readJsonFile, repoRoot, resolveModel } from './model-files.ts';
import { parseHardwareProfile, ProfileError, chromeTraceJSON, type HardwareProfile } from '../sim/index.ts';
import { search, type CandidateSummary, type SearchResult } from '../planner/search.ts';
import { parsePlan } from '../planner/plan-schema.ts';
import { planMemory, simulatePlan } from '../planner/lower.ts';
import type { Plan, Precision, ScheduleName } from '../planner/plan-types.ts';
import { defaultOptimizer } from '../planner/plan-build.ts';

export const bundledHardwareDir = join(repoRoot, 'configs', 'hardware');

/** A bundled hardware profile id (configs/hardware/<id>.json) or a path to a profile file. */
export function resolveHardware(spec: string, flag = '--hardware'): HardwareProfile {
  const bundled = join(bundledHardwareDir, `${spec}.json`);
  const path = !spec.includes('/') && !spec.endsWith('.json') && existsSync(bundled) ? bundled : resolve(spec);
  if (!existsSync(path)) {
    throw new InputError(`${flag}: "${spec}" is neither a bundled hardware profile nor a file`);
  }
  try {
    return parseHardwareProfile(readJsonFile(path, 'hardware profile'), displayPath(path));
  } catch (e) {
    if (e instanceof ProfileError) throw new InputError(e.message);
    throw e;
  }
}

/** Writes `text` to `path` through a temporary name and a rename (never a half-written file). */
export function writeFileAtomic(path: string, text: string): void {
  const tmp = `${path}.tmp-${process.pid}`;
  try {
    writeFileSync(tmp, text);
    renameSync(tmp, path);
  } catch (e) {
    try { unlinkSync(tmp); } catch { /* already gone */ }
    throw new JobError(`cannot write ${path}: ${(e as Error).message}`);
  }
}

const GiB = 1024 ** 3;
const gib = (b: number) => +(b / GiB).toFixed(2);

interface PlanOpts {
  model?: string; hardware?: string; gpus?: string; gpuMem?: string; hostMem?: string; seq: string; globalBatch?: string;
  steps: string; output?: string; trace?: string; json?: boolean; precision?: string; optimizer: string;
  schedules?: string; offload: boolean; disk: boolean; delayedUpdate?: boolean; gradClip?: string; top: string;
}

function summaryLine(c: CandidateSummary): string {
  return `${c.step_s.toFixed(3)} s  ${Math.round(c.tokens_per_s).toString().padStart(7)} tok/s  ${(c.peak_bytes / GiB).toFixed(1).padStart(6)} GiB  ` +
    `${c.schedule}${c.virtualStages > 1 ? ` v=${c.virtualStages}` : ''} ${c.pipelineRanks}x${c.dataParallel} mb ${c.microBatchSize}x${c.microBatches}` +
    `${c.recompute ? ' recompute' : ''} ${c.partition}/${c.mapping}: ${c.offload}${c.bottleneck ? ` [bound: ${c.bottleneck}]` : ''}`;
}

export function planJson(r: SearchResult) {
  const p = r.best?.prediction;
  return {
    feasible: r.best !== null,
    step_s: p?.step_s ?? null,
    tokens_per_s: p?.tokens_per_s ?? null,
    peak_gib: p ? p.peak_bytes.map(gib) : null,
    bottleneck: p?.bottleneck ?? null,
    counts: r.counts,
    elapsed_s: r.elapsed_s,
    best: r.top[0] ?? null,
    top: r.top,
    pareto: r.pareto.map((c) => ({ tokens_per_s: c.tokens_per_s, peak_gib: gib(c.peak_bytes), step_s: c.step_s, schedule: c.schedule, layout: `${c.pipelineRanks}x${c.dataParallel}`, offload: c.offload })),
    runner_up: r.runnerUp,
    infeasible: r.infeasible,
  };
}

function formatPlan(r: SearchResult, out?: string): string {
  const lines: string[] = [];
  const c = r.counts;
  lines.push(`searched ${c.considered} plans: ${c.pruned} pruned by the memory model, ${c.simulated} simulated (${r.elapsed_s.toFixed(2)} s)`);
  if (!r.best || !r.best.prediction) {
    lines.push(`no plan fits: ${r.infeasible?.reason ?? 'unknown'}`);
    for (const s of r.infeasible?.suggestions ?? []) lines.push(`  would fit with: ${s.text}`);
    return lines.join('\n');
  }
  const p = r.best.prediction;
  lines.push(`best: ${Math.round(p.tokens_per_s)} tokens/s, ${p.step_s.toFixed(3)} s a step, peak ${p.peak_bytes.map((b) => `${gib(b)}`).join(' / ')} GiB per device, bound by ${p.bottleneck}`);
  lines.push('');
  lines.push('top plans:');
  for (const t of r.top) lines.push('  ' + summaryLine(t));
  if (r.runnerUp) { lines.push(''); lines.push(r.runnerUp); }
  lines.push('');
  lines.push('Pareto front (peak GPU memory -> tokens/s):');
  for (const q of r.pareto) lines.push(`  ${(q.peak_bytes / GiB).toFixed(1).padStart(6)} GiB  ${Math.round(q.tokens_per_s).toString().padStart(7)} tok/s  ${q.schedule} ${q.pipelineRanks}x${q.dataParallel}: ${q.offload}`);
  if (out) { lines.push(''); lines.push(`plan written to ${out}`); }
  return lines.join('\n');
}

export function runPlan(o: PlanOpts): { result: SearchResult; profile: HardwareProfile } {
  if (!o.model) throw new InputError('--model is required (a bundled name such as llama2-7b, a config.json or a Hugging Face folder)');
  if (!o.hardware) throw new InputError('--hardware is required (a bundled profile such as h200x2, or a profile file)');
  if (!o.globalBatch) throw new InputError('--global-batch is required (sequences per step)');
  const model = resolveModel(o.model).config;
  const profile = resolveHardware(o.hardware);
  const gpus = o.gpus === undefined ? profile.gpus.count : parsePositiveInt(o.gpus, '--gpus');
  const seq = parsePositiveInt(o.seq, '--seq');
  const globalBatch = parsePositiveInt(o.globalBatch, '--global-batch');
  const steps = parsePositiveInt(o.steps, '--steps');
  const top = parsePositiveInt(o.top, '--top');
  const cap = o.gpuMem === undefined ? null : parseBytes(o.gpuMem, '--gpu-mem');
  const hostMem = o.hostMem === undefined ? undefined : parseBytes(o.hostMem, '--host-mem');
  const precisions: Precision[] = ['bf16-mixed', 'fp32', 'bf16'];
  if (o.precision !== undefined && !precisions.includes(o.precision as Precision)) throw new InputError(`--precision: "${o.precision}" must be one of ${precisions.join(', ')}`);
  if (o.optimizer !== 'adamw' && o.optimizer !== 'sgd') throw new InputError(`--optimizer: "${o.optimizer}" must be one of adamw, sgd`);
  let schedules: ScheduleName[] | undefined;
  if (o.schedules !== undefined) {
    schedules = o.schedules.split(',').map((s) => s.trim()) as ScheduleName[];
    for (const s of schedules) if (!['gpipe', '1f1b', 'interleaved-1f1b'].includes(s)) throw new InputError(`--schedules: "${s}" must be one of gpipe, 1f1b, interleaved-1f1b`);
  }
  let gradClip: number | null = null;
  if (o.gradClip !== undefined && o.gradClip !== 'none') {
    gradClip = Number(o.gradClip);
    if (!(gradClip > 0)) throw new InputError(`--grad-clip: "${o.gradClip}" must be a positive number or none`);
  }
  const optimizer = { ...defaultOptimizer(o.optimizer as 'adamw' | 'sgd'), gradClip };
  let last = 0;
  const result = search({
    model, profile, gpus, gpuMemCapBytes: cap, hostMemBytes: hostMem, seq, globalBatch, steps,
    precision: o.precision as Precision | undefined, optimizer, schedules, allowOffload: o.offload, allowDisk: o.disk ? undefined : false,
    allowDelayedUpdate: !!o.delayedUpdate, top,
    progress: (done, total, best) => {
      const now = Date.now();
      if (now - last > 250 || done === total) {
        last = now;
        process.stderr.write(`\rmmoc plan: simulated ${done}/${total}${best !== null ? `, best ${best.toFixed(3)} s a step` : ''}   ${done === total ? '\n' : ''}`);
      }
    },
  });
  return { result, profile };
}

interface SimOpts { trace?: string; json?: boolean; hardware?: string }

export function register(program: Command): void {
  program
    .command('plan')
    .description('search for the fastest plan that fits (pipeline layout, schedule, micro-batching, recompute, offload), simulated on a hardware profile')
    .option('--model <name|folder|config.json>', 'bundled model name, Hugging Face folder or config.json')
    .option('--hardware <profile>', 'bundled hardware profile id (configs/hardware) or a profile file')
    .option('--gpus <n>', 'GPUs (or CPU ranks) to use (default: all of the profile)')
    .option('--gpu-mem <bytes>', 'per-GPU memory cap, e.g. 48GiB (default: the device memory)')
    .option('--host-mem <bytes>', 'pinned host memory the plan may use (default: 90% of the host)')
    .option('--seq <n>', 'tokens per sequence', '1024')
    .option('--global-batch <n>', 'sequences per step (all replicas)')
    .option('--steps <n>', 'steps the plan runs', '10')
    .option('--precision <p>', 'bf16-mixed, fp32 or bf16 (default: bf16-mixed on GPUs, fp32 on CPU ranks)')
    .option('--optimizer <o>', 'adamw or sgd', 'adamw')
    .option('--schedules <list>', 'schedules to consider (default gpipe,1f1b,interleaved-1f1b)')
    .option('--no-offload', 'keep everything on the GPUs')
    .option('--no-disk', 'never put optimizer states on disk')
    .option('--delayed-update', 'consider the one-step-delayed CPU update')
    .option('--grad-clip <x>', 'global gradient-norm clip, or none', 'none')
    .option('--top <n>', 'plans shown (re-simulated with the critical path)', '8')
    .option('-o, --output <plan.json>', 'write the best plan')
    .option('--trace <trace.json>', 'write the best plan\'s predicted Chrome trace')
    .option('--json', 'print the prediction and search counts as JSON')
    .action(action((o: PlanOpts) => {
      const { result, profile } = runPlan(o);
      if (result.best && o.output) writeFileAtomic(o.output, JSON.stringify(result.best, null, 1) + '\n');
      if (result.best && o.trace) {
        const sim = simulatePlan(result.best, profile, { memorySeries: true });
        writeFileAtomic(o.trace, chromeTraceJSON(sim.lowered.graph, sim.result, { plan: 'predicted', hardware: profile.id }));
      }
      emit(o, planJson(result), () => formatPlan(result, o.output));
      if (!result.best) process.exitCode = 1;
    }));

  program
    .command('simulate')
    .description('re-predict a plan file (a hand-edited one too): step time, tokens/s, peak memory per device')
    .argument('<plan.json>', 'plan file written by mmoc plan')
    .option('--hardware <profile>', 'simulate on this profile instead of the plan\'s')
    .option('--trace <trace.json>', 'write the predicted Chrome trace')
    .option('--json', 'print the prediction as JSON')
    .action(action((file: string, o: SimOpts) => {
      const shown = displayPath(resolve(file));
      const plan: Plan = parsePlan(readJsonFile(resolve(file), 'plan'), shown);
      const profile = resolveHardware(o.hardware ?? plan.hardware, o.hardware ? '--hardware' : `${shown}: hardware`);
      const sim = simulatePlan(plan, profile, { memorySeries: !!o.trace });
      const mem = planMemory(plan, profile);
      const cap = plan.job.gpuMemCapBytes ?? profile.gpus.memory_bytes;
      const over = sim.peak_bytes.map((b, r) => ({ r, b })).filter((x) => x.b > cap);
      if (o.trace) writeFileAtomic(o.trace, chromeTraceJSON(sim.lowered.graph, sim.result, { plan: shown, hardware: profile.id }));
      const out = {
        step_s: sim.step_s, tokens_per_s: sim.tokens_per_s, peak_gib: sim.peak_bytes.map(gib), bottleneck: sim.bottleneck,
        cap_gib: gib(cap), fits: over.length === 0, host_gib: gib(mem.hostTotal), disk_gib: gib(mem.disk.total), tasks: sim.result.tasks,
        recorded: plan.prediction ? { step_s: plan.prediction.step_s, tokens_per_s: plan.prediction.tokens_per_s } : null,
      };
      emit(o, out, (x) => [
        `${shown}: ${plan.model.name} on ${profile.id}, ${plan.schedule}, ${plan.layout.pipelineRanks} stage(s) x ${plan.layout.dataParallel} replica(s)`,
        `step ${x.step_s.toFixed(3)} s, ${Math.round(x.tokens_per_s)} tokens/s, bound by ${x.bottleneck}`,
        `peak per device: ${x.peak_gib.join(' / ')} GiB (cap ${x.cap_gib} GiB${x.fits ? '' : `: rank ${over.map((o2) => o2.r).join(', ')} over`}); host ${x.host_gib} GiB, disk ${x.disk_gib} GiB`,
        ...(x.recorded ? [`the plan recorded ${x.recorded.step_s.toFixed(3)} s, ${Math.round(x.recorded.tokens_per_s)} tokens/s`] : []),
      ].join('\n'));
      if (over.length) process.exitCode = 1;
    }));
}
