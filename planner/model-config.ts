// Model config: a Hugging Face LLaMA `config.json`, validated field by field. Pure (no I/O):
// the CLI reads files and hands the parsed JSON here together with the name to blame in errors.
import { z } from 'zod';
import { InputError } from './errors.ts';

/** The fields mmoc reads from a Hugging Face LLaMA config.json, normalised. */
export interface ModelConfig {
  /** Bundled name or folder the config came from (for messages and plans). */
  name: string;
  hidden_size: number;
  intermediate_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  num_key_value_heads: number;
  /** Per-head width; HF default hidden_size / num_attention_heads. */
  head_dim: number;
  vocab_size: number;
  max_position_embeddings: number;
  rms_norm_eps: number;
  /** Rotary base, from `rope_theta` or `rope_parameters.rope_theta`. */
  rope_theta: number;
  tie_word_embeddings: boolean;
}

const posInt = z.number({ error: 'must be a number' }).int('must be an integer').positive('must be positive');
const posNum = z.number({ error: 'must be a number' }).positive('must be positive');

const rawSchema = z.looseObject({
  model_type: z.string().optional(),
  hidden_size: posInt,
  intermediate_size: posInt,
  num_hidden_layers: posInt,
  num_attention_heads: posInt,
  num_key_value_heads: posInt.optional(),
  head_dim: posInt.optional(),
  vocab_size: posInt,
  max_position_embeddings: posInt.optional(),
  rms_norm_eps: posNum.optional(),
  rope_theta: posNum.optional(),
  rope_parameters: z.looseObject({ rope_theta: posNum.optional(), rope_type: z.string().optional() }).optional(),
  rope_scaling: z.unknown().optional(),
  tie_word_embeddings: z.boolean({ error: 'must be true or false' }).optional(),
  hidden_act: z.string().optional(),
});

function issuePath(path: readonly PropertyKey[]): string {
  return path.map((p) => (typeof p === 'number' ? `[${p}]` : String(p))).join('.').replace(/\.\[/g, '[');
}

/**
 * Validates a parsed config.json. `source` names the file in every message, e.g.
 * `configs/models/x.json: num_key_value_heads (5) must divide num_attention_heads (32)`.
 */
export function parseModelConfig(json: unknown, source: string, name = source): ModelConfig {
  if (json === null || typeof json !== 'object' || Array.isArray(json)) {
    throw new InputError(`${source}: a model config must be a JSON object (a Hugging Face config.json)`);
  }
  const obj = json as Record<string, unknown>;
  if (obj.model_type !== undefined && obj.model_type !== 'llama' && obj.model_type !== 'mistral') {
    throw new InputError(`${source}: model_type "${String(obj.model_type)}" is not a LLaMA-family model (expected "llama")`);
  }
  const parsed = rawSchema.safeParse(json);
  if (!parsed.success) {
    const first = parsed.error.issues[0]!;
    const field = issuePath(first.path);
    const value = field ? valueAt(obj, first.path) : undefined;
    const msg = first.code === 'invalid_type' && value === undefined ? 'is required' : first.message;
    const shown = value === undefined ? '' : ` (${JSON.stringify(value)})`;
    throw new InputError(`${source}: ${field}${shown} ${msg}`);
  }
  const c = parsed.data;
  const kv = c.num_key_value_heads ?? c.num_attention_heads;
  const fail = (m: string): never => { throw new InputError(`${source}: ${m}`); };
  if (c.num_attention_heads % kv !== 0) {
    fail(`num_key_value_heads (${kv}) must divide num_attention_heads (${c.num_attention_heads})`);
  }
  if (c.head_dim === undefined && c.hidden_size % c.num_attention_heads !== 0) {
    fail(`num_attention_heads (${c.num_attention_heads}) must divide hidden_size (${c.hidden_size}) when head_dim is not given`);
  }
  const headDim = c.head_dim ?? c.hidden_size / c.num_attention_heads;
  if (headDim % 2 !== 0) fail(`head_dim (${headDim}) must be even for rotary embeddings`);
  if (c.rope_theta !== undefined && c.rope_parameters?.rope_theta !== undefined && c.rope_theta !== c.rope_parameters.rope_theta) {
    fail(`rope_theta (${c.rope_theta}) disagrees with rope_parameters.rope_theta (${c.rope_parameters.rope_theta}); keep one`);
  }
  const ropeType = c.rope_parameters?.rope_type;
  if (ropeType !== undefined && ropeType !== 'default' && ropeType !== 'llama3') {
    fail(`rope_parameters.rope_type "${ropeType}" is not supported (use "default" or "llama3")`);
  }
  return {
    name,
    hidden_size: c.hidden_size,
    intermediate_size: c.intermediate_size,
    num_hidden_layers: c.num_hidden_layers,
    num_attention_heads: c.num_attention_heads,
    num_key_value_heads: kv,
    head_dim: headDim,
    vocab_size: c.vocab_size,
    max_position_embeddings: c.max_position_embeddings ?? 2048,
    rms_norm_eps: c.rms_norm_eps ?? 1e-6,
    rope_theta: c.rope_theta ?? c.rope_parameters?.rope_theta ?? 10000,
    tie_word_embeddings: c.tie_word_embeddings ?? false,
  };
}

function valueAt(obj: Record<string, unknown>, path: readonly PropertyKey[]): unknown {
  let v: unknown = obj;
  for (const p of path) {
    if (v === null || typeof v !== 'object') return undefined;
    v = (v as Record<PropertyKey, unknown>)[p];
  }
  return v;
}
