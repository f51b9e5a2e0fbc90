// dropoutForward / dropoutBackward on every backend: the JavaScript Philox
// port against Random123's known answers (the backend table's dropout cases
// check the kernels' masks against it), keep rate, (seed, offset) semantics,
// accumulation, finite differences.
import { t } from 'tap'
import { native } from '../../lib/native.js'
import { devicesUnderTest } from '../helpers/devices.js'
import { dropoutMask, keepScale, philox4x32_10, philoxUniform } from '../helpers/philox.js'
import { compare, f32Buffer, poisoned, randomArray, readF64 } from '../helpers/reference.js'
import { track } from '../helpers/checks.js'

/** Index and values of the first element that differs bit for bit (NaN equals NaN), or 'none'. */
function firstDifference(actual: ArrayLike<number>, expected: ArrayLike<number>): string {
  if (actual.length !== expected.length) return `length ${actual.length} != ${expected.length}`
  for (let i = 0; i < actual.length; i++) {
    if (!Object.is(actual[i], expected[i]) && !(actual[i] === 0 && expected[i] === 0)) {
      return `[${i}]: got ${actual[i]}, want ${expected[i]}`
    }
  }
  return 'none'
}

const hex = (words: number[]) => words.map((w) => w.toString(16).padStart(8, '0')).join(' ')

t.test('JavaScript Philox4x32-10 reproduces Random123 known answers', async (t) => {
  // Random123's published kat_vectors for philox4x32_10.
  t.equal(hex(philox4x32_10(0, 0, 0, 0, 0, 0)), '6627e8d5 e169c58d bc57ac4c 9b00dbd8')
  t.equal(hex(philox4x32_10(0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff)),
    '408f276d 41c83b0e a20bc7c6 6d5451fd')
  t.equal(hex(philox4x32_10(0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344, 0xa4093822, 0x299f31d0)),
    'd16cfe09 94fdcceb 5001e420 24126ea1')
  const u = philoxUniform(1n, 0n, 0)
  t.ok(u >= 0 && u < 1 && Math.fround(u) === u, 'uniform draws are float32 values in [0, 1)')
})

