// `mmoc memory`: the VRAM calculator, a thin shell over planner/memory.ts (the same memory model
// the planner prunes with).
import type { Command } from 'commander';
import { Option } from 'commander';
import { action, emit, InputError, parseBytes, parsePositiveInt } from './common.ts';
import { resolveModel } from './model-files.ts';
import {
  defaultPolicy, evenPartition, memoryModel, policyProblems, type MemoryReport, type OptimizerName,
} from '../planner/memory.ts';
import type { Fractions, Precision, ScheduleName, StagePolicy } from '../planner/plan-types.ts';

const PRECISIONS: Precision[] = ['bf16-mixed', 'fp32', 'bf16'];
const OPTIMIZERS: OptimizerName[] = ['adamw', 'sgd'];
const SCHEDULES = ['gpipe', '1f1b', 'interleaved-1f1b'];

interface MemoryOpts {
  model?: string;
  precision: string;
  optimizer: string;
  mbs: string;
  seq?: string;
  recompute?: boolean | string;
  stages: string;
  dp: string;
  zero1?: boolean;
  schedule: string;
  virtualStages?: string;
  microbatches?: string;
  params: string;
  grads: string;
  optim: string;
  master?: string;
  activations: string;
  prefetch: string;
  overhead?: string;
  diskPaths: string;
  json?: boolean;
}

/** Parses `gpu`, `cpu`, `disk` or fractions such as `gpu:0.25,cpu:0.75`. */
export function parseTier(text: string, flag: string): Fractions {
  const t = text.trim().toLowerCase();
  if (t === 'gpu' || t === 'cpu' || t === 'disk') return { gpu: t === 'gpu' ? 1 : 0, cpu: t === 'cpu' ? 1 : 0, disk: t === 'disk' ? 1 : 0 };
  const f: Fractions = { gpu: 0, cpu: 0, disk: 0 };
  for (const part of t.split(',')) {
    const m = /^(gpu|cpu|disk)[:=]([0-9]*\.?[0-9]+)$/.exec(part.trim());
    if (!m) throw new InputError(`${flag}: "${text}" is not a tier (gpu, cpu, disk) or fractions such as gpu:0.25,cpu:0.75`);
    const v = parseFloat(m[2]!);
    if (v > 1) throw new InputError(`${flag}: ${m[1]} fraction ${m[2]} must be between 0 and 1`);
    f[m[1] as keyof Fractions] += v;
  }
  const sum = f.gpu + f.cpu + f.disk;
  if (Math.abs(sum - 1) > 1e-6) throw new InputError(`${flag}: fractions in "${text}" add up to ${+sum.toFixed(6)}, not 1`);
  return f;
}

function choice<T extends string>(text: string, allowed: readonly T[], flag: string): T {
  if (!(allowed as readonly string[]).includes(text)) throw new InputError(`${flag}: "${text}" must be one of ${allowed.join(', ')}`);
  return text as T;
}

export interface MemoryCliResult {
  model: string;
  params: number;
  job: {
    precision: Precision; optimizer: OptimizerName; mbs: number; seq: number; microBatches: number;
    schedule: ScheduleName; stages: number; virtualStages: number; dataParallel: number; zero1: boolean; recompute: boolean; recomputeUnit?: 'layer' | 'stage';
    layers: [number, number][]; policy: StagePolicy;
  };
  memory: MemoryReport;
}

