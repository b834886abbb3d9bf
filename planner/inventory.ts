// Model inventory: per inventory layer (0 = token embedding, 1..L = decoder layers, L+1 = final
// norm + head + loss; the indices of program.ts) the parameters, forward/backward FLOPs, the bytes
// of activations kept for backward, and the shape of every matrix product.
//
// Conventions (pinned by inventory.test.ts):
//  - Tokens of a micro-batch T = mbs * seq.
//  - A linear layer y = x W^T with W [out, in] is a GEMM m=T, n=out, k=in: 2*T*out*in FLOPs.
//    Backward is two GEMMs of the same size: dX = dY W (m=T, n=in, k=out) and
//    dW = dY^T X (m=out, n=in, k=T), so 2x the forward FLOPs.
//  - Attention (per sequence, per query head; grouped-query attention shares K/V heads, which
//    changes the projection sizes, not the score products): S = Q K^T (m=seq, n=seq, k=head_dim)
//    and O = P V (m=seq, n=head_dim, k=seq), batched over mbs * num_attention_heads. FLOPs are
//    counted dense (4 * seq^2 * head_dim per head per sequence forward, the MFU convention);
//    `causal: true` tells a cost model that a causal kernel executes about half of them.
//    Backward of attention: 2x forward (dQ, dK from dS; dV, dP from dO).
//  - Element-wise work (norms, rotary, SiLU, softmax, cross-entropy) is not counted in FLOPs; its
//    bytes are in the activation figures.
//  - Kept activations assume a fused (flash) attention kernel: no seq x seq score matrix is kept,
//    only the per-row log-sum-exp (fp32).
import type { ModelConfig } from './model-config.ts';
import type { Precision } from './plan-types.ts';

export type LayerKind = 'embedding' | 'decoder' | 'head';

/** One matrix product. `batch` independent products of m x k times k x n. */
export interface GemmShape {
  /** What it computes, e.g. `q_proj.fwd`, `q_proj.dgrad`, `q_proj.wgrad`, `attn.scores.fwd`. */
  name: string;
  pass: 'fwd' | 'bwd';
  m: number;
  n: number;
  k: number;
  batch: number;
  /** 2 * batch * m * n * k. */
  flops: number;
  /** Attention score products: a causal kernel executes about half of the FLOPs. */
  causal?: boolean;
}

/** A tensor kept from forward for backward, per micro-batch. */
export interface KeptTensor {
  name: string;
  elements: number;
  /** 'act' = the activation precision (2 bytes bf16 / bf16-mixed, 4 bytes fp32); 'fp32'; 'int64'. */
  dtype: 'act' | 'fp32' | 'int64';
}

export interface LayerInventory {
  index: number;
  kind: LayerKind;
  name: string;
  /** Parameters owned by this layer (a tied head owns none: the embedding counts them). */
  params: number;
  /** Parameters this layer computes with: for a tied head, the embedding matrix it shares. A stage
   *  holding the head without the embedding stores this copy. */
  usesParams: number;
  /** Forward and backward FLOPs of one micro-batch (backward excludes recompute). */
  fwdFlops: number;
  bwdFlops: number;
  /** Every matrix product of one micro-batch, forward then backward. */
  gemms: GemmShape[];
  /** Tensors kept for backward without recompute, per micro-batch. */
  kept: KeptTensor[];
  /** Bytes those tensors take at the given precision, per micro-batch. */
  keptBytes: number;
  /** Bytes of this layer's input (what a checkpoint of the layer keeps), per micro-batch. */
  inputBytes: number;
  /** Bytes of the layer's output (what a pipeline send carries), per micro-batch. */
  outputBytes: number;
}

export interface Inventory {
  model: ModelConfig;
  precision: Precision;
  mbs: number;
  seq: number;
  /** Layers 0..L+1. */
  layers: LayerInventory[];
  /** Unique parameters (tied embeddings once). */
  params: number;
  /** Bytes per element of activations (2 or 4). */
  actBytes: number;
  /** Per micro-batch, the head's loss workspace beyond the kept fp32 log-probabilities, as the
   *  caching allocator reserves it: the forward's bf16 logits and fp32 copy (T * vocab * (a + 4)),
   *  then the backward's second fp32 buffer (the gradients of the log-probabilities and of the fp32
   *  logits, 4 bytes a logit each: the first reuses the fp32 copy's block), T * vocab * (a + 8). */
  lossWorkspaceBytes: number;
  /** Tokens a chunk of the head's logits (0: not chunked). */
  lossChunk: number;
}

