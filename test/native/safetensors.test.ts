// safetensors I/O of the native addon: round trip, and errors that name the tensor and the file for
// truncated or mislabelled files. Skips (with the reason) only when the addon is not built.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { nativeUnavailableReason, readSafetensors, writeSafetensors, type StTensor } from '../../executor/native.ts';

const reason = nativeUnavailableReason();
const skip = reason ? `native addon not built (${reason.split(';')[0]})` : false;

function f32(shape: number[], seed: number): StTensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const a = new Float32Array(n).map((_, i) => Math.sin(i * 0.37 + seed));
  return { name: '', dtype: 'F32', shape, data: new Uint8Array(a.buffer) };
}

function sample(): StTensor[] {
  const bf = new Uint16Array([0x3f80, 0xbf80, 0x4000, 0x0000, 0x7f80, 0x3e80]); // 1, -1, 2, 0, inf, 0.25
  const half = new Uint16Array([0x3c00, 0xc000, 0x3800, 0x0001]);
  const i64 = new BigInt64Array([1n, -2n, 3n]);
  return [
    { ...f32([4, 8], 1), name: 'model.layers.0.self_attn.q_proj.weight' },
    { ...f32([8], 2), name: 'model.norm.weight' },
    { name: 'bf16.weight', dtype: 'BF16', shape: [2, 3], data: new Uint8Array(bf.buffer) },
    { name: 'f16.weight', dtype: 'F16', shape: [4], data: new Uint8Array(half.buffer) },
    { name: 'ids', dtype: 'I64', shape: [3], data: new Uint8Array(i64.buffer) },
    { name: 'empty', dtype: 'F32', shape: [0, 5], data: new Uint8Array(0) },
  ];
}

const byName = (ts: StTensor[]) => new Map(ts.map((t) => [t.name, t]));

test('safetensors round trip: write, read, write, read gives identical tensors and bytes', { skip }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'mmoc-st-'));
  try {
    const a = join(dir, 'a.safetensors'), b = join(dir, 'b.safetensors');
    writeSafetensors(a, sample());
    const first = readSafetensors(a);
    writeSafetensors(b, first);
    const second = readSafetensors(b);
    const want = byName(sample());
    assert.equal(first.length, want.size);
    for (const ts of [first, second]) {
      for (const t of ts) {
        const w = want.get(t.name)!;
        assert.ok(w, `unexpected tensor ${t.name}`);
        assert.equal(t.dtype, w.dtype);
        assert.deepEqual(t.shape, w.shape);
        assert.deepEqual(Buffer.from(t.data), Buffer.from(w.data), `${t.name} data`);
      }
    }
    // header: 8-byte aligned, little-endian length, JSON
    const raw = readFileSync(a);
    const n = Number(raw.readBigUInt64LE(0));
    assert.equal((8 + n) % 8, 0);
    const header = JSON.parse(raw.subarray(8, 8 + n).toString());
    assert.deepEqual(header['model.norm.weight'].shape, [8]);
    assert.deepEqual(readFileSync(a), readFileSync(b), 'a file written from what was read is byte-identical');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a truncated safetensors file gives an error naming the tensor and the file', { skip }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'mmoc-st-'));
  try {
    const p = join(dir, 'cut.safetensors');
    writeSafetensors(p, sample().slice(0, 2));
    truncateSync(p, statSync(p).size - 10);
    assert.throws(() => readSafetensors(p), (e: Error) => {
      assert.match(e.message, /cut\.safetensors: tensor 'model\.norm\.weight' needs bytes \[128, 160\) of the data section but the file holds only 150: the file is truncated/);
      assert.match(e.message, /^\[model\.cpp:\d+\] /, 'starts with the C++ file:line');
      assert.match((e as Error & { cppLocation?: string }).cppLocation ?? '', /^model\.cpp:\d+$/);
      return true;
    });
    // cut inside the header
    truncateSync(p, 20);
    assert.throws(() => readSafetensors(p), /cut\.safetensors: header length \d+ runs past the end of the file \(20 bytes\): the file is truncated/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a mislabelled safetensors file (dtype or shape that does not match its bytes) names the tensor and the file', { skip }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'mmoc-st-'));
  try {
    const p = join(dir, 'label.safetensors');
    writeSafetensors(p, sample().slice(0, 2));
    const raw = readFileSync(p);
    const n = Number(raw.readBigUInt64LE(0));
    const header = raw.subarray(8, 8 + n).toString();
    // relabel the F32 [4, 8] tensor as BF16 (half the bytes its offsets span), same header length
    const bad = header.replace('"dtype":"F32","shape":[4,8]', '"dtype":"BF16","shape":[4,8]').padEnd(n, ' ');
    assert.notEqual(bad, header);
    writeFileSync(p, Buffer.concat([raw.subarray(0, 8), Buffer.from(bad.slice(0, n)), raw.subarray(8 + n)]));
    assert.throws(() => readSafetensors(p), /label\.safetensors: tensor 'model\.layers\.0\.self_attn\.q_proj\.weight' is labelled BF16 \[4, 8\] \(64 bytes\) but its data_offsets span 128 bytes: the file is mislabelled or corrupt/);
    // an unknown dtype
    writeFileSync(p, Buffer.concat([raw.subarray(0, 8), Buffer.from(header.replace('"dtype":"F32","shape":[8]', '"dtype":"Q4","shape":[8]').padEnd(n, ' ').slice(0, n)), raw.subarray(8 + n)]));
    assert.throws(() => readSafetensors(p), /label\.safetensors: tensor 'model\.norm\.weight' has dtype "Q4", which mmoc does not read/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('writeSafetensors validates in TypeScript with exact messages', { skip }, () => {
  assert.throws(() => writeSafetensors('/tmp/x.safetensors', [{ name: 'w', dtype: 'F32', shape: [3], data: new Uint8Array(8) }]),
    { message: "writeSafetensors: tensor 'w': 8 bytes of data, but F32 [3] needs 12" });
  assert.throws(() => writeSafetensors('/tmp/x.safetensors', [{ name: 'w', dtype: 'Q8' as 'F32', shape: [1], data: new Uint8Array(1) }]),
    /writeSafetensors: tensor 'w': dtype "Q8" is not one of F32, F16, BF16/);
});
