// The AVX-512 loops of AdamW and of the gradient norm (adamw_avx512.cpp) run
// the plain loops' roundings in the same order, so they must give the same
// bits. vecmath picks the instruction set once per process, so the plain loop
// runs in a child process with BERTKIT_VECMATH=scalar and both print a
// SHA-256 of each result buffer: sizes with vector tails, both of torch's lerp formulas
// (beta1 0.9 and 0.3), a gradient scale, several steps, 1 and 2 threads.
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { join } from 'node:path'
import { native } from '../../lib/native.js'

const nativeModule = join(__dirname, '..', '..', 'lib', 'native.js')

const child = `
const { native, DTYPE_CODE } = require(${JSON.stringify(nativeModule)})
const N = native()
N.setNumThreads(Number(process.argv[1]))
let s = 7
const rnd = () => { s = (s * 1103515245 + 12345) % 2147483648; return s / 2147483648 }
const buf = (n, f) => { const b = new N.NativeBuffer(0, DTYPE_CODE.float32, n); const a = new Float32Array(n); for (let i = 0; i < n; i++) a[i] = f(); b.write(a); return b }
const sizes = [1, 15, 16, 17, 1000, 100003]
const out = []
for (const beta1 of [0.9, 0.3]) {
  const p = sizes.map((n) => buf(n, () => rnd() - 0.5)), m = sizes.map((n) => buf(n, () => 0))
  const v = sizes.map((n) => buf(n, () => 0)), scale = buf(1, () => 0.37), sq = buf(1, () => 0)
  for (let step = 1; step <= 3; step++) {
    const g = sizes.map((n) => buf(n, () => (rnd() - 0.5) * 0.02))
    N.multiTensorSumSquares(sizes.length, sizes, g, sq)
    N.multiTensorAdamw(sizes.length, sizes, p, g, m, v, 1e-3, beta1, 0.999, 1e-8, 0.01, sizes.map(() => step), scale, null)
  }
  for (const b of [...p, ...m, ...v, sq]) out.push(require('crypto').createHash('sha256').update(Buffer.from(b.read().buffer)).digest('hex'))
}
console.log(JSON.stringify({ isa: N.inspectRuntime().cpu.vecmath, out }))
`

function run(env: Record<string, string>, threads: number): { isa: string; out: string[] } {
  const r = spawnSync(process.execPath, ['-e', child, String(threads)], { encoding: 'utf8', env: { ...process.env, ...env } })
  if (r.status !== 0) throw new Error(`child failed (status ${r.status}, signal ${r.signal}): ${r.stderr}${r.stdout}`)
  return JSON.parse(r.stdout.trim().split('\n').pop()!)
}

const isa = native().inspectRuntime().cpu.vecmath
t.test('AdamW and the sum of squares: the AVX-512 loops give the plain loops\' bits', { skip: isa !== 'avx512' ? `this CPU runs the ${isa} kernels, not AVX-512` : false }, async (t) => {
  for (const threads of [1, 2]) {
    const wide = run({}, threads)
    const plain = run({ BERTKIT_VECMATH: 'scalar' }, threads)
    t.equal(wide.isa, 'avx512', 'the default child runs AVX-512')
    t.equal(plain.isa, 'scalar', 'BERTKIT_VECMATH=scalar runs the plain loops')
    t.equal(wide.out.length, plain.out.length)
    const differing = wide.out.map((h, i) => h === plain.out[i] ? -1 : i).filter((i) => i >= 0)
    t.same(differing, [], `${threads} thread(s): every parameter, exp_avg, exp_avg_sq and norm bit-identical`)
  }
})
