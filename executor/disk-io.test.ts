// The disk tier's I/O (native/src/disk_io.cpp, issue 6): O_DIRECT with aligned staging and a
// buffered fallback, chunks moved by a bounded pool of threads per path, temporary name + rename,
// a chunked checksum. Optimizer states on disk must give the losses of host memory whatever the
// concurrency, chunking or I/O mode; files are 4096-aligned; nothing temporary is left behind.
import { test } from 'node:test';
import { mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import assert from 'node:assert/strict';
import { buildPlan, defaultOptimizer } from '../planner/plan-build.ts';
import { defaultPolicy, evenPartition } from '../planner/memory.ts';
import { parsePlan } from '../planner/plan-schema.ts';
import { tiny } from '../planner/test-models.ts';
import type { Plan, StagePolicy } from '../planner/plan-types.ts';
import { benchDiskIO, nativeUnavailableReason, validateRankConfig } from './native.ts';
import { rankConfig } from './rank-config.ts';
import { execute } from './launch.ts';

const reason = nativeUnavailableReason();
const skip = reason ? `native addon not built (${reason.split(';')[0]})` : false;

type Pol = (p: StagePolicy) => StagePolicy;
const hostOpt: Pol = (p) => ({ ...p, master: { gpu: 0, cpu: 1, disk: 0 }, optState: { gpu: 0, cpu: 1, disk: 0 } });
const onDisk: Pol = (p) => ({ ...p, master: { gpu: 0, cpu: 0, disk: 1 }, optState: { gpu: 0, cpu: 0, disk: 1 } });
function plan(pol: Pol, o: { diskPaths?: string[]; diskConcurrency?: number; steps?: number } = {}): Plan {
  const parts = evenPartition(tiny.num_hidden_layers, 2);
  const p = buildPlan({
    hardware: 'cpu', model: tiny, precision: 'fp32',
    optimizer: { ...defaultOptimizer(), lr: 1e-3, gradClip: null, warmupSteps: 1, lrSchedule: 'cosine', delayedUpdate: false },
    job: { seq: 32, microBatchSize: 2, microBatches: 4, steps: o.steps ?? 4, gpuMemCapBytes: null, seed: 7 },
    schedule: '1f1b', stageLayers: parts, pipelineRanks: 2, dataParallel: 1, rankDevice: [-1, -1],
    policy: parts.map(() => pol(defaultPolicy(false))),
    ...(o.diskPaths ? { diskPaths: o.diskPaths } : {}),
    ...(o.diskConcurrency ? { diskConcurrency: o.diskConcurrency } : {}),
  });
  return parsePlan(JSON.parse(JSON.stringify(p)), 'plan.json');
}
const run = (p: Plan) => execute(p, { threads: 1, timeoutSec: 30 }, {});
const relDiff = (a: number, b: number) => Math.abs(a - b) / Math.max(Math.abs(a), Math.abs(b), 1e-12);
async function withEnv<T>(env: Record<string, string>, fn: () => Promise<T>): Promise<T> {
  const old = Object.fromEntries(Object.keys(env).map((k) => [k, process.env[k]]));
  Object.assign(process.env, env);
  try {
    return await fn();
  } finally {
    for (const [k, v] of Object.entries(old)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
}
function checkFiles(dirs: string[]): void {
  const files = dirs.map((d) => readdirSync(d));
  assert.ok(files.every((f) => f.length > 0), `every directory holds state files: ${JSON.stringify(files)}`);
  assert.ok(files.flat().every((f) => f.endsWith('.state')), `no temporary files left: ${JSON.stringify(files)}`);
  for (const [i, d] of dirs.entries()) {
    for (const f of files[i]!) {
      const size = statSync(join(d, f)).size;
      assert.ok(size > 4096 && size % 4096 === 0, `${f}: ${size} bytes, a multiple of 4096 beyond the header`);
    }
  }
}

test('optimizer states on disk through direct I/O, two paths, concurrency 1 and 3, 4 KiB chunks (many per group): the losses of host memory; 4096-aligned files, no .tmp left', { skip, timeout: 240_000 }, async () => {
  const ref = await run(plan(hostOpt));
  for (const conc of [1, 3]) {
    const dirs = [mkdtempSync(join(tmpdir(), 'mmoc-dio-a-')), mkdtempSync(join(tmpdir(), 'mmoc-dio-b-'))];
    try {
      const p = plan(onDisk, { diskPaths: dirs, diskConcurrency: conc });
      assert.equal(p.policy.diskConcurrency, conc);
      const r = await withEnv({ MMOC_DISK_CHUNK_KIB: '4' }, () => run(p));
      for (let i = 0; i < 4; i++) assert.ok(relDiff(r.losses[i]!, ref.losses[i]!) < 1e-6, `concurrency ${conc}: step ${i} loss ${r.losses[i]} vs host memory ${ref.losses[i]}`);
      checkFiles(dirs);
    } finally {
      for (const d of dirs) rmSync(d, { recursive: true, force: true });
    }
  }
});

test('buffered fallback (MMOC_DISK_NO_DIRECT=1, as where the filesystem refuses O_DIRECT): the same losses; a corrupted file is named with its layer', { skip, timeout: 240_000 }, async () => {
  const ref = await run(plan(hostOpt));
  const dirs = [mkdtempSync(join(tmpdir(), 'mmoc-dio-buf-a-')), mkdtempSync(join(tmpdir(), 'mmoc-dio-buf-b-'))];
  try {
    const p = plan(onDisk, { diskPaths: dirs, diskConcurrency: 2 });
    const r = await withEnv({ MMOC_DISK_NO_DIRECT: '1', MMOC_DISK_CHUNK_KIB: '8' }, () => run(p));
    for (let i = 0; i < 4; i++) assert.ok(relDiff(r.losses[i]!, ref.losses[i]!) < 1e-6, `buffered: step ${i} loss ${r.losses[i]} vs host memory ${ref.losses[i]}`);
    checkFiles(dirs);
    const layer = (p.program.ranks[1]!.find((i) => i.op === 'disk_write') as { layer: number }).layer;
    await withEnv({ MMOC_DISK_NO_DIRECT: '1', MMOC_FAULT_CORRUPT_STATE: String(layer) }, () =>
      assert.rejects(run(p), (e: Error) => {
        assert.match(e.message, new RegExp(`mmoc-rank1-layer${layer}\\.state: checksum mismatch in the optimizer state of layer ${layer} \\(corrupted file\\)`));
        return true;
      }));
  } finally {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  }
});

test('benchDiskIO: unaligned group sizes round-trip over two paths in both I/O modes (O_DIRECT off when forced); arguments validated', { skip, timeout: 120_000 }, async () => {
  const dirs = [mkdtempSync(join(tmpdir(), 'mmoc-dio-bench-a-')), mkdtempSync(join(tmpdir(), 'mmoc-dio-bench-b-'))];
  try {
    for (const forced of [false, true]) {
      const b = await withEnv({ MMOC_DISK_CHUNK_KIB: '256', ...(forced ? { MMOC_DISK_NO_DIRECT: '1' } : {}) }, async () => benchDiskIO(dirs, 3 * 2 ** 20 + 123, 5, 3));
      assert.equal(b.bytes, 5 * (3 * 2 ** 20 + 123));
      assert.ok(b.writeGBps > 0 && b.readGBps > 0, JSON.stringify(b));
      assert.equal(b.direct.length, 2);
      if (forced) assert.deepEqual(b.direct, [false, false]);
      assert.deepEqual(dirs.map((d) => readdirSync(d)), [[], []], 'the bench removes its files');
    }
    assert.throws(() => benchDiskIO([], 1, 1, 1), /paths must be a non-empty list/);
    assert.throws(() => benchDiskIO(dirs, 1, 1, 0), /concurrency must be a positive integer, got 0/);
    assert.throws(() => benchDiskIO([join(dirs[0]!, 'missing')], 4096, 1, 1), /missing\/mmoc-bench-.*\.tmp: cannot create \(disk tier, layer 0\).*policy\.diskPaths/);
  } finally {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  }
});

test('policy.diskConcurrency reaches the rank config (default 2) and is validated with an exact message', () => {
  const rv = { rank: 0, world: 2, masterAddr: '127.0.0.1', masterPort: 1, statusPath: '' };
  const dirs = ['/nonexistent-a', '/nonexistent-b'];
  assert.equal(rankConfig(plan(onDisk, { diskPaths: dirs }), rv, {}).diskConcurrency, 2);
  const p = plan(onDisk, { diskPaths: dirs, diskConcurrency: 3 });
  assert.equal(rankConfig(p, rv, {}).diskConcurrency, 3);
  for (const bad of [0, 1.5, 65]) {
    assert.throws(() => validateRankConfig({ ...rankConfig(p, rv, {}), diskConcurrency: bad }), new RegExp(`policy\\.diskConcurrency: ${bad} must be an integer in 1\\.\\.64`));
  }
});
