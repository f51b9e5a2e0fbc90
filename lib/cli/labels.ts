// The CLI's labels: class indices as they are, or names ("pos", "neg")
// encoded as datasets' class_encode_column does (sorted names from the
// training split), or the names --label-names gives, in its order. The names
// go into the model's config.json (id2label / label2id); every split is
// checked before training starts, and a bad label is reported with its
// split and row.
import type { Dataset } from '../data/dataset.js'
import { ClassLabel, asClassIndex, classLabelOf, encodeLabels, hasNamedLabels } from '../data/class_encode.js'

export interface LabelPlan {
  numLabels: number
  /** The names for config.json, or null to keep the checkpoint's (or transformers' LABEL_i). */
  id2label: Record<string, string> | null
  /** The class index of every row of a split (throws on the first bad label, naming split and row). */
  encode(ds: Dataset, split: string): number[]
}

/** --label-names a,b,c (or a JSON array) as a list of names. */
export function parseLabelNames(value: string | true | undefined): string[] | null {
  if (value === undefined) return null
  if (value === true || value.trim() === '') throw new Error('--label-names needs the names, e.g. --label-names neg,pos')
  const names = value.trim().startsWith('[') ? JSON.parse(value) as unknown : value.split(',').map((s) => s.trim())
  if (!Array.isArray(names) || names.some((n) => typeof n !== 'string' || n === '')) throw new Error(`--label-names: cannot read ${JSON.stringify(value)} as a list of non-empty names`)
  try {
    return new ClassLabel(names as string[]).names as string[]
  } catch (err) {
    throw new Error(`--label-names: ${(err as Error).message.replace(/^ClassLabel: /, '')}`)
  }
}

const locator = (split: string) => (row: number) => `${split} split, row ${row}`

function indicesOf(ds: Dataset, column: string, split: string, numLabels: number | null): number[] {
  if (!ds.hasColumn(column)) throw new Error(`${split} split: no label column "${column}" (columns: ${ds.columnNames.join(', ')}); pass --label-column`)
  return ds.column<unknown>(column).map((v, i) => {
    const n = asClassIndex(v)
    if (n === null) throw new Error(`${split} split, row ${i}: label ${JSON.stringify(v)} is not a class index`)
    if (n < 0 || (numLabels !== null && n >= numLabels)) {
      throw new RangeError(`${split} split, row ${i}: label ${n} is out of range for ${numLabels ?? 'the'} labels (0..${numLabels === null ? '' : numLabels - 1})${numLabels === null ? '' : '; pass --num-labels or --label-names to change the count'}`)
    }
    return n
  })
}

/**
 * The labels of a training run, from the training split and the flags:
 * --label-names fixes names and order; else string labels are named by their
 * sorted distinct values; else integer labels count max + 1 (or --num-labels).
 */
export function planTrainingLabels(train: Dataset, column: string, flags: { labelNames: string[] | null; numLabels: number | undefined }): LabelPlan {
  if (!train.hasColumn(column)) throw new Error(`train split: no label column "${column}" (columns: ${train.columnNames.join(', ')}); pass --label-column`)
  const { labelNames, numLabels } = flags
  let classLabel: ClassLabel | null = null
  if (labelNames) classLabel = new ClassLabel(labelNames)
  else if (hasNamedLabels(train.column<unknown>(column))) classLabel = classLabelOf(train, column, { locate: locator('train'), where: 'labels' })
  if (classLabel) {
    if (numLabels !== undefined && numLabels !== classLabel.numClasses) {
      throw new Error(`--num-labels ${numLabels} disagrees with the ${classLabel.numClasses} label names (${classLabel.names.join(', ')})`)
    }
    const cl = classLabel
    // With --label-names, integer labels are accepted as indices into the names.
    const acceptIndices = labelNames !== null
    return {
      numLabels: cl.numClasses,
      id2label: cl.id2label,
      encode: (ds, split) => encodeLabels(ds, column, cl, { locate: locator(split), where: 'labels', acceptIndices }),
    }
  }
  const trainIds = indicesOf(train, column, 'train', numLabels ?? null)
  const count = numLabels ?? Math.max(...trainIds) + 1
  return { numLabels: count, id2label: null, encode: (ds, split) => indicesOf(ds, column, split, count) }
}

/** The labels of a split for a trained model: names through its label2id, indices checked against num_labels. */
export function planModelLabels(config: { num_labels: number; id2label: Record<string, string> }, column: string): LabelPlan {
  const names = Array.from({ length: config.num_labels }, (_, i) => config.id2label[String(i)] ?? `LABEL_${i}`)
  const cl = new ClassLabel(names)
  return {
    numLabels: config.num_labels,
    id2label: cl.id2label,
    encode: (ds, split) => encodeLabels(ds, column, cl, { locate: locator(split), where: 'labels', acceptIndices: true }),
  }
}
