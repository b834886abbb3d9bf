#!/usr/bin/env node
// Writes configs/tokenizers/tiny/: the bundled tiny model's tokenizer in Hugging Face's format, one
// token a byte (id = the byte's value, vocab_size 256), byte-level pre-tokenization (GPT-2's
// byte-to-unicode map) and no merges, so that any UTF-8 text encodes and decodes exactly.
//   node scripts/make-tiny-tokenizer.mjs
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const dir = join(dirname(fileURLToPath(import.meta.url)), '..', 'configs', 'tokenizers', 'tiny');
// GPT-2's bytes_to_unicode: printable bytes map to themselves, the rest to 256 + n
const bs = [];
for (let b = 0x21; b <= 0x7e; b++) bs.push(b);
for (let b = 0xa1; b <= 0xac; b++) bs.push(b);
for (let b = 0xae; b <= 0xff; b++) bs.push(b);
const cs = [...bs];
let n = 0;
for (let b = 0; b < 256; b++) if (!bs.includes(b)) { bs.push(b); cs.push(256 + n++); }
const vocab = {};
bs.forEach((b, i) => { vocab[String.fromCodePoint(cs[i])] = b; });
const sorted = Object.fromEntries(Object.entries(vocab).sort((a, b) => a[1] - b[1]));
const byteLevel = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true };
const tokenizer = {
  version: '1.0', truncation: null, padding: null, added_tokens: [], normalizer: null,
  pre_tokenizer: byteLevel, post_processor: null, decoder: byteLevel,
  model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: false, byte_fallback: false, ignore_merges: false, vocab: sorted, merges: [] },
};
const config = { tokenizer_class: 'PreTrainedTokenizerFast', model_max_length: 512, clean_up_tokenization_spaces: false, _comment: 'mmoc tiny: one token a byte (scripts/make-tiny-tokenizer.mjs)' };
mkdirSync(dir, { recursive: true });
writeFileSync(join(dir, 'tokenizer.json'), `${JSON.stringify(tokenizer, null, 1)}\n`);
writeFileSync(join(dir, 'tokenizer_config.json'), `${JSON.stringify(config, null, 2)}\n`);
console.log(`wrote ${dir}/tokenizer.json (${Object.keys(sorted).length} tokens)`);
