// DebertaV2Config: transformers' config.json for model_type "deberta-v2" (what
// DeBERTa-v3 checkpoints use), read with its own field names and defaults.
// Several options are not declared fields in transformers but read with
// getattr and a default (share_att_key, position_buckets, norm_rel_ebd,
// conv_kernel_size, embedding_size, cls_dropout, …); they are read here with
// the same defaults. Options bertkit does not build (the convolution layer,
// a head size that differs from hidden_size / heads, a pooler narrower or
// wider than the hidden size) fail here, naming the option, never later.
import type { ACTIVATION_CODE } from '../../native.js'
import {
  ConfigChecker, LABEL_KEYS, SIZE_LIMITS, assignConfigFields, checkProblemType, configJson, readConfigJson, type LabelConfigFields, type ProblemType,
} from '../configuration_utils.js'

/** transformers' activation names (ACT2FN keys) that bertkit computes. */
export type DebertaV2Activation = keyof typeof ACTIVATION_CODE

export interface DebertaV2ConfigFields extends LabelConfigFields {
  model_type: string
  vocab_size: number
  hidden_size: number
  num_hidden_layers: number
  num_attention_heads: number
  intermediate_size: number
  hidden_act: DebertaV2Activation
  hidden_dropout_prob: number
  attention_probs_dropout_prob: number
  max_position_embeddings: number
  type_vocab_size: number
  initializer_range: number
  layer_norm_eps: number
  relative_attention: boolean
  max_relative_positions: number
  pad_token_id: number
  position_biased_input: boolean
  pos_att_type: string[] | null
  pooler_dropout: number
  pooler_hidden_act: DebertaV2Activation
}

// transformers' DebertaV2Config defaults (deberta-v2-xlarge's sizes).
const DEFAULTS: Omit<DebertaV2ConfigFields, 'num_labels' | 'id2label' | 'label2id'> = {
  model_type: 'deberta-v2',
  vocab_size: 128100,
  hidden_size: 1536,
  num_hidden_layers: 24,
  num_attention_heads: 24,
  intermediate_size: 6144,
  hidden_act: 'gelu',
  hidden_dropout_prob: 0.1,
  attention_probs_dropout_prob: 0.1,
  max_position_embeddings: 512,
  type_vocab_size: 0,
  initializer_range: 0.02,
  layer_norm_eps: 1e-7,
  relative_attention: false,
  max_relative_positions: -1,
  pad_token_id: 0,
  position_biased_input: true,
  pos_att_type: null,
  pooler_dropout: 0,
  pooler_hidden_act: 'gelu',
  problem_type: null,
}

const REQUIRED_IN_FILE = ['hidden_size', 'num_hidden_layers', 'num_attention_heads', 'intermediate_size', 'vocab_size'] as const

export class DebertaV2Config implements DebertaV2ConfigFields {
  model_type!: string
  vocab_size!: number
  hidden_size!: number
  num_hidden_layers!: number
  num_attention_heads!: number
  intermediate_size!: number
  hidden_act!: DebertaV2Activation
  hidden_dropout_prob!: number
  attention_probs_dropout_prob!: number
  max_position_embeddings!: number
  type_vocab_size!: number
  initializer_range!: number
  layer_norm_eps!: number
  relative_attention!: boolean
  max_relative_positions!: number
  pad_token_id!: number
  position_biased_input!: boolean
  pos_att_type!: string[] | null
  pooler_dropout!: number
  pooler_hidden_act!: DebertaV2Activation
  num_labels!: number
  id2label!: Record<string, string>
  label2id!: Record<string, number>
  problem_type!: ProblemType | null
  /** Fields we do not declare (share_att_key, position_buckets, …), kept so savePretrained writes them back. */
  readonly extra: Record<string, unknown> = {}

  constructor(fields: Partial<DebertaV2ConfigFields> & Record<string, unknown> = {}, source = 'DebertaV2Config') {
    const given: Record<string, unknown> = { ...fields }
    // transformers accepts "p2c|c2p" and lowercases it.
    if (typeof given.pos_att_type === 'string') given.pos_att_type = given.pos_att_type.toLowerCase().split('|').map((s) => s.trim())
    assignConfigFields(this, this.extra, DEFAULTS, given, source)
    this.validate(source)
  }

  /** Reads config.json; `overrides` (e.g. num_labels) win over the file, as from_pretrained's kwargs. */
  static fromFile(path: string, overrides: Partial<DebertaV2ConfigFields> & Record<string, unknown> = {}): DebertaV2Config {
    return new DebertaV2Config(readConfigJson(path, overrides, REQUIRED_IN_FILE) as Partial<DebertaV2ConfigFields>, path)
  }

  // ---- options transformers reads with getattr(config, name, default) ----

