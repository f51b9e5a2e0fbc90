// The ONNX graphs of bertkit's sequence classifiers, op for op as bertkit
// (and transformers' eager code) computes them: erf GELU, LayerNorm with the
// config's eps, the additive attention mask (1 - mask) · float32 min, pooler =
// tanh(dense(h[:, 0])), RoBERTa's position ids counted from input_ids, and
// DeBERTa's disentangled attention (c2p / p2c scores gathered by relative
// position, log buckets precomputed into a lookup table). Inputs and axes are
// named as optimum names them, so onnxruntime, optimum and transformers.js
// take the file as they take theirs.
import { GraphBuilder, float, int, ints } from './graph.js'
import type { BertConfig } from '../models/bert/configuration_bert.js'
import type { RobertaConfig } from '../models/roberta/configuration_roberta.js'
import { type DistilBertConfig, DISTILBERT_LAYER_NORM_EPS } from '../models/distilbert/configuration_distilbert.js'
import type { DebertaV2Config } from '../models/deberta_v2/configuration_deberta_v2.js'
import { logBucketPosition } from '../models/deberta_v2/modeling_deberta_v2.js'

/** A weight as the graph needs it: float32 values, row-major, with its shape. */
export interface HostWeight {
  data: Float32Array
  shape: readonly number[]
}

export type WeightMap = Map<string, HostWeight>

/** The model_type values with a graph builder below (optimum keeps its per-model ONNX configs apart from the models, and so does this). */
export const ONNX_FAMILIES = ['bert', 'roberta', 'distilbert', 'deberta-v2'] as const
export type OnnxFamily = typeof ONNX_FAMILIES[number]

export function isOnnxFamily(modelType: string): modelType is OnnxFamily {
  return (ONNX_FAMILIES as readonly string[]).includes(modelType)
}

/** The graph's inputs per family, as optimum's OnnxConfigs list them. */
export function onnxInputNames(family: OnnxFamily, config: { type_vocab_size?: number }): string[] {
  switch (family) {
    case 'bert': return ['input_ids', 'attention_mask', 'token_type_ids']
    case 'roberta':
    case 'distilbert': return ['input_ids', 'attention_mask']
    case 'deberta-v2': return (config.type_vocab_size ?? 0) > 0 ? ['input_ids', 'attention_mask', 'token_type_ids'] : ['input_ids', 'attention_mask']
  }
}

/** What transformers' eager attention adds where the mask is 0 (torch.finfo(float32).min). */
export const FLOAT32_MIN = -3.4028234663852886e38

const BATCH = 'batch_size'
const SEQUENCE = 'sequence_length'

/** Activations by transformers' ACT2FN names. */
const ACTIVATIONS = ['gelu', 'gelu_python', 'gelu_new', 'gelu_pytorch_tanh', 'quick_gelu', 'relu', 'tanh', 'sigmoid', 'silu', 'swish', 'linear'] as const

export class OnnxExportError extends Error {}

/** Builders shared by every family: parameters by name, Linear, LayerNorm, activations, attention. */
class Layers {
  private readonly used = new Set<string>()
  /** Initializer names by parameter (and transposed weight) name: a module used twice is stored once. */
  private readonly stored = new Map<string, string>()

  constructor(readonly g: GraphBuilder, private readonly weights: WeightMap) {}

  weight(name: string): HostWeight {
    const w = this.weights.get(name)
    if (!w) throw new OnnxExportError(`ONNX export: the model has no parameter "${name}"`)
    this.used.add(name)
    return w
  }

  has(name: string): boolean {
    return this.weights.has(name)
  }

  /** A parameter as an initializer of its own name and shape. */
  param(name: string): string {
    let stored = this.stored.get(name)
    if (!stored) {
      const w = this.weight(name)
      stored = this.g.initializer(name, w.data, [...w.shape])
      this.stored.set(name, stored)
    }
    return stored
  }

  /** Parameters the graph never read: a sign that the exporter misses part of the model. */
  unusedWeights(ignore: RegExp | null = null): string[] {
    return [...this.weights.keys()].filter((n) => !this.used.has(n) && !(ignore && ignore.test(n)))
  }

