// `mmoc calibrate`: measures this machine (executor/calibrate.ts over the native benchmarks) and
// writes a hardware profile that `mmoc plan --hardware <file>` uses. Progress on stderr.
import type { Command } from 'commander';
import { existsSync, mkdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { action, emit, InputError, log, parsePositiveInt } from './common.ts';
import { displayPath, readJsonFile, repoRoot, resolveModel } from './model-files.ts';
import { writeFileAtomic } from './plan.ts';
import { parseHardwareProfile, ProfileError, type HardwareProfile } from '../sim/index.ts';
import { CALIB_PARTS, calibrate, type CalibPart, type CalibrateOutput } from '../executor/calibrate.ts';

export interface CalibrateCliResult extends CalibrateOutput {
  output: string;
}

function parseList(text: string, flag: string): number[] {
  return text.split(',').map((x) => parsePositiveInt(x.trim(), flag));
}

export function parseParts(text: string | undefined): Set<CalibPart> {
  if (!text) return new Set(CALIB_PARTS);
  const out = new Set<CalibPart>();
  for (const x of text.split(',').map((s) => s.trim()).filter(Boolean)) {
    if (!(CALIB_PARTS as readonly string[]).includes(x)) throw new InputError(`--only: "${x}" is not a part (${CALIB_PARTS.join(', ')})`);
    out.add(x as CalibPart);
  }
  if (out.size === 0) throw new InputError(`--only: name at least one part (${CALIB_PARTS.join(', ')})`);
  return out;
}

function bar(done: number, total: number, label: string, startMs: number): string {
  const w = 24, f = total ? Math.round((w * done) / total) : w;
  return `[${'#'.repeat(f)}${'.'.repeat(w - f)}] ${String(done).padStart(3)}/${total} ${((Date.now() - startMs) / 1e3).toFixed(1).padStart(5)} s  ${label}`;
}

export function formatCalibrate(r: CalibrateCliResult): string {
  const p = r.profile;
  const c = p.compute;
  const lines = [
    `wrote ${r.output} (profile ${p.id}) in ${r.seconds.toFixed(1)} s: ${p.gpus.count} ${p.gpus.kind === 'cpu' ? 'CPU ranks' : `x ${p.gpus.name}`}`,
    `  GEMM table: ${Object.entries(c.gemm ?? {}).map(([d, v]) => `${v!.length} ${d}`).join(', ') || 'none'}; attention: ${Object.entries(c.attention ?? {}).map(([d, v]) => `${v!.length} ${d}`).join(', ') || 'none'}; peak ${Object.entries(c.peak_tflops).map(([d, v]) => `${d} ${v} TFLOP/s`).join(', ')}; memory-bound kernels ${c.memory_GBps} GB/s${c.optimizer_GBps !== undefined ? `; GPU AdamW ${c.optimizer_GBps} GB/s` : ''}`,
    `  host links: ${p.links.h2d.map((l) => `${l.gpu}: ${l.GBps}`).join(', ')} GB/s h2d; groups ${p.links.host_groups.map((g) => `${g.name}[${g.gpus.join(',')}] ${g.h2d_GBps}`).join(', ')}; peer ${p.links.peer.map((x) => `${x.GBps} GB/s`).join(', ') || 'none'}`,
    `  CPU AdamW: ${p.cpu.optimizers[0]?.points.map((q) => `${q.threads} thr ${(q.params_per_s / 1e6).toFixed(0)}M/s`).join(', ')}; memcpy ${p.cpu.memory_GBps} GB/s; disks: ${p.disks.map((d) => `${d.path} w ${d.write_GBps} r ${d.read_GBps} GB/s`).join(', ') || 'none'}`,
    `  overheads: kernel ${p.overheads.kernel_launch_us} us, instruction ${p.overheads.per_instruction_us} us, context ${(p.overheads.cuda_context_bytes / 2 ** 20).toFixed(0)} MiB, allocator ${(p.overheads.allocator_overhead_fraction * 100).toFixed(1)}%, slowdown under copies ${(p.compute_slowdown_under_copies * 100).toFixed(1)}%`,
  ];
  const failed = r.measurements.filter((m) => m.error);
  if (failed.length) lines.push(`  ${failed.length} benchmark(s) failed (their figures keep the base values):`, ...failed.map((m) => `    ${m.label}: ${m.error}`));
  if (r.skipped.length) lines.push('  skipped:', ...r.skipped.map((s) => `    ${s}`));
  return lines.join('\n');
}

export function register(program: Command): void {
  program
    .command('calibrate')
    .description('measure this machine (GEMMs at the model\'s shapes, attention, kernels, links, CPU AdamW, memory, disks, overheads) and write a hardware profile')
    .option('--quick', 'fewer repetitions and smaller transfers (under 30 s on a CPU machine)')
    .option('--only <parts>', `measure only these parts, keeping the others from the existing output file (${CALIB_PARTS.join(',')})`)
    .option('--model <model>', 'the models whose layer shapes are measured, comma-separated (bundled names or config.json paths)', 'llama2-7b')
    .option('--seq <list>', 'sequence lengths of the job', '1024,2048')
    .option('--mbs <list>', 'micro-batch sizes of the job', '1')
    .option('--disk-path <dir...>', 'folders of the disk tier to measure (direct I/O)')
    .option('--target <kind>', 'gpu (default where GPUs exist) or cpu (ranks run on the CPU)')
    .option('--cpu-ranks <n>', 'CPU-rank profiles: how many ranks', '2')
    .option('--threads <n>', 'CPU-rank profiles: intra-op threads per rank (default cores / ranks; pass the same to mmoc execute --threads)')
    .option('-o, --output <file>', 'where to write the profile (default configs/hardware/<id>.json)')
    .option('--id <name>', 'profile id (default: calibrated-<host>)')
    .option('--json', 'print the profile and every measurement as JSON')
    .action(action(async (o: { quick?: boolean; only?: string; model: string; seq: string; mbs: string; diskPath?: string[]; target?: string; cpuRanks: string; threads?: string; output?: string; id?: string; json?: boolean }) => {
      const parts = parseParts(o.only);
      const models = o.model.split(',').map((m) => resolveModel(m.trim()).config);
      const seqs = parseList(o.seq, '--seq');
      const mbs = parseList(o.mbs, '--mbs');
      if (o.target !== undefined && o.target !== 'cpu' && o.target !== 'gpu') throw new InputError(`--target: "${o.target}" must be gpu or cpu`);
      const id = o.id ?? (o.output ? o.output.split('/').pop()!.replace(/\.json$/, '') : 'calibrated');
      if (!/^[A-Za-z0-9._-]+$/.test(id)) throw new InputError(`--id: "${id}" may hold letters, digits, '.', '_' and '-' only`);
      const output = resolve(o.output ?? join(repoRoot, 'configs', 'hardware', `${id}.json`));
      for (const d of o.diskPath ?? []) if (!existsSync(d)) throw new InputError(`--disk-path: "${d}" does not exist`);
      let base: HardwareProfile | undefined;
      if (existsSync(output)) {
        try {
          base = parseHardwareProfile(readJsonFile(output, 'hardware profile'), displayPath(output));
        } catch (e) {
          if (!(e instanceof ProfileError)) throw e;
          log(`mmoc calibrate: ${e.message}; not keeping its figures`);
        }
      }
      const start = Date.now();
      const tty = process.stderr.isTTY;
      const r = await calibrate({
        parts, quick: !!o.quick, models, seqs, microBatchSizes: mbs, diskPaths: (o.diskPath ?? []).map((d) => resolve(d)), id,
        command: ['mmoc', ...process.argv.slice(2)].join(' '), base, target: o.target as 'cpu' | 'gpu' | undefined,
        cpuRanks: parsePositiveInt(o.cpuRanks, '--cpu-ranks'),
        rankThreads: o.threads !== undefined ? parsePositiveInt(o.threads, '--threads') : undefined,
        progress: (done, total, label) => {
          const line = bar(done, total, label, start);
          if (tty) process.stderr.write(`\r\x1b[K${line}${done === total ? '\n' : ''}`);
          else log(line);
        },
      });
      mkdirSync(dirname(output), { recursive: true });
      writeFileAtomic(output, JSON.stringify(r.profile, null, 2) + '\n');
      emit(o, { output: displayPath(output), ...r }, formatCalibrate);
    }));
}
