// Resolves `--model` (a bundled name such as `llama2-7b`, a path to a config.json, or a path to a
// Hugging Face model folder) and loads it through planner/model-config.
import { repoRoot } from '../executor/repo-root.ts';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { basename, join, relative, resolve } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { parseModelConfig, type ModelConfig } from '../planner/model-config.ts';
import { InputError } from '../planner/errors.ts';

/** The folder holding package.json and configs/ (executor/repo-root.ts). */
export { repoRoot };
export const bundledModelsDir = join(repoRoot, 'configs', 'models');

export function bundledModelNames(): string[] {
  return readdirSync(bundledModelsDir)
    .filter((f) => f.endsWith('.json'))
    .map((f) => f.slice(0, -'.json'.length))
    .sort();
}

/** Where a model comes from: its config file and, for folders, the folder with weights. */
export interface ModelSource {
  config: ModelConfig;
  configPath: string;
  /** A Hugging Face folder (may hold model.safetensors and tokenizer.json), or null. */
  folder: string | null;
}

/** Reads and parses a JSON file, naming the file (relative to cwd) in every error. */
export function readJsonFile(path: string, what: string): unknown {
  const shown = displayPath(path);
  let text: string;
  try {
    const raw = readFileSync(path);
    // a gzip-compressed file (traces are kept so: bench/gpu/*/runs/*.trace.json.gz)
    text = path.endsWith('.gz') ? gunzipSync(raw).toString('utf8') : raw.toString('utf8');
  } catch (e) {
    throw new InputError(`${shown}: cannot read ${what}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new InputError(`${shown}: ${what} is not valid JSON: ${(e as Error).message}`);
  }
}

export function displayPath(path: string): string {
  const rel = relative(process.cwd(), path);
  return rel && !rel.startsWith('..') ? rel : path;
}

export function resolveModel(spec: string): ModelSource {
  const bundled = join(bundledModelsDir, `${spec}.json`);
  if (!spec.includes('/') && !spec.endsWith('.json') && existsSync(bundled)) {
    return { config: parseModelConfig(readJsonFile(bundled, 'model config'), displayPath(bundled), spec), configPath: bundled, folder: null };
  }
  const path = resolve(spec);
  if (existsSync(path) && statSync(path).isDirectory()) {
    const cfg = join(path, 'config.json');
    if (!existsSync(cfg)) {
      throw new InputError(`${displayPath(path)}: not a Hugging Face model folder (it has no config.json)`);
    }
    return { config: parseModelConfig(readJsonFile(cfg, 'model config'), displayPath(cfg), basename(path)), configPath: cfg, folder: path };
  }
  if (existsSync(path)) {
    return { config: parseModelConfig(readJsonFile(path, 'model config'), displayPath(path), basename(path).replace(/\.json$/, '')), configPath: path, folder: null };
  }
  throw new InputError(
    `--model: "${spec}" is neither a bundled model (${bundledModelNames().join(', ')}) nor a path to a config.json or Hugging Face folder`,
  );
}