export function actBytesOf(precision: Precision): number {
  return precision === 'fp32' ? 4 : 2;
}

const DTYPE_BYTES = { fp32: 4, int64: 8 } as const;

function linear(name: string, T: number, inF: number, outF: number): GemmShape[] {
  const f = 2 * T * inF * outF;
  return [
    { name: `${name}.fwd`, pass: 'fwd', m: T, n: outF, k: inF, batch: 1, flops: f },
    { name: `${name}.dgrad`, pass: 'bwd', m: T, n: inF, k: outF, batch: 1, flops: f },
    { name: `${name}.wgrad`, pass: 'bwd', m: outF, n: inF, k: T, batch: 1, flops: f },
  ];
}

function attention(mbs: number, seq: number, heads: number, hd: number): GemmShape[] {
  const b = mbs * heads;
  const f = 2 * b * seq * seq * hd;
  const g = (name: string, pass: 'fwd' | 'bwd', m: number, n: number, k: number): GemmShape =>
    ({ name, pass, m, n, k, batch: b, flops: f, causal: true });
  return [
    g('attn.scores.fwd', 'fwd', seq, seq, hd), // S = Q K^T
    g('attn.values.fwd', 'fwd', seq, hd, seq), // O = P V
    g('attn.dP.bwd', 'bwd', seq, seq, hd), // dP = dO V^T
    g('attn.dV.bwd', 'bwd', seq, hd, seq), // dV = P^T dO
    g('attn.dQ.bwd', 'bwd', seq, hd, seq), // dQ = dS K
    g('attn.dK.bwd', 'bwd', seq, hd, seq), // dK = dS^T Q
  ];
}

function sumFlops(gemms: GemmShape[], pass: 'fwd' | 'bwd'): number {
  let s = 0;
  for (const g of gemms) if (g.pass === pass) s += g.flops;
  return s;
}

function bytesOf(kept: KeptTensor[], actBytes: number): number {
  let s = 0;
  for (const t of kept) s += t.elements * (t.dtype === 'act' ? actBytes : DTYPE_BYTES[t.dtype]);
  return s;
}

/** Parameters of one decoder layer. */
export function decoderParams(m: ModelConfig): number {
  const h = m.hidden_size, qd = m.num_attention_heads * m.head_dim, kvd = m.num_key_value_heads * m.head_dim;
  return h * qd + 2 * h * kvd + qd * h + 3 * h * m.intermediate_size + 2 * h;
}

