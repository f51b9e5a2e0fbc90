// Cases of LayerNorm (with and without the fused residual add), and its
// float64 reference (forward also used by layernorm.test.ts's finite
// differences).
import { native, type NativeBuffer } from '../../../lib/native.js'
import { randomArray } from '../../helpers/reference.js'
import { lazy, type OpCase } from '../backend_ops.js'

const N = () => native()

export interface LayerNormOut { y: Float64Array; mean: Float64Array; rstd: Float64Array; sum: Float64Array }

/**
 * torch.nn.functional.layer_norm over the last dim, biased variance, of
 * x + residual. `roundSum` rounds that sum to float32 the way a separate torch
 * add would (what the kernel does); finite differences need it off to stay smooth.
 */
export function layerNorm(rows: number, cols: number, eps: number, x: Float64Array, residual: Float64Array | null,
  gamma: Float64Array, beta: Float64Array, roundSum: boolean): LayerNormOut {
  const sum = x.map((v, i) => (residual ? (roundSum ? Math.fround(v + residual[i]) : v + residual[i]) : v))
  const y = new Float64Array(rows * cols)
  const mean = new Float64Array(rows)
  const rstd = new Float64Array(rows)
  for (let r = 0; r < rows; r++) {
    const row = sum.subarray(r * cols, (r + 1) * cols)
    const mu = row.reduce((a, b) => a + b, 0) / cols
    const variance = row.reduce((a, b) => a + (b - mu) ** 2, 0) / cols
    const s = 1 / Math.sqrt(variance + eps)
    mean[r] = mu
    rstd[r] = s
    for (let c = 0; c < cols; c++) y[r * cols + c] = (row[c] - mu) * s * gamma[c] + beta[c]
  }
  return { y, mean, rstd, sum }
}

/**
 * The gradients of sum(dy * layer_norm(input)) in float64, analytic, added to
 * the starting values: dgamma += sum_r dy * xhat, dbeta += sum_r dy,
 * dx += rstd * (g - mean(g) - xhat * mean(g * xhat)) with g = dy * gamma.
 */
export function layerNormBackward(rows: number, cols: number, eps: number, input: Float64Array, gamma: Float64Array,
  dy: Float64Array, start: { dx: Float64Array; dgamma: Float64Array; dbeta: Float64Array }) {
  const dx = Float64Array.from(start.dx), dgamma = Float64Array.from(start.dgamma), dbeta = Float64Array.from(start.dbeta)
  for (let r = 0; r < rows; r++) {
    const row = input.subarray(r * cols, (r + 1) * cols)
    const mu = row.reduce((a, b) => a + b, 0) / cols
    const s = 1 / Math.sqrt(row.reduce((a, b) => a + (b - mu) ** 2, 0) / cols + eps)
    let meanG = 0, meanGx = 0
    for (let c = 0; c < cols; c++) {
      const xhat = (row[c] - mu) * s, g = dy[r * cols + c] * gamma[c]
      meanG += g / cols
      meanGx += (g * xhat) / cols
      dgamma[c] += dy[r * cols + c] * xhat
      dbeta[c] += dy[r * cols + c]
    }
    for (let c = 0; c < cols; c++) {
      const xhat = (row[c] - mu) * s, g = dy[r * cols + c] * gamma[c]
      dx[r * cols + c] += s * (g - meanG - xhat * meanGx)
    }
  }
  return { dx, dgamma, dbeta }
}

type Grad = 'dx' | 'dgamma' | 'dbeta'

