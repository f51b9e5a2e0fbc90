// float64 references for the attention op tests (test/ops/attention.test.ts,
// test/ops/flash_attention.test.ts): one case layout, inputs, the Philox
// dropout factors, the forward (probs, out and the rows' log-sum-exp) and the
// backward with torch's autograd semantics.
import { dropoutMask, keepScale } from './philox.js'
import { randomArray, rng } from './reference.js'

export const FLT_MAX = 3.4028234663852886e38

export interface AttentionCase {
  name: string
  batch: number
  seq: number
  heads: number
  headDim: number
  /** [batch, seq] of 0/1 */
  mask: number[]
  p: number
  seed: bigint
  offset: bigint
}

export interface Inputs {
  q: Float64Array
  k: Float64Array
  v: Float64Array
}

/** [batch, seq] 0/1 mask rows with the given numbers of leading tokens. */
export function maskRows(seq: number, validLengths: number[]): number[] {
  return validLengths.flatMap((len) => Array.from({ length: seq }, (_, j) => (j < len ? 1 : 0)))
}

export function inputsFor(c: AttentionCase, seed: number): Inputs {
  const n = c.batch * c.seq * c.heads * c.headDim
  // Wide enough ranges that the softmax is far from uniform.
  return { q: randomArray(n, seed, -4, 4), k: randomArray(n, seed + 1, -2, 2), v: randomArray(n, seed + 2, -1, 1) }
}

export const scaleOf = (c: AttentionCase) => Math.fround(1 / Math.sqrt(c.headDim))

/** keep / (1 - p) or 0 per probs element; null without dropout. */
export function dropoutFactors(c: AttentionCase): Float64Array | null {
  if (c.p === 0) return null
  const mask = dropoutMask(c.batch * c.heads * c.seq * c.seq, c.p, c.seed, c.offset)
  const scale = keepScale(c.p)
  return Float64Array.from(mask, (m) => (m ? scale : 0))
}

/**
 * float64 reference forward: probs [batch, heads, seq, seq], out [batch, seq,
 * hidden] and lse [batch, heads, seq]. Scores as transformers computes them
 * (plus (1 - mask) * finfo.min); a batch row with every key padded has a
 * uniform softmax, whose log-sum-exp relative to scores of 0 is log(seq).
 */
export function referenceForward(c: AttentionCase, x: Inputs, factor: Float64Array | null) {
  const { batch, seq, heads, headDim: d } = c
  const hidden = heads * d
  const scale = scaleOf(c)
  const probs = new Float64Array(batch * heads * seq * seq)
  const out = new Float64Array(batch * seq * hidden)
  const lse = new Float64Array(batch * heads * seq)
  const row = new Float64Array(seq)
  for (let b = 0; b < batch; b++) {
    let valid = 0
    for (let j = 0; j < seq; j++) valid += c.mask[b * seq + j]
    for (let h = 0; h < heads; h++) {
      for (let i = 0; i < seq; i++) {
        const qi = (b * seq + i) * hidden + h * d
        let max = -Infinity
        for (let j = 0; j < seq; j++) {
          const kj = (b * seq + j) * hidden + h * d
          let dot = 0
          for (let t = 0; t < d; t++) dot += x.q[qi + t] * x.k[kj + t]
          row[j] = valid === 0 ? 0 : dot * scale + (c.mask[b * seq + j] ? 0 : -FLT_MAX)
          max = Math.max(max, row[j])
        }
        let sum = 0
        for (let j = 0; j < seq; j++) { row[j] = Math.exp(row[j] - max); sum += row[j] }
        lse[(b * heads + h) * seq + i] = max + Math.log(sum)
        const pBase = ((b * heads + h) * seq + i) * seq
        for (let j = 0; j < seq; j++) {
          const pij = row[j] / sum
          probs[pBase + j] = pij
          const w = factor ? pij * factor[pBase + j] : pij
          const vj = (b * seq + j) * hidden + h * d
          for (let t = 0; t < d; t++) out[qi + t] += w * x.v[vj + t]
        }
      }
    }
  }
  return { probs, out, lse }
}

