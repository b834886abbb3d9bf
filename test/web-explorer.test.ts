// The plan explorer end to end in a real browser: build it with Vite, serve the files, drive
// Chromium (the system's, through playwright-core): a search on the embedded default draws the
// Pareto front, the fastest plan's timeline and memory; clicking another point shows that plan;
// the bundled GPU run opens as predicted against measured; a bad field answers with its name.
// Skipped where no Chromium is installed (`apt install chromium`; CI installs it).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, statSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { extname, join, normalize } from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { parsePlan } from '../planner/plan-schema.ts';

const root = join(fileURLToPath(import.meta.url), '..', '..');
const chromium = [process.env.MMOC_CHROMIUM, '/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome'].find((p) => p && existsSync(p));
const skip = chromium ? false : 'no Chromium here (apt install chromium, or set MMOC_CHROMIUM)';

const MIME: Record<string, string> = { '.html': 'text/html', '.js': 'text/javascript', '.css': 'text/css', '.json': 'application/json', '.svg': 'image/svg+xml' };

function serve(dir: string): Promise<{ server: Server; url: string }> {
  const server = createServer((req, res) => {
    const path = normalize(decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname)).replace(/^(\.\.[/\\])+/, '');
    const file = join(dir, path.endsWith('/') ? `${path}index.html` : path);
    if (!file.startsWith(dir) || !existsSync(file) || !statSync(file).isFile()) { res.writeHead(404).end(); return; }
    res.writeHead(200, { 'content-type': MIME[extname(file)] ?? 'application/octet-stream' }).end(readFileSync(file));
  });
  return new Promise((ok) => server.listen(0, '127.0.0.1', () => {
    const a = server.address();
    ok({ server, url: `http://127.0.0.1:${typeof a === 'object' && a ? a.port : 0}/` });
  }));
}

