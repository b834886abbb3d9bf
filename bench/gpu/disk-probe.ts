// Why the disk tier moves its groups slower in a plan than `mmoc calibrate` times it (issue 7's
// disk plan: -31% .. -53% step time in four matrix runs). On the GPU machine, in one command:
//   1. calibrate's disk job as it runs (two 512 MiB groups, 2 threads) and at the plan's group size
//      (730 MB, one 1B layer's master + AdamW state) with 2, 4 and 8 threads;
//   2. the given disk plans (`--plans a.json,b.json`: mmoc execute with a trace), and from each trace
//      every disk_read / disk_write's GB/s;
//   3. calibrate's job again (did the disk change while the plans ran?), and the block device's
//      settings (filesystem, queue depth, max request size).
//   node --import tsx bench/gpu/disk-probe.ts --dir /tmp/mmoc-matrix-disk/a --plans p1.json,p2.json --out $OUT/disk
import { execFileSync, execSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { calibrateTask } from '../../executor/native.ts';

const arg = (k: string, d: string) => { const i = process.argv.indexOf(k); return i >= 0 ? process.argv[i + 1]! : d; };
const dir = arg('--dir', '/tmp/mmoc-matrix-disk/a');
const plans = arg('--plans', '').split(',').filter(Boolean);
const out = arg('--out', '/tmp/mmoc-disk-probe');
mkdirSync(dir, { recursive: true });
mkdirSync(out, { recursive: true });
const sh = (c: string) => { try { return execSync(c, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim(); } catch (e) { return `? ${(e as Error).message.split('\n')[0]}`; } };
const rows: Record<string, unknown>[] = [];
const log = (r: Record<string, unknown>) => { rows.push(r); console.log(JSON.stringify(r)); };

async function cal(tag: string, bytes: number, threads: number) {
  const r = await calibrateTask({ kind: 'disk', name: dir, dims: [threads], bytes, iters: 2, warmup: 0, maxSec: 6 });
  log({ tag, bytes, threads, write_GBps: +r.value.toFixed(3), read_GBps: +r.value2.toFixed(3), note: r.note });
}

const G730 = Math.ceil(729858048 / 4096) * 4096;
await cal('calibrate (before)', 512 * 2 ** 20, 2);
for (const c of [2, 4, 8]) await cal('plan group size', G730, c);
for (const p of plans) {
  const name = basename(p, '.json');
  const trace = join(out, `${name}.trace.json`);
  const t0 = Date.now();
  try {
    execFileSync('node', ['bin/mmoc.js', 'execute', p, '--json', '--trace', trace], { stdio: ['ignore', 'pipe', 'pipe'], timeout: 120_000 });
  } catch (e) {
    log({ tag: 'plan', plan: name, error: (e as Error).message.slice(0, 400) });
    continue;
  }
  const tr = JSON.parse(readFileSync(trace, 'utf8')) as { traceEvents: { name: string; ph: string; dur?: number; args?: { bytes?: number; step?: number } }[] };
  const io = tr.traceEvents.filter((e) => e.ph === 'X' && (e.name === 'disk_read' || e.name === 'disk_write') && (e.dur ?? 0) > 1000);
  const rate = (n: string) => io.filter((e) => e.name === n).map((e) => +((e.args!.bytes! / (e.dur! * 1e3))).toFixed(3));
  const plan = JSON.parse(readFileSync(p, 'utf8'));
  log({ tag: 'plan', plan: name, disk_concurrency: plan.policy.diskConcurrency, seconds: (Date.now() - t0) / 1e3, read_GBps: rate('disk_read'), write_GBps: rate('disk_write') });
}
await cal('calibrate (after)', 512 * 2 ** 20, 2);
const dev = sh(`df --output=source ${dir} | tail -1`);
const blk = basename(sh(`readlink -f ${dev}`)).replace(/[0-9]+$/, '').replace(/p$/, '');
log({
  tag: 'device', df: sh(`df -T ${dir} | tail -1`), mount: sh(`findmnt -T ${dir} -o TARGET,SOURCE,FSTYPE,OPTIONS -n`), lsblk: sh('lsblk -d -o NAME,SIZE,ROTA,MODEL,TRAN 2>/dev/null | head -8'),
  queue: sh(`for f in nr_requests max_sectors_kb max_hw_sectors_kb rotational scheduler; do echo "$f=$(cat /sys/block/${blk}/queue/$f 2>/dev/null)"; done | tr '\\n' ' '`),
  dd_write: sh(`dd if=/dev/zero of=${dir}/dd bs=8M count=96 oflag=direct conv=fsync 2>&1 | tail -1`), dd_read: sh(`dd if=${dir}/dd of=/dev/null bs=8M iflag=direct 2>&1 | tail -1; rm -f ${dir}/dd`),
});
writeFileSync(join(out, 'disk-probe.json'), JSON.stringify(rows, null, 1));
