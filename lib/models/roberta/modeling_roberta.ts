// RoBERTa for sequence classification, module for module as transformers'
// modeling_roberta.py builds it. The encoder layers are BERT's (transformers
// copies them verbatim); what differs is the embeddings (position ids counted
// from input_ids past the padding index, the position table registered last,
// its padding row getting no gradient), no pooler in the classification
// model, and RobertaClassificationHead: dropout → dense → tanh → dropout →
// out_proj on the <s> token.
import { Module } from '../../nn/module.js'
import { Linear, Embedding, LayerNorm, Dropout } from '../../nn/layers.js'
import { tanh } from '../../tensor/ops.js'
import type { Tensor } from '../../tensor/tensor.js'
import type { DeviceName } from '../../tensor/device.js'
import { BertEncoder, BertPooler, bertCheckpointShapes, bertEmbeddingsForward, firstTokens } from '../bert/modeling_bert.js'
import { withPackedBatch, type PackedBatch } from '../../tensor/packing.js'
import { encoderForward, PreTrainedModel, type CheckpointShapes, type EncoderIdInputs, type SequenceClassificationInputs } from '../modeling_utils.js'
import type { SequenceClassifierOutput } from '../modeling_outputs.js'
import { RobertaConfig } from './configuration_roberta.js'

/**
 * RobertaModel's inputs: token types default to zeros (RoBERTa checkpoints
 * have a single token type), positions to
 * createPositionIdsFromInputIds(input_ids, pad_token_id).
 */
export type RobertaInputs = EncoderIdInputs
export type RobertaForSequenceClassificationInputs = SequenceClassificationInputs

/** transformers' RobertaPreTrainedModel: how RoBERTa checkpoints load (BERT's modules under "roberta."). */
export abstract class RobertaPreTrainedModel extends PreTrainedModel<RobertaConfig> {
  static override readonly configClass = RobertaConfig
  static override readonly baseModelPrefix = 'roberta'
  static override readonly baseModules = ['embeddings', 'encoder', 'pooler']

  static override checkpointShapes(config: RobertaConfig): CheckpointShapes {
    return bertCheckpointShapes('roberta.', config, 'classifier.out_proj.weight')
  }
}

/**
 * transformers' create_position_ids_from_input_ids: a token that is not the
 * pad id gets padding_idx + (how many non-pad tokens up to and including it);
 * a pad id gets padding_idx. It looks at the ids, not the attention mask: a
 * left-padded row starts at padding_idx + 1 after its padding, and a pad id
 * the mask attends to still gets padding_idx.
 */
export function createPositionIdsFromInputIds(inputIds: Int32Array, batch: number, seq: number, paddingIdx: number): Int32Array {
  const out = new Int32Array(batch * seq)
  for (let b = 0; b < batch; b++) {
    let count = 0
    for (let s = 0; s < seq; s++) {
      const i = b * seq + s
      if (inputIds[i] !== paddingIdx) out[i] = paddingIdx + ++count
      else out[i] = paddingIdx
    }
  }
  return out
}

export class RobertaEmbeddings extends Module {
  readonly word_embeddings: Embedding
  readonly token_type_embeddings: Embedding
  readonly LayerNorm: LayerNorm
  readonly dropout: Dropout
  readonly position_embeddings: Embedding
  readonly paddingIdx: number

  constructor(readonly config: RobertaConfig, device?: DeviceName) {
    super()
    const std = config.initializer_range
    this.paddingIdx = config.pad_token_id
    // transformers' registration order: the position table comes after dropout.
    this.word_embeddings = this.registerModule('word_embeddings', new Embedding(config.vocab_size, config.hidden_size, { std, device, paddingIdx: config.pad_token_id }))
    this.token_type_embeddings = this.registerModule('token_type_embeddings', new Embedding(config.type_vocab_size, config.hidden_size, { std, device }))
    this.LayerNorm = this.registerModule('LayerNorm', new LayerNorm(config.hidden_size, config.layer_norm_eps, { device }))
    this.dropout = this.registerModule('dropout', new Dropout(config.hidden_dropout_prob))
    this.position_embeddings = this.registerModule('position_embeddings', new Embedding(config.max_position_embeddings, config.hidden_size, { std, device, paddingIdx: config.pad_token_id }))
  }

  /** With `packed`, looks up the real tokens only and returns [tokens, hidden]. */
  forward(inputIds: Tensor, tokenTypeIds: Tensor, positionIds: Tensor, packed: PackedBatch | null = null): Tensor {
    return bertEmbeddingsForward(this, inputIds, tokenTypeIds, positionIds, packed)
  }
}

