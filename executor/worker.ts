// Entry of one rank's child process, started by executor/launch.ts (`mmoc execute` on one machine).
// Talks to the launcher over the IPC channel: receives {type:'start'} and {type:'stop'}; sends
// progress, the result or the error. Exits when the launcher goes away (no orphans).
import type { Plan } from '../planner/plan-types.ts';
import { requestStop, runRank } from './native.ts';
import { rankConfig, type Rendezvous, type RunOptions } from './rank-config.ts';

export type ToWorker = { type: 'start'; plan: Plan; rv: Rendezvous; opts: RunOptions } | { type: 'stop' };
export type FromWorker =
  | { type: 'progress'; rank: number; p: import('./native.ts').RankProgress }
  | { type: 'result'; rank: number; result: import('./native.ts').RankResult }
  | { type: 'error'; rank: number; message: string; cppLocation?: string };

function send(m: FromWorker): Promise<void> {
  return new Promise((res) => {
    if (!process.send || !process.connected) return res();
    process.send(m, undefined, {}, () => res());
  });
}

if (!process.send) {
  process.stderr.write('executor/worker.ts is started by `mmoc execute`, not by hand\n');
  process.exit(2);
}
// The launcher owns Ctrl-C (it asks every rank to stop at the same step end).
process.on('SIGINT', () => {});
// Launcher gone: leave at once (the native thread may sit in a c10d wait).
process.on('disconnect', () => process.kill(process.pid, 'SIGKILL'));

let rank = -1;
process.on('message', (m: ToWorker) => {
  if (m.type === 'stop') {
    requestStop();
    return;
  }
  if (m.type !== 'start') return;
  rank = m.rv.rank;
  void (async () => {
    try {
      const cfg = rankConfig(m.plan, m.rv, m.opts);
      const result = await runRank(cfg, (p) => void send({ type: 'progress', rank, p }));
      await send({ type: 'result', rank, result });
      process.exit(0);
    } catch (e) {
      const err = e as Error & { cppLocation?: string };
      await send({ type: 'error', rank, message: err.message, cppLocation: err.cppLocation });
      process.exit(1);
    }
  })();
});