for (const dev of devicesUnderTest()) {
  t.test(`dropout on ${dev.name}`, { skip: dev.skip ?? false }, async (t) => {
    const addon = native()
    const liveBefore = addon.memoryStats().liveBuffers
    const keep = track(t)
    const buf = (values: ArrayLike<number>) => keep(f32Buffer(dev.code, values))

    // A counter range that crosses 2^32, and a seed using both key words.
    const seed = 0x0123456789abcdefn
    const offset = 0xfffffff0n

    t.test('an element whose draw equals p exactly is kept (u >= p)', async (t) => {
      const n = 8
      const index = 5
      const p = philoxUniform(seed, offset, index)
      t.ok(p > 0, 'the draw is usable as p')
      const y = keep(poisoned(dev.code, n))
      addon.dropoutForward(n, p, seed, offset, buf(new Float64Array(n).fill(1)), y)
      t.equal(readF64(y)[index], keepScale(p), `element ${index} is kept`)
      t.equal(firstDifference(readF64(y), Float64Array.from(dropoutMask(n, p, seed, offset), (m) => m * keepScale(p))), 'none',
        'and the rest as predicted')
    })

    t.test('keep rate, reproducibility and offsets', async (t) => {
      const n = 100_000
      const ones = buf(new Float64Array(n).fill(1))
      const draw = (p: number, s: bigint, o: bigint): Float64Array => {
        const y = keep(poisoned(dev.code, n))
        addon.dropoutForward(n, p, s, o, ones, y)
        return readF64(y)
      }
      for (const p of [0.1, 0.5]) {
        const y = draw(p, 42n, 0n)
        const kept = y.reduce((acc, v) => acc + (v !== 0 ? 1 : 0), 0)
        const rate = kept / n
        const sigma = Math.sqrt(p * (1 - p) / n)
        t.ok(Math.abs(rate - (1 - p)) < 5 * sigma, `p=${p}: keep rate ${rate.toFixed(4)} within 5 sigma of ${1 - p}`)
        t.ok(y.every((v) => v === 0 || v === keepScale(p)), `p=${p}: kept ones are scaled by float32(1/(1-p))`)
      }
      const a = draw(0.3, 7n, 1000n)
      const b = draw(0.3, 7n, 1000n)
      t.same(Array.from(a), Array.from(b), 'same (seed, offset) gives the same mask')
      const fresh = draw(0.3, 7n, 1000n + BigInt(Math.ceil(n / 4)))
      const agree = a.reduce((acc, v, i) => acc + ((v !== 0) === (fresh[i] !== 0) ? 1 : 0), 0) / n
      // Independent masks agree on a fraction 0.7^2 + 0.3^2 = 0.58 of elements.
      t.ok(Math.abs(agree - 0.58) < 0.01, `offset advanced by ceil(n/4) gives an independent mask (agreement ${agree.toFixed(3)})`)
      const otherSeed = draw(0.3, 8n, 1000n)
      const agreeSeed = a.reduce((acc, v, i) => acc + ((v !== 0) === (otherSeed[i] !== 0) ? 1 : 0), 0) / n
      t.ok(Math.abs(agreeSeed - 0.58) < 0.01, `another seed gives an independent mask (agreement ${agreeSeed.toFixed(3)})`)
      // One offset step is one Philox block, i.e. four elements.
      const shifted = draw(0.3, 7n, 1001n)
      t.same(Array.from(shifted.subarray(0, n - 4)), Array.from(a.subarray(4)), 'offset + 1 shifts the mask by four elements')
    })

    t.test('the mask does not depend on the thread count', async (t) => {
      const n = 50_001
      const x = buf(randomArray(n, 5))
      const before = addon.getNumThreads()
      const run = (threads: number) => {
        addon.setNumThreads(threads)
        const y = keep(poisoned(dev.code, n))
        addon.dropoutForward(n, 0.25, 99n, 12345n, x, y)
        return Array.from(readF64(y))
      }
      try {
        t.same(run(1), run(3), '1 thread and 3 threads draw the same mask')
      } finally {
        addon.setNumThreads(before)
      }
    })

    t.test('p = 0 is an exact copy, and its backward adds dy', async (t) => {
      const n = 257
      const x = randomArray(n, 3)
      const y = keep(poisoned(dev.code, n))
      addon.dropoutForward(n, 0, seed, offset, buf(x), y)
      t.same(Array.from(readF64(y)), Array.from(x), 'y == x')
      const dy = randomArray(n, 4)
      const dx0 = randomArray(n, 5)
      const dx = buf(dx0)
      addon.dropoutBackward(n, 0, seed, offset, buf(dy), dx)
      const c = compare(readF64(dx), dx0.map((v, i) => v + dy[i]), 1e-6, 1e-7)
      t.ok(c.ok, `dx == dx0 + dy (${c.message})`)
    })

    t.test('backward accumulates dy * mask / (1 - p) and matches finite differences', async (t) => {
      const n = 1001
      const p = 0.2
      const x = randomArray(n, 21)
      const dy = randomArray(n, 22)
      const mask = dropoutMask(n, p, seed, offset)
      const scale = keepScale(p)
      // Finite differences of L(x) = sum(dy * dropout(x)) through the float64 reference.
      const loss = (xs: Float64Array) => xs.reduce((acc, v, i) => acc + dy[i] * v * (mask[i] ? scale : 0), 0)
      const probe = Float64Array.from(x)
      const fd = new Float64Array(n)
      const h = 1e-3
      for (let i = 0; i < n; i++) {
        probe[i] = x[i] + h
        const up = loss(probe)
        probe[i] = x[i] - h
        fd[i] = (up - loss(probe)) / (2 * h)
        probe[i] = x[i]
      }
      const dx = buf(new Float64Array(n))
      const dyb = buf(dy)
      addon.dropoutBackward(n, p, seed, offset, dyb, dx)
      const once = readF64(dx)
      const c = compare(once, fd, 1e-5, 1e-6)
      t.ok(c.ok, `dx matches finite differences (${c.message})`)
      addon.dropoutBackward(n, p, seed, offset, dyb, dx)
      const c2 = compare(readF64(dx), once.map((v) => 2 * v), 1e-6, 1e-7)
      t.ok(c2.ok, `a second call doubles dx (${c2.message})`)
      t.ok(once.some((v, i) => v === 0 && dy[i] !== 0), 'some gradients are dropped')
    })

    t.test('a dropped NaN stays NaN, as in torch (x * 0)', async (t) => {
      const n = 64
      const p = 0.5
      const mask = dropoutMask(n, p, 3n, 0n)
      const dropped = mask.indexOf(0)
      t.ok(dropped >= 0, 'the mask drops something')
      const x = new Float64Array(n).fill(1)
      x[dropped] = NaN
      const y = buf(new Float64Array(n))
      addon.dropoutForward(n, p, 3n, 0n, buf(x), y)
      const out = readF64(y)
      t.ok(Number.isNaN(out[dropped]), `y[${dropped}] is NaN`)
      t.equal(out.filter((v) => Number.isNaN(v)).length, 1, 'no other element is NaN')
    })

    t.test('p outside [0, 1) is refused', async (t) => {
      const x = buf([1, 2, 3])
      const y = buf([0, 0, 0])
      t.throws(() => addon.dropoutForward(3, 1, 0n, 0n, x, y), /dropoutForward: 'p' must be in \[0, 1\)/)
      t.throws(() => addon.dropoutBackward(3, -0.1, 0n, 0n, x, y), /dropoutBackward: 'p' must be in \[0, 1\)/)
    })

    t.test('every buffer is freed', async (t) => {
      keep.freeNow()
      t.equal(addon.memoryStats().liveBuffers, liveBefore)
    })
  })
}
