// Fixtures for planner tests: bundled hardware profiles and models read from configs/.
import { readFileSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseHardwareProfile, type HardwareProfile } from '../sim/index.ts';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const cache = new Map<string, HardwareProfile>();

export function profile(id: string): HardwareProfile {
  let p = cache.get(id);
  if (!p) {
    const path = join(root, 'configs', 'hardware', `${id}.json`);
    p = parseHardwareProfile(JSON.parse(readFileSync(path, 'utf8')), path);
    cache.set(id, p);
  }
  return p;
}
