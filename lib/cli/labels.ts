// The CLI's labels: class indices as they are, or names ("pos", "neg")
// encoded as datasets' class_encode_column does (sorted names from the
// training split), or the names --label-names gives, in its order. The names
// go into the model's config.json (id2label / label2id); every split is
// checked before training starts, and a bad label is reported with its
// split and the file and line it came from (describeRow).
import { describeRow, type Dataset } from '../data/dataset.js'
import { ClassLabel, asClassIndex, classLabelOf, encodeLabels, hasNamedLabels } from '../data/class_encode.js'

export interface LabelPlan {
  numLabels: number
  /** The names for config.json, or null to keep the checkpoint's (or transformers' LABEL_i). */
  id2label: Record<string, string> | null
  /** The class index of every row of a split (throws on the first bad label, naming split, file and line). */
  encode(ds: Dataset, split: string): number[]
}

/** The classifier a checkpoint already has (its config.json names a *ForSequenceClassification architecture). */
export interface ClassifierHead {
  numLabels: number
  /** Its id2label in id order, or null when those are transformers' defaults (LABEL_0, LABEL_1, …). */
  names: string[] | null
  /** How errors name it: "the classifier of DIR (config.json)". */
  name: string
  /** The same, for a class index that does not fit: "... (config.json; pass --num-labels to train a new head)". */
  from: string
}

/** The most classes a label column may imply without --num-labels saying so (a stray 1e12 would size a classifier). */
export const MAX_INFERRED_LABELS = 100_000

/** --label-names a,b,c (or a JSON array) as a list of names. */
export function parseLabelNames(value: string | true | undefined): string[] | null {
  if (value === undefined) return null
  if (value === true || value.trim() === '') throw new Error('--label-names needs the names, e.g. --label-names neg,pos')
  let names: unknown
  try {
    names = value.trim().startsWith('[') ? JSON.parse(value) as unknown : value.split(',').map((s) => s.trim())
  } catch (err) {
    throw new Error(`--label-names: cannot read ${JSON.stringify(value)} as a JSON array (${(err as Error).message})`)
  }
  if (!Array.isArray(names) || names.some((n) => typeof n !== 'string' || n === '')) throw new Error(`--label-names: cannot read ${JSON.stringify(value)} as a list of non-empty names`)
  try {
    return new ClassLabel(names as string[]).names as string[]
  } catch (err) {
    throw new Error(`--label-names: ${(err as Error).message.replace(/^ClassLabel: /, '')}`)
  }
}

/** id2label in id order, or null when it is missing or transformers' default naming. */
export function namesOfConfig(numLabels: number, id2label: unknown): string[] | null {
  if (!id2label || typeof id2label !== 'object') return null
  const map = id2label as Record<string, unknown>
  const names = Array.from({ length: numLabels }, (_, i) => map[String(i)])
  if (names.some((n) => typeof n !== 'string' || n === '')) return null
  if (names.every((n, i) => n === `LABEL_${i}`)) return null
  return new Set(names).size === names.length ? names as string[] : null
}

const isMissing = (v: unknown) => v === null || v === undefined || (typeof v === 'string' && v.trim() === '')

/**
 * The class indices of a split (i13b's check): each label an integer in
 * [0, classes.n) when the count is known, else below MAX_INFERRED_LABELS.
 */
function indicesOf(ds: Dataset, column: string, where: string, classes?: { n: number; from: string }): number[] {
  if (!ds.hasColumn(column)) throw new Error(`${where}: no label column "${column}" (columns: ${ds.columnNames.join(', ')}); pass --label-column`)
  return ds.column<unknown>(column).map((v, i) => {
    const n = typeof v === 'boolean' ? null : asClassIndex(v)
    if (n === null || !Number.isSafeInteger(n) || n < 0) throw new Error(`${where}: the label at ${describeRow(ds, i)} is ${JSON.stringify(v)}, not a class index (0, 1, 2, ...)`)
    if (classes && n >= classes.n) throw new RangeError(`${where}: the label at ${describeRow(ds, i)} is ${n}, but ${classes.from} gives ${classes.n} classes (labels 0..${classes.n - 1})`)
    if (!classes && n >= MAX_INFERRED_LABELS) throw new RangeError(`${where}: the label at ${describeRow(ds, i)} is ${n}, which would make ${n + 1} classes; labels are class indices 0..num_labels-1 (pass --num-labels if there really are that many)`)
    return n
  })
}

/**
 * A training column that mixes class indices ("0", 3) with names ("positive")
 * says neither: a stray word among indices is more often a mistake than a
 * class. The first row whose kind differs from the first label's is named;
 * --label-names settles it (names are matched, integers index the names).
 */
