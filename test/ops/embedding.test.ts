// Embedding: scatter-add backward against float64 and finite differences,
// accumulation, repeated ids, the padding index, thread-count independence,
// and range / dtype / size errors. The forward gather and the backward on
// batch-like ids are cases of the backend table (cases/embedding.ts).
import t from 'tap'
import { native, DTYPE_CODE, type NativeBuffer } from '../../lib/native.js'
import { devicesUnderTest } from '../helpers/devices.js'
import { randomArray, f32Buffer, i32Buffer, poisoned, readF64, finiteDifference } from '../helpers/reference.js'
import { track, errorSummary } from '../helpers/checks.js'
import { gather, scatterAdd, someIds } from './cases/embedding.js'

const N = native()
const { close, report } = errorSummary()

for (const dev of devicesUnderTest()) {
  t.test(`embedding on ${dev.name}`, { skip: dev.skip ?? false }, async (t) => {
    const d = dev.code
    const liveBefore = N.memoryStats().liveBuffers

    for (const [n, dim, vocab] of [[37, 72, 11], [1, 72, 3], [37, 1, 5], [4096, 768, 30]]) {
      await t.test(`backward scatter-adds: ${n} ids, dim ${dim}, vocab ${vocab}`, async (t) => {
        const buf = track(t)
        const ids = someIds(n, vocab, n + dim)
        const dout = randomArray(n * dim, 5)
        const start = randomArray(vocab * dim, 6)
        const idsB = buf(i32Buffer(d, ids))
        const doutB = buf(f32Buffer(d, dout))
        const dtable = buf(f32Buffer(d, start))
        N.embeddingBackward(n, dim, vocab, idsB, doutB, dtable, -1)
        // ~1300 of the 4096 tokens land on the padding row: the sum must not drift.
        const atol = 1e-6
        close(t, 'backward vs float64 scatter-add', readF64(dtable), scatterAdd(n, dim, ids, dout, start), 1e-6, atol)
        N.embeddingBackward(n, dim, vocab, idsB, doutB, dtable, -1)
        const twice = scatterAdd(n, dim, ids, dout, scatterAdd(n, dim, ids, dout, start))
        close(t, 'backward twice accumulates', readF64(dtable), twice, 1e-6, 2 * atol)
        if (n * dim * vocab * dim < 1e7) {
          // d sum(g * table[ids]) / d table, by central differences.
          const table = randomArray(vocab * dim, 8)
          const fd = finiteDifference((v) => gather(n, dim, ids, v).reduce((s, y, i) => s + dout[i] * y, 0), table, 1e-3)
          const fresh = buf(f32Buffer(d, new Float64Array(vocab * dim)))
          N.embeddingBackward(n, dim, vocab, idsB, doutB, fresh, -1)
          close(t, 'backward vs finite differences', readF64(fresh), fd, 1e-5, 1e-6)
        }
      })
    }

    await t.test('every repeat of one id lands (no lost updates)', async (t) => {
      const buf = track(t)
      const n = 5000
      const dim = 768
      const dtable = buf(f32Buffer(d, new Float64Array(2 * dim)))
      const ones = buf(poisoned(d, n * dim))
      N.fill(ones, n * dim, 1)
      N.embeddingBackward(n, dim, 2, buf(i32Buffer(d, new Array(n).fill(1))), ones, dtable, -1)
      const got = readF64(dtable)
      t.ok(got.subarray(0, dim).every((v) => v === 0), 'row 0 untouched')
      t.ok(got.subarray(dim).every((v) => v === n), `row 1 is exactly ${n} in every column`)
    })

    await t.test('tokens at the padding index send no gradient (torch padding_idx)', async (t) => {
      const buf = track(t)
      const dim = 3
      const dtable = buf(f32Buffer(d, new Float64Array(4 * dim)))
      const dout = buf(f32Buffer(d, Array.from({ length: 4 * dim }, (_, i) => i + 1)))
      N.embeddingBackward(4, dim, 4, buf(i32Buffer(d, [0, 2, 0, 3])), dout, dtable, 0)
      const got = Array.from(readF64(dtable))
      t.same(got.slice(0, dim), [0, 0, 0], 'row 0 (padding) stays zero')
      t.same(got.slice(2 * dim, 3 * dim), [4, 5, 6], 'row 2 gets token 1')
      t.same(got.slice(3 * dim), [10, 11, 12], 'row 3 gets token 3')
      t.throws(() => N.embeddingBackward(4, dim, 4, buf(i32Buffer(d, [0, 2, 0, 3])), dout, dtable, 4), /paddingIdx' 4 is outside \[-1, 4\)/)
    })

    if (dev.name === 'cpu') {
      await t.test('backward does not depend on the thread count', async (t) => {
        const buf = track(t)
        const [n, dim, vocab] = [3000, 768, 20]
        const ids = buf(i32Buffer(d, someIds(n, vocab, 1)))
        const dout = buf(f32Buffer(d, randomArray(n * dim, 2)))
        const saved = N.getNumThreads()
        const results: Float64Array[] = []
        for (const threads of [1, 2, 3]) {
          N.setNumThreads(threads)
          const dtable = buf(f32Buffer(d, new Float64Array(vocab * dim)))
          N.embeddingBackward(n, dim, vocab, ids, dout, dtable, -1)
          results.push(readF64(dtable))
        }
        N.setNumThreads(saved)
        t.ok(results[1].every((v, i) => v === results[0][i]), '2 threads == 1 thread, bit for bit')
        t.ok(results[2].every((v, i) => v === results[0][i]), '3 threads == 1 thread, bit for bit')
      })
    }

    await t.test('ids out of range name the index', async (t) => {
      const buf = track(t)
      const table = buf(f32Buffer(d, randomArray(4 * 2, 1)))
      const out = buf(poisoned(d, 3 * 2))
      const tooBig = buf(i32Buffer(d, [0, 4, 1]))
      const negative = buf(i32Buffer(d, [0, 1, -1]))
      t.throws(() => N.embeddingForward(3, 2, 4, tooBig, table, out), /^embeddingForward: ids\[1\] = 4 is out of range \[0, 4\)/)
      t.throws(() => N.embeddingForward(3, 2, 4, negative, table, out), /^embeddingForward: ids\[2\] = -1 is out of range/)
      const dtable = buf(f32Buffer(d, new Float64Array(8)))
      t.throws(() => N.embeddingBackward(3, 2, 4, tooBig, out, dtable, -1), /^embeddingBackward: ids\[1\] = 4/)
      t.ok(readF64(dtable).every((v) => v === 0), 'a rejected backward wrote nothing')
    })

    await t.test('bad input names the op', async (t) => {
      const buf = track(t)
      const table = buf(f32Buffer(d, randomArray(4 * 2, 1)))
      const out = buf(poisoned(d, 3 * 2))
      const ids = buf(i32Buffer(d, [0, 1, 2]))
      t.throws(() => N.embeddingForward(3, 2, 4, buf(f32Buffer(d, [0, 1, 2])), table, out),
        /^embeddingForward: tensor 'ids' has dtype float32, expected int32/)
      t.throws(() => N.embeddingForward(3, 2, 5, ids, table, out), /^embeddingForward: tensor 'table' holds 8 elements but shape \[5, 2\] needs 10/)
      t.throws(() => N.embeddingBackward(3, 3, 4, ids, out, buf(f32Buffer(d, new Float64Array(12))), -1),
        /^embeddingBackward: tensor 'dout' holds 6 elements but shape \[3, 3\] needs 9/)
      t.throws(() => N.embeddingBackward(3, 2, 3, ids, out, out, -1), /^embeddingBackward: .*'dtable'/)
      const gone = f32Buffer(d, [0])
      gone.free()
      t.throws(() => N.embeddingForward(3, 2, 4, ids, gone, out), /^embeddingForward: tensor 'table' was already freed/)
      const half = buf(new (N.NativeBuffer)(d, DTYPE_CODE.float16, 6))
      t.throws(() => N.embeddingForward(3, 2, 4, ids, table, half), /^embeddingForward: tensor 'out' has dtype float16, expected float32/)
    })

    t.equal(N.memoryStats().liveBuffers, liveBefore, 'every buffer the tests made was freed')
    report(t)
  })
}
