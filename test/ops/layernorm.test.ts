// LayerNorm (with and without the fused residual add): backward (dx, dgamma,
// dbeta) against central finite differences, accumulation, optional
// gradients, a constant row, thread-count independence, and bad input. The
// forward and its saved statistics against float64, and backward against the
// analytic gradients, are cases of the backend table (cases/layernorm.ts).
import t from 'tap'
import { native, DTYPE_CODE, type NativeBuffer } from '../../lib/native.js'
import { devicesUnderTest } from '../helpers/devices.js'
import { randomArray, f32Buffer, poisoned, readF64, finiteDifference } from '../helpers/reference.js'
import { track, errorSummary } from '../helpers/checks.js'
import { layerNorm } from './cases/layernorm.js'

const N = native()
const { close, report } = errorSummary()

// ---- float64 reference ------------------------------------------------------------

/** sum(g * layer_norm(...)): the scalar whose gradients backward computes. */
function weighted(g: Float64Array, y: Float64Array): number {
  let s = 0
  for (let i = 0; i < y.length; i++) s += g[i] * y[i]
  return s
}

// ---- small harness ----------------------------------------------------------------

interface Case { rows: number; cols: number; eps: number; residual: boolean; offset: number; label: string }

const CASES: Case[] = [
  { rows: 37, cols: 72, eps: 1e-12, residual: false, offset: 0, label: '37x72, eps 1e-12' },
  { rows: 37, cols: 72, eps: 1e-5, residual: true, offset: 5, label: '37x72 + residual, mean ~5' },
  { rows: 1, cols: 72, eps: 1e-12, residual: true, offset: 0, label: '1x72 + residual' },
  { rows: 37, cols: 1, eps: 1e-5, residual: false, offset: 0, label: '37x1 (zero variance)' },
  { rows: 2, cols: 768, eps: 1e-12, residual: true, offset: 0, label: '2x768 + residual' },
]

function makeInputs(c: Case, seed: number) {
  const n = c.rows * c.cols
  return {
    x: randomArray(n, seed, c.offset - 1, c.offset + 1),
    residual: c.residual ? randomArray(n, seed + 1, -0.5, 0.5) : null,
    gamma: randomArray(c.cols, seed + 2, 0.5, 1.5),
    beta: randomArray(c.cols, seed + 3, -0.5, 0.5),
    g: randomArray(n, seed + 4),
  }
}

