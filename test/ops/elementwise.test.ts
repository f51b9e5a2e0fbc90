// Elementwise helpers and reductions, what the backend table
// (cases/elementwise.ts: random inputs against float64) does not cover: fill
// and axpby edge cases, exact sums of 2^25 ones, thread-count independence,
// casts (round to nearest even, checked bit by bit against a value model),
// and bad input.
import t from 'tap'
import { native, DTYPE_CODE, type NativeBuffer } from '../../lib/native.js'
import { devicesUnderTest } from '../helpers/devices.js'
import {
  randomArray, rng, f32Buffer, i32Buffer, poisoned, readF64,
} from '../helpers/reference.js'
import { track, errorSummary } from '../helpers/checks.js'

const N = native()
const { close, report } = errorSummary()

// ---- small harness ----------------------------------------------------------------

function u16Buffer(device: number, dtype: number, bits: ArrayLike<number>): NativeBuffer {
  const b = new (N.NativeBuffer)(device, dtype, bits.length)
  b.write(Uint16Array.from(bits))
  return b
}

const fromBits = (u: number) => new Float32Array(Uint32Array.of(u).buffer)[0]

/**
 * Float64 model of rounding a float32 to a format with `mantissaBits` stored
 * bits, smallest normal exponent `minExp` and largest finite `maxFinite`, to
 * nearest even; beyond maxFinite after rounding: infinity. Independent of the
 * bit tricks in dtype.h, it works on values, not encodings.
 */
function roundTo(x: number, mantissaBits: number, minExp: number, maxFinite: number): number {
  if (!Number.isFinite(x) || x === 0) return x
  const a = Math.abs(x)
  let e = Math.floor(Math.log2(a))
  if (2 ** e > a) e--
  if (2 ** (e + 1) <= a) e++
  const ulp = 2 ** (Math.max(e, minExp) - mantissaBits)
  const q = a / ulp  // exact: a is a float32 and ulp a power of two
  const fl = Math.floor(q)
  const frac = q - fl
  const r = frac > 0.5 || (frac === 0.5 && fl % 2 === 1) ? fl + 1 : fl
  const v = r * ulp
  return Math.sign(x) * (v > maxFinite ? Infinity : v)
}
const roundHalf = (x: number) => roundTo(x, 10, -14, 65504)
const roundBf16 = (x: number) => roundTo(x, 7, -126, fromBits(0x7f7f0000))

/** float32 values spread over many binades, subnormal f16 range and overflow included. */
function wideValues(n: number, seed: number): number[] {
  const r = rng(seed)
  const out: number[] = []
  for (let i = 0; i < n; i++) {
    const sign = r() < 0.5 ? -1 : 1
    out.push(Math.fround(sign * 2 ** (-30 + 48 * r()) * (1 + r())))
  }
  return out
}

