// DistilBERT for sequence classification, module for module as transformers'
// modeling_distilbert.py builds it: its own names (q_lin … out_lin,
// sa_layer_norm, ffn.lin1/lin2, output_layer_norm, pre_classifier), no token
// types, no pooler, LayerNorm eps fixed at 1e-12, the same additive attention
// mask as BERT's eager path, and the head relu(pre_classifier(h[:, 0])) →
// dropout → classifier.
import { Module } from '../../nn/module.js'
import { Linear, Embedding, LayerNorm, Dropout, denseActivation } from '../../nn/layers.js'
import { makeTensor, normalTensor } from '../../nn/init.js'
import { activation, attention, embedding, relu } from '../../tensor/ops.js'
import type { Tensor } from '../../tensor/tensor.js'
import type { DeviceName } from '../../tensor/device.js'
import { firstTokens } from '../bert/modeling_bert.js'
import { asPacked, varlenAttention, withPackedBatch, PackedBatch } from '../../tensor/packing.js'
import {
  embedIds, encoderForward, EncoderLayerStack, PreTrainedModel, type CheckpointShapes, type EncoderIdInputs, type SequenceClassificationInputs,
} from '../modeling_utils.js'
import type { SequenceClassifierOutput } from '../modeling_outputs.js'
import { DistilBertConfig, DISTILBERT_LAYER_NORM_EPS } from './configuration_distilbert.js'

/**
 * DistilBertModel's inputs: positions default to 0..seq-1 in every row.
 * tokenTypeIds is accepted and ignored: DistilBERT has no token types.
 * transformers' Trainer drops the column for DistilBERT; here the
 * collator's batch can be passed as it is.
 */
export type DistilBertInputs = EncoderIdInputs
export type DistilBertForSequenceClassificationInputs = SequenceClassificationInputs

/** transformers' DistilBertPreTrainedModel: how DistilBERT checkpoints load. */
export abstract class DistilBertPreTrainedModel extends PreTrainedModel<DistilBertConfig> {
  static override readonly configClass = DistilBertConfig
  static override readonly baseModelPrefix = 'distilbert'
  static override readonly baseModules = ['embeddings', 'transformer']

  static override checkpointShapes(config: DistilBertConfig): CheckpointShapes {
    return {
      prefix: 'distilbert.',
      tensors: [
        { name: 'embeddings.word_embeddings.weight', dims: [['vocab_size', config.vocab_size], ['dim', config.dim]] },
        { name: 'embeddings.position_embeddings.weight', dims: [['max_position_embeddings', config.max_position_embeddings], ['dim', config.dim]] },
        { name: 'transformer.layer.0.ffn.lin1.weight', dims: [['hidden_dim', config.hidden_dim], ['dim', config.dim]] },
        { name: 'classifier.weight', dims: [['num_labels', config.num_labels], ['dim', config.dim]] },
      ],
      layers: { name: 'transformer.layer', field: 'n_layers', value: config.n_layers },
    }
  }
}

/**
 * transformers' _create_sinusoidal_embeddings: row pos, column j holds
 * sin (even j) or cos (odd j) of pos / 10000^(2·⌊j/2⌋/dim), computed in
 * float64 and rounded to float32.
 */
export function sinusoidalPositionEmbeddings(positions: number, dim: number): Float32Array {
  const out = new Float32Array(positions * dim)
  for (let pos = 0; pos < positions; pos++) {
    for (let j = 0; j < dim; j++) {
      const angle = pos / Math.pow(10000, (2 * Math.floor(j / 2)) / dim)
      out[pos * dim + j] = j % 2 === 0 ? Math.sin(angle) : Math.cos(angle)
    }
  }
  return out
}

/**
 * The position table: an Embedding's "weight", initialised with sinusoids
 * when sinusoidal_pos_embds is set. transformers (5.x) leaves that table
 * trainable and loads it from the checkpoint like any weight, so only the
 * initial values differ.
 */
export class PositionEmbedding extends Module {
  readonly weight: Tensor

