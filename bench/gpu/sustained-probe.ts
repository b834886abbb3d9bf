// Why calibrate's sustained-load factor for LLaMA-3.2-1B at micro-batch 1 (x1.25-1.41 in five
// matrix runs) is larger than what that model's own mbs-1 plans run at (x1.10-1.15 re-fitted from
// their measured steps): the same probe plan at other layer and micro-batch counts, and a matrix
// plan, each run by `mmoc execute` in a process of its own, their forward and backward instructions
// of the later half of the steps set against the tables.
//   node --import tsx bench/gpu/sustained-probe.ts plans <dir>            # writes <dir>/<variant>.json + list.tsv
//   (GPU) node bin/mmoc.js execute <dir>/<v>.json --steps 12 --trace <dir>/<v>.trace.json
//   node --import tsx bench/gpu/sustained-probe.ts analyze <dir> <profile.json>
//   node --import tsx bench/gpu/sustained-probe.ts passes <calibrate.json>   # calibrate's own probes, forward and backward fitted apart
//   node --import tsx bench/gpu/sustained-probe.ts resim <matrix dir>        # its plans re-simulated with the factors so re-fitted
// analyze prints, per variant, the median forward and backward instruction (us) of the later half, the
// tables' figure (d0) and the factor on the profile's raw tables that the instructions imply (the
// fitted factor times the one the profile already applied to that model and micro-batch size).
import { existsSync, mkdirSync, readdirSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fitSustained, fitSustainedPasses, modelShapeKeys, modelShapeKeysByPass, probePlan, probeShapeOf, scaleShapes, scaleShapesByPass } from '../../executor/calibrate.ts';
import { resolveModel } from '../../cli/model-files.ts';
import { parsePlan } from '../../planner/plan-schema.ts';
import { simulatePlan } from '../../planner/lower.ts';
import { parseHardwareProfile, type HardwareProfile } from '../../sim/index.ts';
import { reevaluate } from './reevaluate.ts';
import type { Plan } from '../../planner/plan-types.ts';

const STEPS = 12;
const variants: { name: string; model: string; mbs: number; layers: number; nmb: number }[] = [
  { name: '1b-mbs1-L12-nmb32', model: 'llama3.2-1b', mbs: 1, layers: 12, nmb: 32 },  // calibrate's probe
  { name: '1b-mbs1-L12-nmb8', model: 'llama3.2-1b', mbs: 1, layers: 12, nmb: 8 },
  { name: '1b-mbs1-L16-nmb8', model: 'llama3.2-1b', mbs: 1, layers: 16, nmb: 8 },
  { name: '1b-mbs1-L4-nmb8', model: 'llama3.2-1b', mbs: 1, layers: 4, nmb: 8 },
  { name: '1b-mbs1-L16-nmb32', model: 'llama3.2-1b', mbs: 1, layers: 16, nmb: 32 },
  { name: '1b-mbs2-L7-nmb16', model: 'llama3.2-1b', mbs: 2, layers: 7, nmb: 16 },  // calibrate's probe
  { name: '1b-mbs2-L16-nmb4', model: 'llama3.2-1b', mbs: 2, layers: 16, nmb: 4 },
  { name: '7b-mbs1-L6-nmb32', model: 'llama2-7b', mbs: 1, layers: 6, nmb: 32 },  // calibrate's probe
  { name: '7b-mbs1-L6-nmb8', model: 'llama2-7b', mbs: 1, layers: 6, nmb: 8 },
];

