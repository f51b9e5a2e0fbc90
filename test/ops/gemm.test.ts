// gemm against a float64 reference, per backend and, on the CPU, per GEMM
// path. The file runs itself again in child processes with BERTKIT_GEMM set
// (the path is chosen once per process), so one build tests OpenBLAS and the
// built-in kernels (AVX-512, AVX2, scalar) side by side.
import t, { type Test } from 'tap'
import { native, DTYPE_CODE, type NativeBuffer } from '../../lib/native.js'
import { devicesUnderTest, type DeviceUnderTest } from '../helpers/devices.js'
import { compare, f32Buffer, freeAll, i32Buffer, randomArray, readF64 } from '../helpers/reference.js'
import { SENTINEL, describeGemm as describe, gemmExtent as extent, gemmReference, gemmStrides as strides, initialC, type GemmLayout } from './cases/gemm.js'

interface Case extends GemmLayout {
  seed: number
}

// float32 sums of k terms in [-1, 1]: rounding grows like sqrt(k).
function atolFor(k: number): number {
  return 1e-5 * Math.sqrt(k + 1)
}

interface Run {
  got: Float64Array
  A: Float64Array
  B: Float64Array
  C0: Float64Array
}

/** Runs gemm on inputs drawn from c.seed (the same inputs every time). */
function runCase(device: number, c: Case): Run {
  const { sa, sb, sc } = strides(c)
  const A = randomArray(extent(c.batch, sa, c.m * c.k), c.seed)
  const B = randomArray(extent(c.batch, sb, c.k * c.n), c.seed + 1)
  const C0 = initialC(c, c.seed + 3)
  let a: NativeBuffer | null = null
  let b: NativeBuffer | null = null
  let cb: NativeBuffer | null = null
  try {
    a = f32Buffer(device, A)
    b = f32Buffer(device, B)
    cb = f32Buffer(device, C0)
    native().gemm(c.ta, c.tb, c.m, c.n, c.k, c.alpha, a, b, c.beta, cb, c.batch, sa, sb, sc)
    return { got: readF64(cb), A, B, C0 }
  } finally {
    freeAll(a, b, cb)
  }
}

function checkAgainst(t: Test, c: Case, got: Float64Array, want: Float64Array, what = ''): void {
  const close = compare(got, want, 1e-5, atolFor(c.k))
  t.ok(close.ok, `${describe(c)}${what}: ${close.message}`)
}

function checkCase(t: Test, device: number, c: Case): void {
  const r = runCase(device, c)
  checkAgainst(t, c, r.got, gemmReference(c, r.A, r.B, r.C0).values)
}

function base(m: number, n: number, k: number, seed: number): Case {
  return { ta: false, tb: false, m, n, k, alpha: 1, beta: 0, batch: 1, gapA: 0, gapB: 0, gapC: 0, seed }
}

const TRANSPOSES: Array<[boolean, boolean]> = [[false, false], [false, true], [true, false], [true, true]]

// Odd sizes around the built-in kernels' tiles (12 / 6 / 4 rows, 32 / 16 / 8
// columns), k past one packed block (384), n past one column block (512), m
// past one row block (96).
const SHAPES: Array<[number, number, number]> = [
  [1, 1, 1], [1, 7, 37], [7, 1, 37], [37, 72, 1], [13, 33, 17], [72, 37, 200],
  [200, 72, 37], [37, 200, 72], [1, 1023, 7], [1023, 1, 7], [25, 17, 1023], [7, 1023, 5],
]

