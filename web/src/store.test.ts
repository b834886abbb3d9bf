import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createExplorerStore, DEFAULT_FORM, initialState, reduce, type State } from './store.ts';
import type { BenchView, SearchView } from './explorer-api.ts';

const options = { models: ['llama2-7b', 'tiny'], hardware: [{ id: 'cpu', gpus: 2, gpu_memory_GiB: 4, gpu: 'cpu', measured: false }, { id: 'h200x2', gpus: 2, gpu_memory_GiB: 140, gpu: 'H200', measured: false }, { id: 'one', gpus: 1, gpu_memory_GiB: 80, gpu: 'H100', measured: true }] };

const fakeSearch = (n: number, best: number): SearchView => ({
  request: DEFAULT_FORM, best, counts: { considered: 10, pruned: 2, simulated: 8 }, infeasible: null, elapsed_s: 0.1,
  pareto: Array.from({ length: n }, (_, i) => ({ step_s: 1 - i * 0.1, peak_bytes: i * 1e9 }) as SearchView['pareto'][number]),
});

test('a search clears the last one, reports progress while it runs, and selects the fastest point when done', () => {
  let s: State = reduce(initialState(), { type: 'options', options });
  s = reduce(s, { type: 'search-started' });
  assert.equal(s.status.kind, 'searching');
  s = reduce(s, { type: 'search-progress', done: 5, total: 10, best_s: 0.5 });
  assert.deepEqual(s.status, { kind: 'searching', done: 5, total: 10, best_s: 0.5 });
  s = reduce(s, { type: 'search-done', search: fakeSearch(3, 2) });
  assert.equal(s.status.kind, 'idle');
  assert.equal(s.selected, 2);
  // progress after the search ended changes nothing
  assert.equal(reduce(s, { type: 'search-progress', done: 1, total: 2, best_s: null }), s);
});

test('selecting outside the Pareto front is ignored; a failure keeps the results and says why', () => {
  let s = reduce(initialState(), { type: 'search-done', search: fakeSearch(2, 0) });
  assert.equal(reduce(s, { type: 'select', index: 5 }), s);
  assert.equal(reduce(s, { type: 'select', index: 1 }).selected, 1);
  s = reduce(s, { type: 'failed', message: 'hardware: no profile "x"' });
  assert.deepEqual(s.status, { kind: 'error', message: 'hardware: no profile "x"' });
  assert.equal(s.search!.pareto.length, 2);
});

test('choosing a profile with fewer GPUs lowers the GPU count to what it has', () => {
  let s = reduce(initialState(), { type: 'options', options });
  assert.equal(s.form.gpus, 2);
  s = reduce(s, { type: 'form', patch: { hardware: 'one' } });
  assert.equal(s.form.gpus, 1);
  s = reduce(s, { type: 'form', patch: { hardware: 'h200x2', gpus: 2 } });
  assert.equal(s.form.gpus, 2);
});

test('options keep the default model and profile when bundled, else take the first offered', () => {
  assert.equal(reduce(initialState(), { type: 'options', options }).form.hardware, 'h200x2');
  const s = reduce(initialState({ ...DEFAULT_FORM, model: 'gone', hardware: 'gone' }), { type: 'options', options });
  assert.equal(s.form.model, 'llama2-7b');
  assert.equal(s.form.hardware, 'cpu');
});

test('the store applies dispatched actions and notifies subscribers', () => {
  const st = createExplorerStore();
  const seen: string[] = [];
  st.subscribe((s) => seen.push(s.status.kind));
  st.dispatch({ type: 'search-started' });
  st.dispatch({ type: 'failed', message: 'x' });
  assert.deepEqual(seen, ['searching', 'error']);
});

test('a bench result opened stays beside the search and the plan shown', () => {
  let s = reduce(initialState(), { type: 'search-done', search: fakeSearch(2, 1) });
  const bench = { title: 't', within: true } as unknown as BenchView;
  s = reduce(s, { type: 'simulating', what: 'bench' });
  s = reduce(s, { type: 'bench', bench });
  assert.equal(s.bench, bench);
  assert.equal(s.status.kind, 'idle');
  assert.equal(s.search!.pareto.length, 2);
});
