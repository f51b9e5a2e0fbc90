// Labels by name: datasets' ClassLabel feature and class_encode_column. A
// column of strings ("pos", "neg") becomes class indices, the names sorted as
// datasets sorts them (Python's string order: by code point), and the
// names become the model's id2label / label2id. Labels that are already
// class indices are checked against the label count. Every bad label is
// reported with its split, and the file and line it came from (describeRow),
// before any training starts.
import { describeRow, type Dataset, type DatasetDict } from './dataset.js'

/** datasets' ClassLabel: a fixed list of names, index ⇄ name. */
export class ClassLabel {
  readonly names: readonly string[]
  private readonly index: Map<string, number>

  constructor(names: readonly string[]) {
    if (!Array.isArray(names) || names.length === 0) throw new Error('ClassLabel: names must be a non-empty array of strings')
    const index = new Map<string, number>()
    names.forEach((n, i) => {
      if (typeof n !== 'string' || n === '') throw new Error(`ClassLabel: name ${i} is ${JSON.stringify(n)}; names must be non-empty strings`)
      if (index.has(n)) throw new Error(`ClassLabel: the name "${n}" appears twice (at ${index.get(n)} and ${i})`)
      index.set(n, i)
    })
    this.names = [...names]
    this.index = index
  }

  get numClasses(): number {
    return this.names.length
  }

  /** The class index of a name; undefined when the name is not a class. */
  str2int(name: string): number | undefined {
    return this.index.get(name)
  }

  int2str(i: number): string {
    if (!Number.isInteger(i) || i < 0 || i >= this.names.length) throw new RangeError(`ClassLabel: ${i} is not a class index (0..${this.names.length - 1})`)
    return this.names[i]
  }

  /** config.json's id2label ({"0": "neg", …}). */
  get id2label(): Record<string, string> {
    return Object.fromEntries(this.names.map((n, i) => [String(i), n]))
  }

  /** config.json's label2id ({"neg": 0, …}). */
  get label2id(): Record<string, number> {
    return Object.fromEntries(this.names.map((n, i) => [n, i]))
  }
}

/** Python's str(value) for the scalars a data file holds (True / False, not true / false). */
function pythonStr(v: unknown): string {
  if (typeof v === 'boolean') return v ? 'True' : 'False'
  return String(v)
}

/** Compares by Unicode code point, as Python's sorted() orders str (JS's default sort compares UTF-16 units). */
export function compareCodePoints(a: string, b: string): number {
  const x = [...a], y = [...b]
  for (let i = 0; i < Math.min(x.length, y.length); i++) {
    const d = x[i].codePointAt(0)! - y[i].codePointAt(0)!
    if (d !== 0) return d
  }
  return x.length - y.length
}

/** How a row is named in errors; by default describeRow's "train.csv line 14 (row 12)", or "row 12" when the file is not known. */
export type RowLocator = (row: number) => string

export interface LabelCheckOptions {
  /** Names a row in errors (default: describeRow of the dataset). */
  locate?: RowLocator
  /** Prefix of errors, e.g. "test split". */
  where?: string
  /** Where the class names came from, for errors ("the train split", "--label-names"). */
  classesFrom?: string
}

const locatorOf = (ds: Dataset, options: LabelCheckOptions): RowLocator => options.locate ?? ((row) => describeRow(ds, row))

function checkColumn(ds: Dataset, column: string, where: string): unknown[] {
  if (!ds.hasColumn(column)) throw new Error(`${where}: no label column "${column}" (columns: ${ds.columnNames.join(', ')})`)
  return ds.column<unknown>(column)
}

function isMissing(v: unknown): boolean {
  return v === null || v === undefined || (typeof v === 'string' && v.trim() === '')
}

/** A class index as a data file may spell it: an integer, or a string of one ("3"). */
export function asClassIndex(v: unknown): number | null {
  if (typeof v === 'number' && Number.isInteger(v)) return v
  if (typeof v === 'bigint') return Number(v)
  if (typeof v === 'string' && /^\s*-?\d+\s*$/.test(v)) return Number(v)
  return null
}

/** Whether a label column holds names rather than class indices (any value that is not an integer). */
export function hasNamedLabels(values: readonly unknown[]): boolean {
  return values.some((v) => !isMissing(v) && asClassIndex(v) === null && typeof v !== 'number')
}