function numericSuite(t: Test, dev: DeviceUnderTest): void {
  t.test('every transpose, odd sizes', async (t) => {
    let seed = 100
    for (const [ta, tb] of TRANSPOSES) {
      for (const [m, n, k] of SHAPES) checkCase(t, dev.code, { ...base(m, n, k, seed++), ta, tb })
    }
  })

  t.test('alpha and beta', async (t) => {
    let seed = 200
    for (const [ta, tb] of TRANSPOSES) {
      // beta == 0 over a NaN-filled C: write-only.
      checkCase(t, dev.code, { ...base(37, 45, 29, seed++), ta, tb, alpha: -1.25, beta: 0 })
      checkCase(t, dev.code, { ...base(37, 45, 29, seed++), ta, tb, alpha: 0.5, beta: -0.75 })
      checkCase(t, dev.code, { ...base(37, 45, 29, seed++), ta, tb, alpha: 1, beta: 1 })
      // beta applies once even when k spans several packed blocks.
      checkCase(t, dev.code, { ...base(19, 40, 900, seed++), ta, tb, alpha: 2, beta: 0.5 })
    }
    // alpha == 0: C = beta * C.
    checkCase(t, dev.code, { ...base(9, 11, 13, seed++), alpha: 0, beta: 0.5 })
    checkCase(t, dev.code, { ...base(9, 11, 13, seed++), alpha: 0, beta: 0 })
  })

  t.test('empty products', async (t) => {
    // k == 0: C = beta * C (zeros when beta == 0, even over NaN).
    checkCase(t, dev.code, { ...base(5, 7, 0, 300), beta: 0 })
    checkCase(t, dev.code, { ...base(5, 7, 0, 301), beta: -2 })
    checkCase(t, dev.code, { ...base(5, 7, 0, 302), beta: 1, batch: 3, gapC: 4 })
    // m == 0 or n == 0: nothing to write; C keeps every value.
    for (const [m, n] of [[0, 7], [7, 0], [0, 0]]) {
      const c: Case = { ...base(m, n, 5, 303), beta: 0.5, batch: 2, gapC: 3 }
      const r = runCase(dev.code, c)
      t.ok(r.got.length > 0 && r.got.every((v) => v === SENTINEL), `${describe(c)} leaves C alone`)
    }
  })

  t.test('batched, strided', async (t) => {
    let seed = 400
    for (const [ta, tb] of TRANSPOSES) {
      checkCase(t, dev.code, { ...base(13, 29, 23, seed++), ta, tb, batch: 4, gapA: 5, gapB: 3, gapC: 7, beta: 0 })
      checkCase(t, dev.code, { ...base(40, 33, 70, seed++), ta, tb, batch: 3, gapA: 1, gapB: 0, gapC: 2, beta: 0.5 })
      checkCase(t, dev.code, { ...base(17, 64, 64, seed++), ta, tb, batch: 5, gapC: 16, sharedB: true })
    }
    // The attention layout: many small products.
    checkCase(t, dev.code, { ...base(16, 16, 8, seed++), tb: true, batch: 48, alpha: 0.125 })
  })

  t.test('1 vs 2 threads', async (t) => {
    const before = native().getNumThreads()
    try {
      let seed = 500
      for (const [ta, tb] of TRANSPOSES) {
        // Large enough to be split over threads in every dimension.
        const c: Case = { ...base(300, 700, 450, seed++), ta, tb, beta: 0.5 }
        native().setNumThreads(1)
        const one = runCase(dev.code, c)
        native().setNumThreads(2)
        const two = runCase(dev.code, c)
        const want = gemmReference(c, one.A, one.B, one.C0).values
        checkAgainst(t, c, one.got, want, ' on 1 thread')
        checkAgainst(t, c, two.got, want, ' on 2 threads')
        const close = compare(two.got, one.got, 1e-5, atolFor(c.k) / 10)
        t.ok(close.ok, `${describe(c)}: 2 threads match 1 thread beyond rounding: ${close.message}`)
        if (dev.name === 'cpu' && native().cpuGemm.startsWith('built-in')) {
          // The built-in kernel never splits k across threads: bit-for-bit equal.
          let differ = 0
          for (let x = 0; x < one.got.length; x++) if (!Object.is(one.got[x], two.got[x])) differ++
          t.equal(differ, 0, `${describe(c)}: built-in gives identical bits on 1 and 2 threads`)
        }
      }
    } finally {
      native().setNumThreads(before)
    }
  })
}

