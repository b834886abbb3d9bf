// Data preparation: text (plain files, or JSON Lines with a text field) tokenized with a Hugging
// Face tokenizer (tokenizer.json, through @huggingface/tokenizers) into the executor's token file:
// raw little-endian uint16 tokens, uint32 when the vocabulary exceeds 65,536 (native/src/runtime.cpp
// loadData reads it so). Documents follow each other, each with the tokenizer's own special tokens
// (LLaMA's BOS) and an end-of-sequence token after it. The file is written under a temporary name
// and renamed, with a sidecar `<out>.json` that says what it was made from.
import { closeSync, createReadStream, existsSync, openSync, readFileSync, renameSync, statSync, unlinkSync, writeFileSync, writeSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { Tokenizer } from '@huggingface/tokenizers';
import { InputError } from '../planner/errors.ts';
import { repoRoot } from './repo-root.ts';

/** Bundled tokenizers (configs/tokenizers/<name>/). */
export const BUNDLED_TOKENIZERS_DIR = join(repoRoot, 'configs', 'tokenizers');
/** Plain text is encoded in pieces of about this many characters, each ending at a line break. */
export const TEXT_PIECE_CHARS = 1 << 20;

export interface LoadedTokenizer {
  tokenizer: Tokenizer;
  /** Largest token id + 1 (the model's vocabulary must be at least this). */
  vocabSize: number;
  /** The end-of-sequence token the tokenizer's config names, if any. */
  eosToken: string | null;
  /** The tokenizer.json read. */
  file: string;
}

/** A Hugging Face model folder, a tokenizer.json, or a bundled name (`tiny`). */
export function loadTokenizer(spec: string, flag = '--tokenizer'): LoadedTokenizer {
  let file: string;
  const bundled = join(BUNDLED_TOKENIZERS_DIR, spec, 'tokenizer.json');
  if (existsSync(spec) && statSync(spec).isDirectory()) file = join(spec, 'tokenizer.json');
  else if (existsSync(spec)) file = spec;
  else if (/^[\w.-]+$/.test(spec) && existsSync(bundled)) file = bundled;
  else throw new InputError(`${flag}: "${spec}" is neither a folder with a tokenizer.json, a tokenizer.json, nor a bundled tokenizer (tiny)`);
  if (!existsSync(file)) throw new InputError(`${flag}: ${spec} has no tokenizer.json (a Hugging Face model folder holds one beside config.json)`);
  let json: unknown;
  try { json = JSON.parse(readFileSync(file, 'utf8')); } catch (e) { throw new InputError(`${file}: not JSON (${(e as Error).message})`); }
  const cfgFile = join(dirname(file), 'tokenizer_config.json');
  let config: Record<string, unknown> = {};
  if (existsSync(cfgFile)) {
    try { config = JSON.parse(readFileSync(cfgFile, 'utf8')); } catch (e) { throw new InputError(`${cfgFile}: not JSON (${(e as Error).message})`); }
  }
  let tokenizer: Tokenizer;
  try { tokenizer = new Tokenizer(json as object, config); } catch (e) { throw new InputError(`${file}: not a tokenizer this library reads (${(e as Error).message})`); }
  let vocabSize = 0;
  for (const id of tokenizer.get_vocab(true).values()) if (id + 1 > vocabSize) vocabSize = id + 1;
  if (vocabSize === 0) throw new InputError(`${file}: the tokenizer has an empty vocabulary`);
  const eos = config.eos_token;
  const eosToken = typeof eos === 'string' ? eos : eos && typeof eos === 'object' && typeof (eos as { content?: unknown }).content === 'string' ? (eos as { content: string }).content : null;
  return { tokenizer, vocabSize, eosToken, file };
}

export interface PrepareOptions {
  tokenizer: string;
  inputs: string[];
  out: string;
  /** JSON Lines: the field that holds a document's text (default `text`). */
  field?: string;
  /** End-of-sequence after each document: 'auto' (the tokenizer config's eos_token, none if it
   *  names none), 'none', or a token (its text, or its id as a number). Default 'auto'. */
  eos?: string;
  /** The model's vocabulary (decides uint16 or uint32 and bounds every id); default the tokenizer's. */
  vocabSize?: number;
  /** Called a few times a second and once at the end. */
  progress?: (p: PrepareProgress) => void;
}

export interface PrepareProgress { bytes_done: number; bytes_total: number; tokens: number; documents: number; elapsed_s: number }

export interface PrepareResult {
  out: string;
  tokens: number;
  documents: number;
  dtype: 'uint16' | 'uint32';
  vocab_size: number;
  eos_id: number | null;
  tokenizer: string;
  inputs: { path: string; bytes: number; format: 'text' | 'jsonl' }[];
  elapsed_s: number;
  tokens_per_s: number;
}

const isJsonl = (p: string) => /\.(jsonl|ndjson)$/i.test(p);

/** Tokenizes `inputs` into the token file `out` (see the header). */
export async function prepareTokens(o: PrepareOptions): Promise<PrepareResult> {
  const t0 = performance.now();
  const tk = loadTokenizer(o.tokenizer);
  const vocab = o.vocabSize ?? tk.vocabSize;
  if (!(Number.isInteger(vocab) && vocab > 0)) throw new InputError(`vocabulary size ${vocab}: must be a positive whole number`);
  if (tk.vocabSize > vocab) throw new InputError(`${tk.file}: the tokenizer's ids reach ${tk.vocabSize - 1}, outside the model's vocabulary of ${vocab}: use the model's own tokenizer`);
  const wide = vocab > 65536;
  const field = o.field ?? 'text';
  let eosId: number | null = null;
  const eos = o.eos ?? 'auto';
  if (eos === 'auto') eosId = tk.eosToken !== null ? tk.tokenizer.token_to_id(tk.eosToken) ?? null : null;
  else if (eos !== 'none') {
    eosId = /^\d+$/.test(eos) ? Number(eos) : tk.tokenizer.token_to_id(eos) ?? null;
    if (eosId === null || eosId >= vocab) throw new InputError(`--eos: "${eos}" is not a token of ${tk.file}${/^\d+$/.test(eos) ? ` (ids go to ${vocab - 1})` : ''}`);
  }
  if (!o.inputs.length) throw new InputError('--input: give at least one text or .jsonl file');
  const inputs = o.inputs.map((p) => {
    if (!existsSync(p) || !statSync(p).isFile()) throw new InputError(`--input: ${p}: no such file`);
    return { path: p, bytes: statSync(p).size, format: (isJsonl(p) ? 'jsonl' : 'text') as 'text' | 'jsonl' };
  });
  const total = inputs.reduce((s, x) => s + x.bytes, 0);
  const tmp = join(dirname(resolve(o.out)), `.${basename(o.out)}.tmp-${process.pid}`);
  const fd = openSync(tmp, 'w');
  let tokens = 0, documents = 0, bytesDone = 0, lastTick = 0;
  const tick = (force = false) => {
    const now = performance.now();
    if (o.progress && (force || now - lastTick > 250)) { lastTick = now; o.progress({ bytes_done: bytesDone, bytes_total: total, tokens, documents, elapsed_s: (now - t0) / 1e3 }); }
  };
  const write = (ids: readonly number[], where: string) => {
    const buf = Buffer.allocUnsafe(ids.length * (wide ? 4 : 2));
    for (let i = 0; i < ids.length; i++) {
      const v = ids[i]!;
      if (!(v >= 0 && v < vocab)) throw new InputError(`${where}: token ${v} is outside the vocabulary of ${vocab}`);
      if (wide) buf.writeUInt32LE(v, i * 4); else buf.writeUInt16LE(v, i * 2);
    }
    writeSync(fd, buf);
    tokens += ids.length;
  };
  const encode = (text: string, first: boolean) => (text.length ? tk.tokenizer.encode(text, { add_special_tokens: first }).ids : []);
  const endDoc = (where: string) => { if (eosId !== null) write([eosId], where); documents++; };
  try {
    for (const inp of inputs) {
      const lines = createInterface({ input: createReadStream(inp.path, { encoding: 'utf8' }), crlfDelay: Infinity });
      let n = 0;
      if (inp.format === 'jsonl') {
        for await (const line of lines) {
          n++;
          bytesDone += Buffer.byteLength(line) + 1;
          if (!line.trim()) continue;
          let obj: unknown;
          try { obj = JSON.parse(line); } catch (e) { throw new InputError(`${inp.path}:${n}: not JSON (${(e as Error).message})`); }
          const text = obj && typeof obj === 'object' ? (obj as Record<string, unknown>)[field] : undefined;
          if (typeof text !== 'string') throw new InputError(`${inp.path}:${n}: no text field "${field}"${obj && typeof obj === 'object' ? ` (fields: ${Object.keys(obj).join(', ') || 'none'})` : ''}; name it with --field`);
          write(encode(text, true), `${inp.path}:${n}`);
          endDoc(`${inp.path}:${n}`);
          tick();
        }
      } else {
        // one document a file, encoded in pieces that end at a line break
        let piece = '', first = true;
        for await (const line of lines) {
          n++;
          piece += `${line}\n`;
          bytesDone += Buffer.byteLength(line) + 1;
          if (piece.length >= TEXT_PIECE_CHARS) { write(encode(piece, first), `${inp.path}:${n}`); piece = ''; first = false; tick(); }
        }
        write(encode(piece, first), inp.path);
        endDoc(inp.path);
        tick();
      }
    }
    closeSync(fd);
  } catch (e) {
    try { closeSync(fd); } catch { /* closed */ }
    try { unlinkSync(tmp); } catch { /* gone */ }
    throw e;
  }
  if (tokens === 0) { unlinkSync(tmp); throw new InputError(`--input: ${o.inputs.join(', ')}: no text to tokenize`); }
  renameSync(tmp, o.out);
  bytesDone = total;
  tick(true);
  const elapsed = (performance.now() - t0) / 1e3;
  const result: PrepareResult = {
    out: o.out, tokens, documents, dtype: wide ? 'uint32' : 'uint16', vocab_size: vocab, eos_id: eosId, tokenizer: tk.file,
    inputs, elapsed_s: +elapsed.toFixed(3), tokens_per_s: Math.round(tokens / Math.max(elapsed, 1e-6)),
  };
  const side = `${o.out}.json`;
  const sideTmp = `${side}.tmp-${process.pid}`;
  writeFileSync(sideTmp, `${JSON.stringify({ ...result, made: new Date().toISOString(), field: inputs.some((x) => x.format === 'jsonl') ? field : undefined }, null, 2)}\n`);
  renameSync(sideTmp, side);
  return result;
}
