// The plan explorer's engine: what the web worker exposes through comlink (worker.ts), and what
// the tests call directly. Plain functions over data: the bundled model configs and hardware
// profiles come in as JSON, results go out as small plain objects (summaries and TraceModels),
// never the simulator's graphs.
import { parseHardwareProfile, chromeTrace, type HardwareProfile } from '../../sim/index.ts';
import { search, type CandidateSummary, type Suggestion } from '../../planner/search.ts';
import { simulatePlan } from '../../planner/lower.ts';
import { parsePlan } from '../../planner/plan-schema.ts';
import { parseModelConfig, type ModelConfig } from '../../planner/model-config.ts';
import { compareTraces, sideBySide, type CompareReport } from '../../planner/compare.ts';
import { embeddedProfile, evaluateBenchResult, summary, PEAK_BOUND, STEP_BOUND, TIE, type Evaluation } from '../../planner/bench-eval.ts';
import type { Plan } from '../../planner/plan-types.ts';
import type { ChromeTrace } from '../../sim/trace.ts';
import { stepsOf, traceModel, type TraceModel } from './trace-model.ts';

const GiB = 2 ** 30;

/** Bundled inputs by name: model configs (Hugging Face config.json fields) and hardware profiles. */
export interface Bundle {
  models: Record<string, unknown>;
  profiles: Record<string, unknown>;
}

export interface HardwareOption { id: string; gpus: number; gpu_memory_GiB: number; gpu: string; measured: boolean }

export interface SearchRequest {
  model: string;
  hardware: string;
  gpus: number;
  seq: number;
  /** Sequences per step. */
  globalBatch: number;
  /** Per-GPU memory cap in GiB; null: the device's memory. */
  capGiB: number | null;
  offload: boolean;
  disk: boolean;
  delayedUpdate: boolean;
}

export interface SearchView {
  request: SearchRequest;
  /** Least memory first, each faster than the one before; step_s simulated in full, search_step_s
   *  the search's own estimate. */
  pareto: (CandidateSummary & { search_step_s: number })[];
  /** Index in `pareto` of the fastest plan (the one `mmoc plan` writes). */
  best: number;
  counts: { considered: number; pruned: number; simulated: number };
  infeasible: { reason: string; suggestions: Suggestion[] } | null;
  elapsed_s: number;
}

export interface PlanView {
  title: string;
  step_s: number;
  tokens_per_s: number;
  /** Per rank, predicted peak bytes. */
  peak_bytes: number[];
  cap_bytes: number | null;
  bottleneck: string;
  trace: TraceModel;
  /** The Pareto point of the last search this is (its plan downloadable), if it is one. */
  paretoIndex?: number;
}

export interface CompareView {
  title: string;
  report: CompareReport;
  /** Predicted and measured lanes of one measured step, two processes per device. */
  trace: TraceModel;
}

export interface BenchView {
  title: string;
  evaluation: Evaluation;
  summary: ReturnType<typeof summary>;
  /** The CI bounds (test/prediction-error.test.ts) and whether this result stays within them. */
  bounds: { step: number; peak: number; tie: number };
  within: boolean;
}

/** Explorer errors carry a message meant for the page as it is. */
export class ExplorerError extends Error { override name = 'ExplorerError'; }

const checkInt = (v: number, field: string, min: number) => {
  if (!(Number.isInteger(v) && v >= min)) throw new ExplorerError(`${field}: "${v}" must be a whole number, at least ${min}`);
};

export function validateRequest(r: SearchRequest, b: { models: string[]; hardware: string[] }): void {
  if (!b.models.includes(r.model)) throw new ExplorerError(`model: "${r.model}" is not bundled (one of ${b.models.join(', ')})`);
  if (!b.hardware.includes(r.hardware)) throw new ExplorerError(`hardware: "${r.hardware}" is not bundled (one of ${b.hardware.join(', ')})`);
  checkInt(r.gpus, 'GPUs', 1);
  checkInt(r.seq, 'sequence length', 1);
  checkInt(r.globalBatch, 'global batch', 1);
  if (r.capGiB !== null && !(Number.isFinite(r.capGiB) && r.capGiB > 0)) throw new ExplorerError(`memory cap: "${r.capGiB}" must be a positive number of GiB, or empty for the device's memory`);
}

