// Cases of gemm and gemmMixed, and the float64 reference their tests share
// (gemm.test.ts, gemm_mixed.test.ts): a layout of batched, strided, possibly
// transposed products, the product C must become, and its error scale.
import { native } from '../../../lib/native.js'
import { randomArray, rng } from '../../helpers/reference.js'
import { lazy, type OpCase } from '../backend_ops.js'

const N = () => native()

export interface GemmLayout {
  ta: boolean
  tb: boolean
  m: number
  n: number
  k: number
  alpha: number
  beta: number
  batch: number
  /** Extra elements between consecutive matrices of the batch (0 = packed). */
  gapA: number
  gapB: number
  gapC: number
  /** Every batch item reads the same B (strideB = 0), as a shared weight does. */
  sharedB?: boolean
}

// A value no kernel computes by accident: C's gaps must still hold it after.
export const SENTINEL = 7.5

export function gemmStrides(c: GemmLayout): { sa: number; sb: number; sc: number } {
  return { sa: c.m * c.k + c.gapA, sb: c.sharedB ? 0 : c.k * c.n + c.gapB, sc: c.m * c.n + c.gapC }
}

/** Elements a batch of matrices spans. */
export function gemmExtent(batch: number, stride: number, size: number): number {
  return Math.max(1, (batch - 1) * stride + size)
}

/** C as the product must leave it, in float64, and the error scale sum |a*b| + |beta*C0| per element. */
export function gemmReference(c: GemmLayout, A: ArrayLike<number>, B: ArrayLike<number>, C0: ArrayLike<number>) {
  const { sa, sb, sc } = gemmStrides(c)
  const values = Float64Array.from(C0)
  const scale = new Float64Array(C0.length)
  for (let bi = 0; bi < c.batch; bi++) {
    for (let i = 0; i < c.m; i++) {
      for (let j = 0; j < c.n; j++) {
        let acc = 0
        let abs = 0
        for (let q = 0; q < c.k; q++) {
          const a = c.ta ? A[bi * sa + q * c.m + i] : A[bi * sa + i * c.k + q]
          const b = c.tb ? B[bi * sb + j * c.k + q] : B[bi * sb + q * c.n + j]
          acc += a * b
          abs += Math.abs(a * b)
        }
        const at = bi * sc + i * c.n + j
        values[at] = c.alpha * acc + (c.beta === 0 ? 0 : c.beta * C0[at])
        scale[at] = Math.abs(c.alpha) * abs + (c.beta === 0 ? 0 : Math.abs(c.beta * C0[at]))
      }
    }
  }
  return { values, scale }
}

/** Initial C: random in the matrices (NaN when beta == 0: must be ignored), SENTINEL in the gaps. */
export function initialC(c: GemmLayout, seed: number): Float64Array {
  const { sc } = gemmStrides(c)
  const len = gemmExtent(c.batch, sc, c.m * c.n)
  const values = randomArray(len, seed)
  for (let x = 0; x < len; x++) {
    const inMatrix = sc > 0 && x % sc < c.m * c.n && x < (c.batch - 1) * sc + c.m * c.n
    values[x] = inMatrix ? (c.beta === 0 ? NaN : values[x]) : SENTINEL
  }
  return values
}

export function describeGemm(c: GemmLayout): string {
  const op = `${c.ta ? 'T' : 'N'}${c.tb ? 'T' : 'N'}`
  const batch = c.batch > 1 ? ` batch ${c.batch}${c.sharedB ? ' (shared B)' : ''}` : ''
  return `${op} m=${c.m} n=${c.n} k=${c.k} alpha=${c.alpha} beta=${c.beta}${batch}`
}

export type Half = 'float16' | 'bfloat16'

const f32 = new Float32Array(1)
const u32 = new Uint32Array(f32.buffer)

/** Bits of a float16-representable value (normal or zero; |x| < 65504). */
export function halfBits(x: number): number {
  if (x === 0) return Object.is(x, -0) ? 0x8000 : 0
  const sign = x < 0 ? 0x8000 : 0
  const a = Math.abs(x)
  let e = Math.floor(Math.log2(a))
  if (2 ** e > a) e -= 1
  if (2 ** (e + 1) <= a) e += 1
  const mantissa = (a / 2 ** e - 1) * 1024
  if (e < -14 || e > 15 || mantissa !== Math.floor(mantissa)) throw new Error(`${x} is not a normal float16`)
  return sign | ((e + 15) << 10) | mantissa
}

/**
 * n values exactly representable in the dtype, as numbers and as raw bits:
 * every product of two is exact in float32, so what is left to check of a
 * mixed product is float32 accumulation.
 */
export function halfValues(n: number, dtype: Half, seed: number): { values: Float64Array; bits: Uint16Array } {
  const r = rng(seed)
  const values = new Float64Array(n)
  const bits = new Uint16Array(n)
  for (let i = 0; i < n; i++) {
    if (dtype === 'float16') {
      // Multiples of 2^-11 in [-1, 1], scaled by a power of two: all exact in float16.
      const v = (Math.floor(r() * 4097) - 2048) / 2048 * 2 ** (Math.floor(r() * 5) - 2)
      values[i] = v
      bits[i] = halfBits(v)
    } else {
      // A float32 with its low 16 bits cleared is a bfloat16.
      f32[0] = (r() * 2 - 1) * 2 ** (Math.floor(r() * 9) - 4)
      u32[0] &= 0xffff0000
      values[i] = f32[0]
      bits[i] = u32[0] >>> 16
    }
  }
  return { values, bits }
}

