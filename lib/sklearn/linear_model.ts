// scikit-learn's LogisticRegression with its defaults (L2, C = 1, lbfgs,
// max_iter 100, tol 1e-4, intercept fitted and not penalised): the objective
// sklearn minimises, mean(loss) + ||W||² / (2·C·n), binary (one coefficient
// row, classes_[1] positive) or multinomial for more than two classes, and
// the same optimiser path (lbfgsb.ts) — so the coefficients equal sklearn's
// on the same embeddings. Plus the multi-label wrappers setfit uses:
// OneVsRestClassifier and MultiOutputClassifier (one binary fit per label).
//
// Plain TypeScript over Float64Arrays on the host: the problem is small
// (SetFit fits a few hundred rows of a few hundred features; 100 iterations
// are ~10 MFLOP), and matching sklearn needs exact control of each float64
// operation and of scipy's optimiser; no maintained JavaScript numeric
// library ships scipy's L-BFGS-B with its line search.
import { minimizeLbfgsb, type LbfgsbResult } from './lbfgsb.js'

/** A row-major matrix: rows × cols values. */
export interface Matrix {
  rows: number
  cols: number
  data: ArrayLike<number>
}

export type ClassLabel = number | string

export interface LogisticRegressionParams {
  /** Inverse regularisation strength; Infinity: no penalty (sklearn's penalty=None). Default 1. */
  C?: number
  /** Default 100. */
  maxIter?: number
  /** Stop when max |gradient| <= tol. Default 1e-4. */
  tol?: number
  /** Default true. */
  fitIntercept?: boolean
}

/** What a fitted head serialises to (model_head.json). */
export interface LogisticRegressionState {
  head_type: 'LogisticRegression'
  params: { C: number | null; max_iter: number; tol: number; fit_intercept: boolean }
  classes: ClassLabel[]
  /** [1, features] for two classes, [classes, features] for more. */
  coef: number[][]
  intercept: number[]
  n_iter?: number[]
}

function checkMatrix(where: string, X: Matrix): void {
  if (!X || !Number.isInteger(X.rows) || !Number.isInteger(X.cols) || X.rows < 0 || X.cols < 1) {
    throw new TypeError(`${where}: X must be a matrix { rows, cols, data }`)
  }
  if (X.data.length !== X.rows * X.cols) throw new RangeError(`${where}: X has ${X.data.length} values for ${X.rows} × ${X.cols}`)
  for (let i = 0; i < X.data.length; i++) {
    if (!Number.isFinite(X.data[i])) {
      throw new RangeError(`${where}: X[${Math.floor(i / X.cols)}, ${i % X.cols}] is ${X.data[i]}; the embeddings must be finite`)
    }
  }
}

function compareLabels(a: ClassLabel, b: ClassLabel): number {
  if (typeof a === 'number' && typeof b === 'number') return a - b
  if (typeof a === 'string' && typeof b === 'string') return a < b ? -1 : a > b ? 1 : 0
  throw new TypeError(`LogisticRegression: labels mix numbers and strings (${JSON.stringify(a)}, ${JSON.stringify(b)})`)
}

/** sorted unique labels, as numpy.unique. */
export function uniqueLabels(y: readonly ClassLabel[]): ClassLabel[] {
  for (const [i, v] of y.entries()) {
    if (typeof v === 'number' ? !Number.isFinite(v) : typeof v !== 'string') {
      throw new TypeError(`LogisticRegression: y[${i}] = ${JSON.stringify(v)} is not a class label (a finite number or a string)`)
    }
  }
  const seen = new Map<string, ClassLabel>()
  for (const v of y) seen.set(`${typeof v}:${v}`, v)
  return [...seen.values()].sort(compareLabels)
}

// sklearn's numerically careful pieces of the binomial loss (sklearn/_loss/_loss.pyx).
function log1pexp(x: number): number {
  if (x <= -37) return Math.exp(x)
  if (x <= -2) return Math.log1p(Math.exp(x))
  if (x <= 18) return Math.log(1 + Math.exp(x))
  if (x <= 33.3) return x + Math.exp(-x)
  return x
}

