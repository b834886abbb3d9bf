// Per (rank, instruction class, stage): the median measured duration of a matrix plan's instructions
// (steps after the first) against the simulated one, on a given profile: which pass of which rank
// the model gets wrong.
//   node --import tsx bench/gpu/per-instruction.ts <plan.json> <trace.json[.gz]> <profile.json> [--all]
// (--all: every instruction class, not only the passes, with its total a step measured and simulated)
import { readFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { parsePlan } from '../../planner/plan-schema.ts';
import { simulatePlan } from '../../planner/lower.ts';
import { parseHardwareProfile, chromeTrace } from '../../sim/index.ts';
const [planF, traceF, profF] = process.argv.slice(2) as [string, string, string];
const all = process.argv.includes('--all');
const plan = parsePlan(JSON.parse(readFileSync(planF, 'utf8')), planF);
const prof = parseHardwareProfile(JSON.parse(readFileSync(profF, 'utf8')), profF);
const sim = simulatePlan(plan, prof, {});
const pt = chromeTrace(sim.lowered.graph, sim.result);
const raw = readFileSync(traceF), t = JSON.parse((traceF.endsWith('.gz') ? gunzipSync(raw) : raw).toString('utf8'));  // committed traces: .trace.json.gz
const ev = (t.traceEvents ?? t).filter((e: any) => e.ph === 'X' && e.args?.step >= 1);
const meas = new Map<string, number[]>(), pred = new Map<string, number[]>();
const key = (e: any, op: string) => `${e.args.rank}/${op}/${e.args.stage}`;
for (const e of ev) { const k = key(e, e.name); (meas.get(k) ?? meas.set(k, []).get(k)!).push(e.dur); }
for (const e of pt.traceEvents as any[]) { if (e.ph !== 'X' || !e.args?.op) continue; const k = key(e, e.args.op); (pred.get(k) ?? pred.set(k, []).get(k)!).push(e.dur); }
const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
const steps = new Set(ev.map((e: any) => e.args.step)).size;
for (const [k, xs] of [...meas].sort()) {
  const p = pred.get(k);
  if (!all && !/forward|backward/.test(k)) continue;
  const perStep = all ? ` | a step: meas ${(sum(xs) / steps / 1e3).toFixed(1)} ms, pred ${p ? ((sum(p) / p.length) * (xs.length / steps) / 1e3).toFixed(1) : '-'} ms (the simulated mean times the measured count)` : '';
  console.log(k.padEnd(30), `n=${xs.length}`, 'meas med', med(xs).toFixed(0), 'pred med', p ? med(p).toFixed(0) : '-', p ? `${(100 * (med(p) / med(xs) - 1)).toFixed(1)}%` : '', perStep);
}
