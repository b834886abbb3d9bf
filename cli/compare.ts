// `mmoc compare plan.json measured.json`: re-simulates the plan on its hardware profile and pairs
// the prediction with the executor's measured trace by instruction (rank, pc).
import type { Command } from 'commander';
import { action, emit, InputError } from './common.ts';
import { displayPath, readJsonFile } from './model-files.ts';
import { resolveHardware, writeFileAtomic } from './plan.ts';
import { parsePlan } from '../planner/plan-schema.ts';
import { simulatePlan } from '../planner/lower.ts';
import { compareTraces, isNoise, sideBySide, type CompareReport, type ErrorRow } from '../planner/compare.ts';
import { chromeTrace, type ChromeTrace } from '../sim/index.ts';

export interface CompareCliResult extends CompareReport {
  /** False on CPU ranks: the measured peak is the process resident set, not tensor bytes. */
  peak_comparable: boolean;
  plan: string;
  measured: string;
  hardware: string;
}

const pct = (e: number | null) => (e === null ? '   n/a' : `${e >= 0 ? '+' : ''}${(e * 100).toFixed(1)}%`.padStart(7));
const GiB = 1024 ** 3;

/** A row; `noise`: busy-time rows, whose error is not printed under NOISE_US (planner/compare.ts). */
function line(label: string, r: ErrorRow, unit: (v: number) => string, noise = false): string {
  const err = noise && isNoise(r) ? '-'.padStart(7) : pct(r.error);
  return `${label.padEnd(26)} ${unit(r.predicted).padStart(12)} ${unit(r.measured).padStart(12)} ${err}`;
}

export function formatCompare(r: CompareCliResult): string {
  const ms = (s: number) => `${(s * 1e3).toFixed(2)} ms`;
  const us = (v: number) => `${(v / 1e3).toFixed(2)} ms`;
  const out = [
    `${r.plan} (hardware ${r.hardware}) against ${r.measured}: ${r.paired} instructions paired` +
      `${r.only_predicted ? `, ${r.only_predicted} only predicted` : ''}${r.only_measured ? `, ${r.only_measured} only measured` : ''}; measured steps ${r.measured_steps.join(', ')}`,
    '',
    `${''.padEnd(26)} ${'predicted'.padStart(12)} ${'measured'.padStart(12)} ${'error'.padStart(7)}`,
    line('step time', r.step_s, ms),
    '',
    'by instruction class (summed over ranks, per step)',
    ...r.by_op.map((o) => line(`  ${o.op} x${o.count}`, o, us, true)),
    '',
    'busy time by rank and resource (per step)',
    ...r.by_resource.map((o) => line(`  rank ${o.rank} ${o.resource}`, o, us, true)),
    '',
    ...(r.peak_comparable
      ? ['peak memory by rank', ...r.peak_bytes.map((o) => line(`  rank ${o.rank}`, o, (b) => `${(b / GiB).toFixed(3)} GiB`))]
      : ['peak memory: not compared on CPU ranks (the executor reports the process resident set there; the memory model counts tensors)']),
  ];
  return out.join('\n');
}

export function register(program: Command): void {
  program
    .command('compare')
    .description('predicted against measured: re-simulates the plan and pairs it with a measured trace by instruction (rank, pc)')
    .argument('<plan>', 'the plan that was executed (plan.json)')
    .argument('<measured>', 'the measured trace written by `mmoc execute --trace`')
    .option('--hardware <profile>', "predict on this profile instead of the plan's")
    .option('--warmup <steps>', 'measured steps to skip (default: 1 when there are several)')
    .option('--side-by-side <file>', 'write predicted and measured as one trace, two processes per device (Perfetto)')
    .option('--json', 'print the report as JSON')
    .action(action((planPath: string, measuredPath: string, o: { hardware?: string; warmup?: string; sideBySide?: string; json?: boolean }) => {
      const plan = parsePlan(readJsonFile(planPath, 'plan'), displayPath(planPath));
      const measured = readJsonFile(measuredPath, 'measured trace') as ChromeTrace;
      if (!measured || typeof measured !== 'object' || !Array.isArray((measured as ChromeTrace).traceEvents)) {
        throw new InputError(`${displayPath(measuredPath)}: not a Chrome trace (no traceEvents array); pass the file written by \`mmoc execute --trace\``);
      }
      let warmupSteps: number | undefined;
      if (o.warmup !== undefined) {
        warmupSteps = Number(o.warmup);
        if (!Number.isInteger(warmupSteps) || warmupSteps < 0) throw new InputError(`--warmup: "${o.warmup}" must be a whole number of steps`);
      }
      const profile = resolveHardware(o.hardware ?? plan.hardware, o.hardware ? '--hardware' : `${displayPath(planPath)}: hardware`);
      const sim = simulatePlan(plan, profile, { memorySeries: true });
      const predicted = chromeTrace(sim.lowered.graph, sim.result, { plan: displayPath(planPath), hardware: profile.id });
      const report = compareTraces(predicted, measured, { warmupSteps, predictedPeakBytes: sim.peak_bytes, predictedStepS: sim.step_s, program: plan.program });
      if (report.paired === 0) {
        throw new InputError(`${displayPath(measuredPath)}: no instruction pairs with ${displayPath(planPath)} (was it measured from this plan?)`);
      }
      if (o.sideBySide) writeFileAtomic(o.sideBySide, JSON.stringify(sideBySide(predicted, measured)));
      const devices = measured.otherData?.devices;
      const peak_comparable = !(Array.isArray(devices) && devices.length > 0 && devices.every((d) => String(d).startsWith('cpu')));
      emit(o, { plan: displayPath(planPath), measured: displayPath(measuredPath), hardware: profile.id, peak_comparable, ...report }, formatCompare);
    }));
}
