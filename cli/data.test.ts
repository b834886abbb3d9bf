// `mmoc data` end to end: text in, a token file out that `mmoc execute --data` trains the bundled
// tiny model on (2 CPU ranks, real libtorch).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { tinyCpuPlan } from '../test/tiny-plan.ts';
import { nativeUnavailableReason } from '../executor/native.ts';
import { repoRoot } from './model-files.ts';

const reason = nativeUnavailableReason();
const skip = reason ? `native addon not built (${reason.split(';')[0]})` : false;
const mmoc = (...args: string[]) => spawnSync(process.execPath, [join(repoRoot, 'bin', 'mmoc.js'), ...args], { encoding: 'utf8', timeout: 120_000 });

test('mmoc data tokenizes the README with the tiny model\'s tokenizer, and mmoc execute trains on it', { skip, timeout: 180_000 }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'mmoc-data-cli-'));
  const out = join(dir, 'readme.bin');
  const r = mmoc('data', '--model', 'tiny', '--input', join(repoRoot, 'README.md'), '-o', out, '--json');
  assert.equal(r.status, 0, r.stderr);
  const res = JSON.parse(r.stdout);
  assert.equal(res.tokens, Buffer.byteLength(readFileSync(join(repoRoot, 'README.md'), 'utf8')));
  assert.equal(statSync(out).size, res.tokens * 2);
  assert.match(r.stderr, /tokenizing .* tok\/s/);
  const plan = tinyCpuPlan({ seq: 32, microBatchSize: 2, microBatches: 2, steps: 3 });
  writeFileSync(join(dir, 'plan.json'), JSON.stringify(plan));
  const ex = mmoc('execute', join(dir, 'plan.json'), '--steps', '3', '--data', out, '--json');
  assert.equal(ex.status, 0, ex.stderr);
  const run = JSON.parse(ex.stdout) as { losses: number[] };
  assert.equal(run.losses.length, 3);
  // English text, 256 byte tokens: an untrained model starts near ln 256 = 5.5
  for (const l of run.losses) assert.ok(Number.isFinite(l) && l > 3 && l < 7, `loss ${l}`);
});

test('mmoc data answers bad input with exit code 2 and names the flag or file', () => {
  const dir = mkdtempSync(join(tmpdir(), 'mmoc-data-cli-'));
  assert.equal(mmoc('data', '--model', 'tiny', '-o', join(dir, 'x.bin')).status, 2);
  const bad = join(dir, 'bad.jsonl');
  writeFileSync(bad, 'not json\n');
  const r = mmoc('data', '--model', 'tiny', '--input', bad, '-o', join(dir, 'x.bin'));
  assert.equal(r.status, 2);
  assert.match(r.stderr, /bad\.jsonl:1: not JSON/);
  const nt = mmoc('data', '--model', 'llama2-7b', '--input', bad, '-o', join(dir, 'x.bin'));
  assert.equal(nt.status, 2);
  assert.match(nt.stderr, /--tokenizer is required \(llama2-7b has no tokenizer.json beside it\)/);
});
