// gemmMixed (float16 / bfloat16 inputs, float32 accumulation and output) on
// every backend, against a float64 product of the same half-precision values.
// Inputs are drawn exactly representable in their dtype and encoded here, so
// the check does not lean on the cast op: every product of two such values is
// exact in float32, and what is left is float32 accumulation.
import t, { type Test } from 'tap'
import { native, DTYPE_CODE, type NativeBuffer } from '../../lib/native.js'
import { devicesUnderTest, type DeviceUnderTest } from '../helpers/devices.js'
import { f32Buffer, freeAll, randomArray, readF64 } from '../helpers/reference.js'
import { describeGemm, gemmExtent as extent, gemmReference, gemmStrides as strides, halfValues, initialC, SENTINEL, type GemmLayout, type Half } from './cases/gemm.js'

interface Case extends GemmLayout {
  dtype: Half
  seed: number
}

function describe(c: Case): string {
  return `${c.dtype} ${describeGemm(c)}`
}

function halfBuffer(device: number, dtype: Half, bits: Uint16Array): NativeBuffer {
  const b = new (native().NativeBuffer)(device, DTYPE_CODE[dtype], bits.length)
  b.write(bits)
  return b
}

function checkCase(t: Test, dev: DeviceUnderTest, c: Case): void {
  const { sa, sb, sc } = strides(c)
  const A = halfValues(extent(c.batch, sa, c.m * c.k), c.dtype, c.seed)
  const B = halfValues(extent(c.batch, sb, c.k * c.n), c.dtype, c.seed + 1)
  const C0 = initialC(c, c.seed + 3)
  const { values: want, scale } = gemmReference(c, A.values, B.values, C0)
  let a: NativeBuffer | null = null
  let b: NativeBuffer | null = null
  let cb: NativeBuffer | null = null
  try {
    a = halfBuffer(dev.code, c.dtype, A.bits)
    b = halfBuffer(dev.code, c.dtype, B.bits)
    cb = f32Buffer(dev.code, C0)
    native().gemmMixed(c.ta, c.tb, c.m, c.n, c.k, c.alpha, a, b, c.beta, cb, c.batch, sa, sb, sc)
    const got = readF64(cb)
    // float32 accumulation of exact products: error a few ulps of sum |a*b|
    // (tensor cores may truncate partial sums: a looser bound there). A layout
    // or transpose mistake is off by the order of the scale itself.
    const rtol = dev.name === 'cpu' ? 2e-5 : 2e-4
    let worst = 0
    let at = -1
    for (let x = 0; x < want.length; x++) {
      const err = Math.abs(got[x] - want[x])
      const ratio = Number.isNaN(err) ? Infinity : err / (rtol * scale[x] + 1e-30)
      if (ratio > worst || at < 0) { worst = ratio; at = x }
    }
    t.ok(worst <= 1, `${describe(c)}: worst at [${at}] got ${got[at]}, want ${want[at]} (${worst.toFixed(3)} of the bound)`)
  } finally {
    freeAll(a, b, cb)
  }
}

function base(dtype: Half, m: number, n: number, k: number, seed: number): Case {
  return { dtype, ta: false, tb: false, m, n, k, alpha: 1, beta: 0, batch: 1, gapA: 0, gapB: 0, gapC: 0, seed }
}

const TRANSPOSES: Array<[boolean, boolean]> = [[false, false], [false, true], [true, false], [true, true]]
// [96, 67, 128]: whole 32-row blocks and a depth of whole AMX tiles (A read in
// place, tiles stored straight into C when alpha is 1 and beta 0) beside edges.
// [200, 700, 256] and [70, 700, 1536]: large enough for several threads; with
// A read in place the columns are split between tasks, each packing its own
// slice of B (one panel per task, then several panels per task).
const SHAPES: Array<[number, number, number]> = [[1, 1, 1], [1, 7, 37], [7, 1, 37], [37, 72, 1], [13, 33, 17], [72, 37, 200], [25, 17, 1023], [96, 67, 128],
  [200, 700, 256], [70, 700, 1536]]
const DTYPES: Half[] = ['float16', 'bfloat16']

