// The ops DeBERTa's disentangled attention is built from, per backend: the
// middle-axes swap, the column gather (repeated columns must all receive their
// gradient) and the two-sided masked softmax (padded query rows uniform, never
// NaN, no gradient to filled elements), against float64 references and finite
// differences, with odd shapes; plus the autograd ops on top (bmmTransposed,
// mulRowsByMask) against finite differences.
import t from 'tap'
import { native } from '../../lib/native.js'
import { tensor, tidy, bmmTransposed, mulRowsByMask, gatherColumns, maskedSoftmax, transpose12, sum, mul } from '../../lib/index.js'
import { devicesUnderTest } from '../helpers/devices.js'
import { randomArray, f32Buffer, i32Buffer, poisoned, readF64, finiteDifference } from '../helpers/reference.js'
import { track, errorSummary } from '../helpers/checks.js'
import {
  SOFTMAX_MASKS, gatherColumns as gather, maskedSoftmax as softmax, maskedSoftmaxBackward as softmaxBackward, scatterColumns as scatter, swapAxes,
} from './cases/relative_attention.js'

const N = native()
const { close } = errorSummary()

for (const dev of devicesUnderTest()) {
  t.test(`relative-attention ops on ${dev.name}`, { skip: dev.skip ?? false }, async (t) => {
    const d = dev.code
    const liveBefore = N.memoryStats().liveBuffers

    await t.test('every repeat of one column lands (no lost updates)', async (t) => {
      const buf = track(t)
      const [batch, rows, width, picks] = [3, 2, 4, 5000]
      const dx = buf(f32Buffer(d, new Float64Array(batch * rows * width)))
      const ones = buf(poisoned(d, batch * rows * picks))
      N.fill(ones, batch * rows * picks, 1)
      N.gatherColumnsBackward(batch, rows, width, picks, buf(i32Buffer(d, new Array(rows * picks).fill(2))), ones, dx)
      const got = readF64(dx)
      t.ok(got.every((v, i) => v === (i % width === 2 ? picks : 0)), `column 2 of every row is exactly ${picks}, the rest 0`)
    })

    await t.test('gather indices out of range name the element; nothing is written', async (t) => {
      const buf = track(t)
      const x = buf(f32Buffer(d, randomArray(2 * 3 * 4, 1)))
      const out = buf(poisoned(d, 2 * 3 * 2))
      t.throws(() => N.gatherColumnsForward(2, 3, 4, 2, x, buf(i32Buffer(d, [0, 1, 2, 3, 4, 0])), out), /^gatherColumnsForward: index\[4\] = 4 is out of range \[0, 4\)/)
      t.ok(readF64(out).every((v) => Number.isNaN(v)), 'the output was not touched')
      const dx = buf(f32Buffer(d, new Float64Array(24)))
      t.throws(() => N.gatherColumnsBackward(2, 3, 4, 2, buf(i32Buffer(d, [0, -1, 2, 3, 1, 0])), out, dx), /^gatherColumnsBackward: index\[1\] = -1 is out of range/)
      t.ok(readF64(dx).every((v) => v === 0), 'a rejected backward wrote nothing')
      t.throws(() => N.gatherColumnsForward(2, 3, 4, 2, x, buf(i32Buffer(d, [0, 1, 2])), out), /^gatherColumnsForward: tensor 'index' holds 3 elements but shape \[3, 2\] needs 6/)
      t.throws(() => N.gatherColumnsForward(2, 3, 4, 2, x, buf(f32Buffer(d, [0, 1, 2, 0, 1, 2])), out), /^gatherColumnsForward: tensor 'index' has dtype float32, expected int32/)
    })

    const masks = SOFTMAX_MASKS
    for (const [groups, batch, seq] of [[3, 2, 37], [1, 1, 1], [2, 3, 5], [4, 2, 130]]) {
      for (const [maskName, makeMask] of Object.entries(masks)) {
        await t.test(`maskedSoftmax [${groups}, ${batch}, ${seq}, ${seq}], ${maskName}`, async (t) => {
          const buf = track(t)
          const n = groups * batch * seq * seq
          const scale = 1 / Math.sqrt(3 * 16)
          const x = randomArray(n, seq, -8, 8)
          const mask = makeMask(batch, seq)
          const maskB = buf(i32Buffer(d, mask))
          const probs = buf(poisoned(d, n))
          N.maskedSoftmaxForward(groups, batch, seq, scale, buf(f32Buffer(d, x)), maskB, probs)
          const p = readF64(probs)
          t.ok(p.every((v) => Number.isFinite(v)), 'no NaN, even in fully masked rows')
          close(t, 'forward vs float64', p, softmax(groups, batch, seq, scale, x, mask), 1e-5, 1e-7)
          const dp = randomArray(n, seq + 1)
          const start = randomArray(n, seq + 2)
          const dx = buf(f32Buffer(d, start))
          N.maskedSoftmaxBackward(groups, batch, seq, scale, probs, buf(f32Buffer(d, dp)), maskB, dx)
          close(t, 'backward accumulates the float64 gradient', readF64(dx), softmaxBackward(groups, batch, seq, scale, p, dp, mask, start), 1e-5, 1e-6)
          if (n <= 2000) {
            // Masked elements are overwritten by the fill, so their true derivative is 0; the others by central differences.
            const fd = finiteDifference((v) => softmax(groups, batch, seq, scale, v, mask).reduce((s, y, i) => s + dp[i] * y, 0), x, 1e-4)
            const fresh = buf(f32Buffer(d, new Float64Array(n)))
            N.maskedSoftmaxBackward(groups, batch, seq, scale, probs, buf(f32Buffer(d, dp)), maskB, fresh)
            close(t, 'backward vs finite differences', readF64(fresh), fd, 1e-3, 1e-5)
          }
        })
      }
    }

    await t.test('a fully padded query row is uniform, as masked_fill + softmax gives it', async (t) => {
      const buf = track(t)
      const probs = buf(poisoned(d, 9))
      N.maskedSoftmaxForward(1, 1, 3, 0.5, buf(f32Buffer(d, [1, 2, 3, 4, 5, 6, 7, 8, 9])), buf(i32Buffer(d, [1, 1, 0])), probs)
      const p = readF64(probs)
      t.same(Array.from(p.subarray(6)), [1 / 3, 1 / 3, 1 / 3].map(Math.fround), 'the padded query attends uniformly')
      t.equal(p[2], 0, 'a padded key gets exactly 0 in a real row')
      t.equal(p[5], 0)
    })

    t.equal(N.memoryStats().liveBuffers, liveBefore, 'every buffer the tests made was freed')
  })

  t.test(`relative-attention autograd ops on ${dev.name}`, { skip: dev.skip ?? false }, async (t) => {
    const device = dev.name
    // d sum(w * f(x)) / dx by autograd against central differences of a float64 model of f.
    const gradOf = (shape: number[], seed: number, f: (x: ReturnType<typeof tensor>) => ReturnType<typeof tensor>) => tidy(() => {
      const x = tensor(Float32Array.from(randomArray(shape.reduce((a, b) => a * b, 1), seed)), { shape, requiresGrad: true, device })
      const y = f(x)
      const w = tensor(Float32Array.from(randomArray(y.numel, seed + 1)), { shape: [...y.shape], device })
      sum(mul(y, w)).backward()
      const g = x.grad!.toFloat32Array()
      x.dispose()
      return { g, w: Float64Array.from(w.toFloat32Array()) }
    })

    await t.test('bmmTransposed: a · bᵀ and both gradients', async (t) => {
      const [batch, m, n, k] = [3, 5, 7, 4]
      const av = randomArray(batch * m * k, 1), bv = randomArray(batch * n * k, 2)
      const ref = (a: Float64Array, b: Float64Array) => {
        const out = new Float64Array(batch * m * n)
        for (let z = 0; z < batch; z++) for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) {
          let s = 0
          for (let q = 0; q < k; q++) s += a[(z * m + i) * k + q] * b[(z * n + j) * k + q]
          out[(z * m + i) * n + j] = s
        }
        return out
      }
      tidy(() => {
        const a = tensor(Float32Array.from(av), { shape: [batch, m, k], requiresGrad: true, device })
        const b = tensor(Float32Array.from(bv), { shape: [batch, n, k], requiresGrad: true, device })
        const y = bmmTransposed(a, b)
        close(t, 'forward', y.toFloat32Array(), ref(av, bv), 1e-5, 1e-6)
        const w = randomArray(batch * m * n, 3)
        sum(mul(y, tensor(Float32Array.from(w), { shape: [batch, m, n], device }))).backward()
        const loss = (aa: Float64Array, bb: Float64Array) => ref(aa, bb).reduce((s, v, i) => s + v * w[i], 0)
        close(t, 'da', a.grad!.toFloat32Array(), finiteDifference((v) => loss(v, bv), av, 1e-3), 1e-4, 1e-5)
        close(t, 'db', b.grad!.toFloat32Array(), finiteDifference((v) => loss(av, v), bv, 1e-3), 1e-4, 1e-5)
        a.dispose(); b.dispose()
      })
    })

    await t.test('mulRowsByMask: rows times the mask, gradient the same product', async (t) => {
      const [batch, seq, dim] = [2, 3, 5]
      const maskValues = [1, 0, 1, 1, 1, 0]
      const mask = tensor(Int32Array.from(maskValues), { shape: [batch, seq], dtype: 'int32', device })
      const { g, w } = gradOf([batch, seq, dim], 7, (x) => mulRowsByMask(x, mask))
      t.same(Array.from(g), Array.from(w).map((v, i) => Math.fround(v * maskValues[Math.floor(i / dim)])), 'dx = w · mask, exactly')
      mask.dispose()
    })

    await t.test('transpose12, gatherColumns and maskedSoftmax record their backward', async (t) => {
      const { g, w } = gradOf([2, 3, 4, 5], 9, (x) => transpose12(x))
      t.same(Array.from(g), Array.from(swapAxes(2, 4, 3, 5, w)).map(Math.fround), 'transpose12 backward is the inverse swap')
      const index = tensor(Int32Array.from([0, 0, 3, 1, 2, 2]), { shape: [3, 2], dtype: 'int32', device })
      const gathered = gradOf([2, 3, 4], 11, (x) => gatherColumns(x, index))
      t.same(Array.from(gathered.g), Array.from(scatter(2, 3, 4, 2, [0, 0, 3, 1, 2, 2], gathered.w, new Float64Array(24))).map(Math.fround), 'gatherColumns backward scatters')
      t.throws(() => gatherColumns(tensor(new Float32Array(24), { shape: [2, 3, 4], device }), tensor(Int32Array.from([0, 9]), { shape: [1, 2], dtype: 'int32', device })), /gatherColumns: index \[1, 2\] must be \[3, picks\]/)
      const mask = tensor(Int32Array.from([1, 1, 0]), { shape: [1, 3], dtype: 'int32', device })
      const soft = gradOf([2, 1, 3, 3], 13, (x) => maskedSoftmax(x, mask, 0.7))
      t.ok(soft.g.every((v, i) => (i % 3 === 2 || Math.floor(i / 3) % 3 === 2 ? v === 0 : Number.isFinite(v))), 'masked elements get exactly no gradient')
      index.dispose(); mask.dispose()
    })
  })
}