function binomialGradient(y: number, raw: number): number {
  if (raw > -37) {
    const e = Math.exp(-raw)
    return ((1 - y) - y * e) / (1 + e)
  }
  const e = Math.exp(raw)
  return e - y
}

function expit(x: number): number {
  return 1 / (1 + Math.exp(-x))
}

export class LogisticRegression {
  readonly C: number
  readonly maxIter: number
  readonly tol: number
  readonly fitIntercept: boolean
  classes_: ClassLabel[] | null = null
  /** float32 as sklearn stores them for float32 embeddings: [1 | classes][features]. */
  coef_: Float32Array[] | null = null
  intercept_: Float32Array | null = null
  nIter_: number | null = null

  constructor(params: LogisticRegressionParams = {}) {
    this.C = params.C ?? 1
    this.maxIter = params.maxIter ?? 100
    this.tol = params.tol ?? 1e-4
    this.fitIntercept = params.fitIntercept ?? true
    if (!(this.C > 0)) throw new RangeError(`LogisticRegression: C must be positive, got ${this.C}`)
    if (!Number.isInteger(this.maxIter) || this.maxIter < 0) throw new RangeError(`LogisticRegression: maxIter must be a non-negative integer, got ${this.maxIter}`)
    if (!(this.tol >= 0)) throw new RangeError(`LogisticRegression: tol must be >= 0, got ${this.tol}`)
  }

  get nFeatures(): number | null {
    return this.coef_ ? this.coef_[0].length : null
  }

  fit(X: Matrix, y: readonly ClassLabel[]): this {
    checkMatrix('LogisticRegression.fit', X)
    if (y.length !== X.rows) throw new RangeError(`LogisticRegression.fit: X has ${X.rows} rows but y has ${y.length} labels`)
    const classes = uniqueLabels(y)
    if (classes.length < 2) {
      throw new Error(`This solver needs samples of at least 2 classes in the data, but the data contains only one class: ${JSON.stringify(classes[0] ?? null)}`)
    }
    const n = X.rows, p = X.cols
    const dof = p + (this.fitIntercept ? 1 : 0)
    const l2 = Number.isFinite(this.C) ? 1 / (this.C * n) : 0
    const x = Float64Array.from(X.data)
    const index = new Map(classes.map((c, i) => [`${typeof c}:${c}`, i]))
    const yIndex = y.map((v) => index.get(`${typeof v}:${v}`)!)
    // sklearn warns, and so do we, when lbfgs stops on the iteration limit.
    const options = { maxiter: this.maxIter, maxls: 50, gtol: this.tol, ftol: 64 * 2.220446049250313e-16 }
    let result: LbfgsbResult
    if (classes.length === 2) {
      const target = Float64Array.from(yIndex)
      result = minimizeLbfgsb((w) => binaryLossGradient(w, x, n, p, target, l2, this.fitIntercept), new Float64Array(dof), options)
      this.coef_ = [Float32Array.from(result.x.subarray(0, p))]
      this.intercept_ = Float32Array.of(this.fitIntercept ? result.x[p] : 0)
    } else {
      const k = classes.length
      result = minimizeLbfgsb((w) => multinomialLossGradient(w, x, n, p, k, yIndex, l2, this.fitIntercept), new Float64Array(k * dof), options)
      // Variables are laid out as sklearn's ravel(order="F") of [classes, dof]: classes contiguous per feature.
      this.coef_ = Array.from({ length: k }, (_, c) => Float32Array.from({ length: p }, (_, j) => result.x[c + k * j]))
      this.intercept_ = Float32Array.from({ length: k }, (_, c) => (this.fitIntercept ? result.x[c + k * p] : 0))
    }
    if (result.status === 1) {
      process.stderr.write(`bertkit: LogisticRegression: lbfgs failed to converge after ${result.nit} iterations (status 1: ${result.message}); increase maxIter or scale the data, as scikit-learn advises\n`)
    }
    this.classes_ = classes
    this.nIter_ = result.nit
    return this
  }

