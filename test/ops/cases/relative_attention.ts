// Cases of the pieces DeBERTa's disentangled attention is built from: the
// middle-axes swap, the column gather (repeated columns must all receive their
// gradient) and the two-sided masked softmax, with their float64 references
// (relative_attention.test.ts shares them for its finite differences).
import { native } from '../../../lib/native.js'
import { randomArray, rng } from '../../helpers/reference.js'
import { lazy, type OpCase } from '../backend_ops.js'

const N = () => native()

/** dst[o, c, r, i] = src[o, r, c, i]. */
export function swapAxes(outer: number, rows: number, cols: number, inner: number, src: ArrayLike<number>): Float64Array {
  const out = new Float64Array(src.length)
  for (let o = 0; o < outer; o++) for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) for (let i = 0; i < inner; i++) {
    out[((o * cols + c) * rows + r) * inner + i] = src[((o * rows + r) * cols + c) * inner + i]
  }
  return out
}

/** out[n, s, t] = x[n, s, index[s, t]]. */
export function gatherColumns(batch: number, rows: number, width: number, picks: number, x: ArrayLike<number>,
  index: ArrayLike<number>): Float64Array {
  const out = new Float64Array(batch * rows * picks)
  for (let n = 0; n < batch; n++) for (let s = 0; s < rows; s++) for (let p = 0; p < picks; p++) {
    out[(n * rows + s) * picks + p] = x[(n * rows + s) * width + index[s * picks + p]]
  }
  return out
}

/** start[n, s, index[s, t]] += dout[n, s, t]. */
export function scatterColumns(batch: number, rows: number, width: number, picks: number, index: ArrayLike<number>,
  dout: ArrayLike<number>, start: ArrayLike<number>): Float64Array {
  const out = Float64Array.from(start)
  for (let n = 0; n < batch; n++) for (let s = 0; s < rows; s++) for (let p = 0; p < picks; p++) {
    out[(n * rows + s) * width + index[s * picks + p]] += dout[(n * rows + s) * picks + p]
  }
  return out
}

const FLOAT32_MIN = -3.4028234663852886e38

/** softmax(scale * x) per row, elements whose query or key is masked set to finfo(float32).min first. */
export function maskedSoftmax(groups: number, batch: number, seq: number, scale: number, x: ArrayLike<number>,
  mask: ArrayLike<number>): Float64Array {
  const out = new Float64Array(x.length)
  for (let row = 0; row < groups * batch * seq; row++) {
    const b = Math.floor(row / seq) % batch, i = row % seq
    const v = Array.from({ length: seq }, (_, j) => (mask[b * seq + i] && mask[b * seq + j] ? scale * x[row * seq + j] : FLOAT32_MIN))
    const max = Math.max(...v)
    const e = v.map((y) => Math.exp(y - max))
    const total = e.reduce((s, y) => s + y, 0)
    for (let j = 0; j < seq; j++) out[row * seq + j] = e[j] / total
  }
  return out
}

/** start + scale * p * (dp - rowsum(p * dp)) where kept, start elsewhere. */
export function maskedSoftmaxBackward(groups: number, batch: number, seq: number, scale: number, p: ArrayLike<number>,
  dp: ArrayLike<number>, mask: ArrayLike<number>, start: ArrayLike<number>): Float64Array {
  const out = Float64Array.from(start)
  for (let row = 0; row < groups * batch * seq; row++) {
    const b = Math.floor(row / seq) % batch, i = row % seq
    let dot = 0
    for (let j = 0; j < seq; j++) dot += p[row * seq + j] * dp[row * seq + j]
    for (let j = 0; j < seq; j++) {
      if (mask[b * seq + i] && mask[b * seq + j]) out[row * seq + j] += scale * p[row * seq + j] * (dp[row * seq + j] - dot)
    }
  }
  return out
}

/** A relative-position-like index: clamped, so columns repeat within a row. */
export function someIndex(rows: number, picks: number, width: number, seed: number): Int32Array {
  const r = rng(seed)
  return Int32Array.from({ length: rows * picks }, (_, e) => {
    const s = Math.floor(e / picks), p = e % picks
    return r() < 0.2 ? Math.floor(r() * width) : Math.min(width - 1, Math.max(0, s - p + (width >> 1)))
  })
}

/** Masks of the masked-softmax cases: every token real, or rows padded by 3 more each and the last fully padded. */
export const SOFTMAX_MASKS: Record<string, (batch: number, seq: number) => number[]> = {
  'all real': (batch, seq) => new Array(batch * seq).fill(1),
  'padded rows, one fully padded': (batch, seq) => Array.from({ length: batch * seq }, (_, e) => {
    const b = Math.floor(e / seq), j = e % seq
    return b === batch - 1 && batch > 1 ? 0 : j < Math.max(1, seq - 3 * b) ? 1 : 0
  }),
}

