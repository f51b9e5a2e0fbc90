// BERT for sequence classification, module for module as transformers'
// modeling_bert.py builds it: same names, same registration order, same
// numerics (erf GELU, LayerNorm eps from the config, additive attention mask
// with the float32 minimum, pooler = tanh(dense(h[:, 0]))).
import { Module } from '../../nn/module.js'
import { Linear, Embedding, LayerNorm, Dropout, denseActivation } from '../../nn/layers.js'
import {
  activation, add, attention, reshape, sliceRows, tanh,
  maskedMeanPool, maskedMaxPool,
} from '../../tensor/ops.js'
import type { Tensor } from '../../tensor/tensor.js'
import { asPacked, firstTokenRows, unpackRows, varlenAttention, withPackedBatch, PackedBatch } from '../../tensor/packing.js'
import type { DeviceName } from '../../tensor/device.js'
import { BertConfig } from './configuration_bert.js'
import {
  embedIds, encoderForward, EncoderLayerStack, PreTrainedModel, type CheckpointShapes, type EncoderIdInputs, type SequenceClassificationInputs,
} from '../modeling_utils.js'
import type { SequenceClassifierOutput } from '../modeling_outputs.js'

/** BertModel's inputs: token types default to zeros, positions to 0..seq-1 in every row. */
export type BertInputs = EncoderIdInputs

export type { SequenceClassifierOutput }

/** h[:, 0] as [batch, width]: of hidden [batch, seq, width], or of the real tokens [tokens, width] with `packed`. */
export function firstTokens(hidden: Tensor, packed: PackedBatch | null): Tensor {
  if (packed) return firstTokenRows(hidden, packed)
  const [batch, , width] = hidden.shape
  return reshape(sliceRows(hidden, 0, 1), [batch, width])
}

/** The tables and norms BertEmbeddings and RobertaEmbeddings both hold (registered in their own orders). */
interface BertStyleEmbeddings {
  readonly word_embeddings: Embedding
  readonly position_embeddings: Embedding
  readonly token_type_embeddings: Embedding
  readonly LayerNorm: LayerNorm
  readonly dropout: Dropout
}

/**
 * transformers: (inputs_embeds + token_type_embeddings) + position_embeddings,
 * then LayerNorm and dropout. With `packed`, looks up the real tokens only
 * and returns [tokens, hidden].
 */
export function bertEmbeddingsForward(e: BertStyleEmbeddings, inputIds: Tensor, tokenTypeIds: Tensor, positionIds: Tensor, packed: PackedBatch | null): Tensor {
  const words = embedIds('input_ids', e.word_embeddings, inputIds, packed)
  const types = embedIds('token_type_ids', e.token_type_embeddings, tokenTypeIds, packed)
  const positions = embedIds('position_ids', e.position_embeddings, positionIds, packed)
  return e.dropout.forward(e.LayerNorm.forward(add(words, types), positions), packed)
}

export class BertEmbeddings extends Module {
  readonly word_embeddings: Embedding
  readonly position_embeddings: Embedding
  readonly token_type_embeddings: Embedding
  readonly LayerNorm: LayerNorm
  readonly dropout: Dropout

  constructor(readonly config: BertConfig, device?: DeviceName) {
    super()
    const std = config.initializer_range
    this.word_embeddings = this.registerModule('word_embeddings', new Embedding(config.vocab_size, config.hidden_size, { std, device, paddingIdx: config.pad_token_id }))
    this.position_embeddings = this.registerModule('position_embeddings', new Embedding(config.max_position_embeddings, config.hidden_size, { std, device }))
    this.token_type_embeddings = this.registerModule('token_type_embeddings', new Embedding(config.type_vocab_size, config.hidden_size, { std, device }))
    this.LayerNorm = this.registerModule('LayerNorm', new LayerNorm(config.hidden_size, config.layer_norm_eps, { device }))
    this.dropout = this.registerModule('dropout', new Dropout(config.hidden_dropout_prob))
  }

  /** With `packed`, looks up the real tokens only and returns [tokens, hidden]. */
  forward(inputIds: Tensor, tokenTypeIds: Tensor, positionIds: Tensor, packed: PackedBatch | null = null): Tensor {
    return bertEmbeddingsForward(this, inputIds, tokenTypeIds, positionIds, packed)
  }
}

export class BertSelfAttention extends Module {
  readonly query: Linear
  readonly key: Linear
  readonly value: Linear
  readonly dropout: Dropout

  constructor(readonly config: BertConfig, device?: DeviceName) {
    super()
    const h = config.hidden_size
    const std = config.initializer_range
    this.query = this.registerModule('query', new Linear(h, h, { std, device }))
    this.key = this.registerModule('key', new Linear(h, h, { std, device }))
    this.value = this.registerModule('value', new Linear(h, h, { std, device }))
    this.dropout = this.registerModule('dropout', new Dropout(config.attention_probs_dropout_prob))
  }

