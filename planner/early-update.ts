// The early GPU update: which decoder layers of a rank the executor updates on a side stream while
// the stage's last backward is still running (native/src/runtime.cpp planEarlyUpdate; this is its
// rule, and both must change together). Each such layer's AdamW is issued from its gradient hook as
// soon as its backward is complete, so most of it runs beside the rest of that backward; the
// simulator charges the part a backward does not hide (profile.update_overlap).
//
// The rule, per rank: only programs whose every instruction is compute, point-to-point, a barrier or
// a whole GPU optimizer_step (no grad_norm: clipping needs every gradient first; no all-reduce,
// offload, fetch, CPU or partial update); per stage, only where the stage's last backward sends no
// input gradient to another rank (updates beside it would delay the gradient the previous stage
// waits for: measured slower on 2x H200) and every decoder layer of the stage is updated after it.
import type { Instr, StageSpec } from './program.ts';

/** Decoder layers (inventory indices 1..L) of rank `rank`'s program `prog` whose GPU update the
 *  executor issues early, beside the stage's last backward. `all` mirrors MMOC_EARLY_UPDATE_ALL
 *  (the send rule off); `off` mirrors MMOC_NO_EARLY_UPDATE. */
export function earlyUpdateLayers(prog: readonly Instr[], rank: number, stages: readonly StageSpec[], L: number, o: { all?: boolean; off?: boolean } = {}): Set<number> {
  const out = new Set<number>();
  if (o.off) return out;
  const lastBwdPc = new Map<number, number>(), lastBwdMb = new Map<number, number>();
  for (let pc = 0; pc < prog.length; pc++) {
    const x = prog[pc]!;
    switch (x.op) {
      case 'forward': case 'send_act': case 'recv_act': case 'send_grad': case 'recv_grad': case 'barrier': break;
      case 'backward': lastBwdPc.set(x.stage, pc); lastBwdMb.set(x.stage, x.mb); break;
      case 'optimizer_step': if (x.tier !== 'gpu' || (x.fraction ?? 1) < 1) return out; break;
      default: return out;
    }
  }
  for (const [s, last] of lastBwdPc) {
    // after the stage's last backward: the layers it updates, and whether it sends that backward's
    // input gradient to another rank
    const updated = new Set<number>();
    let sends = false;
    for (let pc = last + 1; pc < prog.length; pc++) {
      const x = prog[pc]!;
      if (x.op === 'optimizer_step') updated.add(x.layer);
      else if (x.op === 'send_grad' && x.stage === s && x.mb === lastBwdMb.get(s) && x.peer !== rank) sends = true;
    }
    if (sends && !o.all) continue;
    const [lo, hi] = stages[s]!.layers;
    let ok = true;
    for (let l = Math.max(lo, 1); l < Math.min(hi, L + 1) && ok; l++) ok = updated.has(l);
    if (ok) for (let l = Math.max(lo, 1); l < Math.min(hi, L + 1); l++) out.add(l);
  }
  return out;
}