  private fitted(where: string): { coef: Float32Array[]; intercept: Float32Array; classes: ClassLabel[] } {
    if (!this.coef_ || !this.intercept_ || !this.classes_) throw new Error(`LogisticRegression.${where}: the head is not fitted yet; call fit first (or train the SetFit model)`)
    return { coef: this.coef_, intercept: this.intercept_, classes: this.classes_ }
  }

  /** X·coefᵀ + intercept: [rows][1] for two classes, [rows][classes] for more. */
  decisionFunction(X: Matrix): Float64Array[] {
    const { coef, intercept } = this.fitted('decisionFunction')
    checkMatrix('LogisticRegression.decisionFunction', X)
    if (X.cols !== coef[0].length) {
      throw new RangeError(`LogisticRegression: X has ${X.cols} features, but the head was fitted on ${coef[0].length}`)
    }
    const out: Float64Array[] = []
    for (let r = 0; r < X.rows; r++) {
      const row = new Float64Array(coef.length)
      for (let c = 0; c < coef.length; c++) {
        let s = 0
        const w = coef[c]
        for (let j = 0; j < X.cols; j++) s += X.data[r * X.cols + j] * w[j]
        row[c] = s + intercept[c]
      }
      out.push(row)
    }
    return out
  }

  /** Class probabilities per row, in the order of classes_. */
  predictProba(X: Matrix): Float64Array[] {
    const scores = this.decisionFunction(X)
    return scores.map((s) => {
      if (s.length === 1) {
        const p = expit(s[0])
        return Float64Array.of(1 - p, p)
      }
      const max = Math.max(...s)
      const e = s.map((v) => Math.exp(v - max))
      const sum = e.reduce((a, b) => a + b, 0)
      return e.map((v) => v / sum)
    })
  }

  predict(X: Matrix): ClassLabel[] {
    const { classes } = this.fitted('predict')
    return this.decisionFunction(X).map((s) => {
      if (s.length === 1) return classes[s[0] > 0 ? 1 : 0]
      let best = 0
      for (let c = 1; c < s.length; c++) if (s[c] > s[best]) best = c
      return classes[best]
    })
  }

  toJSON(): LogisticRegressionState {
    const { coef, intercept, classes } = this.fitted('toJSON')
    return {
      head_type: 'LogisticRegression',
      params: { C: Number.isFinite(this.C) ? this.C : null, max_iter: this.maxIter, tol: this.tol, fit_intercept: this.fitIntercept },
      classes: [...classes],
      coef: coef.map((row) => Array.from(row)),
      intercept: Array.from(intercept),
      ...(this.nIter_ !== null ? { n_iter: [this.nIter_] } : {}),
    }
  }

  static fromJSON(state: unknown, where = 'model_head.json'): LogisticRegression {
    const s = state as Partial<LogisticRegressionState>
    if (!s || typeof s !== 'object') throw new TypeError(`${where}: a LogisticRegression head must be an object`)
    const params = (s.params ?? {}) as Partial<LogisticRegressionState['params']>
    const lr = new LogisticRegression({
      C: params.C === null ? Infinity : params.C,
      maxIter: params.max_iter,
      tol: params.tol,
      fitIntercept: params.fit_intercept,
    })
    if (!Array.isArray(s.classes) || s.classes.length < 2) throw new TypeError(`${where}: "classes" must list at least two class labels`)
    if (!Array.isArray(s.coef) || !Array.isArray(s.intercept)) throw new TypeError(`${where}: "coef" and "intercept" must be arrays`)
    const rows = s.classes.length === 2 ? 1 : s.classes.length
    if (s.coef.length !== rows || s.intercept.length !== rows) {
      throw new RangeError(`${where}: ${s.classes.length} classes need ${rows} coefficient row(s) and intercept(s); found ${s.coef.length} and ${s.intercept.length}`)
    }
    const width = Array.isArray(s.coef[0]) ? s.coef[0].length : -1
    s.coef.forEach((row, i) => {
      if (!Array.isArray(row) || row.length !== width || width < 1 || !row.every((v) => typeof v === 'number' && Number.isFinite(v))) {
        throw new TypeError(`${where}: coef[${i}] must be ${width < 1 ? 'a non-empty list' : `${width}`} finite numbers`)
      }
    })
    if (!s.intercept.every((v) => typeof v === 'number' && Number.isFinite(v))) throw new TypeError(`${where}: "intercept" must hold finite numbers`)
    lr.classes_ = [...s.classes]
    uniqueLabels(lr.classes_)
    lr.coef_ = s.coef.map((row) => Float32Array.from(row))
    lr.intercept_ = Float32Array.from(s.intercept)
    lr.nIter_ = Array.isArray(s.n_iter) && typeof s.n_iter[0] === 'number' ? s.n_iter[0] : null
    return lr
  }
}