  /** x·Wᵀ + b; W is stored transposed ([in, out]) so that MatMul takes it as is. */
  linear(x: string, prefix: string): string {
    const key = `${prefix}.weight_transposed`
    let wt = this.stored.get(key)
    if (!wt) {
      const w = this.weight(`${prefix}.weight`)
      const [out, inF] = w.shape
      const t = new Float32Array(w.data.length)
      for (let o = 0; o < out; o++) for (let i = 0; i < inF; i++) t[i * out + o] = w.data[o * inF + i]
      wt = this.g.initializer(key, t, [inF, out])
      this.stored.set(key, wt)
    }
    const y = this.g.op('MatMul', [x, wt])
    return this.has(`${prefix}.bias`) ? this.g.op('Add', [y, this.param(`${prefix}.bias`)]) : y
  }

  /** LayerNormalization over the last axis (opset 17), or its decomposition before opset 17. */
  layerNorm(x: string, prefix: string, eps: number): string {
    const weight = this.param(`${prefix}.weight`)
    const bias = this.param(`${prefix}.bias`)
    if (this.g.opset >= 17) return this.g.op('LayerNormalization', [x, weight, bias], { axis: int(-1), epsilon: float(eps) })
    const mean = this.reduce('ReduceMean', x, [-1], true)
    const centred = this.g.op('Sub', [x, mean])
    const variance = this.reduce('ReduceMean', this.g.op('Mul', [centred, centred]), [-1], true)
    const std = this.g.op('Sqrt', [this.g.op('Add', [variance, this.g.float32(eps)])])
    return this.g.op('Add', [this.g.op('Mul', [this.g.op('Div', [centred, std]), weight]), bias])
  }

  /** ReduceMean / ReduceMax take axes as an attribute before opset 18 and as an input after; ReduceSum from opset 13. */
  reduce(op: 'ReduceMean' | 'ReduceMax' | 'ReduceSum', x: string, axes: number[], keepdims: boolean): string {
    const axesAsInput = op === 'ReduceSum' ? this.g.opset >= 13 : this.g.opset >= 18
    if (axesAsInput) return this.g.op(op, [x, this.g.int64(axes)], { keepdims: int(keepdims ? 1 : 0) })
    return this.g.op(op, [x], { axes: ints(axes), keepdims: int(keepdims ? 1 : 0) })
  }

  activation(x: string, name: string, where: string): string {
    const g = this.g
    switch (name) {
      case 'gelu':
      case 'gelu_python':
        // 0.5·x·(1 + erf(x / √2)), transformers' GELUActivation.
        return g.op('Mul', [g.op('Mul', [x, g.float32(0.5)]), g.op('Add', [g.float32(1), g.op('Erf', [g.op('Div', [x, g.float32(Math.SQRT2)])])])])
      case 'gelu_new':
      case 'gelu_pytorch_tanh': {
        // 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))
        const cube = g.op('Mul', [g.op('Mul', [x, x]), x])
        const inner = g.op('Mul', [g.float32(Math.sqrt(2 / Math.PI)), g.op('Add', [x, g.op('Mul', [g.float32(0.044715), cube])])])
        return g.op('Mul', [g.op('Mul', [x, g.float32(0.5)]), g.op('Add', [g.float32(1), g.op('Tanh', [inner])])])
      }
      case 'quick_gelu': return g.op('Mul', [x, g.op('Sigmoid', [g.op('Mul', [x, g.float32(1.702)])])])
      case 'relu': return g.op('Relu', [x])
      case 'tanh': return g.op('Tanh', [x])
      case 'sigmoid': return g.op('Sigmoid', [x])
      case 'silu':
      case 'swish': return g.op('Mul', [x, g.op('Sigmoid', [x])])
      case 'linear': return x
      default:
        throw new OnnxExportError(`ONNX export: ${where} "${name}" is not supported by the exporter (supported: ${ACTIVATIONS.join(', ')})`)
    }
  }

  /** [batch, seq, heads·dim] → [batch, heads, seq, dim] */
  headsFirst(x: string, heads: number, headDim: number): string {
    return this.g.op('Transpose', [this.g.op('Reshape', [x, this.g.int64([0, 0, heads, headDim])])], { perm: ints([0, 2, 1, 3]) })
  }

  /** [batch, heads, seq, dim] → [batch, seq, heads·dim] */
  headsLast(x: string, width: number): string {
    return this.g.op('Reshape', [this.g.op('Transpose', [x], { perm: ints([0, 2, 1, 3]) }), this.g.int64([0, 0, width])])
  }

