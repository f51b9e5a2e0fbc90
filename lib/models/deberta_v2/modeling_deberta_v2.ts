// DeBERTa-v2/v3 for sequence classification, module for module as
// transformers' modeling_deberta_v2.py builds it (names, registration order,
// numerics), with its eager attention:
//
//   scores = (q·kᵀ + c2p + p2c) / sqrt(head_dim · (1 + [c2p] + [p2c]))
//   c2p[i, j] = q_i · posK[c2p_index(i, j)]     posK = key_proj(rel)   (share_att_key)
//   p2c[i, j] = k_j · posQ[p2c_index(j, i)]     posQ = query_proj(rel)
//   probs = softmax(scores with (i, j) filled by the float32 minimum unless
//           tokens i and j are both real)
//
// rel is the encoder's rel_embeddings table (LayerNorm'ed when norm_rel_ebd
// says so), shared by every layer; the indices come from the relative
// position i - j, log-bucketed beyond position_buckets / 2 and clamped to the
// table. Heads are laid out first ([heads, batch·seq, head_dim]) so that the
// products with the position tables, which every batch row shares, are one
// strided gemm per call.
import { Module, ModuleList } from '../../nn/module.js'
import { Linear, Embedding, LayerNorm, Dropout } from '../../nn/layers.js'
import {
  activation, add, bmm, bmmTransposed, crossEntropy, softTargetCrossEntropy, gatherColumns, maskedSoftmax, mulRowsByMask,
  reshape, scale, sum, transpose12,
} from '../../tensor/ops.js'
import { tensor, formatShape, Tensor } from '../../tensor/tensor.js'
import { runEncoderLayer } from '../../nn/checkpointing.js'
import type { DeviceName } from '../../tensor/device.js'
import { BertIntermediate, DenseDropoutResidualNorm, firstTokens } from '../bert/modeling_bert.js'
import { packRows, unpackRows, withPackedBatch, type PackedBatch } from '../../tensor/packing.js'
import {
  embedIds, encoderForward, PreTrainedModel, type CheckpointShapes, type EncoderIdInputs, type SequenceClassificationInputs,
} from '../modeling_utils.js'
import type { SequenceClassifierOutput } from '../modeling_outputs.js'
import type { ProblemType } from '../configuration_utils.js'
import { DebertaV2Config } from './configuration_deberta_v2.js'

/**
 * DebertaV2Model's inputs: token types default to zeros and are ignored when
 * type_vocab_size is 0 (DeBERTa-v3), as in transformers; positions default to
 * 0..seq-1 and are read only when position_biased_input.
 */
export type DebertaV2Inputs = EncoderIdInputs
/** Class labels may be negative (unlabelled rows, left out of the loss); float label vectors are soft labels. */
export type DebertaV2ForSequenceClassificationInputs = SequenceClassificationInputs

/** transformers' DebertaV2PreTrainedModel: how DeBERTa-v2/v3 checkpoints load. */
export abstract class DebertaV2PreTrainedModel extends PreTrainedModel<DebertaV2Config> {
  static override readonly configClass = DebertaV2Config
  static override readonly baseModelPrefix = 'deberta'
  static override readonly baseModules = ['embeddings', 'encoder']

  static override checkpointShapes(config: DebertaV2Config): CheckpointShapes {
    const e: [string, number] = ['embedding_size', config.embedding_size]
    const h: [string, number] = ['hidden_size', config.hidden_size]
    const tensors: CheckpointShapes['tensors'] = [
      { name: 'embeddings.word_embeddings.weight', dims: [['vocab_size', config.vocab_size], e] },
      { name: 'encoder.layer.0.intermediate.dense.weight', dims: [['intermediate_size', config.intermediate_size], h] },
      { name: 'classifier.weight', dims: [['num_labels', config.num_labels], h] },
    ]
    if (config.position_biased_input) tensors.push({ name: 'embeddings.position_embeddings.weight', dims: [['max_position_embeddings', config.max_position_embeddings], e] })
    if (config.type_vocab_size > 0) tensors.push({ name: 'embeddings.token_type_embeddings.weight', dims: [['type_vocab_size', config.type_vocab_size], e] })
    if (config.relative_attention) {
      const span = config.position_buckets > 0 ? 'position_buckets' : config.max_relative_positions >= 1 ? 'max_relative_positions' : 'max_position_embeddings'
      tensors.push({ name: 'encoder.rel_embeddings.weight', dims: [[`2 x ${span}`, 2 * config.attentionSpan], h] })
    }
    return { prefix: 'deberta.', tensors, layers: { name: 'encoder.layer', field: 'num_hidden_layers', value: config.num_hidden_layers } }
  }
}

