// The CPU thread pool (native/src/cpu/thread_pool.*): idle workers spin for
// BERTKIT_SPIN_US before they sleep, and chunks are handed out by
// compare-exchange on one generation+chunk word. A lost wake-up would hang a
// call, and a chunk run twice, skipped, or taken from the wrong job would
// change a result. Each child process runs thousands of back-to-back parallel
// calls (in-place y = x + y over several chunks, and multi-chunk reductions)
// with a spin budget of 0 (always sleep), 1 us (wake-ups racing the sleep) and
// the default, at 2 threads and oversubscribed at 5, on the synchronous and the
// queued stream, and checks every element and every sum exactly.
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { join } from 'node:path'

const nativeModule = join(__dirname, '..', '..', 'lib', 'native.js')

const child = `
const { native, DTYPE_CODE } = require(${JSON.stringify(nativeModule)})
const N = native()
N.setNumThreads(Number(process.argv[1]))
const n = 3 * 32768 + 7  // over the elementwise grain: several chunks per call
const buf = (a) => { const b = new N.NativeBuffer(0, DTYPE_CODE.float32, a.length); b.write(a); return b }
const ones = buf(new Float32Array(n).fill(1))
const y = buf(new Float32Array(n))
const calls = 3000
let badSums = 0
for (let i = 1; i <= calls; i++) {
  N.axpby(n, 1, ones, 1, y)
  if (i % 100 === 0) {
    const total = buf(new Float32Array(1))
    N.sum(n, y, total)  // fixed blocks summed in order: exact for these integers
    if (total.read()[0] !== Math.fround(i * n)) badSums++
  }
}
const got = y.read()
let wrong = 0
for (let i = 0; i < n; i++) if (got[i] !== calls) wrong++
console.log(JSON.stringify({ wrong, badSums }))
`

for (const spin of ['0', '1', '']) {
  for (const threads of [2, 5]) {
    for (const queued of ['1', '0']) {
      t.test(`spin ${spin || 'default'} us, ${threads} threads, ${queued === '1' ? 'queued' : 'synchronous'} stream`, (t) => {
        const env: NodeJS.ProcessEnv = { ...process.env, BERTKIT_CPU_ASYNC: queued }
        if (spin) env.BERTKIT_SPIN_US = spin
        else delete env.BERTKIT_SPIN_US
        const r = spawnSync(process.execPath, ['-e', child, String(threads)], { env, encoding: 'utf8', timeout: 120_000 })
        t.equal(r.status, 0, `child exits cleanly (signal ${r.signal}; stderr: ${r.stderr.trim().split('\n').slice(-2).join(' | ')})`)
        const line = r.stdout.trim().split('\n').pop() ?? '{}'
        const result = JSON.parse(line.startsWith('{') ? line : '{}') as { wrong?: number; badSums?: number }
        t.equal(result.wrong, 0, 'every element saw every call exactly once')
        t.equal(result.badSums, 0, 'every multi-chunk sum is exact')
        t.end()
      })
    }
  }
}
