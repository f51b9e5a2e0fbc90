// Cases of the materialised attention op and the fused (flash) one: padded
// and all-padding batch rows, dropout, odd head sizes and ragged tiles,
// against the float64 reference of test/helpers/attention_reference.ts.
// attention.test.ts and flash_attention.test.ts add finite differences, the
// fused op against the materialised one, and bad input.
import { native } from '../../../lib/native.js'
import { dropoutFactors, maskRows, maxAbs, referenceBackward, referenceForward, scaleOf, type AttentionCase } from '../../helpers/attention_reference.js'
import { randomArray } from '../../helpers/reference.js'
import { lazy, type DeviceIO, type OpCase } from '../backend_ops.js'

const N = () => native()
const FULL = 1e9

type Grad = 'dq' | 'dk' | 'dv'

interface Shape {
  batch: number
  seq: number
  heads: number
  headDim: number
  /** valid keys per batch row (FULL: all of them) */
  lengths: number[]
  p: number
  seed: bigint
  offset: bigint
  size: OpCase['size']
}

/**
 * |err| allowed per element of a gradient, as attention.test.ts allows it:
 * 1e-4 relative, 1e-6 of the largest element, plus the rounding of adding to
 * the random start. Given as the reference's error scale with rtol 1.
 */
function gradientBound(want: Float64Array, start: Float64Array, extra = 0): Float64Array {
  const big = Math.max(maxAbs(want), 1e-3)
  return want.map((w, i) => 1e-4 * Math.abs(w) + 1e-6 * big + 2e-7 + 1.2e-7 * Math.abs(start[i] + w) + extra * Math.max(big, 1))
}

function attentionFamily(op: 'attention' | 'flashAttention', shapes: Shape[], seed: number): OpCase[] {
  const cases: OpCase[] = []
  const fused = op === 'flashAttention'
  for (const sh of shapes) {
    const c: AttentionCase = { name: '', batch: sh.batch, seq: sh.seq, heads: sh.heads, headDim: sh.headDim,
      mask: maskRows(sh.seq, sh.lengths.map((l) => Math.min(l, sh.seq))), p: sh.p, seed: sh.seed, offset: sh.offset }
    const n = c.batch * c.seq * c.heads * c.headDim
    const s = (seed += 7)
    const data = lazy(() => ({
      q: randomArray(n, s, -4, 4), k: randomArray(n, s + 1, -2, 2), v: randomArray(n, s + 2), g: randomArray(n, s + 3),
      init: { dq: randomArray(n, s + 4), dk: randomArray(n, s + 5), dv: randomArray(n, s + 6) },
    }))
    const reference = lazy(() => {
      const x = data()
      const factor = dropoutFactors(c)
      const fwd = referenceForward(c, x, factor)
      return { ...fwd, grads: referenceBackward(c, x, factor, fwd.probs, x.g) }
    })
    const what = `${c.batch}x${c.seq}x${c.heads}x${c.headDim} p=${c.p}, lengths ${sh.lengths.map((l) => (l >= c.seq ? 'full' : l)).join('/')}`
    const forward = (io: DeviceIO) => {
      const q = io.f32(data().q), k = io.f32(data().k), v = io.f32(data().v), mask = io.i32(c.mask), out = io.nan(n)
      const saved = io.nan(fused ? c.batch * c.heads * c.seq : c.batch * c.heads * c.seq * c.seq)
      const call = fused
        ? () => N().flashAttentionForward(c.batch, c.seq, c.heads, c.headDim, scaleOf(c), c.p, c.seed, c.offset, q, k, v, mask, saved, out)
        : () => N().attentionForward(c.batch, c.seq, c.heads, c.headDim, scaleOf(c), c.p, c.seed, c.offset, q, k, v, mask, saved, out)
      return { q, k, v, mask, out, saved, call }
    }
    const noReference = sh.size === 'big'
    cases.push({
      op: `${op}Forward`, label: what, size: sh.size,
      setup: (io) => {
        const f = forward(io)
        return { call: f.call, outputs: { out: f.out, [fused ? 'lse' : 'probs']: f.saved } }
      },
      reference: noReference ? undefined : () => {
        const r = reference()
        return { out: r.out, [fused ? 'lse' : 'probs']: fused ? r.lse : r.probs }
      },
      tolerance: { out: { rtol: 1e-5, atol: 2e-6 }, probs: { rtol: 1e-5, atol: 1e-7 }, lse: { rtol: 1e-6, atol: 2e-6 } },
    })
    for (const which of [['dq', 'dk', 'dv'], ['dk'], ['dq', 'dv']] as Grad[][]) {
      const all = which.length === 3
      if (!all && (sh.size !== 'full' || c.seq > 130)) continue
      cases.push({
        op: `${op}Backward`, label: `${what}, ${which.join(' ')}, into random`, size: sh.size,
        setup: (io) => {
          const f = forward(io)
          const { init, g } = data()
          const grads = { dq: io.f32(init.dq), dk: io.f32(init.dk), dv: io.f32(init.dv) }
          const pick = (name: Grad) => (which.includes(name) ? grads[name] : null)
          const dout = io.f32(g)
          const backward = fused
            ? () => N().flashAttentionBackward(c.batch, c.seq, c.heads, c.headDim, scaleOf(c), c.p, c.seed, c.offset, f.q, f.k, f.v,
              f.mask, f.saved, f.out, dout, pick('dq'), pick('dk'), pick('dv'))
            : () => N().attentionBackward(c.batch, c.seq, c.heads, c.headDim, scaleOf(c), c.p, c.seed, c.offset, f.q, f.k, f.v,
              f.saved, dout, pick('dq'), pick('dk'), pick('dv'))
          return { call: () => { f.call(); backward() }, outputs: grads }  // those not asked for come back unchanged
        },
        reference: noReference ? undefined : () => {
          const { init } = data()
          const out: Record<string, { values: Float64Array; scale: Float64Array }> = {}
          for (const name of ['dq', 'dk', 'dv'] as const) {
            const want = which.includes(name) ? reference().grads[name] : new Float64Array(n)
            // The fused backward takes D = <dO, O> from the rounded output
            // (flash_attention.test.ts's gradientAtol): 4e-6 more for dq, dk.
            out[name] = { values: init[name].map((v, i) => v + want[i]), scale: gradientBound(want, init[name], fused && name !== 'dv' ? 4e-6 : 0) }
          }
          return out
        },
        tolerance: { rtol: 1, atol: 0 },
      })
    }
  }
  return cases
}