test('the plan explorer searches, draws the front and a plan\'s step, opens a measured run, and names a bad field', { skip, timeout: 240_000 }, async () => {
  const out = mkdtempSync(join(tmpdir(), 'mmoc-web-'));
  const vite = join(root, 'node_modules', 'vite', 'bin', 'vite.js');
  const b = spawnSync(process.execPath, [vite, 'build', '--config', join(root, 'web', 'vite.config.ts'), '--outDir', out, '--emptyOutDir', '--logLevel', 'warn'], { cwd: root, encoding: 'utf8', timeout: 180_000 });
  assert.equal(b.status, 0, `vite build: ${b.stderr}${b.stdout}`);
  const { server, url } = await serve(out);
  const { chromium: pw } = await import('playwright-core');
  const browser = await pw.launch({ executablePath: chromium as string, args: ['--no-sandbox', '--disable-dev-shm-usage'] });
  try {
    const page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(String(e)));
    page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
    await page.goto(url);
    // the worker answered with the bundled models and profiles
    await page.waitForFunction(() => document.querySelectorAll('select[name=model] option').length >= 5, null, { timeout: 30_000 });
    assert.equal(await page.inputValue('select[name=model]'), 'llama2-7b');
    assert.equal(await page.inputValue('select[name=hardware]'), 'h200x2');

    // the embedded default: LLaMA-2-7B on 2x H200 at 40 GiB a GPU
    await page.click('#search');
    await page.waitForSelector('#plan-panel:not([hidden]) rect.slice', { timeout: 120_000 });
    const points = await page.locator('circle.point').count();
    assert.ok(points >= 2, `${points} points on the front`);
    assert.equal(await page.locator('circle.point.best.selected').count(), 1, 'the fastest plan is shown first');
    const summary = await page.textContent('#plan-summary');
    assert.match(summary ?? '', /s a step, \d+ tokens\/s, peak [\d.]+ \/ [\d.]+ GiB per GPU \(cap 40 GiB\); bound by /);
    assert.ok(await page.locator('#timeline rect.slice').count() > 50);
    assert.equal(await page.locator('#memory path.mem-line').count(), 3, 'two GPUs and the host');
    const lanes = await page.locator('#timeline text.lane-label').allTextContents();
    assert.ok(lanes.some((l) => l.startsWith('gpu0')) && lanes.some((l) => l.startsWith('gpu1')), lanes.join(', '));

    assert.match(await page.textContent('#peak-classes') ?? '', /gpu0 at its peak: .*weights [\d.]+.*GiB/);
    // the shown plan downloads as a plan file mmoc can run
    const [download] = await Promise.all([page.waitForEvent('download'), page.click('#download')]);
    const saved = join(out, 'downloaded.plan.json');
    await download.saveAs(saved);
    const plan = parsePlan(JSON.parse(readFileSync(saved, 'utf8')), saved);
    assert.equal(plan.program.ranks.length, 2);
    assert.equal(plan.hardware, 'h200x2');
    assert.match(summary ?? '', new RegExp(`^${plan.prediction!.step_s.toFixed(3)} s a step`));

    // another point of the front: its own plan
    await page.locator('circle.point').first().click();
    await page.waitForFunction((s) => document.querySelector('#plan-summary')?.textContent !== s, summary, { timeout: 60_000 });
    assert.equal(await page.locator('circle.point.selected').getAttribute('data-index'), '0');

    // the bundled GPU run: predicted against measured
    await page.click('#example');
    await page.waitForSelector('#compare-table:not([hidden])', { timeout: 60_000 });
    const table = await page.textContent('#compare-table');
    assert.match(table ?? '', /forward x\d+/);
    assert.match(await page.textContent('#plan-summary') ?? '', /ms predicted, [\d.]+ ms measured \([+-]\d+\.\d%\)/);
    const cmpLanes = await page.locator('#timeline text.lane-label').allTextContents();
    assert.ok(cmpLanes.some((l) => l.startsWith('predicted: ')) && cmpLanes.some((l) => l.startsWith('measured: ')), cmpLanes.join(', '));

    // the committed bench result: every plan re-simulated, within the CI bounds
    await page.selectOption('#bench-select', '2026-11-23-matrix-h200-2.json');
    await page.click('#open-bench');
    await page.waitForSelector('#bench-panel:not([hidden]) circle.bench-point', { timeout: 60_000 });
    assert.equal(await page.locator('#bench-plot circle.bench-point').count(), 14);
    assert.match(await page.textContent('#bench-summary') ?? '', /14 plans: step time MAPE 3\.4% \(worst 9\.9%\).*within the CI bounds/);
    await page.click('#bench-table a:text-is("llama2-7b-1g-gpipe-mbs1x8-rc")');
    await page.waitForFunction(() => /llama2-7b-1g-gpipe-mbs1x8-rc \(2026-11-23-matrix-h200-2\.json\), predicted on matrix-gpu/.test(document.querySelector('#plan-title')?.textContent ?? ''), null, { timeout: 60_000 });
    assert.match(await page.textContent('#plan-summary') ?? '', /^0\.961 s a step/);

    // the user's calibrated profile (the committed one-H200 profile): chosen, one GPU, searchable
    await page.setInputFiles('#profile-file', join(root, 'bench', 'gpu', 'matrix-2026-11-23e-h200', 'profile.json'));
    await page.waitForFunction(() => (document.querySelector('select[name=hardware]') as HTMLSelectElement).value === 'matrix-gpu', null, { timeout: 30_000 });
    assert.equal(await page.inputValue('input[name=gpus]'), '1');
    await page.fill('input[name=capGiB]', '32');
    await page.click('#search');
    await page.waitForFunction(() => /on 1 of matrix-gpu/.test(document.querySelector('#counts')?.textContent ?? ''), null, { timeout: 120_000 });
    await page.waitForSelector('#plan-panel:not([hidden]) #download:not([hidden])', { timeout: 60_000 });
    assert.match(await page.textContent('#plan-summary') ?? '', /peak [\d.]+ GiB per GPU \(cap 32 GiB\)/);

    // a bad field: the message names it
    await page.fill('input[name=gpus]', '3');
    await page.click('#search');
    await page.waitForSelector('#status.error', { timeout: 30_000 });
    assert.match(await page.textContent('#status') ?? '', /GPUs: 3 asked, profile matrix-gpu has 1/);
    assert.deepEqual(errors, []);
  } finally {
    await browser.close();
    server.close();
  }
});
