import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { parseHardwareProfile, ProfileError } from './index.ts';
import type { HardwareProfile } from './index.ts';

const dir = new URL('../configs/hardware/', import.meta.url);
const load = (name: string) => JSON.parse(readFileSync(new URL(name, dir), 'utf8'));

test('every bundled hardware profile validates and says where its figures come from', () => {
  const names = readdirSync(dir).filter((f) => f.endsWith('.json')).sort();
  assert.deepEqual(names, ['cpu.json', 'h200x2.json', 'h200x4.json', 'h200x8.json', 'l20x4.json']);
  for (const f of names) {
    const p = parseHardwareProfile(load(f), `configs/hardware/${f}`);
    assert.equal(`${p.id}.json`, f, 'id matches the file name');
    assert.ok(p.provenance.date.startsWith('2026-11-21'));
  }
  assert.equal(load('h200x2.json').provenance.source, 'HARDWARE.md');
  assert.equal(load('h200x4.json').provenance.source, 'HARDWARE.md');
  assert.equal(load('h200x8.json').provenance.source, 'datasheet');
  assert.equal(load('l20x4.json').provenance.source, 'datasheet');
  assert.equal(load('cpu.json').provenance.source, 'estimate');
});

test('the bundled profiles carry the measured HARDWARE.md figures', () => {
  const p4: HardwareProfile = load('h200x4.json');
  assert.equal(p4.links.h2d[0].GBps, 55.5);
  assert.equal(p4.links.host_groups[0].h2d_GBps, 158);
  assert.deepEqual(p4.links.host_groups[0].gpus, [0, 1, 2, 3]);
  assert.deepEqual(p4.compute.gemm!.bf16!.find((x) => x.m === 8192), { m: 8192, n: 8192, k: 8192, tflops: 791 });
  assert.equal(p4.cpu.optimizers[0].points.at(-1)!.params_per_s, 6.2e9);
  assert.equal(p4.disks[0].read_GBps, 1.5);
  const p2: HardwareProfile = load('h200x2.json');
  assert.equal(p2.links.duplex![0].GBps, 99);
  assert.equal(p2.cpu.memory_GBps, 154);
  const l20: HardwareProfile = load('l20x4.json');
  assert.deepEqual(l20.links.host_groups.map((g) => g.gpus), [[0, 1], [2, 3]]);
  assert.equal(l20.compute.peak_tflops.bf16, 119.5);
});

function broken(mut: (p: any) => void): unknown {
  const p = structuredClone(load('h200x4.json'));
  mut(p);
  return p;
}

test('errors name the file and the field', () => {
  const cases: [(p: any) => void, RegExp][] = [
    [(p) => { p.links.h2d[0].GBps = 0; }, /^configs\/hardware\/x\.json: links\.h2d\[0\]\.GBps must be positive$/],
    [(p) => { p.links.d2h[2].GBps = 'fast'; }, /links\.d2h\[2\]\.GBps must be a finite number/],
    [(p) => { p.links.h2d.pop(); }, /links\.h2d has no entry for GPU 3/],
    [(p) => { p.links.host_groups[0].gpus = [0, 9]; }, /links\.host_groups\[0\]\.gpus\[1\] \(9\) must name a GPU below gpus\.count \(4\)/],
    [(p) => { p.version = 2; }, /x\.json: version must be 1/],
    [(p) => { delete p.provenance.source; }, /provenance\.source must be a non-empty string/],
    [(p) => { p.provenance.source = 'guess'; }, /provenance\.source must be one of/],
    [(p) => { p.compute.gemm.bf16[0] = { m: 1, n: 1, k: 1 }; }, /compute\.gemm\.bf16\[0\] needs us or tflops/],
    [(p) => { p.compute.gemm_efficiency.bf16 = 1.5; }, /compute\.gemm_efficiency\.bf16 must be in \(0, 1\]/],
    [(p) => { p.cpu.optimizers[0].points[1].threads = 8; }, /cpu\.optimizers\[0\]\.points\[1\]\.threads must increase/],
    [(p) => { p.disks[0].concurrency = 1.5; }, /disks\[0\]\.concurrency must be an integer/],
    [(p) => { p.overheads.allocator_overhead_fraction = 1; }, /overheads\.allocator_overhead_fraction must be below 1/],
    [(p) => { p.gpus.count = 0; }, /gpus\.count must be positive/],
  ];
  for (const [mut, re] of cases) {
    assert.throws(() => parseHardwareProfile(broken(mut), 'configs/hardware/x.json'), (e: unknown) => {
      assert.ok(e instanceof ProfileError);
      assert.match(e.message, re);
      assert.ok(e.message.startsWith('configs/hardware/x.json: '));
      return true;
    });
  }
  assert.throws(() => parseHardwareProfile([], 'a.json'), /a\.json: \(profile\) must be an object/);
});