  /** softmax(q·kᵀ/√d + mask)·v with BERT's additive mask [batch, 1, 1, seq]. */
  attention(hidden: string, additiveMask: string, names: { query: string; key: string; value: string }, heads: number, width: number): string {
    const g = this.g
    const d = width / heads
    const q = this.headsFirst(this.linear(hidden, names.query), heads, d)
    const kT = g.op('Transpose', [g.op('Reshape', [this.linear(hidden, names.key), g.int64([0, 0, heads, d])])], { perm: ints([0, 2, 3, 1]) })
    const v = this.headsFirst(this.linear(hidden, names.value), heads, d)
    const scores = g.op('Add', [g.op('Mul', [g.op('MatMul', [q, kT]), g.float32(1 / Math.sqrt(d))]), additiveMask])
    const probs = g.op('Softmax', [scores], { axis: int(-1) })
    return this.headsLast(g.op('MatMul', [probs, v]), width)
  }

  /** h[:, 0]: [batch, seq, width] → [batch, width] */
  firstToken(h: string): string {
    return this.g.op('Gather', [h, this.g.int64([0], [])], { axis: int(1) })
  }

  /** The sequence length as an int64 scalar, from input_ids' shape. */
  sequenceLength(ids: string): string {
    return this.g.op('Gather', [this.g.op('Shape', [ids]), this.g.int64([1], [])], { axis: int(0) })
  }

  /** 0 .. seq-1 (int64 [seq]). */
  positions(ids: string): string {
    return this.g.op('Range', [this.g.int64([0], []), this.sequenceLength(ids), this.g.int64([1], [])])
  }

  /** (1 - mask) · float32 min as [batch, 1, 1, seq]. */
  additiveMask(mask: string): string {
    const g = this.g
    const m = g.op('Cast', [mask], { to: int(1) })
    const add = g.op('Mul', [g.op('Sub', [g.float32(1), m]), g.float32(FLOAT32_MIN)])
    return g.op('Unsqueeze', [add, g.int64([1, 2])])
  }
}

// ---- BERT --------------------------------------------------------------------------------

function bertLayer(L: Layers, h: string, mask: string, prefix: string, config: BertConfig): string {
  const eps = config.layer_norm_eps
  return L.g.scope(prefix.replace(/^bert\./, '').replace(/^roberta\./, ''), () => {
    const context = L.attention(h, mask, { query: `${prefix}.attention.self.query`, key: `${prefix}.attention.self.key`, value: `${prefix}.attention.self.value` },
      config.num_attention_heads, config.hidden_size)
    const attended = L.layerNorm(L.g.op('Add', [L.linear(context, `${prefix}.attention.output.dense`), h]), `${prefix}.attention.output.LayerNorm`, eps)
    const inner = L.activation(L.linear(attended, `${prefix}.intermediate.dense`), config.hidden_act, 'hidden_act')
    return L.layerNorm(L.g.op('Add', [L.linear(inner, `${prefix}.output.dense`), attended]), `${prefix}.output.LayerNorm`, eps)
  })
}

export function buildBertGraph(g: GraphBuilder, weights: WeightMap, config: BertConfig): Layers {
  const L = new Layers(g, weights)
  const ids = g.input('input_ids', 'int64', [BATCH, SEQUENCE])
  const mask = g.input('attention_mask', 'int64', [BATCH, SEQUENCE])
  const types = g.input('token_type_ids', 'int64', [BATCH, SEQUENCE])
  const pet = (config.extra as Record<string, unknown>).position_embedding_type
  if (pet !== undefined && pet !== 'absolute') throw new OnnxExportError(`ONNX export: position_embedding_type "${String(pet)}" is not supported`)
  const e = 'bert.embeddings'
  const embedded = g.scope('embeddings', () => {
    const words = g.op('Gather', [L.param(`${e}.word_embeddings.weight`), ids])
    const typed = g.op('Add', [words, g.op('Gather', [L.param(`${e}.token_type_embeddings.weight`), types])])
    const positioned = g.op('Add', [typed, g.op('Gather', [L.param(`${e}.position_embeddings.weight`), L.positions(ids)])])
    return L.layerNorm(positioned, `${e}.LayerNorm`, config.layer_norm_eps)
  })
  const additive = g.scope('mask', () => L.additiveMask(mask))
  let h = embedded
  for (let i = 0; i < config.num_hidden_layers; i++) h = bertLayer(L, h, additive, `bert.encoder.layer.${i}`, config)
  const pooled = g.scope('pooling', () => {
    switch (config.classifier_pooling) {
      case 'pooler': return g.op('Tanh', [L.linear(L.firstToken(h), 'bert.pooler.dense')])
      case 'cls': return L.firstToken(h)
      case 'mean': {
        // Σ mask·h / Σ mask over the sequence, as maskedMeanPool.
        const m = g.op('Cast', [mask], { to: int(1) })
        const w = g.op('Div', [m, L.reduce('ReduceSum', m, [1], true)])
        return g.op('Reshape', [g.op('MatMul', [g.op('Unsqueeze', [w, g.int64([1])]), h]), g.int64([0, -1])])
      }
      case 'max': {
        const keep = g.op('Unsqueeze', [g.op('Cast', [mask], { to: int(9) }), g.int64([2])])
        return L.reduce('ReduceMax', g.op('Where', [keep, h, g.float32(FLOAT32_MIN)]), [1], false)
      }
    }
  })
  const logits = g.scope('classifier', () => L.linear(pooled, 'classifier'))
  g.output(logits, 'logits', 'float32', [BATCH, config.num_labels])
  return L
}

