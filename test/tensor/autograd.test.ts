// Autograd over the tape: accumulation, freezing, no-grad, lifetimes, and an
// end-to-end gradient check of a small BERT-like graph against finite differences.
import t from 'tap'
import {
  tensor, zeros, tidy, noGrad, keep, memoryStats, linear, gelu, layerNorm, embedding, attention,
  sliceRows, reshape, crossEntropy, add, mul, sum, mean, tanh, dropout, manualSeed, matmul, scale, type Tensor,
} from '../../lib/index.js'
import { randomArray, compare } from '../helpers/reference.js'

function param(shape: number[], seed: number, lo = -0.5, hi = 0.5): Tensor {
  const n = shape.reduce((a, b) => a * b, 1)
  return keep(tensor(Float32Array.from(randomArray(n, seed, lo, hi)), { shape, requiresGrad: true }))
}

t.test('gradients accumulate across two backward calls', (t) => {
  const x = tensor(Float32Array.from(randomArray(6, 1)), { shape: [3, 2] })
  const w = param([4, 2], 2)
  const b = param([4], 3)
  const run = () => tidy(() => { sum(linear(x, w, b)).backward() })
  run()
  const g1w = w.grad!.toArray()
  const g1b = b.grad!.toArray()
  // d sum(x Wᵀ + b) / dW[o, i] = sum over rows of x[r, i]; d/db[o] = rows.
  const xs = x.toArray()
  const colSum = [xs[0] + xs[2] + xs[4], xs[1] + xs[3] + xs[5]]
  t.ok(compare(g1w, [0, 1, 2, 3].flatMap(() => colSum), 1e-6, 1e-6).ok, 'dW matches the closed form')
  t.same(g1b, [3, 3, 3, 3], 'db = number of rows')
  run()
  t.ok(compare(w.grad!.toArray(), g1w.map((v) => 2 * v), 1e-6, 1e-7).ok, 'second backward adds the same again (+=)')
  t.same(b.grad!.toArray(), [6, 6, 6, 6])
  for (const p of [x, w, b]) p.dispose()
  t.end()
})

t.test('frozen parameters get no gradient and record no work', (t) => {
  const x = tensor(Float32Array.from(randomArray(6, 4)), { shape: [3, 2] })
  const frozen = param([4, 2], 5)
  frozen.requiresGrad = false
  const head = param([2, 4], 6)
  tidy(() => {
    const h = linear(x, frozen)
    t.equal(h.gradFn, null, 'an op whose inputs need no gradient records nothing')
    const out = linear(gelu(h), head)
    t.not(out.gradFn, null)
    sum(out).backward()
  })
  t.equal(frozen.grad, null, 'the frozen weight has no gradient')
  t.equal(x.grad, null, 'the input has no gradient')
  t.ok(head.grad, 'the trainable head has one')
  for (const p of [x, frozen, head]) p.dispose()
  t.end()
})

t.test('noGrad records nothing', (t) => {
  const w = param([3, 3], 7)
  const x = tensor(Float32Array.from(randomArray(6, 8)), { shape: [2, 3] })
  noGrad(() => tidy(() => {
    const y = linear(x, w)
    t.equal(y.gradFn, null)
    t.equal(y.requiresGrad, false)
  }))
  w.dispose()
  x.dispose()
  t.end()
})

t.test('a training step inside tidy leaves no native memory behind', (t) => {
  const w = param([8, 8], 9)
  const before = memoryStats().liveBuffers
  const loss = tidy(() => {
    const x = tensor(Float32Array.from(randomArray(32, 10)), { shape: [4, 8] })
    const labels = tensor(new Int32Array([0, 3, 7, 1]), { dtype: 'int32' })
    const l = crossEntropy(gelu(linear(x, w)), labels)
    l.backward()
    return l.item()
  })
  t.ok(Number.isFinite(loss))
  // Only the new leaf gradient remains.
  t.equal(memoryStats().liveBuffers, before + 1, 'everything but w.grad was freed')
  w.dispose()
  t.equal(memoryStats().liveBuffers, before - 1, 'disposing w frees its data and its grad')
  t.end()
})

t.test('a graph returned from tidy survives until backward', (t) => {
  const w = param([4, 4], 11)
  const x = tensor(Float32Array.from(randomArray(8, 12)), { shape: [2, 4] })
  const before = memoryStats().liveBuffers
  const loss = tidy(() => sum(tanh(linear(x, w))))
  t.ok(memoryStats().liveBuffers > before + 1, 'saved activations are still alive')
  loss.backward()
  loss.dispose()
  t.equal(memoryStats().liveBuffers, before + 1, 'after backward only w.grad remains')
  t.throws(() => loss.item(), /was disposed/, 'use after dispose is a clear error')
  w.dispose()
  x.dispose()
  t.end()
})

t.test('backward twice through a freed graph is an error unless retainGraph', (t) => {
  const w = param([2, 2], 13)
  const x = tensor([[1, 2], [3, 4]])
  tidy(() => {
    const l = sum(gelu(linear(x, w)))
    l.backward(undefined, { retainGraph: true })
    const once = w.grad!.toArray()
    l.backward()
    t.ok(compare(w.grad!.toArray(), once.map((v) => 2 * v), 1e-6, 1e-7).ok, 'retained graph runs again')
    t.throws(() => l.backward(), /already freed/, 'third time: the graph is gone')
  })
  w.dispose()
  x.dispose()
  t.end()
})