function badInputSuite(t: Test, dev: DeviceUnderTest): void {
  t.test('bad input names the op', async (t) => {
    const f32 = (n: number) => f32Buffer(dev.code, new Float32Array(n))
    const a = f32(6), b = f32(12), c = f32(8)
    const ints = i32Buffer(dev.code, new Int32Array(6))
    const freed = f32(6)
    freed.free()
    const g = native().gemm
    try {
      // A 2x3 times 3x4 product fits a (6), b (12), c (8).
      t.doesNotThrow(() => g(false, false, 2, 4, 3, 1, a, b, 0, c, 1, 0, 0, 0), 'a valid call passes')
      t.throws(() => g(false, false, 3, 4, 3, 1, a, b, 0, c, 1, 0, 0, 0),
        /^gemm: tensor 'a' holds 6 elements but shape batch 1 x \[3, 3\] needs 9/, 'a too small')
      t.throws(() => g(false, false, 2, 4, 4, 1, a, b, 0, c, 1, 0, 0, 0), /^gemm: tensor 'a' holds 6/, 'k too large for a')
      t.throws(() => g(false, true, 2, 5, 3, 1, a, b, 0, c, 1, 0, 0, 0), /^gemm: tensor 'b' holds 12 elements but shape .*\[5, 3\]/, 'b too small')
      t.throws(() => g(false, false, 2, 4, 3, 1, a, b, 0, c, 2, 6, 12, 8), /^gemm: tensor 'a' holds 6 .*batch 2/, 'batch larger than the buffers')
      t.throws(() => g(false, false, 2, 4, 3, 1, a, b, 0, c, 2, 0, 0, 4), /^gemm: strideC 4 makes output matrices overlap/, 'overlapping outputs')
      t.throws(() => g(false, false, 2, 4, 3, 1, a, b, 0, c, 0, 0, 0, 0), /^gemm: 'batch' must be at least 1/, 'batch 0')
      t.throws(() => g(false, false, -2, 4, 3, 1, a, b, 0, c, 1, 0, 0, 0), /^gemm: 'm' must be a non-negative integer/, 'negative m')
      t.throws(() => g(false, false, 2.5, 4, 3, 1, a, b, 0, c, 1, 0, 0, 0), /^gemm: 'm' must be a non-negative integer/, 'fractional m')
      t.throws(() => g(false, false, 2, 4, 3, NaN, a, b, 0, c, 1, 0, 0, 0), /^gemm: 'alpha' must be finite/, 'NaN alpha')
      t.throws(() => g(0 as unknown as boolean, false, 2, 4, 3, 1, a, b, 0, c, 1, 0, 0, 0), /^gemm: 'transA' must be a boolean/, 'transA not a boolean')
      t.throws(() => g(false, false, 2, 4, 3, 1, freed, b, 0, c, 1, 0, 0, 0), /^gemm: tensor 'a' was already freed/, 'freed a')
      t.throws(() => g(false, false, 2, 4, 3, 1, a, b, 0, freed, 1, 0, 0, 0), /^gemm: tensor 'c' was already freed/, 'freed c')
      t.throws(() => g(false, false, 2, 4, 3, 1, ints, b, 0, c, 1, 0, 0, 0), /^gemm: tensor 'a' has dtype int32, expected float32/, 'int32 a')
      t.throws(() => g(false, false, 2, 3, 3, 1, a, b, 0, a, 1, 0, 0, 0), /^gemm: output 'c' must not be the same buffer as input 'a'/, 'c aliases a')
      t.throws(() => g(false, false, 2, 2, 2, 1, a, b, 0, b, 1, 0, 0, 0), /^gemm: output 'c' must not be the same buffer as input 'b'/, 'c aliases b')
      t.throws(() => g(false, false, 2, 4, 3, 1, {} as NativeBuffer, b, 0, c, 1, 0, 0, 0), /^gemm: argument 'a' must be a NativeBuffer/, 'not a buffer')
      t.throws(() => (g as unknown as (...args: unknown[]) => void)(false, false, 2, 4, 3), /^gemm: expected 14 arguments, got 5/, 'too few arguments')
      t.equal(DTYPE_CODE.float32, a.dtype, 'the buffers used above are float32')
    } finally {
      freeAll(a, b, c, ints)
    }
  })
}

function suite(t: Test, withBadInput: boolean): void {
  for (const dev of devicesUnderTest()) {
    t.test(`gemm on ${dev.name}`, { skip: dev.skip ?? false }, async (t) => {
      const liveBefore = native().memoryStats().liveBuffers
      if (dev.name === 'cpu') t.comment(`cpu gemm: ${native().cpuGemm}`)
      numericSuite(t, dev)
      if (withBadInput) badInputSuite(t, dev)
      // Subtests run in order, so this one sees what the others left behind.
      t.test('frees every buffer', async (t) => {
        t.equal(native().memoryStats().liveBuffers, liveBefore, 'no live buffers left by the gemm tests')
      })
    })
  }
}

// What each BERTKIT_GEMM value must select.
const PATHS: Array<{ env: string; expect: RegExp }> = [
  { env: 'builtin', expect: /^built-in (AVX-512|AVX2\+FMA|scalar)$/ },
  { env: 'builtin-avx2', expect: /^built-in (AVX2\+FMA|scalar( \(AVX2\+FMA asked for, not supported by this CPU\))?)$/ },
  { env: 'builtin-scalar', expect: /^built-in scalar$/ },
  { env: 'openblas', expect: /^(OpenBLAS \d+\.\d+\.\d+ \(\w+ kernels\)|built-in .*\(BERTKIT_GEMM=openblas ignored: not compiled with OpenBLAS\))$/ },
]

const forced = process.env.BERTKIT_GEMM
if (forced) {
  // A child (or a caller) picked one path: check it took, then test it.
  const path = PATHS.find((p) => p.env === forced)
  t.ok(path, `BERTKIT_GEMM=${forced} is a path this test knows`)
  if (path) t.match(native().cpuGemm, path.expect, `BERTKIT_GEMM=${forced} selects "${native().cpuGemm}"`)
  suite(t, false)
} else {
  t.comment(`default cpu gemm: ${native().cpuGemm}`)
  suite(t, true)
  for (const p of PATHS) {
    t.spawn(process.execPath, [__filename], { env: { ...process.env, BERTKIT_GEMM: p.env } }, `BERTKIT_GEMM=${p.env}`)
  }
}

t.test('setCpuGemm switches the CPU path in-process and rejects unknown names', async (t) => {
  const N = (await import('../../lib/native.js')).native()
  const before = N.getCpuGemm()
  t.match(N.setCpuGemm('builtin-scalar'), /scalar/i)
  t.match(N.getCpuGemm(), /scalar/i)
  t.throws(() => N.setCpuGemm('fastest'), /setCpuGemm: unknown CPU GEMM path 'fastest'/)
  // Back to what this process started with (child runs of this file set BERTKIT_GEMM).
  N.setCpuGemm(process.env.BERTKIT_GEMM ?? 'auto')
  t.equal(N.getCpuGemm(), before)
})
