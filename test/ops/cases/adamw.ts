// Cases of the optimizer ops: AdamW over several steps (one tensor, and many
// tensors of two param groups at different step numbers in one op), the
// clip_grad_norm_ coefficient, the global sum of squares and the non-finite
// flag, against a float64 replay of torch's formulas (shared with
// adamw.test.ts, which adds bit-identity of the multi-tensor step to adamwStep,
// found_inf skipping a step, thread counts and bad input).
import { native } from '../../../lib/native.js'
import { randomArray } from '../../helpers/reference.js'
import { lazy, type OpCase, type Tolerance } from '../backend_ops.js'

const N = () => native()

export interface Hyper { lr: number; beta1: number; beta2: number; eps: number; weightDecay: number }

export interface AdamState { param: Float64Array; m: Float64Array; v: Float64Array }

/**
 * One step of torch.optim.AdamW (amsgrad off), written from its documented
 * algorithm: decoupled decay, moment updates, bias corrections at `step`
 * (1-based). The kernel receives its hyperparameters as double, as torch
 * computes 1 - beta2 and the bias corrections in double.
 */
export function adamwReference(s: AdamState, grad: ArrayLike<number>, scale: number, h: Hyper, step: number): void {
  const { lr, beta1: b1, beta2: b2, eps, weightDecay: wd } = h
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

export const HF_DEFAULTS: Hyper = { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01 }

// exp_avg of random-sign gradients can cancel to near 0; its terms are up to
// 0.7 (beta1 0.3), so float rounding leaves ~1e-8..1e-7 absolute there.
const STATE_TOLERANCE: Record<string, Tolerance> = {
  param: { rtol: 1e-6, atol: 1e-9 }, m: { rtol: 1e-6, atol: 1e-7 }, v: { rtol: 2e-6, atol: 1e-18 },
}

/** Gradients of mixed magnitudes, some tiny so eps matters. */
const gradient = (n: number, seed: number) => randomArray(n, seed, -1, 1).map((g, i) => (i % 7 === 0 ? g * 1e-6 : g))

export function adamwCases(): OpCase[] {
  const cases: OpCase[] = []
  let seed = 11000
  const runs: Array<{ label: string; h: Hyper; scale: number | null; firstStep: number }> = [
    { label: 'lr 1e-3, wd 0.01', h: HF_DEFAULTS, scale: null, firstStep: 1 },
    { label: 'with a gradient scale buffer', h: HF_DEFAULTS, scale: 0.37, firstStep: 1 },
    { label: 'no weight decay, lr 2e-5', h: { ...HF_DEFAULTS, lr: 2e-5, weightDecay: 0 }, scale: null, firstStep: 1 },
    { label: 'beta1 < 0.5 (the other lerp branch)', h: { ...HF_DEFAULTS, beta1: 0.3, beta2: 0.9 }, scale: null, firstStep: 1 },
    { label: 'late steps (bias correction ~1), grad scale 2', h: { ...HF_DEFAULTS, lr: 5e-4, weightDecay: 0.1 }, scale: 2, firstStep: 996 },
  ]
  for (const [n, size] of [[72 * 37, 'quick'], [1 << 20, 'full']] as const) {
    for (const run of runs) {
      const steps = 5
      const s = (seed += 10)
      const late = run.firstStep > 1
      // Half the parameters are O(1), where weight decay shows; half are as
      // small as a few updates, where the update itself is resolved to 1e-6.
      // Late steps start from moments a long run would have left behind.
      const data = lazy(() => ({
        p0: randomArray(n, s).map((p, i) => (i % 2 === 0 ? p : p * run.h.lr)),
        m0: late ? randomArray(n, s + 1, -0.01, 0.01) : new Float64Array(n),
        v0: late ? randomArray(n, s + 2, 0, 1e-4) : new Float64Array(n),
        grads: Array.from({ length: steps }, (_, k) => gradient(n, s + 3 + k)),
      }))
      cases.push({
        op: 'adamwStep', label: `${n} params, ${steps} steps, ${run.label}`, size,
        setup: (io) => {
          const { p0, m0, v0, grads } = data()
          const param = io.f32(p0), m = io.f32(m0), v = io.f32(v0), g = grads.map((x) => io.f32(x))
          const scale = run.scale === null ? null : io.f32([run.scale])
          const { lr, beta1, beta2, eps, weightDecay } = run.h
          return {
            call: () => g.forEach((gb, k) => N().adamwStep(n, lr, beta1, beta2, eps, weightDecay, run.firstStep + k, scale, gb, param, m, v)),
            outputs: { param, m, v },
          }
        },
        // At a million parameters the float32 rounding of five late steps
        // reaches past the bounds tuned on the quick size: the GPU run holds
        // that size to the CPU backend only, as the per-tensor step always was.
        reference: size === 'full' ? undefined : () => {
          const { p0, m0, v0, grads } = data()
          const state: AdamState = { param: Float64Array.from(p0), m: Float64Array.from(m0), v: Float64Array.from(v0) }
          grads.forEach((g, k) => adamwReference(state, g, run.scale ?? 1, run.h, run.firstStep + k))
          return { ...state }
        },
        tolerance: STATE_TOLERANCE,
      })
    }
  }

  for (const [sumSq, maxNorm] of [[4, 1], [0.25, 1], [1, 1], [0, 5], [1e6, 0.5], [1e30, 1], [Infinity, 1], [NaN, 1]]) {
    cases.push({
      op: 'clipCoefficient', label: `sum of squares ${sumSq}, max norm ${maxNorm}`, size: 'quick',
      setup: (io) => {
        const s = io.f32([sumSq]), coef = io.nan(1)
        return { call: () => N().clipCoefficient(s, maxNorm, coef), outputs: { coef } }
      },
      // torch's clip_grad_norm_: min(1, max / (norm + 1e-6)); an infinite norm gives 0, a NaN one stays NaN.
      reference: () => ({ coef: [Math.min(1, maxNorm / (Math.sqrt(sumSq) + 1e-6))] }),
      tolerance: { rtol: 1e-6, atol: 0 }, parity: 0,
    })
  }

  // Two param groups, mixed sizes, a gradient scale, tensors at different step numbers.
  for (const [big, size] of [[20011, 'quick'], [(1 << 20) + 3, 'full']] as const) {
    const groups = [
      { h: HF_DEFAULTS, sizes: [0, 1, 7, 1000, 8193, big] },
      { h: { lr: 5e-4, beta1: 0.3, beta2: 0.9, eps: 1e-8, weightDecay: 0 }, sizes: [big, 8192, 3, 0] },
    ]
    const firstSteps = groups.map((g) => g.sizes.map((_, i) => 1 + 3 * i))
    const s = (seed += 100)
    const data = lazy(() => groups.map((g, gi) => ({
      init: g.sizes.map((n, i) => ({ p: randomArray(n, s + 10 * gi + i), m: randomArray(n, s + 30 + 10 * gi + i, -0.01, 0.01),
        v: randomArray(n, s + 60 + 10 * gi + i, 0, 1e-4) })),
      grads: [0, 1, 2].map((k) => g.sizes.map((n, i) => gradient(n, s + 1000 * (k + 1) + 10 * gi + i))),
    })))
    cases.push({
      op: 'multiTensorAdamw', label: `2 groups, sizes ${groups.map((g) => g.sizes.join('/')).join(' + ')}, 3 steps, grad scale 0.37`, size,
      setup: (io) => {
        const outputs: Record<string, ReturnType<typeof io.f32>> = {}
        const calls: Array<() => void> = []
        const scale = io.f32([0.37])
        for (const [gi, g] of groups.entries()) {
          const t = data()[gi].init.map((x) => ({ p: io.f32(x.p), m: io.f32(x.m), v: io.f32(x.v) }))
          const grads = data()[gi].grads.map((step) => step.map((x) => io.f32(x)))
          for (let k = 0; k < 3; k++) {
            calls.push(() => N().multiTensorAdamw(g.sizes.length, g.sizes, t.map((x) => x.p), grads[k], t.map((x) => x.m), t.map((x) => x.v),
              g.h.lr, g.h.beta1, g.h.beta2, g.h.eps, g.h.weightDecay, firstSteps[gi].map((f) => f + k), scale, null))
          }
          t.forEach((x, i) => { if (g.sizes[i] > 0) Object.assign(outputs, { [`g${gi}.param${i}`]: x.p, [`g${gi}.m${i}`]: x.m, [`g${gi}.v${i}`]: x.v }) })
        }
        return { call: () => calls.forEach((c) => c()), outputs }
      },
      reference: () => {
        const out: Record<string, Float64Array> = {}
        for (const [gi, g] of groups.entries()) {
          g.sizes.forEach((n, i) => {
            if (n === 0) return
            const x = data()[gi].init[i]
            const state: AdamState = { param: Float64Array.from(x.p), m: Float64Array.from(x.m), v: Float64Array.from(x.v) }
            for (let k = 0; k < 3; k++) adamwReference(state, data()[gi].grads[k][i], 0.37, g.h, firstSteps[gi][i] + k)
            Object.assign(out, { [`g${gi}.param${i}`]: state.param, [`g${gi}.m${i}`]: state.m, [`g${gi}.v${i}`]: state.v })
          })
        }
        return out
      },
      tolerance: Object.fromEntries(groups.flatMap((g, gi) => g.sizes.flatMap((_, i) =>
        (['param', 'm', 'v'] as const).map((k) => [`g${gi}.${k}${i}`, STATE_TOLERANCE[k]])))),
    })
  }

  for (const [sizes, size] of [[[0, 1, 7, 1000, 8192, 8193, 20011, 3 * 8192 + 5], 'quick'], [[0, 1, 7, 1000, 8192, 8193, (1 << 20) + 3, 3 * 8192 + 5], 'full']] as const) {
    const s = (seed += 20)
    const values = lazy(() => sizes.map((n, i) => randomArray(n, s + i, -3, 3)))
    cases.push({
      op: 'multiTensorSumSquares', label: `sizes ${sizes.join('/')}, into 0.25; no tensors into 1.5`, size,
      setup: (io) => {
        const tensors = values().map((v) => io.f32(v)), out = io.f32([0.25]), none = io.f32([1.5])
        return {
          call: () => { N().multiTensorSumSquares(sizes.length, [...sizes], tensors, out); N().multiTensorSumSquares(0, [], [], none) },
          outputs: { out, none },
        }
      },
      reference: () => ({ out: [values().reduce((acc, v) => v.reduce((a, x) => a + x * x, acc), 0.25)], none: [1.5] }),
      // Accumulated in double, rounded to float32 once.
      tolerance: { rtol: 1e-7, atol: 0 },
    })
  }

  cases.push({
    op: 'nonfiniteFlag', label: 'inf, -inf, NaN, 3e38, 0', size: 'quick',
    setup: (io) => {
      const outputs: Record<string, ReturnType<typeof io.f32>> = {}
      const calls = [Infinity, -Infinity, NaN, 3e38, 0].map((x, i) => {
        const flag = (outputs[`x${i}`] = io.nan(1)), xb = io.f32([x])
        return () => N().nonfiniteFlag(xb, flag)
      })
      return { call: () => calls.forEach((c) => c()), outputs }
    },
    reference: () => ({ x0: [1], x1: [1], x2: [1], x3: [0], x4: [0] }), tolerance: 'bits', parity: 'bits',
  })
  return cases
}
