// AdamW (torch.optim.AdamW semantics): global norm clipping feeding the step,
// thread counts and bad input; the multi-tensor step bit for bit against
// adamwStep, the global sum of squares, found_inf. Steps against the float64
// replay of torch's formulas, and the clip_grad_norm_ coefficient, are cases
// of the backend table (cases/adamw.ts).
import t from 'tap'
import { native, type NativeBuffer } from '../../lib/native.js'
import { devicesUnderTest } from '../helpers/devices.js'
import { randomArray, f32Buffer, i32Buffer, poisoned, readF64 } from '../helpers/reference.js'
import { track, errorSummary } from '../helpers/checks.js'
import { HF_DEFAULTS, adamwReference, type AdamState as State, type Hyper } from './cases/adamw.js'

const N = native()
const { close, report } = errorSummary()

for (const dev of devicesUnderTest()) {
  t.test(`adamw on ${dev.name}`, { skip: dev.skip ?? false }, async (t) => {
    const d = dev.code
    const liveBefore = N.memoryStats().liveBuffers

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
    report(t)
  })
}

// ---- multi-tensor AdamW and global norm ------------------------------------------------
//
// multiTensorAdamw runs, per element, the very arithmetic of adamwStep (one
// shared function on each backend), so the two must agree bit for bit, not
// merely to an ulp; the float64 replay of torch's formulas checks both.

const MULTI_SIZES = [0, 1, 7, 1000, 100003]

interface Slot { n: number; param: NativeBuffer; m: NativeBuffer; v: NativeBuffer; step: number }

