// `mmoc execute`: starts one child process per local rank (executor/worker.ts), rendezvous through
// c10d's TCPStore (RANK / WORLD_SIZE / MASTER_ADDR / MASTER_PORT), shows progress, stops every
// rank cleanly on Ctrl-C, and when a rank dies stops the others within seconds with an error that
// names the rank and its last instruction. Under torchrun (RANK and WORLD_SIZE set) the process is
// itself one rank and runs in-process.
import { InputError } from '../planner/errors.ts';
import { fork, type ChildProcess } from 'node:child_process';
import { closeSync, copyFileSync, existsSync, mkdtempSync, openSync, readFileSync, readSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Plan } from '../planner/plan-types.ts';
import { OPCODES, buildInfo, devices, requestStop, runRank, validateRankConfig, type RankProgress, type RankResult } from './native.ts';
import { rankConfig, worldSize, type Rendezvous, type RunOptions } from './rank-config.ts';
import type { FromWorker, ToWorker } from './worker.ts';
import { measuredTrace, flopsPerStep, peakFlops, type MeasuredTrace } from './trace.ts';

export interface ExecuteHooks {
  /** Per step, from rank 0 (every rank knows the step's loss after the step-end all-reduce). */
  onProgress?: (p: RankProgress & { steps: number }) => void;
  /** Called once per child rank process (tests use it to kill a rank). */
  onSpawn?: (rank: number, pid: number) => void;
  /** Milliseconds to wait for the other ranks' reports once one rank failed, before killing them. */
  graceMs?: number;
  /** The TCPStore port of the first attempt (tests: one already taken). */
  firstPort?: number;
}

export interface ExecuteResult {
  ranks: number;
  /** Under torchrun: this process's rank (its figures are this rank's only). */
  rank?: number;
  steps: number;
  stopped: boolean;
  backend: string;
  losses: number[];
  grad_norms: number[];
  step_s: number[];
  /** Median step time, without the first step (warm-up) when there are 3 or more. */
  step_s_median: number;
  tokens_per_step: number;
  tokens_per_s: number;
  /** Per rank: peak bytes as ARCHITECTURE.md defines them. CUDA: the caching allocator's peak
   *  reserved bytes plus the measured context and communication buffers; CPU: peak RSS. */
  peak_bytes: number[];
  /** Per rank (CUDA): the caching allocator's peak reserved bytes alone. */
  peak_reserved_bytes: number[];
  /** Per rank: peak allocated bytes (CUDA; the figure torch.cuda.max_memory_allocated gives). */
  peak_allocated_bytes: number[];
  /** Per rank: the layers it streams (fetch_params) and the most of them it held at once. */
  streamed: { layers: number; peak_resident: number }[];
  /** Per rank: disk-tier group reads from files and reads served from host memory. */
  disk: { reads: number; hits: number }[];
  params: number;
  mfu: number | null;
  devices: string[];
  trace?: MeasuredTrace;
}

/** A run that failed (a rank died or raised): the CLI maps it to exit code 1. */
export class ExecuteError extends Error {
  override name = 'ExecuteError';
}

const here = dirname(fileURLToPath(import.meta.url));

/** Binds `port` (0: any) on the loopback and closes it again: the port, or 0 when it was taken. */
function tryPort(port: number): Promise<number> {
  return new Promise((res) => {
    const s = createServer();
    s.unref();
    s.on('error', () => res(0));
    s.listen(port, '127.0.0.1', () => {
      const a = s.address();
      const got = typeof a === 'object' && a ? a.port : 0;
      s.close(() => res(got));
    });
  });
}

/** A port for c10d's TCPStore: below Linux's ephemeral range (32768-60999), so that no outgoing
 *  connection takes it between this check and rank 0's listen (a port the kernel handed out as
 *  free once did: EADDRINUSE); any free port when none of 32 random tries there is free. */
export async function freePort(): Promise<number> {
  for (let i = 0; i < 32; i++) {
    const p = await tryPort(20000 + Math.floor(Math.random() * 12000));
    if (p) return p;
  }
  return tryPort(0);
}

