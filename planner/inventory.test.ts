import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildInventory, countParams } from './inventory.ts';
import { llama2_7b, llama2_13b, llama32_1b, tiny } from './test-models.ts';

test('LLaMA-2-7B has 6,738,415,616 parameters', () => {
  assert.equal(countParams(llama2_7b), 6_738_415_616);
  assert.equal(buildInventory(llama2_7b, 'bf16-mixed', 1, 1024).params, 6_738_415_616);
});

test('LLaMA-2-13B has 13,015,864,320 parameters', () => {
  assert.equal(countParams(llama2_13b), 13_015_864_320);
});

test('tied embeddings are counted once for llama3.2-1b (1,235,814,400 parameters)', () => {
  const inv = buildInventory(llama32_1b, 'bf16-mixed', 1, 1024);
  assert.equal(inv.params, 1_235_814_400);
  const head = inv.layers[inv.layers.length - 1]!;
  assert.equal(head.params, 2048); // only the final norm
  assert.equal(head.usesParams, 2048 + 128256 * 2048);
});

test('the inventory has embedding, L decoder layers and the head, indexed as in program.ts', () => {
  const inv = buildInventory(tiny, 'fp32', 2, 32);
  assert.equal(inv.layers.length, 6);
  assert.deepEqual(inv.layers.map((l) => l.kind), ['embedding', 'decoder', 'decoder', 'decoder', 'decoder', 'head']);
  assert.deepEqual(inv.layers.map((l) => l.index), [0, 1, 2, 3, 4, 5]);
});

test('matmul FLOPs are 2*m*n*k forward and twice that backward', () => {
  const inv = buildInventory(llama2_7b, 'bf16-mixed', 1, 1024);
  const d = inv.layers[1]!;
  const T = 1024, h = 4096, I = 11008;
  const proj = 2 * T * (4 * h * h + 3 * h * I);
  const attn = 2 * 2 * 32 * 1024 * 1024 * 128; // QK^T and PV, 32 heads
  assert.equal(d.fwdFlops, proj + attn);
  assert.equal(d.bwdFlops, 2 * (proj + attn));
  const q = d.gemms.filter((g) => g.name.startsWith('q_proj'));
  assert.deepEqual(q.map((g) => [g.name, g.m, g.n, g.k]), [
    ['q_proj.fwd', T, h, h], ['q_proj.dgrad', T, h, h], ['q_proj.wgrad', h, h, T],
  ]);
  const head = inv.layers[33]!;
  assert.equal(head.fwdFlops, 2 * T * h * 32000);
  assert.equal(inv.layers[0]!.fwdFlops, 0);
});

test('the attention term grows with the square of the sequence', () => {
  const a = buildInventory(llama2_7b, 'bf16-mixed', 1, 1024).layers[1]!;
  const b = buildInventory(llama2_7b, 'bf16-mixed', 1, 2048).layers[1]!;
  const attn = (l: typeof a) => l.gemms.filter((g) => g.name.startsWith('attn') && g.pass === 'fwd').reduce((s, g) => s + g.flops, 0);
  assert.equal(attn(b), 4 * attn(a));
});

test('grouped-query attention shrinks the k and v projections', () => {
  const d = buildInventory(llama32_1b, 'bf16-mixed', 1, 128).layers[1]!;
  const k = d.gemms.find((g) => g.name === 'k_proj.fwd')!;
  assert.equal(k.n, 8 * 64);
  const s = d.gemms.find((g) => g.name === 'attn.scores.fwd')!;
  assert.equal(s.batch, 32); // one score product per query head
});

test('kept activations of a 7B decoder layer at bf16, mbs 1, seq 1024, listed tensor by tensor', () => {
  const T = 1024, h = 4096, I = 11008;
  const d = buildInventory(llama2_7b, 'bf16-mixed', 1, 1024).layers[1]!;
  // x, norm1 out, q|k (2), the q|k|v GEMM output kept by the view v (3), attn out, residual, norm2
  // out (10 T*h) + gate|up, silu(gate), the product (4 T*I) in bf16; two rstd (T fp32) and the
  // attention log-sum-exp (32 * seq fp32). Measured on an H200 (bench/gpu/act-probe.py, torch
  // 2.11): 166.1 KiB a token with the input.
  assert.equal(d.keptBytes, (10 * T * h + 4 * T * I) * 2 + 2 * T * 4 + 32 * 1024 * 4);
  assert.ok(Math.abs(d.keptBytes / T / 1024 - 166.1) < 0.1);
  const g = buildInventory(llama32_1b, 'bf16-mixed', 1, 1024).layers[1]!;
  assert.ok(Math.abs(g.keptBytes / T / 1024 - 97.1) < 0.1, `${g.keptBytes / T / 1024} KiB a token (measured 97.1)`);
  const f = buildInventory(llama2_7b, 'fp32', 1, 1024).layers[1]!;
  assert.equal(f.keptBytes, (10 * T * h + 4 * T * I) * 4 + 2 * T * 4 + 32 * 1024 * 4);
  assert.equal(d.inputBytes, T * h * 2);
});

test('grouped-query attention keeps k and v expanded to the query heads, not the q|k|v output', () => {
  const m = { ...llama2_7b, num_key_value_heads: 8 };
  const T = 1024, h = 4096, I = 11008, kvd = 8 * 128;
  const d = buildInventory(m, 'bf16-mixed', 1, 1024).layers[1]!;
  // x, norm1 out, attn out, residual, norm2 out (5 T*h) + q|k (T*(h+kvd)) + expanded k, v (2 T*h)
  assert.equal(d.keptBytes, (5 * T * h + T * (h + kvd) + 2 * T * h + 4 * T * I) * 2 + 2 * T * 4 + 32 * 1024 * 4);
});
