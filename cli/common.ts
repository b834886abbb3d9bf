// Shared conventions of every `mmoc` subcommand:
//  - human-readable output on stdout by default, `--json` prints one JSON document on stdout;
//  - progress and logs go to stderr;
//  - exit codes: 0 success, 1 the job failed, 2 bad input (InputError, or a usage error).
import type { Command } from 'commander';
import { InputError } from '../planner/errors.ts';

export { InputError };

/** A job that was valid but failed while running (exit code 1). */
export class JobError extends Error {
  override name = 'JobError';
}

export const EXIT_OK = 0;
export const EXIT_FAILED = 1;
export const EXIT_BAD_INPUT = 2;

export interface JsonOption {
  json?: boolean;
}

/** Prints `result` as JSON (with --json) or through `human` (default). */
export function emit<T>(opts: JsonOption, result: T, human: (r: T) => string): void {
  if (opts.json) process.stdout.write(JSON.stringify(result, null, 2) + '\n');
  else process.stdout.write(human(result).replace(/\n?$/, '\n'));
}

/** A time left for progress lines: 42s, 17m, 2.5h ('?' when unknown). */
export function fmtEta(s: number): string {
  if (!Number.isFinite(s)) return '?';
  if (s < 90) return `${s.toFixed(0)}s`;
  if (s < 5400) return `${(s / 60).toFixed(0)}m`;
  return `${(s / 3600).toFixed(1)}h`;
}

/** Logs a line to stderr (never stdout, which --json keeps machine-readable). */
export function log(line: string): void {
  process.stderr.write(line + '\n');
}

/** Wraps a command action: maps errors to messages and exit codes. */
export function action<A extends unknown[]>(fn: (...args: A) => Promise<void> | void): (...args: A) => Promise<void> {
  return async (...args: A) => {
    try {
      await fn(...args);
    } catch (err) {
      process.exitCode = reportError(err);
    }
  };
}

export function reportError(err: unknown): number {
  if (err instanceof InputError) {
    log(`mmoc: error: ${err.message}`);
    return EXIT_BAD_INPUT;
  }
  if (err instanceof JobError) {
    log(`mmoc: failed: ${err.message}`);
    return EXIT_FAILED;
  }
  const e = err as Error;
  log(`mmoc: failed: ${e?.stack ?? String(err)}`);
  return EXIT_FAILED;
}

/** Parses a byte size such as `48GiB`, `24GB`, `512MiB` or a plain number of bytes. */
export function parseBytes(text: string, flag: string): number {
  const m = /^\s*([0-9]*\.?[0-9]+)\s*(B|KB|KiB|MB|MiB|GB|GiB|TB|TiB)?\s*$/i.exec(text);
  if (!m) throw new InputError(`${flag}: "${text}" is not a size (examples: 48GiB, 24GB, 512MiB)`);
  const unit = (m[2] ?? 'B').toLowerCase();
  const mult: Record<string, number> = {
    b: 1, kb: 1e3, kib: 1024, mb: 1e6, mib: 1024 ** 2, gb: 1e9, gib: 1024 ** 3, tb: 1e12, tib: 1024 ** 4,
  };
  return Math.round(parseFloat(m[1]!) * mult[unit]!);
}

/** Parses a positive integer flag with an exact message. */
export function parsePositiveInt(text: string, flag: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n <= 0) throw new InputError(`${flag}: "${text}" must be a positive integer`);
  return n;
}

export type Register = (program: Command) => void;