/** float64 reference backward with torch's autograd semantics (the mask bias is a constant). */
export function referenceBackward(c: AttentionCase, x: Inputs, factor: Float64Array | null, probs: Float64Array, dout: Float64Array) {
  const { batch, seq, heads, headDim: d } = c
  const hidden = heads * d
  const scale = scaleOf(c)
  const dq = new Float64Array(x.q.length)
  const dk = new Float64Array(x.k.length)
  const dv = new Float64Array(x.v.length)
  const dp = new Float64Array(seq)
  for (let b = 0; b < batch; b++) {
    for (let h = 0; h < heads; h++) {
      for (let i = 0; i < seq; i++) {
        const qi = (b * seq + i) * hidden + h * d
        const pBase = ((b * heads + h) * seq + i) * seq
        let rowsum = 0
        for (let j = 0; j < seq; j++) {
          const vj = (b * seq + j) * hidden + h * d
          const f = factor ? factor[pBase + j] : 1
          let dot = 0
          for (let t = 0; t < d; t++) {
            dot += dout[qi + t] * x.v[vj + t]
            dv[vj + t] += probs[pBase + j] * f * dout[qi + t]
          }
          dp[j] = dot * f
          rowsum += dp[j] * probs[pBase + j]
        }
        for (let j = 0; j < seq; j++) {
          const ds = probs[pBase + j] * (dp[j] - rowsum) * scale
          const kj = (b * seq + j) * hidden + h * d
          for (let t = 0; t < d; t++) {
            dq[qi + t] += ds * x.k[kj + t]
            dk[kj + t] += ds * x.q[qi + t]
          }
        }
      }
    }
  }
  return { dq, dk, dv }
}

export function dotWith(g: Float64Array, y: Float64Array): number {
  let s = 0
  for (let i = 0; i < g.length; i++) s += g[i] * y[i]
  return s
}

export function maxAbs(a: ArrayLike<number>): number {
  let m = 0
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]))
  return m
}

/** Is the element's batch row all padding? (finite differences of the rounded forward see 0 there) */
export function inFullyPaddedBatchRow(c: AttentionCase, index: number): boolean {
  const b = Math.floor(index / (c.seq * c.heads * c.headDim))
  for (let j = 0; j < c.seq; j++) if (c.mask[b * c.seq + j]) return false
  return true
}

/**
 * Central differences of sum(g · out) through the float64 reference forward
 * (step 1e-3) at `samples` elements of each of q, k and v drawn by rng(seed),
 * beside `got`'s gradient at the same elements. In a batch row whose keys are
 * all padded the forward is flat in q and k (the scores round away under
 * -FLT_MAX) while torch's gradient, like ours, is not: those are skipped.
 */
export function finiteDifferences(c: AttentionCase, x: Inputs, factor: Float64Array | null, g: Float64Array,
  got: { dq: ArrayLike<number>; dk: ArrayLike<number>; dv: ArrayLike<number> }, samples: number, seed: number): Array<{ dname: 'dq' | 'dk' | 'dv'; fd: number[]; got: number[] }> {
  const h = 1e-3
  const n = x.q.length
  const pick = rng(seed)
  return (['q', 'k', 'v'] as const).map((name) => {
    const dname = `d${name}` as const
    const sample = Array.from({ length: Math.min(n, samples) }, () => Math.floor(pick() * n))
    const fd: number[] = []
    const mine: number[] = []
    const probe: Inputs = { q: Float64Array.from(x.q), k: Float64Array.from(x.k), v: Float64Array.from(x.v) }
    for (const idx of sample) {
      if (name !== 'v' && inFullyPaddedBatchRow(c, idx)) continue
      const orig = probe[name][idx]
      probe[name][idx] = orig + h
      const up = dotWith(g, referenceForward(c, probe, factor).out)
      probe[name][idx] = orig - h
      const down = dotWith(g, referenceForward(c, probe, factor).out)
      probe[name][idx] = orig
      fd.push((up - down) / (2 * h))
      mine.push(got[dname][idx])
    }
    return { dname, fd, got: mine }
  })
}
