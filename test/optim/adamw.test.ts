// The AdamW class and global-norm clipping against torch's formulas in float64.
import t from 'tap'
import { tensor, keep, full, AdamW, clipGradNorm, type Tensor } from '../../lib/index.js'
import { native } from '../../lib/native.js'
import { randomArray, compare } from '../helpers/reference.js'

function leaf(values: Float64Array): Tensor {
  return keep(tensor(Float32Array.from(values), { requiresGrad: true }))
}

function setGrad(p: Tensor, values: Float64Array): void {
  if (p.grad) p.grad.dispose()
  p.grad = keep(tensor(Float32Array.from(values)))
}

/** torch.optim.AdamW single-tensor step in float64, on float32-rounded inputs. */
function referenceAdamW(p: number[], grads: number[][], lr: number, b1: number, b2: number, eps: number, wd: number, scales: number[]): number[] {
  const m = p.map(() => 0), v = p.map(() => 0)
  let x = [...p]
  grads.forEach((g0, s) => {
    const step = s + 1
    const g = g0.map((gi) => gi * scales[s])
    x = x.map((xi) => xi * (1 - lr * wd))
    for (let i = 0; i < x.length; i++) {
      m[i] = b1 * m[i] + (1 - b1) * g[i]
      v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i]
      const bc1 = 1 - b1 ** step, bc2 = 1 - b2 ** step
      const denom = Math.sqrt(v[i]) / Math.sqrt(bc2) + eps
      x[i] -= (lr / bc1) * (m[i] / denom)
    }
  })
  return x
}

t.test('AdamW over several steps with groups, decay only where asked, clipping on the device', (t) => {
  const w0 = randomArray(7, 1), b0 = randomArray(3, 2)
  const w = leaf(w0), b = leaf(b0)
  const frozen = leaf(randomArray(4, 3))
  const opt = new AdamW([{ params: [w], weightDecay: 0.01 }, { params: [b, frozen], weightDecay: 0 }], { lr: 1e-2 })
  const gradsW: number[][] = [], gradsB: number[][] = [], scales: number[] = []
  const maxNorm = 0.5
  for (let step = 0; step < 5; step++) {
    const gw = randomArray(7, 10 + step, -2, 2), gb = randomArray(3, 20 + step, -2, 2)
    setGrad(w, gw)
    setGrad(b, gb)
    gradsW.push(Array.from(gw))
    gradsB.push(Array.from(gb))
    const norm = Math.sqrt([...gw, ...gb].reduce((s, g) => s + g * g, 0))
    scales.push(Math.min(1, maxNorm / (norm + 1e-6)))
    const clip = clipGradNorm([w, b, frozen], maxNorm)
    t.ok(Math.abs(clip.totalNorm() - norm) < 1e-5 * norm, `step ${step}: total norm ${clip.totalNorm()} vs ${norm}`)
    opt.step({ gradScale: clip.coefficient })
    clip.coefficient.dispose()
    clip.sumOfSquares.dispose()
  }
  const wantW = referenceAdamW(Array.from(w0), gradsW, 1e-2, 0.9, 0.999, 1e-8, 0.01, scales)
  const wantB = referenceAdamW(Array.from(b0), gradsB, 1e-2, 0.9, 0.999, 1e-8, 0, scales)
  const cw = compare(w.toArray(), wantW, 1e-5, 1e-7)
  const cb = compare(b.toArray(), wantB, 1e-5, 1e-7)
  t.ok(cw.ok, `weights: ${cw.message}`)
  t.ok(cb.ok, `biases: ${cb.message}`)
  t.equal(opt.stateSize, 2, 'a parameter that never had a gradient has no optimizer state')
  t.equal(opt.stateOf(frozen), undefined)
  t.equal(opt.stateOf(w)!.step, 5)
  opt.zeroGrad()
  t.equal(w.grad, null, 'zeroGrad drops gradients')
  opt.dispose()
  for (const p of [w, b, frozen]) p.dispose()
  t.end()
})

