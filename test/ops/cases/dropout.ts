// Cases of dropout: the mask against the JavaScript Philox port (which pins
// the generator for every backend), forward bit for bit, backward accumulated.
import { native } from '../../../lib/native.js'
import { dropoutMask, keepScale } from '../../helpers/philox.js'
import { randomArray } from '../../helpers/reference.js'
import { lazy, type OpCase } from '../backend_ops.js'

const N = () => native()

export function dropoutCases(): OpCase[] {
  const cases: OpCase[] = []
  let seed = 3000
  // A counter range that crosses 2^32, and a seed using both key words.
  const dseed = 0x0123456789abcdefn, doffset = 0xfffffff0n
  for (const [n, p, size] of [[100003, 0.1, 'quick'], [37, 0.5, 'quick'], [1, 0.3, 'quick'], [10003, 0, 'quick'],
    [100003, 0.5, 'full'], [1000003, 0.1, 'full']] as const) {
    const s = (seed += 3)
    const data = lazy(() => ({ x: randomArray(n, s, -2, 2), dy: randomArray(n, s + 1), dx0: randomArray(n, s + 2) }))
    const factor = () => {
      const mask = dropoutMask(n, p, dseed, doffset)
      const scale = keepScale(p)
      return Float64Array.from(mask, (m) => (m ? scale : 0))
    }
    cases.push({
      op: 'dropoutForward', label: `n=${n} p=${p}`, size,
      setup: (io) => {
        const xb = io.f32(data().x), y = io.nan(n)
        return { call: () => N().dropoutForward(n, p, dseed, doffset, xb, y), outputs: { y } }
      },
      reference: () => {
        const f = factor()
        return { y: data().x.map((v, i) => Math.fround(v * f[i])) }
      },
      tolerance: 'bits', parity: 'bits',
    })
    cases.push({
      op: 'dropoutBackward', label: `n=${n} p=${p}, into random`, size,
      setup: (io) => {
        const dyb = io.f32(data().dy), dx = io.f32(data().dx0)
        return { call: () => N().dropoutBackward(n, p, dseed, doffset, dyb, dx), outputs: { dx } }
      },
      reference: () => {
        const f = factor()
        const { dy, dx0 } = data()
        return { dx: { values: dx0.map((v, i) => v + dy[i] * f[i]), scale: dx0.map((v, i) => Math.abs(v) + Math.abs(dy[i] * f[i])) } }
      },
      tolerance: { rtol: 2.5e-7, atol: 1e-30 },
    })
  }
  return cases
}
