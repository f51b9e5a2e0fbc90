// crossEntropyForward / crossEntropyBackward on every backend, against a
// float64 reference of torch.nn.functional.cross_entropy (reduction "mean",
// ignore_index, class weights) and central finite differences of it.
import { t } from 'tap'
import { native, type NativeBuffer } from '../../lib/native.js'
import { devicesUnderTest } from '../helpers/devices.js'
import { compare, f32Buffer, freeAll, i32Buffer, poisoned, randomArray, readF64 } from '../helpers/reference.js'

const IGNORE = -100

interface Case {
  name: string
  rows: number
  classes: number
  labels: number[]
  weights: number[] | null
  ignoreIndex: number
  /** added to every logit, to show the log-softmax is shifted by the row max */
  shift: number
}

const cases: Case[] = [
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

function logitsFor(c: Case, seed: number): Float64Array {
  return randomArray(c.rows * c.classes, seed, -4, 4).map((v) => Math.fround(v + c.shift))
}

/** float64 torch cross_entropy(logits, labels, weight, ignore_index, reduction="mean"). */
function referenceLoss(c: Case, logits: Float64Array): number {
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
function referenceGrad(c: Case, logits: Float64Array, dloss: number): Float64Array {
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

for (const dev of devicesUnderTest()) {
  t.test(`cross-entropy on ${dev.name}`, { skip: dev.skip ?? false }, async (t) => {
    const addon = native()
    const liveBefore = addon.memoryStats().liveBuffers
    const owned: NativeBuffer[] = []
    const keep = <B extends NativeBuffer>(b: B): B => { owned.push(b); return b }
    const buf = (values: ArrayLike<number>) => keep(f32Buffer(dev.code, values))
    const ibuf = (values: ArrayLike<number>) => keep(i32Buffer(dev.code, values))
    t.teardown(() => freeAll(...owned))

    const forward = (c: Case, logits: ArrayLike<number>): number => {
      const loss = keep(poisoned(dev.code, 1))
      addon.crossEntropyForward(c.rows, c.classes, buf(logits), ibuf(c.labels), c.ignoreIndex,
        c.weights ? buf(c.weights) : null, loss)
      return readF64(loss)[0]
    }

    cases.forEach((c, caseIndex) => {
      t.test(`forward: ${c.name}`, async (t) => {
        const logits = logitsFor(c, 10 + caseIndex)
        const got = forward(c, logits)
        const want = referenceLoss(c, logits)
        t.ok(Number.isFinite(got), `loss is finite (${got})`)
        const cmp = compare([got], [want], 2e-6, 1e-7)
        t.ok(cmp.ok, `loss matches the reference (${cmp.message})`)
      })

      t.test(`backward: ${c.name}`, async (t) => {
        const logits = logitsFor(c, 20 + caseIndex)
        const n = logits.length
        const dloss = 0.7
        const want = referenceGrad(c, logits, dloss)
        const start = randomArray(n, 30 + caseIndex)
        const dlogits = buf(start)
        const logitsBuf = buf(logits)
        const labels = ibuf(c.labels)
        const weights = c.weights ? buf(c.weights) : null
        const dlossBuf = buf([dloss])
        addon.crossEntropyBackward(c.rows, c.classes, logitsBuf, labels, c.ignoreIndex, weights, dlossBuf, dlogits)
        const once = readF64(dlogits).map((v, i) => v - start[i])
        const tol = 1e-6 * Math.max(...want.map(Math.abs)) + 2e-7
        const cmp = compare(once, want, 1e-4, tol)
        t.ok(cmp.ok, `dlogits += the analytic gradient (${cmp.message})`)

        // Central differences of dloss * loss through the float64 reference, every logit.
        const h = 1e-4
        const probe = Float64Array.from(logits)
        const fd = new Float64Array(n)
        for (let i = 0; i < n; i++) {
          probe[i] = logits[i] + h
          const up = referenceLoss(c, probe)
          probe[i] = logits[i] - h
          fd[i] = (dloss * (up - referenceLoss(c, probe))) / (2 * h)
          probe[i] = logits[i]
        }
        const cfd = compare(once, fd, 1e-3, tol + 1e-6)
        t.ok(cfd.ok, `dlogits matches finite differences (${cfd.message})`)
        for (let r = 0; r < c.rows; r++) {
          if (c.labels[r] !== c.ignoreIndex) continue
          const row = once.subarray(r * c.classes, (r + 1) * c.classes)
          t.ok(row.every((v) => v === 0), `ignored row ${r} gets no gradient`)
        }

        addon.crossEntropyBackward(c.rows, c.classes, logitsBuf, labels, c.ignoreIndex, weights, dlossBuf, dlogits)
        const twice = readF64(dlogits).map((v, i) => v - start[i])
        const c2 = compare(twice, want.map((v) => 2 * v), 1e-4, 2 * tol)
        t.ok(c2.ok, `a second call adds the gradient again (${c2.message})`)
      })
    })

    t.test('every row ignored: NaN loss (0/0, as torch) and no gradient', async (t) => {
      const c: Case = { name: 'all ignored', rows: 4, classes: 3, labels: [IGNORE, IGNORE, IGNORE, IGNORE], weights: null, ignoreIndex: IGNORE, shift: 0 }
      const logits = logitsFor(c, 40)
      t.ok(Number.isNaN(forward(c, logits)), 'loss is NaN')
      const weighted = { ...c, weights: [1, 2, 3] }
      t.ok(Number.isNaN(forward(weighted, logits)), 'loss is NaN with class weights too')
      const start = randomArray(logits.length, 41)
      const dlogits = buf(start)
      addon.crossEntropyBackward(c.rows, c.classes, buf(logits), ibuf(c.labels), IGNORE, null, buf([1]), dlogits)
      t.same(Array.from(readF64(dlogits)), Array.from(start), 'dlogits unchanged')
    })

    t.test('labels out of range are refused, naming the label', async (t) => {
      const logits = buf(randomArray(12, 50))
      const loss = buf([0])
      const dlogits = buf(new Float64Array(12))
      const dloss = buf([1])
      t.throws(() => addon.crossEntropyForward(4, 3, logits, ibuf([0, 1, 3, 2]), IGNORE, null, loss),
        { message: 'crossEntropyForward: labels[2] = 3 is out of range [0, 3)' })
      t.throws(() => addon.crossEntropyForward(4, 3, logits, ibuf([0, -1, 1, 2]), IGNORE, null, loss),
        { message: 'crossEntropyForward: labels[1] = -1 is out of range [0, 3)' })
      t.throws(() => addon.crossEntropyBackward(4, 3, logits, ibuf([0, 1, 2, 7]), IGNORE, null, dloss, dlogits),
        { message: 'crossEntropyBackward: labels[3] = 7 is out of range [0, 3)' })
      t.same(Array.from(readF64(dlogits)), new Array(12).fill(0), 'a refused backward writes nothing')
    })

    t.test('the loss does not depend on the thread count', async (t) => {
      const c: Case = { name: 'big', rows: 4096, classes: 9, labels: [], weights: null, ignoreIndex: IGNORE, shift: 0 }
      c.labels = Array.from({ length: c.rows }, (_, r) => (r % 7 === 3 ? IGNORE : (r * 5) % c.classes))
      const logits = logitsFor(c, 60)
      const before = addon.getNumThreads()
      const run = (threads: number) => {
        addon.setNumThreads(threads)
        const loss = forward(c, logits)
        const dlogits = buf(new Float64Array(logits.length))
        addon.crossEntropyBackward(c.rows, c.classes, buf(logits), ibuf(c.labels), IGNORE, null, buf([1]), dlogits)
        return [loss, ...readF64(dlogits)]
      }
      try {
        t.same(run(1), run(3), 'loss and dlogits identical with 1 and 3 threads')
      } finally {
        addon.setNumThreads(before)
      }
      const cmp = compare([forward(c, logits)], [referenceLoss(c, logits)], 2e-6, 0)
      t.ok(cmp.ok, `and the loss over 4096 rows matches the reference (${cmp.message})`)
    })

    t.test('every buffer is freed', async (t) => {
      freeAll(...owned)
      t.equal(addon.memoryStats().liveBuffers, liveBefore)
    })
  })
}