  /** Whether relative positions use the content projections (query_proj / key_proj) too. Default false. */
  get share_att_key(): boolean { return (this.extra.share_att_key as boolean | undefined) ?? false }
  /** Log-bucketed relative positions when > 0. Default -1 (none). */
  get position_buckets(): number { return (this.extra.position_buckets as number | undefined) ?? -1 }
  /** "none" or "layer_norm" ("|"-separated), lowercased as transformers splits it. */
  get norm_rel_ebd(): string[] {
    return String(this.extra.norm_rel_ebd ?? 'none').toLowerCase().split('|').map((s) => s.trim())
  }
  get embedding_size(): number { return (this.extra.embedding_size as number | undefined) ?? this.hidden_size }
  /** The classifier's dropout: cls_dropout, else hidden_dropout_prob. */
  get cls_dropout(): number { return (this.extra.cls_dropout as number | null | undefined) ?? this.hidden_dropout_prob }
  get pooler_hidden_size(): number { return (this.extra.pooler_hidden_size as number | undefined) ?? this.hidden_size }

  /** max_relative_positions, or max_position_embeddings when it is below 1, as the attention reads it. */
  get maxRelativePositions(): number {
    return this.max_relative_positions < 1 ? this.max_position_embeddings : this.max_relative_positions
  }

  /** Half the rows of rel_embeddings: position_buckets when set, else maxRelativePositions (transformers' pos_ebd_size). */
  get attentionSpan(): number {
    return this.position_buckets > 0 ? this.position_buckets : this.maxRelativePositions
  }

  get usesC2p(): boolean { return (this.pos_att_type ?? []).includes('c2p') }
  get usesP2c(): boolean { return (this.pos_att_type ?? []).includes('p2c') }

  private validate(source: string): void {
    const c = new ConfigChecker(source, this as unknown as Record<string, unknown>)
    c.encoderSizes()
    c.size('num_labels')
    c.size('embedding_size', 'hidden_size')
    c.size('type_vocab_size', 'type_vocab_size', 0)
    c.multipleOf('hidden_size', 'num_attention_heads')
    c.activation('hidden_act')
    c.activation('pooler_hidden_act')
    for (const k of ['hidden_dropout_prob', 'attention_probs_dropout_prob', 'pooler_dropout', 'cls_dropout']) c.probability(k)
    c.number('layer_norm_eps', { min: 0, exclusiveMin: true })
    c.number('initializer_range', { min: 0 })
    c.bool('relative_attention')
    c.bool('position_biased_input')
    c.bool('share_att_key')
    if (this.pos_att_type !== null && (!Array.isArray(this.pos_att_type) || this.pos_att_type.some((s) => typeof s !== 'string'))) {
      c.fail('pos_att_type', 'null, a list of strings (e.g. ["p2c", "c2p"]) or a "|"-separated string')
    }
    if (this.extra.norm_rel_ebd !== undefined && this.extra.norm_rel_ebd !== null && typeof this.extra.norm_rel_ebd !== 'string') {
      throw new Error(`${source}: norm_rel_ebd must be a string ("none" or "layer_norm"), got ${JSON.stringify(this.extra.norm_rel_ebd)}`)
    }
    // Both size rel_embeddings (2 x span rows) when relative_attention is on.
    c.int('max_relative_positions', -Number.MAX_SAFE_INTEGER, SIZE_LIMITS.max_position_embeddings)
    c.int('position_buckets', -Number.MAX_SAFE_INTEGER, SIZE_LIMITS.max_position_embeddings)
    if (this.relative_attention && this.position_buckets > 0 && this.position_buckets < 2) {
      throw new Error(`${source}: position_buckets ${this.position_buckets} leaves no room for log buckets (use -1 or at least 2)`)
    }
    c.int('pad_token_id', 0, this.vocab_size - 1)
    c.int('pooler_hidden_size', 1)
    // What bertkit does not build: refuse it by name rather than compute something else.
    const convKernel = this.extra.conv_kernel_size
    if (convKernel !== undefined && convKernel !== null && Number(convKernel) > 0) {
      throw new Error(`${source}: conv_kernel_size ${JSON.stringify(convKernel)} (DeBERTa-v2's convolution layer) is not supported by bertkit; only configs without it (DeBERTa-v3) are`)
    }
    const headSize = this.extra.attention_head_size
    if (headSize !== undefined && headSize !== this.hidden_size / this.num_attention_heads) {
      throw new Error(`${source}: attention_head_size ${JSON.stringify(headSize)} other than hidden_size / num_attention_heads (${this.hidden_size / this.num_attention_heads}) is not supported`)
    }
    if (this.pooler_hidden_size !== this.hidden_size) {
      throw new Error(`${source}: pooler_hidden_size ${JSON.stringify(this.pooler_hidden_size)} other than hidden_size ${this.hidden_size} is not supported (transformers' classifier reads hidden_size features)`)
    }
    const norms = this.norm_rel_ebd.filter((s) => s !== 'none' && s !== 'layer_norm' && s !== '')
    if (norms.length) throw new Error(`${source}: norm_rel_ebd ${JSON.stringify(this.extra.norm_rel_ebd)} is not supported (use "none" or "layer_norm")`)
    checkProblemType(source, this.problem_type, this.num_labels)
  }

  toJSON(): Record<string, unknown> {
    return configJson(this, this.extra, [...Object.keys(DEFAULTS), ...LABEL_KEYS])
  }
}
