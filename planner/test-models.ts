// Model configs for planner tests (planner/ may not read files: these mirror configs/models/*.json,
// and a test checks that they do).
import type { ModelConfig } from './model-config.ts';

const base = { max_position_embeddings: 4096, rms_norm_eps: 1e-5, rope_theta: 10000, tie_word_embeddings: false };

export const llama2_7b: ModelConfig = {
  ...base, name: 'llama2-7b', hidden_size: 4096, intermediate_size: 11008, num_hidden_layers: 32,
  num_attention_heads: 32, num_key_value_heads: 32, head_dim: 128, vocab_size: 32000,
};
export const llama2_13b: ModelConfig = {
  ...base, name: 'llama2-13b', hidden_size: 5120, intermediate_size: 13824, num_hidden_layers: 40,
  num_attention_heads: 40, num_key_value_heads: 40, head_dim: 128, vocab_size: 32000,
};
export const llama32_1b: ModelConfig = {
  ...base, name: 'llama3.2-1b', hidden_size: 2048, intermediate_size: 8192, num_hidden_layers: 16,
  num_attention_heads: 32, num_key_value_heads: 8, head_dim: 64, vocab_size: 128256,
  max_position_embeddings: 131072, rope_theta: 500000, tie_word_embeddings: true,
};
export const tiny: ModelConfig = {
  ...base, name: 'tiny', hidden_size: 64, intermediate_size: 176, num_hidden_layers: 4,
  num_attention_heads: 4, num_key_value_heads: 2, head_dim: 16, vocab_size: 256, max_position_embeddings: 512,
};
