// Cases of the elementwise ops and reductions: fill, axpby, mul, addBiasRows,
// sumRows, sum, sumSquares, cast and the row slice (backend_ops.ts runs them).
import { native } from '../../../lib/native.js'
import { randomArray, rng } from '../../helpers/reference.js'
import { lazy, type OpCase } from '../backend_ops.js'

const N = () => native()

/** float32 bits of a float16 pattern widened exactly (NaN payloads kept). */
export function halfBitsToFloat(h: number): number {
  const sign = (h & 0x8000) << 16
  const exponent = (h >> 10) & 0x1f
  const mantissa = h & 0x3ff
  if (exponent === 31) return (sign | 0x7f800000 | (mantissa << 13)) >>> 0
  if (exponent === 0) {
    const magnitude = mantissa * 2 ** -24  // zero or subnormal: exact in float32
    return new Uint32Array(Float32Array.of(sign ? -magnitude : magnitude).buffer)[0]
  }
  return (sign | ((exponent + 112) << 23) | (mantissa << 13)) >>> 0
}

const asFloat32 = (bits: Uint32Array) => new Float32Array(bits.buffer)

export function elementwiseCases(): OpCase[] {
  const cases: OpCase[] = []
  let seed = 1000

  // 2^20 + 7 floats and up take the streaming-store fill (unaligned thread chunks, a tail).
  for (const [n, size] of [[1, 'quick'], [2664, 'quick'], [100003, 'quick'], [1000003, 'full'], [1048583, 'quick']] as const) {
    cases.push({
      op: 'fill', label: `n=${n}`, size,
      setup: (io) => { const x = io.nan(n); return { call: () => N().fill(x, n, -3.25), outputs: { x } } },
      reference: () => ({ x: new Float64Array(n).fill(-3.25) }), tolerance: 'bits', parity: 'bits',
    })
    for (const [alpha, beta] of [[1.5, 0], [-0.75, 1.25], [2, 1]]) {
      const s = (seed += 2)
      const data = lazy(() => ({ x: randomArray(n, s), y0: beta === 0 ? new Float64Array(n).fill(NaN) : randomArray(n, s + 1) }))
      cases.push({
        op: 'axpby', label: `n=${n} alpha=${alpha} beta=${beta}${beta === 0 ? ' over NaN' : ''}`, size,
        setup: (io) => {
          const { x, y0 } = data()
          const xb = io.f32(x), y = io.f32(y0)
          return { call: () => N().axpby(n, alpha, xb, beta, y), outputs: { y } }
        },
        reference: () => {
          const { x, y0 } = data()
          return {
            y: {
              values: x.map((v, i) => alpha * v + (beta === 0 ? 0 : beta * y0[i])),
              scale: x.map((v, i) => Math.abs(alpha * v) + (beta === 0 ? 0 : Math.abs(beta * y0[i]))),
            },
          }
        },
        // Two roundings at most (a fused multiply-add may skip one): 2 ulps of the terms.
        tolerance: { rtol: 2.5e-7, atol: 1e-30 },
      })
    }
    const s = (seed += 2)
    const ab = lazy(() => ({ a: randomArray(n, s), b: randomArray(n, s + 1) }))
    cases.push({
      op: 'mul', label: `n=${n}`, size,
      setup: (io) => {
        const a = io.f32(ab().a), b = io.f32(ab().b), out = io.nan(n)
        return { call: () => N().mul(n, a, b, out), outputs: { out } }
      },
      reference: () => ({ out: ab().a.map((v, i) => Math.fround(v * ab().b[i])) }), tolerance: 'bits', parity: 'bits',
    })
  }

  for (const [rows, cols, size] of [[37, 72, 'quick'], [1, 72, 'quick'], [37, 1, 'quick'], [1000, 300, 'quick'],
    [2048, 768, 'full'], [3000, 300, 'full']] as const) {
    const s = (seed += 2)
    const data = lazy(() => ({ bias: randomArray(cols, s), y0: randomArray(rows * cols, s + 1) }))
    cases.push({
      op: 'addBiasRows', label: `${rows}x${cols}`, size,
      setup: (io) => {
        const bias = io.f32(data().bias), y = io.f32(data().y0)
        return { call: () => N().addBiasRows(rows, cols, bias, y), outputs: { y } }
      },
      reference: () => ({ y: data().y0.map((v, i) => Math.fround(v + data().bias[i % cols])) }), tolerance: 'bits', parity: 'bits',
    })
  }

  for (const [rows, cols, size] of [[37, 72, 'quick'], [1, 72, 'quick'], [37, 1, 'quick'], [300, 5, 'quick'], [0, 5, 'quick'],
    [3000, 300, 'quick'], [2048, 3072, 'full'], [8192, 2, 'full'], [70000, 3, 'full']] as const) {
    const s = (seed += 2)
    const data = lazy(() => ({ x: randomArray(rows * cols, s), out0: randomArray(cols, s + 1) }))
    cases.push({
      op: 'sumRows', label: `${rows}x${cols} into random`, size,
      setup: (io) => {
        const x = io.f32(data().x), out = io.f32(data().out0)
        return { call: () => N().sumRows(rows, cols, x, out), outputs: { out } }
      },
      reference: () => {
        const { x, out0 } = data()
        const want = Float64Array.from(out0)
        for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) want[c] += x[r * cols + c]
        return { out: want }
      },
      // Summed in double and rounded once.
      tolerance: { rtol: 1e-6, atol: 1e-6 },
    })
  }

  for (const [n, size] of [[1, 'quick'], [37, 'quick'], [8193, 'quick'], [100003, 'quick'], [8192, 'full'], [1000003, 'full'],
    [1 << 22, 'full']] as const) {
    const s = ++seed
    const x = lazy(() => randomArray(n, s, -1, 3))
    for (const op of ['sum', 'sumSquares'] as const) {
      cases.push({
        op, label: `n=${n} into 0.5, twice`, size,
        setup: (io) => {
          const xb = io.f32(x()), out = io.f32([0.5])
          return { call: () => { N()[op](n, xb, out); N()[op](n, xb, out) }, outputs: { out } }
        },
        reference: () => ({ out: [x().reduce((acc, v) => acc + (op === 'sum' ? v : v * v), 0) * 2 + 0.5] }),
        // Accumulated in double, rounded to float32 once per call.
        tolerance: { rtol: 3e-7, atol: 0 },
      })
    }
  }
  cases.push({
    op: 'sum', label: 'n=0 adds nothing', size: 'quick',
    setup: (io) => {
      const x = io.f32([7]), out = io.f32([4])
      return { call: () => N().sum(0, x, out), outputs: { out } }
    },
    reference: () => ({ out: [4] }), tolerance: 'bits', parity: 'bits',
  })

  // ---- cast ----
  const all = lazy(() => Uint16Array.from({ length: 65536 }, (_, i) => i))
  for (const dtype of ['float16', 'bfloat16'] as const) {
    cases.push({
      op: 'cast', label: `${dtype} -> float32, all 65536 patterns`, size: 'quick',
      setup: (io) => {
        const src = io.half(dtype, all()), out = io.nan(65536)
        return { call: () => N().cast(65536, src, out), outputs: { out } }
      },
      reference: () => ({ out: asFloat32(Uint32Array.from(all(), (h) => (dtype === 'float16' ? halfBitsToFloat(h) : (h << 16) >>> 0))) }),
      tolerance: 'bits', parity: 'bits',
    })
  }
  for (const [n, size] of [[20000, 'quick'], [400000, 'full']] as const) {
    const s = ++seed
    // float32 over every exponent, NaN payloads included, plus the special values.
    const wide = lazy(() => {
      const r = rng(s)
      const values = asFloat32(Uint32Array.from({ length: n }, () => (r() * 4294967296) >>> 0))
      values.set([0, -0, Infinity, -Infinity, NaN, 65504, 65520, 65519.996, 6.1e-5, 5.96e-8, 2.98e-8, 1e-40, 3.4e38, -1.5,
        1 + 2 ** -8, 1 + 2 ** -11])
      return values
    })
    // Rounding to half precision is checked against a value-level model in
    // elementwise.test.ts; here the backends must agree bit for bit.
    for (const dtype of ['float16', 'bfloat16'] as const) {
      cases.push({
        op: 'cast', label: `float32 -> ${dtype}, ${n} values`, size,
        setup: (io) => {
          const src = io.f32(wide()), out = io.empty(dtype, n)
          return { call: () => N().cast(n, src, out), outputs: { out } }
        },
        parity: 'bits',
      })
    }
    cases.push({
      op: 'cast', label: `float32 -> float32, ${n} values`, size,
      setup: (io) => {
        const src = io.f32(wide()), out = io.nan(n)
        return { call: () => N().cast(n, src, out), outputs: { out } }
      },
      reference: () => ({ out: wide() }), tolerance: 'bits', parity: 'bits',
    })
  }
  // castSumRows: the cast and the column sums of one read; against cast + sumRows
  // bit for bit in elementwise.test.ts, CUDA against the CPU here.
  for (const [rows, cols, size] of [[37, 72, 'quick'], [1, 5, 'quick'], [433, 384, 'quick'], [2048, 1536, 'full']] as const) {
    const s = (seed += 2)
    const data = lazy(() => ({ x: randomArray(rows * cols, s, -3, 3), sums0: randomArray(cols, s + 1) }))
    for (const dtype of ['float16', 'bfloat16'] as const) {
      cases.push({
        op: 'castSumRows', label: `${rows}x${cols} -> ${dtype}, sums added`, size,
        setup: (io) => {
          const x = io.f32(data().x), dst = io.empty(dtype, rows * cols), sums = io.f32(data().sums0)
          return { call: () => N().castSumRows(rows, cols, x, dst, sums), outputs: { dst, sums } }
        },
        parity: 'bits',
      })
    }
  }

  // activationBackwardCastSumRows (GELU, as the feed-forward block runs it): CUDA against the CPU here; against
  // the unfused ops bit for bit in half_fusions.test.ts.
  for (const [rows, cols, size] of [[37, 72, 'quick'], [433, 1536, 'quick'], [2048, 3072, 'full']] as const) {
    const s = (seed += 3)
    const data = lazy(() => ({ h: randomArray(rows * cols, s, -4, 4), dy: randomArray(rows * cols, s + 1), sums0: randomArray(cols, s + 2) }))
    cases.push({
      op: 'activationBackwardCastSumRows', label: `gelu ${rows}x${cols} -> bfloat16, sums added`, size,
      setup: (io) => {
        const h = io.f32(data().h), dy = io.f32(data().dy), scratch = io.nan(rows * cols), dst = io.empty('bfloat16', rows * cols), sums = io.f32(data().sums0)
        return { call: () => N().activationBackwardCastSumRows(0, rows, cols, h, dy, scratch, dst, sums), outputs: { dst, sums } }
      },
      parity: 'bits',
    })
  }

  const ints = Int32Array.from([0, -5, 16777216, 16777217, 16777219, 2147483647, -2147483648,
    ...Array.from({ length: 1000 }, (_, i) => Math.imul(i, 2654435761))])
  cases.push({
    op: 'cast', label: `int32 -> float32, ${ints.length} values`, size: 'quick',
    setup: (io) => {
      const src = io.i32(ints), out = io.nan(ints.length)
      return { call: () => N().cast(ints.length, src, out), outputs: { out } }
    },
    reference: () => ({ out: Array.from(ints, Math.fround) }), tolerance: 'bits', parity: 'bits',
  })

  // ---- row slices ----
  for (const [batch, srcRows, cols, start, count, size] of [[2, 37, 72, 29, 8, 'quick'], [4, 9, 1, 8, 1, 'quick'],
    [2, 6, 5, 0, 6, 'quick'], [2, 1, 72, 0, 1, 'quick'], [16, 128, 768, 0, 1, 'full']] as const) {
    const s = (seed += 3)
    const data = lazy(() => ({
      x: randomArray(batch * srcRows * cols, s), g: randomArray(batch * count * cols, s + 1), d0: randomArray(batch * srcRows * cols, s + 2),
    }))
    const what = `[${batch}, ${srcRows}, ${cols}] rows ${start}+${count}`
    const at = (b: number, j: number, c: number) => (b * srcRows + start + j) * cols + c
    cases.push({
      op: 'sliceRowsForward', label: what, size,
      setup: (io) => {
        const src = io.f32(data().x), dst = io.nan(batch * count * cols)
        return { call: () => N().sliceRowsForward(batch, srcRows, cols, start, count, src, dst), outputs: { dst } }
      },
      reference: () => {
        const out = new Float64Array(batch * count * cols)
        for (let b = 0; b < batch; b++) for (let j = 0; j < count; j++) for (let c = 0; c < cols; c++) out[(b * count + j) * cols + c] = data().x[at(b, j, c)]
        return { dst: out }
      },
      tolerance: 'bits', parity: 'bits',
    })
    cases.push({
      op: 'sliceRowsBackward', label: `${what}, into random, twice`, size,
      setup: (io) => {
        const g = io.f32(data().g), dsrc = io.f32(data().d0)
        const once = () => N().sliceRowsBackward(batch, srcRows, cols, start, count, g, dsrc)
        return { call: () => { once(); once() }, outputs: { dsrc } }
      },
      reference: () => {
        const { g, d0 } = data()
        const out = Float64Array.from(d0)
        for (let b = 0; b < batch; b++) for (let j = 0; j < count; j++) for (let c = 0; c < cols; c++) {
          const v = g[(b * count + j) * cols + c]
          out[at(b, j, c)] = Math.fround(Math.fround(out[at(b, j, c)] + v) + v)
        }
        return { dsrc: out }
      },
      tolerance: 'bits', parity: 'bits',
    })
  }
  return cases
}