function refuseMixedLabels(ds: Dataset, column: string, where: string): void {
  const values = ds.column<unknown>(column)
  const kindOf = (v: unknown) => (isMissing(v) ? null : asClassIndex(v) !== null ? 'index' : 'name')
  const first = values.findIndex((v) => kindOf(v) !== null)
  if (first < 0) return
  const firstKind = kindOf(values[first])
  const other = values.findIndex((v) => kindOf(v) !== null && kindOf(v) !== firstKind)
  if (other < 0) return
  const fix = 'a label column holds class indices or class names, not both; pass --label-names to name the classes (names are matched, integers index them)'
  if (firstKind === 'index') {
    throw new Error(`${where}: the label at ${describeRow(ds, other)} is ${JSON.stringify(values[other])}, not a class index (0, 1, 2, ...) as the label at ${describeRow(ds, first)} (${JSON.stringify(values[first])}) is; ${fix}`)
  }
  throw new Error(`${where}: the label at ${describeRow(ds, other)} is ${JSON.stringify(values[other])}, a class index, but the label at ${describeRow(ds, first)} is the class name ${JSON.stringify(values[first])}; ${fix}`)
}

/** A plan whose names are fixed: names are matched, integers index them (as --label-names does). */
function namedPlan(column: string, cl: ClassLabel, classesFrom: string, acceptIndices: boolean): LabelPlan {
  return {
    numLabels: cl.numClasses,
    id2label: cl.id2label,
    encode: (ds, split) => encodeLabels(ds, column, cl, { where: `${split} split`, classesFrom, acceptIndices }),
  }
}

/**
 * The labels of a training run, from the training split and the flags:
 * --label-names fixes names and order; else a checkpoint that already is a
 * classifier fixes its classes (its names, when it has real ones); else
 * string labels are named by their sorted distinct values; else integer
 * labels count max + 1 (or --num-labels). `head` is null for a base model
 * or when --num-labels asks for a new head.
 */
export function planTrainingLabels(train: Dataset, column: string, flags: { labelNames: string[] | null; numLabels: number | undefined; head?: ClassifierHead | null }): LabelPlan {
  if (!train.hasColumn(column)) throw new Error(`train split: no label column "${column}" (columns: ${train.columnNames.join(', ')}); pass --label-column`)
  const { labelNames, numLabels } = flags
  const head = flags.head ?? null
  if (labelNames) {
    const cl = new ClassLabel(labelNames)
    if (numLabels !== undefined && numLabels !== cl.numClasses) {
      throw new Error(`--num-labels ${numLabels} disagrees with the ${cl.numClasses} label names (${cl.names.join(', ')})`)
    }
    if (head && head.numLabels !== cl.numClasses) {
      throw new Error(`--label-names gives ${cl.numClasses} classes (${cl.names.join(', ')}), but ${head.name} has ${head.numLabels}`)
    }
    return namedPlan(column, cl, '--label-names', true)
  }
  const named = hasNamedLabels(train.column<unknown>(column))
  if (named && head?.names) return namedPlan(column, new ClassLabel(head.names), head.name, true)
  if (named) {
    refuseMixedLabels(train, column, 'train split')
    const cl = classLabelOf(train, column, { where: 'train split' })
    if (numLabels !== undefined && numLabels !== cl.numClasses) {
      throw new Error(`--num-labels ${numLabels} disagrees with the ${cl.numClasses} label names of the train split (${cl.names.join(', ')}); pass --label-names to name every class`)
    }
    if (head && head.numLabels !== cl.numClasses) {
      throw new Error(`the train split's labels name ${cl.numClasses} classes (${cl.names.join(', ')}), but ${head.name} has ${head.numLabels}; pass --label-names with ${head.numLabels} names`)
    }
    return namedPlan(column, cl, 'the train split', false)
  }
  const known = numLabels !== undefined ? { n: numLabels, from: `--num-labels ${numLabels}` }
    : head ? { n: head.numLabels, from: head.from } : undefined
  const trainIds = indicesOf(train, column, 'train split', known)
  const count = known?.n ?? Math.max(...trainIds) + 1
  const classes = known ?? { n: count, from: `the train split (labels 0..${count - 1})` }
  return { numLabels: count, id2label: null, encode: (ds, split) => (ds === train ? trainIds : indicesOf(ds, column, `${split} split`, classes)) }
}

/** The labels of a split for a trained model: names through its label2id, indices checked against num_labels. */
export function planModelLabels(config: { num_labels: number; id2label: Record<string, string> }, column: string, model: string): LabelPlan {
  const names = Array.from({ length: config.num_labels }, (_, i) => config.id2label[String(i)] ?? `LABEL_${i}`)
  return namedPlan(column, new ClassLabel(names), `the model ${model} (config.json id2label)`, true)
}
