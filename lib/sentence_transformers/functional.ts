// The differentiable pieces sentence-transformers adds on top of an encoder:
// pooling over tokens, concatenation of pooled features, L2 normalisation,
// cosine similarity and the mean squared error of CosineSimilarityLoss.
//
// Pooling and concatenation run on the device (a batched product with
// weights built from the host copy of the attention mask; row copies). The
// row-wise ops (normalize, cosine similarity, MSE) touch [batch, dim] values
// only — a few hundred kB at SetFit's sizes — and have no native kernel, so
// they compute in float64 on the host: one read and one write per call (on
// CUDA a synchronisation, once per training step, which also reads the loss).
import { native } from '../native.js'
import { Tensor, empty, emptyUntracked, formatShape } from '../tensor/tensor.js'
import { record, save } from '../tensor/autograd.js'
import { bmm, reshape, maskedMaxPool } from '../tensor/ops.js'

export type PoolingMode = 'cls' | 'max' | 'mean' | 'mean_sqrt_len_tokens' | 'weightedmean' | 'lasttoken'
export const POOLING_MODES: readonly PoolingMode[] = ['cls', 'max', 'mean', 'mean_sqrt_len_tokens', 'weightedmean', 'lasttoken']

function fail(op: string, message: string): never {
  throw new Error(`${op}: ${message}`)
}

function checkFloat(op: string, name: string, t: Tensor, ndim: number): void {
  if (!(t instanceof Tensor)) fail(op, `'${name}' must be a Tensor`)
  if (t.disposed) fail(op, `'${name}' ${formatShape(t.shape)} was disposed (use after free)`)
  if (t.dtype !== 'float32') fail(op, `'${name}' must be float32, got ${t.dtype}`)
  if (t.ndim !== ndim) fail(op, `'${name}' must be ${ndim}-D, got ${formatShape(t.shape)}`)
}

/** Adds host values into a gradient buffer (the engine has zero-filled it or holds earlier contributions). */
function accumulate(grad: Tensor, values: Float32Array): void {
  const tmp = emptyUntracked(grad.shape, grad.device)
  try {
    tmp.buffer.write(values)
    native().axpby(values.length, 1, tmp.buffer, 1, grad.buffer)
  } finally {
    tmp.dispose()
  }
}

/** Per row, the token weights of a linear pooling mode (all but max), from the host mask [batch, seq]. */
function poolingWeights(mode: PoolingMode, mask: Int32Array, batch: number, seq: number): Float32Array {
  const w = new Float32Array(batch * seq)
  for (let b = 0; b < batch; b++) {
    const row = mask.subarray(b * seq, (b + 1) * seq)
    let first = -1, last = -1, count = 0
    for (let s = 0; s < seq; s++) {
      if (row[s] !== 0) {
        if (first < 0) first = s
        last = s
        count++
      }
    }
    const out = w.subarray(b * seq, (b + 1) * seq)
    switch (mode) {
      case 'cls':
        // The first real token (index 0 with right padding), as torch.argmax of the mask picks it.
        out[Math.max(first, 0)] = 1
        break
      case 'lasttoken':
        // The last real token; a row without one gives zeros (ST multiplies by the mask).
        if (last >= 0) out[last] = 1
        break
      case 'mean':
      case 'mean_sqrt_len_tokens': {
        const denominator = mode === 'mean' ? Math.max(count, 1e-9) : Math.sqrt(Math.max(count, 1e-9))
        for (let s = 0; s < seq; s++) if (row[s] !== 0) out[s] = 1 / denominator
        break
      }
      case 'weightedmean': {
        // Positions 1, 2, … counted from the first real token (left padding shifts them).
        const offset = Math.max(first, 0)
        let total = 0
        for (let s = 0; s < seq; s++) if (row[s] !== 0) total += s + 1 - offset
        for (let s = 0; s < seq; s++) if (row[s] !== 0) out[s] = (s + 1 - offset) / Math.max(total, 1e-9)
        break
      }
      default:
        fail('pool', `mode ${JSON.stringify(mode)} is not a weighted sum of tokens`)
    }
  }
  return w
}

/**
 * Pools token embeddings h [batch, seq, dim] into one vector per row for each
 * mode, concatenated in the given order → [batch, modes · dim], as
 * sentence-transformers' Pooling. `mask` is the attention mask as int32
 * [batch, seq] (its host copy is read; no device read).
 */
