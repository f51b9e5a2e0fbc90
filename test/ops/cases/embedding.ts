// Cases of the embedding op: gather forward bit for bit, scatter-add backward
// (every repeat of an id lands; the padding index sends nothing), and the
// float64 references embedding.test.ts shares.
import { native } from '../../../lib/native.js'
import { randomArray, rng } from '../../helpers/reference.js'
import { lazy, type OpCase } from '../backend_ops.js'

const N = () => native()

export function gather(n: number, dim: number, ids: ArrayLike<number>, table: ArrayLike<number>): Float64Array {
  const out = new Float64Array(n * dim)
  for (let i = 0; i < n; i++) for (let c = 0; c < dim; c++) out[i * dim + c] = table[ids[i] * dim + c]
  return out
}

/** start + the rows of dout added at their ids, tokens whose id is paddingIdx left out. */
export function scatterAdd(n: number, dim: number, ids: ArrayLike<number>, dout: ArrayLike<number>, start: ArrayLike<number>,
  paddingIdx = -1): Float64Array {
  const out = Float64Array.from(start)
  for (let i = 0; i < n; i++) {
    if (ids[i] === paddingIdx) continue
    for (let c = 0; c < dim; c++) out[ids[i] * dim + c] += dout[i * dim + c]
  }
  return out
}

export type IdKind = 'words' | 'types' | 'positions' | 'ones' | 'mixed'

/** ids in [0, vocab) shaped like a batch's: word ids with much padding (0) and [CLS] / [SEP], segment ids, positions. */
export function someIds(n: number, vocab: number, seed: number, kind: IdKind = 'mixed'): Int32Array {
  const r = rng(seed)
  return Int32Array.from({ length: n }, (_, i) => {
    if (kind === 'positions') return i % Math.min(128, vocab)
    if (kind === 'types') return r() < 0.8 ? 0 : 1
    if (kind === 'ones') return 1 % vocab
    if (kind === 'mixed') return r() < 0.3 ? 0 : r() < 0.3 ? Math.min(2, vocab - 1) : Math.floor(r() * vocab)
    return r() < 0.3 ? 0 : r() < 0.2 ? Math.min(101 + (r() < 0.5 ? 1 : 0), vocab - 1) : Math.floor(r() * vocab)
  })
}

export function embeddingCases(): OpCase[] {
  const cases: OpCase[] = []
  let seed = 6000
  const shapes: Array<[number, number, number, number, IdKind, OpCase['size']]> = [
    [37, 72, 11, -1, 'mixed', 'quick'], [1, 72, 3, -1, 'mixed', 'quick'], [37, 1, 5, -1, 'mixed', 'quick'], [4096, 768, 30, -1, 'mixed', 'quick'],
    [300, 72, 150, 0, 'words', 'quick'], [200, 16, 2, -1, 'types', 'quick'], [37, 5, 7, 3, 'words', 'quick'], [129, 1, 3, 1, 'words', 'quick'],
    [2048, 768, 28996, 0, 'words', 'full'], [2048, 768, 28996, -1, 'words', 'full'], [2048, 768, 2, -1, 'types', 'full'],
    [2048, 768, 512, -1, 'positions', 'full'], [5000, 64, 2, -1, 'ones', 'full'], [1, 3, 4, -1, 'words', 'full'],
  ]
  for (const [n, dim, vocab, pad, kind, size] of shapes) {
    const s = (seed += 4)
    const data = lazy(() => ({
      ids: someIds(n, vocab, s, kind), table: randomArray(vocab * dim, s + 1), dout: randomArray(n * dim, s + 2), t0: randomArray(vocab * dim, s + 3),
    }))
    const what = `${n} ${kind} ids, dim ${dim}, vocab ${vocab}${pad >= 0 ? `, padding ${pad}` : ''}`
    cases.push({
      op: 'embeddingForward', label: what, size,
      setup: (io) => {
        const ids = io.i32(data().ids), table = io.f32(data().table), out = io.nan(n * dim)
        return { call: () => N().embeddingForward(n, dim, vocab, ids, table, out), outputs: { out } }
      },
      reference: () => ({ out: gather(n, dim, data().ids, data().table) }), tolerance: 'bits', parity: 'bits',
    })
    cases.push({
      op: 'embeddingBackward', label: `${what}, into random, twice`, size,
      setup: (io) => {
        const ids = io.i32(data().ids), dout = io.f32(data().dout), dtable = io.f32(data().t0)
        const once = () => N().embeddingBackward(n, dim, vocab, ids, dout, dtable, pad)
        return { call: () => { once(); once() }, outputs: { dtable } }
      },
      reference: () => {
        const { ids, dout, t0 } = data()
        return { dtable: scatterAdd(n, dim, ids, dout, scatterAdd(n, dim, ids, dout, t0, pad), pad) }
      },
      tolerance: { rtol: 1e-6, atol: 2e-6 },
    })
  }
  return cases
}
