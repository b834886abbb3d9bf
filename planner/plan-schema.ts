// Plan validator: checks a parsed plan.json against plan-types.ts (shape, through zod) and then
// across fields (stages cover the layers contiguously, ranks and devices valid, fractions add up
// to 1, placement rules, the program references valid stages/layers/micro-batches, every send has
// its receive on the peer, every micro-batch runs forward and backward once on every stage).
// Errors name the file and the field: `plan.json: layout.stages[2].layers: [10, 8] is empty`.
// Pure (no I/O); the CLI reads the file.
import { z } from 'zod';
import { InputError } from './errors.ts';
import { parseModelConfig } from './model-config.ts';
import { PLAN_VERSION, type Plan } from './plan-types.ts';
import type { Instr } from './program.ts';
import { policyProblems } from './memory.ts';

const int = (min: number) => z.number({ error: 'must be a number' }).int('must be an integer').min(min, min === 0 ? 'must be zero or positive' : `must be at least ${min}`);
const posInt = int(1);
const frac = z.number({ error: 'must be a number' }).min(0, 'must be between 0 and 1').max(1, 'must be between 0 and 1');
const fractions = z.strictObject({ gpu: frac, cpu: frac, disk: frac });

const stagePolicy = z.strictObject({
  params: fractions,
  grads: fractions,
  master: fractions,
  optState: fractions,
  activations: fractions,
  recompute: z.boolean({ error: 'must be true or false' }),
  recomputeUnit: z.enum(['stage', 'layer'], { error: 'must be "stage" or "layer"' }).optional(),
  prefetchDepth: posInt,
});

const mb = int(0), stage = int(0), peer = int(0), layer = int(0);
const instr = z.discriminatedUnion('op', [
  z.strictObject({ op: z.literal('forward'), mb, stage }),
  z.strictObject({ op: z.literal('backward'), mb, stage }),
  z.strictObject({ op: z.literal('send_act'), mb, stage, peer }),
  z.strictObject({ op: z.literal('recv_act'), mb, stage, peer }),
  z.strictObject({ op: z.literal('send_grad'), mb, stage, peer }),
  z.strictObject({ op: z.literal('recv_grad'), mb, stage, peer }),
  z.strictObject({ op: z.literal('fetch_params'), layer }),
  z.strictObject({ op: z.literal('release_params'), layer }),
  z.strictObject({ op: z.literal('offload_grads'), layer }),
  z.strictObject({ op: z.literal('allreduce_grads'), layer }),
  z.strictObject({ op: z.literal('offload_act'), mb, stage }),
  z.strictObject({ op: z.literal('reload_act'), mb, stage }),
  z.strictObject({ op: z.literal('grad_norm') }),
  z.strictObject({
    op: z.literal('optimizer_step'), layer, tier: z.enum(['gpu', 'cpu'], { error: 'must be "gpu" or "cpu"' }),
    fraction: z.number({ error: 'must be a number' }).gt(0, 'must be in (0, 1]').max(1, 'must be in (0, 1]').optional(),
  }),
  z.strictObject({ op: z.literal('upload_params'), layer }),
  z.strictObject({ op: z.literal('disk_read'), layer, path: int(0) }),
  z.strictObject({ op: z.literal('disk_write'), layer, path: int(0) }),
  z.strictObject({ op: z.literal('barrier') }),
]);

