import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseModelConfig } from './model-config.ts';
import { InputError } from './errors.ts';

const base = {
  model_type: 'llama',
  hidden_size: 4096,
  intermediate_size: 11008,
  num_hidden_layers: 32,
  num_attention_heads: 32,
  num_key_value_heads: 32,
  vocab_size: 32000,
  max_position_embeddings: 4096,
  rms_norm_eps: 1e-5,
  rope_theta: 10000,
  tie_word_embeddings: false,
};
const src = 'configs/models/x.json';

function rejects(json: unknown, message: string): void {
  assert.throws(() => parseModelConfig(json, src), (e: unknown) => {
    assert.ok(e instanceof InputError, `expected InputError, got ${String(e)}`);
    assert.equal((e as Error).message, message);
    return true;
  });
}

test('a valid LLaMA-2-7B config parses with its fields and derived head_dim', () => {
  const c = parseModelConfig(base, src, 'llama2-7b');
  assert.equal(c.name, 'llama2-7b');
  assert.equal(c.head_dim, 128);
  assert.equal(c.num_key_value_heads, 32);
  assert.equal(c.rope_theta, 10000);
});

test('rope_theta is accepted inside rope_parameters', () => {
  const { rope_theta: _, ...rest } = base;
  const c = parseModelConfig({ ...rest, rope_parameters: { rope_type: 'default', rope_theta: 500000 } }, src);
  assert.equal(c.rope_theta, 500000);
});

test('num_key_value_heads defaults to num_attention_heads (multi-head attention)', () => {
  const { num_key_value_heads: _, ...rest } = base;
  assert.equal(parseModelConfig(rest, src).num_key_value_heads, 32);
});

test('bad input 1: kv heads that do not divide attention heads', () => {
  rejects({ ...base, num_key_value_heads: 5 }, 'configs/models/x.json: num_key_value_heads (5) must divide num_attention_heads (32)');
});

test('bad input 2: a missing required field', () => {
  const { hidden_size: _, ...rest } = base;
  rejects(rest, 'configs/models/x.json: hidden_size is required');
});

test('bad input 3: a field of the wrong type', () => {
  rejects({ ...base, vocab_size: '32000' }, 'configs/models/x.json: vocab_size ("32000") must be a number');
});

test('bad input 4: a non-integer layer count', () => {
  rejects({ ...base, num_hidden_layers: 31.5 }, 'configs/models/x.json: num_hidden_layers (31.5) must be an integer');
});

test('bad input 5: a negative norm epsilon', () => {
  rejects({ ...base, rms_norm_eps: -1 }, 'configs/models/x.json: rms_norm_eps (-1) must be positive');
});

test('bad input 6: heads that do not divide hidden size', () => {
  rejects({ ...base, num_attention_heads: 30, num_key_value_heads: 30 }, 'configs/models/x.json: num_attention_heads (30) must divide hidden_size (4096) when head_dim is not given');
});

test('bad input 7: a model that is not LLaMA-family', () => {
  rejects({ ...base, model_type: 'gpt2' }, 'configs/models/x.json: model_type "gpt2" is not a LLaMA-family model (expected "llama")');
});

test('bad input 8: not a JSON object', () => {
  rejects([1, 2], 'configs/models/x.json: a model config must be a JSON object (a Hugging Face config.json)');
});

test('bad input 9: two rotary bases that disagree', () => {
  rejects({ ...base, rope_parameters: { rope_theta: 500000 } }, 'configs/models/x.json: rope_theta (10000) disagrees with rope_parameters.rope_theta (500000); keep one');
});

test('bad input 10: tie_word_embeddings that is not a boolean', () => {
  rejects({ ...base, tie_word_embeddings: 'yes' }, 'configs/models/x.json: tie_word_embeddings ("yes") must be true or false');
});
