import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadTokenizer, prepareTokens, BUNDLED_TOKENIZERS_DIR } from './data.ts';

const tmp = () => mkdtempSync(join(tmpdir(), 'mmoc-data-'));
const u16 = (p: string) => [...new Uint16Array(new Uint8Array(readFileSync(p)).buffer)];

test('text and JSON Lines tokenize into uint16 tokens with the bundled byte tokenizer: the ids are the UTF-8 bytes, documents in order', async () => {
  const d = tmp();
  writeFileSync(join(d, 'a.txt'), 'Grüße,\nworld\n');
  writeFileSync(join(d, 'b.jsonl'), '{"text":"one","id":1}\n\n{"text":"two ✓"}\n');
  const seen: number[] = [];
  const r = await prepareTokens({ tokenizer: 'tiny', inputs: [join(d, 'a.txt'), join(d, 'b.jsonl')], out: join(d, 't.bin'), progress: (p) => seen.push(p.tokens) });
  const expected = [...Buffer.from('Grüße,\nworld\n'), ...Buffer.from('one'), ...Buffer.from('two ✓')];
  assert.deepEqual(u16(join(d, 't.bin')), expected);
  assert.equal(r.tokens, expected.length);
  assert.equal(r.documents, 3);
  assert.equal(r.dtype, 'uint16');
  assert.equal(r.eos_id, null, 'the tiny tokenizer names no end-of-sequence token');
  assert.equal(seen.at(-1), r.tokens);
  const side = JSON.parse(readFileSync(join(d, 't.bin.json'), 'utf8'));
  assert.equal(side.tokens, r.tokens);
  assert.deepEqual(side.inputs.map((x: { format: string }) => x.format), ['text', 'jsonl']);
  // nothing else left in the folder (the temporary file was renamed)
  assert.deepEqual(readdirSync(d).sort(), ['a.txt', 'b.jsonl', 't.bin', 't.bin.json']);
});

test('end of sequence: the config\'s eos_token (auto), a given id, or none; a vocabulary over 65,536 writes uint32', async () => {
  const d = tmp();
  const tok = join(d, 'tok');
  cpSync(join(BUNDLED_TOKENIZERS_DIR, 'tiny'), tok, { recursive: true });
  writeFileSync(join(tok, 'tokenizer_config.json'), JSON.stringify({ eos_token: { content: 'Ċ' } })); // byte 10
  writeFileSync(join(d, 'b.jsonl'), '{"t":"ab"}\n{"t":"c"}\n');
  const auto = await prepareTokens({ tokenizer: tok, inputs: [join(d, 'b.jsonl')], out: join(d, 'a.bin'), field: 't' });
  assert.equal(auto.eos_id, 10);
  assert.deepEqual(u16(join(d, 'a.bin')), [97, 98, 10, 99, 10]);
  await prepareTokens({ tokenizer: tok, inputs: [join(d, 'b.jsonl')], out: join(d, 'n.bin'), field: 't', eos: '0' });
  assert.deepEqual(u16(join(d, 'n.bin')), [97, 98, 0, 99, 0]);
  const wide = await prepareTokens({ tokenizer: tok, inputs: [join(d, 'b.jsonl')], out: join(d, 'w.bin'), field: 't', eos: 'none', vocabSize: 128256 });
  assert.equal(wide.dtype, 'uint32');
  assert.deepEqual([...new Uint32Array(new Uint8Array(readFileSync(join(d, 'w.bin'))).buffer)], [97, 98, 99]);
});

test('bad input names the file, line or flag, and leaves what was there untouched', async () => {
  const d = tmp();
  const out = join(d, 't.bin');
  writeFileSync(out, 'keep me');
  writeFileSync(join(d, 'bad.jsonl'), '{"text":"ok"}\n{"text": oops}\n');
  writeFileSync(join(d, 'nofield.jsonl'), '{"body":"x","id":2}\n');
  const fails = async (o: Partial<Parameters<typeof prepareTokens>[0]>, re: RegExp) => {
    await assert.rejects(prepareTokens({ tokenizer: 'tiny', inputs: [join(d, 'bad.jsonl')], out, ...o }), re);
    assert.equal(readFileSync(out, 'utf8'), 'keep me');
    assert.deepEqual(readdirSync(d).filter((f) => f.includes('.tmp-')), []);
  };
  await fails({}, /bad\.jsonl:2: not JSON/);
  await fails({ inputs: [join(d, 'nofield.jsonl')] }, /nofield\.jsonl:1: no text field "text" \(fields: body, id\); name it with --field/);
  await fails({ inputs: [join(d, 'missing.txt')] }, /--input: .*missing\.txt: no such file/);
  await fails({ tokenizer: 'nope' }, /--tokenizer: "nope" is neither a folder with a tokenizer.json/);
  await fails({ vocabSize: 100 }, /the tokenizer's ids reach 255, outside the model's vocabulary of 100/);
  await fails({ eos: '<|eot|>' }, /--eos: "<\|eot\|>" is not a token/);
  assert.throws(() => loadTokenizer(join(d, 'bad.jsonl')), /bad\.jsonl: not JSON/);
  assert.ok(!existsSync(join(d, 't.bin.json')));
});