const planSchema = z.strictObject({
  version: z.literal(PLAN_VERSION, { error: `must be ${PLAN_VERSION}` }),
  hardware: z.string({ error: 'must be a string' }).min(1, 'must name a hardware profile'),
  model: z.record(z.string(), z.unknown(), { error: 'must be an object (a model config)' }),
  precision: z.enum(['bf16-mixed', 'fp32', 'bf16'], { error: 'must be one of bf16-mixed, fp32, bf16' }),
  optimizer: z.strictObject({
    name: z.enum(['adamw', 'sgd'], { error: 'must be "adamw" or "sgd"' }),
    lr: z.number({ error: 'must be a number' }).positive('must be positive'),
    betas: z.tuple([frac, frac], { error: 'must be two numbers between 0 and 1' }),
    eps: z.number({ error: 'must be a number' }).positive('must be positive'),
    weightDecay: z.number({ error: 'must be a number' }).min(0, 'must be zero or positive'),
    gradClip: z.number({ error: 'must be a number or null' }).positive('must be positive').nullable(),
    warmupSteps: int(0),
    lrSchedule: z.enum(['cosine', 'constant'], { error: 'must be "cosine" or "constant"' }),
    minLrRatio: frac,
    delayedUpdate: z.boolean({ error: 'must be true or false' }),
  }),
  job: z.strictObject({
    seq: posInt,
    microBatchSize: posInt,
    microBatches: posInt,
    steps: posInt,
    gpuMemCapBytes: z.number({ error: 'must be a number of bytes or null' }).positive('must be positive').nullable(),
    seed: int(0),
    lossChunkTokens: posInt.optional(),
  }),
  layout: z.strictObject({
    pipelineRanks: posInt,
    dataParallel: posInt,
    virtualStages: posInt,
    stages: z.array(z.strictObject({ layers: z.tuple([int(0), int(0)], { error: 'must be [lo, hi]' }), rank: int(0) }), { error: 'must be a list' }).min(1, 'must list at least one stage'),
    rankDevice: z.array(int(-1), { error: 'must be a list' }),
  }),
  schedule: z.enum(['gpipe', '1f1b', 'interleaved-1f1b'], { error: 'must be one of gpipe, 1f1b, interleaved-1f1b' }),
  policy: z.strictObject({
    stages: z.array(stagePolicy, { error: 'must be a list' }),
    diskPaths: z.array(z.string({ error: 'must be a string' }).min(1, 'must be a non-empty path'), { error: 'must be a list' }),
    diskConcurrency: posInt.optional(),
    diskAlternate: z.boolean({ error: 'must be true or false' }).optional(),
  }),
  program: z.strictObject({ ranks: z.array(z.array(instr, { error: 'must be a list of instructions' }), { error: 'must be a list' }) }),
  prediction: z.looseObject({
    step_s: z.number({ error: 'must be a number' }),
    tokens_per_s: z.number({ error: 'must be a number' }),
    peak_bytes: z.array(z.number({ error: 'must be a number' })),
  }).optional(),
});

function pathText(path: readonly PropertyKey[]): string {
  let s = '';
  for (const p of path) s += typeof p === 'number' ? `[${p}]` : (s ? '.' : '') + String(p);
  return s;
}

function valueAt(obj: unknown, path: readonly PropertyKey[]): unknown {
  let v = obj;
  for (const p of path) {
    if (v === null || typeof v !== 'object') return undefined;
    v = (v as Record<PropertyKey, unknown>)[p];
  }
  return v;
}

function show(v: unknown): string {
  const s = JSON.stringify(v);
  return s === undefined ? String(v) : s.length > 60 ? s.slice(0, 57) + '...' : s;
}

/** Validates a parsed plan. `source` (the file name) starts every message. Throws InputError. */
export function parsePlan(json: unknown, source: string): Plan {
  const fail = (field: string, msg: string): never => { throw new InputError(`${source}: ${field ? field + ': ' : ''}${msg}`); };
  if (json === null || typeof json !== 'object' || Array.isArray(json)) fail('', 'a plan must be a JSON object');
  const version = (json as Record<string, unknown>).version;
  if (version !== PLAN_VERSION) fail('version', `${show(version)} is not a plan version this mmoc reads (expected ${PLAN_VERSION})`);
  const r = planSchema.safeParse(json);
  if (!r.success) {
    // Prefer the most specific issue (deepest path).
    const issue = [...r.error.issues].sort((a, b) => b.path.length - a.path.length)[0]!;
    const field = pathText(issue.path);
    const value = valueAt(json, issue.path);
    if (issue.code === 'unrecognized_keys') fail(field, `unknown field${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((k) => `"${k}"`).join(', ')}`);
    if (issue.code === 'invalid_union' && 'discriminator' in issue) {
      fail(field, `${show(value)} is not an instruction (ops: ${(issue as unknown as { options: string[] }).options.join(', ')})`);
    }
    if (value === undefined) fail(field, 'is required');
    fail(field, `${show(value)} ${issue.message}`);
  }
  const plan = r.data as unknown as Plan;
  const model = parseModelConfig(plan.model, `${source}: model`, String((plan.model as { name?: unknown }).name ?? 'model'));
  plan.model = model;
  crossCheck(plan, fail);
  return plan;
}

