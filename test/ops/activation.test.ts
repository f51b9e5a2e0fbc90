// Activations (exact GELU, tanh GELU, tanh, relu): forward against float64
// references, backward against central finite differences of those
// references, accumulation, torch's edge-case semantics, and bad input.
import t from 'tap'
import { native, ACTIVATION_CODE, DTYPE_CODE, type NativeBuffer } from '../../lib/native.js'
import { devicesUnderTest } from '../helpers/devices.js'
import { randomArray, f32Buffer, poisoned, readF64 } from '../helpers/reference.js'
import { track, errorSummary } from '../helpers/checks.js'

const N = native()
const { close, report } = errorSummary()

// ---- float64 references ---------------------------------------------------------

// erfc in float64 to ~1e-13 relative: for z < 2.5 as 1 - erf(z) from the
// all-positive series erf(z) = 2/sqrt(pi) e^{-z^2} sum_n (2z^2)^n z / (2n+1)!!,
// beyond that from the continued fraction
// erfc(z) = e^{-z^2}/sqrt(pi) / (z + (1/2)/(z + (2/2)/(z + (3/2)/(z + ...)))).
function erfc(z: number): number {
  if (z < 0) return 2 - erfc(-z)
  if (z < 2.5) {
    let term = z
    let sum = z
    for (let n = 1; n < 1000 && term > sum * 1e-17; n++) {
      term *= (2 * z * z) / (2 * n + 1)
      sum += term
    }
    return 1 - (2 / Math.sqrt(Math.PI)) * Math.exp(-z * z) * sum
  }
  let f = z
  for (let k = 80; k >= 1; k--) f = z + k / 2 / f
  return Math.exp(-z * z) / Math.sqrt(Math.PI) / f
}

const geluErf = (x: number) => 0.5 * x * erfc(-x / Math.SQRT2)
// transformers' gelu_new / torch's approximate="tanh", written as they write it.
const geluTanh = (x: number) => 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3)))
const relu = (x: number) => (Number.isNaN(x) ? x : Math.max(x, 0))

const KINDS = [
  { name: 'gelu (erf)', code: ACTIVATION_CODE.gelu, f: geluErf },
  { name: 'gelu_new (tanh)', code: ACTIVATION_CODE.gelu_new, f: geluTanh },
  { name: 'tanh', code: ACTIVATION_CODE.tanh, f: Math.tanh },
  { name: 'relu', code: ACTIVATION_CODE.relu, f: relu },
]

// ---- small harness ----------------------------------------------------------------

/** x in [-6, 6] with none closer to 0 than `gap`, so finite differences never straddle relu's kink. */
function inputs(n: number, seed: number, gap = 0): Float64Array {
  const x = randomArray(n, seed, -6, 6)
  for (let i = 0; i < n; i++) if (Math.abs(x[i]) < gap) x[i] = Math.fround(x[i] < 0 ? -gap : gap)
  return x
}

/**
 * Central differences of sum_i g_i f(x_i). The function is elementwise, so
 * perturbing x_i changes only term i and each element is differenced alone.
 */
function elementwiseFD(f: (x: number) => number, x: Float64Array, g: Float64Array, h: number): Float64Array {
  return x.map((v, i) => (g[i] * (f(v + h) - f(v - h))) / (2 * h))
}

const SIZES = [72 * 37, 1]

