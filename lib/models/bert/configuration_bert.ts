// BertConfig: transformers' config.json, read with its own field names
// (snake_case on disk and in this object, so a config round-trips unchanged).
import { readFileSync } from 'node:fs'

export type HiddenAct = 'gelu' | 'gelu_new' | 'relu' | 'tanh'
export type ProblemType = 'regression' | 'single_label_classification' | 'multi_label_classification'
/**
 * What BertForSequenceClassification feeds its classifier: transformers'
 * pooler (tanh(dense(h[:, 0]))), h[:, 0] itself, or the mean / max of h over
 * the unpadded tokens. A bertkit field: transformers ignores it and always uses the pooler.
 */
export type ClassifierPooling = 'pooler' | 'cls' | 'mean' | 'max'
export const CLASSIFIER_POOLINGS: readonly ClassifierPooling[] = ['pooler', 'cls', 'mean', 'max']

export interface BertConfigFields {
  model_type: string
  vocab_size: number
  hidden_size: number
  num_hidden_layers: number
  num_attention_heads: number
  intermediate_size: number
  hidden_act: HiddenAct
  hidden_dropout_prob: number
  attention_probs_dropout_prob: number
  classifier_dropout: number | null
  max_position_embeddings: number
  type_vocab_size: number
  layer_norm_eps: number
  initializer_range: number
  pad_token_id: number
  num_labels: number
  id2label: Record<string, string>
  label2id: Record<string, number>
  problem_type: ProblemType | null
  classifier_pooling: ClassifierPooling
  position_embedding_type?: string
  architectures?: string[]
}

// transformers' BertConfig defaults (bert-base-uncased).
const DEFAULTS: BertConfigFields = {
  model_type: 'bert',
  vocab_size: 30522,
  hidden_size: 768,
  num_hidden_layers: 12,
  num_attention_heads: 12,
  intermediate_size: 3072,
  hidden_act: 'gelu',
  hidden_dropout_prob: 0.1,
  attention_probs_dropout_prob: 0.1,
  classifier_dropout: null,
  max_position_embeddings: 512,
  type_vocab_size: 2,
  layer_norm_eps: 1e-12,
  initializer_range: 0.02,
  pad_token_id: 0,
  num_labels: 2,
  id2label: { 0: 'LABEL_0', 1: 'LABEL_1' },
  label2id: { LABEL_0: 0, LABEL_1: 1 },
  problem_type: null,
  classifier_pooling: 'pooler',
}

const REQUIRED_IN_FILE = ['hidden_size', 'num_hidden_layers', 'num_attention_heads', 'intermediate_size', 'vocab_size'] as const
const SUPPORTED_ACTS: HiddenAct[] = ['gelu', 'gelu_new', 'relu', 'tanh']

export class BertConfig implements BertConfigFields {
  model_type!: string
  vocab_size!: number
  hidden_size!: number
  num_hidden_layers!: number
  num_attention_heads!: number
  intermediate_size!: number
  hidden_act!: HiddenAct
  hidden_dropout_prob!: number
  attention_probs_dropout_prob!: number
  classifier_dropout!: number | null
  max_position_embeddings!: number
  type_vocab_size!: number
  layer_norm_eps!: number
  initializer_range!: number
  pad_token_id!: number
  num_labels!: number
  id2label!: Record<string, string>
  label2id!: Record<string, number>
  problem_type!: ProblemType | null
  classifier_pooling!: ClassifierPooling
  /** Fields we do not interpret, kept so savePretrained writes them back. */
  readonly extra: Record<string, unknown> = {}

  constructor(fields: Partial<BertConfigFields> & Record<string, unknown> = {}, source = 'BertConfig') {
    const merged: Record<string, unknown> = { ...DEFAULTS, ...fields }
    if (fields.num_labels !== undefined && fields.id2label === undefined) {
      merged.id2label = Object.fromEntries(Array.from({ length: Number(fields.num_labels) }, (_, i) => [String(i), `LABEL_${i}`]))
      merged.label2id = Object.fromEntries(Array.from({ length: Number(fields.num_labels) }, (_, i) => [`LABEL_${i}`, i]))
    } else if (fields.id2label !== undefined && fields.num_labels === undefined) {
      merged.num_labels = Object.keys(fields.id2label).length
    }
    for (const [k, v] of Object.entries(merged)) {
      if (k in DEFAULTS) (this as Record<string, unknown>)[k] = v
      else this.extra[k] = v
    }
    this.validate(source)
  }