  /** mask: the attention mask, or the packed layout when hidden holds the real tokens [tokens, hidden]. */
  forward(hidden: Tensor, mask: Tensor | PackedBatch): Tensor {
    const options = { heads: this.config.num_attention_heads, dropoutP: this.dropout.p, training: this.dropout.training }
    const q = this.query.forward(hidden), k = this.key.forward(hidden), v = this.value.forward(hidden)
    return mask instanceof PackedBatch ? varlenAttention(q, k, v, mask, options) : attention(q, k, v, mask, options)
  }
}

/** The config fields the feed-forward blocks below read (DeBERTa's config has them too and reuses the blocks). */
export type FeedForwardConfig = Pick<BertConfig, 'hidden_size' | 'intermediate_size' | 'hidden_act' | 'hidden_dropout_prob' | 'layer_norm_eps' | 'initializer_range'>

/** dense → dropout → LayerNorm(· + input): BertSelfOutput and BertOutput share this shape. */
export class DenseDropoutResidualNorm extends Module {
  readonly dense: Linear
  readonly LayerNorm: LayerNorm
  readonly dropout: Dropout

  constructor(config: FeedForwardConfig, inFeatures: number, device?: DeviceName) {
    super()
    this.dense = this.registerModule('dense', new Linear(inFeatures, config.hidden_size, { std: config.initializer_range, device }))
    this.LayerNorm = this.registerModule('LayerNorm', new LayerNorm(config.hidden_size, config.layer_norm_eps, { device }))
    this.dropout = this.registerModule('dropout', new Dropout(config.hidden_dropout_prob))
  }

  forward(hidden: Tensor, input: Tensor, packed: PackedBatch | null = null): Tensor {
    return this.LayerNorm.forward(this.dropout.forward(this.dense.forward(hidden), packed), input)
  }
}

export class BertSelfOutput extends DenseDropoutResidualNorm {
  constructor(config: BertConfig, device?: DeviceName) {
    super(config, config.hidden_size, device)
  }
}

export class BertAttention extends Module {
  readonly self: BertSelfAttention
  readonly output: BertSelfOutput

  constructor(config: BertConfig, device?: DeviceName) {
    super()
    this.self = this.registerModule('self', new BertSelfAttention(config, device))
    this.output = this.registerModule('output', new BertSelfOutput(config, device))
  }

  forward(hidden: Tensor, mask: Tensor | PackedBatch): Tensor {
    return this.output.forward(this.self.forward(hidden, mask), hidden, asPacked(mask))
  }
}

export class BertIntermediate extends Module {
  readonly dense: Linear

  constructor(readonly config: FeedForwardConfig, device?: DeviceName) {
    super()
    this.dense = this.registerModule('dense', new Linear(config.hidden_size, config.intermediate_size, { std: config.initializer_range, device }))
  }

  forward(hidden: Tensor): Tensor {
    return denseActivation(this.dense, hidden, this.config.hidden_act)
  }
}

export class BertOutput extends DenseDropoutResidualNorm {
  constructor(config: BertConfig, device?: DeviceName) {
    super(config, config.intermediate_size, device)
  }
}

export class BertLayer extends Module {
  readonly attention: BertAttention
  readonly intermediate: BertIntermediate
  readonly output: BertOutput

  constructor(config: BertConfig, device?: DeviceName) {
    super()
    this.attention = this.registerModule('attention', new BertAttention(config, device))
    this.intermediate = this.registerModule('intermediate', new BertIntermediate(config, device))
    this.output = this.registerModule('output', new BertOutput(config, device))
  }

  forward(hidden: Tensor, mask: Tensor | PackedBatch): Tensor {
    const attended = this.attention.forward(hidden, mask)
    return this.output.forward(this.intermediate.forward(attended), attended, asPacked(mask))
  }
}

export class BertEncoder extends EncoderLayerStack<BertLayer> {
  constructor(config: BertConfig, device?: DeviceName) {
    super(config.num_hidden_layers, () => new BertLayer(config, device))
  }
}

export class BertPooler extends Module {
  readonly dense: Linear

  constructor(config: BertConfig, device?: DeviceName) {
    super()
    this.dense = this.registerModule('dense', new Linear(config.hidden_size, config.hidden_size, { std: config.initializer_range, device }))
  }

  /** tanh(dense(h[:, 0])); with `packed`, hidden holds the real tokens [tokens, hidden]. */
  forward(hidden: Tensor, packed: PackedBatch | null = null): Tensor {
    return tanh(this.dense.forward(firstTokens(hidden, packed)))
  }
}

/** What BERT's and RoBERTa's checkpoints pin down (the same modules under "bert." / "roberta."). */
export function bertCheckpointShapes(prefix: string, config: BertConfig, classifier: string): CheckpointShapes {
  const h: [string, number] = ['hidden_size', config.hidden_size]
  return {
    prefix,
    tensors: [
      { name: 'embeddings.word_embeddings.weight', dims: [['vocab_size', config.vocab_size], h] },
      { name: 'embeddings.position_embeddings.weight', dims: [['max_position_embeddings', config.max_position_embeddings], h] },
      { name: 'embeddings.token_type_embeddings.weight', dims: [['type_vocab_size', config.type_vocab_size], h] },
      { name: 'encoder.layer.0.intermediate.dense.weight', dims: [['intermediate_size', config.intermediate_size], h] },
      { name: classifier, dims: [['num_labels', config.num_labels], h] },
    ],
    layers: { name: 'encoder.layer', field: 'num_hidden_layers', value: config.num_hidden_layers },
  }
}