export class RobertaModel extends RobertaPreTrainedModel {
  readonly embeddings: RobertaEmbeddings
  readonly encoder: BertEncoder
  readonly pooler: BertPooler | null

  constructor(readonly config: RobertaConfig, options: { device?: DeviceName; addPoolingLayer?: boolean } = {}) {
    super()
    this.embeddings = this.registerModule('embeddings', new RobertaEmbeddings(config, options.device))
    this.encoder = this.registerModule('encoder', new BertEncoder(config, options.device))
    this.pooler = options.addPoolingLayer === false ? null : this.registerModule('pooler', new BertPooler(config, options.device))
  }

  /**
   * Returns the last hidden state [batch, seq, hidden] and the pooled output
   * (or null). Without positionIds, the position ids are computed from
   * input_ids on the host: one device-to-host read of the ids on CUDA.
   * With `unpad`, as BertModel.forward: a batch may run unpadded, `packed`
   * (disposed by the caller) is its layout and lastHiddenState [tokens, hidden].
   */
  forward(inputs: RobertaInputs, options: { unpad?: boolean } = {}): { lastHiddenState: Tensor; poolerOutput: Tensor | null; packed: PackedBatch | null } {
    const owner = 'RobertaModel'
    const { inputIds } = inputs
    return encoderForward(owner, inputs, { unpad: options.unpad }, (ids) => {
      const { batch, seq } = ids
      const mask = ids.attentionMask()
      const types = ids.tokenTypeIds()
      const positions = ids.positionIds(() => {
        const made = createPositionIdsFromInputIds(inputIds.toInt32Array(), batch, seq, this.config.pad_token_id)
        const needed = made.reduce((m, v) => Math.max(m, v), 0) + 1
        if (needed > this.config.max_position_embeddings) {
          throw new RangeError(`${owner}: a row of ${needed - 1 - this.config.pad_token_id} non-pad tokens needs position id ${needed - 1} ` +
            `(RoBERTa counts positions from pad_token_id ${this.config.pad_token_id} + 1), but max_position_embeddings is ${this.config.max_position_embeddings}; truncate the input`)
        }
        return made
      })
      const packed = ids.unpad()
      const lastHiddenState = withPackedBatch(packed, () =>
        this.encoder.forward(this.embeddings.forward(inputIds, types, positions, packed), packed ?? mask))
      const poolerOutput = this.pooler ? this.pooler.forward(lastHiddenState, packed) : null
      return { lastHiddenState, poolerOutput }
    })
  }
}

/** dropout → dense → tanh → dropout → out_proj on h[:, 0] (the <s> token). */
export class RobertaClassificationHead extends Module {
  readonly dense: Linear
  readonly dropout: Dropout
  readonly out_proj: Linear

  constructor(config: RobertaConfig, device?: DeviceName) {
    super()
    const std = config.initializer_range
    this.dense = this.registerModule('dense', new Linear(config.hidden_size, config.hidden_size, { std, device }))
    this.dropout = this.registerModule('dropout', new Dropout(config.classifier_dropout ?? config.hidden_dropout_prob))
    this.out_proj = this.registerModule('out_proj', new Linear(config.hidden_size, config.num_labels, { std, device }))
  }

  /** hidden [batch, seq, hidden], or the real tokens [tokens, hidden] with `packed`. */
  forward(hidden: Tensor, packed: PackedBatch | null = null): Tensor {
    const first = firstTokens(hidden, packed)
    return this.out_proj.forward(this.dropout.forward(tanh(this.dense.forward(this.dropout.forward(first)))))
  }
}

/**
 * RobertaClassificationHead on <s>. fromPretrained on a base checkpoint
 * initialises the head; a checkpoint's pooler (roberta.pooler.*) and MLM
 * head (lm_head.*) are reported as unexpected, as transformers drops them.
 */
export class RobertaForSequenceClassification extends RobertaPreTrainedModel {
  readonly roberta: RobertaModel
  readonly classifier: RobertaClassificationHead
  readonly numLabels: number

  constructor(readonly config: RobertaConfig, options: { device?: DeviceName } = {}) {
    super()
    this.numLabels = config.num_labels
    this.roberta = this.registerModule('roberta', new RobertaModel(config, { device: options.device, addPoolingLayer: false }))
    this.classifier = this.registerModule('classifier', new RobertaClassificationHead(config, options.device))
  }

  forward(inputs: RobertaForSequenceClassificationInputs): SequenceClassifierOutput {
    const logits = this.onLastHiddenState(this.roberta.forward(inputs, { unpad: this.unpadsThisStep() }), (hidden, packed) => this.classifier.forward(hidden, packed))
    return this.classifierOutput(logits, inputs.labels)
  }
}