function layout(m: number, n: number, k: number, ta: boolean, tb: boolean, extra: Partial<GemmLayout> = {}): GemmLayout {
  return { ta, tb, m, n, k, alpha: 1, beta: 0, batch: 1, gapA: 0, gapB: 0, gapC: 0, ...extra }
}

const TRANSPOSES: Array<[boolean, boolean]> = [[false, false], [false, true], [true, false], [true, true]]

export function gemmCases(): OpCase[] {
  const cases: OpCase[] = []
  let seed = 4000
  const add = (c: GemmLayout, size: OpCase['size'], exact = false) => {
    const { sa, sb, sc } = gemmStrides(c)
    const s = (seed += 3)
    const data = lazy(() => ({
      A: randomArray(gemmExtent(c.batch, sa, c.m * c.k), s), B: randomArray(gemmExtent(c.batch, sb, c.k * c.n), s + 1), C0: initialC(c, s + 2),
    }))
    cases.push({
      op: 'gemm', label: describeGemm(c) + (c.k === 0 ? ' (k = 0)' : ''), size,
      setup: (io) => {
        const a = io.f32(data().A), b = io.f32(data().B), cb = io.f32(data().C0)
        return { call: () => N().gemm(c.ta, c.tb, c.m, c.n, c.k, c.alpha, a, b, c.beta, cb, c.batch, sa, sb, sc), outputs: { c: cb } }
      },
      reference: size === 'big' ? undefined : () => ({ c: gemmReference(c, data().A, data().B, data().C0) }),
      // fp32 without TF32: error relative to sum |a*b| is a few ulps; 1e-5 is the design's bound.
      tolerance: exact ? 'bits' : { rtol: 1e-5, atol: 1e-30 },
      parity: exact ? 'bits' : 1e-5,
    })
  }
  for (const [ta, tb] of TRANSPOSES) {
    for (const [m, n, k, size] of [[37, 45, 29, 'quick'], [1, 7, 37, 'quick'], [1, 1, 1, 'full'], [1, 1023, 7, 'full'],
      [1023, 1, 7, 'full'], [72, 37, 200, 'full'], [13, 33, 1023, 'full']] as const) {
      for (const [alpha, beta] of [[1, 0], [-1.25, 0.5]]) add(layout(m, n, k, ta, tb, { alpha, beta }), size)
    }
    add(layout(13, 29, 23, ta, tb, { batch: 4, gapA: 5, gapB: 3, gapC: 7 }), 'quick')
    add(layout(17, 64, 64, ta, tb, { batch: 5, gapC: 16, sharedB: true, beta: 0.5 }), 'quick')
  }
  add(layout(5, 7, 0, false, false), 'quick', true)
  add(layout(5, 7, 0, false, false, { beta: -2, batch: 3, gapC: 4 }), 'quick', true)
  // The attention layout: many small products.
  add(layout(16, 16, 8, false, true, { batch: 48, alpha: 0.125 }), 'quick')
  // BERT-base shapes (tokens 1024 = batch 8 x 128): CUDA against the CPU only.
  for (const [m, n, k, ta, tb] of [[1024, 3072, 768, false, true], [1024, 768, 3072, false, false], [768, 3072, 1024, true, false]] as const) {
    add(layout(m, n, k, ta, tb), 'big')
  }

  // gemmMixed: half inputs exact in their dtype, float32 accumulation.
  for (const dtype of ['float16', 'bfloat16'] as const) {
    for (const [c, size] of [
      [layout(37, 45, 29, false, false), 'quick'], [layout(37, 45, 29, true, false, { beta: 0.5 }), 'quick'],
      [layout(13, 29, 23, false, true, { batch: 4, gapA: 5, gapB: 3, gapC: 7 }), 'quick'],
      [layout(13, 29, 23, true, true, { batch: 3, beta: -1 }), 'quick'], [layout(5, 7, 0, false, false, { batch: 2, gapC: 3, beta: 0.5 }), 'quick'],
      [layout(512, 3072, 768, false, true), 'big'], [layout(512, 768, 3072, false, false, { beta: 1 }), 'big'],
      [layout(768, 3072, 512, true, false, { beta: 1 }), 'big'],
    ] as Array<[GemmLayout, OpCase['size']]>) {
      const m = { ...c, alpha: 1.25 }
      const { sa, sb, sc } = gemmStrides(m)
      const s = (seed += 3)
      const data = lazy(() => ({
        A: halfValues(gemmExtent(m.batch, sa, m.m * m.k), dtype, s), B: halfValues(gemmExtent(m.batch, sb, m.k * m.n), dtype, s + 1),
        C0: initialC(m, s + 2),
      }))
      cases.push({
        op: 'gemmMixed', label: `${dtype} ${describeGemm(m)}`, size,
        setup: (io) => {
          const a = io.half(dtype, data().A.bits), b = io.half(dtype, data().B.bits), cb = io.f32(data().C0)
          return { call: () => N().gemmMixed(m.ta, m.tb, m.m, m.n, m.k, m.alpha, a, b, m.beta, cb, m.batch, sa, sb, sc), outputs: { c: cb } }
        },
        reference: size === 'big' ? undefined : () => ({ c: gemmReference(m, data().A.values, data().B.values, data().C0) }),
        // float32 accumulation of exact products (tensor cores may truncate partial sums).
        tolerance: { rtol: 2e-4, atol: 1e-30 },
        parity: 1e-2,
      })
    }
  }
  return cases
}
