// Writes the plan `mmoc calibrate` runs to measure the memory outside the caching allocator (two
// decoder layers of a model at its sequence and micro-batch, one rank), so that the same run can be
// made by `mmoc execute` in a process of its own (bench/gpu/run-s4-t3.sh: calibrate's context figure
// against a standalone run).
//   node --import tsx bench/gpu/dump-probe-plan.ts <model> <seq> <mbs> <out.json>
import { writeFileSync } from 'node:fs';
import { probePlan, probeShapeOf } from '../../executor/calibrate.ts';
import { resolveModel } from '../../cli/model-files.ts';
const [model, seq, mbs, out] = process.argv.slice(2);
const cfg = resolveModel(model!).config;
writeFileSync(out!, JSON.stringify(probePlan(true, 'probe', 3, 1, 2, {}, probeShapeOf(cfg, Number(seq), Number(mbs))), null, 1));