export function createExplorerApi(bundle: Bundle) {
  const models = new Map<string, ModelConfig>();
  for (const [name, json] of Object.entries(bundle.models)) models.set(name, parseModelConfig(json, `configs/models/${name}.json`, name));
  const profiles = new Map<string, HardwareProfile>();
  for (const [name, json] of Object.entries(bundle.profiles)) {
    const p = parseHardwareProfile(json, `${name}.json`);
    profiles.set(p.id, p);
  }
  let lastBench: { json: unknown; source: string } | null = null;
  let last: { plans: Plan[]; profile: HardwareProfile; pareto: SearchView['pareto']; cap: number | null } | null = null;

  const profileOf = (id: string, field: string): HardwareProfile => {
    const p = profiles.get(id);
    if (!p) throw new ExplorerError(`${field}: no hardware profile "${id}" here (bundled: ${[...profiles.keys()].join(', ')}); open the profile file too`);
    return p;
  };

  function planView(plan: Plan, profile: HardwareProfile, title: string, cap: number | null): PlanView {
    const sim = simulatePlan(plan, profile, { memorySeries: true });
    const trace = traceModel(chromeTrace(sim.lowered.graph, sim.result));
    return { title, step_s: sim.step_s, tokens_per_s: sim.tokens_per_s, peak_bytes: sim.peak_bytes, cap_bytes: cap, bottleneck: sim.bottleneck, trace };
  }

  return {
    /** A hardware profile the user opened (e.g. written by `mmoc calibrate` on their machine):
     *  searchable from now on under its id. Returns the id. */
    addProfile(json: unknown, source: string): string {
      const p = parseHardwareProfile(json, source);
      profiles.set(p.id, p);
      return p.id;
    },

    /** A model config the user opened (a Hugging Face config.json): searchable under `name`. */
    addModel(json: unknown, source: string, name: string): string {
      models.set(name, parseModelConfig(json, source, name));
      return name;
    },

    /** What the form offers. */
    options(): { models: string[]; hardware: HardwareOption[] } {
      return {
        models: [...models.keys()].sort(),
        hardware: [...profiles.values()].map((p) => ({
          id: p.id, gpus: p.gpus.count, gpu_memory_GiB: Math.round(p.gpus.memory_bytes / GiB), gpu: p.gpus.name,
          measured: p.provenance?.source === 'measured',
        })),
      };
    },

    /** The planner's search (as `mmoc plan`), with every Pareto point's plan kept for view(). */
    search(req: SearchRequest, progress?: (done: number, total: number, best: number | null) => void): SearchView {
      validateRequest(req, { models: [...models.keys()], hardware: [...profiles.keys()] });
      const profile = profiles.get(req.hardware)!;  // validateRequest checked it is there
      if (req.gpus > profile.gpus.count) throw new ExplorerError(`GPUs: ${req.gpus} asked, profile ${profile.id} has ${profile.gpus.count}`);
      const cap = req.capGiB === null ? null : req.capGiB * GiB;
      let lastTick = 0;
      const r = search({
        model: models.get(req.model)!, profile, gpus: req.gpus, gpuMemCapBytes: cap, seq: req.seq, globalBatch: req.globalBatch,
        allowOffload: req.offload, allowDisk: req.disk ? undefined : false, allowDelayedUpdate: req.delayedUpdate, paretoPlans: true,
        progress: progress && ((done, total, best) => {
          const now = Date.now();
          if (now - lastTick > 100 || done === total) { lastTick = now; progress(done, total, best); }
        }),
      });
      // The search ranks with a coarse, extrapolated step (search fidelity); the front shown is
      // re-simulated in full, as view() and `mmoc simulate` predict, and what that makes dominated
      // is dropped (a point must be faster than every point that needs less memory).
      const pts = r.pareto.map((q, i) => {
        const plan = r.paretoPlans![i]!;
        const step_s = simulatePlan(plan, profile, { criticalPath: false, usage: false }).step_s;
        return { q: { ...q, search_step_s: q.step_s, step_s, tokens_per_s: q.tokens_per_s * (q.step_s / step_s) }, plan };
      });
      const front: typeof pts = [];
      for (const x of pts) if (!front.length || x.q.step_s < front[front.length - 1]!.q.step_s - 1e-12) front.push(x);
      const pareto = front.map((x) => x.q);
      last = { plans: front.map((x) => x.plan), profile, pareto, cap };
      return { request: req, pareto, best: pareto.length - 1, counts: r.counts, infeasible: r.infeasible, elapsed_s: r.elapsed_s };
    },

    /** One Pareto point of the last search, simulated with its memory curve. */
    view(index: number): PlanView {
      if (!last) throw new ExplorerError('no search yet: run a search first');
      const plan = last.plans[index], q = last.pareto[index];
      if (!plan || !q) throw new ExplorerError(`Pareto point ${index}: the last search has ${last.plans.length}`);
      const title = `${q.schedule} ${q.pipelineRanks}${q.dataParallel > 1 ? ` x ${q.dataParallel} replicas` : ''} ranks, ${q.microBatches} x ${q.microBatchSize} micro-batches${q.recompute ? ', recompute' : ''}: ${q.offload}`;
      return { ...planView(plan, last.profile, title, last.cap), paretoIndex: index };
    },

    /** The plan of a Pareto point of the last search, as `mmoc plan -o` writes it (for `mmoc execute`),
     *  with its full simulation as the prediction. */
    planJson(index: number): string {
      if (!last) throw new ExplorerError('no search yet: run a search first');
      const plan = last.plans[index];
      if (!plan) throw new ExplorerError(`Pareto point ${index}: the last search has ${last.plans.length}`);
      const sim = simulatePlan(plan, last.profile, { criticalPath: true });
      const out: Plan = { ...plan, prediction: { step_s: sim.step_s, tokens_per_s: sim.tokens_per_s, peak_bytes: sim.peak_bytes, bottleneck: sim.bottleneck } };
      return `${JSON.stringify(out, null, 2)}\n`;
    },

    /** A committed bench result (bench/results/, profile and plans embedded): every plan
     *  re-simulated against what was measured, as the CI regression does it. */
    bench(json: unknown, source: string): BenchView {
      if (!json || typeof json !== 'object' || !Array.isArray((json as { results?: unknown }).results)) throw new ExplorerError(`${source}: not a bench result (no results list)`);
      const ev = evaluateBenchResult(json, source, { profile: embeddedProfile });
      lastBench = { json, source };
      if (!ev.runs.length) throw new ExplorerError(`${source}: no run to re-simulate (${ev.reason}${ev.skipped.length ? `; ${ev.skipped.map((k) => `${k.label}: ${k.reason}`).join('; ')}` : ''})`);
      const sm = summary(ev);
      const within = ev.qualifies && sm.stepWorst <= STEP_BOUND && sm.peakWorst <= PEAK_BOUND && ev.ranking.length === 0;
      return { title: `${source}: ${ev.machine ?? 'machine?'}, ${ev.date ?? 'date?'}`, evaluation: ev, summary: sm, bounds: { step: STEP_BOUND, peak: PEAK_BOUND, tie: TIE }, within };
    },

    /** The plan of one run of the last bench result opened (by its label), simulated on the
     *  result's own profile: the predicted step the measurement was compared with. */
    benchPlan(label: string): PlanView {
      if (!lastBench) throw new ExplorerError('no bench result opened yet');
      const r = lastBench.json as { profile?: unknown; results?: { runs?: { system?: string; plan?: { name?: string; plan?: unknown } }[] }[] };
      const { profile, why } = embeddedProfile(r.profile);
      if (!profile) throw new ExplorerError(`${lastBench.source}: ${why}`);
      for (const res of r.results ?? []) for (const run of res.runs ?? []) {
        const name = run.plan?.name;
        if (run.system === 'mmoc' && name && label.endsWith(`: ${name}`) && run.plan?.plan) {
          const plan = parsePlan(run.plan.plan, `${lastBench.source}: ${name}`);
          return planView(plan, profile, `${name} (${lastBench.source}), predicted on ${profile.id}`, plan.job.gpuMemCapBytes ?? null);
        }
      }
      throw new ExplorerError(`${lastBench.source}: no run "${label}" with its plan embedded`);
    },

    /** A plan file (as `mmoc simulate`): on its own profile if bundled, else on `profileJson`. */
    viewPlan(planJson: unknown, source: string, profileJson?: unknown): PlanView {
      const plan = parsePlan(planJson, source);
      const profile = profileJson !== undefined ? parseHardwareProfile(profileJson, 'the profile file') : profileOf(plan.hardware, `${source}: hardware`);
      return planView(plan, profile, `${source} on ${profile.id}`, plan.job.gpuMemCapBytes ?? null);
    },

    /** A plan and its measured trace (as `mmoc compare`): the report and one step side by side. */
    compare(planJson: unknown, planSource: string, measured: unknown, measuredSource: string, profileJson?: unknown): CompareView {
      const plan = parsePlan(planJson, planSource);
      const m = measured as ChromeTrace;
      if (!m || typeof m !== 'object' || !Array.isArray(m.traceEvents)) throw new ExplorerError(`${measuredSource}: not a Chrome trace (no traceEvents array); open the file written by \`mmoc execute --trace\``);
      const profile = profileJson !== undefined ? parseHardwareProfile(profileJson, 'the profile file') : profileOf(plan.hardware, `${planSource}: hardware`);
      const sim = simulatePlan(plan, profile, { memorySeries: true });
      const predicted = chromeTrace(sim.lowered.graph, sim.result);
      const report = compareTraces(predicted, m, { predictedPeakBytes: sim.peak_bytes, predictedStepS: sim.step_s, program: plan.program });
      if (report.paired === 0) throw new ExplorerError(`${measuredSource}: no instruction pairs with ${planSource} (was it measured from this plan?)`);
      const steps = stepsOf(m);
      const step = steps.length > 1 ? steps[1] : steps[0];
      return { title: `${planSource} against ${measuredSource}`, report, trace: traceModel(sideBySide(predicted, m, step)) };
    },
  };
}

export type ExplorerApi = ReturnType<typeof createExplorerApi>;