/**
 * The ClassLabel of a column, as class_encode_column builds it: the distinct
 * values (as Python's str) sorted by code point. Empty or missing labels are
 * refused with their row.
 */
export function classLabelOf(ds: Dataset, column: string, options: LabelCheckOptions = {}): ClassLabel {
  const where = options.where ?? 'classEncodeColumn'
  const locate = locatorOf(ds, options)
  const values = checkColumn(ds, column, where)
  const names = new Set<string>()
  values.forEach((v, i) => {
    if (isMissing(v)) throw new Error(`${where}: the label at ${locate(i)} is ${v === undefined || v === null ? 'missing' : 'empty'}`)
    names.add(pythonStr(v))
  })
  if (names.size === 0) throw new Error(`${where}: the label column "${column}" has no rows`)
  return new ClassLabel([...names].sort(compareCodePoints))
}

/**
 * The column's labels as class indices. Names are looked up in `labels`;
 * integers (or integer strings) are kept as indices when `acceptIndices`,
 * and checked to lie in [0, numClasses). The first bad row is reported with
 * the names (or range) it should have had.
 */
export function encodeLabels(ds: Dataset, column: string, labels: ClassLabel, options: LabelCheckOptions & { acceptIndices?: boolean } = {}): number[] {
  const where = options.where ?? 'classEncodeColumn'
  const locate = locatorOf(ds, options)
  const values = checkColumn(ds, column, where)
  const n = labels.numClasses
  const shown = labels.names.length <= 20 ? labels.names.map((x) => JSON.stringify(x)).join(', ') : `${labels.names.slice(0, 20).map((x) => JSON.stringify(x)).join(', ')}, …`
  return values.map((v, i) => {
    if (isMissing(v)) throw new Error(`${where}: the label at ${locate(i)} is ${v === undefined || v === null ? 'missing' : 'empty'}`)
    const byName = labels.str2int(pythonStr(v))
    if (byName !== undefined) return byName
    const index = options.acceptIndices ? asClassIndex(v) : null
    if (index !== null) {
      if (index < 0 || index >= n) {
        throw new RangeError(`${where}: the label at ${locate(i)} is ${index}, ${options.classesFrom ? `but ${options.classesFrom} gives` : 'out of range for'} ${n} classes (labels 0..${n - 1})`)
      }
      return index
    }
    throw new Error(`${where}: the label at ${locate(i)} is ${JSON.stringify(v)}, not one of the ${n} class names (${shown})${options.classesFrom ? ` from ${options.classesFrom}` : ''}`)
  })
}

/**
 * datasets' class_encode_column: the column's string labels replaced by
 * class indices, with the ClassLabel that names them (pass `names` to fix the
 * order, e.g. the training split's, for another split).
 */
export function classEncodeColumn(ds: Dataset, column: string, options: LabelCheckOptions & { names?: readonly string[] } = {}): { dataset: Dataset; classLabel: ClassLabel } {
  const classLabel = options.names ? new ClassLabel(options.names) : classLabelOf(ds, column, options)
  const encoded = encodeLabels(ds, column, classLabel, options)
  return { dataset: ds.map((_, i) => ({ [column]: encoded[i] })), classLabel }
}

/**
 * Every split encoded with one ClassLabel: `names` when given, else the
 * sorted names of the `from` split (default "train"). A label of another
 * split that the names do not have is an error naming split, file and line:
 * a model cannot be scored on a class it was never given.
 */
export function classEncodeSplits(dict: DatasetDict, column: string, options: { names?: readonly string[]; from?: string } = {}): { splits: DatasetDict; classLabel: ClassLabel } {
  const from = options.from ?? 'train'
  const source = dict[from]
  if (!options.names && !source) throw new Error(`classEncodeSplits: no "${from}" split to take the class names from (splits: ${Object.keys(dict).join(', ')})`)
  const classLabel = options.names ? new ClassLabel(options.names) : classLabelOf(source, column, { where: `${from} split` })
  const classesFrom = options.names ? 'the given names' : `the ${from} split`
  const splits: DatasetDict = {}
  for (const [name, ds] of Object.entries(dict)) {
    splits[name] = classEncodeColumn(ds, column, { names: classLabel.names, where: `${name} split`, classesFrom }).dataset
  }
  return { splits, classLabel }
}
