// AdamW writing autocast's bf16 weight copy in its update pass: the copy must
// hold exactly the bits the cast op gives the updated weight, the next region
// must reuse it instead of casting, and copies must go once autocast is no
// longer used.
import t from 'tap'
import {
  tensor, keep, tidy, AdamW, autocast, linear, sum, mul, memoryStats, type Tensor,
} from '../../lib/index.js'
import { castHalf, halfCopyToUpdate, releaseHalfWeights } from '../../lib/tensor/autocast.js'
import { native } from '../../lib/native.js'
import { randomArray } from '../helpers/reference.js'

const N = native()

function bits(x: Tensor): Uint16Array {
  return x.rawBuffer.read() as Uint16Array
}

t.test('multiTensorAdamw halves: the bf16 bits of the updated parameter, as the cast op rounds them', (t) => {
  // Sizes with vector tails; values that round up, down, to even, overflow to inf, NaN from the gradient.
  const sizes = [1, 15, 16, 17, 1000, 4099]
  for (const n of sizes) {
    const p0 = Float32Array.from(randomArray(n, n, -4, 4))
    const g0 = Float32Array.from(randomArray(n, n + 1, -1, 1))
    if (n > 10) {
      p0[3] = 3.3895314e38   // near the largest finite float: the bf16 copy overflows to inf
      p0[4] = 1e-40          // subnormal
      p0[5] = 1.00390625     // exactly halfway between two bf16 values
      g0[6] = NaN
    }
    const p = keep(tensor(p0)), g = keep(tensor(g0)), m = keep(tensor(new Float32Array(n))), v = keep(tensor(new Float32Array(n)))
    const half = castHalf(keep(tensor(new Float32Array(n))), 'bfloat16')
    for (let step = 1; step <= 2; step++) {
      N.multiTensorAdamw(1, [n], [p.buffer], [g.buffer], [m.buffer], [v.buffer], 1e-3, 0.9, 0.999, 1e-8, 0.01, [step], null, null, [half.buffer])
    }
    const want = castHalf(p, 'bfloat16')
    t.same(Array.from(bits(half)), Array.from(bits(want)), `n=${n}: the fused copy equals cast(updated param)`)
    for (const x of [p, g, m, v, half, want]) x.dispose()
  }
  const [p, g, m, v] = [0, 1, 2, 3].map(() => keep(tensor(new Float32Array(4))))
  const f16 = castHalf(p, 'float16')
  t.throws(() => N.multiTensorAdamw(1, [4], [p.buffer], [g.buffer], [m.buffer], [v.buffer], 1e-3, 0.9, 0.999, 1e-8, 0, [1], null, null, [f16.buffer]),
    /halves\[0\]' has dtype float16, expected bfloat16/)
  for (const x of [p, g, m, v, f16]) x.dispose()
  t.end()
})

t.test('the next autocast region reuses the copy AdamW wrote; no autocast: the copies are freed', (t) => {
  const w = keep(tensor(Float32Array.from(randomArray(64 * 48, 7, -0.5, 0.5)), { shape: [64, 48], requiresGrad: true }))
  const b = keep(tensor(Float32Array.from(randomArray(64, 8)), { requiresGrad: true }))
  const x = keep(tensor(Float32Array.from(randomArray(5 * 48, 9)), { shape: [5, 48] }))
  const opt = new AdamW([w, b], { lr: 1e-2 })
  const casts: Array<{ n: number; src: unknown }> = []
  const cast = N.cast
  N.cast = (n, src, dst) => { casts.push({ n, src }); return cast(n, src, dst) }
  try {
    const liveBefore = memoryStats().liveBuffers
    const step = (half: boolean) => tidy(() => {
      autocast(half ? 'bfloat16' : null, () => {
        const y = linear(x, w, b)
        sum(mul(y, y)).backward()
      })
      opt.step()
      opt.zeroGrad()
    })
    step(true)
    const weightCasts = () => casts.filter((c) => c.n === w.numel).length
    t.equal(weightCasts(), 1, 'the first region casts the weight')
    for (let i = 0; i < 3; i++) step(true)
    t.equal(weightCasts(), 1, 'later regions reuse the copy AdamW rewrote: no more weight casts')
    // The copy the region reads is the cast of the current weight, bit for bit.
    tidy(() => autocast('bfloat16', () => { linear(x, w, b) }))
    t.equal(weightCasts(), 1)
    const copy = halfCopyToUpdate(w, w.version)!
    t.ok(copy, 'a copy is kept between regions')
    const want = castHalf(w, 'bfloat16')
    t.same(Array.from(copy.read() as Uint16Array), Array.from(bits(want)), 'kept copy == cast(weight)')
    want.dispose()
    // Two steps without autocast: nobody reads the copies, so they are freed.
    step(false)
    step(false)
    t.equal(halfCopyToUpdate(w, w.version), null, 'the copy is gone')
    t.equal(memoryStats().liveBuffers - liveBefore, 4, 'only the two moments of each parameter remain')
  } finally {
    N.cast = cast
    opt.dispose()
    releaseHalfWeights()
    for (const p of [w, b, x]) p.dispose()
  }
  t.end()
})

t.test('a copy still held by a recorded graph is not rewritten', (t) => {
  const w = keep(tensor(Float32Array.from(randomArray(32 * 16, 11, -0.5, 0.5)), { shape: [32, 16], requiresGrad: true }))
  const x = keep(tensor(Float32Array.from(randomArray(3 * 16, 12)), { shape: [3, 16], requiresGrad: true }))
  const y = autocast('bfloat16', () => linear(x, w))  // the graph saves the weight's bf16 copy (for x's gradient)
  t.equal(halfCopyToUpdate(w, w.version), null, 'shared with the node: not offered to the optimizer')
  y.dispose()
  releaseHalfWeights()
  for (const p of [w, x]) p.dispose()
  t.end()
})
