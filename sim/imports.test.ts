// sim/ runs in Node and in a browser worker: its production files import only each other (no
// package, no node:*, nothing else of the project) and use no Node or DOM globals.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';

const dir = new URL('./', import.meta.url);
const files = readdirSync(dir).filter((f) => f.endsWith('.ts') && !f.endsWith('.test.ts'));

test('sim/ production files import only sibling sim/ files', () => {
  assert.ok(files.includes('engine.ts') && files.includes('index.ts'));
  const re = /(?:import|export)\s[^'"]*?from\s*['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)|require\(/g;
  for (const f of files) {
    const text = readFileSync(new URL(f, dir), 'utf8');
    for (const m of text.matchAll(re)) {
      const spec = m[1] ?? m[2];
      assert.ok(spec !== undefined, `${f}: require() is not allowed`);
      assert.match(spec, /^\.\/[\w.-]+\.ts$/, `sim/${f} imports "${spec}"`);
    }
  }
});

test('sim/ production files use no Node or DOM globals', () => {
  const banned = /\b(process|Buffer|require|__dirname|__filename|window|document|self|globalThis|setTimeout|setImmediate)\b(?=\s*[.(\[])/;
  for (const f of files) {
    const code = readFileSync(new URL(f, dir), 'utf8').replace(/\/\/.*$/gm, '').replace(/\/\*[\s\S]*?\*\//g, '');
    const m = banned.exec(code);
    assert.equal(m, null, `sim/${f} uses ${m?.[0]}`);
  }
});