  constructor(readonly numEmbeddings: number, readonly embeddingDim: number, options: { std: number; sinusoidal: boolean; device?: DeviceName }) {
    super()
    const shape = [numEmbeddings, embeddingDim]
    this.weight = this.registerParameter('weight', options.sinusoidal
      ? makeTensor(shape, options.device, (values) => values.set(sinusoidalPositionEmbeddings(numEmbeddings, embeddingDim)))
      : normalTensor(shape, options.std, options.device))
  }

  forward(ids: Tensor): Tensor {
    return embedding(ids, this.weight)
  }
}

/** transformers' `Embeddings` of modeling_distilbert: LayerNorm(word + position), then dropout. */
export class DistilBertEmbeddings extends Module {
  readonly word_embeddings: Embedding
  readonly position_embeddings: PositionEmbedding
  readonly LayerNorm: LayerNorm
  readonly dropout: Dropout

  constructor(readonly config: DistilBertConfig, device?: DeviceName) {
    super()
    const std = config.initializer_range
    this.word_embeddings = this.registerModule('word_embeddings', new Embedding(config.vocab_size, config.dim, { std, device, paddingIdx: config.pad_token_id }))
    this.position_embeddings = this.registerModule('position_embeddings', new PositionEmbedding(config.max_position_embeddings, config.dim,
      { std, sinusoidal: config.sinusoidal_pos_embds, device }))
    this.LayerNorm = this.registerModule('LayerNorm', new LayerNorm(config.dim, DISTILBERT_LAYER_NORM_EPS, { device }))
    this.dropout = this.registerModule('dropout', new Dropout(config.dropout))
  }

  /** With `packed`, looks up the real tokens only and returns [tokens, dim]. */
  forward(inputIds: Tensor, positionIds: Tensor, packed: PackedBatch | null = null): Tensor {
    const words = embedIds('input_ids', this.word_embeddings, inputIds, packed)
    const positions = embedIds('position_ids', this.position_embeddings, positionIds, packed)
    return this.dropout.forward(this.LayerNorm.forward(words, positions), packed)
  }
}

export class DistilBertSelfAttention extends Module {
  readonly q_lin: Linear
  readonly k_lin: Linear
  readonly v_lin: Linear
  readonly out_lin: Linear
  readonly dropout: Dropout

  constructor(readonly config: DistilBertConfig, device?: DeviceName) {
    super()
    const d = config.dim
    const std = config.initializer_range
    this.q_lin = this.registerModule('q_lin', new Linear(d, d, { std, device }))
    this.k_lin = this.registerModule('k_lin', new Linear(d, d, { std, device }))
    this.v_lin = this.registerModule('v_lin', new Linear(d, d, { std, device }))
    this.out_lin = this.registerModule('out_lin', new Linear(d, d, { std, device }))
    this.dropout = this.registerModule('dropout', new Dropout(config.attention_dropout))
  }

  /** out_lin(softmax(q·kᵀ/√head_dim + mask)·v); the dropout is on the attention probabilities only. */
  forward(hidden: Tensor, mask: Tensor | PackedBatch): Tensor {
    const options = { heads: this.config.n_heads, dropoutP: this.dropout.p, training: this.dropout.training }
    const q = this.q_lin.forward(hidden), k = this.k_lin.forward(hidden), v = this.v_lin.forward(hidden)
    const context = mask instanceof PackedBatch ? varlenAttention(q, k, v, mask, options) : attention(q, k, v, mask, options)
    return this.out_lin.forward(context)
  }
}

/** lin1 → activation → lin2 → dropout. */
export class FFN extends Module {
  readonly dropout: Dropout
  readonly lin1: Linear
  readonly lin2: Linear

  constructor(readonly config: DistilBertConfig, device?: DeviceName) {
    super()
    const std = config.initializer_range
    this.dropout = this.registerModule('dropout', new Dropout(config.dropout))
    this.lin1 = this.registerModule('lin1', new Linear(config.dim, config.hidden_dim, { std, device }))
    this.lin2 = this.registerModule('lin2', new Linear(config.hidden_dim, config.dim, { std, device }))
  }

  forward(x: Tensor, packed: PackedBatch | null = null): Tensor {
    return this.dropout.forward(this.lin2.forward(denseActivation(this.lin1, x, this.config.activation)), packed)
  }
}