// ---- RoBERTa -----------------------------------------------------------------------------

export function buildRobertaGraph(g: GraphBuilder, weights: WeightMap, config: RobertaConfig): Layers {
  const L = new Layers(g, weights)
  const ids = g.input('input_ids', 'int64', [BATCH, SEQUENCE])
  const mask = g.input('attention_mask', 'int64', [BATCH, SEQUENCE])
  const e = 'roberta.embeddings'
  const pad = config.pad_token_id
  const embedded = g.scope('embeddings', () => {
    // create_position_ids_from_input_ids: pad + running count of non-pad ids, pad where the id is pad.
    const notPad = g.op('Cast', [g.op('Not', [g.op('Equal', [ids, g.int64([pad], [])])])], { to: int(7) })
    const positionIds = g.op('Add', [g.op('Mul', [g.op('CumSum', [notPad, g.int64([1], [])]), notPad]), g.int64([pad], [])])
    const words = g.op('Gather', [L.param(`${e}.word_embeddings.weight`), ids])
    // No token_type_ids input (optimum's RoBERTa has none): every token has type 0, the table's first row.
    const types = L.weight(`${e}.token_type_embeddings.weight`)
    const row0 = g.initializer(`${e}.token_type_embeddings.weight_row0`, types.data.slice(0, config.hidden_size), [config.hidden_size])
    const typed = g.op('Add', [words, row0])
    const positioned = g.op('Add', [typed, g.op('Gather', [L.param(`${e}.position_embeddings.weight`), positionIds])])
    return L.layerNorm(positioned, `${e}.LayerNorm`, config.layer_norm_eps)
  })
  const additive = g.scope('mask', () => L.additiveMask(mask))
  let h = embedded
  for (let i = 0; i < config.num_hidden_layers; i++) h = bertLayer(L, h, additive, `roberta.encoder.layer.${i}`, config)
  const logits = g.scope('classifier', () => L.linear(g.op('Tanh', [L.linear(L.firstToken(h), 'classifier.dense')]), 'classifier.out_proj'))
  g.output(logits, 'logits', 'float32', [BATCH, config.num_labels])
  return L
}

// ---- DistilBERT --------------------------------------------------------------------------

export function buildDistilBertGraph(g: GraphBuilder, weights: WeightMap, config: DistilBertConfig): Layers {
  const L = new Layers(g, weights)
  const ids = g.input('input_ids', 'int64', [BATCH, SEQUENCE])
  const mask = g.input('attention_mask', 'int64', [BATCH, SEQUENCE])
  const eps = DISTILBERT_LAYER_NORM_EPS
  const e = 'distilbert.embeddings'
  const embedded = g.scope('embeddings', () => {
    const words = g.op('Gather', [L.param(`${e}.word_embeddings.weight`), ids])
    const positioned = g.op('Add', [words, g.op('Gather', [L.param(`${e}.position_embeddings.weight`), L.positions(ids)])])
    return L.layerNorm(positioned, `${e}.LayerNorm`, eps)
  })
  const additive = g.scope('mask', () => L.additiveMask(mask))
  let h = embedded
  for (let i = 0; i < config.n_layers; i++) {
    const p = `distilbert.transformer.layer.${i}`
    h = g.scope(`transformer/layer.${i}`, () => {
      const context = L.attention(h, additive, { query: `${p}.attention.q_lin`, key: `${p}.attention.k_lin`, value: `${p}.attention.v_lin` }, config.n_heads, config.dim)
      const attended = L.layerNorm(g.op('Add', [L.linear(context, `${p}.attention.out_lin`), h]), `${p}.sa_layer_norm`, eps)
      const ffn = L.linear(L.activation(L.linear(attended, `${p}.ffn.lin1`), config.activation, 'activation'), `${p}.ffn.lin2`)
      return L.layerNorm(g.op('Add', [ffn, attended]), `${p}.output_layer_norm`, eps)
    })
  }
  const logits = g.scope('classifier', () => L.linear(g.op('Relu', [L.linear(L.firstToken(h), 'pre_classifier')]), 'classifier'))
  g.output(logits, 'logits', 'float32', [BATCH, config.num_labels])
  return L
}