t.test('bad input names the op and the shapes', (t) => {
  tidy(() => {
    const a = zeros([2, 3])
    const w = zeros([4, 5])
    t.throws(() => linear(a, w), /linear: x \[2, 3\] does not match weight \[4, 5\]/)
    t.throws(() => add(a, zeros([3, 2])), /add: shapes differ: a \[2, 3\], b \[3, 2\]/)
    t.throws(() => matmul(a, zeros([2, 3])), /matmul: cannot multiply \[2, 3\] by \[2, 3\]/)
    t.throws(() => layerNorm(a, zeros([4]), zeros([4]), 1e-12), /layerNorm: weight \[4\] and bias \[4\] must have 3 elements/)
    t.throws(() => embedding(zeros([2]), zeros([5, 3])), /embedding: 'ids' must be int32, got float32/)
    t.throws(() => embedding(tensor(new Int32Array([1, 5])), zeros([5, 3])), /ids\[1\] = 5 is out of range \[0, 5\)/)
    t.throws(() => crossEntropy(zeros([2, 3]), tensor(new Int32Array([0, 3]))), /labels\[1\] = 3 is out of range \[0, 3\)/)
    t.throws(() => reshape(a, [4, 2]), /reshape: cannot reshape \[2, 3\]/)
    const q = zeros([1, 4, 6])
    t.throws(() => attention(q, q, q, tensor(new Int32Array(4), { shape: [1, 4] }), { heads: 4 }), /hidden size 6 is not a multiple of the number of heads \(4\)/)
    const d = zeros([2])
    d.dispose()
    t.throws(() => add(d, d), /add: 'a' \[2\] was disposed \(use after free\)/)
    t.throws(() => tensor([[1, 2], [3]]), /ragged/)
  })
  t.end()
})

// A small BERT-like graph in float32; its autograd gradients against central
// finite differences of the same float32 forward (step 1e-2, loose tolerance:
// this checks the wiring; each op's precision is checked in test/ops).
t.test('end-to-end gradients of a small encoder match finite differences', (t) => {
  manualSeed(0)
  const vocab = 11, hidden = 12, heads = 3, batch = 2, seq = 5, classes = 3
  const wordEmb = param([vocab, hidden], 20)
  const lnW = param([hidden], 21, 0.5, 1.5)
  const lnB = param([hidden], 22)
  const wq = param([hidden, hidden], 23), wk = param([hidden, hidden], 24), wv = param([hidden, hidden], 25)
  const w1 = param([hidden, hidden], 26), b1 = param([hidden], 27)
  const head = param([classes, hidden], 28), headB = param([classes], 29)
  const params = { wordEmb, lnW, lnB, wq, wk, wv, w1, b1, head, headB }
  const ids = keep(tensor(new Int32Array([1, 4, 2, 9, 0, 3, 3, 7, 0, 0]), { shape: [batch, seq] }))
  const mask = keep(tensor(new Int32Array([1, 1, 1, 1, 1, 1, 1, 1, 0, 0]), { shape: [batch, seq] }))
  const labels = keep(tensor(new Int32Array([2, 0])))

  const forward = (): Tensor => {
    const e = layerNorm(embedding(ids, wordEmb), lnW, lnB, 1e-12)
    const ctx = attention(linear(e, wq), linear(e, wk), linear(e, wv), mask, { heads })
    const h = layerNorm(gelu(linear(ctx, w1, b1)), lnW, lnB, 1e-12, e)
    const cls = reshape(sliceRows(h, 0, 1), [batch, hidden])
    return crossEntropy(linear(tanh(cls), head, headB), labels)
  }
  tidy(() => forward().backward())
  const h = 1e-2
  for (const [name, p] of Object.entries(params)) {
    const analytic = p.grad!.toArray()
    const values = p.toFloat32Array()
    const numeric: number[] = []
    const probe = Array.from({ length: Math.min(6, p.numel) }, (_, i) => Math.floor((i * p.numel) / Math.min(6, p.numel)))
    for (const i of probe) {
      const orig = values[i]
      values[i] = orig + h
      p.buffer.write(values)
      const fp = noGrad(() => tidy(() => forward().item()))
      values[i] = orig - h
      p.buffer.write(values)
      const fm = noGrad(() => tidy(() => forward().item()))
      values[i] = orig
      p.buffer.write(values)
      numeric.push((fp - fm) / (2 * h))
    }
    const c = compare(probe.map((i) => analytic[i]), numeric, 2e-2, 2e-4)
    t.ok(c.ok, `${name}: ${c.message}`)
  }
  for (const p of [...Object.values(params), ids, mask, labels]) p.dispose()
  t.end()
})

t.test('mul, scale, mean and dropout differentiate as expected', (t) => {
  manualSeed(1)
  const a = param([5], 30)
  const b = param([5], 31)
  tidy(() => mean(scale(mul(a, b), 3)).backward())
  t.ok(compare(a.grad!.toArray(), b.toArray().map((v) => (3 * v) / 5), 1e-6, 1e-7).ok, 'd/da = 3b/5')
  t.ok(compare(b.grad!.toArray(), a.toArray().map((v) => (3 * v) / 5), 1e-6, 1e-7).ok, 'd/db = 3a/5')
  const x = param([1000], 32)
  tidy(() => {
    const y = dropout(x, 0.25, true)
    sum(y).backward()
    const kept = y.toArray().filter((v) => v !== 0).length
    t.ok(kept > 650 && kept < 850, `about 75% kept (${kept})`)
    const g = x.grad!.toArray()
    t.ok(g.every((v) => v === 0 || Math.abs(v - 1 / 0.75) < 1e-6), 'gradient is 0 or 1/(1-p)')
    t.equal(g.filter((v) => v !== 0).length, kept, 'the gradient mask is the forward mask')
    t.equal(dropout(x, 0.25, false), x, 'identity when not training')
  })
  for (const p of [a, b, x]) p.dispose()
  t.end()
})
