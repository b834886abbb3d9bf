// The explorer's state and every change to it. Changes are data (an Action), applied by one pure
// function (reduce); the zustand store only holds the state and notifies the views. The page
// dispatches actions from user input and from the worker's answers; tests drive reduce directly.
import { createStore } from 'zustand/vanilla';
import type { BenchView, CompareView, HardwareOption, PlanView, SearchRequest, SearchView } from './explorer-api.ts';

export type Status =
  | { kind: 'idle' }
  | { kind: 'searching'; done: number; total: number; best_s: number | null }
  | { kind: 'simulating'; what: string }
  | { kind: 'error'; message: string };

export interface State {
  options: { models: string[]; hardware: HardwareOption[] } | null;
  form: SearchRequest;
  status: Status;
  search: SearchView | null;
  /** Selected Pareto point (index in search.pareto), -1: none. */
  selected: number;
  view: PlanView | null;
  compare: CompareView | null;
  /** A committed bench result, re-simulated. */
  bench: BenchView | null;
}

export type Action =
  | { type: 'options'; options: { models: string[]; hardware: HardwareOption[] } }
  | { type: 'form'; patch: Partial<SearchRequest> }
  | { type: 'search-started' }
  | { type: 'search-progress'; done: number; total: number; best_s: number | null }
  | { type: 'search-done'; search: SearchView }
  | { type: 'select'; index: number }
  | { type: 'simulating'; what: string }
  | { type: 'view'; view: PlanView }
  | { type: 'compare'; compare: CompareView }
  | { type: 'bench'; bench: BenchView }
  | { type: 'failed'; message: string };

/** The embedded default: LLaMA-2-7B on the bundled 2x H200 profile, 8 x 1024 tokens a step, 40 GiB a GPU. */
export const DEFAULT_FORM: SearchRequest = {
  model: 'llama2-7b', hardware: 'h200x2', gpus: 2, seq: 1024, globalBatch: 8, capGiB: 40, offload: true, disk: true, delayedUpdate: false,
};

export function initialState(form: SearchRequest = DEFAULT_FORM): State {
  return { options: null, form, status: { kind: 'idle' }, search: null, selected: -1, view: null, compare: null, bench: null };
}

export function reduce(s: State, a: Action): State {
  switch (a.type) {
    case 'options': {
      // keep the form's choices where the bundle has them, else the first offered
      const hw = a.options.hardware.find((h) => h.id === s.form.hardware) ?? a.options.hardware[0];
      const model = a.options.models.includes(s.form.model) ? s.form.model : a.options.models[0] ?? s.form.model;
      return { ...s, options: a.options, form: { ...s.form, model, hardware: hw?.id ?? s.form.hardware, gpus: hw ? Math.min(s.form.gpus, hw.gpus) : s.form.gpus } };
    }
    case 'form': {
      const form = { ...s.form, ...a.patch };
      // a new hardware profile: as many GPUs as it has, at most
      const hw = s.options?.hardware.find((h) => h.id === form.hardware);
      if (hw && a.patch.hardware !== undefined && a.patch.gpus === undefined) form.gpus = Math.min(Math.max(1, form.gpus), hw.gpus);
      return { ...s, form };
    }
    case 'search-started':
      return { ...s, status: { kind: 'searching', done: 0, total: 0, best_s: null }, search: null, selected: -1, view: null, compare: null };
    case 'search-progress':
      return s.status.kind === 'searching' ? { ...s, status: { kind: 'searching', done: a.done, total: a.total, best_s: a.best_s } } : s;
    case 'search-done':
      return { ...s, status: { kind: 'idle' }, search: a.search, selected: a.search.best, view: null };
    case 'select':
      if (!s.search || a.index < 0 || a.index >= s.search.pareto.length) return s;
      return { ...s, selected: a.index };
    case 'simulating':
      return { ...s, status: { kind: 'simulating', what: a.what } };
    case 'view':
      return { ...s, status: { kind: 'idle' }, view: a.view, compare: null };
    case 'compare':
      return { ...s, status: { kind: 'idle' }, compare: a.compare, view: null };
    case 'bench':
      return { ...s, status: { kind: 'idle' }, bench: a.bench };
    case 'failed':
      return { ...s, status: { kind: 'error', message: a.message } };
  }
}

export function createExplorerStore(init: State = initialState()) {
  const store = createStore<State>()(() => init);
  return {
    getState: store.getState,
    subscribe: store.subscribe,
    dispatch(a: Action): void { store.setState(reduce(store.getState(), a), true); },
  };
}

export type ExplorerStore = ReturnType<typeof createExplorerStore>;
