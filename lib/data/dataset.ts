// Dataset: an immutable table of named columns, with the `datasets` library's
// verbs (map, filter, select, shuffle, train_test_split) and row / column
// access. Rows are plain objects; columns are arrays.
import { hostRandomGenerator } from './random.js'

export type Row = Record<string, unknown>

/** Where row i came from, for messages: "train.csv line 8". */
export type RowSource = (index: number) => string

// Kept beside the Dataset rather than in it: provenance is for messages only,
// and follows a row through map, select, shuffle and filter.
const rowSources = new WeakMap<Dataset, RowSource>()

/** Records where the rows of ds came from (loadDataset does this); returns ds. */
export function setRowSource(ds: Dataset, source: RowSource): Dataset {
  rowSources.set(ds, source)
  return ds
}

/** "train.csv line 8" when the file is known, else "row 7" (0-based, as Dataset indices). */
export function describeRow(ds: Dataset, index: number): string {
  const source = rowSources.get(ds)
  return source ? `${source(index)} (row ${index})` : `row ${index}`
}

function inherit(from: Dataset, to: Dataset, indexMap?: readonly number[]): Dataset {
  const source = rowSources.get(from)
  if (source) rowSources.set(to, indexMap ? (i) => source(indexMap[i]) : source)
  return to
}

export interface MapOptions {
  /** fn receives a batch ({column: values[]}) and returns new/updated columns. */
  batched?: boolean
  batchSize?: number
  /** Columns to drop from the result. */
  removeColumns?: string[]
}

export class Dataset {
  private readonly columns: Map<string, unknown[]>
  readonly length: number

  private constructor(columns: Map<string, unknown[]>, where = 'Dataset') {
    let length = -1
    for (const [name, values] of columns) {
      if (!Array.isArray(values)) throw new TypeError(`${where}: column "${name}" is not an array`)
      if (length >= 0 && values.length !== length) {
        throw new RangeError(`${where}: column "${name}" has ${values.length} rows, others have ${length}`)
      }
      length = values.length
    }
    this.columns = columns
    this.length = Math.max(0, length)
  }

  static fromColumns(columns: Record<string, unknown[]>): Dataset {
    return new Dataset(new Map(Object.entries(columns).map(([k, v]) => [k, [...v]])), 'Dataset.fromColumns')
  }

  static fromRows(rows: Row[]): Dataset {
    const names: string[] = []
    const seen = new Set<string>()
    for (const r of rows) for (const k of Object.keys(r)) if (!seen.has(k)) { seen.add(k); names.push(k) }
    const columns = new Map(names.map((n) => [n, rows.map((r, i) => {
      if (!(n in r)) throw new Error(`Dataset.fromRows: row ${i} has no "${n}"`)
      return r[n]
    })]))
    return new Dataset(columns, 'Dataset.fromRows')
  }

  get columnNames(): string[] {
    return [...this.columns.keys()]
  }

  hasColumn(name: string): boolean {
    return this.columns.has(name)
  }

  /** The values of one column (a copy). */
  column<T = unknown>(name: string): T[] {
    const c = this.columns.get(name)
    if (!c) throw new Error(`Dataset: no column "${name}" (columns: ${this.columnNames.join(', ') || 'none'})`)
    return [...c] as T[]
  }

  get(index: number): Row {
    if (!Number.isInteger(index) || index < 0 || index >= this.length) {
      throw new RangeError(`Dataset: index ${index} is outside [0, ${this.length})`)
    }
    const row: Row = {}
    for (const [k, v] of this.columns) row[k] = v[index]
    return row
  }

  *[Symbol.iterator](): Iterator<Row> {
    for (let i = 0; i < this.length; i++) yield this.get(i)
  }

  /** Rows at the given indices, in that order (indices may repeat). */
  select(indices: Iterable<number>): Dataset {
    const idx = [...indices]
    for (const i of idx) {
      if (!Number.isInteger(i) || i < 0 || i >= this.length) throw new RangeError(`Dataset.select: index ${i} is outside [0, ${this.length})`)
    }
    return inherit(this, new Dataset(new Map([...this.columns].map(([k, v]) => [k, idx.map((i) => v[i])]))), idx)
  }

