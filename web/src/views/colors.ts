// One color per instruction class, the same in every view (and close to Perfetto's hues).
const OPS: Record<string, string> = {
  forward: '#4e79a7', backward: '#f28e2b', recompute: '#76b7b2', optimizer_step: '#59a14f',
  fetch_params: '#edc948', upload_params: '#edc948', release_params: '#bab0ac',
  offload_grads: '#b07aa1', offload_act: '#ff9da7', reload_act: '#9c755f',
  send_act: '#e15759', recv_act: '#e15759', send_grad: '#d37295', recv_grad: '#d37295',
  disk_read: '#8cd17d', disk_write: '#499894', allreduce_grads: '#86bcb6', grad_norm: '#a0cbe8',
  host_accumulate: '#c5a880', barrier: '#79706e',
};
const FALLBACK = ['#a0cbe8', '#ffbe7d', '#8cd17d', '#b6992d', '#f1ce63', '#499894', '#86bcb6', '#fabfd2'];

export function opColor(op: string): string {
  const c = OPS[op];
  if (c) return c;
  let h = 0;
  for (let i = 0; i < op.length; i++) h = (h * 31 + op.charCodeAt(i)) >>> 0;
  return FALLBACK[h % FALLBACK.length]!;
}

export const SERIES = ['#4e79a7', '#f28e2b', '#59a14f', '#e15759', '#76b7b2', '#edc948', '#b07aa1', '#ff9da7'];