for (const dev of devicesUnderTest()) {
  t.test(`layernorm on ${dev.name}`, { skip: dev.skip ?? false }, async (t) => {
    const d = dev.code
    const liveBefore = N.memoryStats().liveBuffers

    for (const [k, c] of CASES.entries()) {
      await t.test(`backward ${c.label} matches finite differences`, async (t) => {
        const buf = track(t)
        const { x, residual, gamma, beta, g } = makeInputs(c, 100 * k)
        const { rows, cols, eps } = c
        const n = rows * cols
        const sum = buf(poisoned(d, n))
        const mean = buf(poisoned(d, rows))
        const rstd = buf(poisoned(d, rows))
        const gammaB = buf(f32Buffer(d, gamma))
        const xB = buf(f32Buffer(d, x))
        const resB = residual ? buf(f32Buffer(d, residual)) : null
        N.layernormForward(rows, cols, eps, xB, resB, gammaB, buf(f32Buffer(d, beta)), buf(poisoned(d, n)),
          residual ? sum : null, mean, rstd)
        const normalised = residual ? sum : xB  // backward takes what forward normalised

        const dx = buf(f32Buffer(d, new Float64Array(n)))
        const dgamma = buf(f32Buffer(d, new Float64Array(cols)))
        const dbeta = buf(f32Buffer(d, new Float64Array(cols)))
        const gB = buf(f32Buffer(d, g))
        N.layernormBackward(rows, cols, normalised, gammaB, mean, rstd, gB, dx, dgamma, dbeta)

        const h = 1e-5
        const L = (xx: Float64Array, rr: Float64Array | null, gg: Float64Array, bb: Float64Array) =>
          weighted(g, layerNorm(rows, cols, eps, xx, rr, gg, bb, false).y)
        // With zero variance the output is beta whatever x is; the gradient
        // through x is 0, which the central difference also finds.
        close(t, 'backward dx', readF64(dx), finiteDifference((v) => L(v, residual, gamma, beta), x, h), 1e-5, 2e-6)
        if (residual) {
          close(t, 'backward dresidual (= dx)', readF64(dx), finiteDifference((v) => L(x, v, gamma, beta), residual, h), 1e-5, 2e-6)
        }
        close(t, 'backward dgamma', readF64(dgamma), finiteDifference((v) => L(x, residual, v, beta), gamma, h), 1e-5, 2e-6)
        close(t, 'backward dbeta', readF64(dbeta), finiteDifference((v) => L(x, residual, gamma, v), beta, h), 1e-5, 2e-6)

        // Accumulation: from non-zero starting values, two calls add twice.
        const once = { dx: readF64(dx), dgamma: readF64(dgamma), dbeta: readF64(dbeta) }
        const start = { dx: randomArray(n, 7), dgamma: randomArray(cols, 8), dbeta: randomArray(cols, 9) }
        const acc = { dx: buf(f32Buffer(d, start.dx)), dgamma: buf(f32Buffer(d, start.dgamma)), dbeta: buf(f32Buffer(d, start.dbeta)) }
        for (let i = 0; i < 2; i++) N.layernormBackward(rows, cols, normalised, gammaB, mean, rstd, gB, acc.dx, acc.dgamma, acc.dbeta)
        for (const key of ['dx', 'dgamma', 'dbeta'] as const) {
          close(t, `backward ${key} accumulates`, readF64(acc[key]), start[key].map((s, i) => s + 2 * once[key][i]), 1e-6, 1e-6)
        }

        // Null gradients are skipped; the ones asked for are unchanged by the others' absence.
        const onlyDx = buf(f32Buffer(d, new Float64Array(n)))
        N.layernormBackward(rows, cols, normalised, gammaB, mean, rstd, gB, onlyDx, null, null)
        t.same(Array.from(readF64(onlyDx)), Array.from(once.dx), 'dx alone equals dx computed with the others')
        const onlyGamma = buf(f32Buffer(d, new Float64Array(cols)))
        const onlyBeta = buf(f32Buffer(d, new Float64Array(cols)))
        N.layernormBackward(rows, cols, normalised, gammaB, mean, rstd, gB, null, onlyGamma, null)
        N.layernormBackward(rows, cols, normalised, gammaB, mean, rstd, gB, null, null, onlyBeta)
        t.same(Array.from(readF64(onlyGamma)), Array.from(once.dgamma), 'dgamma alone')
        t.same(Array.from(readF64(onlyBeta)), Array.from(once.dbeta), 'dbeta alone')
        N.layernormBackward(rows, cols, normalised, gammaB, mean, rstd, gB, null, null, null)
        t.pass('all gradients null: nothing to do, no error')
      })
    }

    await t.test('a constant row normalises to beta without NaN', async (t) => {
      const buf = track(t)
      const cols = 72
      const y = buf(poisoned(d, cols))
      const mean = buf(poisoned(d, 1))
      const rstd = buf(poisoned(d, 1))
      const beta = randomArray(cols, 3)
      N.layernormForward(1, cols, 1e-12, buf(f32Buffer(d, new Float64Array(cols).fill(0.3))), null,
        buf(f32Buffer(d, randomArray(cols, 2))), buf(f32Buffer(d, beta)), y, null, mean, rstd)
      t.same(Array.from(readF64(y)), Array.from(beta), 'y == beta')
      close(t, 'constant row rstd', readF64(rstd), [1e6], 1e-6, 0)
    })

    if (dev.name === 'cpu') {
      await t.test('thread count changes nothing but rounding of dgamma/dbeta', async (t) => {
        const buf = track(t)
        const rows = 517
        const cols = 768
        const n = rows * cols
        const x = buf(f32Buffer(d, randomArray(n, 41, -2, 2)))
        const res = buf(f32Buffer(d, randomArray(n, 42)))
        const gamma = buf(f32Buffer(d, randomArray(cols, 43, 0.5, 1.5)))
        const beta = buf(f32Buffer(d, randomArray(cols, 44)))
        const g = buf(f32Buffer(d, randomArray(n, 45)))
        const saved = N.getNumThreads()
        const runs: Array<{ rowwise: number[]; dgamma: Float64Array; dbeta: Float64Array }> = []
        for (const threads of [1, 2]) {
          N.setNumThreads(threads)
          const y = buf(poisoned(d, n))
          const sum = buf(poisoned(d, n))
          const mean = buf(poisoned(d, rows))
          const rstd = buf(poisoned(d, rows))
          N.layernormForward(rows, cols, 1e-12, x, res, gamma, beta, y, sum, mean, rstd)
          const dx = buf(f32Buffer(d, new Float64Array(n)))
          const dgamma = buf(f32Buffer(d, new Float64Array(cols)))
          const dbeta = buf(f32Buffer(d, new Float64Array(cols)))
          N.layernormBackward(rows, cols, sum, gamma, mean, rstd, g, dx, dgamma, dbeta)
          runs.push({ rowwise: [...readF64(y), ...readF64(mean), ...readF64(rstd), ...readF64(dx)], dgamma: readF64(dgamma), dbeta: readF64(dbeta) })
        }
        N.setNumThreads(saved)
        t.ok(runs[0].rowwise.every((v, i) => v === runs[1].rowwise[i]), 'y, mean, rstd, dx: identical with 1 and 2 threads')
        close(t, 'dgamma 1 vs 2 threads', runs[1].dgamma, runs[0].dgamma, 1e-6, 1e-6)
        close(t, 'dbeta 1 vs 2 threads', runs[1].dbeta, runs[0].dbeta, 1e-6, 1e-6)
      })
    }

    await t.test('bad input names the op', async (t) => {
      const buf = track(t)
      const x = buf(f32Buffer(d, randomArray(6, 1)))
      const gamma = buf(f32Buffer(d, [1, 1, 1]))
      const beta = buf(f32Buffer(d, [0, 0, 0]))
      const y = buf(poisoned(d, 6))
      const stats = () => [buf(poisoned(d, 2)), buf(poisoned(d, 2))] as const
      const [mean, rstd] = stats()
      t.throws(() => N.layernormForward(2, 3, 1e-5, x, x, gamma, beta, y, null, mean, rstd),
        /^layernormForward: 'sumOut' is required when 'residual' is given/)
      t.throws(() => N.layernormForward(2, 3, 0, x, null, gamma, beta, y, null, mean, rstd), /^layernormForward: 'eps' must be positive/)
      t.throws(() => N.layernormForward(2, 4, 1e-5, x, null, gamma, beta, y, null, mean, rstd),
        /^layernormForward: tensor 'x' holds 6 elements but shape \[2, 4\] needs 8/)
      t.throws(() => N.layernormForward(2, 3, 1e-5, x, null, buf(f32Buffer(d, [1, 1])), beta, y, null, mean, rstd),
        /^layernormForward: tensor 'gamma' holds 2 elements but shape \[3\] needs 3/)
      const ints = buf(new (N.NativeBuffer)(d, DTYPE_CODE.int32, 6))
      t.throws(() => N.layernormBackward(2, 3, x, gamma, mean, rstd, ints, null, null, null),
        /^layernormBackward: tensor 'dy' has dtype int32, expected float32/)
      t.throws(() => N.layernormBackward(2, 3, x, gamma, mean, rstd, y, y, null, null),
        /^layernormBackward: output 'dx' must not be the same buffer as input 'dy'/)
      const gone = f32Buffer(d, [0, 0])
      gone.free()
      t.throws(() => N.layernormBackward(2, 3, x, gamma, gone, rstd, y, null, null, null),
        /^layernormBackward: tensor 'mean' was already freed/)
    })

    t.equal(N.memoryStats().liveBuffers, liveBefore, 'every buffer the tests made was freed')
    report(t)
  })
}