function crossCheck(plan: Plan, fail: (field: string, msg: string) => never): void {
  const L = plan.model.num_hidden_layers, nLayers = L + 2;
  const { layout, job, policy, program } = plan;
  const N = layout.pipelineRanks, D = layout.dataParallel, v = layout.virtualStages, K = layout.stages.length;
  const M = job.microBatches;
  if (job.seq > plan.model.max_position_embeddings) fail('job.seq', `${job.seq} exceeds the model's max_position_embeddings (${plan.model.max_position_embeddings})`);
  if (K !== N * v) fail('layout.stages', `has ${K} stages; pipelineRanks (${N}) x virtualStages (${v}) = ${N * v}`);
  if (plan.schedule === 'interleaved-1f1b') {
    if (v < 2) fail('layout.virtualStages', `interleaved-1f1b needs at least 2 virtual stages per rank (got ${v})`);
    if (M % N !== 0) fail('job.microBatches', `interleaved-1f1b needs micro-batches (${M}) to be a multiple of pipelineRanks (${N})`);
  } else if (v !== 1) fail('layout.virtualStages', `${plan.schedule} runs one stage per rank (got ${v}); use interleaved-1f1b`);
  let expectLo = 0;
  layout.stages.forEach((s, i) => {
    const [lo, hi] = s.layers;
    const f = `layout.stages[${i}].layers`;
    if (hi <= lo) fail(f, `[${lo}, ${hi}] is empty`);
    if (lo !== expectLo) fail(f, `[${lo}, ${hi}] must start at layer ${expectLo} (stages cover layers 0..${nLayers - 1} contiguously, in order)`);
    if (hi > nLayers) fail(f, `[${lo}, ${hi}] goes past the last layer (${nLayers - 1}: the head of a ${L}-layer model)`);
    if (s.rank !== i % N) fail(`layout.stages[${i}].rank`, `${s.rank} must be ${i % N} (rank r holds stages r, r+${N}, ...)`);
    expectLo = hi;
  });
  if (expectLo !== nLayers) fail('layout.stages', `cover layers 0..${expectLo - 1} but the model has layers 0..${nLayers - 1}`);
  if (layout.rankDevice.length !== N * D) fail('layout.rankDevice', `has ${layout.rankDevice.length} entries; pipelineRanks x dataParallel = ${N * D}`);
  const seen = new Map<number, number>();
  layout.rankDevice.forEach((d, r) => {
    if (d >= 0 && seen.has(d)) fail(`layout.rankDevice[${r}]`, `device ${d} is already used by rank ${seen.get(d)}`);
    seen.set(d, r);
  });
  if (policy.stages.length !== K) fail('policy.stages', `has ${policy.stages.length} entries; layout has ${K} stages`);
  policy.stages.forEach((p, i) => {
    for (const k of ['params', 'grads', 'master', 'optState', 'activations'] as const) {
      const f = p[k], sum = f.gpu + f.cpu + f.disk;
      if (Math.abs(sum - 1) > 1e-6) fail(`policy.stages[${i}].${k}`, `gpu ${f.gpu} + cpu ${f.cpu} + disk ${f.disk} = ${+sum.toFixed(6)}, must add up to 1`);
    }
    const pr = policyProblems(p, plan.precision, D)[0];
    if (pr) fail(pr.field === 'dataParallel' ? 'layout.dataParallel' : `policy.stages[${i}].${pr.field}`, pr.message);
    if ((p.optState.disk > 0 || p.master.disk > 0) && policy.diskPaths.length === 0) fail(`policy.stages[${i}].optState`, 'puts state on disk but policy.diskPaths is empty');
  });
  if (program.ranks.length !== N * D) fail('program.ranks', `has ${program.ranks.length} rank programs; pipelineRanks x dataParallel = ${N * D}`);
  checkProgram(plan, fail);
}

function stageOfLayer(plan: Plan): number[] {
  const out: number[] = [];
  plan.layout.stages.forEach((s, i) => { for (let l = s.layers[0]; l < s.layers[1]; l++) out[l] = i; });
  return out;
}