/** transformers' BertPreTrainedModel: how BERT checkpoints load. */
export abstract class BertPreTrainedModel extends PreTrainedModel<BertConfig> {
  static override readonly configClass = BertConfig
  static override readonly baseModelPrefix = 'bert'
  static override readonly baseModules = ['embeddings', 'encoder', 'pooler']

  static override checkpointShapes(config: BertConfig): CheckpointShapes {
    return bertCheckpointShapes('bert.', config, 'classifier.weight')
  }
}

export class BertModel extends BertPreTrainedModel {
  readonly embeddings: BertEmbeddings
  readonly encoder: BertEncoder
  readonly pooler: BertPooler | null

  constructor(readonly config: BertConfig, options: { addPoolingLayer?: boolean; device?: DeviceName } = {}) {
    super()
    this.embeddings = this.registerModule('embeddings', new BertEmbeddings(config, options.device))
    this.encoder = this.registerModule('encoder', new BertEncoder(config, options.device))
    this.pooler = options.addPoolingLayer === false ? null : this.registerModule('pooler', new BertPooler(config, options.device))
  }

  /**
   * Returns the last hidden state [batch, seq, hidden] and the pooled output
   * [batch, hidden] (null without a pooler, or when skipPooler: a head that
   * pools otherwise need not pay for it).
   *
   * With `unpad`, a batch with padding may run unpadded (lib/tensor/packing.ts):
   * `packed` is then its layout, which the caller must dispose, and
   * lastHiddenState holds the real tokens only, [tokens, hidden]. Without
   * `unpad` (the default) packed is null and the shapes are as above.
   */
  forward(inputs: BertInputs, options: { skipPooler?: boolean; unpad?: boolean } = {}): { lastHiddenState: Tensor; poolerOutput: Tensor | null; packed: PackedBatch | null } {
    return encoderForward('BertModel', inputs, { unpad: options.unpad, maxPositions: this.config.max_position_embeddings }, (batch) => {
      const mask = batch.attentionMask()
      const types = batch.tokenTypeIds()
      const positions = batch.positionIds()
      const packed = batch.unpad()
      const lastHiddenState = withPackedBatch(packed, () =>
        this.encoder.forward(this.embeddings.forward(inputs.inputIds, types, positions, packed), packed ?? mask))
      const poolerOutput = this.pooler && !options.skipPooler ? this.pooler.forward(lastHiddenState, packed) : null
      return { lastHiddenState, poolerOutput }
    })
  }
}

export type BertForSequenceClassificationInputs = SequenceClassificationInputs

export class BertForSequenceClassification extends BertPreTrainedModel {
  readonly bert: BertModel
  readonly dropout: Dropout
  readonly classifier: Linear
  readonly numLabels: number

  constructor(readonly config: BertConfig, options: { device?: DeviceName } = {}) {
    super()
    this.numLabels = config.num_labels
    this.bert = this.registerModule('bert', new BertModel(config, { device: options.device }))
    this.dropout = this.registerModule('dropout', new Dropout(config.classifier_dropout ?? config.hidden_dropout_prob))
    this.classifier = this.registerModule('classifier', new Linear(config.hidden_size, config.num_labels, { std: config.initializer_range, device: options.device }))
    if (config.classifier_pooling !== 'pooler') {
      // The pooler stays registered, so names, order and checkpoints remain
      // transformers' (which loads them and, ignoring classifier_pooling,
      // applies the pooler); no op reads it, so it is frozen to say so.
      for (const p of this.bert.pooler!.parameters()) p.requiresGrad = false
    }
  }

  forward(inputs: BertForSequenceClassificationInputs): SequenceClassifierOutput {
    const pooling = this.config.classifier_pooling
    const output = this.bert.forward(inputs, { skipPooler: pooling !== 'pooler', unpad: this.unpadsThisStep() })
    return this.onLastHiddenState(output, (hidden, packed) =>
      this.classifierOutput(this.classifier.forward(this.dropout.forward(this.pool(hidden, output.poolerOutput, inputs.attentionMask ?? null, packed))), inputs.labels))
  }

  /**
   * The classifier's input [batch, hidden], by config.classifier_pooling. With
   * `packed`, hidden holds the real tokens: mean and max pool the padded
   * layout they unpack to (zeros at the padding, which the mask leaves out).
   */
  private pool(hidden: Tensor, poolerOutput: Tensor | null, mask: Tensor | null, packed: PackedBatch | null): Tensor {
    switch (this.config.classifier_pooling) {
      case 'pooler': return poolerOutput!
      case 'cls': return firstTokens(hidden, packed)
      case 'mean': return maskedMeanPool(packed ? unpackRows(hidden, packed) : hidden, mask)
      case 'max': return maskedMaxPool(packed ? unpackRows(hidden, packed) : hidden, mask)
    }
  }
}