// ---- relative positions ---------------------------------------------------------------

/**
 * transformers' make_log_bucket_position for one relative position: kept as
 * it is within ±bucketSize/2, else mid + ceil(log(|rel| / mid) /
 * log((maxPosition - 1) / mid) · (mid - 1)) with rel's sign.
 */
export function logBucketPosition(relative: number, bucketSize: number, maxPosition: number): number {
  const mid = Math.floor(bucketSize / 2)
  const abs = Math.abs(relative)
  if (abs <= mid) return relative
  const logPos = Math.ceil(Math.log(abs / mid) / Math.log((maxPosition - 1) / mid) * (mid - 1)) + mid
  return Math.sign(relative) * logPos
}

/**
 * The gather indices of DisentangledSelfAttention for a sequence of `seq`:
 * c2p[i, j] = clamp(rel(i - j) + span, 0, 2·span - 1) and
 * p2c[j, i] = clamp(-rel(j - i) + span, 0, 2·span - 1), rel bucketed when
 * position_buckets > 0. Both int32 [seq, seq], row-major.
 */
export function relativePositionIndices(config: DebertaV2Config, seq: number): { c2p: Int32Array; p2c: Int32Array } {
  const span = config.attentionSpan
  const buckets = config.position_buckets
  const maxPosition = config.maxRelativePositions
  const rel = (d: number) => (buckets > 0 && maxPosition > 0 ? logBucketPosition(d, buckets, maxPosition) : d)
  const clamp = (v: number) => Math.min(2 * span - 1, Math.max(0, v))
  const c2p = new Int32Array(seq * seq)
  const p2c = new Int32Array(seq * seq)
  for (let a = 0; a < seq; a++) {
    for (let b = 0; b < seq; b++) {
      const r = rel(a - b)
      c2p[a * seq + b] = clamp(r + span)
      p2c[a * seq + b] = clamp(-r + span)
    }
  }
  return { c2p, p2c }
}

interface RelativeInputs {
  /** The rel_embeddings table as the layers read it (after LayerNorm): [2·span, hidden]. */
  table: Tensor
  c2pIndex: Tensor
  p2cIndex: Tensor
}

// ---- embeddings ---------------------------------------------------------------------------

export class DebertaV2Embeddings extends Module {
  readonly word_embeddings: Embedding
  readonly position_embeddings: Embedding | null
  readonly token_type_embeddings: Embedding | null
  readonly embed_proj: Linear | null
  readonly LayerNorm: LayerNorm
  readonly dropout: Dropout

  constructor(readonly config: DebertaV2Config, device?: DeviceName) {
    super()
    const std = config.initializer_range
    const width = config.embedding_size
    this.word_embeddings = this.registerModule('word_embeddings', new Embedding(config.vocab_size, width, { std, device, paddingIdx: config.pad_token_id }))
    this.position_embeddings = config.position_biased_input
      ? this.registerModule('position_embeddings', new Embedding(config.max_position_embeddings, width, { std, device }))
      : null
    this.token_type_embeddings = config.type_vocab_size > 0
      ? this.registerModule('token_type_embeddings', new Embedding(config.type_vocab_size, width, { std, device }))
      : null
    this.embed_proj = width !== config.hidden_size
      ? this.registerModule('embed_proj', new Linear(width, config.hidden_size, { std, device, bias: false }))
      : null
    this.LayerNorm = this.registerModule('LayerNorm', new LayerNorm(config.hidden_size, config.layer_norm_eps, { device }))
    this.dropout = this.registerModule('dropout', new Dropout(config.hidden_dropout_prob))
  }

