// What every encoder's config shares with transformers' PretrainedConfig:
// reading config.json with from_pretrained's overrides, and the label fields
// (num_labels, id2label, label2id, problem_type).
import { readFileSync } from 'node:fs'
import { ACTIVATION_CODE } from '../native.js'

type ActivationName = keyof typeof ACTIVATION_CODE

export type ProblemType = 'regression' | 'single_label_classification' | 'multi_label_classification'
export const PROBLEM_TYPES: readonly ProblemType[] = ['regression', 'single_label_classification', 'multi_label_classification']

/**
 * config.json as an object, with `overrides` (e.g. num_labels) winning over
 * the file as from_pretrained's kwargs do. `required` lists fields the file
 * must have, each with the names it may go by (DistilBERT's "dim" is also
 * read as "hidden_size"): a config of another architecture fails here
 * rather than building a model of the default size.
 */
export function readConfigJson(path: string, overrides: Record<string, unknown>, required: ReadonlyArray<string | readonly string[]>): Record<string, unknown> {
  let raw: unknown
  try {
    raw = JSON.parse(readFileSync(path, 'utf8'))
  } catch (err) {
    throw new Error(`${path}: cannot read config (${(err as Error).message})`)
  }
  const obj = configObject(path, raw)
  const missing = required.map((r) => (typeof r === 'string' ? [r] : r)).filter((names) => names.every((k) => obj[k] === undefined))
  if (missing.length) throw new Error(`${path}: config is missing required field(s) ${missing.map((n) => n[0]).join(', ')}`)
  const fields: Record<string, unknown> = { ...obj }
  const fileLabels = obj.id2label !== null && typeof obj.id2label === 'object' ? Object.keys(obj.id2label).length : obj.num_labels ?? 2
  if (overrides.num_labels !== undefined && overrides.num_labels !== fileLabels && overrides.id2label === undefined) {
    // A new label count invalidates the file's label names, as in transformers.
    delete fields.id2label
    delete fields.label2id
  }
  for (const [k, v] of Object.entries(overrides)) if (v !== undefined) fields[k] = v
  return fields
}

/** config.json's parsed value as an object, or an error saying what the file holds instead. */
export function configObject(path: string, raw: unknown): Record<string, unknown> {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    const what = Array.isArray(raw) ? 'a JSON list' : raw === null ? 'null' : `a JSON ${typeof raw}`
    throw new Error(`${path}: config must be a JSON object ({"model_type": ..., ...}), but the file holds ${what}`)
  }
  return raw as Record<string, unknown>
}

/** What a value is, for messages: its JSON and, when that could mislead ("0.1" vs 0.1), its type. */
export function describeValue(v: unknown): string {
  if (v === undefined) return 'nothing'
  const json = JSON.stringify(v)
  const text = json === undefined ? String(v) : json.length > 60 ? `${json.slice(0, 57)}...` : json
  if (typeof v === 'string') return `${text} (a string)`
  if (Array.isArray(v)) return `${text} (a list)`
  if (typeof v === 'number' && !Number.isFinite(v)) return String(v)
  return text
}

/**
 * Upper bounds on sizes, far above any released encoder (bert-large: 1,024
 * hidden, 24 layers; xlm-roberta: 250,002 tokens; deberta-v2-xxlarge: 48
 * layers), low enough that a typo cannot ask for terabytes before anything
 * looks at the checkpoint.
 */
export const SIZE_LIMITS = {
  vocab_size: 1 << 24,
  hidden_size: 1 << 16,
  num_hidden_layers: 1024,
  num_attention_heads: 1 << 12,
  intermediate_size: 1 << 18,
  max_position_embeddings: 1 << 20,
  type_vocab_size: 1 << 16,
  num_labels: 1 << 20,
} as const

/**
 * Typed checks of config fields, each failing with "<file>: <field> must be
 * <what>, got <value>". transformers 5 checks the same types (its configs are
 * strict dataclasses); ranges are checked here too so that nothing absurd
 * reaches a constructor.
 */
export class ConfigChecker {
  constructor(readonly source: string, private readonly values: Record<string, unknown>) {}

  fail(field: string, what: string): never {
    throw new Error(`${this.source}: ${field} must be ${what}, got ${describeValue(this.values[field])}`)
  }

  private isNumber(v: unknown): v is number {
    return typeof v === 'number' && Number.isFinite(v)
  }

  /** An integer in [min, max]. */
  int(field: string, min: number, max: number = Number.MAX_SAFE_INTEGER): number {
    const v = this.values[field]
    if (!this.isNumber(v) || !Number.isInteger(v)) this.fail(field, min === 1 ? 'a positive integer' : `an integer${min === 0 ? ' >= 0' : ''}`)
    if (v < min || v > max) this.fail(field, `an integer in [${min}, ${max}]`)
    return v
  }

