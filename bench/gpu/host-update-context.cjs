// Host AdamW per-layer update times of a matrix run's plan, by what ran meanwhile: the rank's and the
// other rank's GPU computing (forward/backward slices), host copies on any rank. Median ms a layer.
//   node bench/gpu/host-update-context.cjs <matrix dir> <plan name>
const fs=require("fs");const [dir,name]=process.argv.slice(2);
const f=`${dir}/runs/${name}.trace.json`;const t=JSON.parse(fs.existsSync(f)?fs.readFileSync(f):require("zlib").gunzipSync(fs.readFileSync(f+".gz")));  // committed traces are gzip-compressed
const ev=t.traceEvents.filter(e=>e.ph==="X"&&e.args);
const opt=ev.filter(e=>e.name==="optimizer_step"&&e.dur>3000&&e.args.step>=3);
const comp=ev.filter(e=>/^(forward|backward)$/.test(e.name));
const cp=ev.filter(e=>/offload_grads|upload_params|fetch_params/.test(e.name));
const frac=(a,set)=>{let s=0;for(const c of set){s+=Math.max(0,Math.min(a.ts+a.dur,c.ts+c.dur)-Math.max(a.ts,c.ts));}return Math.min(1,s/a.dur);};
const rows=opt.map(a=>({dur:a.dur/1e3,c0:frac(a,comp.filter(c=>c.args.rank===0)),c1:frac(a,comp.filter(c=>c.args.rank===1)),cp:frac(a,cp)}));
const bucket=(f)=>{const xs=rows.filter(f).map(r=>r.dur).sort((a,b)=>a-b);return xs.length?`${xs.length} med ${xs[xs.length>>1].toFixed(1)}`:"-";};
console.log(name);
console.log(" no copies, both GPUs computing >50%:", bucket(r=>r.cp<0.05&&r.c0>0.5&&r.c1>0.5));
console.log(" no copies, one GPU computing >50%: ", bucket(r=>r.cp<0.05&&((r.c0>0.5)!==(r.c1>0.5))));
console.log(" no copies, GPUs computing <20%:    ", bucket(r=>r.cp<0.05&&r.c0<0.2&&r.c1<0.2));
console.log(" copies >50%:                       ", bucket(r=>r.cp>0.5));
