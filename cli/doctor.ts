// `mmoc doctor [--json]`: what this machine can run. The native addon (libtorch version and build
// features), devices (CPU cores; CUDA GPUs with names and memory), a small forward/backward on each
// device, and what is missing (libtorch, the addon, GPUs, Chromium) with the command that fixes it.
import type { Command } from 'commander';
import { existsSync, readdirSync } from 'node:fs';
import { homedir } from 'node:os';
import { delimiter, dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { action, emit, type JsonOption } from './common.ts';
import {
  addonPath, buildInfo, devices, nativeUnavailableReason, selfTest,
  type BuildInfo, type NativeDevices, type SelfTestResult,
} from '../executor/native.ts';

export interface Missing {
  what: 'libtorch' | 'native-addon' | 'gpus' | 'chromium' | 'self-test';
  detail: string;
  fix: string;
  /** Blocks running anything (exit code 1), or only some features. */
  blocking: boolean;
}

export interface DoctorReport {
  node: string;
  platform: string;
  addon: { path: string; built: boolean; error: string | null };
  libtorch: { found: boolean; dir: string | null; source: string | null; version: string | null };
  build: BuildInfo | null;
  devices: NativeDevices | null;
  selfTests: SelfTestResult[];
  chromium: string | null;
  missing: Missing[];
  ok: boolean;
}

const LIBTORCH_FIX =
  'sudo apt-get install -y libtorch-dev libgloo-dev   # or, with PyTorch: export CMAKE_PREFIX_PATH=$(python3 -c "import torch; print(torch.utils.cmake_prefix_path)")';

function findChromium(): string | null {
  const names = ['chromium', 'chromium-browser', 'google-chrome', 'google-chrome-stable', 'chrome'];
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    for (const n of names) if (dir && existsSync(join(dir, n))) return join(dir, n);
  }
  if (process.env.CHROME_PATH && existsSync(process.env.CHROME_PATH)) return process.env.CHROME_PATH;
  const pw = process.env.PLAYWRIGHT_BROWSERS_PATH ?? join(homedir(), '.cache', 'ms-playwright');
  try {
    const d = readdirSync(pw).find((x) => x.startsWith('chromium'));
    if (d) return join(pw, d);
  } catch { /* none */ }
  return null;
}

async function findTorchDir(): Promise<{ torchDir: string; source: string } | null> {
  // the build script's own lookup, so doctor and the build agree
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 4 && !existsSync(join(dir, 'scripts', 'build-native.mjs')); i++) dir = dirname(dir);
  const script = join(dir, 'scripts', 'build-native.mjs');
  if (!existsSync(script)) return null;
  const mod = (await import(pathToFileURL(script).href)) as { findTorch: () => { torchDir: string; source: string } | null };
  return mod.findTorch();
}

