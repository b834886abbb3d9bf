// CPU AdamW benchmark (issue 6): the executor's host AdamW (native/src/runtime.cpp cpuAdamW: fp32
// master/m/v, gradient converted inside the loop, bf16 weights written in the same pass) against
// torch's CPU AdamW at the same thread count, plus a plain copy as the memory-bandwidth yardstick.
//   node --import tsx bench/cpu-adam.ts [--n 67108864] [--threads 1,2] [--reps 5] [--out file.json] [--note 'what the machine was doing']
import { writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { execSync } from 'node:child_process';
import { benchCpuAdamW, buildInfo } from '../executor/native.ts';

const arg = (k: string, d: string) => { const i = process.argv.indexOf(k); return i >= 0 ? process.argv[i + 1]! : d; };
const n = Number(arg('--n', String(64 * 2 ** 20)));
const threads = arg('--threads', '1,2').split(',').map(Number);
const reps = Number(arg('--reps', '5'));
const out = arg('--out', '');
const rows = [];
for (const t of threads) {
  const b = benchCpuAdamW(n, t, reps);
  const gb = (bytes: number, s: number) => +(bytes * n / s / 1e9).toFixed(2);
  rows.push({
    threads: t, params: n,
    mmoc_fp32_grads: { step_s: +b.oursF32.toFixed(4), gparam_per_s: +(n / b.oursF32 / 1e9).toFixed(3), dram_gb_per_s: gb(28, b.oursF32) },
    mmoc_bf16_grads_bf16_weights: { step_s: +b.oursBf16.toFixed(4), gparam_per_s: +(n / b.oursBf16 / 1e9).toFixed(3), dram_gb_per_s: gb(28, b.oursBf16) },
    torch: { impl: b.torchImpl, step_s: +b.torch.toFixed(4), gparam_per_s: +(n / b.torch / 1e9).toFixed(3) },
    // the executor's job (bf16 gradients in, bf16 weights out) done with torch: convert, AdamW, convert
    torch_same_job: { step_s: +b.torchJob.toFixed(4), gparam_per_s: +(n / b.torchJob / 1e9).toFixed(3) },
    speedup_vs_torch_same_job: +(b.torchJob / b.oursBf16).toFixed(2),
    copy_gb_per_s: gb(8, b.copySec),
    speedup_vs_torch_fp32: +(b.torch / b.oursF32).toFixed(2),
    ratio_to_copy_bandwidth: +(gb(28, b.oursF32) / gb(8, b.copySec)).toFixed(2),
  });
  console.log(JSON.stringify(rows.at(-1)));
}
let commit = '';
try { commit = execSync('git rev-parse --short HEAD', { encoding: 'utf8' }).trim(); } catch { /* not a checkout */ }
const result = {
  date: new Date().toISOString().slice(0, 10), commit,
  machine: { cpu: cpus()[0]?.model ?? '?', cpu_cores: cpus().length, host_memory_gib: +(totalmem() / 2 ** 30).toFixed(1), torch: buildInfo().torchVersion,
    note: arg('--note', 'median of reps') },
  results: rows,
};
if (out) writeFileSync(out, JSON.stringify(result, null, 2) + '\n');
