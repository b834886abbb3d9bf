// One trace's host AdamW and GPU passes by what ran meanwhile (steps 2 on): each decoder layer's CPU
// update (median ms) while a forward or a backward ran (over half of it) without copies, with copies
// over half of it; the embedding's update against the layers' (G params/s, LLaMA-3.2-1B sizes); and
// the forward and backward passes under the update (over 80% of them) against without (under 10%):
// median [min-max] ms.
//   node bench/gpu/host-update-passes.cjs <trace.json[.gz]>...
const fs = require('fs');
const zlib = require('zlib');
const load = (f) => JSON.parse(f.endsWith('.gz') ? zlib.gunzipSync(fs.readFileSync(f)) : fs.readFileSync(f));
const over = (a, set) => { let s = 0; for (const c of set) s += Math.max(0, Math.min(a.ts + a.dur, c.ts + c.dur) - Math.max(a.ts, c.ts)); return Math.min(1, s / a.dur); };
const med = (xs) => { xs = [...xs].sort((a, b) => a - b); return xs.length ? xs[xs.length >> 1] : NaN; };
const q = (xs) => (xs.length ? `${med(xs).toFixed(1)} [${Math.min(...xs).toFixed(1)}-${Math.max(...xs).toFixed(1)}] n${xs.length}` : '-');
for (const f of process.argv.slice(2)) {
  const ev = load(f).traceEvents.filter((e) => e.ph === 'X' && e.args && e.args.step >= 2);
  const opt = ev.filter((e) => e.name === 'optimizer_step' && e.dur > 1000);
  const layers = opt.filter((e) => e.args.layer >= 1 && e.args.layer <= 80), emb = opt.filter((e) => e.args.layer === 0);
  const fw = ev.filter((e) => e.name === 'forward'), bw = ev.filter((e) => e.name === 'backward');
  const cp = ev.filter((e) => /offload_grads|upload_params|fetch_params|offload_act|reload_act/.test(e.name));
  const ms = (xs) => xs.map((e) => e.dur / 1e3);
  console.log(f.split('/').pop().replace(/\.trace\.json(\.gz)?$/, ''));
  console.log(`  layer update ms: under a forward ${q(ms(layers.filter((u) => over(u, fw) > 0.5 && over(u, cp) < 0.05)))}; under a backward ${q(ms(layers.filter((u) => over(u, bw) > 0.5 && over(u, cp) < 0.05)))}; under copies ${q(ms(layers.filter((u) => over(u, cp) > 0.5)))}`);
  if (emb.length && layers.length) console.log(`  embedding ${(262.67 / med(ms(emb))).toFixed(2)} G params/s, layers ${(60.82 / med(ms(layers))).toFixed(2)} (LLaMA-3.2-1B sizes)`);
  for (const [n, ps] of [['forward', fw], ['backward', bw]]) console.log(`  ${n} ms: under the update ${q(ms(ps.filter((p) => over(p, opt) > 0.8)))}, without ${q(ms(ps.filter((p) => over(p, opt) < 0.1)))}`);
}