export function runMemory(o: MemoryOpts): MemoryCliResult {
  if (!o.model) throw new InputError('--model is required (a bundled name such as llama2-7b, a config.json or a Hugging Face folder)');
  const src = resolveModel(o.model);
  const precision = choice(o.precision, PRECISIONS, '--precision');
  const optimizer = choice(o.optimizer, OPTIMIZERS, '--optimizer');
  const schedule = choice(o.schedule, SCHEDULES, '--schedule') as ScheduleName;
  const mbs = parsePositiveInt(o.mbs, '--mbs');
  const seq = o.seq === undefined ? Math.min(1024, src.config.max_position_embeddings) : parsePositiveInt(o.seq, '--seq');
  const K = parsePositiveInt(o.stages, '--stages');
  const D = parsePositiveInt(o.dp, '--dp');
  const M = o.microbatches === undefined ? K : parsePositiveInt(o.microbatches, '--microbatches');
  // Interleaved 1F1B: each rank holds V stages (rank r: stages r, r+K, ...), as the planner does.
  const V = o.virtualStages === undefined ? (schedule === 'interleaved-1f1b' ? 2 : 1) : parsePositiveInt(o.virtualStages, '--virtual-stages');
  if (schedule === 'interleaved-1f1b') {
    if (V < 2) throw new InputError('--virtual-stages: interleaved-1f1b needs at least 2 stages a rank');
    if (M % K !== 0) throw new InputError(`--microbatches: interleaved-1f1b needs the micro-batches (${M}) to be a multiple of the stages (${K})`);
  } else if (V !== 1) throw new InputError(`--virtual-stages: ${schedule} runs one stage a rank (use --schedule interleaved-1f1b)`);
  const prefetch = parsePositiveInt(o.prefetch, '--prefetch');
  const diskPaths = parsePositiveInt(o.diskPaths, '--disk-paths');
  const L = src.config.num_hidden_layers;
  if (K * V > L + 2) throw new InputError(`--stages: ${K * V} stages exceed the model's ${L + 2} layers (embedding, ${L} decoder layers, head)`);
  if (seq > src.config.max_position_embeddings) {
    throw new InputError(`--seq: ${seq} exceeds the model's max_position_embeddings (${src.config.max_position_embeddings})`);
  }
  const optState = parseTier(o.optim, '--optim');
  const master = o.master === undefined ? { ...optState } : parseTier(o.master, '--master');
  const unit = o.recompute === undefined || o.recompute === true ? 'layer' : o.recompute;
  if (unit !== 'layer' && unit !== 'stage') throw new InputError(`--recompute: "${unit}" must be "layer" or "stage" (or no value: layer)`);
  const policy: StagePolicy = {
    ...defaultPolicy(!!o.recompute),
    ...(o.recompute ? { recomputeUnit: unit } : {}),
    params: parseTier(o.params, '--params'),
    grads: parseTier(o.grads, '--grads'),
    optState,
    master,
    activations: parseTier(o.activations, '--activations'),
    prefetchDepth: prefetch,
  };
  const flagOf: Record<string, string> = {
    params: '--params', grads: '--grads', activations: '--activations', master: '--master', optState: '--optim',
    dataParallel: '--dp', prefetchDepth: '--prefetch',
  };
  const problems = policyProblems(policy, precision, D);
  if (problems.length) throw new InputError(`${flagOf[problems[0]!.field]}: ${problems[0]!.message}`);
  const parts = evenPartition(L, K * V);
  const overheadBytes = o.overhead === undefined ? 0 : parseBytes(o.overhead, '--overhead');
  const memory = memoryModel({
    model: src.config, precision, optimizer, mbs, seq, microBatches: M, schedule,
    stages: parts.map((layers, i) => ({ layers, rank: i % K })), pipelineRanks: K, dataParallel: D, zero1: !!o.zero1,
    policy: parts.map(() => policy), overheadBytes, diskPaths, diskConcurrency: 2,
  });
  return {
    model: src.config.name, params: memory.params,
    job: { precision, optimizer, mbs, seq, microBatches: M, schedule, stages: K, virtualStages: V, dataParallel: D, zero1: !!o.zero1, recompute: !!o.recompute, ...(o.recompute ? { recomputeUnit: unit } : {}), layers: parts, policy },
    memory,
  };
}

const GiB = 1024 ** 3;
export function gib(b: number): string {
  return (b / GiB).toFixed(2);
}

