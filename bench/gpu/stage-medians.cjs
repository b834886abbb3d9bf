// Per rank, pass and stage: the median measured duration (us) of a trace's forward and backward
// instructions after the first step, and the run's step time.
//   node bench/gpu/stage-medians.cjs <trace.json[.gz]>...
const { readFileSync } = require('node:fs');
const { gunzipSync } = require('node:zlib');
for (const f of process.argv.slice(2)) {
  const raw = readFileSync(f);
  const t = JSON.parse((f.endsWith('.gz') ? gunzipSync(raw) : raw).toString('utf8'));
  const g = {};
  for (const e of t.traceEvents) {
    if (e.ph !== 'X' || !e.args || e.args.step < 1 || !['forward', 'backward'].includes(e.name)) continue;
    (g[`${e.args.rank}/${e.name}/${e.args.stage}`] ??= []).push(e.dur);
  }
  const med = (a) => a.sort((x, y) => x - y)[a.length >> 1];
  const cells = Object.keys(g).sort().map((k) => `${k} ${med(g[k]).toFixed(0)}`);
  console.log(`${f.split('/').pop()}: step ${t.otherData?.step_s?.toFixed(4)} s | ${cells.join('  ')}`);
}
