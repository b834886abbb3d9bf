// Assembles a Plan (plan-types.ts) from a layout, policies and a schedule: generates the program
// and fills defaults. The search and the CLI build every plan through here.
import type { ModelConfig } from './model-config.ts';
import { PLAN_VERSION, type Job, type Layout, type OptimizerSettings, type Plan, type Precision, type ScheduleName, type StagePolicy } from './plan-types.ts';
import type { StageSpec } from './program.ts';
import { getInventory, type Inventory } from './inventory.ts';
import { diskBuffersFor, generateProgram } from './program-gen.ts';

export function defaultOptimizer(name: 'adamw' | 'sgd' = 'adamw'): OptimizerSettings {
  return {
    name, lr: name === 'adamw' ? 2e-5 : 1e-3, betas: name === 'adamw' ? [0.9, 0.999] : [0.9, 0], eps: 1e-8,
    weightDecay: 0, gradClip: null, warmupSteps: 0, lrSchedule: 'constant', minLrRatio: 0.1, delayedUpdate: false,
  };
}

export interface PlanSpec {
  hardware: string;
  model: ModelConfig;
  precision: Precision;
  optimizer: OptimizerSettings;
  job: Job;
  schedule: ScheduleName;
  /** Layer ranges of the stages in model order (pipelineRanks * virtualStages of them). */
  stageLayers: [number, number][];
  pipelineRanks: number;
  dataParallel: number;
  rankDevice: number[];
  policy: StagePolicy[];
  diskPaths?: string[];
  diskConcurrency?: number;
  inventory?: Inventory;
}

export function buildPlan(p: PlanSpec): Plan {
  const N = p.pipelineRanks;
  const v = p.stageLayers.length / N;
  const stages: StageSpec[] = p.stageLayers.map((layers, i) => ({ layers: [layers[0], layers[1]], rank: i % N }));
  const layout: Layout = { pipelineRanks: N, dataParallel: p.dataParallel, virtualStages: v, stages, rankDevice: p.rankDevice };
  const inv = p.inventory ?? getInventory(p.model, p.precision, p.job.microBatchSize, p.job.seq, p.job.lossChunkTokens ?? 0);
  const diskPaths = p.diskPaths ?? [];
  const conc = p.diskConcurrency ?? 2;
  const program = generateProgram({
    inventory: inv, layout, policy: p.policy, schedule: p.schedule, microBatches: p.job.microBatches,
    diskPaths: diskPaths.length, diskBuffers: diskBuffersFor(diskPaths.length, conc),
    gradClip: p.optimizer.gradClip !== null, delayedUpdate: p.optimizer.delayedUpdate,
  });
  const plan: Plan = {
    version: PLAN_VERSION, hardware: p.hardware, model: p.model, precision: p.precision, optimizer: p.optimizer,
    job: p.job, layout, schedule: p.schedule, policy: { stages: p.policy, diskPaths, diskConcurrency: conc }, program,
  };
  return plan;
}