export function formatMemory(r: MemoryCliResult): string {
  const m = r.memory, j = r.job;
  const lines: string[] = [];
  lines.push(`${r.model}: ${r.params.toLocaleString('en-US')} parameters; ${j.precision}, ${j.optimizer}; micro-batch ${j.mbs} x ${j.seq} tokens, ` +
    `${j.microBatches} micro-batches, ${j.schedule}${j.virtualStages > 1 ? ` (${j.virtualStages} stages a rank)` : ''}; ${j.stages} stage(s) x ${j.dataParallel} data-parallel${j.zero1 ? ' (ZeRO-1)' : ''}; recompute ${j.recompute ? `on (by ${j.recomputeUnit ?? 'layer'})` : 'off'}`);
  lines.push('');
  const head = ['GiB per device', ...m.devices.map((d) => `rank ${d.rank} ${d.stages.map((s) => `[${j.layers[s]![0]},${j.layers[s]![1]})`).join('+')}`)];
  const rows: [string, (d: MemoryReport['devices'][number]) => number][] = [
    ['weights', (d) => d.weights],
    ['gradients', (d) => d.gradients],
    ['master weights', (d) => d.masterWeights],
    ['optimizer states', (d) => d.optimizerStates],
    ['activations / micro-batch', (d) => d.activations.perMicroBatch],
    ['activations in flight', (d) => d.activations.bytes],
    // gradients exist from a stage's first backward of the step: the peak may hold fewer of them
    ['  + gradients, at the peak', (d) => d.activations.withGradients],
    ['temporary buffers', (d) => d.temporary.total],
    ['  loss workspace', (d) => d.temporary.lossWorkspace],
    ['  recompute + backward', (d) => d.temporary.recompute + d.temporary.backward],
    ['  streamed params / grads', (d) => d.temporary.paramBuffers + d.temporary.gradBuffers + d.temporary.actStaging],
    ['  comm buffers', (d) => d.temporary.comm],
    ['context + allocator', (d) => d.overhead],
    ['total', (d) => d.total],
  ];
  const table: string[][] = [head];
  for (const [name, f] of rows) table.push([name, ...m.devices.map((d) => gib(f(d)))]);
  table.push(['micro-batches in flight', ...m.devices.map((d) => String(d.activations.inFlight))]);
  const widths = head.map((_, c) => Math.max(...table.map((row) => row[c]!.length)));
  for (const row of table) lines.push(row.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join('  '));
  lines.push('');
  const h = m.hostPerRank;
  const sum = (f: (x: (typeof h)[number]) => number) => h.reduce((s, x) => s + f(x), 0) * j.dataParallel;
  lines.push(`host (pinned), all ranks: ${gib(m.hostTotal)} GiB (weights ${gib(sum((x) => x.weights))}, gradients ${gib(sum((x) => x.gradients))}, ` +
    `master ${gib(sum((x) => x.masterWeights))}, optimizer ${gib(sum((x) => x.optimizerStates))}, activations ${gib(sum((x) => x.activations))}, disk staging ${gib(sum((x) => x.buffers))})`);
  lines.push(`disk: ${gib(m.disk.total)} GiB (master ${gib(m.disk.masterWeights)}, optimizer ${gib(m.disk.optimizerStates)})`);
  lines.push(`peak per device: ${gib(m.peak)} GiB`);
  return lines.join('\n');
}

export function register(program: Command): void {
  program
    .command('memory')
    .description('VRAM calculator: per-device memory of a full fine-tuning job (the memory model the planner uses)')
    .option('--model <name|folder|config.json>', 'bundled model name, Hugging Face folder or config.json')
    .addOption(new Option('--precision <p>', 'bf16-mixed (bf16 compute, fp32 master), fp32, or bf16').default('bf16-mixed'))
    .addOption(new Option('--optimizer <o>', 'adamw or sgd (with momentum)').default('adamw'))
    .option('--mbs <n>', 'sequences per micro-batch', '1')
    .option('--seq <n>', 'tokens per sequence (default 1024, or the model\'s maximum if smaller)')
    .option('--recompute [unit]', 'recompute activations in backward: by layer (default: keep every layer\'s input, recompute one layer at a time) or by stage (keep only the stage input)')
    .option('--stages <k>', 'pipeline stages (one per GPU; layers split evenly)', '1')
    .option('--dp <d>', 'data-parallel replicas', '1')
    .option('--zero1', 'shard master weights and optimizer states over data-parallel replicas')
    .option('--schedule <s>', 'gpipe, 1f1b or interleaved-1f1b', '1f1b')
    .option('--virtual-stages <v>', 'interleaved-1f1b: stages a rank holds (default 2); activations count the micro-batches in flight of that schedule')
    .option('--microbatches <m>', 'micro-batches per step (default: the number of stages)')
    .option('--params <tier>', 'where weights live: gpu, cpu (streamed), or fractions gpu:0.5,cpu:0.5', 'gpu')
    .option('--grads <tier>', 'where gradients accumulate: gpu or cpu', 'gpu')
    .option('--optim <tier>', 'where optimizer states live (and the update runs): gpu, cpu, disk, or fractions', 'gpu')
    .option('--master <tier>', 'where fp32 master weights live (default: with the optimizer states)')
    .option('--activations <tier>', 'where checkpointed stage inputs live: gpu or cpu (needs --recompute)', 'gpu')
    .option('--prefetch <n>', 'layers fetched ahead when weights stream', '1')
    .option('--disk-paths <n>', 'disk paths optimizer states are spread over', '1')
    .option('--overhead <bytes>', 'CUDA context and allocator overhead per device, e.g. 1GiB')
    .option('--json', 'print the breakdown as JSON (bytes)')
    .action(action((o: MemoryOpts) => {
      const r = runMemory(o);
      emit(o, r, formatMemory);
    }));
}