// ---- DeBERTa-v2 / v3 ------------------------------------------------------------------

/**
 * The c2p and p2c gather indices as lookup tables over the relative position
 * d = i - j, clipped to [-T, T]: c2p[d + T] = clamp(bucket(d) + span) and
 * p2c[d + T] = clamp(-bucket(d) + span), bucketed as bertkit (and
 * transformers) bucket. T is chosen where both have saturated at the clamp
 * bounds, so clipping d changes nothing and any sequence length works.
 */
export function debertaRelativeTables(config: DebertaV2Config): { c2p: BigInt64Array; p2c: BigInt64Array; reach: number } {
  const span = config.attentionSpan
  const buckets = config.position_buckets
  const maxPosition = config.maxRelativePositions
  const rel = (d: number) => (buckets > 0 && maxPosition > 0 ? logBucketPosition(d, buckets, maxPosition) : d)
  const clamp = (v: number) => Math.min(2 * span - 1, Math.max(0, v))
  let reach = Math.max(span, maxPosition) + 1
  const saturated = (t: number) => clamp(rel(t) + span) === 2 * span - 1 && clamp(rel(-t) + span) === 0 &&
    clamp(-rel(t) + span) === 0 && clamp(-rel(-t) + span) === 2 * span - 1
  while (!saturated(reach)) {
    reach *= 2
    if (reach > 1 << 24) throw new OnnxExportError(`ONNX export: DeBERTa's relative positions do not saturate (span ${span}, position_buckets ${buckets}, max_relative_positions ${maxPosition})`)
  }
  const c2p = new BigInt64Array(2 * reach + 1)
  const p2c = new BigInt64Array(2 * reach + 1)
  for (let d = -reach; d <= reach; d++) {
    c2p[d + reach] = BigInt(clamp(rel(d) + span))
    p2c[d + reach] = BigInt(clamp(-rel(d) + span))
  }
  return { c2p, p2c, reach }
}