/** A rank failed because the TCPStore's port was taken before rank 0 listened on it. */
export function isPortTaken(message: string): boolean {
  return /EADDRINUSE|address already in use/i.test(message);
}

/** Reads a rank's status file (native/src/runtime.cpp StatusFile): its current instruction. */
export function readStatus(path: string): { step: number; pc: number; op: string; mb: number; stage: number; state: number } | null {
  try {
    const b = readFileSync(path);
    if (b.length < 32 || b.readInt32LE(0) !== 0x6d6d6f63) return null;
    const op = OPCODES[b.readInt32LE(16)] ?? '?';
    return { step: b.readInt32LE(8), pc: b.readInt32LE(12), op, mb: b.readInt32LE(20), stage: b.readInt32LE(24), state: b.readInt32LE(28) };
  } catch {
    return null;
  }
}

function describeStatus(s: ReturnType<typeof readStatus>): string {
  if (!s) return 'before its first instruction';
  let d = `step ${s.step} pc ${s.pc} (${s.op}`;
  if (s.mb >= 0) d += ` mb ${s.mb}`;
  if (s.stage >= 0) d += ` stage ${s.stage}`;
  return d + ')';
}

function median(xs: number[]): number {
  if (xs.length === 0) return 0;
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

function summarise(plan: Plan, results: RankResult[], devs: string[], trace: boolean): ExecuteResult {
  const r0 = results[0]!;
  const steps = r0.stepsDone;
  const stepSec = r0.stepSec.map((_, i) => Math.max(...results.map((r) => r.stepSec[i] ?? 0)));
  const steady = stepSec.length >= 3 ? stepSec.slice(1) : stepSec;
  const med = median(steady);
  const tokens = plan.job.seq * plan.job.microBatchSize * plan.job.microBatches * plan.layout.dataParallel;
  const tps = med > 0 ? tokens / med : 0;
  const params = results.reduce((a, r) => a + r.paramCount, 0);
  const peak = peakFlops(devs);
  const mfu = peak && med > 0 ? flopsPerStep(plan) / med / peak : null;
  const out: ExecuteResult = {
    ranks: results.length, steps, stopped: results.some((r) => r.stopped), backend: r0.backend,
    losses: r0.losses, grad_norms: r0.gradNorms, step_s: stepSec, step_s_median: med, tokens_per_step: tokens,
    tokens_per_s: tps, peak_bytes: results.map((r) => r.peakBytes + r.overheadBytes), peak_reserved_bytes: results.map((r) => r.peakBytes), peak_allocated_bytes: results.map((r) => r.peakAllocBytes),
    streamed: results.map((r) => ({ layers: r.streamed.layers, peak_resident: r.streamed.peakResident })),
    disk: results.map((r) => ({ ...r.disk })), params, mfu, devices: devs,
  };
  if (trace) out.trace = measuredTrace(plan, results, devs, { tokens_per_s: tps, mfu, step_s: med });
  return out;
}

function deviceNames(plan: Plan, world: number, opts: RunOptions): string[] {
  const ids = Array.from({ length: world }, (_, r) => opts.device ?? ((plan.layout.rankDevice[r] ?? -1) < 0 ? 'cpu' : `cuda:${plan.layout.rankDevice[r]}`));
  if (!ids.some((d) => d.startsWith('cuda'))) return ids;
  let cuda: { index: number; name: string }[] = [];
  try { cuda = devices().cuda; } catch { /* names unknown */ }
  return ids.map((d) => (d.startsWith('cuda:') ? `${d} ${cuda.find((c) => c.index === Number(d.slice(5)))?.name ?? ''}`.trim() : d));
}

/** Refuses a plan whose CUDA ranks this build or machine cannot run, before starting any rank. */
function checkDevices(plan: Plan, world: number, opts: RunOptions): void {
  const want = Array.from({ length: world }, (_, r) => opts.device ?? ((plan.layout.rankDevice[r] ?? -1) < 0 ? 'cpu' : `cuda:${plan.layout.rankDevice[r]}`));
  const cuda = want.filter((d) => d.startsWith('cuda'));
  if (cuda.length === 0) return;
  const b = buildInfo();
  if (!b.cuda) {
    throw new ExecuteError(`the plan places rank ${want.findIndex((d) => d.startsWith('cuda'))} on ${cuda[0]}, but the native addon is built against libtorch ${b.torchVersion} without CUDA; on a GPU machine rebuild it against the torch package: export CMAKE_PREFIX_PATH=$(python3 -c "import torch; print(torch.utils.cmake_prefix_path)") && npm run build:native -- --force`);
  }
  const n = devices().cuda.length;
  want.forEach((d, r) => {
    if (d.startsWith('cuda:') && Number(d.slice(5)) >= n) throw new ExecuteError(`rank ${r} is placed on ${d}, but this machine has ${n} GPU${n === 1 ? '' : 's'}`);
  });
  if (world > 1 && !b.nccl) throw new ExecuteError('the native addon was built without NCCL (nccl.h not found): CUDA ranks cannot communicate; set NCCL_INCLUDE_DIR and run `npm run build:native -- --force`');
}

/** Runs `plan` on this machine: one child process per rank (or in-process under torchrun). */
/** Before anything starts: a plan whose own prediction exceeds its per-GPU cap cannot fit (the
 *  executor enforces the cap through the caching allocator, so it would fail mid-run). Names the
 *  rank, its stages and the bytes. */
export function checkMemoryCap(plan: Plan): void {
  const cap = plan.job.gpuMemCapBytes;
  const peaks = plan.prediction?.peak_bytes;
  if (cap === null || cap === undefined || !peaks) return;
  const GiB = 2 ** 30;
  peaks.forEach((peak, rank) => {
    if (!(peak > cap)) return;
    const stages = plan.layout.stages.flatMap((s, i) => (s.rank === rank % plan.layout.pipelineRanks ? [`${i} (layers ${s.layers[0]}-${s.layers[1] - 1})`] : []));
    throw new InputError(
      `plan: rank ${rank} (stage ${stages.join(', ')}) is predicted to peak at ${(peak / GiB).toFixed(2)} GiB (${peak} bytes), over the plan's ` +
      `job.gpuMemCapBytes of ${(cap / GiB).toFixed(2)} GiB (${cap} bytes) by ${((peak - cap) / GiB).toFixed(2)} GiB: re-plan under the cap ` +
      `(mmoc plan --gpu-mem ${(cap / GiB).toFixed(0)}GiB), or raise the cap`);
  });
}

export async function execute(plan: Plan, opts: RunOptions, hooks: ExecuteHooks = {}): Promise<ExecuteResult> {
  const world = worldSize(plan);
  const steps = opts.steps ?? plan.job.steps;
  const devs = deviceNames(plan, world, opts);
  if (process.env.RANK !== undefined && process.env.WORLD_SIZE !== undefined && !process.env.MMOC_NO_TORCHRUN) {
    return runUnderTorchrun(plan, opts, hooks, devs);
  }
  // validate every rank's config here, once, so that bad input is one InputError (exit code 2)
  for (let rank = 0; rank < world; rank++) {
    validateRankConfig(rankConfig(plan, { rank, world, masterAddr: '127.0.0.1', masterPort: 1, statusPath: '' }, { ...opts, steps }));
  }
  checkDevices(plan, world, opts);
  checkMemoryCap(plan);
  const dir = mkdtempSync(join(tmpdir(), 'mmoc-exec-'));
  let port = hooks.firstPort ?? await freePort();
  const workerPath = existsSync(join(here, 'worker.ts')) ? join(here, 'worker.ts') : join(here, 'worker.js');
  // tsx by absolute URL: the user's working directory may be anywhere (no node_modules there).
  const execArgv = workerPath.endsWith('.ts') ? ['--import', import.meta.resolve('tsx')] : [];
  const children: ChildProcess[] = [];
  let stopRequests = 0;

  const onSigint = () => {
    stopRequests++;
    if (stopRequests === 1) {
      process.stderr.write('\nmmoc: stopping at the end of the current step (Ctrl-C again to kill)\n');
      for (const c of children) if (c.connected) c.send({ type: 'stop' } satisfies ToWorker);
    } else {
      for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    }
  };

  type Failure = { rank: number; message: string; died: boolean };
  /** Starts every rank with the TCPStore on `port` and waits until all have exited. */
  const runRanks = (port: number) => new Promise<{ results: (RankResult | null)[]; failures: Failure[] }>((resolve) => {
    children.length = 0;
    const results: (RankResult | null)[] = Array(world).fill(null);
    const failures: Failure[] = [];
    const exited = new Set<number>();
    let killTimer: NodeJS.Timeout | null = null;
    const finishIfDone = () => {
      if (exited.size === world) {
        if (killTimer) clearTimeout(killTimer);
        resolve({ results, failures });
      }
    };
    const failed = () => {
      if (killTimer) return;
      // give the other ranks a moment to report their own view, then make sure none is left
      killTimer = setTimeout(() => {
        for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
      }, hooks.graceMs ?? 2000);
    };
    for (let rank = 0; rank < world; rank++) {
      const rv: Rendezvous = { rank, world, masterAddr: '127.0.0.1', masterPort: port, statusPath: join(dir, `rank${rank}.status`) };
      const child = fork(workerPath, [], {
        execArgv,
        env: { TORCH_NCCL_ENABLE_MONITORING: '0', ...process.env, RANK: String(rank), WORLD_SIZE: String(world), LOCAL_RANK: String(rank), MASTER_ADDR: '127.0.0.1', MASTER_PORT: String(port), MMOC_WORKER: '1' },
        stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
        serialization: 'advanced',
      });
      children.push(child);
      if (child.pid !== undefined) hooks.onSpawn?.(rank, child.pid);
      child.on('message', (m: FromWorker) => {
        if (m.type === 'progress' && m.rank === 0) hooks.onProgress?.({ ...m.p, steps });
        else if (m.type === 'result') results[m.rank] = m.result;
        else if (m.type === 'error') {
          failures.push({ rank: m.rank, message: m.message, died: false });
          failed();
        }
      });
      child.on('exit', (code, signal) => {
        exited.add(rank);
        if (results[rank] === null && !failures.some((f) => f.rank === rank)) {
          const st = readStatus(rv.statusPath);
          const how = signal ? `was killed (${signal})` : `exited with code ${code}`;
          failures.push({ rank, message: `rank ${rank} ${how} at ${describeStatus(st)}`, died: true });
          failed();
        }
        finishIfDone();
      });
      child.send({ type: 'start', plan, rv, opts: { ...opts, steps } } satisfies ToWorker);
    }
  });

  process.on('SIGINT', onSigint);
  let run: Awaited<ReturnType<typeof runRanks>>;
  try {
    run = await runRanks(port);
    // the store's port taken before rank 0 listened (nothing ran yet): again on another port
    for (let attempt = 2; attempt <= 3 && stopRequests === 0 && run.failures.some((f) => isPortTaken(f.message)); attempt++) {
      const next = await freePort();
      process.stderr.write(`mmoc: port ${port} was taken before rank 0 could listen on it: starting the ranks again on port ${next}\n`);
      port = next;
      run = await runRanks(port);
    }
  } finally {
    process.off('SIGINT', onSigint);
    rmSync(dir, { recursive: true, force: true });
  }
  const { results, failures } = run;
  if (failures.length) {
    // the root cause: a rank that died first; else the first error reported
    const dead = failures.find((f) => f.died) ?? failures[0]!;
    const others = failures.filter((f) => f !== dead && !f.died).map((f) => `  ${f.message.split('\n')[0]}`);
    throw new ExecuteError(
      dead.died
        ? `${dead.message}; the other ranks stopped${others.length ? ':\n' + others.join('\n') : ''}`
        : dead.message + (others.length ? '\n' + others.join('\n') : ''),
    );
  }
  if (opts.saveDir) writeCheckpointIndex(plan, opts.saveDir, plan.layout.pipelineRanks, opts.weightsDir);
  return summarise(plan, results as RankResult[], devs, opts.trace ?? false);
}

/** Reads the JSON header of a safetensors file (names, dtypes, shapes, offsets). */
export function safetensorsHeader(path: string): Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }> {
  const fd = openSync(path, 'r');
  try {
    const len = Buffer.alloc(8);
    readSync(fd, len, 0, 8, 0);
    const n = Number(len.readBigUInt64LE(0));
    const h = Buffer.alloc(n);
    readSync(fd, h, 0, n, 8);
    const j = JSON.parse(h.toString('utf8'));
    delete j.__metadata__;
    return j;
  } finally {
    closeSync(fd);
  }
}

