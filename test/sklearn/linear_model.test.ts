// LogisticRegression against scikit-learn's on the same float32 embeddings
// (all-MiniLM-L6-v2 of rotten tomatoes sentences; test/fixtures/setfit/logistic):
// the same number of lbfgs iterations, coefficients within 1e-4 of the
// largest (the bound; observed ~1e-6), probabilities and predictions.
import t from 'tap'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { readSafetensors } from '../../lib/hub/safetensors.js'
import { LogisticRegression, MultiLabelLogisticRegression, type ClassLabel, type Matrix } from '../../lib/sklearn/linear_model.js'
import { minimizeLbfgsb } from '../../lib/sklearn/lbfgsb.js'
import { closePerTensor } from '../helpers/golden.js'

const dir = join(__dirname, '..', '..', '..', 'test', 'fixtures', 'setfit', 'logistic')
const X = readSafetensors(join(dir, 'X.safetensors')).tensors
const expected = JSON.parse(readFileSync(join(dir, 'expected.json'), 'utf8')) as {
  cases: Array<{ x: string; y: ClassLabel[]; params: { C?: number; max_iter?: number }; classes: ClassLabel[]; coef: number[][]; intercept: number[]; n_iter: number; proba: number[][]; predict: ClassLabel[] }>
  one_vs_rest: { x: string; Y: number[][]; estimators: Array<{ coef?: number[][]; intercept?: number[]; constant?: number }>; proba: number[][]; predict: number[][] }
}

function matrix(name: string, rows?: number): Matrix {
  const x = X.get(name)!
  const r = rows ?? x.shape[0]
  return { rows: r, cols: x.shape[1], data: (x.data as Float32Array).subarray(0, r * x.shape[1]) }
}

for (const c of expected.cases) {
  t.test(`LogisticRegression(${JSON.stringify(c.params)}) on ${c.x}`, async (t) => {
    const lr = new LogisticRegression({ C: c.params.C, maxIter: c.params.max_iter }).fit(matrix(c.x), c.y)
    t.same(lr.classes_, c.classes, 'classes sorted as numpy.unique')
    t.equal(lr.nIter_, c.n_iter, 'the same number of lbfgs iterations')
    const coef = closePerTensor(lr.coef_!.flatMap((r) => Array.from(r)), c.coef.flat(), 1e-4)
    t.ok(coef.ok, `coefficients: ${coef.msg}`)
    const intercept = closePerTensor(Array.from(lr.intercept_!), c.intercept, 1e-4, 1e-6)
    t.ok(intercept.ok, `intercepts: ${intercept.msg}`)
    const proba = closePerTensor(lr.predictProba(matrix(c.x, 6)).flatMap((r) => Array.from(r)), c.proba.flat(), 1e-5, 1e-6)
    t.ok(proba.ok, `predict_proba: ${proba.msg}`)
    t.same(lr.predict(matrix(c.x, 6)), c.predict, 'predict')
  })
}

t.test('OneVsRestClassifier(LogisticRegression()) on multi-label targets, a constant label included', async (t) => {
  const c = expected.one_vs_rest
  const head = new MultiLabelLogisticRegression('one-vs-rest').fit(matrix(c.x), c.Y)
  c.estimators.forEach((e, i) => {
    const got = head.estimators[i]
    if (e.constant !== undefined) {
      t.same(got, { constant: e.constant }, `label ${i} never varies: a constant predictor`)
      return
    }
    const lr = got as LogisticRegression
    const coef = closePerTensor(Array.from(lr.coef_![0]), e.coef!.flat(), 1e-4)
    t.ok(coef.ok, `label ${i} coefficients: ${coef.msg}`)
  })
  const proba = closePerTensor(head.predictProba(matrix(c.x, 5)).flatMap((r) => Array.from(r)), c.proba.flat(), 1e-5, 1e-6)
  t.ok(proba.ok, `predict_proba: ${proba.msg}`)
  t.same(head.predict(matrix(c.x, 5)), c.predict)
  t.throws(() => new MultiLabelLogisticRegression('multi-output').fit(matrix(c.x), c.Y), /label 2 has the value 1 in every row/)
})