/** sklearn's LinearModelLoss(HalfBinomialLoss).loss_gradient: mean loss + l2/2·||w||², and its gradient. */
function binaryLossGradient(w: Float64Array, x: Float64Array, n: number, p: number, y: Float64Array, l2: number, fitIntercept: boolean) {
  const b = fitIntercept ? w[p] : 0
  const g = new Float64Array(w.length)
  let loss = 0
  for (let i = 0; i < n; i++) {
    let raw = b
    const row = i * p
    for (let j = 0; j < p; j++) raw += x[row + j] * w[j]
    loss += log1pexp(raw) - y[i] * raw
    const gp = binomialGradient(y[i], raw) / n
    for (let j = 0; j < p; j++) g[j] += x[row + j] * gp
    if (fitIntercept) g[p] += gp
  }
  let norm2 = 0
  for (let j = 0; j < p; j++) {
    norm2 += w[j] * w[j]
    g[j] += l2 * w[j]
  }
  return { f: loss / n + 0.5 * l2 * norm2, g }
}

/** sklearn's LinearModelLoss(HalfMultinomialLoss).loss_gradient, variables in F order of [classes, dof]. */
function multinomialLossGradient(w: Float64Array, x: Float64Array, n: number, p: number, k: number, y: readonly number[], l2: number, fitIntercept: boolean) {
  const g = new Float64Array(w.length)
  const raw = new Float64Array(k)
  let loss = 0
  for (let i = 0; i < n; i++) {
    const row = i * p
    for (let c = 0; c < k; c++) {
      let s = fitIntercept ? w[c + k * p] : 0
      for (let j = 0; j < p; j++) s += x[row + j] * w[c + k * j]
      raw[c] = s
    }
    let max = raw[0]
    for (let c = 1; c < k; c++) if (raw[c] > max) max = raw[c]
    let sumExp = 0
    for (let c = 0; c < k; c++) sumExp += Math.exp(raw[c] - max)
    loss += Math.log(sumExp) + max - raw[y[i]]
    for (let c = 0; c < k; c++) {
      const gp = (Math.exp(raw[c] - max) / sumExp - (c === y[i] ? 1 : 0)) / n
      for (let j = 0; j < p; j++) g[c + k * j] += x[row + j] * gp
      if (fitIntercept) g[c + k * p] += gp
    }
  }
  let norm2 = 0
  for (let c = 0; c < k; c++) {
    for (let j = 0; j < p; j++) {
      const v = w[c + k * j]
      norm2 += v * v
      g[c + k * j] += l2 * v
    }
  }
  return { f: loss / n + 0.5 * l2 * norm2, g }
}

/** The multi-label wrappers setfit builds around LogisticRegression, by its multi_target_strategy names. */
export type MultiTargetStrategy = 'one-vs-rest' | 'multi-output'
export const MULTI_TARGET_STRATEGIES: readonly string[] = ['one-vs-rest', 'multi-output', 'classifier-chain']

export interface MultiLabelState {
  head_type: 'OneVsRestClassifier' | 'MultiOutputClassifier'
  /** One binary head per label; null where the label's column was constant (sklearn's constant predictor). */
  estimators: Array<LogisticRegressionState | { constant: number }>
}

