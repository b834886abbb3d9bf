// Planner search benchmark: LLaMA-2-13B on the 8-GPU profile with every option enabled (all
// schedules incl. interleaved, recompute, every offload level with host or disk optimizer state,
// prefetch depths, the delayed update, host-link-aware mappings). Issue 4's target: at least
// 10,000 candidate plans simulated and the whole search in 5 s or less on one core.
//
//   node --import tsx bench/planner-search.ts [--profile h200x8] [--gpus 8] [--seq 1024]
//        [--global-batch 64] [--gpu-mem none|48GiB] [--out bench/results/<date>-planner-search.json]
// or compiled (as released: no tsx transform), from the repository root:
//   node_modules/.bin/esbuild bench/planner-search.ts --bundle --platform=node --format=esm \
//     --packages=external --outfile=node_modules/.cache/mmoc/planner-search.mjs &&
//   taskset -c 0 node node_modules/.cache/mmoc/planner-search.mjs --out ...
import { execSync } from 'node:child_process';
import { readFileSync, writeFileSync, renameSync } from 'node:fs';
import { cpus, totalmem, loadavg } from 'node:os';
import { pathToFileURL } from 'node:url';
import { parseHardwareProfile } from '../sim/index.ts';
import { parseModelConfig } from '../planner/model-config.ts';
import { search } from '../planner/search.ts';

const args = process.argv.slice(2);
const opt = (name: string, dflt: string) => { const i = args.indexOf(`--${name}`); return i >= 0 ? args[i + 1]! : dflt; };
const profileId = opt('profile', 'h200x8');
const gpus = Number(opt('gpus', '8'));
const seq = Number(opt('seq', '1024'));
const globalBatch = Number(opt('global-batch', '64'));
const capText = opt('gpu-mem', 'none');
const cap = capText === 'none' ? null : Number(capText.replace(/GiB$/, '')) * 1024 ** 3;
const out = opt('out', '');
const root = pathToFileURL(process.cwd() + '/'); // run from the repository root
const profile = parseHardwareProfile(JSON.parse(readFileSync(new URL(`configs/hardware/${profileId}.json`, root), 'utf8')), `configs/hardware/${profileId}.json`);
const model = parseModelConfig(JSON.parse(readFileSync(new URL('configs/models/llama2-13b.json', root), 'utf8')), 'configs/models/llama2-13b.json', 'llama2-13b');

const cpusAllowed = (() => { try { return /Cpus_allowed_list:\s*(\S+)/.exec(readFileSync('/proc/self/status', 'utf8'))?.[1] ?? null; } catch { return null; } })();
const cpu0 = process.cpuUsage();
const r = search({ model, profile, gpus, gpuMemCapBytes: cap, seq, globalBatch, allowDelayedUpdate: true,
  progress: (d, t) => { if (d === t || d % 2000 === 1) process.stderr.write(`simulated ${d}/${t}\n`); } });
const cpu = process.cpuUsage(cpu0);
const p = r.best?.prediction;
const commit = (() => { try { return execSync('git rev-parse HEAD', { encoding: 'utf8' }).trim(); } catch { return 'unknown'; } })();
const doc = {
  date: new Date().toISOString(),
  commit,
  machine: { cpu: cpus()[0]?.model ?? 'unknown', cores: cpus().length, host_memory_gib: +(totalmem() / 1024 ** 3).toFixed(1), node: process.version, loadavg_1m: loadavg()[0], cpus_allowed: cpusAllowed, gpus: [] },
  profile: profile.id,
  results: [{
    job: { model: 'llama2-13b', seq, tokens_per_step: seq * globalBatch, gpus, gpu_mem_cap_gib: cap === null ? null : cap / 1024 ** 3 },
    runs: [{
      system: 'mmoc-planner-search',
      runtime: process.argv[1]?.endsWith('.mjs') ? 'compiled (esbuild bundle)' : 'tsx',
      search: {
        considered: r.counts.considered, pruned: r.counts.pruned, simulated: r.counts.simulated,
        elapsed_s: r.elapsed_s, cpu_s: (cpu.user + cpu.system) / 1e6,
        simulated_per_s: +(r.counts.simulated / r.elapsed_s).toFixed(1),
        target: { simulated_at_least: 10000, elapsed_s_at_most: 5 },
        // The figure is for one core: judged on the search's CPU time.
        met: r.counts.simulated >= 10000 && (cpu.user + cpu.system) / 1e6 <= 5,
        fidelity: 'each candidate: one replica, coarse lowering (streamed layers of a pass in at most 2 chunks, end-of-step work in '
          + 'at most 4 chunks per stage), one short simulation (1 micro-batch; N interleaved) plus the analytic steady-state period '
          + '(planner/search.ts estimateStep); the 24 leading candidates are re-simulated in full. Estimate vs full simulation '
          + '(bench/search-accuracy.ts, 175 LLaMA-2-13B / h200x8 configurations, 2026-11-22, after the cost and memory model fixes of that day): mean error 5.26%, median 3.05%, '
          + 'worst 39.1% (disk-tier and delayed-update offload); within 5% on the pipelines pinned by planner/search.test.ts',
      },
      plan: r.top[0] ? { schedule: r.top[0].schedule, layout: `${r.top[0].pipelineRanks} stages x ${r.top[0].dataParallel} replicas`, micro_batches: `${r.top[0].microBatchSize} x ${r.top[0].microBatches}`, recompute: r.top[0].recompute, offload: r.top[0].offload, mapping: r.top[0].mapping } : null,
      predicted: p ? { step_s: p.step_s, tokens_per_s: p.tokens_per_s, peak_gib: p.peak_bytes.map((b) => +(b / 1024 ** 3).toFixed(2)) } : null,
      pareto_points: r.pareto.length,
      runner_up: r.runnerUp,
    }],
  }],
};
const text = JSON.stringify(doc, null, 2) + '\n';
if (out) { writeFileSync(out + '.tmp', text); renameSync(out + '.tmp', out); }
process.stdout.write(text);
