// What every encoder's config shares with transformers' PretrainedConfig:
// reading config.json with from_pretrained's overrides, and the label fields
// (num_labels, id2label, label2id, problem_type).
import { readFileSync } from 'node:fs'

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
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw new Error(`${path}: config must be a JSON object`)
  const obj = raw as Record<string, unknown>
  const missing = required.map((r) => (typeof r === 'string' ? [r] : r)).filter((names) => names.every((k) => obj[k] === undefined))
  if (missing.length) throw new Error(`${path}: config is missing required field(s) ${missing.map((n) => n[0]).join(', ')}`)
  const fields: Record<string, unknown> = { ...obj }
  if (overrides.num_labels !== undefined && overrides.num_labels !== obj.num_labels && overrides.id2label === undefined) {
    // A new label count invalidates the file's label names, as in transformers.
    delete fields.id2label
    delete fields.label2id
  }
  for (const [k, v] of Object.entries(overrides)) if (v !== undefined) fields[k] = v
  return fields
}

/**
 * num_labels, id2label and label2id made consistent the way PretrainedConfig
 * does: a label count alone names its labels LABEL_i; label names alone give
 * the count; neither gives two labels.
 */
export function labelFields(fields: Record<string, unknown>): { num_labels: number; id2label: Record<string, string>; label2id: Record<string, number> } {
  const named = (n: number) => ({
    id2label: Object.fromEntries(Array.from({ length: n }, (_, i) => [String(i), `LABEL_${i}`])),
    label2id: Object.fromEntries(Array.from({ length: n }, (_, i) => [`LABEL_${i}`, i])),
  })
  const id2label = fields.id2label as Record<string, string> | undefined
  if (id2label !== undefined && id2label !== null && typeof id2label === 'object') {
    const label2id = (fields.label2id as Record<string, number> | undefined)
      ?? Object.fromEntries(Object.entries(id2label).map(([k, v]) => [v, Number(k)]))
    const count = fields.num_labels === undefined ? Object.keys(id2label).length : Number(fields.num_labels)
    return { num_labels: count, id2label, label2id }
  }
  const count = fields.num_labels === undefined ? 2 : (fields.num_labels as number)
  return { num_labels: count, ...named(Number.isInteger(count) && count > 0 ? count : 0) }
}

export function checkPositiveInts(source: string, values: Record<string, unknown>): void {
  for (const [k, v] of Object.entries(values)) {
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) throw new Error(`${source}: ${k} must be a positive integer, got ${JSON.stringify(v)}`)
  }
}

export function checkProbabilities(source: string, values: Record<string, unknown>): void {
  for (const [k, v] of Object.entries(values)) {
    if (!(typeof v === 'number' && v >= 0 && v < 1)) throw new Error(`${source}: ${k} must be in [0, 1), got ${JSON.stringify(v)}`)
  }
}

export function checkProblemType(source: string, problemType: unknown): void {
  if (problemType !== null && !PROBLEM_TYPES.includes(problemType as ProblemType)) {
    throw new Error(`${source}: unknown problem_type ${JSON.stringify(problemType)} (use one of ${PROBLEM_TYPES.join(', ')})`)
  }
}