  /** A permutation from a seeded generator (same seed, same order). */
  shuffle(options: { seed?: number } = {}): Dataset {
    const random = hostRandomGenerator(options.seed ?? 42)
    const order = Array.from({ length: this.length }, (_, i) => i)
    for (let i = order.length - 1; i > 0; i--) {
      const j = Math.floor(random() * (i + 1))
      ;[order[i], order[j]] = [order[j], order[i]]
    }
    return this.select(order)
  }

  filter(predicate: (row: Row, index: number) => boolean): Dataset {
    const keep: number[] = []
    for (let i = 0; i < this.length; i++) if (predicate(this.get(i), i)) keep.push(i)
    return this.select(keep)
  }

  /**
   * Applies fn to each row (or each batch with batched: true) and merges the
   * returned fields into the rows, as datasets.Dataset.map does.
   */
  map(fn: (input: Row, index: number) => object | null | undefined, options: MapOptions = {}): Dataset {
    const remove = new Set(options.removeColumns ?? [])
    for (const c of remove) if (!this.columns.has(c)) throw new Error(`Dataset.map: removeColumns names an unknown column "${c}"`)
    const out = new Map<string, unknown[]>()
    for (const [k, v] of this.columns) if (!remove.has(k)) out.set(k, [...v])
    const assign = (name: string, start: number, values: unknown[]) => {
      let col = out.get(name)
      if (!col) {
        col = new Array(this.length)
        out.set(name, col)
      }
      for (let i = 0; i < values.length; i++) col[start + i] = values[i]
    }
    if (options.batched) {
      const size = options.batchSize ?? 1000
      if (!Number.isInteger(size) || size < 1) throw new RangeError(`Dataset.map: batchSize must be a positive integer, got ${size}`)
      for (let start = 0; start < this.length; start += size) {
        const end = Math.min(this.length, start + size)
        const batch: Row = {}
        for (const [k, v] of this.columns) batch[k] = v.slice(start, end)
        const result = fn(batch, start)
        for (const [k, values] of Object.entries((result ?? {}) as Row)) {
          if (!Array.isArray(values) || values.length !== end - start) {
            throw new RangeError(`Dataset.map: batched fn returned "${k}" with ${Array.isArray(values) ? values.length : 'no'} values for a batch of ${end - start}`)
          }
          assign(k, start, values)
        }
      }
    } else {
      for (let i = 0; i < this.length; i++) {
        const result = fn(this.get(i), i)
        for (const [k, value] of Object.entries((result ?? {}) as Row)) assign(k, i, [value])
      }
    }
    return inherit(this, new Dataset(out, 'Dataset.map'))
  }

  removeColumns(names: string[]): Dataset {
    for (const c of names) if (!this.columns.has(c)) throw new Error(`Dataset.removeColumns: unknown column "${c}"`)
    return inherit(this, new Dataset(new Map([...this.columns].filter(([k]) => !names.includes(k)))))
  }

  renameColumn(from: string, to: string): Dataset {
    if (!this.columns.has(from)) throw new Error(`Dataset.renameColumn: unknown column "${from}"`)
    if (this.columns.has(to)) throw new Error(`Dataset.renameColumn: column "${to}" exists already`)
    return inherit(this, new Dataset(new Map([...this.columns].map(([k, v]) => [k === from ? to : k, v]))))
  }

  /** Splits into {train, test} after a seeded shuffle, like datasets' train_test_split. */
  trainTestSplit(options: { testSize: number; seed?: number }): { train: Dataset; test: Dataset } {
    const n = this.length
    const testCount = options.testSize < 1 ? Math.ceil(n * options.testSize) : options.testSize
    if (!(testCount > 0 && testCount < n)) throw new RangeError(`trainTestSplit: testSize ${options.testSize} leaves no train or no test rows out of ${n}`)
    const shuffled = this.shuffle({ seed: options.seed })
    const idx = Array.from({ length: n }, (_, i) => i)
    return { train: shuffled.select(idx.slice(0, n - testCount)), test: shuffled.select(idx.slice(n - testCount)) }
  }
}

export type DatasetDict = Record<string, Dataset>
