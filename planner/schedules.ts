// Pipeline schedules: the order of forward (F) and backward (B) passes of micro-batches over the
// stages a pipeline rank holds. Program generators (program-gen.ts) wrap these with transfers and
// offload instructions.
import type { ScheduleName } from './plan-types.ts';
import { InputError } from './errors.ts';

export interface Pass {
  kind: 'F' | 'B';
  mb: number;
  stage: number;
}

/**
 * The passes of pipeline rank `r` of `N`, with `v` stages per rank (stage of chunk c on rank r is
 * c*N + r) and `M` micro-batches.
 * - gpipe: all forwards, then all backwards (micro-batch order).
 * - 1f1b: min(N-r-1, M) warm-up forwards, then one forward / one backward, then the rest.
 * - interleaved-1f1b (Megatron-LM): forwards go over chunks in groups of N micro-batches, warm-up
 *   (N-r-1)*2 + (v-1)*N passes; needs M a multiple of N.
 */
export function schedulePasses(schedule: ScheduleName, N: number, v: number, M: number, r: number): Pass[] {
  const out: Pass[] = [];
  if (schedule === 'gpipe' || schedule === '1f1b') {
    if (v !== 1) throw new InputError(`${schedule} runs one stage per rank (got ${v} virtual stages)`);
    if (schedule === 'gpipe') {
      for (let m = 0; m < M; m++) out.push({ kind: 'F', mb: m, stage: r });
      for (let m = 0; m < M; m++) out.push({ kind: 'B', mb: m, stage: r });
      return out;
    }
    const w = Math.min(N - r - 1, M);
    for (let m = 0; m < w; m++) out.push({ kind: 'F', mb: m, stage: r });
    for (let i = 0; i < M - w; i++) {
      out.push({ kind: 'F', mb: w + i, stage: r });
      out.push({ kind: 'B', mb: i, stage: r });
    }
    for (let m = M - w; m < M; m++) out.push({ kind: 'B', mb: m, stage: r });
    return out;
  }
  if (M % N !== 0) throw new InputError(`interleaved-1f1b needs micro-batches (${M}) to be a multiple of pipeline ranks (${N})`);
  const total = M * v;
  const mbOf = (k: number) => Math.floor(k / (N * v)) * N + (k % N);
  const fwd = (k: number): Pass => ({ kind: 'F', mb: mbOf(k), stage: Math.floor((k % (N * v)) / N) * N + r });
  const bwd = (k: number): Pass => ({ kind: 'B', mb: mbOf(k), stage: (v - 1 - Math.floor((k % (N * v)) / N)) * N + r });
  const warm = Math.min((N - r - 1) * 2 + (v - 1) * N, total);
  for (let k = 0; k < warm; k++) out.push(fwd(k));
  for (let i = 0; i < total - warm; i++) {
    out.push(fwd(warm + i));
    out.push(bwd(i));
  }
  for (let k = total - warm; k < total; k++) out.push(bwd(k));
  return out;
}
