// From a validated plan to the plain config of one rank (executor/native.ts RankConfig).
import type { Plan } from '../planner/plan-types.ts';
import { InputError } from '../planner/errors.ts';
import { diskAlternates, diskBuffersFor } from '../planner/program-gen.ts';
import type { RankConfig } from './native.ts';

export interface RunOptions {
  /** Steps to run (default: plan.job.steps). */
  steps?: number;
  /** Token file: raw little-endian uint16 tokens (uint32 when the vocabulary exceeds 65,536). */
  dataPath?: string;
  /** Hugging Face model folder with safetensors weights; default: seeded random init. */
  weightsDir?: string;
  /** Folder where each rank writes its weights (safetensors, HF names) at the end. */
  saveDir?: string;
  /** Record a measured trace. */
  trace?: boolean;
  /** c10d timeout (seconds): a rank waiting longer on a peer fails. */
  timeoutSec?: number;
  /** Intra-op threads per rank on CPU (0: torch's default). */
  threads?: number;
  /** Host memory for offloaded state, all ranks together (bytes); each rank gets its share. */
  hostMemBytes?: number;
  /** Device override per rank (tests); default plan.layout.rankDevice. */
  device?: string;
  /** Cap a plan that streams weights at its predicted peak (see gpuCapOf; default true). */
  autoCap?: boolean;
}

/** Headroom of the automatic cap over the plan's predicted peak. */
export const AUTO_CAP_HEADROOM = 0.15;

/** The per-GPU cap (bytes, 0: none) rank `rank` runs under: the plan's job.gpuMemCapBytes; else, for
 *  a plan that streams weights and carries its predicted peaks (mmoc plan writes them), that peak
 *  plus AUTO_CAP_HEADROOM. Without a cap the caching allocator keeps the blocks that streamed layers,
 *  gradients and activations free on the copy streams cached: a 7B plan with 2.8 GiB allocated held
 *  14 GiB (2x H200, bench/gpu/targets2-2026-11-22-h200x2); under a cap it frees them when it must
 *  (that run was 2% slower). */
export function gpuCapOf(plan: Plan, rank: number, opts: Pick<RunOptions, 'autoCap'> = {}): number {
  if (plan.job.gpuMemCapBytes) return plan.job.gpuMemCapBytes;
  if (opts.autoCap === false) return 0;
  const peak = plan.prediction?.peak_bytes?.[rank];
  const streams = plan.policy.stages.some((p) => p.params.gpu < 1);
  return streams && typeof peak === 'number' && peak > 0 ? Math.ceil(peak * (1 + AUTO_CAP_HEADROOM)) : 0;
}

export interface Rendezvous {
  rank: number;
  world: number;
  masterAddr: string;
  masterPort: number;
  statusPath: string;
}

export function worldSize(plan: Plan): number {
  return plan.layout.pipelineRanks * plan.layout.dataParallel;
}

export function rankConfig(plan: Plan, rv: Rendezvous, opts: RunOptions): RankConfig {
  if (plan.optimizer.name !== 'adamw') throw new InputError(`optimizer.name: "${plan.optimizer.name}": the executor runs AdamW for now`);
  const m = plan.model;
  const dev = opts.device ?? (() => {
    const d = plan.layout.rankDevice[rv.rank];
    return d === undefined || d < 0 ? 'cpu' : `cuda:${d}`;
  })();
  const steps = opts.steps ?? plan.job.steps;
  return {
    model: {
      hidden: m.hidden_size, inter: m.intermediate_size, layers: m.num_hidden_layers, heads: m.num_attention_heads,
      kvHeads: m.num_key_value_heads, headDim: m.head_dim, vocab: m.vocab_size, eps: m.rms_norm_eps, theta: m.rope_theta,
      tied: m.tie_word_embeddings,
      lossChunk: plan.job.lossChunkTokens ?? 0,
    },
    optim: {
      lr: plan.optimizer.lr, beta1: plan.optimizer.betas[0], beta2: plan.optimizer.betas[1], eps: plan.optimizer.eps,
      weightDecay: plan.optimizer.weightDecay, clip: plan.optimizer.gradClip ?? 0, warmup: plan.optimizer.warmupSteps,
      cosine: plan.optimizer.lrSchedule === 'cosine', minLrRatio: plan.optimizer.minLrRatio,
    },
    precision: plan.precision,
    seq: plan.job.seq,
    microBatchSize: plan.job.microBatchSize,
    microBatches: plan.job.microBatches,
    steps,
    totalSteps: Math.max(steps, plan.job.steps),
    seed: plan.job.seed,
    stages: plan.layout.stages.map((s, i) => ({ lo: s.layers[0], hi: s.layers[1], rank: s.rank, recompute: plan.policy.stages[i]?.recompute ?? false, recomputeLayers: plan.policy.stages[i]?.recomputeUnit === 'layer', prefetch: plan.policy.stages[i]?.prefetchDepth ?? 0 })),
    program: plan.program.ranks[rv.rank] ?? [],
    rank: rv.rank,
    world: rv.world,
    pipelineRanks: plan.layout.pipelineRanks,
    masterAddr: rv.masterAddr,
    masterPort: rv.masterPort,
    device: dev,
    dataPath: opts.dataPath ?? '',
    weightsDir: opts.weightsDir ?? '',
    saveDir: opts.saveDir ?? '',
    statusPath: rv.statusPath,
    diskPaths: (plan.policy.diskPaths ?? []).join('\n'),
    diskConcurrency: plan.policy.diskConcurrency ?? 2,
    diskAlternate: diskAlternates(plan),
    diskCacheGroups: diskBuffersFor(plan.policy.diskPaths.length, plan.policy.diskConcurrency ?? 2),
    trace: opts.trace ?? false,
    timeoutSec: opts.timeoutSec ?? 120,
    threads: opts.threads ?? 0,
    gpuMemCapBytes: gpuCapOf(plan, rv.rank, opts),
    hostMemBudgetBytes: opts.hostMemBytes ? Math.floor(opts.hostMemBytes / rv.world) : 0,
  };
}