for (const dev of devicesUnderTest()) {
  t.test(`gemmMixed on ${dev.name}`, { skip: dev.skip ?? false }, async (t) => {
    const liveBefore = native().memoryStats().liveBuffers

    t.test('encoded inputs decode to the values the reference uses', async (t) => {
      // Through the addon's own cast on the CPU: an independent check of the encoders above.
      for (const dtype of DTYPES) {
        const { values, bits } = halfValues(2000, dtype, 11)
        const src = halfBuffer(0, dtype, bits)
        const dst = f32Buffer(0, new Float32Array(bits.length))
        try {
          native().cast(bits.length, src, dst)
          const got = readF64(dst)
          t.ok(got.every((v, i) => v === values[i]), `${dtype}: 2000 values round-trip exactly`)
        } finally {
          freeAll(src, dst)
        }
      }
    })

    t.test('every transpose, odd sizes', async (t) => {
      let seed = 100
      for (const dtype of DTYPES) {
        for (const [ta, tb] of TRANSPOSES) {
          for (const [m, n, k] of SHAPES) checkCase(t, dev, { ...base(dtype, m, n, k, seed++), ta, tb })
        }
      }
    })

    t.test('alpha and beta', async (t) => {
      let seed = 200
      for (const dtype of DTYPES) {
        for (const [ta, tb] of TRANSPOSES) {
          checkCase(t, dev, { ...base(dtype, 37, 45, 29, seed++), ta, tb, alpha: -1.25, beta: 0 })
          checkCase(t, dev, { ...base(dtype, 37, 45, 29, seed++), ta, tb, alpha: 0.5, beta: -0.75 })
          checkCase(t, dev, { ...base(dtype, 19, 40, 300, seed++), ta, tb, alpha: 1, beta: 1 })
        }
      }
    })

    t.test('batched, strided, empty', async (t) => {
      let seed = 300
      for (const dtype of DTYPES) {
        for (const [ta, tb] of TRANSPOSES) {
          checkCase(t, dev, { ...base(dtype, 13, 29, 23, seed++), ta, tb, batch: 4, gapA: 5, gapB: 3, gapC: 7 })
          checkCase(t, dev, { ...base(dtype, 17, 64, 64, seed++), ta, tb, batch: 5, gapC: 16, sharedB: true, beta: 0.5 })
        }
        // k == 0: C = beta * C (zeros when beta == 0, even over NaN).
        checkCase(t, dev, { ...base(dtype, 5, 7, 0, seed++), beta: 0 })
        checkCase(t, dev, { ...base(dtype, 5, 7, 0, seed++), beta: -2, batch: 3, gapC: 4 })
      }
    })

    t.test('bad input names the op', async (t) => {
      const g = native().gemmMixed
      const h16 = halfBuffer(dev.code, 'float16', new Uint16Array(12))
      const b16 = halfBuffer(dev.code, 'bfloat16', new Uint16Array(12))
      const c32 = f32Buffer(dev.code, new Float32Array(8))
      const a32 = f32Buffer(dev.code, new Float32Array(12))
      try {
        t.doesNotThrow(() => g(false, false, 2, 4, 3, 1, h16, h16, 0, c32, 1, 0, 0, 0), 'float16 x float16 -> float32 passes')
        t.doesNotThrow(() => g(false, false, 2, 4, 3, 1, b16, b16, 0, c32, 1, 0, 0, 0), 'bfloat16 x bfloat16 -> float32 passes')
        t.throws(() => g(false, false, 2, 4, 3, 1, h16, b16, 0, c32, 1, 0, 0, 0),
          /^gemmMixed: tensor 'b' has dtype bfloat16, expected float16/, 'mixed half dtypes')
        t.throws(() => g(false, false, 2, 4, 3, 1, a32, a32, 0, c32, 1, 0, 0, 0),
          /^gemmMixed: a and b are both float32: pass halfDtype/, 'float32 inputs without a half dtype')
        t.throws(() => g(false, false, 2, 4, 3, 1, b16, h16, 0, c32, 1, 0, 0, 0, DTYPE_CODE.float16),
          /^gemmMixed: halfDtype is float16 but the operands are bfloat16/, 'halfDtype against the operands')
        t.throws(() => g(false, false, 2, 4, 3, 1, b16, b16, 0, c32, 1, 0, 0, 0, DTYPE_CODE.float32),
          /^gemmMixed: halfDtype must be the code of float16 or bfloat16, got 0/, 'halfDtype float32')
        if (dev.name === 'cpu') {
          t.throws(() => g(false, false, 2, 4, 3, 1, a32, b16, 0, a32, 1, 0, 0, 0),
            /^gemmMixed: .*'c'.*'a'/, 'a float32 operand that is also the output')
        } else {
          t.throws(() => g(false, false, 2, 4, 3, 1, a32, b16, 0, c32, 1, 0, 0, 0),
            /^gemmMixed: float32 operands are read only on the CPU/, 'float32 operands off the CPU')
        }
        t.throws(() => g(false, false, 2, 4, 3, 1, h16, h16, 0, b16, 1, 0, 0, 0),
          /^gemmMixed: tensor 'c' has dtype bfloat16, expected float32/, 'half output')
        t.throws(() => g(false, false, 5, 4, 3, 1, h16, h16, 0, c32, 1, 0, 0, 0),
          /^gemmMixed: tensor 'a' holds 12 elements but shape batch 1 x \[5, 3\] needs 15/, 'a too small')
        t.throws(() => g(false, false, 2, 4, 3, 1, h16, h16, 0, c32, 2, 0, 0, 4),
          /^gemmMixed: strideC 4 makes output matrices overlap/, 'overlapping outputs')
        t.throws(() => (g as unknown as (...args: unknown[]) => void)(false, false, 2, 4, 3),
          /^gemmMixed: expected 14 to 17 arguments, got 5/, 'too few arguments')
      } finally {
        freeAll(h16, b16, c32, a32)
      }
    })

    // On the CPU a float32 operand is rounded to the half dtype as the product
    // packs it: the result must have the bits of the product of cast copies
    // (the addon's cast op), on every kernel path, layout and operand.
    // Values include rounding ties, carries into the exponent, infinities,
    // NaNs, float32 subnormals and values that round to bfloat16 subnormals.
    t.test('float32 operands: the bits of cast copies, every path', { skip: dev.name !== 'cpu' && 'CPU only' }, async (t) => {
      const addon = native()
      const special = new Uint32Array([0x3f808000, 0x3f818000, 0x3f80ffff, 0xbf7fffff, 0x7f7fffff, 0x00000001,
        0x007fffff, 0x00800000, 0x80018000, 0x7f800000, 0xff800000, 0x7fc00001, 0x7f800001, 0x4040c000, 0x3f80c000])
      const floats = (n: number, seed: number, withSpecial: boolean): Float32Array => {
        const r = randomArray(n, seed, -2, 2)
        const out = Float32Array.from(r)
        const bits = new Uint32Array(out.buffer)
        // Finite ties in most positions, specials (NaN, inf: NaN results) in few.
        for (let i = 0; i < n; i += 5) bits[i] = (bits[i] & 0xffff0000) | 0x8000
        if (withSpecial) for (let i = 0; i < special.length && 7 * i < n; i++) bits[7 * i] = special[i]
        return out
      }
      const castCopy = (dtype: Half, values: Float32Array): NativeBuffer => {
        const src = f32Buffer(0, values)
        try {
          const dst = new (native().NativeBuffer)(0, DTYPE_CODE[dtype], values.length)
          addon.cast(values.length, src, dst)
          return dst
        } finally {
          src.free()
        }
      }
      const SIZES: Array<[number, number, number, Partial<Case>]> = [
        [37, 45, 29, {}], [70, 100, 131, { beta: 0.5 }], [129, 67, 64, { alpha: -1 }], [5, 7, 1, {}], [33, 17, 48, {}],
        [13, 29, 23, { batch: 3, gapA: 5, gapB: 3, gapC: 7, beta: -1 }], [300, 384, 385, {}],
        // Cast copies of A read in place by AMX (whole tiles of depth), the float32 A packed;
        // alpha 1, beta 0: tiles stored straight into C (and through the edge path for the last rows / columns).
        [96, 67, 128, { alpha: 1 }], [161, 96, 64, { alpha: 1, batch: 2, gapA: 64, gapC: 32 }], [64, 64, 32, { alpha: 1, beta: 0.5 }],
      ]
      // float16 always widens on the CPU; each bfloat16 path by name (capped by the CPU: the label says which ran).
      const paths: Array<[string, Half]> = [['amx', 'bfloat16'], ['avx512-bf16', 'bfloat16'], ['widen', 'bfloat16'], ['auto', 'float16']]
      let seed = 900
      for (const [path, dtype] of paths) {
        const used = addon.setCpuGemmBf16(path)
        try {
          for (const [ta, tb] of TRANSPOSES) {
            for (const [m, n, k, extra] of SIZES) {
              const c: Case = { ...base(dtype, m, n, k, seed), ta, tb, alpha: 1.25, ...extra }
              const { sa, sb, sc } = strides(c)
              const A = floats(extent(c.batch, sa, c.m * c.k), seed++, m === 33)
              const B = floats(extent(c.batch, sb, c.k * c.n), seed++, m === 33)
              const C0 = initialC(c, seed++)
              const a16 = castCopy(dtype, A), b16 = castCopy(dtype, B)
              const a32 = f32Buffer(0, A), b32 = f32Buffer(0, B)
              const outs: NativeBuffer[] = []
              try {
                const run = (a: NativeBuffer, b: NativeBuffer): Buffer => {
                  const cb = f32Buffer(0, C0)
                  outs.push(cb)
                  addon.gemmMixed(c.ta, c.tb, c.m, c.n, c.k, c.alpha, a, b, c.beta, cb, c.batch, sa, sb, sc, DTYPE_CODE[dtype])
                  return Buffer.from(cb.read().buffer)
                }
                const want = run(a16, b16)
                const label = `${dtype === 'float16' ? 'widened' : used} ${describe(c)}${m === 33 ? ' with NaN / inf / ties / subnormals' : ''}`
                t.ok(run(a32, b16).equals(want), `${label}: float32 a`)
                t.ok(run(a16, b32).equals(want), `${label}: float32 b`)
                t.ok(run(a32, b32).equals(want), `${label}: float32 a and b`)
              } finally {
                freeAll(a16, b16, a32, b32, ...outs)
              }
            }
          }
        } finally {
          addon.setCpuGemmBf16('auto')
        }
      }
    })

    // The bias row (a linear layer's) is added as the product writes C: the
    // result must have the bits of gemmMixed followed by addBiasRows, on every
    // CPU path (the AMX kernel's straight tile stores and edge blocks, the
    // AVX512-BF16 micro-tiles, the widened float32 product, float16) and on
    // the GPU (cuBLAS, then the bias kernel).
    t.test('bias: the bits of gemmMixed then addBiasRows, every path', async (t) => {
      const addon = native()
      const BIAS_SHAPES: Array<[number, number, number]> = [[1, 1, 1], [7, 1, 37], [13, 33, 17], [72, 37, 200], [96, 67, 128],
        [64, 64, 64], [33, 96, 256], [200, 700, 256], [70, 700, 1536]]
      const cases = (dtype: Half, seed: number): Case[] => {
        const out: Case[] = []
        for (const [ta, tb] of TRANSPOSES) {
          for (const [m, n, k] of BIAS_SHAPES) {
            // The big shapes once (the step's linear layers are NT), the small in every layout.
            if (m * n * k > 1e6 && !(tb && !ta)) continue
            out.push({ ...base(dtype, m, n, k, seed++), ta, tb })
          }
          out.push({ ...base(dtype, 37, 45, 29, seed++), ta, tb, alpha: -1.25 })
          out.push({ ...base(dtype, 37, 45, 29, seed++), ta, tb, alpha: 0.5, beta: -0.75 })
          out.push({ ...base(dtype, 64, 96, 64, seed++), ta, tb, alpha: 1, beta: 1 })
          out.push({ ...base(dtype, 13, 29, 23, seed++), ta, tb, batch: 4, gapA: 5, gapB: 3, gapC: 7 })
          out.push({ ...base(dtype, 40, 64, 64, seed++), ta, tb, batch: 3, sharedB: true })
          out.push({ ...base(dtype, 17, 64, 64, seed++), ta, tb, batch: 5, gapC: 16, sharedB: true, beta: 0.5 })
        }
        out.push({ ...base(dtype, 5, 7, 0, seed++), beta: 0 })
        out.push({ ...base(dtype, 5, 7, 0, seed++), beta: -2, batch: 3, gapC: 4 })
        return out
      }
      const check = (c: Case, label: string): void => {
        const { sa, sb, sc } = strides(c)
        const A = halfValues(extent(c.batch, sa, c.m * c.k), c.dtype, c.seed)
        const B = halfValues(extent(c.batch, sb, c.k * c.n), c.dtype, c.seed + 1)
        const C0 = initialC(c, c.seed + 3)
        // Longer than n for some cases: only the first n values count.
        const biasValues = randomArray(c.n + (c.seed % 3), c.seed + 4, -3, 3)
        const bufs: NativeBuffer[] = []
        try {
          const a = halfBuffer(dev.code, c.dtype, A.bits), b = halfBuffer(dev.code, c.dtype, B.bits)
          const bias = f32Buffer(dev.code, biasValues)
          const want = f32Buffer(dev.code, C0), got = f32Buffer(dev.code, C0)
          bufs.push(a, b, bias, want, got)
          addon.gemmMixed(c.ta, c.tb, c.m, c.n, c.k, c.alpha, a, b, c.beta, want, c.batch, sa, sb, sc)
          let wantBits: Buffer
          if (c.batch === 1) {
            addon.addBiasRows(c.m, c.n, bias, want)
            wantBits = Buffer.from(want.read().buffer)
          } else {
            // Gaps between the matrices: the same float32 sums, one element at a time.
            const w = want.read() as Float32Array
            const bias32 = Float32Array.from(biasValues)
            for (let bi = 0; bi < c.batch; bi++) {
              for (let x = 0; x < c.m * c.n; x++) w[bi * sc + x] = Math.fround(w[bi * sc + x] + bias32[x % c.n])
            }
            wantBits = Buffer.from(w.buffer)
          }
          addon.gemmMixed(c.ta, c.tb, c.m, c.n, c.k, c.alpha, a, b, c.beta, got, c.batch, sa, sb, sc, null, bias)
          const gotBits = Buffer.from(got.read().buffer)
          if (gotBits.equals(wantBits)) {
            t.pass(`${label} ${describe(c)}`)
          } else {
            const g = new Float32Array(gotBits.buffer, gotBits.byteOffset, gotBits.length / 4)
            const w = new Float32Array(wantBits.buffer, wantBits.byteOffset, wantBits.length / 4)
            const at = g.findIndex((v, i) => !Object.is(v, w[i]))
            t.fail(`${label} ${describe(c)}: first difference at [${at}]: got ${g[at]}, want ${w[at]}`)
          }
        } finally {
          freeAll(...bufs)
        }
      }
      if (dev.name !== 'cpu') {
        let seed = 1300
        for (const dtype of DTYPES) for (const c of cases(dtype, seed += 100)) check(c, dtype)
        return
      }
      const paths: Array<[string, Half]> = [['amx', 'bfloat16'], ['avx512-bf16', 'bfloat16'], ['widen', 'bfloat16'], ['auto', 'float16']]
      let seed = 1300
      for (const [path, dtype] of paths) {
        const used = addon.setCpuGemmBf16(path)
        try {
          for (const c of cases(dtype, seed += 100)) check(c, dtype === 'float16' ? 'float16 (widened)' : used)
          // A float32 operand rounded as it is read, with halfDtype and a bias.
          const c = { ...base(dtype, 70, 96, 128, seed++), tb: true }
          const { sa, sb, sc } = strides(c)
          const Avals = halfValues(extent(1, sa, c.m * c.k), dtype, c.seed).values
          const B = halfValues(extent(1, sb, c.k * c.n), dtype, c.seed + 1)
          const biasValues = randomArray(c.n, c.seed + 4)
          const a32 = f32Buffer(0, Avals), b = halfBuffer(0, dtype, B.bits), bias = f32Buffer(0, biasValues)
          const want = f32Buffer(0, new Float32Array(c.m * c.n)), got = f32Buffer(0, new Float32Array(c.m * c.n))
          try {
            addon.gemmMixed(c.ta, c.tb, c.m, c.n, c.k, 1, a32, b, 0, want, 1, sa, sb, sc, DTYPE_CODE[dtype])
            addon.addBiasRows(c.m, c.n, bias, want)
            addon.gemmMixed(c.ta, c.tb, c.m, c.n, c.k, 1, a32, b, 0, got, 1, sa, sb, sc, DTYPE_CODE[dtype], bias)
            t.ok(Buffer.from(got.read().buffer).equals(Buffer.from(want.read().buffer)), `${used}: float32 a, halfDtype and bias`)
          } finally {
            freeAll(a32, b, bias, want, got)
          }
        } finally {
          addon.setCpuGemmBf16('auto')
        }
      }
    })

    // streamC (a weight gradient's product) writes whole aligned lines of C
    // with non-temporal stores and the rest as usual: the bits must be those of
    // the plain product on every path, with rows that start on a line (n a
    // multiple of 16) or not, partial blocks, alpha / beta / bias and gaps.
    t.test('streamC: the bits of the same product without it, every path', async (t) => {
      const addon = native()
      const cases = (dtype: Half, seed: number): Case[] => {
        const out: Case[] = []
        for (const [ta, tb] of TRANSPOSES) {
          for (const [m, n, k] of [[64, 64, 64], [96, 67, 128], [33, 96, 256], [200, 384, 448], [13, 33, 17]] as const) {
            out.push({ ...base(dtype, m, n, k, seed++), ta, tb })
          }
          out.push({ ...base(dtype, 64, 96, 64, seed++), ta, tb, alpha: -0.5 })
          out.push({ ...base(dtype, 64, 96, 64, seed++), ta, tb, beta: 1 })
          out.push({ ...base(dtype, 40, 64, 64, seed++), ta, tb, batch: 3, gapC: 5 })
        }
        return out
      }
      const check = (c: Case, label: string, withBias: boolean): void => {
        const { sa, sb, sc } = strides(c)
        const A = halfValues(extent(c.batch, sa, c.m * c.k), c.dtype, c.seed)
        const B = halfValues(extent(c.batch, sb, c.k * c.n), c.dtype, c.seed + 1)
        // NaN in C where beta is 0 (ignored, so any read of it shows), a sentinel in the gaps.
        const C0 = initialC(c, c.seed + 3)
        const bufs: NativeBuffer[] = []
        try {
          const a = halfBuffer(dev.code, c.dtype, A.bits), b = halfBuffer(dev.code, c.dtype, B.bits)
          const bias = withBias ? f32Buffer(dev.code, randomArray(c.n, c.seed + 4, -3, 3)) : null
          const want = f32Buffer(dev.code, C0), got = f32Buffer(dev.code, C0)
          bufs.push(a, b, want, got)
          if (bias) bufs.push(bias)
          addon.gemmMixed(c.ta, c.tb, c.m, c.n, c.k, c.alpha, a, b, c.beta, want, c.batch, sa, sb, sc, null, bias, false)
          addon.gemmMixed(c.ta, c.tb, c.m, c.n, c.k, c.alpha, a, b, c.beta, got, c.batch, sa, sb, sc, null, bias, true)
          const w = want.read() as Float32Array, g = got.read() as Float32Array
          const at = g.findIndex((v, i) => !Object.is(v, w[i]))
          t.ok(at < 0 && w.every(Number.isFinite),
            `${label} ${describe(c)}${bias ? ' with bias' : ''}${at < 0 ? '' : `: first difference at [${at}]: got ${g[at]}, want ${w[at]}`}`)
        } finally {
          freeAll(...bufs)
        }
      }
      const paths: Array<[string, Half]> = dev.name === 'cpu'
        ? [['amx', 'bfloat16'], ['avx512-bf16', 'bfloat16'], ['widen', 'bfloat16'], ['auto', 'float16']]
        : [['auto', 'bfloat16'], ['auto', 'float16']]
      let seed = 2300
      for (const [path, dtype] of paths) {
        const used = dev.name === 'cpu' ? addon.setCpuGemmBf16(path) : dev.name
        try {
          for (const c of cases(dtype, seed += 100)) check(c, `${dtype} ${used}`, c.seed % 2 === 0)
        } finally {
          if (dev.name === 'cpu') addon.setCpuGemmBf16('auto')
        }
      }
      const h16 = halfBuffer(dev.code, 'bfloat16', new Uint16Array(4)), c32 = f32Buffer(dev.code, new Float32Array(4))
      try {
        t.throws(() => (addon.gemmMixed as unknown as (...args: unknown[]) => void)(false, false, 2, 2, 2, 1, h16, h16, 0, c32, 1, 0, 0, 0, null, null, 'yes'),
          /^gemmMixed: .*streamC/, 'streamC not a boolean')
      } finally {
        freeAll(h16, c32)
      }
    })

    t.test('bad bias: a clear error, and C untouched', async (t) => {
      const g = native().gemmMixed
      const h16 = halfBuffer(dev.code, 'float16', new Uint16Array(12))
      const b16 = halfBuffer(dev.code, 'bfloat16', new Uint16Array(12))
      const c32 = f32Buffer(dev.code, new Float32Array(8).fill(SENTINEL))
      const short = f32Buffer(dev.code, new Float32Array(3).fill(1))
      const bias = f32Buffer(dev.code, new Float32Array(4).fill(1))
      try {
        const untouched = (): boolean => (c32.read() as Float32Array).every((v) => v === SENTINEL)
        t.throws(() => g(false, false, 2, 4, 3, 1, h16, h16, 0, c32, 1, 0, 0, 0, null, short),
          /^gemmMixed: tensor 'bias' holds 3 elements but shape \[4\] needs 4/, 'bias shorter than n')
        t.throws(() => g(false, false, 2, 4, 3, 1, h16, h16, 0, c32, 1, 0, 0, 0, undefined, b16),
          /^gemmMixed: tensor 'bias' has dtype bfloat16, expected float32/, 'bias not float32')
        t.throws(() => (g as unknown as (...args: unknown[]) => void)(false, false, 2, 4, 3, 1, h16, h16, 0, c32, 1, 0, 0, 0, null, [1, 2, 3, 4]),
          /^gemmMixed: argument 'bias' must be a NativeBuffer/, 'bias an array')
        t.throws(() => g(false, false, 2, 4, 3, 1, h16, h16, 0, c32, 1, 0, 0, 0, null, c32),
          /^gemmMixed: output 'c' must not be the same buffer as input 'bias'/, 'bias that is also the output')
        t.throws(() => (g as unknown as (...args: unknown[]) => void)(false, false, 2, 4, 3, 1, h16, h16, 0, c32, 1, 0, 0, 0, null, bias, true, 1),
          /^gemmMixed: expected 14 to 17 arguments, got 18/, 'too many arguments')
        t.ok(untouched(), 'C still holds what it held after the refused calls')
        if (dev.name !== 'cpu') {
          const cpuBias = f32Buffer(0, new Float32Array(4))
          try {
            t.throws(() => g(false, false, 2, 4, 3, 1, h16, h16, 0, c32, 1, 0, 0, 0, null, cpuBias),
              /^gemmMixed: .*'bias' is on cpu/, 'bias on another device')
          } finally {
            cpuBias.free()
          }
        }
        t.doesNotThrow(() => g(false, false, 2, 4, 3, 1, h16, h16, 0, c32, 1, 0, 0, 0, undefined, undefined), 'no bias: undefined')
        t.doesNotThrow(() => g(false, false, 2, 4, 3, 1, h16, h16, 0, c32, 1, 0, 0, 0, null, bias), 'a bias of n values')
        t.ok((c32.read() as Float32Array).every((v) => v === 1), 'zero inputs plus a bias of ones: ones')
      } finally {
        freeAll(h16, b16, c32, short, bias)
      }
    })

    t.test('setAllowTf32 takes a device and a flag', async (t) => {
      const addon = native()
      if (dev.name === 'cpu') {
        t.doesNotThrow(() => addon.setAllowTf32(dev.code, true), 'the CPU accepts it (its fp32 stays fp32)')
        t.doesNotThrow(() => addon.setAllowTf32(dev.code, false))
      } else {
        try {
          addon.setAllowTf32(dev.code, true)
          t.match(addon.probeDevice(dev.code).description ?? '', /TF32 allowed/, 'the description says TF32 is on')
        } finally {
          addon.setAllowTf32(dev.code, false)
        }
        t.match(addon.probeDevice(dev.code).description ?? '', /without TF32/, 'and off again')
      }
      t.throws(() => (addon.setAllowTf32 as unknown as (...args: unknown[]) => void)(dev.code), /^setAllowTf32: expected/)
    })

    t.test('frees every buffer', async (t) => {
      t.equal(native().memoryStats().liveBuffers, liveBefore, 'no live buffers left by the gemmMixed tests')
    })
  })
}