function checkProgram(plan: Plan, fail: (field: string, msg: string) => never): void {
  const { layout, job, program } = plan;
  const N = layout.pipelineRanks, K = layout.stages.length, M = job.microBatches, R = N * layout.dataParallel;
  const layerStage = stageOfLayer(plan);
  const nLayers = plan.model.num_hidden_layers + 2;
  // p2p: key "kind mb fromStage src dst" -> count (sends +1, receives -1).
  const pending = new Map<string, { n: number; where: string }>();
  const fwd = new Map<string, number>(), bwd = new Map<string, number>();
  for (let r = 0; r < R; r++) {
    const pr = r % N, base = r - pr;
    const ins = program.ranks[r]!;
    for (let pc = 0; pc < ins.length; pc++) {
      const x = ins[pc]! as Instr;
      const where = `program.ranks[${r}][${pc}]`;
      if ('mb' in x && x.mb >= M) fail(`${where}.mb`, `${x.mb} is not a micro-batch (job.microBatches is ${M})`);
      if ('stage' in x) {
        if (x.stage >= K) fail(`${where}.stage`, `${x.stage} is not a stage (layout has ${K})`);
        if (layout.stages[x.stage]!.rank !== pr) fail(`${where}.stage`, `stage ${x.stage} runs on pipeline rank ${layout.stages[x.stage]!.rank}, not on rank ${r} (pipeline rank ${pr})`);
      }
      if ('layer' in x) {
        if (x.layer >= nLayers) fail(`${where}.layer`, `${x.layer} is not a layer (the model has 0..${nLayers - 1})`);
        const st = layerStage[x.layer]!;
        if (layout.stages[st]!.rank !== pr) fail(`${where}.layer`, `layer ${x.layer} belongs to stage ${st} on pipeline rank ${layout.stages[st]!.rank}, not to rank ${r}`);
      }
      if ('path' in x && x.path >= plan.policy.diskPaths.length) fail(`${where}.path`, `${x.path} is not a disk path (policy.diskPaths has ${plan.policy.diskPaths.length})`);
      if ('peer' in x) {
        if (x.peer >= R) fail(`${where}.peer`, `${x.peer} is not a rank (there are ${R})`);
        const target = x.op === 'send_act' ? x.stage + 1 : x.op === 'recv_act' || x.op === 'send_grad' ? x.stage - 1 : x.stage + 1;
        if (target < 0 || target >= K) fail(where, `${x.op} of stage ${x.stage} has no ${target < 0 ? 'previous' : 'next'} stage`);
        const want = base + layout.stages[target]!.rank;
        if (x.peer !== want) fail(`${where}.peer`, `${x.peer} must be ${want}, the rank of stage ${target}`);
        // Normalise to the transfer: activations from stage s to s+1, gradients from s to s-1.
        const key = x.op === 'send_act' ? `act ${x.mb} ${x.stage} ${r} ${x.peer}`
          : x.op === 'recv_act' ? `act ${x.mb} ${x.stage - 1} ${x.peer} ${r}`
          : x.op === 'send_grad' ? `grad ${x.mb} ${x.stage} ${r} ${x.peer}`
          : `grad ${x.mb} ${x.stage + 1} ${x.peer} ${r}`;
        const e = pending.get(key) ?? { n: 0, where };
        e.n += x.op.startsWith('send') ? 1 : -1;
        pending.set(key, e);
      }
      if (x.op === 'forward') fwd.set(`${r} ${x.mb} ${x.stage}`, (fwd.get(`${r} ${x.mb} ${x.stage}`) ?? 0) + 1);
      if (x.op === 'backward') {
        const k = `${r} ${x.mb} ${x.stage}`;
        if (!fwd.has(k)) fail(where, `backward of micro-batch ${x.mb} on stage ${x.stage} comes before its forward`);
        bwd.set(k, (bwd.get(k) ?? 0) + 1);
      }
    }
  }
  for (const [key, e] of pending) {
    if (e.n === 0) continue;
    const [kind, m, s, src, dst] = key.split(' ');
    const to = kind === 'act' ? Number(s) + 1 : Number(s) - 1;
    const what = `${kind === 'act' ? 'activations' : 'gradients'} of micro-batch ${m} from stage ${s} (rank ${src}) to stage ${to} (rank ${dst})`;
    fail(e.where, e.n > 0 ? `send of ${what} has no matching receive` : `receive of ${what} has no matching send`);
  }
  for (let r = 0; r < R; r++) {
    const pr = r % N;
    for (let s = 0; s < K; s++) {
      if (layout.stages[s]!.rank !== pr) continue;
      for (let m = 0; m < M; m++) {
        const k = `${r} ${m} ${s}`;
        if ((fwd.get(k) ?? 0) !== 1) fail(`program.ranks[${r}]`, `runs forward of micro-batch ${m} on stage ${s} ${fwd.get(k) ?? 0} times (must be once)`);
        if ((bwd.get(k) ?? 0) !== 1) fail(`program.ranks[${r}]`, `runs backward of micro-batch ${m} on stage ${s} ${bwd.get(k) ?? 0} times (must be once)`);
      }
    }
  }
}