export function relativeAttentionCases(): OpCase[] {
  const cases: OpCase[] = []
  let seed = 8000
  for (const [outer, rows, cols, inner, size] of [[1, 37, 3, 16, 'quick'], [6, 5, 7, 1, 'quick'], [2, 1, 4, 3, 'quick'],
    [3, 4, 1, 2, 'quick'], [16, 128, 12, 64, 'full']] as const) {
    const n = outer * rows * cols * inner
    const s = (seed += 3)
    const data = lazy(() => ({ src: randomArray(n, s), ddst: randomArray(n, s + 1), start: randomArray(n, s + 2) }))
    const what = `[${outer}, ${rows}, ${cols}, ${inner}]`
    cases.push({
      op: 'swapAxesForward', label: what, size,
      setup: (io) => {
        const src = io.f32(data().src), dst = io.nan(n)
        return { call: () => N().swapAxesForward(outer, rows, cols, inner, src, dst), outputs: { dst } }
      },
      reference: () => ({ dst: swapAxes(outer, rows, cols, inner, data().src) }), tolerance: 'bits', parity: 'bits',
    })
    cases.push({
      op: 'swapAxesBackward', label: `${what}, into random`, size,
      setup: (io) => {
        const ddst = io.f32(data().ddst), dsrc = io.f32(data().start)
        return { call: () => N().swapAxesBackward(outer, rows, cols, inner, ddst, dsrc), outputs: { dsrc } }
      },
      // The inverse swap, added on: one rounding per element.
      reference: () => ({ dsrc: swapAxes(outer, cols, rows, inner, data().ddst).map((v, i) => Math.fround(v + data().start[i])) }),
      tolerance: 'bits', parity: 'bits',
    })
  }

  for (const [batch, rows, width, picks, size] of [[6, 37, 16, 37, 'quick'], [1, 1, 5, 1, 'quick'], [4, 9, 3, 12, 'quick'],
    [2, 300, 64, 300, 'quick'], [12, 128, 256, 128, 'full']] as const) {
    const s = (seed += 4)
    const data = lazy(() => ({
      index: someIndex(rows, picks, width, s), x: randomArray(batch * rows * width, s + 1),
      dout: randomArray(batch * rows * picks, s + 2), start: randomArray(batch * rows * width, s + 3),
    }))
    const what = `[${batch}, ${rows}, ${width}] by [${rows}, ${picks}]`
    cases.push({
      op: 'gatherColumnsForward', label: what, size,
      setup: (io) => {
        const x = io.f32(data().x), index = io.i32(data().index), out = io.nan(batch * rows * picks)
        return { call: () => N().gatherColumnsForward(batch, rows, width, picks, x, index, out), outputs: { out } }
      },
      reference: () => ({ out: gatherColumns(batch, rows, width, picks, data().x, data().index) }), tolerance: 'bits', parity: 'bits',
    })
    cases.push({
      op: 'gatherColumnsBackward', label: `${what}, repeats included, into random`, size,
      setup: (io) => {
        const index = io.i32(data().index), dout = io.f32(data().dout), dx = io.f32(data().start)
        return { call: () => N().gatherColumnsBackward(batch, rows, width, picks, index, dout, dx), outputs: { dx } }
      },
      reference: () => ({ dx: scatterColumns(batch, rows, width, picks, data().index, data().dout, data().start) }),
      tolerance: { rtol: 1e-6, atol: 1e-6 },
    })
  }

  for (const [groups, batch, seq, size] of [[3, 2, 37, 'quick'], [1, 1, 1, 'quick'], [2, 3, 5, 'quick'], [4, 2, 130, 'quick'],
    [12, 16, 128, 'full']] as const) {
    for (const [maskName, makeMask] of Object.entries(SOFTMAX_MASKS)) {
      const n = groups * batch * seq * seq
      const scale = 1 / Math.sqrt(3 * 16)
      const s = (seed += 3)
      const data = lazy(() => ({ x: randomArray(n, s, -8, 8), mask: makeMask(batch, seq), dp: randomArray(n, s + 1), start: randomArray(n, s + 2) }))
      const probs = lazy(() => maskedSoftmax(groups, batch, seq, scale, data().x, data().mask))
      const what = `[${groups}, ${batch}, ${seq}, ${seq}], ${maskName}`
      const forward = (io: Parameters<OpCase['setup']>[0]) => {
        const x = io.f32(data().x), mask = io.i32(data().mask), p = io.nan(n)
        return { mask, p, call: () => N().maskedSoftmaxForward(groups, batch, seq, scale, x, mask, p) }
      }
      cases.push({
        op: 'maskedSoftmaxForward', label: what, size,
        setup: (io) => { const f = forward(io); return { call: f.call, outputs: { probs: f.p } } },
        reference: () => ({ probs: probs() }), tolerance: { rtol: 1e-5, atol: 1e-7 },
      })
      cases.push({
        op: 'maskedSoftmaxBackward', label: `${what}, into random`, size,
        setup: (io) => {
          const f = forward(io)
          const dp = io.f32(data().dp), dx = io.f32(data().start)
          return { call: () => { f.call(); N().maskedSoftmaxBackward(groups, batch, seq, scale, f.p, dp, f.mask, dx) }, outputs: { dx } }
        },
        reference: () => ({ dx: maskedSoftmaxBackward(groups, batch, seq, scale, probs(), data().dp, data().mask, data().start) }),
        tolerance: { rtol: 1e-5, atol: 1e-6 },
      })
    }
  }
  return cases
}
