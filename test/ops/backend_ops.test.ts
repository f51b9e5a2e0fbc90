// The backend table in `npm test`: every quick case against its float64
// reference, on every device this machine runs (cases without one run twice
// and must agree with themselves), and every op the addon exports has cases.
// The GPU run of the same table is `node dist/test/ops/backend_ops.js`.
import t from 'tap'
import { native } from '../../lib/native.js'
import { devicesUnderTest } from '../helpers/devices.js'
import { checkParity, checkReference, type OpCase } from './backend_ops.js'
import { ALL_CASES } from './cases/index.js'

const N = native()
const byOp = new Map<string, OpCase[]>()
for (const c of ALL_CASES) byOp.set(c.op, [...(byOp.get(c.op) ?? []), c])

t.test('every op the addon exports has cases in the table', async (t) => {
  const ops = Object.entries(N).filter(([name, v]) => typeof v === 'function' && /(Forward|Backward)$|^(gemm|gemmMixed|fill|axpby|mul|addBiasRows|sumRows|sum|sumSquares|cast|castSumRows|activationBackwardCastSumRows|adamwStep|clipCoefficient|multiTensorAdamw|multiTensorSumSquares|nonfiniteFlag)$/.test(name))
  t.ok(ops.length > 30, `${ops.length} op functions`)
  for (const [name] of ops) t.ok(byOp.has(name), `${name} has ${byOp.get(name)?.length ?? 0} cases`)
})

for (const dev of devicesUnderTest()) {
  t.test(`backend table on ${dev.name}`, { skip: dev.skip ?? false }, async (t) => {
    const liveBefore = N.memoryStats().liveBuffers
    for (const [op, cases] of byOp) {
      const quick = cases.filter((c) => c.size === 'quick')
      if (quick.length === 0) continue
      await t.test(op, async (t) => {
        for (const c of quick) {
          const v = c.reference ? checkReference(c, dev.code) : checkParity(c, dev.code, dev.code)
          t.ok(v.ok, `${c.label}${c.reference ? '' : ' (no reference: two runs agree)'}: ${v.text}`)
        }
      })
    }
    t.equal(N.memoryStats().liveBuffers, liveBefore, 'every buffer the cases made was freed')
  })
}
