import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { readFileSync } from 'node:fs';
import {
  attentionTime_us, cpuOptimizerTime_us, diskTime_us, elementwiseTime_us, gemmTime_us, hostTransferTime_us, parseHardwareProfile,
} from './index.ts';
import type { HardwareProfile } from './index.ts';

const load = (f: string) => parseHardwareProfile(JSON.parse(readFileSync(new URL(`../configs/hardware/${f}`, import.meta.url), 'utf8')), f);
const h200 = load('h200x4.json');

function custom(): HardwareProfile {
  const p = structuredClone(h200);
  p.compute.peak_tflops = { bf16: 1000 };
  p.compute.gemm_efficiency = { bf16: 0.5 };
  p.compute.memory_GBps = 1e9; // memory never binds here
  p.compute.gemm = { bf16: [{ m: 1024, n: 1024, k: 1024, us: 10 }, { m: 4096, n: 4096, k: 4096, tflops: 800 }] };
  p.compute.attention = { bf16: [{ batch: 1, heads: 8, kv_heads: 8, seq: 1024, head_dim: 128, fwd_us: 100, bwd_us: 300 }] };
  return p;
}

test('a measured GEMM shape returns its measured time', () => {
  const p = custom();
  const e = gemmTime_us(p, 0, 'bf16', 1024, 1024, 1024);
  assert.equal(e.us, 10);
  assert.equal(e.how, 'table');
  assert.equal(e.extrapolated, false);
  const f = gemmTime_us(p, 0, 'bf16', 4096, 4096, 4096);
  assert.ok(Math.abs(f.us - (2 * 4096 ** 3) / 800e6) < 1e-9);
});

test('compute.gemm_dispatch_us comes off measured table times, never below the FLOPs at peak', () => {
  const p = custom();
  p.compute.gemm_dispatch_us = 4;
  assert.equal(gemmTime_us(p, 0, 'bf16', 1024, 1024, 1024).us, 6);
  // a tflops point is a rate, not a timed call: no dispatch in it
  assert.ok(Math.abs(gemmTime_us(p, 0, 'bf16', 4096, 4096, 4096).us - (2 * 4096 ** 3) / 800e6) < 1e-9);
  p.compute.gemm_dispatch_us = 100;
  assert.ok(Math.abs(gemmTime_us(structuredClone(p), 0, 'bf16', 1024, 1024, 1024).us - (2 * 1024 ** 3) / 1000e6) < 1e-9);
});

test('between measured shapes the rate is interpolated in log-flops', () => {
  const p = custom();
  const rate1 = (2 * 1024 ** 3) / 10; // flop/us at 1024^3
  const rate2 = 800e6;
  // halfway in log(flops): 2048^3 sits exactly between 1024^3 and 4096^3
  const e = gemmTime_us(p, 0, 'bf16', 2048, 2048, 2048);
  assert.equal(e.how, 'interpolated');
  assert.equal(e.extrapolated, false);
  const rate = (2 * 2048 ** 3) / e.us;
  assert.ok(Math.abs(rate - (rate1 + rate2) / 2) / rate < 1e-9);
  fc.assert(fc.property(fc.integer({ min: 1024, max: 4096 }), (m) => {
    const r = (2 * m * 1024 * 1024) / gemmTime_us(p, 0, 'bf16', m, 1024, 1024).us;
    return r >= rate1 * (1 - 1e-9) && r <= rate2 * (1 + 1e-9);
  }));
});

test('outside the table it is a roofline with the profile efficiency, flagged as extrapolated', () => {
  const p = custom();
  const e = gemmTime_us(p, 0, 'bf16', 16384, 16384, 16384);
  assert.equal(e.how, 'roofline');
  assert.equal(e.extrapolated, true);
  assert.ok(Math.abs(e.us - (2 * 16384 ** 3) / (1000e6 * 0.5)) < 1e-6);
  // memory-bound when bandwidth is low
  p.compute.memory_GBps = 1;
  const m = gemmTime_us(p, 0, 'bf16', 8, 8, 1 << 20);
  assert.equal(m.us, (8 * (1 << 20) * 2 + 8 * (1 << 20) * 2 + 64 * 2) / 1e3);
  // the bundled H200 profile: 8192^3 measured at 791 TFLOP/s
  const h = gemmTime_us(h200, 0, 'bf16', 8192, 8192, 8192);
  assert.equal(h.how, 'table');
  assert.ok(Math.abs(h.us - (2 * 8192 ** 3) / 791e6) < 1e-9);
});

test('attention: measured point, then roofline for unmeasured shapes; backward costs more than forward', () => {
  const p = custom();
  const s = { batch: 1, heads: 8, kv_heads: 8, seq: 1024, head_dim: 128 };
  assert.equal(attentionTime_us(p, 0, 'bf16', s, 'fwd').us, 100);
  assert.equal(attentionTime_us(p, 0, 'bf16', s, 'bwd').us, 300);
  const big = attentionTime_us(p, 0, 'bf16', { ...s, seq: 8192 }, 'fwd');
  assert.equal(big.extrapolated, true);
  const bigB = attentionTime_us(p, 0, 'bf16', { ...s, seq: 8192 }, 'bwd');
  assert.ok(bigB.us > 2 * big.us);
});

test('elementwise, host transfer, CPU optimizer and disk times', () => {
  assert.equal(elementwiseTime_us(h200, 0, 3.84e9).us, 1000);
  assert.equal(hostTransferTime_us(h200, 0, 'h2d', 55.5e9), 1e6 + 10);
  assert.equal(hostTransferTime_us(h200, 0, 'h2d', 21e9, true), 1e6 + 10);
  // curve: 16 -> 4.4e9, 32 -> 5.75e9, 64 -> 6.2e9 params/s; 24 threads interpolates
  assert.equal(cpuOptimizerTime_us(h200, 6.2e9, 64), 1e6);
  assert.equal(cpuOptimizerTime_us(h200, 6.2e9, 128), 1e6, 'flat beyond the last point');
  assert.ok(Math.abs(cpuOptimizerTime_us(h200, 5.075e9, 24) - 1e6) < 1e-3);
  assert.ok(Math.abs(cpuOptimizerTime_us(h200, 2.2e9, 8) - 1e6) < 1e-3, 'linear from zero below the first point');
  assert.equal(diskTime_us(h200, 0, 'read', 1.5e9), 1e6 + 100);
  assert.throws(() => diskTime_us(h200, 3, 'read', 1), /no disk path 3/);
});

test('a CPU-rank profile uses its own compute figures', () => {
  const cpu = load('cpu.json');
  const e = gemmTime_us(cpu, 0, 'fp32', 256, 256, 256);
  assert.equal(e.how, 'table');
  assert.ok(e.us > 100, 'a CPU is slow');
});