  /** A positive integer no larger than the field's SIZE_LIMITS entry (or `max`). */
  size(field: string, limitName: keyof typeof SIZE_LIMITS = field as keyof typeof SIZE_LIMITS, min = 1): number {
    const v = this.values[field]
    const max = SIZE_LIMITS[limitName]
    if (!this.isNumber(v) || !Number.isInteger(v) || v < min) this.fail(field, min === 1 ? 'a positive integer' : `an integer >= ${min}`)
    if (v > max) this.fail(field, `at most ${max} (a larger ${field} is not a model bertkit can build; is the value a typo?)`)
    return v
  }

  /** A finite number in the range; `exclusive` makes the lower bound strict. */
  number(field: string, options: { min?: number; max?: number; exclusiveMin?: boolean } = {}): number {
    const v = this.values[field]
    const { min = -Infinity, max = Infinity, exclusiveMin = false } = options
    const range = min === -Infinity && max === Infinity ? 'a finite number'
      : max === Infinity ? `a number ${exclusiveMin ? '>' : '>='} ${min}` : `a number in ${exclusiveMin ? '(' : '['}${min}, ${max}]`
    if (!this.isNumber(v) || (exclusiveMin ? v <= min : v < min) || v > max) this.fail(field, range)
    return v
  }

  /** A dropout probability: a number in [0, 1) (bertkit's dropout cannot drop everything). */
  probability(field: string, nullable = false): number | null {
    const v = this.values[field]
    if (nullable && v === null) return null
    if (!this.isNumber(v) || v < 0 || v >= 1) this.fail(field, `${nullable ? 'null or ' : ''}a probability in [0, 1)`)
    return v
  }

  /** `field` must be a multiple of `divisor` (both already checked as sizes), e.g. hidden_size of num_attention_heads. */
  multipleOf(field: string, divisor: string): void {
    const v = this.values[field] as number, d = this.values[divisor] as number
    if (v % d !== 0) throw new Error(`${this.source}: ${field} ${v} is not a multiple of ${divisor} ${d}`)
  }

  /**
   * model_type a string, and the sizes of a BERT-shaped encoder (vocab_size,
   * hidden_size, num_hidden_layers, num_attention_heads, intermediate_size,
   * max_position_embeddings), in that order.
   */
  encoderSizes(): void {
    if (typeof this.values.model_type !== 'string') this.fail('model_type', 'a string')
    for (const field of ['vocab_size', 'hidden_size', 'num_hidden_layers', 'num_attention_heads', 'intermediate_size', 'max_position_embeddings'] as const) this.size(field)
  }

  bool(field: string): boolean {
    const v = this.values[field]
    if (typeof v !== 'boolean') this.fail(field, 'true or false')
    return v
  }

  oneOf<T>(field: string, allowed: readonly T[]): T {
    const v = this.values[field]
    if (!allowed.includes(v as T)) this.fail(field, `one of ${allowed.map((a) => JSON.stringify(a)).join(', ')}`)
    return v as T
  }

  /** A token id: null, or an integer in [0, limit) (an id outside the table would index past it). */
  tokenId(field: string, limit: number, limitName: string): number | null {
    const v = this.values[field]
    if (v === null || v === undefined) return null
    if (!this.isNumber(v) || !Number.isInteger(v) || v < 0 || v >= limit) this.fail(field, `null or an integer in [0, ${limitName} ${limit})`)
    return v
  }

  /** An activation name transformers' ACT2FN knows and bertkit computes. */
  activation(field: string): ActivationName {
    const v = this.values[field]
    if (typeof v === 'string' && Object.hasOwn(ACTIVATION_CODE, v)) return v as ActivationName
    if (typeof v === 'string' && Object.hasOwn(PARAMETRIC_ACTIVATIONS, v)) {
      throw new Error(`${this.source}: ${field} ${JSON.stringify(v)} is not supported: ${PARAMETRIC_ACTIVATIONS[v]}`)
    }
    this.fail(field, `one of transformers' activation names (${Object.keys(ACTIVATION_CODE).join(', ')})`)
  }
}

// ACT2FN names whose modules hold parameters of their own (bertkit's activations have none).
const PARAMETRIC_ACTIVATIONS: Record<string, string> = {
  prelu: 'PReLU has a learned slope parameter, which bertkit does not implement',
  xielu: 'xIELU has learned parameters, which bertkit does not implement',
}

/**
 * num_labels, id2label and label2id made consistent the way PretrainedConfig
 * does: a label count alone names its labels LABEL_i; label names alone give
 * the count; neither gives two labels; a count that disagrees with the names
 * wins and renames them LABEL_i (transformers' num_labels setter, with its
 * warning). id2label must map "0".."n-1" to strings, label2id names to ids:
 * anything else fails here, naming the field.
 */
