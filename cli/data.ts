// `mmoc data`: text to the executor's token file (`mmoc execute --data`), a thin shell over
// executor/data.ts. The tokenizer is a Hugging Face one (tokenizer.json): the model folder's own,
// a file or folder given with --tokenizer, or the bundled tiny model's (one token a byte).
import type { Command } from 'commander';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { action, emit, fmtEta, InputError, log } from './common.ts';
import { displayPath, resolveModel } from './model-files.ts';
import { prepareTokens, BUNDLED_TOKENIZERS_DIR, type PrepareResult } from '../executor/data.ts';

interface DataOpts { input?: string[]; out?: string; tokenizer?: string; model?: string; field: string; eos: string; json?: boolean }

const mb = (b: number) => `${(b / 1e6).toFixed(1)} MB`;

export function formatData(r: PrepareResult): string {
  return [
    `wrote ${displayPath(r.out)}: ${r.tokens.toLocaleString('en-US')} tokens (${r.dtype}, vocabulary ${r.vocab_size.toLocaleString('en-US')}) from ${r.documents} document${r.documents === 1 ? '' : 's'} in ${r.inputs.length} file${r.inputs.length === 1 ? '' : 's'}`,
    `  tokenizer ${displayPath(r.tokenizer)}; end of sequence ${r.eos_id === null ? 'none' : `id ${r.eos_id}`}; ${r.elapsed_s.toFixed(2)} s, ${r.tokens_per_s.toLocaleString('en-US')} tokens/s`,
    `  run it: mmoc execute plan.json --data ${displayPath(r.out)}   (what it was made from: ${displayPath(r.out)}.json)`,
  ].join('\n');
}

export function register(program: Command): void {
  program
    .command('data')
    .description('tokenize text (plain files, or JSON Lines with a text field) into a token file for `mmoc execute --data`')
    .option('--input <files...>', 'text files, or .jsonl / .ndjson files with one document a line')
    .option('-o, --out <tokens.bin>', 'the token file to write (a sidecar <out>.json records how it was made)')
    .option('--tokenizer <folder|tokenizer.json|name>', 'Hugging Face tokenizer: a model folder, a tokenizer.json, or a bundled one (tiny); default: the --model folder\'s own')
    .option('--model <name|folder|config.json>', 'the model to train (its vocabulary decides uint16 or uint32 tokens and bounds every id)')
    .option('--field <name>', 'JSON Lines: the field holding the text', 'text')
    .option('--eos <auto|none|token>', 'end-of-sequence after each document: the tokenizer config\'s eos_token (auto), none, or a token or id', 'auto')
    .option('--json', 'print the result as JSON')
    .action(action(async (o: DataOpts) => {
      if (!o.input?.length) throw new InputError('--input is required (text or .jsonl files)');
      if (!o.out) throw new InputError('--out is required (the token file to write, e.g. tokens.bin)');
      const model = o.model ? resolveModel(o.model) : null;
      let tokenizer = o.tokenizer;
      if (!tokenizer && model?.folder && existsSync(join(model.folder, 'tokenizer.json'))) tokenizer = model.folder;
      if (!tokenizer && o.model && existsSync(join(BUNDLED_TOKENIZERS_DIR, o.model, 'tokenizer.json'))) tokenizer = o.model;
      if (!tokenizer) throw new InputError(`--tokenizer is required${o.model ? ` (${o.model} has no tokenizer.json beside it)` : ''}: a Hugging Face model folder, a tokenizer.json, or tiny`);
      const tty = process.stderr.isTTY;
      const r = await prepareTokens({
        tokenizer, inputs: o.input, out: o.out, field: o.field, eos: o.eos, vocabSize: model?.config.vocab_size,
        progress: (p) => {
          const rate = p.tokens / Math.max(p.elapsed_s, 1e-3);
          const left = p.bytes_done > 0 ? (p.elapsed_s / p.bytes_done) * (p.bytes_total - p.bytes_done) : 0;
          const line = `tokenizing ${mb(p.bytes_done)} / ${mb(p.bytes_total)}  ${p.tokens.toLocaleString('en-US')} tokens  ${p.documents} docs  ${Math.round(rate).toLocaleString('en-US')} tok/s  ETA ${fmtEta(left)}`;
          if (tty) process.stderr.write(`\r\x1b[K${line}`); else log(line);
        },
      });
      if (tty) process.stderr.write('\n');
      emit(o, r, formatData);
    }));
}
