// Freezing is param.requiresGrad = false; these helpers pick parameters by
// name, prefix, predicate or index in namedParameters() order (the recipe's
// `index <= 100`). A frozen parameter gets no gradient and no optimizer state,
// and the tape records no op whose inputs are all frozen, so no backward runs
// below the lowest trainable parameter.
import type { Module } from './module.js'
import type { Tensor } from '../tensor/tensor.js'
import { modelFamilies } from '../models/families.js'

export type ParameterPredicate = (name: string, index: number, param: Tensor) => boolean

/** Sets requiresGrad = !freeze on every parameter the predicate selects; returns the names touched. */
export function setRequiresGrad(model: Module, select: ParameterPredicate, requiresGrad: boolean): string[] {
  const touched: string[] = []
  let index = 0
  for (const [name, p] of model.namedParameters()) {
    if (select(name, index, p)) {
      p.requiresGrad = requiresGrad
      if (!requiresGrad && p.grad) {
        p.grad.dispose()
        p.grad = null
      }
      touched.push(name)
    }
    index++
  }
  return touched
}

export function freeze(model: Module, select: ParameterPredicate): string[] {
  return setRequiresGrad(model, select, false)
}

export function unfreeze(model: Module, select: ParameterPredicate): string[] {
  return setRequiresGrad(model, select, true)
}

export function unfreezeAll(model: Module): void {
  setRequiresGrad(model, () => true, true)
}

/** Freezes parameters whose names start with any prefix. Throws when a prefix matches nothing. */
export function freezeByPrefix(model: Module, prefixes: string | string[]): string[] {
  const list = Array.isArray(prefixes) ? prefixes : [prefixes]
  const names = [...model.namedParameters()].map(([n]) => n)
  for (const prefix of list) {
    if (!names.some((n) => n.startsWith(prefix))) throw new Error(`freezeByPrefix: no parameter name starts with "${prefix}"`)
  }
  return freeze(model, (name) => list.some((prefix) => name.startsWith(prefix)))
}

/** Freezes every parameter except those whose names start with a prefix (e.g. "classifier"). */
export function freezeAllExcept(model: Module, trainablePrefixes: string | string[]): string[] {
  const list = Array.isArray(trainablePrefixes) ? trainablePrefixes : [trainablePrefixes]
  const names = [...model.namedParameters()].map(([n]) => n)
  for (const prefix of list) {
    if (!names.some((n) => n.startsWith(prefix))) throw new Error(`freezeAllExcept: no parameter name starts with "${prefix}"`)
  }
  unfreezeAll(model)
  return freeze(model, (name) => !list.some((prefix) => name.startsWith(prefix)))
}

/** Freezes parameters with from <= index <= to in namedParameters() order (inclusive, like `index <= 100`). */
export function freezeIndexRange(model: Module, from: number, to: number): string[] {
  const count = [...model.namedParameters()].length
  if (!Number.isInteger(from) || !Number.isInteger(to) || from < 0 || to < from || from >= count) {
    throw new RangeError(`freezeIndexRange: [${from}, ${to}] is not a valid range over ${count} parameters`)
  }
  return freeze(model, (_, i) => i >= from && i <= to)
}

const escapeRegExp = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')

/** `(^|.)(?:a|b)` over the distinct module paths the registered families give for `part` (e.g. every family's layer list). */
function familyPathPattern(part: 'layers' | 'embeddings'): string {
  const paths = [...new Set(modelFamilies().map((f) => f[part]))]
  return `(^|\\.)(?:${paths.map(escapeRegExp).join('|')})`
}

function embeddingPrefix(model: Module): string {
  const names = [...model.namedParameters()].map(([n]) => n)
  const re = new RegExp(`${familyPathPattern('embeddings')}\\.`)
  for (const n of names) {
    const m = re.exec(n)
    if (m) return n.slice(0, m.index + m[0].length)
  }
  throw new Error('freezeEmbeddings: the model has no "embeddings" parameters')
}

/** Freezes the embedding block (word, position, token type, LayerNorm). */
export function freezeEmbeddings(model: Module): string[] {
  return freezeByPrefix(model, embeddingPrefix(model))
}

/** Freezes encoder layers from..to inclusive (0-based), named as the model families name them (encoder.layer.N, transformer.layer.N, …). */
export function freezeEncoderLayers(model: Module, from: number, to: number): string[] {
  const layerRe = new RegExp(`${familyPathPattern('layers')}\\.(\\d+)\\.`)
  const layers = new Set<number>()
  for (const [name] of model.namedParameters()) {
    const m = layerRe.exec(name)
    if (m) layers.add(Number(m[2]))
  }
  if (layers.size === 0) throw new Error('freezeEncoderLayers: the model has no encoder layers')
  const max = Math.max(...layers)
  if (!Number.isInteger(from) || !Number.isInteger(to) || from < 0 || to < from || to > max) {
    throw new RangeError(`freezeEncoderLayers: layers ${from}..${to} are outside 0..${max}`)
  }
  return freeze(model, (name) => {
    const m = layerRe.exec(name)
    return m !== null && Number(m[2]) >= from && Number(m[2]) <= to
  })
}

export interface ParameterSummary {
  total: number
  trainable: number
  frozen: number
  /** Number of parameter tensors (201 for bert-base with a 2-label head). */
  tensors: number
  trainableTensors: number
  /** trainable / total, in percent. */
  trainablePercent: number
}

/** Element counts of all / trainable / frozen parameters (the recipe's "Model Inspection"). */
export function parameterSummary(model: Module): ParameterSummary {
  let total = 0, trainable = 0, tensors = 0, trainableTensors = 0
  for (const [, p] of model.namedParameters()) {
    total += p.numel
    tensors++
    if (p.requiresGrad) {
      trainable += p.numel
      trainableTensors++
    }
  }
  return { total, trainable, frozen: total - trainable, tensors, trainableTensors, trainablePercent: total ? (100 * trainable) / total : 0 }
}

export function formatParameterSummary(s: ParameterSummary): string {
  const fmt = (n: number) => n.toLocaleString('en-US')
  return `total parameters: ${fmt(s.total)} | trainable: ${fmt(s.trainable)} (${formatPercent(s.trainable, s.total)}) | frozen: ${fmt(s.frozen)}`
}

/** part / whole in percent with enough digits that a small non-zero share does not read as 0.00% (770 of 108M: 0.00071%). */
export function formatPercent(part: number, whole: number): string {
  if (whole <= 0) return '0%'
  const p = (100 * part) / whole
  if (p === 0 || p === 100) return `${p}%`
  if (p >= 1) return `${p.toFixed(2)}%`
  return `${p.toPrecision(2)}%`
}
