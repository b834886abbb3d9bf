// Why does the executor's host AdamW on the 2x H200 host run ~13% faster than calibrate's all-ranks
// point says, and do D2H copies slow it as much as the H2D copies calibrate times? (issue 7: the
// LLaMA-2-7B host-AdamW plan, +8..+14% in every matrix run.) On an nvidia-h200-x2, after the native
// build:  node --import tsx bench/gpu/adam-probe.ts > adam-probe.txt
// Each line: what ran, the update's rate in G params/s (in all), and for copies their GB/s.
//   1. calibrate's job: every rank's update as thread teams of one process (dims [n, groups])
//   2. the same as separate processes, one a rank (as the executor runs them), started together
//   3. one team alone
//   (each with the gradients and weights pageable and pinned, as a GPU rank's host groups hold them)
//   4. the update inside H2D, D2H and duplex copies on every GPU (calibrate times H2D only)
// First run (2x H200, 2026-11-22, pageable only): 2 teams 5.52 / 5.76 G params/s (157M / 202M),
// 2 processes 5.97 / 5.73, one team alone 5.57 / 6.13; inside H2D x1.41 slower, D2H x1.90,
// duplex x2.09 (copies 105-148 GB/s, nearly unslowed).
import { spawn } from 'node:child_process';
import { cpus } from 'node:os';
import { readFileSync } from 'node:fs';
import { calibrateTask } from '../../executor/native.ts';
import { hostThreadsPerRank } from '../../planner/host-threads.ts';

const arg = (k: string, d: string) => { const i = process.argv.indexOf(k); return i >= 0 ? process.argv[i + 1]! : d; };
const G = Number(arg('--gpus', '2'));
const T = hostThreadsPerRank(cpus().length, G, true);
const N = arg('--sizes', '157286400,202383360').split(',').map(Number);  // calibrate's size; a LLaMA-2-7B decoder layer's parameters
const gps = (v: number) => (v / 1e9).toFixed(2);

async function child(): Promise<void> {
  const n = Number(arg('--n', '0')), iters = Number(arg('--iters', '30'));
  const r = await calibrateTask({ kind: 'adamw', dims: [n, 1], threads: T, warmup: 0, iters, maxSec: 60, pinned: process.argv.includes('--pinned') });
  process.stdout.write(JSON.stringify({ value: r.value }) + '\n');
}

function runChild(n: number, iters: number, pinned: boolean): Promise<number> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, ['--import', 'tsx', process.argv[1]!, '--child', '--n', String(n), '--iters', String(iters), ...(pinned ? ['--pinned'] : [])], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    p.stdout.on('data', (d) => { out += d; });
    p.on('exit', (c) => (c === 0 ? resolve(JSON.parse(out.trim().split('\n').at(-1)!).value) : reject(new Error(`child exit ${c}`))));
  });
}

async function main(): Promise<void> {
  const read = (f: string) => { try { return readFileSync(f, 'utf8').trim(); } catch { return '?'; } };
  console.log(`host: ${cpus().length} logical cores, ${T} threads a rank, ${G} ranks; THP ${read('/sys/kernel/mm/transparent_hugepage/enabled')}; defrag ${read('/sys/kernel/mm/transparent_hugepage/defrag')}`);
  for (const n of N) for (const pinned of [false, true]) {
    const how = `n=${(n / 1e6).toFixed(0)}M ${pinned ? 'pinned  ' : 'pageable'}`;
    const one = await calibrateTask({ kind: 'adamw', dims: [n, G], threads: T, warmup: 0, iters: 15, maxSec: 60, pinned });
    console.log(`${how}  ${G} teams in one process: ${gps(one.value)} G params/s in all`);
    const procs = await Promise.all(Array.from({ length: G }, () => runChild(n, 30, pinned)));
    console.log(`${how}  ${G} processes at once: ${procs.map(gps).join(' + ')} = ${gps(procs.reduce((a, b) => a + b, 0))} G params/s in all`);
    const alone = await calibrateTask({ kind: 'adamw', dims: [n, 1], threads: T, warmup: 0, iters: 9, maxSec: 60, pinned });
    console.log(`${how}  one team alone: ${gps(alone.value)} G params/s`);
  }
  if (process.argv.includes('--no-copies')) return;
  const n = N[0]!;
  const all = Array.from({ length: G }, (_, i) => i);
  const base = await calibrateTask({ kind: 'adamw', dims: [n, G], threads: T, warmup: 0, iters: 9, maxSec: 60, pinned: true });
  console.log(`update alone (${G} teams, pinned): ${gps(base.value)} G params/s`);
  for (const name of ['h2d', 'd2h', 'duplex'] as const) {
    const alone = await calibrateTask({ kind: 'copy', name, gpus: all, bytes: 256 * 2 ** 20, pinned: true, warmup: 1, iters: 20, maxSec: 0.3 });
    const copies = calibrateTask({ kind: 'copy', name, gpus: all, bytes: 256 * 2 ** 20, pinned: true, warmup: 1, iters: 1e6, maxSec: 6 });
    await new Promise((r) => setTimeout(r, 100));
    const under = await calibrateTask({ kind: 'adamw', dims: [n, G], threads: T, warmup: 0, iters: 9, maxSec: 60, pinned: true });
    const c = await copies;
    console.log(`update inside ${name} on ${G} GPUs: ${gps(under.value)} G params/s (x${(base.value / under.value).toFixed(3)} slower); copies ${alone.value.toFixed(1)} GB/s alone, ${c.value.toFixed(1)} GB/s over the 6 s with the update`);
  }
}

(process.argv.includes('--child') ? child() : main()).catch((e) => { console.error(e); process.exit(1); });