for (const dev of devicesUnderTest()) {
  t.test(`activations on ${dev.name}`, { skip: dev.skip ?? false }, async (t) => {
    const d = dev.code
    const liveBefore = N.memoryStats().liveBuffers

    for (const kind of KINDS) {
      await t.test(`${kind.name} forward matches float64`, async (t) => {
        const buf = track(t)
        for (const n of SIZES) {
          const x = inputs(n, 11 + n)
          const y = buf(poisoned(d, n))
          N.activationForward(kind.code, n, buf(f32Buffer(d, x)), y)
          close(t, `${kind.name} forward`, readF64(y), x.map(kind.f), 2e-6, 1e-7)
        }
      })

      await t.test(`${kind.name} backward matches finite differences and accumulates`, async (t) => {
        const buf = track(t)
        for (const n of SIZES) {
          const x = inputs(n, 21 + n, 1e-3)
          const g = randomArray(n, 31 + n)
          const fd = elementwiseFD(kind.f, x, g, 1e-5)
          const xb = buf(f32Buffer(d, x))
          const gb = buf(f32Buffer(d, g))
          const dx = buf(f32Buffer(d, new Float64Array(n)))
          N.activationBackward(kind.code, n, xb, gb, dx)
          const once = readF64(dx)
          close(t, `${kind.name} backward`, once, fd, 1e-5, 1e-6)
          // Starting from non-zero values and running twice must add twice: dx += ..., never dx = ...
          const start = randomArray(n, 41 + n)
          const acc = buf(f32Buffer(d, start))
          N.activationBackward(kind.code, n, xb, gb, acc)
          N.activationBackward(kind.code, n, xb, gb, acc)
          close(t, `${kind.name} backward accumulates`, readF64(acc), start.map((s, i) => s + 2 * once[i]), 1e-6, 1e-6)
        }
      })
    }

    await t.test('edge values follow torch', async (t) => {
      const buf = track(t)
      const run = (code: number, xs: number[]) => {
        const y = buf(poisoned(d, xs.length))
        N.activationForward(code, xs.length, buf(f32Buffer(d, xs)), y)
        return Array.from(readF64(y))
      }
      const grad = (code: number, xs: number[]) => {
        const dx = buf(f32Buffer(d, new Array(xs.length).fill(0)))
        N.activationBackward(code, xs.length, buf(f32Buffer(d, xs)), buf(f32Buffer(d, new Array(xs.length).fill(1))), dx)
        return Array.from(readF64(dx))
      }
      t.same(grad(ACTIVATION_CODE.relu, [0, -0, 1e-30, -1e-30]), [0, 0, 1, 0], 'relu gradient is 0 at x == 0 and 1 only where x > 0')
      const r = run(ACTIVATION_CODE.relu, [NaN, -2, 3])
      t.ok(Number.isNaN(r[0]), 'relu(NaN) is NaN')
      t.same(r.slice(1), [0, 3])
      t.same(run(ACTIVATION_CODE.gelu, [20, 0, Infinity]), [20, 0, Infinity], 'gelu saturates to x')
      t.same(run(ACTIVATION_CODE.gelu_new, [20, 0, Infinity]), [20, 0, Infinity], 'gelu_new saturates to x')
      t.same(run(ACTIVATION_CODE.tanh, [30, -30]), [1, -1])
      t.same(grad(ACTIVATION_CODE.tanh, [30, -30]), [0, 0], 'tanh gradient vanishes where it saturates')
      // Deep in the negative tail 1 + erf(x/sqrt2) cancels; the kernel keeps full relative precision.
      const tail = [-5, -8, -10]
      close(t, 'gelu negative tail (relative)', run(ACTIVATION_CODE.gelu, tail), tail.map(geluErf), 1e-5, 0)
      for (const v of run(ACTIVATION_CODE.gelu, [-40, -1e6]).concat(run(ACTIVATION_CODE.gelu_new, [-40, -1e6]))) {
        t.ok(v === 0, `far negative tail is 0 (got ${v})`)
      }
    })

    if (dev.name === 'cpu') {
      await t.test('results do not depend on the thread count', async (t) => {
        const buf = track(t)
        const n = 100003
        const x = buf(f32Buffer(d, inputs(n, 5)))
        const saved = N.getNumThreads()
        const outputs: number[][] = []
        for (const threads of [1, 2]) {
          N.setNumThreads(threads)
          const y = buf(poisoned(d, n))
          N.activationForward(ACTIVATION_CODE.gelu, n, x, y)
          const dx = buf(f32Buffer(d, new Array(n).fill(0)))
          N.activationBackward(ACTIVATION_CODE.gelu_new, n, x, y, dx)
          outputs.push([...readF64(y), ...readF64(dx)])
        }
        N.setNumThreads(saved)
        t.same(outputs[0], outputs[1], 'identical with 1 and 2 threads')
      })
    }

    await t.test('bad input names the op', async (t) => {
      const buf = track(t)
      const x = buf(f32Buffer(d, [1, 2, 3]))
      const y = buf(poisoned(d, 3))
      const ids = buf(new (N.NativeBuffer)(d, DTYPE_CODE.int32, 3))
      t.throws(() => N.activationForward(9, 3, x, y), /^activationForward: .*unknown activation kind 9/)
      t.throws(() => N.activationForward(0, 4, x, y), /^activationForward: tensor 'x' holds 3 elements but shape \[4\] needs 4/)
      t.throws(() => N.activationForward(0, 3, ids, y), /^activationForward: tensor 'x' has dtype int32, expected float32/)
      t.throws(() => N.activationBackward(0, 3, x, y, x), /^activationBackward: output 'dx' must not be the same buffer as input 'x'/)
      const gone = f32Buffer(d, [1, 2, 3])
      gone.free()
      t.throws(() => N.activationBackward(0, 3, x, gone, y), /^activationBackward: tensor 'dy' was already freed/)
    })

    t.equal(N.memoryStats().liveBuffers, liveBefore, 'every buffer the tests made was freed')
    report(t)
  })
}