/** Builds the inventory of `model` for micro-batches of `mbs` sequences of `seq` tokens. */
/** `lossChunk`: tokens a chunk of the head's logits (0: the whole micro-batch; see Job.lossChunkTokens). */
export function buildInventory(model: ModelConfig, precision: Precision, mbs: number, seq: number, lossChunk = 0): Inventory {
  const L = model.num_hidden_layers, h = model.hidden_size, I = model.intermediate_size, V = model.vocab_size;
  const nh = model.num_attention_heads, nkv = model.num_key_value_heads, hd = model.head_dim;
  const qd = nh * hd, kvd = nkv * hd;
  const T = mbs * seq;
  const a = actBytesOf(precision);
  const layers: LayerInventory[] = [];
  const finish = (l: Omit<LayerInventory, 'fwdFlops' | 'bwdFlops' | 'keptBytes'>): LayerInventory => ({
    ...l,
    fwdFlops: sumFlops(l.gemms, 'fwd'),
    bwdFlops: sumFlops(l.gemms, 'bwd'),
    keptBytes: bytesOf(l.kept, a),
  });

  layers.push(finish({
    index: 0, kind: 'embedding', name: 'embed_tokens', params: V * h, usesParams: V * h,
    gemms: [], // a gather forward, a scatter-add backward: no matrix products
    kept: [{ name: 'input_ids', elements: T, dtype: 'int64' }],
    inputBytes: T * 8, outputBytes: T * h * a,
  }));
  const dp = decoderParams(model);
  for (let i = 1; i <= L; i++) {
    layers.push(finish({
      index: i, kind: 'decoder', name: `layers.${i - 1}`, params: dp, usesParams: dp,
      gemms: [
        ...linear('q_proj', T, h, qd), ...linear('k_proj', T, h, kvd), ...linear('v_proj', T, h, kvd),
        ...attention(mbs, seq, nh, hd),
        ...linear('o_proj', T, qd, h),
        ...linear('gate_proj', T, h, I), ...linear('up_proj', T, h, I), ...linear('down_proj', T, I, h),
      ],
      kept: [
        { name: 'input (residual)', elements: T * h, dtype: 'act' },
        { name: 'input_layernorm.rstd', elements: T, dtype: 'fp32' },
        { name: 'input_layernorm.out (q/k/v_proj input)', elements: T * h, dtype: 'act' },
        // q and k are rotated together (one tensor; attention keeps views of it). v is a view of
        // the fused q|k|v GEMM output, so with as many K/V heads as query heads attention's saved v
        // keeps that whole output alive; with grouped-query attention k and v are expanded to the
        // query heads (copies, which attention saves) and the q|k|v output is freed
        // (native/src/model.cpp).
        { name: 'q|k (after rotary)', elements: T * (qd + kvd), dtype: 'act' },
        ...(nkv === nh
          ? [{ name: 'q|k|v (GEMM output, kept by the view v)', elements: T * (qd + 2 * kvd), dtype: 'act' as const }]
          : [{ name: 'k expanded to the query heads', elements: T * qd, dtype: 'act' as const },
            { name: 'v expanded to the query heads', elements: T * qd, dtype: 'act' as const }]),
        { name: 'attn.out (o_proj input)', elements: T * qd, dtype: 'act' },
        { name: 'attn.logsumexp', elements: mbs * nh * seq, dtype: 'fp32' },
        { name: 'residual after attention', elements: T * h, dtype: 'act' },
        { name: 'post_attention_layernorm.rstd', elements: T, dtype: 'fp32' },
        { name: 'post_attention_layernorm.out (gate/up input)', elements: T * h, dtype: 'act' },
        // gate|up is one GEMM output (silu saves the gate view, the product the up view: the whole
        // (T, 2I) tensor stays), silu(gate) is saved by the product, the product by down_proj
        // (measured: bench/gpu/act-probe.py, 166 KiB a token for LLaMA-2-7B, 97 for LLaMA-3.2-1B)
        { name: 'gate_proj.out', elements: T * I, dtype: 'act' },
        { name: 'up_proj.out', elements: T * I, dtype: 'act' },
        { name: 'silu(gate) (the product\'s input)', elements: T * I, dtype: 'act' },
        { name: 'silu(gate)*up (down_proj input)', elements: T * I, dtype: 'act' },
      ],
      inputBytes: T * h * a, outputBytes: T * h * a,
    }));
  }
  const tied = model.tie_word_embeddings;
  const chunked = lossChunk > 0 && lossChunk < T;
  layers.push(finish({
    index: L + 1, kind: 'head', name: 'norm+lm_head+loss', params: h + (tied ? 0 : V * h), usesParams: h + V * h,
    // chunked: backward recomputes the logits (one more forward product)
    gemms: chunked ? [...linear('lm_head', T, h, V), { ...linear('lm_head', T, h, V)[0]!, name: 'lm_head.recompute', pass: 'bwd' }] : linear('lm_head', T, h, V),
    kept: [
      { name: 'norm input', elements: T * h, dtype: 'act' },
      { name: 'norm.rstd', elements: T, dtype: 'fp32' },
      { name: 'norm.out (lm_head input)', elements: T * h, dtype: 'act' },
      // cross_entropy saves log_softmax's fp32 output for its backward (the bf16 logits and their
      // fp32 copy are freed when the forward returns: native/src/model.cpp); chunked, nothing of V
      ...(chunked ? [] : [{ name: 'log-probabilities (fp32, saved by log_softmax)', elements: T * V, dtype: 'fp32' as const },
        { name: 'loss.logsumexp', elements: T, dtype: 'fp32' as const }]),
      { name: 'labels', elements: T, dtype: 'int64' },
    ],
    inputBytes: T * h * a, outputBytes: 4, // the loss
  }));
  let params = 0;
  for (const l of layers) params += l.params;
  // chunked, one chunk's: forward the logits and their fp32 copy and log-probabilities (a + 8 bytes
  // a logit), backward the fp32 logits, their softmax and its compute-precision copy (8 + a); the
  // input gradient (T x h) is the backward workspace's
  const C = Math.min(T, lossChunk);
  return { model, precision, mbs, seq, layers, params, actBytes: a, lossWorkspaceBytes: chunked ? C * V * (a + 8) : T * V * (a + 8), lossChunk: chunked ? C : 0 };
}

