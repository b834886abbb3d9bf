// Disk tier I/O benchmark (issue 6): writes then reads optimizer-state-sized groups through the
// executor's disk I/O (native/src/disk_io.cpp: O_DIRECT, 8 MiB chunks, a pool of `concurrency`
// threads per path, fsync + rename, checksum on write and verified on read), one caller thread per
// path, and prints GB/s per path set and concurrency.
//   node --import tsx bench/disk-io.ts [--paths /tmp/a,/tmp/b;/tmp/a] [--group-mb 200] [--groups 4]
//                                      [--concurrency 1,2,4] [--reps 3] [--out file.json]
// --paths: path sets separated by ';', the paths of a set by ','; --groups: groups per path.
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, totalmem, release } from 'node:os';
import { execSync } from 'node:child_process';
import { benchDiskIO, buildInfo } from '../executor/native.ts';

const arg = (k: string, d: string) => { const i = process.argv.indexOf(k); return i >= 0 ? process.argv[i + 1]! : d; };
const sets = arg('--paths', '/tmp/mmoc-disk-bench-a;/tmp/mmoc-disk-bench-a,/tmp/mmoc-disk-bench-b').split(';').map((s) => s.split(',').filter(Boolean));
const groupBytes = Math.round(Number(arg('--group-mb', '200')) * 1e6);
const groupsPerPath = Number(arg('--groups', '4'));
const concs = arg('--concurrency', '1,2,4').split(',').map(Number);
const out = arg('--out', '');
const reps = Number(arg('--reps', '3'));
const sh = (c: string) => { try { return execSync(c, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim(); } catch { return '?'; } };

const rows = [];
for (const paths of sets) {
  for (const p of paths) mkdirSync(p, { recursive: true });
  for (const c of concs) {
    const runs = Array.from({ length: reps }, () => benchDiskIO(paths, groupBytes, groupsPerPath * paths.length, c));
    const med = (xs: number[]) => { const a = [...xs].sort((x, y) => x - y); return +a[Math.floor(a.length / 2)]!.toFixed(3); };
    rows.push({
      paths, concurrency: c, group_bytes: groupBytes, groups: groupsPerPath * paths.length, direct_io: runs[0]!.direct,
      write_GBps: med(runs.map((b) => b.writeGBps)), read_GBps: med(runs.map((b) => b.readGBps)),
      write_GBps_runs: runs.map((b) => +b.writeGBps.toFixed(3)), read_GBps_runs: runs.map((b) => +b.readGBps.toFixed(3)),
    });
    console.log(JSON.stringify(rows.at(-1)));
  }
}
// yardstick: dd with O_DIRECT, 8 MiB blocks, one stream, on the first path (what the device gives one caller)
const ddFile = `${sets[0]![0]}/mmoc-dd-${process.pid}`;
const ddRate = (c: string) => { const m = /([\d.]+) s, ([\d.]+) ([kMG]?B)\/s/.exec(sh(`${c} 2>&1 | tail -1`)); return m ? +(Number(m[2]) * ({ kB: 1e-6, MB: 1e-3, GB: 1 } as Record<string, number>)[m[3]!]!).toFixed(3) : null; };
const ddWrite = ddRate(`dd if=/dev/zero of=${ddFile} bs=8M count=100 oflag=direct conv=fsync`);
const ddRead = ddRate(`dd if=${ddFile} of=/dev/null bs=8M iflag=direct`);
sh(`rm -f ${ddFile}`);
console.log(JSON.stringify({ dd_direct_write_GBps: ddWrite, dd_direct_read_GBps: ddRead }));
let commit = '';
try { commit = execSync('git rev-parse --short HEAD', { encoding: 'utf8' }).trim(); } catch { /* not a checkout */ }
const disks = [...new Set(sets.flat())].map((p) => ({ path: p, filesystem: sh(`df --output=source,fstype ${p} | tail -1`).split(/\s+/).join(' ') }));
const result = {
  date: new Date().toISOString().slice(0, 10), commit,
  machine: {
    cpu: cpus()[0]?.model ?? '?', cpu_cores: cpus().length, host_memory_gib: +(totalmem() / 2 ** 30).toFixed(1), kernel: release(), torch: buildInfo().torchVersion,
    disks, block_devices: sh('lsblk -d -o NAME,SIZE,ROTA,MODEL -n').split('\n'),
    note: 'shared development VM (2 cores, other engineers building and testing at the same time): figures are noisy (median of reps, every run listed); ' +
      'the paths of a set are directories on the same virtual disk, so 2 paths measure the pool and parallel callers, not two devices; ' +
      'write includes the checksum, fsync and rename, read includes checksum verification (O_DIRECT: no page cache)',
  },
  yardstick: { tool: 'dd bs=8M count=100, oflag=direct conv=fsync / iflag=direct, first path', write_GBps: ddWrite, read_GBps: ddRead },
  results: rows,
};
if (out) writeFileSync(out, JSON.stringify(result, null, 2) + '\n');
