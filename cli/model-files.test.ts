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