export function layerNormCases(): OpCase[] {
  const cases: OpCase[] = []
  let seed = 5000
  const shapes: Array<[number, number, number, boolean, number, OpCase['size']]> = [
    [37, 72, 1e-12, false, 0, 'quick'], [37, 72, 1e-5, true, 5, 'quick'], [1, 72, 1e-12, true, 0, 'quick'],
    [37, 1, 1e-5, false, 0, 'quick'], [2, 768, 1e-12, true, 0, 'quick'], [3, 4099, 1e-5, false, 0, 'quick'],
    [2048, 768, 1e-12, true, 0, 'full'], [5, 1, 1e-5, false, 0, 'full'], [3, 4099, 1e-12, true, 0, 'full'], [600, 33, 1e-5, false, 0, 'full'],
  ]
  for (const [rows, cols, eps, residual, offset, size] of shapes) {
    const n = rows * cols
    const s = (seed += 8)
    const data = lazy(() => ({
      x: randomArray(n, s, offset - 1, offset + 1), res: residual ? randomArray(n, s + 1, -0.5, 0.5) : null,
      gamma: randomArray(cols, s + 2, 0.5, 1.5), beta: randomArray(cols, s + 3, -0.5, 0.5),
      dy: randomArray(n, s + 4), dx0: randomArray(n, s + 5), dg0: randomArray(cols, s + 6), db0: randomArray(cols, s + 7),
    }))
    const what = `${rows}x${cols}, eps ${eps}${residual ? ' + residual' : ''}${offset ? `, mean ~${offset}` : ''}${cols === 1 ? ' (zero variance)' : ''}`
    const forward = (io: Parameters<OpCase['setup']>[0]) => {
      const y = io.nan(n), sumOut = residual ? io.nan(n) : null, mean = io.nan(rows), rstd = io.nan(rows)
      const { x, res, gamma, beta } = data()
      const xb = io.f32(x), rb = res ? io.f32(res) : null, gb = io.f32(gamma), bb = io.f32(beta)
      return {
        y, sumOut, mean, rstd, gamma: gb, input: sumOut ?? xb,
        call: () => N().layernormForward(rows, cols, eps, xb, rb, gb, bb, y, sumOut, mean, rstd),
      }
    }
    const reference = () => { const { x, res, gamma, beta } = data(); return layerNorm(rows, cols, eps, x, res, gamma, beta, true) }
    cases.push({
      op: 'layernormForward', label: what, size,
      setup: (io) => {
        const f = forward(io)
        const outputs: Record<string, NativeBuffer> = { y: f.y, mean: f.mean, rstd: f.rstd }
        if (f.sumOut) outputs.sumOut = f.sumOut
        return { call: f.call, outputs }
      },
      reference: () => {
        const want = reference()
        const out: Record<string, Float64Array> = { y: want.y, mean: want.mean, rstd: want.rstd }
        if (residual) out.sumOut = want.sum
        return out
      },
      tolerance: { y: { rtol: 2e-6, atol: 1e-6 }, mean: { rtol: 1e-6, atol: 1e-7 }, rstd: { rtol: 1e-6, atol: 0 }, sumOut: 'bits' },
    })
    for (const which of [['dx', 'dgamma', 'dbeta'], ['dx'], ['dgamma'], ['dbeta', 'dx']] as Grad[][]) {
      const all = which.length === 3
      if (size === 'quick' && !all && cols !== 72) continue
      cases.push({
        op: 'layernormBackward', label: `${what}, ${all ? 'all gradients' : which.join(' and ') + ' only'}, into random`, size,
        setup: (io) => {
          const f = forward(io)
          const { dx0, dg0, db0, dy } = data()
          const grads = { dx: io.f32(dx0), dgamma: io.f32(dg0), dbeta: io.f32(db0) }
          const pick = (g: Grad) => (which.includes(g) ? grads[g] : null)
          const dyb = io.f32(dy)
          return {
            call: () => {
              f.call()
              N().layernormBackward(rows, cols, f.input, f.gamma, f.mean, f.rstd, dyb, pick('dx'), pick('dgamma'), pick('dbeta'))
            },
            outputs: grads,  // the gradients not asked for must come back unchanged
          }
        },
        reference: () => {
          const { dx0, dg0, db0, dy, gamma } = data()
          const want = layerNormBackward(rows, cols, eps, reference().sum, gamma, dy, { dx: dx0, dgamma: dg0, dbeta: db0 })
          return {
            dx: which.includes('dx') ? want.dx : dx0,
            dgamma: which.includes('dgamma') ? want.dgamma : dg0,
            dbeta: which.includes('dbeta') ? want.dbeta : db0,
          }
        },
        // The kernel normalises with the float32 statistics it saved.
        tolerance: { rtol: 1e-5, atol: 1e-5 },
      })
    }
  }
  return cases
}
