// Cases of masked max pooling (the "max" classification head): random values,
// values from a few levels (ties in almost every column), NaN sprinkled in,
// padded rows of every length including none. out and argmax must equal the
// float64 reference exactly, and dh too (one addition per element); the
// references are shared with pooling.test.ts.
import { native } from '../../../lib/native.js'
import { randomArray, rng } from '../../helpers/reference.js'
import { lazy, type OpCase } from '../backend_ops.js'

const N = () => native()
const FULL = 1e9

/**
 * Written differently from the kernels on purpose: per (b, d), the first NaN
 * among the tokens if there is one, else the first token holding the maximum.
 * A row with no token: value 0, index -1.
 */
export function maxPool(batch: number, seq: number, dim: number, h: ArrayLike<number>, mask: ArrayLike<number>) {
  const out = new Float64Array(batch * dim)
  const argmax = new Int32Array(batch * dim).fill(-1)
  for (let b = 0; b < batch; b++) {
    const tokens = Array.from({ length: seq }, (_, s) => s).filter((s) => mask[b * seq + s] !== 0)
    for (let d = 0; d < dim; d++) {
      const at = (s: number) => h[(b * seq + s) * dim + d]
      const firstNaN = tokens.find((s) => Number.isNaN(at(s)))
      let pick = firstNaN ?? -1
      if (pick < 0 && tokens.length > 0) {
        const max = Math.max(...tokens.map(at))
        pick = tokens.find((s) => at(s) === max)!
      }
      argmax[b * dim + d] = pick
      out[b * dim + d] = pick < 0 ? 0 : at(pick)
    }
  }
  return { out, argmax }
}

/** start + dout scattered to the arg-max tokens; `round`: each addition rounded to float32, as the kernel does it. */
export function maxPoolGrad(batch: number, seq: number, dim: number, argmax: ArrayLike<number>, dout: ArrayLike<number>,
  start: ArrayLike<number>, round = false): Float64Array {
  const dh = Float64Array.from(start)
  for (let b = 0; b < batch; b++) {
    for (let d = 0; d < dim; d++) {
      const s = argmax[b * dim + d]
      if (s < 0) continue
      const at = (b * seq + s) * dim + d
      dh[at] = round ? Math.fround(dh[at] + dout[b * dim + d]) : dh[at] + dout[b * dim + d]
    }
  }
  return dh
}

/** A [batch, seq] mask of right padding to the given lengths (longer than seq: full). */
export function lengthsMask(seq: number, lengths: number[]): number[] {
  return lengths.flatMap((len) => Array.from({ length: seq }, (_, s) => (s < len ? 1 : 0)))
}

export function poolingCases(): OpCase[] {
  const cases: OpCase[] = []
  let seed = 9000
  const mixed = Array.from({ length: 16 }, (_, i) => 1 + ((i * 37) % 128))
  // [batch, seq, dim, lengths, levels (0: continuous), NaN rate, size]
  const shapes: Array<[number, number, number, number[], number, number, OpCase['size']]> = [
    [3, 9, 7, [9, 4, 1], 0, 0, 'quick'], [2, 5, 1, [5, 2], 0, 0, 'quick'], [4, 33, 384, [33, 20, 1, 32], 0, 0, 'quick'],
    [1, 1, 7, [1], 0, 0, 'quick'], [16, 128, 768, mixed, 0, 0, 'quick'],
    [3, 37, 72, [FULL, 20, 0], 0, 0.01, 'quick'], [2, 5, 1, [5, 1], 3, 0, 'quick'], [4, 9, 7, [9, 0, 3, 1], 2, 0.05, 'quick'],
    [16, 128, 768, [FULL, 100, 64, 0, 17, 128, 1, 90, 33, 127, FULL, 5, 77, 64, 12, 0], 0, 0, 'full'],
    [16, 128, 768, [FULL, 100, 64, 3, 17, 128, 1, 90, 33, 127, FULL, 5, 77, 64, 12, 2], 4, 0.001, 'full'],
    [1, 512, 384, [300], 0, 0, 'full'],
  ]
  for (const [batch, seq, dim, lengths, levels, nanRate, size] of shapes) {
    const s = (seed += 4)
    const data = lazy(() => {
      const r = rng(s)
      const mask = lengthsMask(seq, lengths)
      const h = randomArray(batch * seq * dim, s + 1)
      for (let i = 0; i < h.length; i++) {
        if (levels) h[i] = Math.floor(r() * levels) - 1
        if (r() < nanRate) h[i] = NaN
        if (!mask[Math.floor(i / dim)]) h[i] = 5 + (i % 3)  // padded slots larger than any token: must be ignored
      }
      return { mask, h, dout: randomArray(batch * dim, s + 2), dh0: randomArray(batch * seq * dim, s + 3) }
    })
    const reference = lazy(() => maxPool(batch, seq, dim, data().h, data().mask))
    const what = `[${batch}, ${seq}, ${dim}]${levels ? `, ${levels} levels (ties)` : ''}${nanRate ? `, NaN ${nanRate}` : ''}` +
      `${lengths.includes(0) ? ', empty rows' : ''}, lengths ${lengths.length > 4 ? 'mixed' : lengths.map((l) => (l >= seq ? 'full' : l)).join(' ')}`
    const forward = (io: Parameters<OpCase['setup']>[0]) => {
      const h = io.f32(data().h), mask = io.i32(data().mask), out = io.nan(batch * dim)
      const argmax = io.i32(new Int32Array(batch * dim).fill(-7))  // no op writes -7: a forgotten element shows
      return { out, argmax, call: () => N().maskedMaxPoolForward(batch, seq, dim, h, mask, out, argmax) }
    }
    cases.push({
      op: 'maskedMaxPoolForward', label: what, size,
      setup: (io) => { const f = forward(io); return { call: f.call, outputs: { out: f.out, argmax: f.argmax } } },
      reference: () => ({ out: reference().out, argmax: reference().argmax }), tolerance: 'bits', parity: 'bits',
    })
    cases.push({
      op: 'maskedMaxPoolBackward', label: `${what}, into random, twice, then null`, size,
      setup: (io) => {
        const f = forward(io)
        const dout = io.f32(data().dout), dh = io.f32(data().dh0)
        const backward = (into: typeof dh | null) => N().maskedMaxPoolBackward(batch, seq, dim, f.argmax, dout, into)
        return { call: () => { f.call(); backward(dh); backward(dh); backward(null) }, outputs: { dh } }
      },
      reference: () => {
        const { argmax } = reference()
        const { dout, dh0 } = data()
        return { dh: maxPoolGrad(batch, seq, dim, argmax, dout, maxPoolGrad(batch, seq, dim, argmax, dout, dh0, true), true) }
      },
      tolerance: 'bits', parity: 'bits',
    })
  }
  return cases
}
