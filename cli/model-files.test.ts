import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { bundledModelNames, resolveModel } from './model-files.ts';
import { InputError } from '../planner/errors.ts';

test('every bundled model config is valid', () => {
  const names = bundledModelNames();
  for (const want of ['llama2-7b', 'llama2-13b', 'llama2-70b', 'llama3.2-1b', 'llama3.2-3b', 'tiny']) {
    assert.ok(names.includes(want), `configs/models/${want}.json is missing`);
  }
  for (const n of names) assert.equal(resolveModel(n).config.name, n);
});

test('the GQA models have fewer kv heads than attention heads', () => {
  for (const n of ['llama3.2-1b', 'llama3.2-3b', 'llama2-70b']) {
    const c = resolveModel(n).config;
    assert.ok(c.num_key_value_heads < c.num_attention_heads, n);
  }
});

test('a Hugging Face folder resolves through its config.json', () => {
  const dir = mkdtempSync(join(tmpdir(), 'mmoc-hf-'));
  writeFileSync(join(dir, 'config.json'), JSON.stringify({ model_type: 'llama', hidden_size: 32, intermediate_size: 64, num_hidden_layers: 2, num_attention_heads: 4, vocab_size: 100 }));
  const m = resolveModel(dir);
  assert.equal(m.folder, dir);
  assert.equal(m.config.hidden_size, 32);
});

test('a folder without config.json, a bad JSON file and an unknown name are named in the error', () => {
  const dir = mkdtempSync(join(tmpdir(), 'mmoc-hf-'));
  mkdirSync(join(dir, 'empty'));
  assert.throws(() => resolveModel(join(dir, 'empty')), (e: Error) => e instanceof InputError && /has no config\.json/.test(e.message));
  writeFileSync(join(dir, 'bad.json'), '{ "hidden_size": 4096, ');
  assert.throws(() => resolveModel(join(dir, 'bad.json')), (e: Error) => e instanceof InputError && /bad\.json: model config is not valid JSON/.test(e.message));
  assert.throws(() => resolveModel('llama9-1t'), (e: Error) => e instanceof InputError && /"llama9-1t" is neither a bundled model \(.*llama2-7b.*\)/.test(e.message));
});

test('mmoc memory answers six distinct bad config files with exit code 2 and the precise message', async () => {
  const { spawnSync } = await import('node:child_process');
  const { repoRoot } = await import('./model-files.ts');
  const dir = mkdtempSync(join(tmpdir(), 'mmoc-badcfg-'));
  const good = { model_type: 'llama', hidden_size: 4096, intermediate_size: 11008, num_hidden_layers: 32, num_attention_heads: 32, num_key_value_heads: 32, vocab_size: 32000, rope_theta: 10000 };
  const cases: [string, string, string][] = [
    ['kv.json', JSON.stringify({ ...good, num_key_value_heads: 5 }), 'kv.json: num_key_value_heads (5) must divide num_attention_heads (32)'],
    ['missing.json', JSON.stringify({ ...good, hidden_size: undefined }), 'missing.json: hidden_size is required'],
    ['type.json', JSON.stringify({ ...good, vocab_size: '32000' }), 'type.json: vocab_size ("32000") must be a number'],
    ['broken.json', '{"hidden_size": 4096,', 'broken.json: model config is not valid JSON'],
    ['gpt2.json', JSON.stringify({ ...good, model_type: 'gpt2' }), 'gpt2.json: model_type "gpt2" is not a LLaMA-family model'],
    ['theta.json', JSON.stringify({ ...good, rope_parameters: { rope_theta: 500000 } }), 'theta.json: rope_theta (10000) disagrees with rope_parameters.rope_theta (500000)'],
  ];
  for (const [name, text, msg] of cases) {
    writeFileSync(join(dir, name), text);
    const r = spawnSync(process.execPath, [join(repoRoot, 'bin', 'mmoc.js'), 'memory', '--model', join(dir, name), '--json'], { encoding: 'utf8', cwd: dir });
    assert.equal(r.status, 2, `${name}: ${r.stderr}`);
    assert.ok(r.stderr.includes(msg), `${name}: expected "${msg}" in ${r.stderr}`);
    assert.equal(r.stdout, '', `${name}: nothing on stdout`);
  }
});
