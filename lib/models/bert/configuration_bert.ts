// BertConfig: transformers' config.json, read with its own field names
// (snake_case on disk and in this object, so a config round-trips unchanged).
import type { ACTIVATION_CODE } from '../../native.js'
import { ConfigChecker, assignConfigFields, checkProblemType, configJson, readConfigJson, type LabelConfigFields, type ProblemType } from '../configuration_utils.js'

/** transformers' activation names (ACT2FN keys) that bertkit computes. */
export type HiddenAct = keyof typeof ACTIVATION_CODE
export type { ProblemType }
/**
 * What BertForSequenceClassification feeds its classifier: transformers'
 * pooler (tanh(dense(h[:, 0]))), h[:, 0] itself, or the mean / max of h over
 * the unpadded tokens. A bertkit field: transformers ignores it and always uses the pooler.
 */
export type ClassifierPooling = 'pooler' | 'cls' | 'mean' | 'max'
export const CLASSIFIER_POOLINGS: readonly ClassifierPooling[] = ['pooler', 'cls', 'mean', 'max']

export interface BertConfigFields extends LabelConfigFields {
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
    assignConfigFields(this, this.extra, DEFAULTS, fields, source)
    this.validate(source)
  }

  /** Reads config.json; `overrides` (e.g. num_labels) win over the file, as from_pretrained's kwargs. */
  static fromFile(path: string, overrides: Partial<BertConfigFields> & Record<string, unknown> = {}): BertConfig {
    return new BertConfig(readConfigJson(path, overrides, REQUIRED_IN_FILE) as Partial<BertConfigFields>, path)
  }

  /**
   * Every field the model reads, by type and range, naming the field (and
   * the file, as `source`). RoBERTa shares these fields and this check.
   */
  protected validate(source: string): void {
    const c = new ConfigChecker(source, this as unknown as Record<string, unknown>)
    c.encoderSizes()
    c.size('type_vocab_size')
    c.size('num_labels')
    c.multipleOf('hidden_size', 'num_attention_heads')
    c.activation('hidden_act')
    c.probability('hidden_dropout_prob')
    c.probability('attention_probs_dropout_prob')
    c.probability('classifier_dropout', true)
    c.number('layer_norm_eps', { min: 0, exclusiveMin: true })
    c.number('initializer_range', { min: 0 })
    c.tokenId('pad_token_id', this.vocab_size, 'vocab_size')
    const pet = this.extra.position_embedding_type
    if (pet !== undefined && pet !== 'absolute') {
      throw new Error(`${source}: position_embedding_type ${JSON.stringify(pet)} is not supported (only "absolute")`)
    }
    checkProblemType(source, this.problem_type, this.num_labels)
    c.oneOf('classifier_pooling', CLASSIFIER_POOLINGS)
  }

  toJSON(): Record<string, unknown> {
    const out = configJson(this, this.extra, Object.keys(DEFAULTS))
    // The default head is transformers' own: leave its config.json exactly as transformers writes it.
    if (out.classifier_pooling === 'pooler') delete out.classifier_pooling
    return out
  }
}
