// Each plan's GPUs during its run (from the matrix's gpu-clocks.csv, samples with utilization > 50%):
// median SM clock, median power, the clock-event reasons seen (0x4: software power cap).
//   node bench/gpu/gpu-clocks-by-plan.cjs <matrix dir>
const fs=require("fs");const dir=process.argv[2];
const start=Number(/epoch (\d+)/.exec(fs.readFileSync(dir+"/summary.txt","utf8"))[1]);
const rows=fs.readFileSync(dir+"/gpu-clocks.csv","utf8").trim().split("\n").slice(1).map(l=>l.split(", ")).map(a=>({t:Date.parse(a[0].replace(/\//g,"-").replace(" ","T")+"Z")/1e3-start,g:+a[1],clk:parseFloat(a[2]),pw:parseFloat(a[3]),ut:parseFloat(a[4]),tmp:+a[5],rs:a[6]}));
const lines=fs.readFileSync(dir+"/summary.txt","utf8").split("\n").filter(l=>/rc=0 in/.test(l));
const med=xs=>{xs=[...xs].sort((a,b)=>a-b);return xs[xs.length>>1]};
for(const l of lines){const m=/^\[(\d+) s\] (\S+) rc=0 in (\d+) s/.exec(l); if(!m) continue; const end=+m[1], dur=+m[3], a=end-dur+3, b=end-1;
 const s=[0,1].map(g=>{const w=rows.filter(r=>r.g===g&&r.t>=a&&r.t<=b&&r.ut>50); if(!w.length) return "    -"; const rs=[...new Set(w.map(r=>r.rs))].join("/"); return `${String(med(w.map(r=>r.clk))).padStart(5)} MHz ${String(Math.round(med(w.map(r=>r.pw)))).padStart(4)} W ${rs}`;});
 console.log(m[2].padEnd(56), s.join(" | "));}
