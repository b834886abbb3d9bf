// Offline re-evaluation of a GPU bench matrix: re-simulates every plan of <matrix dir>/plans/
// (manifest.json) on a given hardware profile and compares with the measured run summaries in
// <matrix dir>/runs/<name>.json (step_s_median, peak_bytes per device = allocator peak reserved
// plus the device memory outside it). Prints step and peak errors per plan and the MAPEs.
//
//   node --import tsx bench/gpu/reevaluate.ts <matrix dir> <profile.json> [--json]
import { existsSync, readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { parsePlan } from '../../planner/plan-schema.ts';
import { simulatePlan } from '../../planner/lower.ts';
import { parseHardwareProfile } from '../../sim/index.ts';

const GiB = 2 ** 30;

export interface ReRun { name: string; step: { predicted: number; measured: number; error: number }; peak: { predicted: number; measured: number; error: number }[] }

export function reevaluate(dir: string, profilePath: string): { runs: ReRun[]; stepMape: number; stepWorst: number; peakMape: number; peakWorst: number } {
  const profile = parseHardwareProfile(JSON.parse(readFileSync(profilePath, 'utf8')), profilePath);
  const manifest = JSON.parse(readFileSync(join(dir, 'plans', 'manifest.json'), 'utf8')) as { plans: { name: string; file: string }[] };
  const runs: ReRun[] = [];
  for (const p of manifest.plans) {
    const planFile = join(dir, 'plans', basename(p.file));
    const resFile = join(dir, 'runs', `${p.name}.json`);
    if (!existsSync(planFile) || !existsSync(resFile)) continue;
    const plan = parsePlan(JSON.parse(readFileSync(planFile, 'utf8')), planFile);
    const r = JSON.parse(readFileSync(resFile, 'utf8')) as { step_s_median: number; peak_bytes?: (number | null)[] };
    const sim = simulatePlan(plan, profile, { criticalPath: false });
    const peak = (r.peak_bytes ?? []).flatMap((m, i) => {
      if (typeof m !== 'number' || !(m > 0)) return [];
      const pr = (sim.peak_bytes[i] ?? 0) / GiB, me = m / GiB;
      return [{ predicted: pr, measured: me, error: (pr - me) / me }];
    });
    runs.push({ name: p.name, step: { predicted: sim.step_s, measured: r.step_s_median, error: (sim.step_s - r.step_s_median) / r.step_s_median }, peak });
  }
  const steps = runs.map((r) => Math.abs(r.step.error));
  const peaks = runs.flatMap((r) => r.peak.map((p) => Math.abs(p.error)));
  const mean = (a: number[]) => (a.length ? a.reduce((x, y) => x + y, 0) / a.length : 0);
  return { runs, stepMape: mean(steps), stepWorst: Math.max(0, ...steps), peakMape: mean(peaks), peakWorst: Math.max(0, ...peaks) };
}

if (process.argv[1]?.endsWith('reevaluate.ts')) {
  const [dir, prof] = process.argv.slice(2).filter((a) => !a.startsWith('--'));
  if (!dir || !prof) { console.error('usage: reevaluate.ts <matrix dir> <profile.json> [--json]'); process.exit(2); }
  const ev = reevaluate(dir, prof);
  if (process.argv.includes('--json')) console.log(JSON.stringify(ev, null, 1));
  else {
    const pct = (x: number) => `${x >= 0 ? '+' : ''}${(x * 100).toFixed(1)}%`;
    for (const r of ev.runs) console.log(`${r.name.padEnd(46)} step ${r.step.predicted.toFixed(4)}/${r.step.measured.toFixed(4)} s ${pct(r.step.error).padStart(7)}   peak ${r.peak.map((p) => `${p.predicted.toFixed(2)}/${p.measured.toFixed(2)} GiB ${pct(p.error)}`).join(', ')}`);
    console.log(`${ev.runs.length} plans: step MAPE ${(ev.stepMape * 100).toFixed(1)}% (worst ${(ev.stepWorst * 100).toFixed(1)}%), peak MAPE ${(ev.peakMape * 100).toFixed(1)}% (worst ${(ev.peakWorst * 100).toFixed(1)}%)`);
  }
}
