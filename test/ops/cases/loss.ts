// Cases of the cross-entropy op and the float64 reference of torch's
// cross_entropy (reduction "mean", ignore_index, class weights) that
// loss.test.ts shares for its finite differences.
import { native } from '../../../lib/native.js'
import { randomArray } from '../../helpers/reference.js'
import { lazy, type OpCase } from '../backend_ops.js'

const N = () => native()

export const IGNORE = -100

export interface CrossEntropyCase {
  name: string
  rows: number
  classes: number
  labels: number[]
  weights: number[] | null
  ignoreIndex: number
  /** added to every logit, to show the log-softmax is shifted by the row max */
  shift: number
}

export function logitsFor(c: CrossEntropyCase, seed: number): Float64Array {
  return randomArray(c.rows * c.classes, seed, -4, 4).map((v) => Math.fround(v + c.shift))
}

/** float64 torch cross_entropy(logits, labels, weight, ignore_index, reduction="mean"). */
export function referenceLoss(c: CrossEntropyCase, logits: Float64Array): number {
  let num = 0
  let den = 0
  for (let r = 0; r < c.rows; r++) {
    const y = c.labels[r]
    if (y === c.ignoreIndex) continue
    const row = logits.subarray(r * c.classes, (r + 1) * c.classes)
    const max = row.reduce((a, v) => Math.max(a, v), -Infinity)
    const lse = max + Math.log(row.reduce((a, v) => a + Math.exp(v - max), 0))
    const w = c.weights ? c.weights[y] : 1
    num += w * (lse - row[y])
    den += w
  }
  return num / den
}

/** float64 d(dloss * loss)/dlogits, analytic. */
export function referenceGrad(c: CrossEntropyCase, logits: Float64Array, dloss: number): Float64Array {
  const grad = new Float64Array(logits.length)
  let den = 0
  for (let r = 0; r < c.rows; r++) if (c.labels[r] !== c.ignoreIndex) den += c.weights ? c.weights[c.labels[r]] : 1
  for (let r = 0; r < c.rows; r++) {
    const y = c.labels[r]
    if (y === c.ignoreIndex) continue
    const row = logits.subarray(r * c.classes, (r + 1) * c.classes)
    const max = row.reduce((a, v) => Math.max(a, v), -Infinity)
    const sum = row.reduce((a, v) => a + Math.exp(v - max), 0)
    const coef = (dloss * (c.weights ? c.weights[y] : 1)) / den
    for (let k = 0; k < c.classes; k++) grad[r * c.classes + k] = coef * (Math.exp(row[k] - max) / sum - (k === y ? 1 : 0))
  }
  return grad
}

/** The cases loss.test.ts also takes finite differences of (every logit: small ones). */
export const CROSS_ENTROPY_CASES: CrossEntropyCase[] = [
  { name: '7 x 5 with ignored rows', rows: 7, classes: 5, labels: [0, 4, IGNORE, 2, 1, IGNORE, 3], weights: null, ignoreIndex: IGNORE, shift: 0 },
  { name: '7 x 5 with class weights', rows: 7, classes: 5, labels: [0, 4, IGNORE, 2, 1, 4, 3],
    weights: [0.5, 2, 1, 0.25, 3], ignoreIndex: IGNORE, shift: 0 },
  { name: 'one row, two classes', rows: 1, classes: 2, labels: [1], weights: null, ignoreIndex: IGNORE, shift: 0 },
  { name: '16 x 2 (a classification batch), logits shifted by 1e4', rows: 16, classes: 2,
    labels: [0, 1, 1, 0, 1, 0, 0, 1, 1, 1, 0, 0, 1, 0, 1, 0], weights: null, ignoreIndex: IGNORE, shift: 1e4 },
  { name: 'ignore_index inside the class range (2)', rows: 6, classes: 3, labels: [2, 0, 1, 2, 1, 0],
    weights: [1, 3, 5], ignoreIndex: 2, shift: 0 },
  { name: '3 x 1000, wide rows', rows: 3, classes: 1000, labels: [999, 0, 512], weights: null, ignoreIndex: IGNORE, shift: -50 },
]

export function crossEntropyCases(): OpCase[] {
  const cases: OpCase[] = []
  let seed = 10000
  const all: CrossEntropyCase[] = [...CROSS_ENTROPY_CASES,
    { name: '64 x 1000, logits - 50', rows: 64, classes: 1000, labels: Array.from({ length: 64 }, (_, i) => (i * 37) % 1000), weights: null,
      ignoreIndex: IGNORE, shift: -50 },
    { name: '3000 x 3 (more rows than one block), class weights', rows: 3000, classes: 3,
      labels: Array.from({ length: 3000 }, (_, i) => (i % 7 === 0 ? IGNORE : i % 3)), weights: [0.2, 1, 4], ignoreIndex: IGNORE, shift: 0 },
    { name: 'every row ignored (NaN, as torch)', rows: 4, classes: 3, labels: [IGNORE, IGNORE, IGNORE, IGNORE], weights: null, ignoreIndex: IGNORE, shift: 0 }]
  for (const c of all) {
    const s = (seed += 2)
    const data = lazy(() => ({ logits: logitsFor(c, s), d0: randomArray(c.rows * c.classes, s + 1) }))
    const dloss = 0.7
    const inputs = (io: Parameters<OpCase['setup']>[0]) => ({
      logits: io.f32(data().logits), labels: io.i32(c.labels), weights: c.weights ? io.f32(c.weights) : null,
    })
    cases.push({
      op: 'crossEntropyForward', label: c.name, size: 'quick',
      setup: (io) => {
        const x = inputs(io), loss = io.nan(1)
        return { call: () => N().crossEntropyForward(c.rows, c.classes, x.logits, x.labels, c.ignoreIndex, x.weights, loss), outputs: { loss } }
      },
      reference: () => ({ loss: [referenceLoss(c, data().logits)] }), tolerance: { rtol: 2e-6, atol: 1e-7 },
    })
    cases.push({
      op: 'crossEntropyBackward', label: `${c.name}, into random`, size: 'quick',
      setup: (io) => {
        const x = inputs(io), dl = io.f32([dloss]), dlogits = io.f32(data().d0)
        return {
          call: () => N().crossEntropyBackward(c.rows, c.classes, x.logits, x.labels, c.ignoreIndex, x.weights, dl, dlogits),
          outputs: { dlogits },
        }
      },
      reference: () => {
        const want = referenceGrad(c, data().logits, dloss)
        // loss.test.ts's bound: 1e-4 relative, 1e-6 of the largest element, and the rounding of the start.
        const atol = 1e-6 * want.reduce((m, v) => Math.max(m, Math.abs(v)), 0) + 2e-7
        return { dlogits: { values: data().d0.map((v, i) => v + want[i]), scale: want.map((w) => 1e-4 * Math.abs(w) + atol) } }
      },
      tolerance: { rtol: 1, atol: 0 },
    })
  }
  return cases
}