  /**
   * mask: the caller's attention mask (rows are multiplied by it after
   * LayerNorm), or null for none. With `packed`, looks up the real tokens
   * only (whose mask is 1: nothing to multiply) and returns [tokens, hidden].
   */
  forward(inputIds: Tensor, tokenTypeIds: Tensor, positionIds: Tensor, mask: Tensor | null, packed: PackedBatch | null = null): Tensor {
    let embeddings = embedIds('input_ids', this.word_embeddings, inputIds, packed)
    if (this.position_embeddings) embeddings = add(embeddings, embedIds('position_ids', this.position_embeddings, positionIds, packed))
    if (this.token_type_embeddings) embeddings = add(embeddings, embedIds('token_type_ids', this.token_type_embeddings, tokenTypeIds, packed))
    if (this.embed_proj) embeddings = this.embed_proj.forward(embeddings)
    embeddings = this.LayerNorm.forward(embeddings)
    if (mask && !packed) embeddings = mulRowsByMask(embeddings, mask)
    return this.dropout.forward(embeddings, packed)
  }
}

// ---- attention -------------------------------------------------------------------------

export class DisentangledSelfAttention extends Module {
  readonly query_proj: Linear
  readonly key_proj: Linear
  readonly value_proj: Linear
  readonly pos_dropout: Dropout | null
  readonly pos_key_proj: Linear | null
  readonly pos_query_proj: Linear | null
  readonly dropout: Dropout
  readonly heads: number
  readonly headDim: number
  /** 1 / sqrt(head_dim · scale_factor), the factor applied to every score. */
  readonly scoreScale: number

  constructor(readonly config: DebertaV2Config, device?: DeviceName) {
    super()
    const h = config.hidden_size
    const std = config.initializer_range
    this.heads = config.num_attention_heads
    this.headDim = h / this.heads
    this.query_proj = this.registerModule('query_proj', new Linear(h, h, { std, device }))
    this.key_proj = this.registerModule('key_proj', new Linear(h, h, { std, device }))
    this.value_proj = this.registerModule('value_proj', new Linear(h, h, { std, device }))
    const relative = config.relative_attention
    this.pos_dropout = relative ? this.registerModule('pos_dropout', new Dropout(config.hidden_dropout_prob)) : null
    const separate = relative && !config.share_att_key
    this.pos_key_proj = separate && config.usesC2p ? this.registerModule('pos_key_proj', new Linear(h, h, { std, device })) : null
    this.pos_query_proj = separate && config.usesP2c ? this.registerModule('pos_query_proj', new Linear(h, h, { std, device })) : null
    this.dropout = this.registerModule('dropout', new Dropout(config.attention_probs_dropout_prob))
    // transformers counts c2p / p2c in the scale whether or not relative attention is on.
    const scaleFactor = 1 + (config.usesC2p ? 1 : 0) + (config.usesP2c ? 1 : 0)
    this.scoreScale = 1 / Math.fround(Math.sqrt(Math.fround(this.headDim * scaleFactor)))
  }

  /** [rows, heads·head_dim] → [heads, rows, head_dim] */
  private headsFirst(x: Tensor, rows: number): Tensor {
    return reshape(transpose12(reshape(x, [1, rows, this.heads, this.headDim])), [this.heads, rows, this.headDim])
  }

  /**
   * hidden [batch, seq, hidden]; with `packed`, the real tokens [tokens,
   * hidden]: the projections run on those, and the disentangled scores on
   * the padded layout they unpack to (zeros at the padding, which the mask
   * gives no weight), whose real rows are packed again.
   */
  forward(hidden: Tensor, mask: Tensor, relative: RelativeInputs | null, packed: PackedBatch | null = null): Tensor {
    const [batch, seq] = packed ? [packed.batch, packed.seq] : hidden.shape
    const width = hidden.shape[hidden.ndim - 1]
    const H = this.heads, D = this.headDim
    const tokens = batch * seq
    const project = (layer: Linear) => (packed ? unpackRows(layer.forward(hidden), packed) : layer.forward(hidden))
    const q = this.headsFirst(project(this.query_proj), tokens)
    const k = this.headsFirst(project(this.key_proj), tokens)
    const v = this.headsFirst(project(this.value_proj), tokens)
    const pairs = (x: Tensor) => reshape(x, [H * batch, seq, D])
    let scores = bmmTransposed(pairs(q), pairs(k))
    if (relative) {
      // Products with the position table, not with tokens: no packed layout applies (LoRA's dropout included).
      withPackedBatch(null, () => {
        const rel = this.pos_dropout!.forward(relative.table)
        const span2 = rel.shape[0]
        if (this.config.usesC2p) {
          const posKey = this.headsFirst((this.pos_key_proj ?? this.key_proj).forward(rel), span2)
          const c2p = reshape(bmmTransposed(q, posKey), [H * batch, seq, span2])
          scores = add(scores, gatherColumns(c2p, relative.c2pIndex))
        }
        if (this.config.usesP2c) {
          const posQuery = this.headsFirst((this.pos_query_proj ?? this.query_proj).forward(rel), span2)
          // Row j (a key) picks the position of query i; transposing gives [query, key].
          const p2c = gatherColumns(reshape(bmmTransposed(k, posQuery), [H * batch, seq, span2]), relative.p2cIndex)
          scores = add(scores, reshape(transpose12(reshape(p2c, [H * batch, seq, seq, 1])), [H * batch, seq, seq]))
        }
      })
    }
    const probs = this.dropout.forward(maskedSoftmax(reshape(scores, [H, batch, seq, seq]), mask, this.scoreScale))
    const context = bmm(reshape(probs, [H * batch, seq, seq]), pairs(v))
    const out = reshape(transpose12(reshape(context, [1, H, tokens, D])), [batch, seq, width])
    return packed ? packRows(out, packed) : out
  }
}

