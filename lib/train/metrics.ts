// Classification metrics with scikit-learn's semantics: accuracy, and
// precision / recall / F1 with binary, macro, micro and weighted averages.
// Where a ratio is 0/0, scikit-learn's default (zero_division="warn") yields 0;
// so does this module (without the warning).

export type Average = 'binary' | 'macro' | 'micro' | 'weighted'

export interface AverageOptions {
  average?: Average
  /** The positive class for average "binary" (default 1). */
  posLabel?: number
  /** Restrict to these labels (default: every label seen in yTrue or yPred). */
  labels?: number[]
}

function checkPair(name: string, yTrue: ArrayLike<number>, yPred: ArrayLike<number>): void {
  if (yTrue.length !== yPred.length) throw new RangeError(`${name}: yTrue has ${yTrue.length} items, yPred ${yPred.length}`)
  for (let i = 0; i < yTrue.length; i++) {
    if (!Number.isInteger(yTrue[i]) || !Number.isInteger(yPred[i])) {
      throw new TypeError(`${name}: labels must be integers (item ${i}: ${yTrue[i]}, ${yPred[i]})`)
    }
  }
}

export function accuracy(yTrue: ArrayLike<number>, yPred: ArrayLike<number>): number {
  checkPair('accuracy', yTrue, yPred)
  if (yTrue.length === 0) return 0
  let correct = 0
  for (let i = 0; i < yTrue.length; i++) if (yTrue[i] === yPred[i]) correct++
  return correct / yTrue.length
}

interface Counts {
  labels: number[]
  tp: number[]
  fp: number[]
  fn: number[]
  support: number[]
}

function counts(yTrue: ArrayLike<number>, yPred: ArrayLike<number>, labels?: number[]): Counts {
  const seen = new Set<number>()
  for (let i = 0; i < yTrue.length; i++) {
    seen.add(yTrue[i])
    seen.add(yPred[i])
  }
  const list = labels ?? [...seen].sort((a, b) => a - b)
  const index = new Map(list.map((l, i) => [l, i]))
  const z = () => list.map(() => 0)
  const c: Counts = { labels: list, tp: z(), fp: z(), fn: z(), support: z() }
  for (let i = 0; i < yTrue.length; i++) {
    const t = index.get(yTrue[i])
    const p = index.get(yPred[i])
    if (t !== undefined) c.support[t]++
    if (yTrue[i] === yPred[i]) {
      if (t !== undefined) c.tp[t]++
    } else {
      if (p !== undefined) c.fp[p]++
      if (t !== undefined) c.fn[t]++
    }
  }
  return c
}

const ratio = (a: number, b: number) => (b === 0 ? 0 : a / b)

function fbeta(p: number, r: number): number {
  return p + r === 0 ? 0 : (2 * p * r) / (p + r)
}

export interface PrecisionRecallF1 {
  precision: number
  recall: number
  f1: number
}

/** scikit-learn's precision_recall_fscore_support(beta=1) reduced by `average`. */
export function precisionRecallF1(yTrue: ArrayLike<number>, yPred: ArrayLike<number>, options: AverageOptions = {}): PrecisionRecallF1 {
  checkPair('precisionRecallF1', yTrue, yPred)
  const average = options.average ?? 'binary'
  if (average === 'binary') {
    const pos = options.posLabel ?? 1
    const present = new Set<number>([...Array.from(yTrue), ...Array.from(yPred)])
    if (present.size > 2) {
      throw new Error(`average "binary" needs at most 2 classes, found ${present.size} (${[...present].sort((a, b) => a - b).join(', ')}); choose macro, micro or weighted`)
    }
    const c = counts(yTrue, yPred, [pos])
    const precision = ratio(c.tp[0], c.tp[0] + c.fp[0])
    const recall = ratio(c.tp[0], c.tp[0] + c.fn[0])
    return { precision, recall, f1: fbeta(precision, recall) }
  }
  const c = counts(yTrue, yPred, options.labels)
  if (average === 'micro') {
    const tp = c.tp.reduce((a, b) => a + b, 0)
    const fp = c.fp.reduce((a, b) => a + b, 0)
    const fn = c.fn.reduce((a, b) => a + b, 0)
    const precision = ratio(tp, tp + fp)
    const recall = ratio(tp, tp + fn)
    return { precision, recall, f1: fbeta(precision, recall) }
  }
  const per = c.labels.map((_, i) => {
    const precision = ratio(c.tp[i], c.tp[i] + c.fp[i])
    const recall = ratio(c.tp[i], c.tp[i] + c.fn[i])
    return { precision, recall, f1: fbeta(precision, recall) }
  })
  const weights = average === 'weighted' ? c.support : c.labels.map(() => 1)
  const total = weights.reduce((a, b) => a + b, 0)
  const avg = (k: keyof PrecisionRecallF1) => (total === 0 ? 0 : per.reduce((s, m, i) => s + m[k] * weights[i], 0) / total)
  return { precision: avg('precision'), recall: avg('recall'), f1: avg('f1') }
}

export const f1 = (yTrue: ArrayLike<number>, yPred: ArrayLike<number>, options?: AverageOptions) => precisionRecallF1(yTrue, yPred, options).f1
export const precision = (yTrue: ArrayLike<number>, yPred: ArrayLike<number>, options?: AverageOptions) => precisionRecallF1(yTrue, yPred, options).precision
export const recall = (yTrue: ArrayLike<number>, yPred: ArrayLike<number>, options?: AverageOptions) => precisionRecallF1(yTrue, yPred, options).recall

/** Index of the largest value in each row of a [rows, cols] row-major array. */
export function argmaxRows(values: ArrayLike<number>, cols: number): Int32Array {
  const rows = Math.floor(values.length / cols)
  const out = new Int32Array(rows)
  for (let r = 0; r < rows; r++) {
    let best = 0
    for (let c = 1; c < cols; c++) if (values[r * cols + c] > values[r * cols + best]) best = c
    out[r] = best
  }
  return out
}