  /** Reads config.json; `overrides` (e.g. num_labels) win over the file, as from_pretrained's kwargs. */
  static fromFile(path: string, overrides: Partial<BertConfigFields> = {}): BertConfig {
    let raw: unknown
    try {
      raw = JSON.parse(readFileSync(path, 'utf8'))
    } catch (err) {
      throw new Error(`${path}: cannot read config (${(err as Error).message})`)
    }
    if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw new Error(`${path}: config must be a JSON object`)
    const obj = raw as Record<string, unknown>
    const missing = REQUIRED_IN_FILE.filter((k) => obj[k] === undefined)
    if (missing.length) throw new Error(`${path}: config is missing required field(s) ${missing.join(', ')}`)
    const fields: Record<string, unknown> = { ...obj }
    if (overrides.num_labels !== undefined && overrides.num_labels !== obj.num_labels && overrides.id2label === undefined) {
      // A new label count invalidates the file's label names, as in transformers.
      delete fields.id2label
      delete fields.label2id
    }
    return new BertConfig({ ...fields, ...overrides } as Partial<BertConfigFields>, path)
  }

  private validate(source: string): void {
    const positiveInts: Array<keyof BertConfigFields> = ['vocab_size', 'hidden_size', 'num_hidden_layers', 'num_attention_heads',
      'intermediate_size', 'max_position_embeddings', 'type_vocab_size', 'num_labels']
    for (const k of positiveInts) {
      const v = this[k as keyof this] as unknown
      if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) throw new Error(`${source}: ${k} must be a positive integer, got ${JSON.stringify(v)}`)
    }
    if (this.hidden_size % this.num_attention_heads !== 0) {
      throw new Error(`${source}: hidden_size ${this.hidden_size} is not a multiple of num_attention_heads ${this.num_attention_heads}`)
    }
    if (!SUPPORTED_ACTS.includes(this.hidden_act)) {
      throw new Error(`${source}: hidden_act "${this.hidden_act}" is not supported (use one of ${SUPPORTED_ACTS.join(', ')})`)
    }
    for (const k of ['hidden_dropout_prob', 'attention_probs_dropout_prob'] as const) {
      if (!(this[k] >= 0 && this[k] < 1)) throw new Error(`${source}: ${k} must be in [0, 1), got ${this[k]}`)
    }
    if (this.classifier_dropout !== null && !(this.classifier_dropout >= 0 && this.classifier_dropout < 1)) {
      throw new Error(`${source}: classifier_dropout must be null or in [0, 1), got ${this.classifier_dropout}`)
    }
    if (!(this.layer_norm_eps > 0)) throw new Error(`${source}: layer_norm_eps must be positive`)
    const pet = this.extra.position_embedding_type
    if (pet !== undefined && pet !== 'absolute') {
      throw new Error(`${source}: position_embedding_type "${String(pet)}" is not supported (only "absolute")`)
    }
    if (this.problem_type !== null && !['regression', 'single_label_classification', 'multi_label_classification'].includes(this.problem_type)) {
      throw new Error(`${source}: unknown problem_type "${this.problem_type}"`)
    }
    if (!CLASSIFIER_POOLINGS.includes(this.classifier_pooling)) {
      throw new Error(`${source}: classifier_pooling ${JSON.stringify(this.classifier_pooling)} is not one of ${CLASSIFIER_POOLINGS.join(', ')}`)
    }
  }

  toJSON(): Record<string, unknown> {
    const out: Record<string, unknown> = { ...this.extra }
    for (const k of Object.keys(DEFAULTS)) out[k] = (this as Record<string, unknown>)[k]
    // The default head is transformers' own: leave its config.json exactly as transformers writes it.
    if (out.classifier_pooling === 'pooler') delete out.classifier_pooling
    return out
  }
}