t.test('AdamW rejects bad hyperparameters with clear messages', (t) => {
  const p = leaf(randomArray(2, 4))
  t.throws(() => new AdamW([p], { lr: -1 }), /AdamW: lr must be >= 0/)
  t.throws(() => new AdamW([p], { betas: [0.9, 1] }), /betas\[1\] must be in \[0, 1\)/)
  t.throws(() => new AdamW([{ params: [p] }, { params: [p] }]), /appears in more than one group/)
  t.throws(() => clipGradNorm([p], 0), /maxNorm must be positive/)
  p.dispose()
  t.end()
})

t.test('AdamW.step (one multi-tensor op per group) equals adamwStep per tensor bit for bit', (t) => {
  // Mixed sizes, two groups with their own lr and weight decay, a gradient
  // scale, a parameter whose state starts late and one restored at a later
  // step (setState), so one call carries several step numbers.
  const N = native()
  const sizes = [[1000, 1, 7, 0, 4099], [7, 1000, 3]]
  const hyper = [{ lr: 1e-3, weightDecay: 0.01 }, { lr: 3e-4, weightDecay: 0 }]
  const params = sizes.map((g, gi) => g.map((n, i) => leaf(randomArray(n, 40 + 10 * gi + i))))
  const opt = new AdamW(params.map((ps, gi) => ({ params: ps, ...hyper[gi] })), { betas: [0.9, 0.98] })
  // The per-tensor replay: its own copies of the parameters and moments.
  const copies = params.flat().map((p) => ({ p: keep(tensor(p.toArray())), m: keep(tensor(new Float32Array(p.numel))), v: keep(tensor(new Float32Array(p.numel))), step: 0 }))
  const restoredM = randomArray(7, 90, -0.01, 0.01), restoredV = randomArray(7, 91, 0, 1e-4)
  opt.setState(params[1][0], 10, Float32Array.from(restoredM), Float32Array.from(restoredV))
  const c7 = copies[sizes[0].length]
  c7.step = 10
  c7.m.buffer.write(Float32Array.from(restoredM))
  c7.v.buffer.write(Float32Array.from(restoredV))
  for (let s = 0; s < 4; s++) {
    const scale = keep(full([], 0.5 + 0.1 * s))
    let k = 0
    for (const [gi, ps] of params.entries()) {
      for (const [i, p] of ps.entries()) {
        const c = copies[k++]
        if (gi === 0 && i === 1 && s < 2) continue  // no gradient yet
        const g = randomArray(p.numel, 200 + 10 * s + k, -1, 1)
        setGrad(p, g)
        c.step++
        N.adamwStep(p.numel, hyper[gi].lr, 0.9, 0.98, 1e-8, hyper[gi].weightDecay, c.step, scale.buffer, p.grad!.buffer, c.p.buffer, c.m.buffer, c.v.buffer)
      }
    }
    opt.step({ gradScale: scale })
    opt.zeroGrad()
    scale.dispose()
  }
  let k = 0
  for (const ps of params) {
    for (const p of ps) {
      const c = copies[k++]
      const st = opt.stateOf(p)!
      t.equal(st.step, c.step, `tensor ${k - 1}: step ${c.step}`)
      const same = (a: number[], b: number[]) => a.length === b.length && a.every((x, j) => Object.is(x, b[j]))
      t.ok(same(p.toArray(), c.p.toArray()), `tensor ${k - 1} (${p.numel}): parameter bit-identical`)
      t.ok(same(st.expAvg.toArray(), c.m.toArray()) && same(st.expAvgSq.toArray(), c.v.toArray()), `tensor ${k - 1}: moments bit-identical`)
      c.p.dispose(); c.m.dispose(); c.v.dispose()
    }
  }
  opt.dispose()
  for (const p of params.flat()) p.dispose()
  t.end()
})