for (const dev of devicesUnderTest()) {
  t.test(`multi-tensor adamw and norm on ${dev.name}`, { skip: dev.skip ?? false }, async (t) => {
    const d = dev.code
    const liveBefore = N.memoryStats().liveBuffers

    // Two param groups as the Trainer makes them (decay / no decay, here also
    // different lr and betas), mixed sizes, a gradient scale; one tensor joins
    // late, so tensors of one call are at different step numbers.
    const GROUPS: Array<{ h: Hyper; sizes: number[] }> = [
      { h: HF_DEFAULTS, sizes: MULTI_SIZES },
      { h: { lr: 5e-4, beta1: 0.3, beta2: 0.9, eps: 1e-8, weightDecay: 0 }, sizes: [...MULTI_SIZES].reverse() },
    ]
    for (const withScale of [false, true]) {
      await t.test(`5 steps, two groups, ${withScale ? 'with' : 'without'} gradScale: bit-identical to adamwStep`, async (t) => {
        const buf = track(t)
        const scale = withScale ? buf(f32Buffer(d, [0.37])) : null
        for (const [gi, group] of GROUPS.entries()) {
          const init = (n: number, seed: number) => randomArray(n, seed)
          const make = (seedBase: number): Slot[] => group.sizes.map((n, i) => ({
            n,
            param: buf(f32Buffer(d, init(n, seedBase + i))),
            m: buf(f32Buffer(d, new Float64Array(n))),
            v: buf(f32Buffer(d, new Float64Array(n))),
            step: 0,
          }))
          const multi = make(300 + 10 * gi), single = make(300 + 10 * gi)
          const refs: State[] = group.sizes.map((n, i) => ({ param: init(n, 300 + 10 * gi + i), m: new Float64Array(n), v: new Float64Array(n) }))
          const { lr, beta1, beta2, eps, weightDecay } = group.h
          for (let s = 0; s < 5; s++) {
            // Tensor 1 has no gradient in the first two steps (its state starts later).
            const active = group.sizes.map((_, i) => !(i === 1 && s < 2))
            const grads = group.sizes.map((n, i) => randomArray(n, 1000 * gi + 100 * s + i, -1, 1).map((g, j) => (j % 7 === 0 ? g * 1e-6 : g)))
            const gbufs = grads.map((g) => buf(f32Buffer(d, g)))
            const idx = group.sizes.map((_, i) => i).filter((i) => active[i])
            for (const i of idx) multi[i].step++
            N.multiTensorAdamw(idx.length, idx.map((i) => group.sizes[i]), idx.map((i) => multi[i].param), idx.map((i) => gbufs[i]),
              idx.map((i) => multi[i].m), idx.map((i) => multi[i].v), lr, beta1, beta2, eps, weightDecay,
              idx.map((i) => multi[i].step), scale, null)
            for (const i of idx) {
              const sl = single[i]
              sl.step++
              N.adamwStep(sl.n, lr, beta1, beta2, eps, weightDecay, sl.step, scale, gbufs[i], sl.param, sl.m, sl.v)
              adamwReference(refs[i], grads[i], withScale ? 0.37 : 1, group.h, sl.step)
            }
          }
          for (const [i, n] of group.sizes.entries()) {
            const what = `group ${gi} tensor ${i} (${n} elements)`
            for (const k of ['param', 'm', 'v'] as const) {
              const a = readF64(multi[i][k]), b = readF64(single[i][k])
              const diff = a.findIndex((x, j) => !Object.is(x, b[j]))
              t.equal(diff, -1, `${what} ${k}: multi-tensor equals adamwStep bit for bit${diff >= 0 ? ` (first difference at ${diff}: ${a[diff]} vs ${b[diff]})` : ''}`)
            }
            close(t, 'multi adamw param', readF64(multi[i].param), refs[i].param, 1e-6, 1e-9)
            close(t, 'multi adamw exp_avg', readF64(multi[i].m), refs[i].m, 1e-6, 1e-7)
            close(t, 'multi adamw exp_avg_sq', readF64(multi[i].v), refs[i].v, 1e-6, 1e-18)
          }
        }
      })
    }

    await t.test('multi-tensor sum of squares against float64', async (t) => {
      const buf = track(t)
      const sizes = [...MULTI_SIZES, 8192, 8193, 3 * 8192 + 5]
      const values = sizes.map((n, i) => randomArray(n, 700 + i, -3, 3))
      let want = 0.25
      for (const v of values) for (const x of Float32Array.from(v)) want += x * x
      const out = buf(f32Buffer(d, [0.25]))  // accumulates into out[0]
      N.multiTensorSumSquares(sizes.length, sizes, values.map((v) => buf(f32Buffer(d, v))), out)
      close(t, 'multi sum of squares', readF64(out), [want], 1e-7, 0)
      const empty = buf(f32Buffer(d, [1.5]))
      N.multiTensorSumSquares(0, [], [], empty)
      t.equal(readF64(empty)[0], 1.5, 'no tensors add nothing')
      if (dev.name === 'cpu') {
        const saved = N.getNumThreads()
        const got: number[] = []
        for (const threads of [1, 2, 3]) {
          N.setNumThreads(threads)
          const o = buf(f32Buffer(d, [0]))
          N.multiTensorSumSquares(sizes.length, sizes, values.map((v) => buf(f32Buffer(d, v))), o)
          got.push(readF64(o)[0])
        }
        N.setNumThreads(saved)
        t.ok(got.every((g) => g === got[0]), `the same with 1, 2 and 3 threads (${got.join(', ')})`)
      }
    })

    await t.test('found_inf skips the whole step and leaves everything untouched', async (t) => {
      const buf = track(t)
      const flag = buf(poisoned(d, 1))
      for (const [x, want] of [[Infinity, 1], [-Infinity, 1], [NaN, 1], [3e38, 0], [0, 0]] as const) {
        N.nonfiniteFlag(buf(f32Buffer(d, [x])), flag)
        t.equal(readF64(flag)[0], want, `nonfiniteFlag(${x}) = ${want}`)
      }
      const sizes = [7, 1000, 0, 100003]
      const params = sizes.map((n, i) => buf(f32Buffer(d, randomArray(n, 800 + i))))
      const ms = sizes.map((n, i) => buf(f32Buffer(d, randomArray(n, 810 + i, -0.01, 0.01))))
      const vs = sizes.map((n, i) => buf(f32Buffer(d, randomArray(n, 820 + i, 0, 1e-4))))
      const before = [...params, ...ms, ...vs].map(readF64)
      // One infinite gradient element: the device computes the norm and the flag, the step reads it.
      const grads = sizes.map((n, i) => randomArray(n, 830 + i))
      grads[3][12345] = Infinity
      const gbufs = grads.map((g) => buf(f32Buffer(d, g)))
      const sumSq = buf(f32Buffer(d, [0]))
      N.multiTensorSumSquares(sizes.length, sizes, gbufs, sumSq)
      N.nonfiniteFlag(sumSq, flag)
      const steps = sizes.map(() => 4)
      N.multiTensorAdamw(sizes.length, sizes, params, gbufs, ms, vs, 1e-3, 0.9, 0.999, 1e-8, 0.01, steps, null, flag)
      const after = [...params, ...ms, ...vs].map(readF64)
      t.ok(after.every((a, i) => a.every((x, j) => Object.is(x, before[i][j]))), 'params and moments are bit-identical to before')
      // With a clear flag the same call steps (and matches adamwStep).
      const fine = buf(f32Buffer(d, [0]))
      gbufs[3].write(Float32Array.from(grads[3].map((g) => (Number.isFinite(g) ? g : 0.5))))
      const p1 = buf(f32Buffer(d, before[1])), m1 = buf(f32Buffer(d, before[5])), v1 = buf(f32Buffer(d, before[9]))
      N.adamwStep(1000, 1e-3, 0.9, 0.999, 1e-8, 0.01, 4, null, gbufs[1], p1, m1, v1)
      N.multiTensorAdamw(sizes.length, sizes, params, gbufs, ms, vs, 1e-3, 0.9, 0.999, 1e-8, 0.01, steps, null, fine)
      t.same(Array.from(readF64(params[1])), Array.from(readF64(p1)), 'a zero flag steps as adamwStep does')
      const after3 = readF64(params[3])
      t.ok(after3.some((x, j) => x !== before[3][j]), 'and the large tensor moved')
    })

    await t.test('bad input names the op, the tensor and the index', async (t) => {
      const buf = track(t)
      const sizes = [4, 3]
      const mk = (seed: number) => sizes.map((n, i) => buf(f32Buffer(d, randomArray(n, seed + i))))
      const [p, g, m, v] = [mk(900), mk(910), mk(920), mk(930)]
      const pBefore = p.map(readF64)
      const call = (o: Partial<{ count: number; sizes: number[]; p: NativeBuffer[]; g: NativeBuffer[]; m: NativeBuffer[]; v: NativeBuffer[]; lr: number; beta1: number; steps: number[]; scale: NativeBuffer | null; found: NativeBuffer | null }>) =>
        () => N.multiTensorAdamw(o.count ?? 2, o.sizes ?? sizes, o.p ?? p, o.g ?? g, o.m ?? m, o.v ?? v, o.lr ?? 1e-3,
          o.beta1 ?? 0.9, 0.999, 1e-8, 0.01, o.steps ?? [1, 1], o.scale ?? null, o.found ?? null)
      t.throws(call({ count: 3 }), /^multiTensorAdamw: 'sizes' has 2 entries but count is 3/)
      t.throws(call({ sizes: [4, -1] }), /^multiTensorAdamw: sizes\[1\] must be an integer >= 0, got -1/)
      t.throws(call({ sizes: [4, 5] }), /^multiTensorAdamw: tensor 'params\[1\]' holds 3 elements but sizes\[1\] = 5 needs 5/)
      t.throws(call({ g: [g[0]] }), /^multiTensorAdamw: 'grads' has 1 entries but count is 2/)
      t.throws(call({ m: [m[0], {} as NativeBuffer] }), /^multiTensorAdamw: 'expAvgs\[1\]' must be a NativeBuffer/)
      const ints = buf(i32Buffer(d, [1, 2, 3]))
      t.throws(call({ v: [v[0], ints] }), /^multiTensorAdamw: tensor 'expAvgSqs\[1\]' has dtype int32, expected float32/)
      t.throws(call({ g: [g[0], p[1]] }), /^multiTensorAdamw: output 'params\[1\]' must not be the same buffer as input 'grads\[1\]'/)
      t.throws(call({ p: [p[0], p[0]] }), /^multiTensorAdamw: tensor 'params\[1\]' is the same buffer as 'params\[0\]'/)
      t.throws(call({ m: [m[0], v[1]] }), /^multiTensorAdamw: tensor 'expAvgSqs\[1\]' is the same buffer as 'expAvgs\[1\]'/)
      t.throws(call({ scale: p[0] }), /^multiTensorAdamw: output 'params\[0\]' must not be the same buffer as input 'gradScale'/)
      t.throws(call({ steps: [1, 0] }), /^multiTensorAdamw: steps\[1\] must be an integer >= 1, got 0/)
      t.throws(call({ beta1: 1 }), /^multiTensorAdamw: betas must be in \[0, 1\)/)
      t.throws(call({ lr: -1 }), /^multiTensorAdamw: lr, eps and weightDecay must be non-negative/)
      t.throws(call({ found: buf(poisoned(d, 0)) }), /^multiTensorAdamw: tensor 'foundInf' holds 0 elements but shape \[1\] needs 1/)
      const gone = f32Buffer(d, [0, 0, 0])
      gone.free()
      t.throws(call({ v: [v[0], gone] }), /^multiTensorAdamw: tensor 'expAvgSqs\[1\]' was already freed/)
      t.ok(p.every((b, i) => readF64(b).every((x, j) => x === pBefore[i][j])), 'rejected steps left the parameters alone')
      const out = buf(f32Buffer(d, [0]))
      t.throws(() => N.multiTensorSumSquares(2, sizes, [g[0], out], out), /^multiTensorSumSquares: tensor 'tensors\[1\]' holds 1 elements but sizes\[1\] = 3 needs 3/)
      t.throws(() => N.multiTensorSumSquares(2, [4, 1], [g[0], out], out), /^multiTensorSumSquares: output 'out' must not be the same buffer as input 'tensors\[1\]'/)
      t.throws(() => N.multiTensorSumSquares(1, [4], g, out), /^multiTensorSumSquares: 'tensors' has 2 entries but count is 1/)
      t.throws(() => N.multiTensorSumSquares(-1, [], [], out), /^multiTensorSumSquares: 'count' must be a non-negative integer/)
      t.throws(() => N.nonfiniteFlag(buf(poisoned(d, 0)), out), /^nonfiniteFlag: tensor 'x' holds 0 elements/)
      if (dev.name === 'cuda') {
        const host = buf(f32Buffer(0, [1, 2, 3]))
        t.throws(call({ g: [g[0], host] }), /^multiTensorAdamw: tensors on different devices: 'params\[0\]' is on cuda, 'grads\[1\]' is on cpu/)
      }
    })

    t.equal(N.memoryStats().liveBuffers, liveBefore, 'every buffer the tests made was freed')
    report(t)
  })
}
