// crossEntropyBackward on every backend against the analytic gradient and
// central finite differences of the float64 reference of
// torch.nn.functional.cross_entropy (reduction "mean", ignore_index, class
// weights; cases/loss.ts, whose cases check the forward in the backend
// table), plus NaN for all-ignored batches, label range errors and thread
// counts.
import { t } from 'tap'
import { native } from '../../lib/native.js'
import { devicesUnderTest } from '../helpers/devices.js'
import { compare, f32Buffer, i32Buffer, poisoned, randomArray, readF64 } from '../helpers/reference.js'
import { track } from '../helpers/checks.js'
import { CROSS_ENTROPY_CASES, IGNORE, logitsFor, referenceGrad, referenceLoss, type CrossEntropyCase } from './cases/loss.js'

type Case = CrossEntropyCase
const cases = CROSS_ENTROPY_CASES

for (const dev of devicesUnderTest()) {
  t.test(`cross-entropy on ${dev.name}`, { skip: dev.skip ?? false }, async (t) => {
    const addon = native()
    const liveBefore = addon.memoryStats().liveBuffers
    const keep = track(t)
    const buf = (values: ArrayLike<number>) => keep(f32Buffer(dev.code, values))
    const ibuf = (values: ArrayLike<number>) => keep(i32Buffer(dev.code, values))

    const forward = (c: Case, logits: ArrayLike<number>): number => {
      const loss = keep(poisoned(dev.code, 1))
      addon.crossEntropyForward(c.rows, c.classes, buf(logits), ibuf(c.labels), c.ignoreIndex,
        c.weights ? buf(c.weights) : null, loss)
      return readF64(loss)[0]
    }

    cases.forEach((c, caseIndex) => {
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
      keep.freeNow()
      t.equal(addon.memoryStats().liveBuffers, liveBefore)
    })
  })
}
