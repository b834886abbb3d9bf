// `mmoc execute plan.json [--steps N] [--data tokens.bin] [--trace measured.json] [--json]`: runs a
// plan's per-rank program for real on this machine (one process per rank), or as one rank under
// torchrun (`torchrun --nproc-per-node N --no-python mmoc execute plan.json`).
import type { Command } from 'commander';
import { existsSync, statSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { action, emit, fmtEta, InputError, JobError, log, parseBytes, parsePositiveInt } from './common.ts';
import { readJsonFile, displayPath } from './model-files.ts';
import { parsePlan } from '../planner/plan-schema.ts';
import { execute, ExecuteError, type ExecuteResult } from '../executor/launch.ts';
import { NativeNotBuiltError } from '../executor/native.ts';

interface ExecuteOpts {
  steps?: string;
  data?: string;
  trace?: string;
  weights?: string;
  save?: string;
  timeout: string;
  threads?: string;
  hostMem?: string;
  autoCap?: boolean;
  json?: boolean;
}

const gib = (b: number) => `${(b / 2 ** 30).toFixed(2)} GiB`;

export function formatExecute(r: ExecuteResult): string {
  const lines = [
    `ran ${r.steps} step${r.steps === 1 ? '' : 's'} on ${r.ranks} rank${r.ranks === 1 ? '' : 's'}${r.rank !== undefined ? ` (this process: rank ${r.rank})` : ''} (${r.devices.join(', ')}; ${r.backend === 'none' ? 'single rank' : r.backend})${r.stopped ? ', stopped early' : ''}`,
    `loss        ${r.losses.map((l) => l.toFixed(4)).join(' ')}`,
    `step        ${r.step_s_median.toFixed(3)} s (median${r.step_s.length >= 3 ? ', first step excluded' : ''})`,
    `tokens/s    ${r.tokens_per_s.toFixed(0)} (${r.tokens_per_step} tokens a step)`,
    `peak        ${r.peak_bytes.map(gib).join(', ')}`,
    `MFU         ${r.mfu === null ? 'n/a (CPU or unknown GPU)' : (r.mfu * 100).toFixed(1) + '%'}`,
  ];
  return lines.join('\n');
}

export function register(program: Command): void {
  program
    .command('execute')
    .description('run a plan for real: one process per rank (c10d: NCCL on CUDA, Gloo on CPU), synthetic tokens unless --data')
    .argument('<plan>', 'plan.json (from mmoc plan)')
    .option('--steps <n>', 'steps to run (default: the plan\'s job.steps)')
    .option('--data <tokens.bin>', 'token file: raw little-endian uint16 tokens (uint32 when the vocabulary exceeds 65,536)')
    .option('--trace <measured.json>', 'write the measured Chrome trace (pairs with the predicted one by rank and pc)')
    .option('--weights <folder>', 'Hugging Face folder with safetensors weights (default: seeded random init)')
    .option('--save <folder>', 'write the trained weights there (HF names, one shard per rank + index)')
    .option('--timeout <s>', 'seconds a rank waits for a peer before failing', '120')
    .option('--threads <n>', 'threads per rank: a CPU rank\'s intra-op threads, a GPU rank\'s host worker (CPU AdamW) threads (default: cores / ranks, less one on GPU ranks)')
    .option('--host-mem <bytes>', 'host memory the ranks may use for offloaded state, all ranks together (e.g. 200GiB): a plan needing more is refused at set-up with what it needs')
    .option('--no-auto-cap', 'do not cap a plan that streams weights at its predicted peak plus 15% (without a cap the caching allocator keeps the streamed blocks cached: far more memory than the plan needs)')
    .option('--json', 'print the result as JSON on stdout')
    .action(
      action(async (planPath: string, opts: ExecuteOpts) => {
        const plan = parsePlan(readJsonFile(resolve(planPath), 'plan'), displayPath(resolve(planPath)));
        const steps = opts.steps !== undefined ? parsePositiveInt(opts.steps, '--steps') : undefined;
        const timeoutSec = Number(opts.timeout);
        if (!(timeoutSec > 0)) throw new InputError(`--timeout: "${opts.timeout}" must be a positive number of seconds`);
        const threads = opts.threads !== undefined ? parsePositiveInt(opts.threads, '--threads') : undefined;
        const hostMemBytes = opts.hostMem !== undefined ? parseBytes(opts.hostMem, '--host-mem') : undefined;
        for (const [flag, p, dir] of [['--data', opts.data, false], ['--weights', opts.weights, true], ['--save', opts.save, true]] as const) {
          if (p === undefined) continue;
          if (!existsSync(p)) throw new InputError(`${flag}: ${p} does not exist`);
          if (statSync(p).isDirectory() !== dir) throw new InputError(`${flag}: ${p} must be a ${dir ? 'folder' : 'file'}`);
        }
        const tty = process.stderr.isTTY;
        const t0 = Date.now();
        let result: ExecuteResult;
        try {
          result = await execute(
            plan,
            {
              steps, dataPath: opts.data && resolve(opts.data), weightsDir: opts.weights && resolve(opts.weights),
              saveDir: opts.save && resolve(opts.save), trace: opts.trace !== undefined, timeoutSec, threads, hostMemBytes, autoCap: opts.autoCap,
            },
            {
              onProgress: (p) => {
                const done = p.step + 1;
                const elapsed = (Date.now() - t0) / 1000;
                const eta = (elapsed / done) * (p.steps - done);
                const line = `step ${done}/${p.steps}  loss ${p.loss.toFixed(4)}  lr ${p.lr.toExponential(2)}  ` +
                  `${(p.tokens / p.stepSec).toFixed(0)} tok/s  mem ${gib(p.memBytes)} (peak ${gib(p.peakBytes)})  ETA ${fmtEta(eta)}`;
                if (tty) process.stderr.write(`\r\x1b[K${line}`);
                else log(line);
              },
            },
          );
        } catch (e) {
          if (tty) process.stderr.write('\n');
          if (e instanceof ExecuteError || e instanceof NativeNotBuiltError) throw new JobError(e.message);
          throw e;
        }
        if (tty) process.stderr.write('\n');
        if (opts.trace) {
          writeFileSync(opts.trace, JSON.stringify(result.trace));
          log(`measured trace: ${opts.trace} (${result.trace?.traceEvents.length ?? 0} events)`);
        }
        const { trace: _t, ...rest } = result;
        emit(opts, rest, () => formatExecute(result));
      }),
    );
}