export class TransformerBlock extends Module {
  readonly attention: DistilBertSelfAttention
  readonly sa_layer_norm: LayerNorm
  readonly ffn: FFN
  readonly output_layer_norm: LayerNorm

  constructor(config: DistilBertConfig, device?: DeviceName) {
    super()
    this.attention = this.registerModule('attention', new DistilBertSelfAttention(config, device))
    this.sa_layer_norm = this.registerModule('sa_layer_norm', new LayerNorm(config.dim, DISTILBERT_LAYER_NORM_EPS, { device }))
    this.ffn = this.registerModule('ffn', new FFN(config, device))
    this.output_layer_norm = this.registerModule('output_layer_norm', new LayerNorm(config.dim, DISTILBERT_LAYER_NORM_EPS, { device }))
  }

  forward(hidden: Tensor, mask: Tensor | PackedBatch): Tensor {
    const attended = this.sa_layer_norm.forward(this.attention.forward(hidden, mask), hidden)
    return this.output_layer_norm.forward(this.ffn.forward(attended, asPacked(mask)), attended)
  }
}

export class Transformer extends EncoderLayerStack<TransformerBlock> {
  constructor(config: DistilBertConfig, device?: DeviceName) {
    super(config.n_layers, () => new TransformerBlock(config, device))
  }
}

export class DistilBertModel extends DistilBertPreTrainedModel {
  readonly embeddings: DistilBertEmbeddings
  readonly transformer: Transformer

  constructor(readonly config: DistilBertConfig, options: { device?: DeviceName } = {}) {
    super()
    this.embeddings = this.registerModule('embeddings', new DistilBertEmbeddings(config, options.device))
    this.transformer = this.registerModule('transformer', new Transformer(config, options.device))
  }

  /**
   * The last hidden state [batch, seq, dim]. With `unpad`, as
   * BertModel.forward: a batch may run unpadded, `packed` (disposed by the
   * caller) is its layout and lastHiddenState [tokens, dim].
   */
  forward(inputs: DistilBertInputs, options: { unpad?: boolean } = {}): { lastHiddenState: Tensor; packed: PackedBatch | null } {
    return encoderForward('DistilBertModel', inputs, { unpad: options.unpad, maxPositions: this.config.max_position_embeddings }, (batch) => {
      const mask = batch.attentionMask()
      const positions = batch.positionIds()
      const packed = batch.unpad()
      const lastHiddenState = withPackedBatch(packed, () =>
        this.transformer.forward(this.embeddings.forward(inputs.inputIds, positions, packed), packed ?? mask))
      return { lastHiddenState }
    })
  }
}

/**
 * relu(pre_classifier(h[:, 0])) → dropout → classifier. fromPretrained on a
 * base checkpoint initialises pre_classifier and classifier and reports the
 * MLM head (vocab_*) as unexpected.
 */
export class DistilBertForSequenceClassification extends DistilBertPreTrainedModel {
  readonly distilbert: DistilBertModel
  readonly pre_classifier: Linear
  readonly classifier: Linear
  readonly dropout: Dropout
  readonly numLabels: number

  constructor(readonly config: DistilBertConfig, options: { device?: DeviceName } = {}) {
    super()
    const std = config.initializer_range
    this.numLabels = config.num_labels
    this.distilbert = this.registerModule('distilbert', new DistilBertModel(config, { device: options.device }))
    this.pre_classifier = this.registerModule('pre_classifier', new Linear(config.dim, config.dim, { std, device: options.device }))
    this.classifier = this.registerModule('classifier', new Linear(config.dim, config.num_labels, { std, device: options.device }))
    this.dropout = this.registerModule('dropout', new Dropout(config.seq_classif_dropout))
  }

  forward(inputs: DistilBertForSequenceClassificationInputs): SequenceClassifierOutput {
    const first = this.onLastHiddenState(this.distilbert.forward(inputs, { unpad: this.unpadsThisStep() }), firstTokens)
    return this.classifierOutput(this.classifier.forward(this.dropout.forward(relu(this.pre_classifier.forward(first)))), inputs.labels)
  }
}