export function attentionCases(): OpCase[] {
  const materialised: Shape[] = [
    { batch: 3, seq: 37, heads: 3, headDim: 24, lengths: [FULL, 26, 0], p: 0, seed: 0n, offset: 0n, size: 'quick' },
    { batch: 3, seq: 37, heads: 3, headDim: 24, lengths: [FULL, 26, 0], p: 0.1, seed: 0xfeedface12345678n, offset: 0xfffffff0n, size: 'quick' },
    { batch: 2, seq: 1, heads: 3, headDim: 24, lengths: [1, 0], p: 0.5, seed: 5n, offset: 17n, size: 'quick' },
    { batch: 2, seq: 5, heads: 1, headDim: 7, lengths: [3, 5], p: 0.3, seed: 9n, offset: 0n, size: 'quick' },
    { batch: 16, seq: 128, heads: 12, headDim: 64, lengths: [FULL, 100, 64, 0, 17, 128, 1, 90, 33, 127, FULL, 5, 77, 64, 12, 0],
      p: 0.1, seed: 42n, offset: 123456n, size: 'big' },
    { batch: 2, seq: 512, heads: 2, headDim: 64, lengths: [FULL, 300], p: 0, seed: 0n, offset: 0n, size: 'big' },
  ]
  // seq 1, 37 (ragged tile), 64, 128 and 512 (8 key tiles); head_dim 32 and 64
  // (BERT, MiniLM) plus 24, 72 and 128 (padded to the kernels' widths).
  const flash: Shape[] = [
    { batch: 3, seq: 37, heads: 3, headDim: 24, lengths: [FULL, 26, 0], p: 0.1, seed: 0xfeedface12345678n, offset: 0xfffffff0n, size: 'quick' },
    { batch: 2, seq: 1, heads: 3, headDim: 32, lengths: [1, 0], p: 0.5, seed: 5n, offset: 17n, size: 'quick' },
    { batch: 2, seq: 130, heads: 2, headDim: 72, lengths: [FULL, 70], p: 0.1, seed: 11n, offset: 3n, size: 'quick' },
  ]
  for (const headDim of [32, 64]) {
    flash.push({ batch: 2, seq: 1, heads: 2, headDim, lengths: [FULL, 1], p: 0.1, seed: 3n, offset: 9n, size: 'full' })
    flash.push({ batch: 3, seq: 37, heads: 2, headDim, lengths: [FULL, 20, 0], p: 0.1, seed: 4n, offset: 0n, size: 'full' })
    flash.push({ batch: 4, seq: 64, heads: 3, headDim, lengths: [FULL, 64, 33, 1], p: 0, seed: 0n, offset: 0n, size: 'full' })
    flash.push({ batch: 4, seq: 128, heads: 4, headDim, lengths: [FULL, 100, 0, 65], p: 0.1, seed: 42n, offset: 123456n, size: 'full' })
    flash.push({ batch: 2, seq: 512, heads: 2, headDim, lengths: [FULL, 300], p: 0.1, seed: 7n, offset: 1n, size: 'big' })
  }
  flash.push({ batch: 2, seq: 200, heads: 2, headDim: 128, lengths: [FULL, 150], p: 0.1, seed: 8n, offset: 2n, size: 'full' })
  return [...attentionFamily('attention', materialised, 7000), ...attentionFamily('flashAttention', flash, 7500)]
}