const [cmd, dir, profPath] = process.argv.slice(2);
if (cmd === 'plans') {
  mkdirSync(dir!, { recursive: true });
  const rows: string[] = [];
  for (const v of variants) {
    const plan = probePlan(true, 'probe', STEPS, 1, 2, {}, probeShapeOf(resolveModel(v.model).config, 1024, v.mbs, v.layers), v.nmb);
    writeFileSync(join(dir!, `${v.name}.json`), JSON.stringify(plan, null, 1));
    rows.push(`${v.name}\t${join(dir!, `${v.name}.json`)}`);
  }
  writeFileSync(join(dir!, 'list.tsv'), rows.join('\n') + '\n');
} else if (cmd === 'analyze') {
  const prof = parseHardwareProfile(JSON.parse(readFileSync(profPath!, 'utf8')), profPath!);
  const how = String((prof.provenance as unknown as { fields?: Record<string, { how?: string }> })?.fields?.['compute.sustained']?.how ?? JSON.stringify(prof));
  const applied = (model: string, mbs: number) => Number(new RegExp(`${model.replace('.', '\\.')} mbs ${mbs} x([0-9.]+)`).exec(how)?.[1] ?? 1);
  const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  for (const f of readdirSync(dir!).filter((f) => f.endsWith('.trace.json')).sort()) {
    const name = f.replace(/\.trace\.json$/, '');
    const planFile = existsSync(join(dir!, `${name.replace(/-run\d+$/, '')}.json`)) ? join(dir!, `${name.replace(/-run\d+$/, '')}.json`) : '';
    if (!planFile) continue;
    const plan: Plan = parsePlan(JSON.parse(readFileSync(planFile, 'utf8')), planFile);
    const ev = (JSON.parse(readFileSync(join(dir!, f), 'utf8')) as { traceEvents: { ph: string; dur?: number; tid?: number; pid?: number; args?: Record<string, unknown> }[] }).traceEvents;
    const lastStep = Math.max(0, ...ev.map((e) => (typeof e.args?.step === 'number' ? e.args.step : 0)));
    const from = Math.max(1, Math.floor((lastStep + 1) / 2));  // the later half of the steps
    const byPc = new Map<string, number[]>();
    for (const e of ev) {
      const a = e.args ?? {};
      if (e.ph !== 'X' || typeof a.pc !== 'number' || typeof a.step !== 'number' || a.step < from || (typeof e.tid === 'number' && e.tid >= 3)) continue;
      const op = String(a.op ?? (e as { name?: string }).name ?? '');
      if (op !== 'forward' && op !== 'backward') continue;
      const k = `${a.rank ?? 0}:${a.pc}:${op}`;
      (byPc.get(k) ?? (byPc.set(k, []), byPc.get(k)!)).push(e.dur ?? 0);
    }
    const keys = modelShapeKeys(plan.model, 'bf16-mixed', [plan.job.seq], [plan.job.microBatchSize]);
    const us = (p: HardwareProfile) => { const r = simulatePlan(plan, p, { criticalPath: false, hostMemory: false }); return (rank: number, pc: number) => { const t = r.lowered.taskOf[rank]?.[pc] ?? -1; return t < 0 ? NaN : r.result.end_us[t]! - r.result.start_us[t]!; }; };
    const d0 = us(prof), d2 = us(scaleShapes(prof, keys, 2, 'bf16'));
    const rows = [...byPc.entries()].map(([k, v]) => { const [r, pc, op] = k.split(':'); return { r: +r!, pc: +pc!, op: op!, m: med(v) }; }).filter((x) => Number.isFinite(d0(x.r, x.pc)));
    const a = applied(plan.model.name.replace(/-\d+-layers$/, ''), plan.job.microBatchSize);  // a probe's model is '<model>-<n>-layers'
    const part = (op: string) => { const xs = rows.filter((x) => x.op === op); return xs.length ? { m: med(xs.map((x) => x.m)), d0: med(xs.map((x) => d0(x.r, x.pc))), s: a * fitSustained(xs.map((x) => x.m), xs.map((x) => d0(x.r, x.pc)), xs.map((x) => d2(x.r, x.pc))) } : null; };
    const fw = part('forward'), bw = part('backward');
    const all = a * fitSustained(rows.map((x) => x.m), rows.map((x) => d0(x.r, x.pc)), rows.map((x) => d2(x.r, x.pc)));
    const layers = plan.model.num_hidden_layers;
    console.log(`${name.padEnd(36)} L${String(layers).padStart(2)} mbs${plan.job.microBatchSize} nmb${String(plan.job.microBatches).padStart(2)}  fwd ${fw ? `${(fw.m / 1000).toFixed(2)} ms (tables ${(fw.d0 / 1000).toFixed(2)}, x${fw.s.toFixed(3)})` : '-'}  bwd ${bw ? `${(bw.m / 1000).toFixed(2)} ms (tables ${(bw.d0 / 1000).toFixed(2)}, x${bw.s.toFixed(3)})` : '-'}  all x${all.toFixed(3)} (profile x${a.toFixed(3)})`);
  }
} else if (cmd === 'passes' || cmd === 'resim') {
  // `mmoc calibrate --json` output: each sustained probe's per-instruction data (detail), fitted
  // as calibrate fits it now (fitSustainedPasses); older outputs lack the op: in a one-rank GPipe
  // probe the first microBatches instructions are the forwards
  type Instr = { pc: number; op?: string; measured_us: number[]; d0_us: number; d2_us: number };
  const found: { label: string; detail: { mbs: number; s: number; layers?: number; perPass?: boolean; microBatches: number; instructions: Instr[] }[] }[] = [];
  const walk = (o: unknown): void => {
    if (Array.isArray(o)) o.forEach(walk);
    else if (o && typeof o === 'object') { const r = o as Record<string, unknown>; if (String(r.label ?? '').startsWith('sustained compute')) found.push(r as never); Object.values(r).forEach(walk); }
  };
  const resim = cmd === 'resim';
  walk(JSON.parse(readFileSync(resim ? join(dir!, 'calibrate.json') : dir!, 'utf8')));
  const Q = Number(process.env.MMOC_PROBE_Q ?? 0.5);
  const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) * Q + 0.5)]!;
  const models = new Map<string, Plan['model']>();
  if (resim) for (const f of readdirSync(join(dir!, 'plans')).filter((f) => f.endsWith('.json') && f !== 'manifest.json')) { const m = (JSON.parse(readFileSync(join(dir!, 'plans', f), 'utf8')) as Plan).model; models.set(m.name, m); }
  let prof = resim ? JSON.parse(readFileSync(join(dir!, 'profile.json'), 'utf8')) as HardwareProfile : null;
  for (const m of found) {
    for (const d of m.detail) {
      const pass = (fwd: boolean) => { const xs = d.instructions.filter((i) => (i.op ? i.op === 'forward' : i.pc < d.microBatches) === fwd); return { meas: xs.map((i) => med(i.measured_us)), d0: xs.map((i) => i.d0_us), d2: xs.map((i) => i.d2_us) }; };
      const f = fitSustainedPasses(pass(true), pass(false));
      const model = models.get(/: (\S+)'s layers/.exec(m.label)?.[1] ?? '');
      // as calibrate applies them since per-pass factors (d.perPass: the profile has them already)
      if (prof && model && !d.perPass) {
        if (Number.isFinite(f.forward) && Number.isFinite(f.backward)) prof = scaleShapesByPass(prof, modelShapeKeysByPass(model, 'bf16-mixed', [1024], [d.mbs]), f.forward / d.s, f.backward / d.s, f.s / d.s, 'bf16');
        else if (Math.abs(f.s - d.s) > 1e-4) prof = scaleShapes(prof, modelShapeKeys(model, 'bf16-mixed', [1024], [d.mbs]), f.s / d.s, 'bf16');
      }
      console.log(`${m.label.replace(/^sustained compute: /, '').padEnd(40)} mbs ${d.mbs} layers ${d.layers ?? 2}: as fitted x${d.s.toFixed(3)}; forward x${f.forward.toFixed(3)}, backward x${f.backward.toFixed(3)} -> x${f.s.toFixed(3)}${f.hostBound ? ` (${f.hostBound} host-bound)` : ''}`);
    }
  }
  if (resim && prof) {
    const file = join(dir!, '.resim-profile.json');
    writeFileSync(file, JSON.stringify(prof));
    const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
    const a = reevaluate(dir!, join(dir!, 'profile.json')), b = reevaluate(dir!, file);
    for (const r of b.runs) console.log(`  ${r.name.padEnd(56)} ${pct(a.runs.find((x) => x.name === r.name)!.step.error).padStart(7)} -> ${pct(r.step.error).padStart(7)}`);
    console.log(`step MAPE ${pct(a.stepMape)} (worst ${pct(a.stepWorst)}) -> ${pct(b.stepMape)} (worst ${pct(b.stepWorst)}); plans over 10%: ${a.runs.filter((x) => Math.abs(x.step.error) > 0.1).length} -> ${b.runs.filter((x) => Math.abs(x.step.error) > 0.1).length}`);
    unlinkSync(file);
  }
} else {
  console.error('usage: sustained-probe.ts plans <dir> | analyze <dir> <profile.json> | passes <calibrate.json> | resim <matrix dir>');
  process.exit(2);
}
