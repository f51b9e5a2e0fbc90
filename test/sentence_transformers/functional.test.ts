// The differentiable pieces of sentence-transformers' heads and loss:
// forward against direct formulas, backward against central differences.
import t from 'tap'
import { tensor, tidy, sum, mul, type Tensor } from '../../lib/tensor/index.js'
import { pool, concatFeatures, normalize, cosineSimilarity, mseLoss, type PoolingMode } from '../../lib/sentence_transformers/functional.js'

function rand(n: number, seed: number): Float32Array {
  let s = seed >>> 0
  return Float32Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0
    return s / 2 ** 32 - 0.5
  })
}

/** d(Σ w·f(x))/dx by autograd and by central differences (in float64 on the float32 op). */
function gradCheck(t: tap.Test, label: string, x: Float32Array, shape: number[], f: (x: Tensor) => Tensor, tol = 2e-2): void {
  const outShape = tidy(() => f(tensor(x, { shape })).shape)
  const w = rand(outShape.reduce((a, b) => a * b, 1), 99)
  const objective = (xt: Tensor) => {
    const y = f(xt)
    return y.ndim === 0 ? y : sum(mul(y, tensor(w, { shape: y.shape })))
  }
  const analytic = tidy(() => {
    const xt = tensor(x, { shape, requiresGrad: true })
    objective(xt).backward()
    const g = xt.grad!.toFloat32Array()
    xt.dispose()
    return g
  })
  const h = 1e-3
  let maxErr = 0, maxRef = 0
  for (let i = 0; i < x.length; i++) {
    const at = (d: number) => tidy(() => {
      const xs = Float32Array.from(x)
      xs[i] += d
      return objective(tensor(xs, { shape })).item()
    })
    const numeric = (at(h) - at(-h)) / (2 * h)
    maxErr = Math.max(maxErr, Math.abs(numeric - analytic[i]))
    maxRef = Math.max(maxRef, Math.abs(numeric))
  }
  t.ok(maxErr <= tol * Math.max(maxRef, 1e-3), `${label}: max |autograd - finite difference| ${maxErr.toExponential(2)} (max |grad| ${maxRef.toExponential(2)})`)
}

t.test('pooling modes, forward', async (t) => {
  // batch 2, seq 4, dim 3; row 1 has two padding tokens.
  const h = rand(24, 1)
  const maskValues = Int32Array.from([1, 1, 1, 1, 1, 1, 0, 0])
  const at = (b: number, s: number, d: number) => h[(b * 4 + s) * 3 + d]
  const expect: Record<PoolingMode, (b: number, d: number) => number> = {
    cls: (b, d) => at(b, 0, d),
    max: (b, d) => Math.max(...[0, 1, 2, 3].filter((s) => maskValues[b * 4 + s]).map((s) => at(b, s, d))),
    mean: (b, d) => { const ss = [0, 1, 2, 3].filter((s) => maskValues[b * 4 + s]); return ss.reduce((a, s) => a + at(b, s, d), 0) / ss.length },
    mean_sqrt_len_tokens: (b, d) => { const ss = [0, 1, 2, 3].filter((s) => maskValues[b * 4 + s]); return ss.reduce((a, s) => a + at(b, s, d), 0) / Math.sqrt(ss.length) },
    weightedmean: (b, d) => { const ss = [0, 1, 2, 3].filter((s) => maskValues[b * 4 + s]); return ss.reduce((a, s) => a + (s + 1) * at(b, s, d), 0) / ss.reduce((a, s) => a + s + 1, 0) },
    lasttoken: (b, d) => at(b, b === 0 ? 3 : 1, d),
  }
  for (const [mode, f] of Object.entries(expect) as Array<[PoolingMode, (b: number, d: number) => number]>) {
    const got = tidy(() => pool(tensor(h, { shape: [2, 4, 3] }), tensor(maskValues, { shape: [2, 4], dtype: 'int32' }), [mode]).toFloat32Array())
    const want = [0, 1].flatMap((b) => [0, 1, 2].map((d) => f(b, d)))
    t.ok(Array.from(got).every((v, i) => Math.abs(v - want[i]) < 1e-6), `${mode}: ${Array.from(got).map((v) => v.toFixed(4))}`)
  }
  const both = tidy(() => pool(tensor(h, { shape: [2, 4, 3] }), tensor(maskValues, { shape: [2, 4], dtype: 'int32' }), ['cls', 'mean']).toFloat32Array())
  t.same(Array.from(both.subarray(0, 3)).map((v) => +v.toFixed(6)), [0, 1, 2].map((d) => +expect.cls(0, d).toFixed(6)), 'concatenated in the given order: cls first')
  t.throws(() => pool(tensor(h, { shape: [2, 4, 3] }), tensor(maskValues, { shape: [4, 2], dtype: 'int32' }), ['mean']), /mask \[4, 2\] must be \[2, 4\]/)
  t.throws(() => pool(tensor(h, { shape: [2, 4, 3] }), tensor(maskValues, { shape: [2, 4], dtype: 'int32' }), ['median' as PoolingMode]), /unknown pooling mode "median"/)
})

