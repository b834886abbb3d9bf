/// <reference types="vite/client" />
// The page: binds the form and buttons to actions, asks the worker, renders the state. Every
// change goes through the store as an action (store.ts); the views only read the state.
import { wrap, proxy } from 'comlink';
import type { ExplorerApi, SearchRequest } from './explorer-api.ts';
import { createExplorerStore, type State } from './store.ts';
import { renderPareto } from './views/pareto.ts';
import { renderTimeline } from './views/timeline.ts';
import { renderMemory } from './views/memory.ts';
import { renderBench } from './views/bench.ts';
import { fetchJson, readFile } from './files.ts';
import { isNoise } from '../../planner/compare.ts';
import examplePlanUrl from '../../bench/gpu/matrix-2026-11-23e-h200/plans/llama2-7b-1g-gpipe-mbs1x8-rc.json?url';
import exampleTraceUrl from '../../bench/gpu/matrix-2026-11-23e-h200/runs/llama2-7b-1g-gpipe-mbs1x8-rc.trace.json.gz?url';
import exampleProfileUrl from '../../bench/gpu/matrix-2026-11-23e-h200/profile.json?url';

/** The committed bench results of the GPU matrix (bench/results/), fetched when opened. */
const benchUrls = import.meta.glob('../../bench/results/*matrix*.json', { eager: true, query: '?url', import: 'default' }) as Record<string, string>;
const benchFiles = Object.keys(benchUrls).sort().reverse().map((path) => ({ name: path.replace(/^.*\//, ''), url: benchUrls[path]! }));

const api = wrap<ExplorerApi>(new Worker(new URL('./worker.ts', import.meta.url), { type: 'module' }));
const store = createExplorerStore();
const { dispatch } = store;
const GiB = 2 ** 30;

const $ = <T extends Element>(sel: string) => document.querySelector<T>(sel)!;
const form = $<HTMLFormElement>('#search-form');
const field = (name: string) => form.elements.namedItem(name) as HTMLInputElement | HTMLSelectElement;
const message = (e: unknown) => (e instanceof Error ? e.message : String(e));

// ---- form <-> state
function readForm(): Partial<SearchRequest> {
  const n = (k: string) => Number((field(k) as HTMLInputElement).value);
  const cap = (field('capGiB') as HTMLInputElement).value.trim();
  return {
    model: field('model').value, hardware: field('hardware').value, gpus: n('gpus'), seq: n('seq'), globalBatch: n('globalBatch'),
    capGiB: cap === '' ? null : Number(cap),
    offload: (field('offload') as HTMLInputElement).checked, disk: (field('disk') as HTMLInputElement).checked,
    delayedUpdate: (field('delayedUpdate') as HTMLInputElement).checked,
  };
}

function writeForm(s: State): void {
  const o = s.options;
  const fill = (sel: HTMLSelectElement, items: { value: string; text: string }[]) => {
    const now = Array.from(sel.options, (x) => `${x.value}\t${x.text}`).join('\n');
    if (now !== items.map((i) => `${i.value}\t${i.text}`).join('\n')) sel.replaceChildren(...items.map((i) => new Option(i.text, i.value)));
  };
  if (o) {
    fill(field('model') as HTMLSelectElement, o.models.map((m) => ({ value: m, text: m })));
    fill(field('hardware') as HTMLSelectElement, o.hardware.map((h) => ({ value: h.id, text: `${h.id}: ${h.gpus} x ${h.gpu}, ${h.gpu_memory_GiB} GiB${h.measured ? ' (measured)' : ''}` })));
  }
  const f = s.form;
  field('model').value = f.model;
  field('hardware').value = f.hardware;
  (field('gpus') as HTMLInputElement).value = String(f.gpus);
  (field('seq') as HTMLInputElement).value = String(f.seq);
  (field('globalBatch') as HTMLInputElement).value = String(f.globalBatch);
  (field('capGiB') as HTMLInputElement).value = f.capGiB === null ? '' : String(f.capGiB);
  (field('offload') as HTMLInputElement).checked = f.offload;
  (field('disk') as HTMLInputElement).checked = f.disk;
  (field('delayedUpdate') as HTMLInputElement).checked = f.delayedUpdate;
}

// ---- actions that ask the worker
async function runSearch(): Promise<void> {
  dispatch({ type: 'form', patch: readForm() });
  dispatch({ type: 'search-started' });
  try {
    const r = await api.search(store.getState().form, proxy((done: number, total: number, best: number | null) => dispatch({ type: 'search-progress', done, total, best_s: best })));
    dispatch({ type: 'search-done', search: r });
    if (r.best >= 0) await showPoint(r.best);
    else dispatch({ type: 'failed', message: r.infeasible ? `nothing fits: ${r.infeasible.reason}\n${r.infeasible.suggestions.map((x) => `- ${x.text}`).join('\n')}` : 'no plan found' });
  } catch (e) {
    dispatch({ type: 'failed', message: message(e) });
  }
}

async function showPoint(i: number): Promise<void> {
  dispatch({ type: 'select', index: i });
  dispatch({ type: 'simulating', what: `Pareto point ${i + 1}` });
  try { dispatch({ type: 'view', view: await api.view(i) }); } catch (e) { dispatch({ type: 'failed', message: message(e) }); }
}

const fileOf = (id: string) => $<HTMLInputElement>(id).files?.[0];

async function openPlan(): Promise<void> {
  const pf = fileOf('#plan-file');
  if (!pf) return dispatch({ type: 'failed', message: 'plan: choose a plan file (written by `mmoc plan -o`) first' });
  dispatch({ type: 'simulating', what: pf.name });
  try {
    const prof = fileOf('#profile-file');
    dispatch({ type: 'view', view: await api.viewPlan(await readFile(pf), pf.name, prof ? await readFile(prof) : undefined) });
  } catch (e) { dispatch({ type: 'failed', message: message(e) }); }
}

async function openCompare(plan: unknown, planName: string, measured: unknown, measuredName: string, profile?: unknown): Promise<void> {
  dispatch({ type: 'simulating', what: `${planName} against ${measuredName}` });
  try { dispatch({ type: 'compare', compare: await api.compare(plan, planName, measured, measuredName, profile) }); } catch (e) { dispatch({ type: 'failed', message: message(e) }); }
}

async function openCompareFiles(): Promise<void> {
  const pf = fileOf('#plan-file'), mf = fileOf('#measured-file'), prof = fileOf('#profile-file');
  if (!pf || !mf) return dispatch({ type: 'failed', message: 'compare: choose a plan file and its measured trace (`mmoc execute --trace`) first' });
  try { await openCompare(await readFile(pf), pf.name, await readFile(mf), mf.name, prof ? await readFile(prof) : undefined); } catch (e) { dispatch({ type: 'failed', message: message(e) }); }
}

async function downloadPlan(): Promise<void> {
  const s = store.getState();
  const i = s.view?.paretoIndex;
  if (!s.search || i === undefined) return;
  try {
    const text = await api.planJson(i);
    const a = document.createElement('a');
    a.href = URL.createObjectURL(new Blob([text], { type: 'application/json' }));
    a.download = `${s.search.request.model}-${s.search.request.gpus}gpu-point${i + 1}.plan.json`;
    a.click();
    setTimeout(() => URL.revokeObjectURL(a.href), 10_000);
  } catch (e) { dispatch({ type: 'failed', message: message(e) }); }
}

async function addInput(id: string, add: (json: unknown, f: File) => Promise<Partial<SearchRequest>>): Promise<void> {
  const f = fileOf(id);
  if (!f) return;
  try {
    const patch = await add(await readFile(f), f);
    dispatch({ type: 'options', options: await api.options() });
    dispatch({ type: 'form', patch });
  } catch (e) { dispatch({ type: 'failed', message: message(e) }); }
}

async function openBench(): Promise<void> {
  const f = benchFiles.find((b) => b.name === $<HTMLSelectElement>('#bench-select').value);
  if (!f) return dispatch({ type: 'failed', message: 'bench result: none committed in bench/results/' });
  dispatch({ type: 'simulating', what: `the plans of ${f.name}` });
  try { dispatch({ type: 'bench', bench: await api.bench(await fetchJson(f.url, f.name), f.name) }); } catch (e) { dispatch({ type: 'failed', message: message(e) }); }
}

async function openExample(): Promise<void> {
  try {
    const [plan, measured, profile] = await Promise.all([
      fetchJson(examplePlanUrl, 'example plan'), fetchJson(exampleTraceUrl, 'example trace'), fetchJson(exampleProfileUrl, 'example profile'),
    ]);
    await openCompare(plan, 'llama2-7b-1g-gpipe-mbs1x8-rc.json', measured, 'its measured trace (1x H200, 2026-11-23)', profile);
  } catch (e) { dispatch({ type: 'failed', message: message(e) }); }
}

// ---- rendering
/** Text from a file, made safe to place in HTML. */
const esc = (t: string) => t.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
const pct = (e: number | null) => (e === null ? 'n/a' : `${e >= 0 ? '+' : ''}${(e * 100).toFixed(1)}%`);
/** A row's error, but none for busy time under NOISE_US (as `mmoc compare`). */
const pctOf = (o: { predicted: number; measured: number; error: number | null }) => (isNoise(o) ? '-' : pct(o.error));
let drawn: { search: unknown; selected: number; view: unknown; compare: unknown; bench: unknown } = { search: null, selected: -2, view: null, compare: null, bench: null };

function render(s: State): void {
  const st = $<HTMLDivElement>('#status');
  st.classList.toggle('error', s.status.kind === 'error');
  st.textContent =
    s.status.kind === 'searching' ? `searching: ${s.status.done}/${s.status.total || '?'} plans simulated${s.status.best_s !== null ? `, best ${s.status.best_s.toFixed(3)} s a step` : ''}` :
    s.status.kind === 'simulating' ? `simulating ${s.status.what}...` :
    s.status.kind === 'error' ? s.status.message : '';
  $<HTMLButtonElement>('#search').disabled = s.status.kind === 'searching';

  const front = $<HTMLElement>('#front-panel');
  front.hidden = !s.search;
  if (s.search && (drawn.search !== s.search || drawn.selected !== s.selected)) {
    const c = s.search.counts;
    $('#counts').textContent = `${s.search.request.model} on ${s.search.request.gpus} of ${s.search.request.hardware}: ${c.considered} candidates, ${c.pruned} pruned by the memory model, ${c.simulated} simulated in ${s.search.elapsed_s.toFixed(1)} s; ${s.search.pareto.length} on the front (green: fastest; click a point)`;
    renderPareto($<SVGSVGElement>('#pareto'), s.search, s.selected, s.search.request.capGiB === null ? null : s.search.request.capGiB * GiB, (i) => void showPoint(i));
  }

  const panel = $<HTMLElement>('#plan-panel');
  const shown = s.compare ?? s.view;
  panel.hidden = !shown;
  if (shown && (drawn.view !== s.view || drawn.compare !== s.compare)) {
    const table = $<HTMLTableElement>('#compare-table');
    if (s.compare) {
      const r = s.compare.report;
      $('#plan-title').textContent = s.compare.title;
      $('#plan-summary').textContent = `step ${(r.step_s.predicted * 1e3).toFixed(1)} ms predicted, ${(r.step_s.measured * 1e3).toFixed(1)} ms measured (${pct(r.step_s.error)}); ${r.paired} instructions paired`;
      const row = (k: string, p: string, m: string, e: string) => `<tr><td>${k}</td><td>${p}</td><td>${m}</td><td>${e}</td></tr>`;
      const ms = (us: number) => `${(us / 1e3).toFixed(2)} ms`;
      table.innerHTML = row('<b>by instruction class</b>', 'predicted', 'measured', 'error') +
        r.by_op.map((o) => row(`${esc(o.op)} x${o.count}`, ms(o.predicted), ms(o.measured), pctOf(o))).join('') +
        row('<b>by rank and resource</b>', '', '', '') +
        r.by_resource.map((o) => row(`rank ${o.rank} ${esc(o.resource)}`, ms(o.predicted), ms(o.measured), pctOf(o))).join('') +
        row('<b>peak memory</b>', '', '', '') +
        r.peak_bytes.map((o) => row(`rank ${o.rank}`, `${(o.predicted / GiB).toFixed(2)} GiB`, `${(o.measured / GiB).toFixed(2)} GiB`, pct(o.error))).join('');
      table.hidden = false;
    } else if (s.view) {
      const v = s.view;
      $('#plan-title').textContent = v.title;
      $('#plan-summary').textContent = `${v.step_s.toFixed(3)} s a step, ${Math.round(v.tokens_per_s)} tokens/s, peak ${v.peak_bytes.map((b) => (b / GiB).toFixed(1)).join(' / ')} GiB per GPU${v.cap_bytes !== null ? ` (cap ${(v.cap_bytes / GiB).toFixed(0)} GiB)` : ''}; bound by ${v.bottleneck}`;
      table.hidden = true;
    }
    $<HTMLButtonElement>('#download').hidden = s.view?.paretoIndex === undefined;
    $('#peak-classes').textContent = shown.trace.memory.filter((m) => Object.keys(m.peak_classes).length).map((m) =>
      `${m.process} at its peak: ${Object.entries(m.peak_classes).filter(([, b]) => b > 0).map(([k, b]) => `${k} ${(b / GiB).toFixed(1)}`).join(', ')} GiB`).join(' · ');
    renderTimeline($<SVGSVGElement>('#timeline'), shown.trace);
    renderMemory($<SVGSVGElement>('#memory'), shown.trace.memory, shown.trace.start_us, shown.trace.end_us, s.view?.cap_bytes ?? null);
  }
  const bp = $<HTMLElement>('#bench-panel');
  bp.hidden = !s.bench;
  if (s.bench && drawn.bench !== s.bench) {
    const b = s.bench, sm = b.summary, ev = b.evaluation;
    $('#bench-title').textContent = b.title;
    const p1 = (x: number) => `${(x * 100).toFixed(1)}%`;
    $('#bench-summary').innerHTML = `${sm.plans} plans: step time MAPE <b>${p1(sm.stepMape)}</b> (worst ${p1(sm.stepWorst)}), peak memory MAPE <b>${p1(sm.peakMape)}</b> (worst ${p1(sm.peakWorst)}); ` +
      (b.within ? `<span class="ok">within the CI bounds</span>` : `<span class="bad">outside the CI bounds</span>`) +
      ` (step ${p1(b.bounds.step)}, peak ${p1(b.bounds.peak)}, ranking beyond ${p1(b.bounds.tie)} ties)${ev.ranking.length ? `; ranking: ${esc(ev.ranking.join('; '))}` : ''}. ${esc(ev.reason)}`;
    const row = (cls: string, cells: string[]) => `<tr class="${cls}">${cells.map((c) => `<td>${c}</td>`).join('')}</tr>`;
    $('#bench-table').innerHTML = `<tr><th>plan</th><th>predicted</th><th>measured</th><th>step</th><th>peak</th></tr>` +
      ev.runs.map((r) => row(Math.abs(r.step.error) > b.bounds.step || r.peak.some((q) => Math.abs(q.error) > b.bounds.peak) ? 'out' : '',
        [`<a href="#" data-label="${esc(r.label)}">${esc(r.label.slice(r.job.length + 2))}</a>`, `${r.step.predicted.toFixed(4)} s`, `${r.step.measured.toFixed(4)} s`, pct(r.step.error), r.peak.map((q) => pct(q.error)).join(' / ')])).join('');
    renderBench($<SVGSVGElement>('#bench-plot'), b);
  }
  drawn = { search: s.search, selected: s.selected, view: s.view, compare: s.compare, bench: s.bench };
  writeForm(s);
}

store.subscribe(render);
form.addEventListener('submit', (e) => { e.preventDefault(); void runSearch(); });
form.addEventListener('change', (e) => {
  // a new profile alone, so that the GPU count follows it (store.ts)
  const name = (e.target as HTMLInputElement).name;
  dispatch({ type: 'form', patch: name === 'hardware' ? { hardware: field('hardware').value } : readForm() });
});
$('#open-plan').addEventListener('click', () => void openPlan());
$('#open-compare').addEventListener('click', () => void openCompareFiles());
$('#example').addEventListener('click', () => void openExample());
$('#download').addEventListener('click', () => void downloadPlan());
// a profile or model config opened: searchable from now on, and chosen
$('#profile-file').addEventListener('change', () => void addInput('#profile-file', async (json, f) => ({ hardware: await api.addProfile(json, f.name) })));
$('#model-file').addEventListener('change', () => void addInput('#model-file', async (json, f) => ({ model: await api.addModel(json, f.name, f.name.replace(/\.json$/, '')) })));
$<HTMLSelectElement>('#bench-select').replaceChildren(...benchFiles.map((b) => new Option(b.name, b.name)));
$('#open-bench').addEventListener('click', () => void openBench());
// a plan of the bench result: its predicted step
$('#bench-table').addEventListener('click', (e) => {
  const label = (e.target as HTMLElement).closest('a')?.dataset.label;
  if (!label) return;
  e.preventDefault();
  dispatch({ type: 'simulating', what: label });
  api.benchPlan(label).then((view) => dispatch({ type: 'view', view }), (err) => dispatch({ type: 'failed', message: message(err) }));
});
render(store.getState());
api.options().then((o) => dispatch({ type: 'options', options: o }), (e) => dispatch({ type: 'failed', message: message(e) }));