export class DebertaV2SelfOutput extends DenseDropoutResidualNorm {
  constructor(config: DebertaV2Config, device?: DeviceName) {
    super(config, config.hidden_size, device)
  }
}

export class DebertaV2Attention extends Module {
  readonly self: DisentangledSelfAttention
  readonly output: DebertaV2SelfOutput

  constructor(config: DebertaV2Config, device?: DeviceName) {
    super()
    this.self = this.registerModule('self', new DisentangledSelfAttention(config, device))
    this.output = this.registerModule('output', new DebertaV2SelfOutput(config, device))
  }

  forward(hidden: Tensor, mask: Tensor, relative: RelativeInputs | null, packed: PackedBatch | null = null): Tensor {
    return this.output.forward(this.self.forward(hidden, mask, relative, packed), hidden, packed)
  }
}

/** dense → activation, as BertIntermediate (transformers' DebertaV2Intermediate is the same module). */
export class DebertaV2Intermediate extends BertIntermediate {}

export class DebertaV2Output extends DenseDropoutResidualNorm {
  constructor(config: DebertaV2Config, device?: DeviceName) {
    super(config, config.intermediate_size, device)
  }
}

export class DebertaV2Layer extends Module {
  readonly attention: DebertaV2Attention
  readonly intermediate: DebertaV2Intermediate
  readonly output: DebertaV2Output

  constructor(config: DebertaV2Config, device?: DeviceName) {
    super()
    this.attention = this.registerModule('attention', new DebertaV2Attention(config, device))
    this.intermediate = this.registerModule('intermediate', new DebertaV2Intermediate(config, device))
    this.output = this.registerModule('output', new DebertaV2Output(config, device))
  }

  forward(hidden: Tensor, mask: Tensor, relative: RelativeInputs | null, packed: PackedBatch | null = null): Tensor {
    const attended = this.attention.forward(hidden, mask, relative, packed)
    return this.output.forward(this.intermediate.forward(attended), attended, packed)
  }
}

export class DebertaV2Encoder extends Module {
  readonly layer: ModuleList<DebertaV2Layer>
  readonly rel_embeddings: Embedding | null
  readonly LayerNorm: LayerNorm | null

  constructor(readonly config: DebertaV2Config, device?: DeviceName) {
    super()
    const std = config.initializer_range
    this.layer = this.registerModule('layer', new ModuleList(Array.from({ length: config.num_hidden_layers }, () => new DebertaV2Layer(config, device))))
    this.rel_embeddings = config.relative_attention
      ? this.registerModule('rel_embeddings', new Embedding(2 * config.attentionSpan, config.hidden_size, { std, device }))
      : null
    this.LayerNorm = config.norm_rel_ebd.includes('layer_norm')
      ? this.registerModule('LayerNorm', new LayerNorm(config.hidden_size, config.layer_norm_eps, { device }))
      : null
  }

  override get supportsGradientCheckpointing(): boolean {
    return true
  }

