// The prediction error of a bench result (bench/results/*.json, ARCHITECTURE.md's bench-result
// format): every mmoc run's plan re-simulated on the result's profile against what was measured,
// step time, peak memory per device, and the ranking of a job's plans. Pure: the CI regression
// (test/prediction-error.test.ts, through bench/gpu/matrix.ts with the repository's files) and
// the web explorer's bench view both call it.
import { parseHardwareProfile, type HardwareProfile } from '../sim/index.ts';
import { parsePlan } from './plan-schema.ts';
import { simulatePlan } from './lower.ts';
import type { Plan } from './plan-types.ts';

const GiB = 2 ** 30;

export interface RunError {
  job: string;
  label: string;
  step: { predicted: number; measured: number; error: number };
  tokens_per_s: { predicted: number; measured: number };
  /** Per device: predicted and measured peak GiB and the relative error. */
  peak: { predicted: number; measured: number; error: number }[];
}
export interface Evaluation {
  source: string;
  date?: string;
  machine?: string;
  /** The bounds apply (the profile was measured by mmoc calibrate on the machine). */
  qualifies: boolean;
  reason: string;
  runs: RunError[];
  skipped: { label: string; reason: string }[];
  /** Pairs whose predicted order contradicts the measured one by more than the tie margin. */
  ranking: string[];
}

export const STEP_BOUND = 0.1;
export const PEAK_BOUND = 0.05;
export const TIE = 0.03;

/** Where a bench result's profile and plan files come from: embedded (always), or by name and
 *  path through the caller (the repository's files in Node; nothing more in a browser). */
export interface BenchSources {
  /** The result's `profile` field (embedded object, or a name / path) to a profile, or why not. */
  profile(p: unknown): { profile: HardwareProfile | null; why: string };
  /** A plan file named by a run (`plan.file`, relative to the repository), if it can be read. */
  planFile?(file: string): unknown | undefined;
}

/** A bench result's embedded profile, or why there is none. */
export function embeddedProfile(p: unknown): { profile: HardwareProfile | null; why: string } {
  if (!p || typeof p !== 'object') return { profile: null, why: typeof p === 'string' ? `profile "${p}" is not embedded` : 'no profile' };
  try { return { profile: parseHardwareProfile(p, 'embedded profile'), why: 'embedded' }; } catch (e) { return { profile: null, why: (e as Error).message }; }
}

