// Activations (every kind of transformers' ACT2FN bertkit runs: exact GELU,
// tanh GELU, tanh, relu, silu, quick_gelu, mish, sigmoid, relu6, leaky_relu,
// linear, relu2, gelu_10, laplace, hardswish, sqrtsoftplus): forward against
// float64 references, backward against central finite differences of those
// references, accumulation, torch's edge-case semantics, and bad input.
import t from 'tap'
import { native, ACTIVATION_CODE, DTYPE_CODE } from '../../lib/native.js'
import { devicesUnderTest } from '../helpers/devices.js'
import { errorSummary, track } from '../helpers/checks.js'
import { randomArray, f32Buffer, poisoned, readF64 } from '../helpers/reference.js'

const N = native()

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
const sigmoid = (x: number) => 1 / (1 + Math.exp(-x))
const softplus = (x: number) => (x > 30 ? x : Math.log1p(Math.exp(x)))
// transformers' activations.py, written as there, in float64.
const silu = (x: number) => x * sigmoid(x)
const quickGelu = (x: number) => x * sigmoid(1.702 * x)
const mish = (x: number) => x * Math.tanh(softplus(x))
const relu6 = (x: number) => (Number.isNaN(x) ? x : Math.min(Math.max(x, 0), 6))
const leakyRelu = (x: number) => (x > 0 ? x : 0.01 * x)
const relu2 = (x: number) => relu(x) ** 2
const gelu10 = (x: number) => Math.min(Math.max(geluErf(x), -10), 10)
const laplace = (x: number) => 0.5 * erfc(-(x - 0.707107) / (0.282095 * Math.SQRT2))
const hardswish = (x: number) => (x * Math.min(Math.max(x + 3, 0), 6)) / 6
const sqrtSoftplus = (x: number) => Math.sqrt(softplus(x))
// gelu_fast as transformers writes it: its own 10-digit constant, another order of operations.
const geluFast = (x: number) => 0.5 * x * (1 + Math.tanh(x * 0.7978845608 * (1 + 0.044715 * x * x)))

/**
 * Every kind, under the name the codes table gives it; `kinks` are points
 * where the derivative jumps (finite differences stay clear of them).
 */
const KINDS: Array<{ name: string; code: number; f: (x: number) => number; kinks?: number[] }> = [
  { name: 'gelu (erf)', code: ACTIVATION_CODE.gelu, f: geluErf },
  { name: 'gelu_new (tanh)', code: ACTIVATION_CODE.gelu_new, f: geluTanh },
  { name: 'gelu_fast', code: ACTIVATION_CODE.gelu_fast, f: geluFast },
  { name: 'gelu_pytorch_tanh', code: ACTIVATION_CODE.gelu_pytorch_tanh, f: geluTanh },
  { name: 'tanh', code: ACTIVATION_CODE.tanh, f: Math.tanh },
  { name: 'relu', code: ACTIVATION_CODE.relu, f: relu, kinks: [0] },
  { name: 'silu', code: ACTIVATION_CODE.silu, f: silu },
  { name: 'quick_gelu', code: ACTIVATION_CODE.quick_gelu, f: quickGelu },
  { name: 'mish', code: ACTIVATION_CODE.mish, f: mish },
  { name: 'sigmoid', code: ACTIVATION_CODE.sigmoid, f: sigmoid },
  { name: 'relu6', code: ACTIVATION_CODE.relu6, f: relu6, kinks: [0, 6] },
  { name: 'leaky_relu', code: ACTIVATION_CODE.leaky_relu, f: leakyRelu, kinks: [0] },
  { name: 'linear', code: ACTIVATION_CODE.linear, f: (x) => x },
  { name: 'relu2', code: ACTIVATION_CODE.relu2, f: relu2, kinks: [0] },
  { name: 'gelu_10', code: ACTIVATION_CODE.gelu_10, f: gelu10 },
  { name: 'laplace', code: ACTIVATION_CODE.laplace, f: laplace },
  { name: 'hardswish', code: ACTIVATION_CODE.hardswish, f: hardswish, kinks: [-3, 3] },
  { name: 'sqrtsoftplus', code: ACTIVATION_CODE.sqrtsoftplus, f: sqrtSoftplus },
]

// ---- small harness ----------------------------------------------------------------

const { close, report } = errorSummary()

/** x in [-6, 6] with none closer to a kink than `gap`, so finite differences never straddle one. */
function inputs(n: number, seed: number, gap = 0, kinks: number[] = [0]): Float64Array {
  const x = randomArray(n, seed, -6, 6)
  for (let i = 0; i < n; i++) {
    for (const k of kinks) if (Math.abs(x[i] - k) < gap) x[i] = Math.fround(x[i] < k ? k - gap : k + gap)
  }
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
          const x = inputs(n, 21 + n, 1e-3, kind.kinks)
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
      // The sigmoid-based kinds saturate cleanly instead of overflowing to NaN (e^{-x} is inf for x < -89).
      t.same(run(ACTIVATION_CODE.silu, [-200, 0, 200]), [-0, 0, 200], 'silu saturates')
      t.same(run(ACTIVATION_CODE.quick_gelu, [-200, 200]), [-0, 200], 'quick_gelu saturates')
      t.same(run(ACTIVATION_CODE.mish, [-200, 200]), [-0, 200], 'mish saturates')
      t.same(run(ACTIVATION_CODE.sigmoid, [-200, 200]), [0, 1], 'sigmoid saturates')
      t.same(grad(ACTIVATION_CODE.silu, [-200, 200]), [0, 1], 'silu gradient at the saturated ends')
      t.same(grad(ACTIVATION_CODE.mish, [-200, 200]), [0, 1], 'mish gradient at the saturated ends')
      t.same(run(ACTIVATION_CODE.sqrtsoftplus, [200]), [Math.fround(Math.sqrt(200))], 'sqrtsoftplus is sqrt(x) for large x')
      // Piecewise kinds at their breakpoints: torch's forward and backward conventions.
      t.same(run(ACTIVATION_CODE.relu6, [-1, 0, 3, 6, 7]), [0, 0, 3, 6, 6])
      t.same(grad(ACTIVATION_CODE.relu6, [-1, 0, 3, 6, 7]), [0, 0, 1, 0, 0], 'relu6 (hardtanh) passes gradient strictly inside (0, 6)')
      const r6 = run(ACTIVATION_CODE.relu6, [NaN])
      t.ok(Number.isNaN(r6[0]), 'relu6(NaN) is NaN')
      t.same(grad(ACTIVATION_CODE.hardswish, [-4, -3, 0, 3, 4]), [0, Math.fround(-0.5), 0.5, 1.5, 1], 'hardswish gradient as torch\'s hardswish_backward')
      t.same(grad(ACTIVATION_CODE.leaky_relu, [-1, 0, 1]), [Math.fround(0.01), Math.fround(0.01), 1])
      t.same(run(ACTIVATION_CODE.gelu_10, [12, 1e6]), [10, 10], 'gelu_10 clips at 10')
      t.same(grad(ACTIVATION_CODE.gelu_10, [12]), [0], 'no gradient where gelu_10 clips')
      t.same(run(ACTIVATION_CODE.linear, [-3.5, 0, 7]), [-3.5, 0, 7])
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
      const kinds = new Set(Object.values(ACTIVATION_CODE)).size
      t.throws(() => N.activationForward(kinds, 3, x, y), new RegExp(`^activationForward: .*unknown activation kind ${kinds}`))
      t.throws(() => N.activationForward(-1, 3, x, y), /^activationForward: .*unknown activation kind -1/)
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
