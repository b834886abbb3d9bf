#!/usr/bin/env node
// Builds the native addon (native/ -> native/build/Release/mmoc_native.node) with cmake-js against
// Node-API (node-api-headers ship with cmake-js: nothing is downloaded) and libtorch.
//
//   npm run build:native            # fast no-op when the addon is newer than every native source
//   npm run build:native -- --force # configure and build again
//
// libtorch is looked up, in order: $Torch_DIR, $CMAKE_PREFIX_PATH, Debian's libtorch-dev
// (/usr/lib/<triplet>/cmake/Torch), and the torch Python package (torch.utils.cmake_prefix_path).
// ccache is used as the compiler launcher when installed (CCACHE_DIR defaults to .cache/ccache).
import { existsSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync, mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { join, dirname } from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const nativeDir = join(root, 'native');
const outDir = join(nativeDir, 'build');
const addon = join(outDir, 'Release', 'mmoc_native.node');
const stampFile = join(outDir, 'mmoc-build.json');
const force = process.argv.includes('--force');
const quiet = process.argv.includes('--quiet');
const say = (m) => process.stderr.write(`build:native: ${m}\n`);

export const LIBTORCH_HELP =
  'libtorch was not found. Install it with one of:\n' +
  '  Debian/Ubuntu (CPU):  sudo apt-get install -y libtorch-dev libgloo-dev\n' +
  '  with PyTorch (CUDA):  export CMAKE_PREFIX_PATH=$(python3 -c "import torch; print(torch.utils.cmake_prefix_path)")\n' +
  '  or point Torch_DIR at the folder holding TorchConfig.cmake, then run `npm run build:native` again.';

function hasConfig(dir) {
  return dir && existsSync(join(dir, 'TorchConfig.cmake'));
}

/** Returns { torchDir, source } or null. */
export function findTorch() {
  if (hasConfig(process.env.Torch_DIR)) return { torchDir: process.env.Torch_DIR, source: 'Torch_DIR' };
  for (const p of (process.env.CMAKE_PREFIX_PATH ?? '').split(':').filter(Boolean)) {
    for (const sub of ['Torch', 'cmake/Torch', 'share/cmake/Torch', 'lib/cmake/Torch']) {
      if (hasConfig(join(p, sub))) return { torchDir: join(p, sub), source: 'CMAKE_PREFIX_PATH' };
    }
  }
  for (const d of ['/usr/lib/x86_64-linux-gnu/cmake/Torch', '/usr/lib/aarch64-linux-gnu/cmake/Torch', '/usr/lib/cmake/Torch',
    '/usr/local/lib/cmake/Torch', '/usr/share/cmake/Torch']) {
    if (hasConfig(d)) return { torchDir: d, source: 'system (libtorch-dev)' };
  }
  const py = spawnSync('python3', ['-c', 'import torch.utils; print(torch.utils.cmake_prefix_path)'], { encoding: 'utf8', timeout: 60_000 });
  if (py.status === 0) {
    const d = join(py.stdout.trim(), 'Torch');
    if (hasConfig(d)) return { torchDir: d, source: 'python torch package' };
  }
  return null;
}

/** nccl.h for CUDA builds: $NCCL_INCLUDE_DIR, the nvidia-nccl wheel beside torch, or system paths. */
export function findNcclInclude(torchDir) {
  const c = [];
  if (process.env.NCCL_INCLUDE_DIR) c.push(process.env.NCCL_INCLUDE_DIR);
  const m = /^(.*[/](?:site|dist)-packages)[/]/.exec(torchDir);
  if (m) {
    const nv = join(m[1], 'nvidia');
    try {
      for (const d of readdirSync(nv)) c.push(join(nv, d, 'include'));
    } catch { /* no nvidia wheels */ }
  }
  c.push('/usr/include', '/usr/local/cuda/include');
  return c.find((d) => existsSync(join(d, 'nccl.h'))) ?? null;
}

function newestSource(dir) {
  let newest = 0;
  for (const name of readdirSync(dir)) {
    if (name === 'build' || name === 'node_modules') continue;
    const p = join(dir, name);
    const st = statSync(p);
    newest = Math.max(newest, st.isDirectory() ? newestSource(p) : st.mtimeMs);
  }
  return newest;
}

async function main() {
  const torch = findTorch();
  if (!torch) {
    say(LIBTORCH_HELP);
    process.exit(1);
  }
  const stamp = { torchDir: torch.torchDir, node: process.versions.napi };
  let old = null;
  try { old = JSON.parse(readFileSync(stampFile, 'utf8')); } catch { /* first build */ }
  const sameTorch = old && old.torchDir === stamp.torchDir;
  if (!force && sameTorch && existsSync(addon) && statSync(addon).mtimeMs >= newestSource(nativeDir)) {
    if (!quiet) say(`up to date (${addon.slice(root.length + 1)}, libtorch from ${torch.torchDir})`);
    return;
  }
  if ((force || (old && !sameTorch)) && existsSync(outDir)) {
    say(old && !sameTorch ? `libtorch changed (${old.torchDir} -> ${torch.torchDir}): configuring again` : 'forced: configuring again');
    rmSync(outDir, { recursive: true, force: true });
  }
  say(`libtorch: ${torch.torchDir} (from ${torch.source})`);
  const hasCcache = spawnSync('ccache', ['--version'], { stdio: 'ignore' }).status === 0;
  if (hasCcache) {
    process.env.CCACHE_DIR ??= join(root, '.cache', 'ccache');
    // PCH + ccache: the precompiled header's timestamp must not defeat the cache
    process.env.CCACHE_SLOPPINESS ??= 'pch_defines,time_macros,include_file_mtime,include_file_ctime';
    mkdirSync(process.env.CCACHE_DIR, { recursive: true });
  } else {
    say('ccache not found: building without a compiler cache (apt-get install ccache makes rebuilds faster)');
  }
  const require = createRequire(import.meta.url);
  const { BuildSystem } = require('cmake-js');
  const jobs = Number(process.env.MMOC_BUILD_JOBS) || Math.max(1, availableParallelism());
  const nccl = findNcclInclude(torch.torchDir);
  if (nccl) say(`nccl.h: ${nccl}`);
  const t0 = Date.now();
  const bs = new BuildSystem({
    directory: nativeDir,
    out: outDir,
    parallel: jobs,
    cMakeOptions: {
      Torch_DIR: torch.torchDir, CMAKE_EXPORT_COMPILE_COMMANDS: 'ON', ...(nccl ? { NCCL_INCLUDE_DIR: nccl } : {}),
      // extra compiler flags, e.g. MMOC_CXX_FLAGS=-DMMOC_NO_FAST_PATHS
      ...(process.env.MMOC_CXX_FLAGS ? { CMAKE_CXX_FLAGS: process.env.MMOC_CXX_FLAGS } : {}),
    },
    log: quiet ? 'warn' : 'info',
    silent: false,
  });
  if (!bs.options.isNodeApi) throw new Error('native/package.json must declare binary.napi_versions (Node-API build)');
  try {
    await bs.build();
  } catch (e) {
    say(`the build failed: ${e.message ?? e}`);
    process.exit(1);
  }
  if (!existsSync(addon)) {
    say(`the build finished but ${addon} is missing`);
    process.exit(1);
  }
  writeFileSync(stampFile, JSON.stringify(stamp) + '\n');
  say(`built ${addon.slice(root.length + 1)} in ${((Date.now() - t0) / 1000).toFixed(1)} s (${jobs} jobs${hasCcache ? ', ccache' : ''})`);
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) await main();
