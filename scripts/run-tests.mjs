#!/usr/bin/env node
// Runs every `*.test.ts` beside the code it tests (and under test/) with Node's built-in test
// runner, so the runner's summary closes the log. Usage: npm test [-- path-filter ...]
// One file at a time: the executor and calibration tests start several rank processes and time
// them, and a 2-core CI machine has no room for two such files at once.
import { readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const root = join(fileURLToPath(import.meta.url), '..', '..');
const dirs = ['sim', 'planner', 'executor', 'cli', 'web/src', 'test', 'bench'];
const skip = new Set(['node_modules', 'dist', 'build', 'e2e']);
const files = [];
function walk(dir) {
  let entries;
  try { entries = readdirSync(dir); } catch { return; }
  for (const name of entries.sort()) {
    if (skip.has(name)) continue;
    const path = join(dir, name);
    if (statSync(path).isDirectory()) walk(path);
    else if (name.endsWith('.test.ts')) files.push(relative(root, path));
  }
}
for (const d of dirs) walk(join(root, d));
const filters = process.argv.slice(2);
const chosen = filters.length ? files.filter((f) => filters.some((x) => f.includes(x))) : files;
if (chosen.length === 0) { console.error(`no test files match ${filters.join(' ')}`); process.exit(1); }
const r = spawnSync(process.execPath, ['--import', 'tsx', '--test', '--test-concurrency=1', ...chosen], { cwd: root, stdio: 'inherit' });
process.exit(r.status ?? 1);
