// Host AdamW rate against the group size updated at once (issue 7's matrix: the executor updated
// LLaMA-2-7B's 202M-parameter layers 17% faster per rank than LLaMA-3.2-1B's 61M ones, where
// calibrate's 157M benchmark sat between): the executor's kernel on G thread groups at once (as G
// ranks' host workers), `threads` each, per size; and one group alone.
//   node --import tsx bench/gpu/adam-sizes.ts [--groups 2] [--threads 16] [--sizes 16,32,61,128,202,256] [--reps 5]
import { calibrateTask } from '../../executor/native.ts';
import { cpus } from 'node:os';

const arg = (k: string, d: string) => { const i = process.argv.indexOf(k); return i >= 0 ? process.argv[i + 1]! : d; };
const groups = Number(arg('--groups', '2'));
const threads = Number(arg('--threads', String(Math.floor(cpus().length / groups))));
const sizes = arg('--sizes', '16,32,61,128,202,256').split(',').map(Number);
const reps = Number(arg('--reps', '5'));
const rows: { M: number; groups: number; threads: number; gparams_per_s: number; per_group: number }[] = [];
for (const M of sizes) {
  const n = Math.round(M * 1e6);
  for (const g of [groups, 1]) {
    const r = await calibrateTask({ kind: 'adamw', dims: g > 1 ? [n, g] : [n], threads, warmup: 1, iters: reps, maxSec: 60 });
    rows.push({ M, groups: g, threads, gparams_per_s: +(r.value / 1e9).toFixed(3), per_group: +(r.value / 1e9 / g).toFixed(3) });
    console.log(JSON.stringify(rows.at(-1)));
  }
}
console.log('size_M  ' + [groups, 1].map((g) => `${g}x${threads}thr G/s (per group)`).join('   '));
for (const M of sizes) console.log(`${String(M).padStart(6)}  ` + rows.filter((r) => r.M === M).map((r) => `${r.gparams_per_s.toFixed(2)} (${r.per_group.toFixed(2)})`.padEnd(24)).join(' '));