const invCache = new Map<string, Inventory>();

/** Per model config object (configs are not changed once parsed): its inventories by precision,
 *  mbs and seq (saves serializing the config on every lookup). */
const byModel = new WeakMap<ModelConfig, Map<string, Inventory>>();
/** buildInventory, memoised per (model, precision, mbs, seq) (the search asks for the same ones
 *  many times; inventories are never mutated). */
export function getInventory(model: ModelConfig, precision: Precision, mbs: number, seq: number, lossChunk = 0): Inventory {
  let m = byModel.get(model);
  if (!m) { m = new Map(); byModel.set(model, m); }
  const k = `${precision}|${mbs}|${seq}|${lossChunk}`;
  let inv = m.get(k);
  if (inv) return inv;
  const key = `${JSON.stringify(model)}|${k}`;
  inv = invCache.get(key);
  if (!inv) {
    if (invCache.size > 256) invCache.clear();
    inv = buildInventory(model, precision, mbs, seq, lossChunk);
    invCache.set(key, inv);
  }
  if (m.size > 256) m.clear();
  m.set(k, inv);
  return inv;
}

/** The per-layer figures the planner reads in its hot loops, as typed arrays (the layer objects of
 *  inventories built at different sizes can hold their numbers in different representations,
 *  which code reading many inventories would keep re-specialising on). */
export interface LayerTable {
  /** 0 embedding, 1 decoder, 2 head. */
  kind: Uint8Array;
  params: Float64Array;
  usesParams: Float64Array;
  keptBytes: Float64Array;
  inputBytes: Float64Array;
}
export const KIND_EMBEDDING = 0, KIND_DECODER = 1, KIND_HEAD = 2;
const tables = new WeakMap<Inventory, LayerTable>();
export function layerTable(inv: Inventory): LayerTable {
  let t = tables.get(inv);
  if (t) return t;
  const n = inv.layers.length;
  t = { kind: new Uint8Array(n), params: new Float64Array(n), usesParams: new Float64Array(n), keptBytes: new Float64Array(n), inputBytes: new Float64Array(n) };
  for (let i = 0; i < n; i++) {
    const l = inv.layers[i]!;
    t.kind[i] = l.kind === 'embedding' ? KIND_EMBEDDING : l.kind === 'decoder' ? KIND_DECODER : KIND_HEAD;
    t.params[i] = l.params;
    t.usesParams[i] = l.usesParams;
    t.keptBytes[i] = l.keptBytes;
    t.inputBytes[i] = l.inputBytes;
  }
  tables.set(inv, t);
  return t;
}

/** Unique parameters of a model (tied embeddings counted once). */
export function countParams(model: ModelConfig): number {
  const L = model.num_hidden_layers, h = model.hidden_size, V = model.vocab_size;
  return V * h + L * decoderParams(model) + h + (model.tie_word_embeddings ? 0 : V * h);
}

/** Forward + backward FLOPs of one token through the whole model (dense attention), for MFU. */
export function flopsPerStep(inv: Inventory, microBatches: number): number {
  let s = 0;
  for (const l of inv.layers) s += l.fwdFlops + l.bwdFlops;
  return s * microBatches;
}

/** The inventory a plan runs with. */
export function planInventory(plan: { model: ModelConfig; precision: Precision; job: { microBatchSize: number; seq: number; lossChunkTokens?: number } }): Inventory {
  return getInventory(plan.model, plan.precision, plan.job.microBatchSize, plan.job.seq, plan.job.lossChunkTokens ?? 0);
}
