// Enforces the import rules of ARCHITECTURE.md ("Layout and who may import whom"): every
// import in sim/, planner/, executor/ and web/ is checked against the table, and a violation
// names the file, the line and the offending import.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');

interface Rule {
  /** Project folders this folder may import (besides itself). */
  project: string[];
  /** May it import node:* builtins? */
  node: boolean;
  /** Project folders whose data files (JSON, gzip-compressed JSON, `?url` assets) it may bundle. */
  assets?: string[];
}

// Production code only: tests (*.test.ts) and benches may import anything.
export const rules: Record<string, Rule> = {
  sim: { project: [], node: false },
  planner: { project: ['sim'], node: false },
  executor: { project: ['planner', 'sim'], node: true },
  web: { project: ['planner', 'sim'], node: false, assets: ['configs', 'bench'] },
};

const NODE_BUILTINS = new Set([
  'assert', 'buffer', 'child_process', 'cluster', 'crypto', 'dgram', 'dns', 'events', 'fs', 'fs/promises', 'http',
  'https', 'module', 'net', 'os', 'path', 'perf_hooks', 'process', 'readline', 'stream', 'timers', 'tls', 'url',
  'util', 'v8', 'vm', 'worker_threads', 'zlib',
]);

function sourceFiles(dir: string): string[] {
  const out: string[] = [];
  let names: string[];
  try { names = readdirSync(dir); } catch { return out; }
  for (const name of names) {
    // a bundler's own config runs in Node at build time: not the app's code
    if (name === 'node_modules' || name === 'dist' || name === 'build' || /^vite\.config\./.test(name)) continue;
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...sourceFiles(p));
    else if (/\.(ts|tsx|mts|js|mjs)$/.test(name) && !/\.test\.tsx?$/.test(name) && !name.endsWith('.d.ts')) out.push(p);
  }
  return out;
}

/** Every module specifier a file imports (static, dynamic, re-exports), with its line. */
export function importsOf(text: string): { spec: string; line: number }[] {
  const found: { spec: string; line: number }[] = [];
  const re = /(?:^|[^\w.$])(?:import|export)\s*(?:type\s+)?(?:[\w*${}\s,]+?\s+from\s+)?['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)|require\(\s*['"]([^'"]+)['"]\s*\)/g;
  for (const m of text.matchAll(re)) {
    const spec = m[1] ?? m[2] ?? m[3]!;
    const line = text.slice(0, m.index).split('\n').length + (m[0].startsWith('\n') ? 1 : 0);
    found.push({ spec, line });
  }
  return found;
}

/** The violations of `rules` in `file` (absolute path), as human-readable messages. */
export function violations(file: string, text: string): string[] {
  const rel = relative(root, file);
  const folder = rel.split(/[\\/]/)[0]!;
  const rule = rules[folder];
  if (!rule) return [];
  const out: string[] = [];
  for (const { spec, line } of importsOf(text)) {
    const isNode = spec.startsWith('node:') || NODE_BUILTINS.has(spec);
    if (isNode) {
      if (!rule.node) out.push(`${rel}:${line} imports "${spec}": ${folder}/ may not import node:* (it must run in a browser worker too)`);
      continue;
    }
    if (!spec.startsWith('.')) continue; // a package from node_modules
    const target = relative(root, resolve(dirname(file), spec)).split(/[\\/]/)[0]!;
    if (target === folder) continue;
    const isData = /\.json(\.gz)?(\?url)?$/.test(spec) || /\?url$/.test(spec);
    if (isData && rule.assets?.includes(target)) continue;
    if (!rule.project.includes(target)) {
      const allowed = rule.project.length ? rule.project.map((p) => `${p}/`).join(', ') : 'nothing of the project';
      out.push(`${rel}:${line} imports "${spec}" (${target}/): ${folder}/ may import ${allowed}`);
    }
  }
  return out;
}

test('production code in sim/, planner/, executor/ and web/ follows the import rules of ARCHITECTURE.md', () => {
  const all: string[] = [];
  for (const folder of Object.keys(rules)) {
    for (const f of sourceFiles(join(root, folder))) all.push(...violations(f, readFileSync(f, 'utf8')));
  }
  assert.deepEqual(all, [], `import rule violations:\n${all.join('\n')}`);
});

test('a violation names the file, line and offending import', () => {
  const file = join(root, 'sim', 'example.ts');
  const text = "import { x } from './engine.ts';\nimport { readFileSync } from 'node:fs';\nimport type { Plan } from '../planner/plan-types.ts';\n";
  assert.deepEqual(violations(file, text), [
    'sim/example.ts:2 imports "node:fs": sim/ may not import node:* (it must run in a browser worker too)',
    'sim/example.ts:3 imports "../planner/plan-types.ts" (planner/): sim/ may import nothing of the project',
  ]);
});

test('web/ may import planner/ and sim/ but never executor/', () => {
  const file = join(root, 'web', 'src', 'app.ts');
  const text = "import { a } from '../../planner/search.ts';\nimport { b } from '../../sim/index.ts';\nconst n = await import('../../executor/native.ts');\n";
  assert.deepEqual(violations(file, text), [
    'web/src/app.ts:3 imports "../../executor/native.ts" (executor/): web/ may import planner/, sim/',
  ]);
});

test('web/ may bundle data files of configs/ and bench/, not their code', () => {
  const file = join(root, 'web', 'src', 'app.ts');
  const text = "import u from '../../bench/gpu/x/plan.json?url';\nimport t from '../../bench/gpu/x/run.trace.json.gz?url';\nimport m from '../../configs/models/tiny.json';\nimport { f } from '../../bench/gpu/matrix.ts';\n";
  assert.deepEqual(violations(file, text), [
    'web/src/app.ts:4 imports "../../bench/gpu/matrix.ts" (bench/): web/ may import planner/, sim/',
  ]);
});

test('planner/ may import sim/ but not executor/ or path', () => {
  const file = join(root, 'planner', 'x.ts');
  const text = "import { s } from '../sim/index.ts';\nexport { e } from '../executor/run.ts';\nimport path from 'path';\n";
  assert.deepEqual(violations(file, text), [
    'planner/x.ts:2 imports "../executor/run.ts" (executor/): planner/ may import sim/',
    'planner/x.ts:3 imports "path": planner/ may not import node:* (it must run in a browser worker too)',
  ]);
});