export function labelFields(fields: Record<string, unknown>, source = 'config'): { num_labels: number; id2label: Record<string, string>; label2id: Record<string, number> } {
  const named = (n: number) => ({
    id2label: Object.fromEntries(Array.from({ length: n }, (_, i) => [String(i), `LABEL_${i}`])),
    label2id: Object.fromEntries(Array.from({ length: n }, (_, i) => [`LABEL_${i}`, i])),
  })
  const check = new ConfigChecker(source, fields)
  const isObject = (v: unknown) => v !== null && typeof v === 'object' && !Array.isArray(v)
  const { id2label, label2id } = fields
  if (fields.num_labels !== undefined && fields.num_labels !== null) check.size('num_labels')
  if (id2label !== undefined && id2label !== null) {
    if (!isObject(id2label)) check.fail('id2label', 'an object mapping label ids ("0", "1", ...) to names')
    const entries = Object.entries(id2label as Record<string, unknown>)
    if (entries.length === 0) check.fail('id2label', 'a non-empty object mapping label ids to names')
    if (entries.length > SIZE_LIMITS.num_labels) check.fail('id2label', `at most ${SIZE_LIMITS.num_labels} labels`)
    const ids = new Set<number>()
    for (const [k, v] of entries) {
      if (!/^(0|[1-9]\d*)$/.test(k)) throw new Error(`${source}: id2label key ${JSON.stringify(k)} is not a label id (a non-negative integer written without sign or leading zeros)`)
      if (typeof v !== 'string') throw new Error(`${source}: id2label["${k}"] must be a label name (a string), got ${describeValue(v)}`)
      ids.add(Number(k))
    }
    const missing = Array.from({ length: entries.length }, (_, i) => i).filter((i) => !ids.has(i))
    if (missing.length) {
      throw new Error(`${source}: id2label's keys must be 0..${entries.length - 1} (one per row of the classifier), but ${missing.slice(0, 5).join(', ')} ${missing.length === 1 ? 'is' : 'are'} missing`)
    }
  }
  if (label2id !== undefined && label2id !== null) {
    if (!isObject(label2id)) check.fail('label2id', 'an object mapping label names to ids')
    for (const [k, v] of Object.entries(label2id as Record<string, unknown>)) {
      if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) throw new Error(`${source}: label2id[${JSON.stringify(k)}] must be a label id (an integer >= 0), got ${describeValue(v)}`)
    }
  }
  if (isObject(id2label)) {
    const names = id2label as Record<string, string>
    const size = Object.keys(names).length
    const count = fields.num_labels === undefined || fields.num_labels === null ? size : (fields.num_labels as number)
    if (count !== size) {
      process.stderr.write(`bertkit: ${source}: num_labels ${count} disagrees with id2label's ${size} names; using ${count} labels named LABEL_i, as transformers does\n`)
      return { num_labels: count, ...named(count) }
    }
    const ids = (label2id as Record<string, number> | undefined | null)
      ?? Object.fromEntries(Object.entries(names).map(([k, v]) => [v, Number(k)]))
    for (const [k, v] of Object.entries(ids)) {
      if (v >= count) throw new Error(`${source}: label2id[${JSON.stringify(k)}] = ${v} is not one of the ${count} label ids`)
    }
    return { num_labels: count, id2label: names, label2id: ids }
  }
  const count = fields.num_labels === undefined || fields.num_labels === null ? 2 : (fields.num_labels as number)
  return { num_labels: count, ...named(count) }
}

export function checkProblemType(source: string, problemType: unknown, numLabels?: number): void {
  if (problemType !== null && !PROBLEM_TYPES.includes(problemType as ProblemType)) {
    throw new Error(`${source}: problem_type must be null or one of ${PROBLEM_TYPES.join(', ')}, got ${describeValue(problemType)}`)
  }
  if (problemType === 'single_label_classification' && numLabels === 1) {
    // transformers refuses this too: one logit cannot be a softmax over classes.
    throw new Error(`${source}: problem_type "single_label_classification" needs num_labels > 1 (use num_labels 2 for binary classification, or problem_type "regression")`)
  }
}

/** The label fields every family's config holds, as transformers' PretrainedConfig does. */
export interface LabelConfigFields {
  num_labels: number
  id2label: Record<string, string>
  label2id: Record<string, number>
  problem_type: ProblemType | null
}

export const LABEL_KEYS = ['num_labels', 'id2label', 'label2id'] as const

/**
 * A config constructor's assignment, shared by every family: `defaults`, then
 * the given fields, then the label fields made consistent (labelFields). A
 * field the family declares (a key of `defaults`, or a label key) becomes a
 * property of `config`; any other goes to `extra`, so that savePretrained
 * writes it back.
 */
export function assignConfigFields(config: object, extra: Record<string, unknown>, defaults: object, fields: Record<string, unknown>, source: string): void {
  const given: Record<string, unknown> = { ...fields }
  for (const k of LABEL_KEYS) if (given[k] === undefined) delete given[k]
  const merged: Record<string, unknown> = { ...defaults, ...given, ...labelFields(given, source) }
  for (const [k, v] of Object.entries(merged)) {
    if (k in defaults || (LABEL_KEYS as readonly string[]).includes(k)) (config as Record<string, unknown>)[k] = v
    else extra[k] = v
  }
}

/** config.json's object: the fields kept in `extra`, then `keys` of the config in order. */
export function configJson(config: object, extra: Record<string, unknown>, keys: readonly string[]): Record<string, unknown> {
  const out: Record<string, unknown> = { ...extra }
  for (const k of keys) out[k] = (config as Record<string, unknown>)[k]
  return out
}
