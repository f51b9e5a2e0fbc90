// Cases of the activation op, one pair per kind the addon exports (a kind
// added to the native list is covered without an edit here). The CPU backend
// is the reference of the GPU run: both evaluate the same formulas, and libm
// and CUDA's math library differ by ulps. Each kind's float64 reference and
// finite-difference gradients are checked in activation.test.ts.
import { native } from '../../../lib/native.js'
import { randomArray } from '../../helpers/reference.js'
import type { OpCase } from '../backend_ops.js'

const N = () => native()

export function activationCases(): OpCase[] {
  const cases: OpCase[] = []
  let seed = 2000
  for (const [n, size] of [[10007, 'quick'], [1000003, 'full']] as const) {
    const x = randomArray(n, seed++, -8, 8)
    x.set([0, -0, 30, -30, 1e-20])
    const dy = randomArray(n, seed++), dx0 = randomArray(n, seed++)
    for (const [kind, code] of Object.entries(N().codes.activation)) {
      cases.push({
        op: 'activationForward', label: `${kind} n=${n}`, size,
        setup: (io) => {
          const xb = io.f32(x), y = io.nan(n)
          return { call: () => N().activationForward(code, n, xb, y), outputs: { y } }
        },
      })
      cases.push({
        op: 'activationBackward', label: `${kind} n=${n}, into random`, size,
        setup: (io) => {
          const xb = io.f32(x), dyb = io.f32(dy), dx = io.f32(dx0)
          return { call: () => N().activationBackward(code, n, xb, dyb, dx), outputs: { dx } }
        },
      })
    }
  }
  return cases
}
