/// <reference types="vite/client" />
// The explorer's web worker: the planner's search and the simulator run here, off the page's
// thread; comlink exposes explorer-api's functions. The bundled model configs and hardware
// profiles are compiled in (configs/).
import { expose } from 'comlink';
import { createExplorerApi } from './explorer-api.ts';

const byName = (files: Record<string, unknown>) =>
  Object.fromEntries(Object.entries(files).map(([path, json]) => [path.replace(/^.*\/|\.json$/g, ''), json]));

const models = import.meta.glob('../../configs/models/*.json', { eager: true, import: 'default' });
const profiles = import.meta.glob('../../configs/hardware/*.json', { eager: true, import: 'default' });

expose(createExplorerApi({ models: byName(models), profiles: byName(profiles) }));