export async function doctor(): Promise<DoctorReport> {
  const missing: Missing[] = [];
  const torch = await findTorchDir();
  const reason = nativeUnavailableReason();
  const report: DoctorReport = {
    node: process.version,
    platform: `${process.platform}-${process.arch}`,
    addon: { path: addonPath, built: reason === null, error: reason },
    libtorch: { found: torch !== null, dir: torch?.torchDir ?? null, source: torch?.source ?? null, version: null },
    build: null,
    devices: null,
    selfTests: [],
    chromium: findChromium(),
    missing,
    ok: false,
  };
  if (!torch && reason !== null) {
    missing.push({ what: 'libtorch', detail: 'no TorchConfig.cmake found (Torch_DIR, CMAKE_PREFIX_PATH, libtorch-dev, python torch)', fix: LIBTORCH_FIX, blocking: true });
  }
  if (reason !== null) {
    missing.push({ what: 'native-addon', detail: reason, fix: 'npm run build:native', blocking: true });
  } else {
    report.build = buildInfo();
    report.libtorch.version = report.build.torchVersion;
    report.devices = devices({ free: true });
    const targets = ['cpu', ...report.devices.cuda.map((d) => `cuda:${d.index}`)];
    for (const t of targets) report.selfTests.push(await selfTest(t));
    for (const s of report.selfTests) {
      if (!s.ok) missing.push({ what: 'self-test', detail: `${s.device}: ${s.error ?? 'failed'}`, fix: 'npm run build:native -- --force, then mmoc doctor again', blocking: true });
    }
    if (report.devices.cuda.length === 0) {
      missing.push({
        what: 'gpus',
        detail: report.build.cuda ? 'the addon is built with CUDA but sees no GPU' : 'libtorch without CUDA: CPU only (tests and small runs)',
        fix: report.build.cuda
          ? 'check nvidia-smi and CUDA_VISIBLE_DEVICES'
          : 'on a GPU machine: export CMAKE_PREFIX_PATH=$(python3 -c "import torch; print(torch.utils.cmake_prefix_path)") && npm run build:native -- --force',
        blocking: false,
      });
    }
  }
  if (!report.chromium) {
    missing.push({ what: 'chromium', detail: 'no Chromium/Chrome found (browser end-to-end tests of web/)', fix: 'sudo apt-get install -y chromium   # or: npx playwright install chromium', blocking: false });
  }
  report.ok = !missing.some((m) => m.blocking);
  return report;
}

const gib = (b: number) => `${(b / 2 ** 30).toFixed(1)} GiB`;

export function formatDoctor(r: DoctorReport): string {
  const lines: string[] = [];
  lines.push(`node        ${r.node} (${r.platform})`);
  lines.push(`libtorch    ${r.libtorch.found ? `${r.libtorch.version ?? '(version: build the addon)'} at ${r.libtorch.dir} (${r.libtorch.source})` : r.libtorch.version ? `${r.libtorch.version} (addon built; CMake config not found now)` : 'missing'}`);
  if (r.build) {
    const b = r.build;
    const feats = [b.cuda ? `CUDA ${b.cudaVersion}` : 'CPU only', b.nccl ? 'NCCL' : null, b.gloo ? 'Gloo' : null, b.sdpa ? 'SDPA' : 'math attention', b.fusedAdamw ? 'fused AdamW' : null].filter(Boolean);
    lines.push(`addon       ${r.addon.path} (${b.compiler}; ${feats.join(', ')})`);
  } else {
    lines.push(`addon       not available`);
  }
  if (r.devices) {
    lines.push(`cpu         ${r.devices.cpuCores} cores (torch threads ${r.devices.torchThreads})`);
    for (const d of r.devices.cuda) lines.push(`cuda:${d.index}      ${d.name}, ${gib(d.totalBytes)} (${gib(d.freeBytes)} free), sm ${d.computeCapability}, ${d.multiProcessors} SMs`);
    if (r.devices.cuda.length === 0) lines.push('gpus        none');
  }
  for (const s of r.selfTests) {
    lines.push(`self-test   ${s.device.padEnd(7)} ${s.ok ? 'ok' : 'FAILED'}  loss ${s.loss.toFixed(4)}  grad norm ${s.gradNorm.toFixed(4)}  ${s.ms.toFixed(0)} ms${s.error ? `  (${s.error})` : ''}`);
  }
  lines.push(`chromium    ${r.chromium ?? 'missing'}`);
  if (r.missing.length) {
    lines.push('', 'missing:');
    for (const m of r.missing) lines.push(`  ${m.what}${m.blocking ? '' : ' (optional)'}: ${m.detail}`, `    fix: ${m.fix}`);
  }
  lines.push('', r.ok ? 'ok: this machine can run mmoc' : 'not ready: fix the blocking items above');
  return lines.join('\n');
}

export function register(program: Command): void {
  program
    .command('doctor')
    .description('check the native addon, libtorch, devices (with a forward/backward on each) and what is missing')
    .option('--json', 'print the report as JSON on stdout')
    .action(
      action(async (opts: JsonOption) => {
        const r = await doctor();
        emit(opts, r, formatDoctor);
        if (!r.ok) process.exitCode = 1;
      }),
    );
}