export function pool(h: Tensor, mask: Tensor, modes: readonly PoolingMode[]): Tensor {
  checkFloat('pool', 'h', h, 3)
  if (!(mask instanceof Tensor) || mask.dtype !== 'int32') fail('pool', "'mask' must be an int32 Tensor")
  const [batch, seq, dim] = h.shape
  if (mask.ndim !== 2 || mask.shape[0] !== batch || mask.shape[1] !== seq) {
    fail('pool', `mask ${formatShape(mask.shape)} must be [${batch}, ${seq}] for h ${formatShape(h.shape)}`)
  }
  if (modes.length === 0) fail('pool', 'no pooling mode given')
  for (const m of modes) if (!POOLING_MODES.includes(m)) fail('pool', `unknown pooling mode ${JSON.stringify(m)}; valid: ${POOLING_MODES.join(', ')}`)
  const values = mask.toInt32Array()
  const parts = modes.map((mode) => {
    if (mode === 'max') return maskedMaxPool(h, mask)
    const w = empty([batch, 1, seq], { device: h.device })
    try {
      w.buffer.write(poolingWeights(mode, values, batch, seq))
      return reshape(bmm(w, h), [batch, dim])
    } finally {
      w.dispose()
    }
  })
  return parts.length === 1 ? parts[0] : concatFeatures(parts)
}

/** parts [batch, d_i] → [batch, Σ d_i] (torch.cat(parts, dim=-1)) when every d_i is equal; row copies on the device. */
export function concatFeatures(parts: readonly Tensor[]): Tensor {
  if (parts.length === 0) fail('concatFeatures', 'nothing to concatenate')
  parts.forEach((p, i) => checkFloat('concatFeatures', `parts[${i}]`, p, 2))
  const [batch, dim] = parts[0].shape
  parts.forEach((p, i) => {
    if (p.shape[0] !== batch || p.shape[1] !== dim) fail('concatFeatures', `parts[${i}] ${formatShape(p.shape)} differs from parts[0] ${formatShape(parts[0].shape)}`)
    if (p.device !== parts[0].device) fail('concatFeatures', `parts[${i}] is on ${p.device}, parts[0] on ${parts[0].device}`)
  })
  const k = parts.length
  const addon = native()
  // Seen as [batch, k rows, dim], part i is row i of each batch entry.
  const out = empty([batch, k * dim], { device: parts[0].device })
  addon.fill(out.buffer, out.numel, 0)
  parts.forEach((p, i) => addon.sliceRowsBackward(batch, k, dim, i, 1, p.buffer, out.buffer))
  return record('concatFeatures', out, [...parts], [], (g, grads) => {
    const tmp = emptyUntracked([batch, dim], g.device)
    try {
      grads.forEach((gp, i) => {
        if (!gp) return
        addon.sliceRowsForward(batch, k, dim, i, 1, g.buffer, tmp.buffer)
        addon.axpby(tmp.numel, 1, tmp.buffer, 1, gp.buffer)
      })
    } finally {
      tmp.dispose()
    }
  })
}

/** x / max(||x||₂, eps) per row of x [rows, dim] (torch.nn.functional.normalize(x, p=2, dim=-1)). */
export function normalize(x: Tensor, eps = 1e-12): Tensor {
  checkFloat('normalize', 'x', x, 2)
  const [rows, dim] = x.shape
  const xs = x.toFloat32Array()
  const norms = new Float64Array(rows)
  const y = new Float32Array(xs.length)
  for (let r = 0; r < rows; r++) {
    let s = 0
    for (let j = 0; j < dim; j++) s += xs[r * dim + j] * xs[r * dim + j]
    norms[r] = Math.sqrt(s)
    const d = Math.max(norms[r], eps)
    for (let j = 0; j < dim; j++) y[r * dim + j] = xs[r * dim + j] / d
  }
  const out = empty(x.shape, { device: x.device })
  out.buffer.write(y)
  return record('normalize', out, [x], [save(x)], (g, [gx], [sx]) => {
    const gs = g.toFloat32Array()
    const xv = sx!.toFloat32Array()
    const dx = new Float32Array(gs.length)
    for (let r = 0; r < rows; r++) {
      const n = norms[r]
      if (n > eps) {
        // d(x/|x|) = (g - ŷ (ŷ·g)) / |x|
        let yg = 0
        for (let j = 0; j < dim; j++) yg += (xv[r * dim + j] / n) * gs[r * dim + j]
        for (let j = 0; j < dim; j++) dx[r * dim + j] = (gs[r * dim + j] - (xv[r * dim + j] / n) * yg) / n
      } else {
        for (let j = 0; j < dim; j++) dx[r * dim + j] = gs[r * dim + j] / eps
      }
    }
    accumulate(gx!, dx)
  })
}

