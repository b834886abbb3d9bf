// Does the disk tier's speed in a plan follow what calibrate's disk job reads just before it? (issue 7:
// the matrix's disk plan was -11%, +4%, -19%, +12% off in four runs while calibrate's disk figures
// moved independently of the plans' reads and writes.) Rounds of: calibrate's disk job as calibrate
// runs it (two 512 MiB groups, 2 threads, 2 rounds), then a one-GPU LLaMA-3.2-1B plan with the update
// on the host and 1% of its optimizer state on disk (one 730 MB group) for 6 steps, its disk_read and
// disk_write rates from the trace. One GPU is enough: the plan's step is its group's read and write.
// With --groups: each round also the disk tier's I/O on the plan's group size (730 MB, 2 threads)
// written then read back as one group (each read follows the write of the same file, as the plan's
// one group does step after step) and as four (each read follows 2.2 GB of other writes), against
// calibrate's two 512 MiB groups read after both were rewritten: does a file just written read faster?
//   node --import tsx bench/gpu/disk-drift.ts [--rounds 4] [--groups] [--out dir]
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { benchDiskIO, calibrateTask } from '../../executor/native.ts';
import { llama32_1b } from '../../planner/test-models.ts';
import { DISK_DIRS, OFFLOADS, matrixPlan } from './matrix.ts';

const arg = (k: string, d: string) => { const i = process.argv.indexOf(k); return i >= 0 ? process.argv[i + 1]! : d; };
const rounds = Number(arg('--rounds', '4')), out = arg('--out', '/tmp/mmoc-disk-drift');
mkdirSync(out, { recursive: true });
for (const d of DISK_DIRS) mkdirSync(d, { recursive: true });
const plan = matrixPlan({ name: 'llama3.2-1b-1g-1f1b-mbs2x4-hostadam-opt1disk', model: llama32_1b, gpus: 1, schedule: '1f1b', v: 1, mbs: 2, M: 4, recompute: false, seq: 1024, offload: OFFLOADS.disk }, 'h200', false, 6);
const planFile = join(out, 'plan.json');
writeFileSync(planFile, JSON.stringify(plan));
const gbps = (bytes: number, us: number) => bytes / us / 1e3;
const groups = process.argv.includes('--groups');
const G730 = Math.ceil(729858048 / 4096) * 4096;  // the plan's group, 4 KiB aligned
console.log(`round | calibrate read / write GB/s${groups ? ' | 1 x 730 MB read / write | 4 x 730 MB read / write' : ''} | plan read / write GB/s (median of steps 1-5) | plan step s`);
for (let r = 0; r < rounds; r++) {
  const c = await calibrateTask({ kind: 'disk', name: DISK_DIRS[0]!, dims: [2], bytes: 512 * 2 ** 20, iters: 2, warmup: 0, maxSec: 6 });
  const tier = groups ? [1, 4].map((n) => { const b = benchDiskIO([DISK_DIRS[0]!], G730, n, 2); return ` | ${b.readGBps.toFixed(2)} / ${b.writeGBps.toFixed(2)}`; }).join('') : '';
  const trace = join(out, `plan-${r}.trace.json`);
  const res = JSON.parse(execFileSync('node', ['bin/mmoc.js', 'execute', planFile, '--steps', '6', '--json', '--trace', trace], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], maxBuffer: 1 << 28 }));
  const ev = JSON.parse(readFileSync(trace, 'utf8')).traceEvents.filter((e: any) => e.ph === 'X' && e.args?.step >= 1 && /^disk_/.test(e.name));
  const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1] ?? NaN;
  const rate = (name: string) => med(ev.filter((e: any) => e.name === name && e.args.bytes > 0).map((e: any) => gbps(e.args.bytes, e.dur)));
  console.log(`${r} | ${c.value2!.toFixed(2)} / ${c.value.toFixed(2)}${tier} | ${rate('disk_read').toFixed(2)} / ${rate('disk_write').toFixed(2)} | ${res.step_s_median.toFixed(3)}`);
  rmSync(trace, { force: true });
}