/** Re-simulates every mmoc run of a bench result (its embedded or referenced plan) on its profile. */
export function evaluateBenchResult(json: unknown, source: string, sources: BenchSources = { profile: embeddedProfile }): Evaluation {
  const ev: Evaluation = { source, qualifies: false, reason: '', runs: [], skipped: [], ranking: [] };
  const r = json as { date?: string; machine?: unknown; profile?: unknown; results?: { job?: Record<string, unknown>; runs?: Record<string, unknown>[] }[] };
  if (!r || typeof r !== 'object' || !Array.isArray(r.results)) { ev.reason = 'not a bench result (no results list)'; return ev; }
  ev.date = r.date;
  const mach = r.machine as { gpus?: string[] } | undefined;
  ev.machine = Array.isArray(mach?.gpus) && mach!.gpus.length ? `${mach!.gpus.length}x ${mach!.gpus[0]}` : undefined;
  const { profile, why } = sources.profile(r.profile);
  if (!profile) { ev.reason = why; return ev; }
  ev.qualifies = profile.provenance.source === 'measured';
  ev.reason = ev.qualifies ? `profile ${profile.id} measured ${profile.provenance.date} (${profile.provenance.how ?? ''})`
    : `profile ${profile.id} is not a measured one (provenance ${profile.provenance.source}: ${profile.provenance.note ?? profile.provenance.how ?? ''}): errors reported, bounds not applied`;
  for (const res of r.results) {
    const jobLabel = res.job ? `${res.job.model} seq ${res.job.seq} x${res.job.tokens_per_step} tok on ${res.job.gpus}${typeof res.job.gpu_mem_cap_gib === 'number' ? ` capped at ${res.job.gpu_mem_cap_gib} GiB` : ''}` : '?';
    for (const run of res.runs ?? []) {
      if (run.system !== 'mmoc') continue;
      const pl = (run.plan ?? {}) as Record<string, unknown>;
      const label = `${jobLabel}: ${String(pl.name ?? pl.file ?? pl.schedule ?? 'plan')}${pl.fast_paths ? ` (fast paths ${String(pl.fast_paths).split(' ')[0]})` : ''}`;
      const meas = run.measured as { step_s?: number; tokens_per_s?: number; peak_gib?: number[] } | null | undefined;
      if (!meas || typeof meas.step_s !== 'number') { ev.skipped.push({ label, reason: `not measured${run.failed ? `: ${String(run.failed).slice(0, 200)}` : ''}` }); continue; }
      if (typeof pl.fast_paths === 'string' && /^off/.test(pl.fast_paths)) { ev.skipped.push({ label, reason: 'an executor ablation (MMOC_NO_FAST_PATHS), not a plan the simulator models' }); continue; }
      let planJson: unknown = pl.plan && typeof pl.plan === 'object' ? pl.plan : undefined;
      if (!planJson && typeof pl.file === 'string') planJson = sources.planFile?.(pl.file);
      if (!planJson) { ev.skipped.push({ label, reason: 'the result neither embeds its plan nor names a plan file in the repository' }); continue; }
      let plan: Plan;
      try { plan = parsePlan(planJson, label); } catch (e) { ev.skipped.push({ label, reason: `plan does not parse: ${(e as Error).message}` }); continue; }
      let sim: ReturnType<typeof simulatePlan>;
      try { sim = simulatePlan(plan, profile, { criticalPath: false }); } catch (e) { ev.skipped.push({ label, reason: `does not simulate on the profile: ${(e as Error).message}` }); continue; }
      const tokens = plan.job.seq * plan.job.microBatchSize * plan.job.microBatches * plan.layout.dataParallel;
      const peaks = (meas.peak_gib ?? []).flatMap((m, i) => {
        if (typeof m !== 'number' || !(m > 0)) return []; // not measured on that device
        const p = (sim.peak_bytes[i] ?? 0) / GiB;
        return [{ predicted: +p.toFixed(3), measured: m, error: (p - m) / m }];
      });
      ev.runs.push({
        job: jobLabel, label,
        step: { predicted: sim.step_s, measured: meas.step_s, error: (sim.step_s - meas.step_s) / meas.step_s },
        tokens_per_s: { predicted: tokens / sim.step_s, measured: meas.tokens_per_s ?? tokens / meas.step_s },
        peak: peaks,
      });
    }
  }
  // ranking of the plans of one job (model, tokens a step, GPUs) by throughput: a pair counts when
  // the measured rates differ by more than TIE and the predicted order is the opposite
  for (let i = 0; i < ev.runs.length; i++) for (let j = i + 1; j < ev.runs.length; j++) {
    const a = ev.runs[i]!, b = ev.runs[j]!;
    if (a.job !== b.job) continue;
    const dm = a.tokens_per_s.measured - b.tokens_per_s.measured, dp = a.tokens_per_s.predicted - b.tokens_per_s.predicted;
    if (Math.abs(dm) / Math.min(a.tokens_per_s.measured, b.tokens_per_s.measured) <= TIE) continue;
    if (Math.abs(dp) / Math.min(a.tokens_per_s.predicted, b.tokens_per_s.predicted) <= TIE) continue;
    if (Math.sign(dm) !== Math.sign(dp)) ev.ranking.push(`${a.label} vs ${b.label.slice(b.job.length + 2)}: measured ${Math.round(a.tokens_per_s.measured)} vs ${Math.round(b.tokens_per_s.measured)} tok/s, predicted ${Math.round(a.tokens_per_s.predicted)} vs ${Math.round(b.tokens_per_s.predicted)}`);
  }
  return ev;
}

/** Mean absolute and worst errors of an evaluation. */
export function summary(ev: Evaluation): { plans: number; stepMape: number; stepWorst: number; peaks: number; peakMape: number; peakWorst: number } {
  const steps = ev.runs.map((r) => Math.abs(r.step.error));
  const peaks = ev.runs.flatMap((r) => r.peak.map((p) => Math.abs(p.error)));
  const mean = (xs: number[]) => (xs.length ? xs.reduce((s, v) => s + v, 0) / xs.length : 0);
  return { plans: ev.runs.length, stepMape: mean(steps), stepWorst: Math.max(0, ...steps), peaks: peaks.length, peakMape: mean(peaks), peakWorst: Math.max(0, ...peaks) };
}

export function formatEvaluation(ev: Evaluation): string {
  const pct = (x: number) => `${x >= 0 ? '+' : ''}${(x * 100).toFixed(1)}%`;
  const s = summary(ev);
  const lines = [`${ev.source}: ${ev.reason}`];
  for (const r of ev.runs) {
    lines.push(`  ${r.label}: step ${r.step.predicted.toFixed(4)} s predicted, ${r.step.measured.toFixed(4)} s measured (${pct(r.step.error)}); peak ${r.peak.map((p) => `${p.predicted.toFixed(2)}/${p.measured.toFixed(2)} GiB (${pct(p.error)})`).join(', ')}`);
  }
  for (const k of ev.skipped) lines.push(`  skipped ${k.label}: ${k.reason}`);
  if (ev.runs.length) lines.push(`  ${s.plans} plans: step-time MAPE ${(s.stepMape * 100).toFixed(1)}% (worst ${(s.stepWorst * 100).toFixed(1)}%), ${s.peaks ? `peak-memory MAPE ${(s.peakMape * 100).toFixed(1)}% (worst ${(s.peakWorst * 100).toFixed(1)}%)` : 'no peak memory measured'}`);
  for (const x of ev.ranking) lines.push(`  ranking: ${x}`);
  return lines.join('\n');
}