export function buildDebertaV2Graph(g: GraphBuilder, weights: WeightMap, config: DebertaV2Config): Layers {
  const L = new Layers(g, weights)
  const ids = g.input('input_ids', 'int64', [BATCH, SEQUENCE])
  const mask = g.input('attention_mask', 'int64', [BATCH, SEQUENCE])
  const types = config.type_vocab_size > 0 ? g.input('token_type_ids', 'int64', [BATCH, SEQUENCE]) : null
  const eps = config.layer_norm_eps
  const H = config.num_attention_heads
  const width = config.hidden_size
  const D = width / H
  const e = 'deberta.embeddings'
  const maskF = g.op('Cast', [mask], { to: int(1) })
  const embedded = g.scope('embeddings', () => {
    let x = g.op('Gather', [L.param(`${e}.word_embeddings.weight`), ids])
    if (config.position_biased_input) x = g.op('Add', [x, g.op('Gather', [L.param(`${e}.position_embeddings.weight`), L.positions(ids)])])
    if (types) x = g.op('Add', [x, g.op('Gather', [L.param(`${e}.token_type_embeddings.weight`), types])])
    if (config.embedding_size !== config.hidden_size) x = L.linear(x, `${e}.embed_proj`)
    x = L.layerNorm(x, `${e}.LayerNorm`, eps)
    return g.op('Mul', [x, g.op('Unsqueeze', [maskF, g.int64([2])])])
  })
  // Scores of (i, j) are kept only where tokens i and j are both real.
  const pairMask = g.scope('mask', () => {
    const m = g.op('Cast', [mask], { to: int(9) })
    return g.op('And', [g.op('Unsqueeze', [m, g.int64([1, 3])]), g.op('Unsqueeze', [m, g.int64([1, 2])])])
  })
  let relative: { table: string; c2p: string; p2c: string } | null = null
  if (config.relative_attention) {
    relative = g.scope('encoder/rel_embeddings', () => {
      let table = L.param('deberta.encoder.rel_embeddings.weight')
      if (config.norm_rel_ebd.includes('layer_norm')) table = L.layerNorm(table, 'deberta.encoder.LayerNorm', eps)
      const { c2p, p2c, reach } = debertaRelativeTables(config)
      const pos = L.positions(ids)
      const d = g.op('Sub', [g.op('Unsqueeze', [pos, g.int64([1])]), g.op('Unsqueeze', [pos, g.int64([0])])])
      const index = g.op('Add', [g.op('Clip', [d, g.int64([-reach], []), g.int64([reach], [])]), g.int64([reach], [])])
      return {
        table,
        c2p: g.op('Gather', [g.initializer('deberta.relative_c2p_index', c2p, [c2p.length]), index]),
        p2c: g.op('Gather', [g.initializer('deberta.relative_p2c_index', p2c, [p2c.length]), index]),
      }
    })
  }
  const scaleFactor = 1 + (config.usesC2p ? 1 : 0) + (config.usesP2c ? 1 : 0)
  const scoreScale = 1 / Math.fround(Math.sqrt(Math.fround(D * scaleFactor)))
  let h = embedded
  for (let i = 0; i < config.num_hidden_layers; i++) {
    const p = `deberta.encoder.layer.${i}`
    const a = `${p}.attention.self`
    h = g.scope(`encoder/layer.${i}`, () => {
      const q = L.headsFirst(L.linear(h, `${a}.query_proj`), H, D)
      const k = L.headsFirst(L.linear(h, `${a}.key_proj`), H, D)
      const v = L.headsFirst(L.linear(h, `${a}.value_proj`), H, D)
      const content = g.op('MatMul', [q, g.op('Transpose', [k], { perm: ints([0, 1, 3, 2]) })])
      let scores = content
      if (relative) {
        const rel = relative
        // [2·span, width] → [heads, head_dim, 2·span]: one product per head with every batch row.
        const positionsT = (proj: string) => g.op('Transpose', [g.op('Reshape', [L.linear(rel.table, proj), g.int64([-1, H, D])])], { perm: ints([1, 2, 0]) })
        const shape = g.op('Shape', [content])
        if (config.usesC2p) {
          const posKey = positionsT(config.share_att_key ? `${a}.key_proj` : `${a}.pos_key_proj`)
          const c2p = g.op('GatherElements', [g.op('MatMul', [q, posKey]), g.op('Expand', [rel.c2p, shape])], { axis: int(3) })
          scores = g.op('Add', [scores, c2p])
        }
        if (config.usesP2c) {
          const posQuery = positionsT(config.share_att_key ? `${a}.query_proj` : `${a}.pos_query_proj`)
          // Row j (a key) gathers the position of query i; the transpose gives [query, key].
          const p2c = g.op('GatherElements', [g.op('MatMul', [k, posQuery]), g.op('Expand', [rel.p2c, shape])], { axis: int(3) })
          scores = g.op('Add', [scores, g.op('Transpose', [p2c], { perm: ints([0, 1, 3, 2]) })])
        }
      }
      const masked = g.op('Where', [pairMask, g.op('Mul', [scores, g.float32(scoreScale)]), g.float32(FLOAT32_MIN)])
      const probs = g.op('Softmax', [masked], { axis: int(-1) })
      const context = L.headsLast(g.op('MatMul', [probs, v]), width)
      const attended = L.layerNorm(g.op('Add', [L.linear(context, `${p}.attention.output.dense`), h]), `${p}.attention.output.LayerNorm`, eps)
      const inner = L.activation(L.linear(attended, `${p}.intermediate.dense`), config.hidden_act, 'hidden_act')
      return L.layerNorm(g.op('Add', [L.linear(inner, `${p}.output.dense`), attended]), `${p}.output.LayerNorm`, eps)
    })
  }
  const logits = g.scope('classifier', () => {
    const pooled = L.activation(L.linear(L.firstToken(h), 'pooler.dense'), config.pooler_hidden_act, 'pooler_hidden_act')
    return L.linear(pooled, 'classifier')
  })
  g.output(logits, 'logits', 'float32', [BATCH, config.num_labels])
  return L
}

export function buildGraph(family: OnnxFamily, g: GraphBuilder, weights: WeightMap, config: unknown): Layers {
  switch (family) {
    case 'bert': return buildBertGraph(g, weights, config as BertConfig)
    case 'roberta': return buildRobertaGraph(g, weights, config as RobertaConfig)
    case 'distilbert': return buildDistilBertGraph(g, weights, config as DistilBertConfig)
    case 'deberta-v2': return buildDebertaV2Graph(g, weights, config as DebertaV2Config)
  }
}