/**
 * One binary LogisticRegression per label column of a 0/1 matrix (sklearn's
 * OneVsRestClassifier / MultiOutputClassifier around it): predict gives the
 * 0/1 matrix, predictProba the probability of 1 per label. A column with one
 * value only becomes a constant predictor, as OneVsRestClassifier does.
 */
export class MultiLabelLogisticRegression {
  estimators: Array<LogisticRegression | { constant: number }> = []

  constructor(readonly strategy: MultiTargetStrategy, readonly params: LogisticRegressionParams = {}) {}

  fit(X: Matrix, Y: readonly (readonly number[])[]): this {
    if (Y.length !== X.rows) throw new RangeError(`${this.name}.fit: X has ${X.rows} rows but there are ${Y.length} label vectors`)
    const width = Y[0]?.length ?? 0
    Y.forEach((row, i) => {
      if (!Array.isArray(row) || row.length !== width || !row.every((v) => v === 0 || v === 1)) {
        throw new TypeError(`${this.name}.fit: label ${i} must be a 0/1 vector of length ${width}, got ${JSON.stringify(row)}`)
      }
    })
    if (width === 0) throw new RangeError(`${this.name}.fit: the label vectors are empty`)
    this.estimators = []
    for (let c = 0; c < width; c++) {
      const column = Y.map((row) => row[c])
      const distinct = new Set(column)
      if (distinct.size === 1) {
        if (this.strategy === 'multi-output') {
          throw new Error(`MultiOutputClassifier.fit: label ${c} has the value ${column[0]} in every row; LogisticRegression needs two classes (use one-vs-rest, which predicts a constant there)`)
        }
        this.estimators.push({ constant: column[0] })
      } else {
        this.estimators.push(new LogisticRegression(this.params).fit(X, column))
      }
    }
    return this
  }

  private get name(): string {
    return this.strategy === 'one-vs-rest' ? 'OneVsRestClassifier' : 'MultiOutputClassifier'
  }

  /** [rows][labels] probability that each label is on. */
  predictProba(X: Matrix): Float64Array[] {
    if (this.estimators.length === 0) throw new Error(`${this.name}.predictProba: the head is not fitted yet`)
    const columns = this.estimators.map((e) => (e instanceof LogisticRegression ? e.predictProba(X).map((p) => p[1]) : new Array<number>(X.rows).fill(e.constant)))
    return Array.from({ length: X.rows }, (_, r) => Float64Array.from(columns, (col) => col[r]))
  }

  /** [rows][labels] 0/1. */
  predict(X: Matrix): number[][] {
    if (this.estimators.length === 0) throw new Error(`${this.name}.predict: the head is not fitted yet`)
    const columns = this.estimators.map((e) => (e instanceof LogisticRegression ? e.decisionFunction(X).map((s) => (s[0] > 0 ? 1 : 0)) : new Array<number>(X.rows).fill(e.constant)))
    return Array.from({ length: X.rows }, (_, r) => columns.map((col) => col[r]))
  }

  toJSON(): MultiLabelState {
    return { head_type: this.name as MultiLabelState['head_type'], estimators: this.estimators.map((e) => (e instanceof LogisticRegression ? e.toJSON() : { constant: e.constant })) }
  }

  static fromJSON(state: MultiLabelState, where = 'model_head.json'): MultiLabelLogisticRegression {
    const strategy = state.head_type === 'OneVsRestClassifier' ? 'one-vs-rest' : 'multi-output'
    if (!Array.isArray(state.estimators) || state.estimators.length === 0) throw new TypeError(`${where}: "estimators" must be a non-empty list`)
    const head = new MultiLabelLogisticRegression(strategy)
    head.estimators = state.estimators.map((e, i) => {
      if (e && typeof e === 'object' && 'constant' in e) {
        if (e.constant !== 0 && e.constant !== 1) throw new TypeError(`${where}: estimators[${i}].constant must be 0 or 1`)
        return { constant: e.constant }
      }
      return LogisticRegression.fromJSON(e, `${where} estimators[${i}]`)
    })
    return head
  }
}
