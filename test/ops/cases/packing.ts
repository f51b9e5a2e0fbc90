// Cases of the ops unpadded execution is built from: gathering and scattering
// rows (packing a padded batch's real tokens, unpacking them, picking [CLS]
// rows) and dropout of token rows drawing a padded layout's mask, against
// float64 references and the JavaScript Philox port.
import { native } from '../../../lib/native.js'
import { dropoutMask, keepScale } from '../../helpers/philox.js'
import { randomArray } from '../../helpers/reference.js'
import { lazy, type OpCase } from '../backend_ops.js'

const N = () => native()

/** The padded rows (b * seq + s) of the real tokens of a right-padded batch. */
export function paddedRows(seq: number, lengths: number[]): number[] {
  return lengths.flatMap((len, b) => Array.from({ length: len }, (_, s) => b * seq + s))
}

export function packingCases(): OpCase[] {
  const cases: OpCase[] = []
  let seed = 9000
  // [n, cols, srcRows, index]: a packing of lengths 5/1/3 out of 3 x 6 rows,
  // the [CLS] rows of that packing, and repeated indices (a scatter must add them all).
  const layouts: Array<[string, number, number, number[], OpCase['size']]> = [
    ['pack 3x6 -> 9', 37, 18, paddedRows(6, [5, 1, 3]), 'quick'],
    ['cls rows', 70, 9, [0, 5, 6], 'quick'],
    ['repeated rows', 3, 4, [2, 0, 2, 2, 3], 'quick'],
    ['pack 16x64 -> 600', 384, 1024, paddedRows(64, [64, 30, 1, 45, 12, 64, 33, 40, 20, 50, 60, 2, 40, 39, 50, 50]), 'full'],
  ]
  for (const [what, cols, srcRows, index, size] of layouts) {
    const n = index.length
    const s = (seed += 3)
    const data = lazy(() => ({ src: randomArray(srcRows * cols, s), dst0: randomArray(n * cols, s + 1), g: randomArray(n * cols, s + 2), d0: randomArray(srcRows * cols, s + 3) }))
    for (const accumulate of [false, true]) {
      cases.push({
        op: 'gatherRowsForward', label: `${what}, ${n} x ${cols}${accumulate ? ', accumulate' : ''}`, size,
        setup: (io) => {
          const idx = io.i32(index), src = io.f32(data().src), dst = accumulate ? io.f32(data().dst0) : io.nan(n * cols)
          return { call: () => N().gatherRowsForward(n, cols, srcRows, idx, src, dst, accumulate), outputs: { dst } }
        },
        reference: () => {
          const { src, dst0 } = data()
          const want = new Float64Array(n * cols)
          const scale = new Float64Array(n * cols)
          for (let i = 0; i < n; i++) {
            for (let c = 0; c < cols; c++) {
              const a = accumulate ? dst0[i * cols + c] : 0, b = src[index[i] * cols + c]
              want[i * cols + c] = a + b
              scale[i * cols + c] = Math.abs(a) + Math.abs(b)
            }
          }
          // Copies are exact; a sum rounds once.
          return { dst: accumulate ? { values: want, scale } : Float64Array.from(want, Math.fround) }
        },
        tolerance: accumulate ? { rtol: 6e-8, atol: 1e-30 } : 'bits',
        parity: accumulate ? 1e-6 : 'bits',
      })
    }
    cases.push({
      op: 'gatherRowsBackward', label: `${what}, ${n} x ${cols}, into random`, size,
      setup: (io) => {
        const idx = io.i32(index), g = io.f32(data().g), d = io.f32(data().d0)
        return { call: () => N().gatherRowsBackward(n, cols, srcRows, idx, g, d), outputs: { dsrc: d } }
      },
      reference: () => {
        const { g, d0 } = data()
        const want = Float64Array.from(d0)
        const scale = d0.map(Math.abs)
        for (let i = 0; i < n; i++) {
          for (let c = 0; c < cols; c++) {
            want[index[i] * cols + c] += g[i * cols + c]
            scale[index[i] * cols + c] += Math.abs(g[i * cols + c])
          }
        }
        return { dsrc: { values: want, scale } }
      },
      // One rounding per repeated index at most.
      tolerance: { rtol: 4 * 6e-8, atol: 1e-30 },
      parity: 1e-6,
    })
  }

  // Dropout of token rows: rows of a padded [4, 7, cols] tensor, p > 0 and 0,
  // a counter range crossing 2^32 and a seed using both key words.
  const dseed = 0x0123456789abcdefn, doffset = 0xfffffff0n
  for (const [cols, p, lengths, size] of [[37, 0.1, [7, 2, 5, 1], 'quick'], [5, 0.5, [3, 7, 1, 6], 'quick'], [64, 0, [4, 4, 1, 7], 'quick'],
    [384, 0.1, [7, 3, 6, 2], 'full']] as const) {
    const seq = 7
    const rowIndex = paddedRows(seq, [...lengths])
    const rows = rowIndex.length
    const s = (seed += 3)
    const data = lazy(() => ({ x: randomArray(rows * cols, s, -2, 2), dy: randomArray(rows * cols, s + 1), dx0: randomArray(rows * cols, s + 2) }))
    // The padded tensor's mask, then the factor of each token row's element.
    const factor = lazy(() => {
      const mask = dropoutMask(lengths.length * seq * cols, p, dseed, doffset)
      const scale = keepScale(p)
      const f = new Float64Array(rows * cols)
      rowIndex.forEach((r, i) => { for (let c = 0; c < cols; c++) f[i * cols + c] = mask[r * cols + c] ? scale : 0 })
      return f
    })
    const what = `${rows} rows of [${lengths.length}, ${seq}, ${cols}] p=${p}`
    cases.push({
      op: 'dropoutRowsForward', label: what, size,
      setup: (io) => {
        const idx = io.i32(rowIndex), x = io.f32(data().x), y = io.nan(rows * cols)
        return { call: () => N().dropoutRowsForward(rows, cols, p, dseed, doffset, idx, x, y), outputs: { y } }
      },
      reference: () => ({ y: data().x.map((v, i) => Math.fround(v * factor()[i])) }),
      tolerance: 'bits', parity: 'bits',
    })
    cases.push({
      op: 'dropoutRowsBackward', label: `${what}, into random`, size,
      setup: (io) => {
        const idx = io.i32(rowIndex), dy = io.f32(data().dy), dx = io.f32(data().dx0)
        return { call: () => N().dropoutRowsBackward(rows, cols, p, dseed, doffset, idx, dy, dx), outputs: { dx } }
      },
      reference: () => {
        const { dy, dx0 } = data()
        const f = factor()
        return { dx: { values: dx0.map((v, i) => v + dy[i] * f[i]), scale: dx0.map((v, i) => Math.abs(v) + Math.abs(dy[i] * f[i])) } }
      },
      tolerance: { rtol: 2.5e-7, atol: 1e-30 },
    })
  }
  return cases
}
