// AdamW (torch.optim.AdamW semantics) over several steps against a float64
// replay of torch's formulas, with and without a gradient scale; the
// clip_grad_norm_ coefficient; and bad input.
import t from 'tap'
import { native, type NativeBuffer } from '../../lib/native.js'
import { devicesUnderTest } from '../helpers/devices.js'
import { randomArray, f32Buffer, poisoned, readF64, compare, freeAll } from '../helpers/reference.js'

const N = native()

// ---- float64 reference ------------------------------------------------------------

interface Hyper { lr: number; beta1: number; beta2: number; eps: number; weightDecay: number }

interface State { param: Float64Array; m: Float64Array; v: Float64Array }

/**
 * One step of torch.optim.AdamW (amsgrad off), written from its documented
 * algorithm: decoupled decay, moment updates, bias corrections at `step`
 * (1-based). The kernel receives its hyperparameters as double, as torch
 * computes 1 - beta2 and the bias corrections in double.
 */
function adamwReference(s: State, grad: Float64Array, scale: number, h: Hyper, step: number): void {
  const lr = h.lr
  const b1 = h.beta1
  const b2 = h.beta2
  const eps = h.eps
  const wd = h.weightDecay
  const bc1 = 1 - b1 ** step
  const bc2 = 1 - b2 ** step
  const stepSize = lr / bc1
  for (let i = 0; i < grad.length; i++) {
    const g = grad[i] * scale
    s.param[i] *= 1 - lr * wd
    s.m[i] = b1 * s.m[i] + (1 - b1) * g
    s.v[i] = b2 * s.v[i] + (1 - b2) * g * g
    const denom = Math.sqrt(s.v[i]) / Math.sqrt(bc2) + eps
    s.param[i] -= (stepSize * s.m[i]) / denom
  }
}

// ---- small harness ----------------------------------------------------------------

const worst = new Map<string, { abs: number; rel: number }>()

/** Asserts closeness and records the worst absolute / relative error per label for the summary. */
function close(t: tap.Test, label: string, got: ArrayLike<number>, want: ArrayLike<number>, rtol: number, atol: number) {
  const c = compare(got, want, rtol, atol)
  t.ok(c.ok, `${label}: ${c.message}`)
  const w = worst.get(label) ?? { abs: 0, rel: 0 }
  for (let i = 0; i < want.length; i++) {
    const err = Math.abs(got[i] - want[i])
    w.abs = Math.max(w.abs, err)
    if (Math.abs(want[i]) > 1e-4) w.rel = Math.max(w.rel, err / Math.abs(want[i]))
  }
  worst.set(label, w)
}

/** Buffers freed when the test ends, whatever happens inside it. */
function track(t: tap.Test) {
  const made: NativeBuffer[] = []
  t.teardown(() => freeAll(...made))
  return <B extends NativeBuffer>(b: B): B => {
    made.push(b)
    return b
  }
}

const HF_DEFAULTS: Hyper = { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01 }

const RUNS: Array<{ label: string; h: Hyper; scale: number | null; firstStep: number }> = [
  { label: 'lr 1e-3, wd 0.01', h: HF_DEFAULTS, scale: null, firstStep: 1 },
  { label: 'with a gradient scale buffer', h: HF_DEFAULTS, scale: 0.37, firstStep: 1 },
  { label: 'no weight decay, lr 2e-5', h: { ...HF_DEFAULTS, lr: 2e-5, weightDecay: 0 }, scale: null, firstStep: 1 },
  { label: 'beta1 < 0.5 (the other lerp branch)', h: { ...HF_DEFAULTS, beta1: 0.3, beta2: 0.9 }, scale: null, firstStep: 1 },
  { label: 'late steps (bias correction ~1)', h: { ...HF_DEFAULTS, lr: 5e-4, weightDecay: 0.1 }, scale: 2, firstStep: 996 },
]