t.test('a fitted head survives toJSON / fromJSON', async (t) => {
  const c = expected.cases[2]
  const lr = new LogisticRegression().fit(matrix(c.x), c.y)
  const back = LogisticRegression.fromJSON(JSON.parse(JSON.stringify(lr.toJSON())))
  t.same(back.predictProba(matrix(c.x, 4)), lr.predictProba(matrix(c.x, 4)), 'the same probabilities (float32 values round-trip exactly)')
  t.throws(() => LogisticRegression.fromJSON({ head_type: 'LogisticRegression', classes: [0, 1], coef: [[1, 2], [3, 4]], intercept: [0] }), /2 classes need 1 coefficient row\(s\) and intercept\(s\); found 2 and 1/)
  t.throws(() => LogisticRegression.fromJSON({ head_type: 'LogisticRegression', classes: [0, 1], coef: [[1, 'x']], intercept: [0] }), /coef\[0\] must be 2 finite numbers/)
  t.throws(() => LogisticRegression.fromJSON({ classes: [0] }), /"classes" must list at least two class labels/)
})

t.test('bad input is named', async (t) => {
  const lr = new LogisticRegression()
  t.throws(() => lr.fit({ rows: 2, cols: 2, data: [0, 1, 2, 3] }, [1, 1]), /at least 2 classes in the data, but the data contains only one class: 1/)
  t.throws(() => lr.fit({ rows: 2, cols: 2, data: [0, 1, NaN, 3] }, [0, 1]), /X\[1, 0\] is NaN; the embeddings must be finite/)
  t.throws(() => lr.fit({ rows: 2, cols: 2, data: [0, 1, 2] }, [0, 1]), /X has 3 values for 2 × 2/)
  t.throws(() => lr.fit({ rows: 2, cols: 1, data: [0, 1] }, [0, 'a']), /labels mix numbers and strings/)
  t.throws(() => lr.predict({ rows: 1, cols: 1, data: [0] }), /not fitted yet/)
  t.throws(() => new LogisticRegression({ C: 0 }), /C must be positive/)
  const fitted = new LogisticRegression().fit({ rows: 2, cols: 2, data: [0, 1, 1, 0] }, [0, 1])
  t.throws(() => fitted.predict({ rows: 1, cols: 3, data: [0, 0, 0] }), /X has 3 features, but the head was fitted on 2/)
})

t.test('L-BFGS-B minimises a convex quadratic and the Rosenbrock function', async (t) => {
  const quad = minimizeLbfgsb((x) => ({ f: (x[0] - 3) ** 2 + 10 * (x[1] + 1) ** 2, g: Float64Array.of(2 * (x[0] - 3), 20 * (x[1] + 1)) }), [0, 0], { gtol: 1e-10 })
  t.ok(quad.success && Math.abs(quad.x[0] - 3) < 1e-6 && Math.abs(quad.x[1] + 1) < 1e-6, `quadratic: ${Array.from(quad.x)} (${quad.message})`)
  const rosen = minimizeLbfgsb((x) => ({
    f: 100 * (x[1] - x[0] ** 2) ** 2 + (1 - x[0]) ** 2,
    g: Float64Array.of(-400 * x[0] * (x[1] - x[0] ** 2) - 2 * (1 - x[0]), 200 * (x[1] - x[0] ** 2)),
  }), [-1.2, 1], { gtol: 1e-8, ftol: 1e-15 })
  t.ok(Math.abs(rosen.x[0] - 1) < 1e-4 && Math.abs(rosen.x[1] - 1) < 1e-4, `Rosenbrock: ${Array.from(rosen.x)} after ${rosen.nit} iterations`)
  const capped = minimizeLbfgsb((x) => ({ f: 100 * (x[1] - x[0] ** 2) ** 2 + (1 - x[0]) ** 2, g: Float64Array.of(-400 * x[0] * (x[1] - x[0] ** 2) - 2 * (1 - x[0]), 200 * (x[1] - x[0] ** 2)) }), [-1.2, 1], { maxiter: 3 })
  t.equal(capped.nit, 3)
  t.equal(capped.status, 1, 'stopped by the iteration limit, as scipy reports it')
})