  /** get_rel_embedding: the table, through LayerNorm when norm_rel_ebd has "layer_norm"; null without relative attention. */
  relEmbedding(): Tensor | null {
    if (!this.rel_embeddings) return null
    const table = this.rel_embeddings.weight
    return this.LayerNorm ? this.LayerNorm.forward(table) : table
  }

  /** hidden [batch, seq, hidden], or the real tokens [tokens, hidden] with `packed` (mask is still the [batch, seq] mask). */
  forward(hidden: Tensor, mask: Tensor, packed: PackedBatch | null = null): Tensor {
    const seq = packed ? packed.seq : hidden.shape[1]
    const table = withPackedBatch(null, () => this.relEmbedding())
    let relative: RelativeInputs | null = null
    if (table) {
      const { c2p, p2c } = relativePositionIndices(this.config, seq)
      const device = hidden.device
      relative = {
        table,
        c2pIndex: tensor(c2p, { shape: [seq, seq], dtype: 'int32', device }),
        p2cIndex: tensor(p2c, { shape: [seq, seq], dtype: 'int32', device }),
      }
    }
    try {
      // One scope per layer, as BertEncoder: what backward does not need dies
      // with its layer, and frozen layers keep nothing.
      const r = relative
      for (const layer of this.layer.items) {
        hidden = r
          ? runEncoderLayer(this, layer, (h, m, table, c2p, p2c) => layer.forward(h!, m!, { table: table!, c2pIndex: c2p!, p2cIndex: p2c! }, packed), [hidden, mask, r.table, r.c2pIndex, r.p2cIndex])
          : runEncoderLayer(this, layer, (h, m) => layer.forward(h!, m!, null, packed), [hidden, mask])
      }
      return hidden
    } finally {
      // The gathers keep their own references to the indices for backward.
      relative?.c2pIndex.dispose()
      relative?.p2cIndex.dispose()
    }
  }
}

export class DebertaV2Model extends DebertaV2PreTrainedModel {
  readonly embeddings: DebertaV2Embeddings
  readonly encoder: DebertaV2Encoder

  constructor(readonly config: DebertaV2Config, options: { device?: DeviceName } = {}) {
    super()
    this.embeddings = this.registerModule('embeddings', new DebertaV2Embeddings(config, options.device))
    this.encoder = this.registerModule('encoder', new DebertaV2Encoder(config, options.device))
  }

  /**
   * The last hidden state [batch, seq, hidden]. With `unpad`, as
   * BertModel.forward: a batch may run unpadded, `packed` (disposed by the
   * caller) is its layout and lastHiddenState [tokens, hidden].
   */
  forward(inputs: DebertaV2Inputs, options: { unpad?: boolean } = {}): { lastHiddenState: Tensor; packed: PackedBatch | null } {
    const maxPositions = this.config.position_biased_input ? this.config.max_position_embeddings : null
    return encoderForward('DebertaV2Model', inputs, { unpad: options.unpad, maxPositions }, (batch) => {
      const given = inputs.attentionMask ?? null
      const mask = batch.attentionMask()
      const types = batch.tokenTypeIds()
      const positions = batch.positionIds()
      const packed = batch.unpad()
      // transformers multiplies by a mask of ones when none is given: nothing to do then.
      const lastHiddenState = withPackedBatch(packed, () =>
        this.encoder.forward(this.embeddings.forward(inputs.inputIds, types, positions, given ? mask : null, packed), mask, packed))
      return { lastHiddenState }
    })
  }
}

/** dropout(h[:, 0]) → dense → pooler_hidden_act. */
export class ContextPooler extends Module {
  readonly dense: Linear
  readonly dropout: Dropout

  constructor(readonly config: DebertaV2Config, device?: DeviceName) {
    super()
    const width = config.pooler_hidden_size
    this.dense = this.registerModule('dense', new Linear(width, width, { std: config.initializer_range, device }))
    this.dropout = this.registerModule('dropout', new Dropout(config.pooler_dropout))
  }

  /** hidden [batch, seq, hidden], or the real tokens [tokens, hidden] with `packed`. */
  forward(hidden: Tensor, packed: PackedBatch | null = null): Tensor {
    return activation(this.dense.forward(this.dropout.forward(firstTokens(hidden, packed))), this.config.pooler_hidden_act)
  }
}

