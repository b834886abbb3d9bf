// The plan: what `mmoc plan` writes, `mmoc simulate` re-predicts and `mmoc execute` runs.
// These are the TypeScript shapes; planner/plan-schema.ts validates a file against them with
// precise errors. Field names are the file's: a plan is a file a user can read, diff and edit.
import type { ModelConfig } from './model-config.ts';
import type { Program, StageSpec } from './program.ts';

export const PLAN_VERSION = 1;

/** Parts of a class of state per tier; the three add up to 1. */
export interface Fractions {
  gpu: number;
  cpu: number;
  disk: number;
}

export type Precision = 'bf16-mixed' | 'fp32' | 'bf16';
export type ScheduleName = 'gpipe' | '1f1b' | 'interleaved-1f1b';

export interface StagePolicy {
  /** Compute-precision weights. A GPU fraction under 1 means the stage streams weights in. */
  params: Fractions;
  grads: Fractions;
  /** fp32 master weights (bf16-mixed only). */
  master: Fractions;
  /** Optimizer states (AdamW m and v; SGD momentum). Where they live is where the update runs. */
  optState: Fractions;
  /** Stage inputs of checkpointed layers kept on GPU or offloaded to host. */
  activations: Fractions;
  /** Recompute the forward during backward instead of keeping its activations. */
  recompute: boolean;
  /** What recompute keeps (default 'stage'): 'stage' keeps the stage's input and recomputes the
   *  whole stage before its backward (every layer's activations live at once); 'layer' keeps every
   *  layer's input and recomputes one layer at a time right before that layer's backward (one
   *  layer's activations live; a streamed layer is fetched once for its recompute and backward). */
  recomputeUnit?: 'stage' | 'layer';
  /** Layers fetched ahead of use when parameters stream from host (>= 1). */
  prefetchDepth: number;
}

export interface OptimizerSettings {
  name: 'adamw' | 'sgd';
  lr: number;
  /** AdamW betas, or [momentum, 0] for SGD. */
  betas: [number, number];
  eps: number;
  weightDecay: number;
  /** Global gradient-norm clip, or null for none. */
  gradClip: number | null;
  warmupSteps: number;
  /** Learning-rate schedule after warm-up. */
  lrSchedule: 'cosine' | 'constant';
  minLrRatio: number;
  /** One-step-delayed update: step t applies the gradients of step t-1 (hides the CPU update). */
  delayedUpdate: boolean;
}

export interface Job {
  /** Tokens per sequence. */
  seq: number;
  /** Sequences per micro-batch. */
  microBatchSize: number;
  /** Micro-batches per step per data-parallel replica. */
  microBatches: number;
  /** Steps to run. */
  steps: number;
  /** Per-GPU memory cap in bytes, or null for the whole device. */
  gpuMemCapBytes: number | null;
  seed: number;
  /** Tokens a chunk of the head's logits: the loss and its backward run a chunk at a time (the
   *  logits of a micro-batch never exist at once; backward recomputes each chunk's). Absent: the
   *  whole micro-batch at once. */
  lossChunkTokens?: number;
}

export interface Layout {
  /** Ranks in one pipeline (N). */
  pipelineRanks: number;
  /** Data-parallel replicas of the whole pipeline. Total ranks = pipelineRanks * dataParallel;
   *  rank = replica * pipelineRanks + pipelineRank. */
  dataParallel: number;
  /** Virtual stages per pipeline rank (1 except for interleaved schedules). */
  virtualStages: number;
  /** pipelineRanks * virtualStages stages, in model order. */
  stages: StageSpec[];
  /** rank -> device index on its machine (GPU ordinal; -1 for CPU). */
  rankDevice: number[];
}

export interface Prediction {
  step_s: number;
  tokens_per_s: number;
  /** Per rank, peak bytes on its device. */
  peak_bytes: number[];
  /** Per rank, the breakdown of the peak by class. */
  peak_breakdown?: Record<string, number>[];
  host_bytes?: number;
  disk_bytes?: number;
  /** Resource that bounds the step. */
  bottleneck?: string;
}

export interface Plan {
  version: typeof PLAN_VERSION;
  /** The hardware profile the plan was made for (its `id`). */
  hardware: string;
  model: ModelConfig;
  precision: Precision;
  optimizer: OptimizerSettings;
  job: Job;
  layout: Layout;
  schedule: ScheduleName;
  /** One policy per stage, same order as layout.stages. */
  /** `diskConcurrency`: transfers in flight at once per disk path (default 2). `diskAlternate`:
   *  with the delayed update, the disk groups' order alternates each step so that the groups
   *  updated last stay staged in host memory for the next step (default true; planner/program.ts). */
  policy: { stages: StagePolicy[]; diskPaths: string[]; diskConcurrency?: number; diskAlternate?: boolean };
  program: Program;
  prediction?: Prediction;
}