for (const dev of devicesUnderTest()) {
  t.test(`elementwise ops on ${dev.name}`, { skip: dev.skip ?? false }, async (t) => {
    const d = dev.code
    const liveBefore = N.memoryStats().liveBuffers

    await t.test('fill writes every element', async (t) => {
      const buf = track(t)
      for (const n of [1, 37, 100003]) {
        const x = buf(poisoned(d, n))
        N.fill(x, n, -2.5)
        t.ok(readF64(x).every((v) => v === -2.5), `n = ${n}`)
      }
      const x = buf(poisoned(d, 5))
      N.fill(x, 3, 1)
      t.same(Array.from(readF64(x)).slice(0, 3), [1, 1, 1])
      t.ok(readF64(x).slice(3).every(Number.isNaN), 'elements beyond n are untouched')
    })

    await t.test('axpby', async (t) => {
      const buf = track(t)
      for (const n of [1, 2664, 100003]) {
        const x = randomArray(n, 1 + n)
        const y0 = randomArray(n, 2 + n)
        const y = buf(f32Buffer(d, y0))
        N.axpby(n, 1.5, buf(f32Buffer(d, x)), -0.25, y)
        close(t, 'axpby', readF64(y), x.map((v, i) => 1.5 * v - 0.25 * y0[i]), 1e-6, 1e-7)
        const fresh = buf(poisoned(d, n))  // beta == 0: y is write-only, NaN must not leak through 0 * NaN
        N.axpby(n, 2, buf(f32Buffer(d, x)), 0, fresh)
        const got = readF64(fresh)
        t.ok(got.every((v, i) => v === 2 * x[i]), `axpby beta=0 over NaN is exactly 2x, n = ${n}`)
      }
      const same = buf(f32Buffer(d, [1, 2, 3]))
      N.axpby(3, 2, same, 1, same)
      t.same(Array.from(readF64(same)), [3, 6, 9], 'in place (x == y)')
    })

    await t.test('sum and sumSquares accumulate into out[0]', async (t) => {
      const buf = track(t)
      for (const n of [1, 37, 2664, 1000003]) {
        const x = randomArray(n, 9 + n, -1, 3)
        const xb = buf(f32Buffer(d, x))
        let s = 0.5
        let q = 0.5
        for (const v of x) {
          s += v
          q += v * v
        }
        const out = buf(f32Buffer(d, [0.5]))
        N.sum(n, xb, out)
        close(t, 'sum', readF64(out), [s], 2e-7, 0)
        const outSq = buf(f32Buffer(d, [0.5]))
        N.sumSquares(n, xb, outSq)
        close(t, 'sumSquares', readF64(outSq), [q], 2e-7, 0)
        N.sumSquares(n, xb, outSq)
        close(t, 'sumSquares twice', readF64(outSq), [2 * q - 0.5], 2e-7, 0)
      }
      const out = buf(f32Buffer(d, [4]))
      N.sum(0, buf(f32Buffer(d, [7])), out)
      t.same(Array.from(readF64(out)), [4], 'n = 0 adds nothing')
      // A float accumulator would stall once the total is 2^24 times the terms.
      const n = 1 << 25
      const ones = buf(new (N.NativeBuffer)(d, DTYPE_CODE.float32, n))
      N.fill(ones, n, 1)
      const big = buf(f32Buffer(d, [0]))
      N.sum(n, ones, big)
      t.equal(readF64(big)[0], n, 'summing 2^25 ones gives 2^25')
    })

    if (dev.name === 'cpu') {
      await t.test('reductions do not depend on the thread count', async (t) => {
        const buf = track(t)
        const n = 1000003
        const x = buf(f32Buffer(d, randomArray(n, 99, -1, 3)))
        const saved = N.getNumThreads()
        const results: number[][] = []
        for (const threads of [1, 2, 3]) {
          N.setNumThreads(threads)
          const s = buf(f32Buffer(d, [0]))
          const q = buf(f32Buffer(d, [0]))
          const rowsOut = buf(f32Buffer(d, new Float64Array(1000)))
          N.sum(n - 3, x, s)
          N.sumSquares(n, x, q)
          N.sumRows(1000, 1000, x, rowsOut)
          results.push([...readF64(s), ...readF64(q), ...readF64(rowsOut)])
        }
        N.setNumThreads(saved)
        t.same(results[1], results[0], '2 threads == 1 thread, bit for bit')
        t.same(results[2], results[0], '3 threads == 1 thread, bit for bit')
      })
    }

    await t.test('cast float32 -> float16 rounds to nearest even', async (t) => {
      const buf = track(t)
      // [input, expected f16 bits]
      const cases: Array<[number, number, string]> = [
        [1, 0x3c00, 'one'],
        [-2.5, 0xc100, 'exact negative'],
        [-0, 0x8000, 'negative zero keeps its sign'],
        [1 + 2 ** -11, 0x3c00, 'halfway, down to even'],
        [1 + 3 * 2 ** -11, 0x3c02, 'halfway, up to even'],
        [1 + 2 ** -11 + 2 ** -20, 0x3c01, 'just above halfway'],
        [Math.fround(1 / 3), 0x3555, '1/3'],
        [65504, 0x7bff, 'largest finite'],
        [65519.99609375, 0x7bff, 'just below the overflow threshold'],
        [65520, 0x7c00, 'halfway to 65536 rounds to even = overflow to inf'],
        [1e6, 0x7c00, 'overflow to +inf'],
        [-1e6, 0xfc00, 'overflow to -inf'],
        [Infinity, 0x7c00, '+inf'],
        [-Infinity, 0xfc00, '-inf'],
        [2 ** -14, 0x0400, 'smallest normal'],
        [1023 * 2 ** -24, 0x03ff, 'largest subnormal'],
        [1023.5 * 2 ** -24, 0x0400, 'halfway between largest subnormal and smallest normal'],
        [2 ** -24, 0x0001, 'smallest subnormal'],
        [2 ** -25, 0x0000, 'half the smallest subnormal rounds to even zero'],
        [3 * 2 ** -25, 0x0002, '1.5 subnormal ulps rounds to even 2'],
        [2 ** -25 + 2 ** -35, 0x0001, 'just above half the smallest subnormal'],
        [-(2 ** -30), 0x8000, 'underflow keeps the sign'],
      ]
      const src = buf(f32Buffer(d, cases.map((c) => c[0])))
      const dst = buf(new (N.NativeBuffer)(d, DTYPE_CODE.float16, cases.length))
      N.cast(cases.length, src, dst)
      const got = dst.read() as Uint16Array
      cases.forEach(([x, bits, what], i) => t.equal(got[i], bits, `${what}: ${x} -> 0x${bits.toString(16)}`))
      const nan = buf(new (N.NativeBuffer)(d, DTYPE_CODE.float16, 1))
      N.cast(1, buf(f32Buffer(d, [NaN])), nan)
      const h = (nan.read() as Uint16Array)[0]
      t.ok((h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0, `NaN stays NaN (0x${h.toString(16)})`)
    })

    await t.test('cast float16 -> float32 is exact', async (t) => {
      const buf = track(t)
      const cases: Array<[number, number]> = [
        [0x0001, 2 ** -24], [0x03ff, 1023 * 2 ** -24], [0x0400, 2 ** -14], [0x3555, 0.333251953125],
        [0x7bff, 65504], [0x7c00, Infinity], [0xfc00, -Infinity], [0x8000, -0], [0xc100, -2.5],
      ]
      const src = buf(u16Buffer(d, DTYPE_CODE.float16, cases.map((c) => c[0])))
      const dst = buf(poisoned(d, cases.length))
      N.cast(cases.length, src, dst)
      t.same(Array.from(readF64(dst)), cases.map((c) => c[1]))
      t.ok(Object.is(readF64(dst)[7], -0), '-0 keeps its sign')
      const nan = buf(poisoned(d, 1))
      N.cast(1, buf(u16Buffer(d, DTYPE_CODE.float16, [0x7e00])), nan)
      t.ok(Number.isNaN(readF64(nan)[0]), 'NaN')
    })

    await t.test('cast float32 <-> bfloat16', async (t) => {
      const buf = track(t)
      const cases: Array<[number, number, string]> = [
        [1, 0x3f80, 'one'],
        [1 + 2 ** -8, 0x3f80, 'halfway, down to even'],
        [1 + 3 * 2 ** -8, 0x3f82, 'halfway, up to even'],
        [1 + 2 ** -8 + 2 ** -20, 0x3f81, 'just above halfway'],
        [fromBits(0x7f7fffff), 0x7f80, 'largest float32 rounds up to inf'],
        [Infinity, 0x7f80, '+inf'],
        [-Infinity, 0xff80, '-inf'],
        [-0, 0x8000, '-0'],
        [2 ** -133, 0x0001, 'bfloat16 subnormal'],
        [2 ** -140, 0x0000, 'below half the smallest subnormal'],
      ]
      const src = buf(f32Buffer(d, cases.map((c) => c[0])))
      const dst = buf(new (N.NativeBuffer)(d, DTYPE_CODE.bfloat16, cases.length))
      N.cast(cases.length, src, dst)
      const got = dst.read() as Uint16Array
      cases.forEach(([x, bits, what], i) => t.equal(got[i], bits, `${what}: ${x} -> 0x${bits.toString(16)}`))
      const nan = buf(new (N.NativeBuffer)(d, DTYPE_CODE.bfloat16, 1))
      N.cast(1, buf(f32Buffer(d, [NaN])), nan)
      const h = (nan.read() as Uint16Array)[0]
      t.ok((h & 0x7f80) === 0x7f80 && (h & 0x7f) !== 0, `NaN stays NaN (0x${h.toString(16)})`)
      const back = buf(poisoned(d, 3))
      N.cast(3, buf(u16Buffer(d, DTYPE_CODE.bfloat16, [0x3f81, 0xc2f7, 0x0001])), back)
      t.same(Array.from(readF64(back)), [1 + 2 ** -7, -123.5, 2 ** -133], 'bfloat16 -> float32 is exact')
    })

    await t.test('round trips through float16 / bfloat16 match a value-level model', async (t) => {
      const buf = track(t)
      const values = wideValues(20000, 17)
      const src = buf(f32Buffer(d, values))
      for (const [dtype, model, name] of [
        [DTYPE_CODE.float16, roundHalf, 'float16'],
        [DTYPE_CODE.bfloat16, roundBf16, 'bfloat16'],
      ] as const) {
        const mid = buf(new (N.NativeBuffer)(d, dtype, values.length))
        const back = buf(poisoned(d, values.length))
        N.cast(values.length, src, mid)
        N.cast(values.length, mid, back)
        const got = readF64(back)
        const want = values.map(model)
        let bad = -1
        for (let i = 0; i < values.length && bad < 0; i++) if (!Object.is(got[i], want[i])) bad = i
        t.equal(bad, -1, bad < 0 ? `${name}: all ${values.length} values round as modelled` :
          `${name}: ${values[bad]} came back as ${got[bad]}, want ${want[bad]}`)
        // Values already representable survive unchanged.
        const exact = buf(poisoned(d, values.length))
        const mid2 = buf(new (N.NativeBuffer)(d, dtype, values.length))
        N.cast(values.length, back, mid2)
        N.cast(values.length, mid2, exact)
        t.same(Array.from(readF64(exact)), Array.from(got), `${name}: a second round trip changes nothing`)
      }
    })

    await t.test('cast int32 -> float32 and float32 -> float32', async (t) => {
      const buf = track(t)
      const ints = [0, -5, 16777216, 16777217, 16777219, 2147483647, -2147483648]
      const dst = buf(poisoned(d, ints.length))
      N.cast(ints.length, buf(i32Buffer(d, ints)), dst)
      t.same(Array.from(readF64(dst)), [0, -5, 16777216, 16777216, 16777220, 2147483648, -2147483648],
        'rounds to nearest even above 2^24')
      const x = randomArray(37, 3)
      const copy = buf(poisoned(d, 37))
      N.cast(37, buf(f32Buffer(d, x)), copy)
      t.same(Array.from(readF64(copy)), Array.from(x))
    })

    await t.test('castSumRows is cast + sumRows bit for bit, from one read', async (t) => {
      const buf = track(t)
      // Shapes that stay on one thread, split columns between threads, and
      // cross the 256-column tiles; values with NaN, infinities, -0 and ties.
      for (const [rows, cols] of [[1, 1], [37, 72], [433, 384], [97, 1536], [5, 700], [0, 9]] as const) {
        const values = randomArray(rows * cols, rows * 31 + cols, -40, 40)
        if (values.length > 8) values.set([NaN, Infinity, -Infinity, -0, 1 + 2 ** -8, 1 + 2 ** -11, 3e-41, 65520])
        const x = buf(f32Buffer(d, values))
        const start = randomArray(cols, cols + 7)
        for (const dtype of ['bfloat16', 'float16'] as const) {
          for (const write of [false, true]) {
            const wantHalf = buf(new (N.NativeBuffer)(d, DTYPE_CODE[dtype], Math.max(1, rows * cols)))
            const wantSums = buf(f32Buffer(d, start))
            N.cast(rows * cols, x, wantHalf)
            N.sumRows(rows, cols, x, wantSums, write)
            const gotHalf = buf(new (N.NativeBuffer)(d, DTYPE_CODE[dtype], Math.max(1, rows * cols)))
            const gotSums = buf(f32Buffer(d, start))
            N.castSumRows(rows, cols, x, gotHalf, gotSums, write)
            const label = `${rows}x${cols} -> ${dtype}, sums ${write ? 'written' : 'added'}`
            t.same(Array.from(gotHalf.read() as Uint16Array).slice(0, rows * cols), Array.from(wantHalf.read() as Uint16Array).slice(0, rows * cols), `${label}: the cast's bits`)
            t.same(Array.from(new Uint32Array((gotSums.read() as Float32Array).buffer)), Array.from(new Uint32Array((wantSums.read() as Float32Array).buffer)), `${label}: sumRows' bits`)
          }
        }
      }
      const x = buf(f32Buffer(d, [1, 2, 3, 4]))
      const sums = buf(f32Buffer(d, [0, 0]))
      const h = buf(new (N.NativeBuffer)(d, DTYPE_CODE.bfloat16, 4))
      t.throws(() => N.castSumRows(2, 2, x, buf(f32Buffer(d, [0, 0, 0, 0])), sums), /^castSumRows: 'dst' must be float16 or bfloat16, got float32/)
      t.throws(() => N.castSumRows(2, 3, x, h, sums), /^castSumRows: tensor 'x' holds 4 elements but shape \[2, 3\] needs 6/)
      t.throws(() => N.castSumRows(2, 2, x, h, buf(f32Buffer(d, [0]))), /^castSumRows: tensor 'sums' holds 1 elements? but shape \[2\] needs 2/)
      t.throws(() => N.castSumRows(2, 2, x, h, x), /^castSumRows: .*'sums'.*'x'/)
    })

    await t.test('bad input names the op', async (t) => {
      const buf = track(t)
      const x = buf(f32Buffer(d, [1, 2, 3]))
      const y = buf(f32Buffer(d, [1, 2, 3]))
      const ids = buf(i32Buffer(d, [1, 2, 3]))
      const empty = buf(poisoned(d, 0))
      t.throws(() => N.axpby(4, 1, x, 1, y), /^axpby: tensor 'x' holds 3 elements but shape \[4\] needs 4/)
      t.throws(() => N.mul(3, x, ids, y), /^mul: tensor 'b' has dtype int32, expected float32/)
      t.throws(() => N.sum(3, x, empty), /^sum: tensor 'out' holds 0 elements/)
      t.throws(() => N.sumRows(2, 2, x, y), /^sumRows: tensor 'x' holds 3 elements but shape \[2, 2\] needs 4/)
      t.throws(() => N.addBiasRows(1, 3, x, x), /^addBiasRows: output 'y' must not be the same buffer as input 'bias'/)
      const half = buf(new (N.NativeBuffer)(d, DTYPE_CODE.float16, 3))
      t.throws(() => N.cast(3, ids, half), /^cast: cannot cast int32 to float16/)
      t.throws(() => N.sliceRowsForward(1, 3, 1, 2, 2, x, y), /^sliceRowsForward: rows \[2, 4\) exceed the 3 rows/)
      const gone = f32Buffer(d, [1])
      gone.free()
      t.throws(() => N.fill(gone, 1, 0), /^fill: tensor 'x' was already freed/)
      t.throws(() => N.sumSquares(1, gone, y), /^sumSquares: tensor 'x' was already freed/)
    })

    t.equal(N.memoryStats().liveBuffers, liveBefore, 'every buffer the tests made was freed')
    report(t)
  })
}

