// Cases of attention over packed sequences (varlenAttentionForward /
// Backward). The float64 reference is the padded one of
// test/helpers/attention_reference.ts run on the padded batch these
// sequences make (each at the start of its row, zeros after it): the packed
// op must give its real rows, its real probabilities and, with dropout, its
// mask, since it keys the draws by the padded layout.
import { native } from '../../../lib/native.js'
import { dropoutFactors, maskRows, maxAbs, referenceBackward, referenceForward, scaleOf, type AttentionCase } from '../../helpers/attention_reference.js'
import { randomArray } from '../../helpers/reference.js'
import { lazy, type OpCase } from '../backend_ops.js'
import { paddedRows } from './packing.js'

const N = () => native()

interface Shape {
  seq: number
  heads: number
  headDim: number
  lengths: number[]
  p: number
  seed: bigint
  offset: bigint
  size: OpCase['size']
}

/** [tokens * hidden] packed rows of a padded [batch * seq, hidden] array, and back. */
function gather(padded: Float64Array, rows: number[], hidden: number): Float64Array {
  const out = new Float64Array(rows.length * hidden)
  rows.forEach((r, t) => out.set(padded.subarray(r * hidden, (r + 1) * hidden), t * hidden))
  return out
}
function scatter(packed: Float64Array, rows: number[], hidden: number, total: number): Float64Array {
  const out = new Float64Array(total * hidden)
  rows.forEach((r, t) => out.set(packed.subarray(t * hidden, (t + 1) * hidden), r * hidden))
  return out
}

export function varlenAttentionCases(): OpCase[] {
  const shapes: Shape[] = [
    { seq: 9, heads: 3, headDim: 8, lengths: [9, 4, 1, 7], p: 0, seed: 0n, offset: 0n, size: 'quick' },
    { seq: 37, heads: 2, headDim: 24, lengths: [37, 26, 5], p: 0.1, seed: 0xfeedface12345678n, offset: 0xfffffff0n, size: 'quick' },
    { seq: 5, heads: 1, headDim: 7, lengths: [3, 5], p: 0.5, seed: 9n, offset: 0n, size: 'quick' },
    { seq: 64, heads: 12, headDim: 32, lengths: [64, 30, 12, 45, 1, 64, 33, 40], p: 0.1, seed: 42n, offset: 99n, size: 'full' },
  ]
  const cases: OpCase[] = []
  let seed = 9500
  for (const sh of shapes) {
    const batch = sh.lengths.length
    const c: AttentionCase = { name: '', batch, seq: sh.seq, heads: sh.heads, headDim: sh.headDim, mask: maskRows(sh.seq, sh.lengths), p: sh.p, seed: sh.seed, offset: sh.offset }
    const hidden = sh.heads * sh.headDim
    const rows = paddedRows(sh.seq, sh.lengths)
    const tokens = rows.length
    const cu = [0]
    for (const len of sh.lengths) cu.push(cu[cu.length - 1] + len)
    const probsLength = sh.heads * sh.lengths.reduce((a, l) => a + l * l, 0)
    const n = tokens * hidden
    const s = (seed += 7)
    const data = lazy(() => ({
      q: randomArray(n, s, -4, 4), k: randomArray(n, s + 1, -2, 2), v: randomArray(n, s + 2), g: randomArray(n, s + 3),
      init: { dq: randomArray(n, s + 4), dk: randomArray(n, s + 5), dv: randomArray(n, s + 6) },
    }))
    const reference = lazy(() => {
      const x = data()
      const total = batch * sh.seq
      const padded = { q: scatter(x.q, rows, hidden, total), k: scatter(x.k, rows, hidden, total), v: scatter(x.v, rows, hidden, total) }
      const factor = dropoutFactors(c)
      const fwd = referenceForward(c, padded, factor)
      const grads = referenceBackward(c, padded, factor, fwd.probs, scatter(x.g, rows, hidden, total))
      // The real [heads, L, L] blocks of probs, sequence after sequence.
      const probs = new Float64Array(probsLength)
      let at = 0
      sh.lengths.forEach((len, b) => {
        for (let h = 0; h < sh.heads; h++) {
          for (let i = 0; i < len; i++) {
            for (let j = 0; j < len; j++) probs[at++] = fwd.probs[((b * sh.heads + h) * sh.seq + i) * sh.seq + j]
          }
        }
      })
      return { out: gather(fwd.out, rows, hidden), probs, dq: gather(grads.dq, rows, hidden), dk: gather(grads.dk, rows, hidden), dv: gather(grads.dv, rows, hidden) }
    })
    const what = `lengths ${sh.lengths.join('/')} of ${sh.seq}, ${sh.heads}x${sh.headDim} p=${sh.p}`
    const forward = (io: Parameters<OpCase['setup']>[0]) => {
      const x = data()
      const q = io.f32(x.q), k = io.f32(x.k), v = io.f32(x.v), cuB = io.i32(cu), probs = io.nan(probsLength), out = io.nan(n)
      const call = () => N().varlenAttentionForward(batch, sh.seq, sh.heads, sh.headDim, scaleOf(c), sh.p, sh.seed, sh.offset, cuB, q, k, v, probs, out)
      return { q, k, v, cuB, probs, out, call }
    }
    cases.push({
      op: 'varlenAttentionForward', label: what, size: sh.size,
      setup: (io) => {
        const f = forward(io)
        return { call: f.call, outputs: { out: f.out, probs: f.probs } }
      },
      reference: () => ({ out: reference().out, probs: reference().probs }),
      tolerance: { out: { rtol: 1e-5, atol: 2e-6 }, probs: { rtol: 1e-5, atol: 1e-7 } },
    })
    for (const which of [['dq', 'dk', 'dv'], ['dk'], ['dq', 'dv']] as Array<Array<'dq' | 'dk' | 'dv'>>) {
      cases.push({
        op: 'varlenAttentionBackward', label: `${what}, ${which.join(' ')}, into random`, size: sh.size,
        setup: (io) => {
          const f = forward(io)
          const { init, g } = data()
          const grads = { dq: io.f32(init.dq), dk: io.f32(init.dk), dv: io.f32(init.dv) }
          const pick = (name: 'dq' | 'dk' | 'dv') => (which.includes(name) ? grads[name] : null)
          const dout = io.f32(g)
          const backward = () => N().varlenAttentionBackward(batch, sh.seq, sh.heads, sh.headDim, scaleOf(c), sh.p, sh.seed, sh.offset, f.cuB,
            f.q, f.k, f.v, f.probs, dout, pick('dq'), pick('dk'), pick('dv'))
          return { call: () => { f.call(); backward() }, outputs: grads }
        },
        reference: () => {
          const { init } = data()
          const out: Record<string, { values: Float64Array; scale: Float64Array }> = {}
          for (const name of ['dq', 'dk', 'dv'] as const) {
            const want = which.includes(name) ? reference()[name] : new Float64Array(n)
            const big = Math.max(maxAbs(want), 1e-3)
            const start = init[name]
            out[name] = { values: start.map((v, i) => v + want[i]), scale: want.map((w, i) => 1e-4 * Math.abs(w) + 1e-6 * big + 2e-7 + 1.2e-7 * Math.abs(start[i] + w)) }
          }
          return out
        },
        tolerance: { rtol: 1, atol: 0 },
      })
    }
  }
  return cases
}