t.test('backward of pooling, concatenation, normalize, cosine similarity and MSE', async (t) => {
  const mask = Int32Array.from([1, 1, 1, 0, 1, 1, 1, 1])
  for (const mode of ['cls', 'mean', 'mean_sqrt_len_tokens', 'weightedmean', 'lasttoken', 'max'] as PoolingMode[]) {
    gradCheck(t, `pool ${mode}`, rand(24, 2), [2, 4, 3], (x) => pool(x, tensor(mask, { shape: [2, 4], dtype: 'int32' }), [mode]))
  }
  gradCheck(t, 'pool cls+max+mean', rand(24, 3), [2, 4, 3], (x) => pool(x, tensor(mask, { shape: [2, 4], dtype: 'int32' }), ['cls', 'max', 'mean']))
  gradCheck(t, 'concatFeatures', rand(6, 4), [2, 3], (x) => concatFeatures([x, x]))
  gradCheck(t, 'normalize', rand(12, 5), [3, 4], (x) => normalize(x))
  const other = rand(12, 6)
  gradCheck(t, 'cosineSimilarity (a)', rand(12, 7), [3, 4], (x) => cosineSimilarity(x, tensor(other, { shape: [3, 4] })))
  gradCheck(t, 'cosineSimilarity (b)', rand(12, 8), [3, 4], (x) => cosineSimilarity(tensor(other, { shape: [3, 4] }), x))
  gradCheck(t, 'cosineSimilarity (a, a)', rand(12, 9), [3, 4], (x) => cosineSimilarity(x, x))
  gradCheck(t, 'mseLoss', rand(5, 10), [5], (x) => mseLoss(x, [1, 0, 1, 0, 0.5]))
})

t.test('forward values', async (t) => {
  const a = Float32Array.of(3, 4, 0, 0), b = Float32Array.of(4, 3, 0, 1)
  t.same(Array.from(tidy(() => normalize(tensor(a, { shape: [2, 2] })).toFloat32Array())).map((v) => +v.toFixed(6)), [0.6, 0.8, 0, 0], 'a zero row stays zero (eps)')
  const cos = tidy(() => cosineSimilarity(tensor(a, { shape: [2, 2] }), tensor(b, { shape: [2, 2] })).toFloat32Array())
  t.ok(Math.abs(cos[0] - 24 / 25) < 1e-6 && cos[1] === 0, `cos ${Array.from(cos)}`)
  t.ok(Math.abs(tidy(() => mseLoss(tensor([1, 2, 3]), [1, 1, 1]).item()) - 5 / 3) < 1e-6)
  t.throws(() => mseLoss(tensor([1, 2]), [1]), /target has 1 values for input \[2\]/)
  t.throws(() => cosineSimilarity(tensor(a, { shape: [2, 2] }), tensor(a, { shape: [1, 4] })), /a \[2, 2\] and b \[1, 4\] differ/)
})
