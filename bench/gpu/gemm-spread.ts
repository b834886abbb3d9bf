// GEMM table entries of several profiles side by side: for each shape, the entries (us) and their
// spread (max / min - 1) within each group of profiles (groups separated by --), the small shapes
// (under 100 us) summed up last. Tells whether a change in calibrate's GEMM timing steadied the table.
//   node --import tsx bench/gpu/gemm-spread.ts a.json b.json -- c.json d.json
import { readFileSync } from 'node:fs';

const groups: string[][] = [[]];
for (const a of process.argv.slice(2)) if (a === '--') groups.push([]); else groups.at(-1)!.push(a);
const tables = groups.map((g) => g.map((f) => {
  const p = JSON.parse(readFileSync(f, 'utf8')) as { compute: { gemm?: { bf16?: { m: number; n: number; k: number; us?: number }[] }; gemm_dispatch_us?: number } };
  return { dispatch: p.compute.gemm_dispatch_us ?? 0, us: new Map((p.compute.gemm?.bf16 ?? []).map((x) => [`${x.m}x${x.n}x${x.k}`, x.us ?? NaN])) };
}));
const keys = [...tables[0]![0]!.us.keys()].filter((k) => tables.every((g) => g.every((t) => t.us.has(k))));
const spread = (xs: number[]) => Math.max(...xs) / Math.min(...xs) - 1;
const small: number[][] = groups.map(() => []);
for (const k of keys) {
  const cols = tables.map((g, gi) => {
    // the table as timed (the older profiles' entries hold the host's dispatch too: compute.gemm_dispatch_us)
    const xs = g.map((t) => t.us.get(k)!);
    if (Math.min(...xs) < 100) small[gi]!.push(spread(xs));
    return `${xs.map((x) => x.toFixed(1).padStart(7)).join(' ')}  (${(100 * spread(xs)).toFixed(1).padStart(5)}%)`;
  });
  console.log(k.padEnd(20), cols.join('  |  '));
}
const mean = (a: number[]) => a.reduce((x, y) => x + y, 0) / Math.max(1, a.length);
console.log(`shapes under 100 us: mean spread ${small.map((s) => `${(100 * mean(s)).toFixed(1)}%`).join(' | ')} (groups: ${groups.map((g) => g.length).join(' | ')} profiles; dispatch in the tables by their profile: ${tables.map((g) => g.map((t) => t.dispatch.toFixed(1)).join('/')).join(' | ')} us)`);
