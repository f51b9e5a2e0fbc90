// setfit.sample_dataset: n examples per label, picked as setfit picks them —
// the dataset shuffled as datasets' Dataset.shuffle(seed) shuffles (numpy's
// default_rng(seed).permutation), the first n rows of each label kept in that
// order, and the result shuffled again with the same seed. The same seed on
// the same rows picks the same examples, in the same order, as Python.
import { Dataset } from '../data/dataset.js'
import { defaultRngPermutation } from './random.js'

export interface SampleDatasetOptions {
  labelColumn?: string
  /** Examples per label (fewer when a label has fewer). Default 8. */
  numSamples?: number
  /** Default 42. */
  seed?: number
}

function labelKey(value: unknown, row: number, column: string): string {
  if (typeof value === 'number' || typeof value === 'string' || typeof value === 'boolean') return `${typeof value}:${String(value)}`
  throw new TypeError(`sampleDataset: row ${row} has label ${JSON.stringify(value)} in column "${column}"; labels must be numbers or strings (one per row)`)
}

export function sampleDataset(dataset: Dataset, options: SampleDatasetOptions = {}): Dataset {
  const labelColumn = options.labelColumn ?? 'label'
  const numSamples = options.numSamples ?? 8
  const seed = options.seed ?? 42
  if (!(dataset instanceof Dataset)) throw new TypeError('sampleDataset: dataset must be a Dataset')
  if (!dataset.hasColumn(labelColumn)) {
    throw new Error(`sampleDataset: the dataset has no column "${labelColumn}" (columns: ${dataset.columnNames.join(', ')})`)
  }
  if (!Number.isInteger(numSamples) || numSamples < 0) throw new RangeError(`sampleDataset: numSamples must be a non-negative integer, got ${numSamples}`)
  if (!Number.isInteger(seed) || seed < 0) throw new RangeError(`sampleDataset: seed must be a non-negative integer, got ${seed}`)
  const shuffled = dataset.select(defaultRngPermutation(seed, dataset.length))
  const labels = shuffled.column(labelColumn)
  // pandas' groupby(label).head(n): rows keep their order; a label's rows past the n-th are dropped.
  const seen = new Map<string, number>()
  const keep: number[] = []
  labels.forEach((value, i) => {
    const key = labelKey(value, i, labelColumn)
    const count = seen.get(key) ?? 0
    if (count < numSamples) keep.push(i)
    seen.set(key, count + 1)
  })
  const sampled = shuffled.select(keep)
  return sampled.select(defaultRngPermutation(seed, sampled.length))
}