/** Files of a Hugging Face model folder besides its weights and config that a fine-tuned copy keeps:
 *  the tokenizer and the generation defaults. */
export const HF_SIDE_FILES = ['tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json', 'tokenizer.model', 'generation_config.json'];

/** After every rank wrote its shard: the HF index (sharded) and config.json, so that the folder
 *  loads back with --weights (and in transformers); the tokenizer and generation files of the
 *  folder the weights came from (`from`), so that it is a whole model folder. */
function writeCheckpointIndex(plan: Plan, dir: string, shards: number, from?: string): void {
  for (const f of from ? HF_SIDE_FILES : []) {
    if (!existsSync(join(from!, f))) continue;
    copyFileSync(join(from!, f), join(dir, `${f}.tmp`));
    renameSync(join(dir, `${f}.tmp`), join(dir, f));
  }
  const m = plan.model;
  const config = {
    architectures: ['LlamaForCausalLM'], model_type: 'llama', hidden_size: m.hidden_size, intermediate_size: m.intermediate_size,
    num_hidden_layers: m.num_hidden_layers, num_attention_heads: m.num_attention_heads, num_key_value_heads: m.num_key_value_heads,
    head_dim: m.head_dim, vocab_size: m.vocab_size, max_position_embeddings: m.max_position_embeddings, rms_norm_eps: m.rms_norm_eps,
    rope_theta: m.rope_theta, tie_word_embeddings: m.tie_word_embeddings, hidden_act: 'silu', torch_dtype: 'float32',
  };
  writeFileSync(join(dir, 'config.json'), JSON.stringify(config, null, 2) + '\n');
  if (shards === 1) return;
  const weightMap: Record<string, string> = {};
  let total = 0;
  for (let r = 0; r < shards; r++) {
    const file = `model-${String(r + 1).padStart(5, '0')}-of-${String(shards).padStart(5, '0')}.safetensors`;
    for (const [name, t] of Object.entries(safetensorsHeader(join(dir, file)))) {
      weightMap[name] = file;
      total += t.data_offsets[1] - t.data_offsets[0];
    }
  }
  writeFileSync(join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: total }, weight_map: weightMap }, null, 2) + '\n');
}

/** One rank of a torchrun (or cluster) launch: this process is the rank. */
async function runUnderTorchrun(plan: Plan, opts: RunOptions, hooks: ExecuteHooks, devs: string[]): Promise<ExecuteResult> {
  const rank = Number(process.env.RANK), world = Number(process.env.WORLD_SIZE);
  const local = Number(process.env.LOCAL_RANK ?? rank);
  const rv: Rendezvous = {
    rank, world, masterAddr: process.env.MASTER_ADDR ?? '127.0.0.1', masterPort: Number(process.env.MASTER_PORT ?? 29500), statusPath: '',
  };
  const cfg = rankConfig(plan, rv, opts);
  if (cfg.device.startsWith('cuda') && plan.layout.rankDevice[rank] === undefined) cfg.device = `cuda:${local}`;
  const onSigint = () => requestStop();
  process.on('SIGINT', onSigint);
  try {
    const r = await runRank(cfg, (p) => hooks.onProgress?.({ ...p, steps: cfg.steps }));
    return { ...summarise(plan, [r], [devs[rank] ?? cfg.device], opts.trace ?? false), ranks: world, rank };
  } catch (e) {
    throw new ExecuteError((e as Error).message);
  } finally {
    process.off('SIGINT', onSigint);
  }
}
