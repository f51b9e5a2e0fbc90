// DistilBertConfig: transformers' config.json for DistilBERT, with its own
// field names (dim, n_layers, n_heads, hidden_dim, activation, dropout, …),
// snake_case on disk and in this object so a config round-trips unchanged.
// transformers' attribute_map names (hidden_size, num_attention_heads,
// num_hidden_layers) are read as aliases and offered as getters.
import type { ACTIVATION_CODE } from '../../native.js'
import { ConfigChecker, LABEL_KEYS, assignConfigFields, checkProblemType, configJson, readConfigJson, type LabelConfigFields, type ProblemType } from '../configuration_utils.js'

/** transformers' activation names (ACT2FN keys) that bertkit computes. */
export type DistilBertActivation = keyof typeof ACTIVATION_CODE

export interface DistilBertConfigFields extends LabelConfigFields {
  model_type: string
  vocab_size: number
  max_position_embeddings: number
  sinusoidal_pos_embds: boolean
  n_layers: number
  n_heads: number
  dim: number
  hidden_dim: number
  dropout: number
  attention_dropout: number
  activation: DistilBertActivation
  initializer_range: number
  qa_dropout: number
  seq_classif_dropout: number
  pad_token_id: number
}

// transformers' DistilBertConfig defaults (distilbert-base-uncased).
const DEFAULTS: Omit<DistilBertConfigFields, 'num_labels' | 'id2label' | 'label2id'> = {
  model_type: 'distilbert',
  vocab_size: 30522,
  max_position_embeddings: 512,
  sinusoidal_pos_embds: false,
  n_layers: 6,
  n_heads: 12,
  dim: 768,
  hidden_dim: 4 * 768,
  dropout: 0.1,
  attention_dropout: 0.1,
  activation: 'gelu',
  initializer_range: 0.02,
  qa_dropout: 0.1,
  seq_classif_dropout: 0.2,
  pad_token_id: 0,
  problem_type: null,
}

const ALIASES = { dim: 'hidden_size', n_heads: 'num_attention_heads', n_layers: 'num_hidden_layers' } as const
const REQUIRED_IN_FILE = ['vocab_size', ['dim', 'hidden_size'], ['n_layers', 'num_hidden_layers'], ['n_heads', 'num_attention_heads'], 'hidden_dim'] as const

/** DistilBERT's LayerNorms use a fixed eps of 1e-12 in transformers, whatever the config says. */
export const DISTILBERT_LAYER_NORM_EPS = 1e-12

export class DistilBertConfig implements DistilBertConfigFields {
  model_type!: string
  vocab_size!: number
  max_position_embeddings!: number
  sinusoidal_pos_embds!: boolean
  n_layers!: number
  n_heads!: number
  dim!: number
  hidden_dim!: number
  dropout!: number
  attention_dropout!: number
  activation!: DistilBertActivation
  initializer_range!: number
  qa_dropout!: number
  seq_classif_dropout!: number
  pad_token_id!: number
  num_labels!: number
  id2label!: Record<string, string>
  label2id!: Record<string, number>
  problem_type!: ProblemType | null
  /** Fields we do not interpret, kept so savePretrained writes them back. */
  readonly extra: Record<string, unknown> = {}

  constructor(fields: Partial<DistilBertConfigFields> & Record<string, unknown> = {}, source = 'DistilBertConfig') {
    const given: Record<string, unknown> = { ...fields }
    for (const [name, alias] of Object.entries(ALIASES)) {
      if (given[alias] === undefined) continue
      if (given[name] !== undefined && given[name] !== given[alias]) {
        throw new Error(`${source}: ${name} ${JSON.stringify(given[name])} and its alias ${alias} ${JSON.stringify(given[alias])} disagree`)
      }
      given[name] = given[alias]
      delete given[alias]
    }
    assignConfigFields(this, this.extra, DEFAULTS, given, source)
    this.validate(source)
  }

  get hidden_size(): number { return this.dim }
  get num_attention_heads(): number { return this.n_heads }
  get num_hidden_layers(): number { return this.n_layers }

  /** Reads config.json; `overrides` (e.g. num_labels) win over the file, as from_pretrained's kwargs. */
  static fromFile(path: string, overrides: Partial<DistilBertConfigFields> & Record<string, unknown> = {}): DistilBertConfig {
    return new DistilBertConfig(readConfigJson(path, overrides, REQUIRED_IN_FILE) as Partial<DistilBertConfigFields>, path)
  }

  private validate(source: string): void {
    const c = new ConfigChecker(source, this as unknown as Record<string, unknown>)
    if (typeof this.model_type !== 'string') c.fail('model_type', 'a string')
    c.size('vocab_size')
    c.size('max_position_embeddings')
    c.size('n_layers', 'num_hidden_layers')
    c.size('n_heads', 'num_attention_heads')
    c.size('dim', 'hidden_size')
    c.size('hidden_dim', 'intermediate_size')
    c.size('num_labels')
    c.multipleOf('dim', 'n_heads')
    c.activation('activation')
    for (const k of ['dropout', 'attention_dropout', 'seq_classif_dropout', 'qa_dropout']) c.probability(k)
    c.bool('sinusoidal_pos_embds')
    c.int('pad_token_id', 0, this.vocab_size - 1)
    c.number('initializer_range', { min: 0 })
    checkProblemType(source, this.problem_type, this.num_labels)
  }

  toJSON(): Record<string, unknown> {
    return configJson(this, this.extra, [...Object.keys(DEFAULTS), ...LABEL_KEYS])
  }
}