for (const dev of devicesUnderTest()) {
  t.test(`adamw on ${dev.name}`, { skip: dev.skip ?? false }, async (t) => {
    const d = dev.code
    const liveBefore = N.memoryStats().liveBuffers

    for (const [k, run] of RUNS.entries()) {
      await t.test(`5 steps, ${run.label}`, async (t) => {
        const buf = track(t)
        const n = 72 * 37
        // Half the parameters are O(1), where weight decay shows; half are as
        // small as a few updates, where the update itself is resolved to 1e-6.
        const init = randomArray(n, 10 * k + 1).map((p, i) => (i % 2 === 0 ? p : p * run.h.lr))
        // Late steps start from moments a long run would have left behind.
        const late = run.firstStep > 1
        const ref: State = {
          param: Float64Array.from(init),
          m: late ? randomArray(n, 10 * k + 2, -0.01, 0.01) : new Float64Array(n),
          v: late ? randomArray(n, 10 * k + 3, 0, 1e-4) : new Float64Array(n),
        }
        const param = buf(f32Buffer(d, ref.param))
        const m = buf(f32Buffer(d, ref.m))
        const v = buf(f32Buffer(d, ref.v))
        const scale = run.scale === null ? null : buf(f32Buffer(d, [run.scale]))
        const { lr, beta1, beta2, eps, weightDecay } = run.h
        for (let s = 0; s < 5; s++) {
          const step = run.firstStep + s
          // Gradients of mixed magnitudes, some tiny so eps matters.
          const grad = randomArray(n, 100 * k + s, -1, 1).map((g, i) => (i % 7 === 0 ? g * 1e-6 : g))
          N.adamwStep(n, lr, beta1, beta2, eps, weightDecay, step, scale, buf(f32Buffer(d, grad)), param, m, v)
          adamwReference(ref, grad, run.scale ?? 1, run.h, step)
        }
        close(t, 'adamw param', readF64(param), ref.param, 1e-6, 1e-9)
        // exp_avg of random-sign gradients can cancel to near 0; its terms are
        // up to 0.7 (beta1 0.3), so float rounding leaves ~1e-8..1e-7 absolute there.
        close(t, 'adamw exp_avg', readF64(m), ref.m, 1e-6, 1e-7)
        close(t, 'adamw exp_avg_sq', readF64(v), ref.v, 1e-6, 1e-18)
      })
    }

    await t.test('global norm clipping feeds the step through gradScale', async (t) => {
      const buf = track(t)
      // Two "parameters" as the trainer sees them; the norm is over both.
      const sizes = [300, 72]
      const grads = sizes.map((n, i) => randomArray(n, 50 + i, -2, 2))
      const sumSq = buf(f32Buffer(d, [0]))
      for (const [i, g] of grads.entries()) N.sumSquares(sizes[i], buf(f32Buffer(d, g)), sumSq)
      const norm = Math.sqrt(grads.flatMap((g) => Array.from(g)).reduce((s, x) => s + x * x, 0))
      const maxNorm = 1
      const coef = buf(poisoned(d, 1))
      N.clipCoefficient(sumSq, maxNorm, coef)
      const wantCoef = Math.min(1, maxNorm / (norm + 1e-6))
      close(t, 'clip coefficient', readF64(coef), [wantCoef], 1e-6, 0)
      t.ok(readF64(coef)[0] < 0.2, 'these gradients are clipped')
      for (const [i, g] of grads.entries()) {
        const state: State = { param: randomArray(sizes[i], 60 + i), m: new Float64Array(sizes[i]), v: new Float64Array(sizes[i]) }
        const param = buf(f32Buffer(d, state.param))
        const m = buf(f32Buffer(d, state.m))
        const v = buf(f32Buffer(d, state.v))
        for (let step = 1; step <= 3; step++) {
          N.adamwStep(sizes[i], 1e-3, 0.9, 0.999, 1e-8, 0.01, step, coef, buf(f32Buffer(d, g)), param, m, v)
          adamwReference(state, g, wantCoef, HF_DEFAULTS, step)
        }
        close(t, 'clipped adamw param', readF64(param), state.param, 1e-6, 1e-9)
        close(t, 'clipped adamw exp_avg_sq', readF64(v), state.v, 2e-6, 1e-18)
      }
    })

    await t.test('clip coefficient follows clip_grad_norm_', async (t) => {
      const buf = track(t)
      const cases: Array<[number, number, number, string]> = [
        [4, 1, 1 / (2 + 1e-6), 'norm 2 > max 1: scaled down'],
        [0.25, 1, 1, 'norm 0.5 < max 1: clamped to 1'],
        [1, 1, 1 / (1 + 1e-6), 'norm == max: just below 1 (the 1e-6)'],
        [0, 5, 1, 'zero gradients'],
        [1e6, 0.5, 0.5 / (1000 + 1e-6), 'large norm, max 0.5'],
      ]
      for (const [sumSq, maxNorm, want, what] of cases) {
        const coef = buf(poisoned(d, 1))
        N.clipCoefficient(buf(f32Buffer(d, [sumSq])), maxNorm, coef)
        close(t, `clip ${what}`, readF64(coef), [want], 1e-6, 0)
      }
      const zero = buf(poisoned(d, 1))
      N.clipCoefficient(buf(f32Buffer(d, [Infinity])), 1, zero)
      t.equal(readF64(zero)[0], 0, 'an infinite norm gives 0')
      const coef = buf(poisoned(d, 1))
      N.clipCoefficient(buf(f32Buffer(d, [NaN])), 1, coef)
      t.ok(Number.isNaN(readF64(coef)[0]), 'a NaN norm stays NaN (torch does not hide it)')
    })

    if (dev.name === 'cpu') {
      await t.test('the step does not depend on the thread count', async (t) => {
        const buf = track(t)
        const n = 100003
        const grad = buf(f32Buffer(d, randomArray(n, 1)))
        const init = randomArray(n, 2)
        const saved = N.getNumThreads()
        const results: Float64Array[] = []
        for (const threads of [1, 2]) {
          N.setNumThreads(threads)
          const param = buf(f32Buffer(d, init))
          const m = buf(f32Buffer(d, new Float64Array(n)))
          const v = buf(f32Buffer(d, new Float64Array(n)))
          for (let step = 1; step <= 2; step++) N.adamwStep(n, 1e-3, 0.9, 0.999, 1e-8, 0.01, step, null, grad, param, m, v)
          results.push(readF64(param))
        }
        N.setNumThreads(saved)
        t.ok(results[0].every((p, i) => p === results[1][i]), 'identical with 1 and 2 threads')
      })
    }

    await t.test('bad input names the op', async (t) => {
      const buf = track(t)
      const [g, p, m, v] = [0, 1, 2, 3].map((s) => buf(f32Buffer(d, randomArray(4, s))))
      const empty = buf(poisoned(d, 0))
      t.throws(() => N.adamwStep(4, 1e-3, 1, 0.999, 1e-8, 0, 1, null, g, p, m, v), /^adamwStep: betas must be in \[0, 1\)/)
      t.throws(() => N.adamwStep(4, 1e-3, 0.9, 0.999, 1e-8, 0, 0, null, g, p, m, v), /^adamwStep: 'step' must be at least 1/)
      t.throws(() => N.adamwStep(5, 1e-3, 0.9, 0.999, 1e-8, 0, 1, null, g, p, m, v), /^adamwStep: tensor 'grad' holds 4 elements but shape \[5\] needs 5/)
      t.throws(() => N.adamwStep(4, 1e-3, 0.9, 0.999, 1e-8, 0, 1, empty, g, p, m, v), /^adamwStep: tensor 'gradScale' holds 0 elements/)
      t.throws(() => N.adamwStep(4, 1e-3, 0.9, 0.999, 1e-8, 0, 1, null, g, g, m, v), /^adamwStep: output 'param' must not be the same buffer as input 'grad'/)
      t.throws(() => N.adamwStep(4, -1, 0.9, 0.999, 1e-8, 0, 1, null, g, p, m, v), /^adamwStep: lr, eps and weightDecay must be non-negative/)
      t.throws(() => N.clipCoefficient(g, 0, p), /^clipCoefficient: 'maxNorm' must be positive/)
      const gone = f32Buffer(d, [0, 0, 0, 0])
      gone.free()
      t.throws(() => N.adamwStep(4, 1e-3, 0.9, 0.999, 1e-8, 0, 1, null, g, p, gone, v), /^adamwStep: tensor 'expAvg' was already freed/)
      t.same(Array.from(readF64(p)), Array.from(randomArray(4, 1)), 'rejected steps left the parameter alone')
    })

    t.equal(N.memoryStats().liveBuffers, liveBefore, 'every buffer the tests made was freed')
    for (const [label, w] of worst) t.comment(`max error ${label}: abs ${w.abs.toExponential(2)}, rel ${w.rel.toExponential(2)}`)
    worst.clear()
  })
}
