// The folder that holds package.json and configs/ (bundled models, profiles, tokenizers): found
// by walking up from this file, so that the sources (through tsx) and the compiled dist/ agree.
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export function findRepoRoot(start: string): string {
  for (let d = start; ; d = dirname(d)) {
    if (existsSync(join(d, 'package.json')) && existsSync(join(d, 'configs'))) return d;
    if (dirname(d) === d) return resolve(start, '..');
  }
}

export const repoRoot = findRepoRoot(dirname(fileURLToPath(import.meta.url)));