/**
 * Cosine similarity of matching rows of a and b [rows, dim] → [rows], as
 * torch.cosine_similarity(a, b, dim=-1): a·b / max(|a|·|b|, eps).
 */
export function cosineSimilarity(a: Tensor, b: Tensor, eps = 1e-8): Tensor {
  checkFloat('cosineSimilarity', 'a', a, 2)
  checkFloat('cosineSimilarity', 'b', b, 2)
  if (a.shape[0] !== b.shape[0] || a.shape[1] !== b.shape[1]) fail('cosineSimilarity', `a ${formatShape(a.shape)} and b ${formatShape(b.shape)} differ`)
  if (a.device !== b.device) fail('cosineSimilarity', `a is on ${a.device}, b on ${b.device}`)
  const [rows, dim] = a.shape
  const av = a.toFloat32Array()
  const bv = b.toFloat32Array()
  const stats = Array.from({ length: rows }, (_, r) => {
    let ab = 0, aa = 0, bb = 0
    for (let j = 0; j < dim; j++) {
      const x = av[r * dim + j], y = bv[r * dim + j]
      ab += x * y
      aa += x * x
      bb += y * y
    }
    const na = Math.sqrt(aa), nb = Math.sqrt(bb)
    return { ab, na, nb, denominator: Math.max(na * nb, eps) }
  })
  const out = empty([rows], { device: a.device })
  out.buffer.write(Float32Array.from(stats, (s) => s.ab / s.denominator))
  return record('cosineSimilarity', out, [a, b], [save(a), save(b)], (g, [ga, gb], [sa, sb]) => {
    const gs = g.toFloat32Array()
    const x = sa!.toFloat32Array(), y = sb!.toFloat32Array()
    const da = ga ? new Float32Array(rows * dim) : null
    const db = gb ? new Float32Array(rows * dim) : null
    for (let r = 0; r < rows; r++) {
      const { ab, na, nb, denominator } = stats[r]
      const clamped = na * nb <= eps
      const cos = ab / denominator
      for (let j = 0; j < dim; j++) {
        const xi = x[r * dim + j], yi = y[r * dim + j]
        // ∂cos/∂a = b/(|a||b|) - cos·a/|a|² (the clamped denominator is a constant).
        if (da) da[r * dim + j] = gs[r] * (clamped ? yi / eps : yi / denominator - cos * xi / (na * na))
        if (db) db[r * dim + j] = gs[r] * (clamped ? xi / eps : xi / denominator - cos * yi / (nb * nb))
      }
    }
    if (da) accumulate(ga!, da)
    if (db) accumulate(gb!, db)
  })
}

/** mean((input - target)²) over every element (torch.nn.MSELoss()), target given as host numbers. */
export function mseLoss(input: Tensor, target: ArrayLike<number>): Tensor {
  if (!(input instanceof Tensor) || input.dtype !== 'float32') fail('mseLoss', "'input' must be a float32 Tensor")
  if (target.length !== input.numel) fail('mseLoss', `target has ${target.length} values for input ${formatShape(input.shape)}`)
  const n = input.numel
  if (n === 0) fail('mseLoss', 'input is empty')
  const x = input.toFloat32Array()
  let s = 0
  for (let i = 0; i < n; i++) s += (x[i] - target[i]) ** 2
  const out = empty([], { device: input.device })
  out.buffer.write(Float32Array.of(s / n))
  const t = Float64Array.from(target)
  return record('mseLoss', out, [input], [save(input)], (g, [gx], [sx]) => {
    const scale = g.toFloat32Array()[0] * 2 / n
    const xv = sx!.toFloat32Array()
    accumulate(gx!, Float32Array.from(xv, (v, i) => scale * (v - t[i])))
  })
}
