// The vecmath kernels (native/src/cpu/vecmath.h) on every instruction set
// this CPU runs. vecmath picks its set once per process, so each set runs in a
// child process with BERTKIT_VECMATH capped there, and the children print
// their results: the AVX2 build must give the AVX-512 build's bits (both run
// the same operations in the same order), and the scalar libm code must agree
// with them to float rounding (2e-6 of max(|value|, 1): backward adds into
// values of order 1, and the smallest GELU values are tails the libm loop
// gets wrong by more than the vector code, see vecmath.h). Sizes cover the 16-lane groups and their tails
// (1..33, 10007), inputs the GELU's ranges and edges (0, +-16 and past it,
// the deep negative tail, inf, NaN); unpadded attention with dropout runs
// the softmax, the dropout draws and the small products (sequence lengths
// 1..40, heads of 8 and 20).
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { join } from 'node:path'
import { native } from '../../lib/native.js'

const nativeModule = join(__dirname, '..', '..', 'lib', 'native.js')

const child = `
const { native, DTYPE_CODE } = require(${JSON.stringify(nativeModule)})
const N = native()
N.setNumThreads(Number(process.argv[1]))
let s = 11
const rnd = () => { s = (s * 1103515245 + 12345) % 2147483648; return s / 2147483648 }
const buf = (a) => { const b = new N.NativeBuffer(0, DTYPE_CODE.float32, a.length); b.write(Float32Array.from(a)); return b }
const edges = [0, -0, 1e-30, -1e-30, 0.5, -0.5, 1.5, -1.5, 0.75, -0.75, 16, -16, 16.5, -16.5, -13.2, -14.1, 30, -30, Infinity, -Infinity, NaN]
const sizes = [1, 2, 15, 16, 17, 31, 32, 33, 10007]
const out = {}
for (const [name, code] of [['gelu', N.codes.activation.GeluErf], ['gelu_new', N.codes.activation.GeluTanh]]) {
  for (const n of sizes) {
    const x = Array.from({ length: n }, (_, i) => i < edges.length && n > 100 ? edges[i] : (rnd() - 0.5) * (n > 100 ? 12 : 4))
    const dy = Array.from({ length: n }, () => rnd() - 0.5), start = Array.from({ length: n }, () => rnd() - 0.5)
    const y = buf(new Array(n).fill(NaN)), dx = buf(start)
    N.activationForward(code, n, buf(x), y)
    N.activationBackward(code, n, buf(x), buf(dy), dx)
    out[name + ' forward n=' + n] = Array.from(y.read())
    out[name + ' backward n=' + n] = Array.from(dx.read())
  }
}
// Unpadded attention (softmax rows, dropout draws from any start, the small
// products with row and column tails): lengths 1..40, 3 heads of 8 and of 20.
for (const [heads, hd] of [[3, 8], [3, 20]]) {
  const lens = [27, 1, 40, 13, 16, 17, 33], seq = 40, hidden = heads * hd
  const cu = [0]; for (const l of lens) cu.push(cu[cu.length - 1] + l)
  const tokens = cu[cu.length - 1], squares = lens.reduce((a, l) => a + heads * l * l, 0)
  const cub = new N.NativeBuffer(0, DTYPE_CODE.int32, cu.length); cub.write(Int32Array.from(cu))
  const rand = (n) => Array.from({ length: n }, () => rnd() - 0.5)
  const q = buf(rand(tokens * hidden)), k = buf(rand(tokens * hidden)), v = buf(rand(tokens * hidden)), dout = buf(rand(tokens * hidden))
  const probs = buf(new Array(squares).fill(NaN)), o = buf(new Array(tokens * hidden).fill(NaN))
  const dq = buf(rand(tokens * hidden)), dk = buf(rand(tokens * hidden)), dv = buf(rand(tokens * hidden))
  N.varlenAttentionForward(lens.length, seq, heads, hd, 1 / Math.sqrt(hd), 0.1, 42n, 1000n, cub, q, k, v, probs, o)
  N.varlenAttentionBackward(lens.length, seq, heads, hd, 1 / Math.sqrt(hd), 0.1, 42n, 1000n, cub, q, k, v, probs, dout, dq, dk, dv)
  for (const [name, b] of [['probs', probs], ['out', o], ['dq', dq], ['dk', dk], ['dv', dv]]) out['varlen attention ' + heads + 'x' + hd + ' ' + name] = Array.from(b.read())
}
console.log(JSON.stringify({ isa: N.inspectRuntime().cpu.vecmath, out }))
`

interface Result { isa: string; out: Record<string, Array<number | null>> }

function run(env: Record<string, string>, threads: number): Result {
  const r = spawnSync(process.execPath, ['-e', child, String(threads)], { encoding: 'utf8', maxBuffer: 1 << 26, env: { ...process.env, ...env } })
  if (r.status !== 0) throw new Error(`child failed (status ${r.status}, signal ${r.signal}): ${r.stderr}${r.stdout}`)
  return JSON.parse(r.stdout.trim().split('\n').pop()!)
}

// JSON writes NaN and inf as null; both sides go through it alike.
function bitsEqual(a: Array<number | null>, b: Array<number | null>): number[] {
  const bad: number[] = []
  for (let i = 0; i < a.length; i++) if (!Object.is(a[i], b[i])) bad.push(i)
  return bad
}

const isa = native().inspectRuntime().cpu.vecmath

t.test('vecmath kernels: AVX2 gives the AVX-512 bits, the scalar code agrees to rounding', { skip: isa === 'scalar' ? 'this CPU runs no vector kernels' : false }, async (t) => {
  for (const threads of [1, 2]) {
    const wide = run({}, threads)
    t.equal(wide.isa, isa, `the default child runs ${isa}`)
    if (isa === 'avx512') {
      const avx2 = run({ BERTKIT_VECMATH: 'avx2' }, threads)
      t.equal(avx2.isa, 'avx2', 'BERTKIT_VECMATH=avx2 runs the AVX2 build')
      for (const key of Object.keys(wide.out)) t.same(bitsEqual(wide.out[key], avx2.out[key]), [], `${threads} thread(s), ${key}: AVX2 bit-identical to AVX-512`)
    }
    const plain = run({ BERTKIT_VECMATH: 'scalar' }, threads)
    t.equal(plain.isa, 'scalar', 'BERTKIT_VECMATH=scalar runs the libm loops')
    for (const key of Object.keys(wide.out)) {
      const a = wide.out[key], b = plain.out[key]
      let worst = 0
      let where = -1
      for (let i = 0; i < a.length; i++) {
        if (a[i] === null || b[i] === null) {
          if (a[i] !== b[i]) { worst = Infinity; where = i }
          continue
        }
        const err = Math.abs(a[i]! - b[i]!) / Math.max(Math.abs(b[i]!), 1)
        if (err > worst) { worst = err; where = i }
      }
      t.ok(worst <= 2e-6, `${threads} thread(s), ${key}: vector vs scalar within 2e-6 of max(|value|, 1) (worst ${worst.toExponential(2)} at [${where}])`)
    }
  }
})