/**
 * ContextPooler → dropout → classifier. fromPretrained on a pre-trained
 * checkpoint initialises the pooler and classifier and reports the
 * pre-training heads (lm_predictions.*, mask_predictions.*) as unexpected.
 */
export class DebertaV2ForSequenceClassification extends DebertaV2PreTrainedModel {
  readonly deberta: DebertaV2Model
  readonly pooler: ContextPooler
  readonly classifier: Linear
  readonly dropout: Dropout
  readonly numLabels: number

  constructor(readonly config: DebertaV2Config, options: { device?: DeviceName } = {}) {
    super()
    this.numLabels = config.num_labels
    this.deberta = this.registerModule('deberta', new DebertaV2Model(config, { device: options.device }))
    this.pooler = this.registerModule('pooler', new ContextPooler(config, options.device))
    this.classifier = this.registerModule('classifier', new Linear(config.hidden_size, config.num_labels, { std: config.initializer_range, device: options.device }))
    this.dropout = this.registerModule('dropout', new Dropout(config.cls_dropout))
  }

  forward(inputs: DebertaV2ForSequenceClassificationInputs): SequenceClassifierOutput {
    const pooled = this.onLastHiddenState(this.deberta.forward(inputs, { unpad: this.unpadsThisStep() }), (hidden, packed) => this.pooler.forward(hidden, packed))
    const logits = this.classifier.forward(this.dropout.forward(pooled))
    const labels = inputs.labels ?? null
    return { loss: labels ? this.computeLoss(logits, labels) : null, logits }
  }

  /**
   * The problem type of the loss: the config's, else (as DeBERTa's head in
   * transformers decides) regression for one label and classification
   * otherwise: over class indices, or over soft labels [batch, num_labels].
   */
  override problemType(labels: Tensor): ProblemType {
    if (this.config.problem_type) return this.config.problem_type
    if (this.numLabels === 1) return 'regression'
    return 'single_label_classification'
  }

  /** Whether transformers' DeBERTa head takes these labels as soft labels (problem_type unset, a label vector per row). */
  private softLabels(labels: Tensor): boolean {
    return !this.config.problem_type && this.numLabels > 1 && labels.ndim >= 2 && labels.shape[labels.ndim - 1] !== 1
  }

  /**
   * transformers' DebertaV2ForSequenceClassification loss. With problem_type
   * unset and class labels, rows whose label is negative are left out (and
   * the loss is 0 when none is left); float labels are truncated to integers,
   * as labels.long() does. With problem_type set, the loss every encoder shares.
   */
  private computeLoss(logits: Tensor, labels: Tensor): Tensor {
    const owner = 'DebertaV2ForSequenceClassification'
    if (this.softLabels(labels)) {
      // -(log_softmax(logits) * labels).sum(-1).mean(): labels [batch, num_labels], any finite values.
      const [batch, classes] = logits.shape
      if (labels.ndim !== 2 || labels.shape[0] !== batch || labels.shape[1] !== classes) {
        throw new RangeError(`${owner}: soft labels ${formatShape(labels.shape)} must be [${batch}, ${classes}] like the logits`)
      }
      const targets = labels.dtype === 'int32' ? Float32Array.from(labels.toInt32Array()) : labels.toFloat32Array()
      const bad = targets.findIndex((v) => !Number.isFinite(v))
      if (bad >= 0) throw new RangeError(`${owner}: soft label [${Math.floor(bad / classes)}, ${bad % classes}] is ${targets[bad]}`)
      return softTargetCrossEntropy(logits, targets)
    }
    const kind = this.problemType(labels)
    if (this.config.problem_type || kind !== 'single_label_classification') {
      return this.sequenceClassificationLoss(logits, labels)
    }
    const batch = logits.shape[0]
    if (labels.numel !== batch) throw new RangeError(`${owner}: labels ${formatShape(labels.shape)} must have ${batch} elements`)
    const values = labels.dtype === 'int32' ? labels.toInt32Array() : labels.toFloat32Array()
    const kept = Int32Array.from(values, (v) => (v >= 0 ? Math.trunc(v) : -100))
    if (kept.every((v) => v === -100)) return scale(sum(logits), 0)
    const targets = tensor(kept, { dtype: 'int32', device: logits.device })
    try {
      return crossEntropy(logits, targets)
    } finally {
      targets.dispose()
    }
  }
}

