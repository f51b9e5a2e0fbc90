// RobertaConfig: BertConfig's fields with RoBERTa's defaults, as transformers'
// RobertaConfig is BertConfig with a different vocabulary, pad/bos/eos ids and
// model_type. Everything else (type_vocab_size 2, layer_norm_eps 1e-12,
// max_position_embeddings 512) keeps BERT's defaults there too: roberta-base's
// config.json sets 1, 1e-5 and 514 itself.
import { BertConfig, type BertConfigFields } from '../bert/configuration_bert.js'
import { readConfigJson } from '../configuration_utils.js'

export type RobertaConfigFields = BertConfigFields & { bos_token_id?: number; eos_token_id?: number }

const ROBERTA_DEFAULTS = {
  model_type: 'roberta',
  vocab_size: 50265,
  pad_token_id: 1,
  bos_token_id: 0,
  eos_token_id: 2,
}

const REQUIRED_IN_FILE = ['hidden_size', 'num_hidden_layers', 'num_attention_heads', 'intermediate_size', 'vocab_size']

export class RobertaConfig extends BertConfig {
  constructor(fields: Partial<RobertaConfigFields> & Record<string, unknown> = {}, source = 'RobertaConfig') {
    super({ ...ROBERTA_DEFAULTS, ...fields }, source)
    // bertkit's pooling choice belongs to BERT's head; RoBERTa's head is RobertaClassificationHead.
    const pooling = (this as unknown as Record<string, unknown>).classifier_pooling ?? this.extra.classifier_pooling
    if (pooling !== undefined && pooling !== 'pooler') {
      throw new Error(`${source}: classifier_pooling ${JSON.stringify(pooling)} is not supported for RoBERTa (its head is transformers' RobertaClassificationHead on <s>)`)
    }
    if (!Number.isInteger(this.pad_token_id) || this.pad_token_id < 0 || this.pad_token_id >= this.max_position_embeddings) {
      // Positions are numbered from pad_token_id + 1, so the pad id must index the position table too.
      throw new Error(`${source}: pad_token_id ${this.pad_token_id} must be in [0, max_position_embeddings ${this.max_position_embeddings}) (RoBERTa numbers positions after it)`)
    }
  }

  get bos_token_id(): number | undefined {
    return this.extra.bos_token_id as number | undefined
  }

  get eos_token_id(): number | undefined {
    return this.extra.eos_token_id as number | undefined
  }

  /** Reads config.json; `overrides` (e.g. num_labels) win over the file, as from_pretrained's kwargs. */
  static override fromFile(path: string, overrides: Partial<RobertaConfigFields> & Record<string, unknown> = {}): RobertaConfig {
    return new RobertaConfig(readConfigJson(path, overrides, REQUIRED_IN_FILE) as Partial<RobertaConfigFields>, path)
  }
}
