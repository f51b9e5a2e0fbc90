// Differentiable ops on Tensors: each validates its inputs (naming the op and
// the shapes), runs the native forward, and records its backward beside it.
import { native, ACTIVATION_CODE, type NativeBuffer } from '../native.js'
import { Storage } from './storage.js'
import { makeRowSparse, rowMarksOf, wantsRowSparse } from './row_sparse.js'
import { Tensor, empty, emptyUntracked, formatShape, shapeNumel, type Shape } from './tensor.js'
import { record, save, willRecord } from './autograd.js'
import { nextPhiloxRange } from './random.js'
import { autocastDtype, castHalf, castHalfSumRows, halfActivation, halfTwin, halfWeight, keepHalfActivation, type HalfDType } from './autocast.js'
import type { DeviceName } from './device.js'

function fail(op: string, message: string): never {
  throw new Error(`${op}: ${message}`)
}

function live(op: string, name: string, t: Tensor): void {
  if (!(t instanceof Tensor)) fail(op, `'${name}' must be a Tensor, got ${t === null ? 'null' : typeof t}`)
  if (t.disposed) fail(op, `'${name}' ${formatShape(t.shape)} was disposed (use after free)`)
}

function expectDtype(op: string, name: string, t: Tensor, dtype: string): void {
  live(op, name, t)
  if (t.dtype !== dtype) fail(op, `'${name}' must be ${dtype}, got ${t.dtype}`)
}

function sameDevice(op: string, tensors: Record<string, Tensor | null | undefined>): void {
  let first: [string, Tensor] | null = null
  for (const [name, t] of Object.entries(tensors)) {
    if (!t) continue
    if (!first) first = [name, t]
    else if (t.device !== first[1].device) {
      fail(op, `tensors on different devices: '${first[0]}' is on ${first[1].device}, '${name}' is on ${t.device}`)
    }
  }
}

function sameShape(a: Shape, b: Shape): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i])
}

function lastDim(t: Tensor): number {
  return t.shape.length === 0 ? 1 : t.shape[t.shape.length - 1]
}

// ---- views -----------------------------------------------------------------

/** Same memory, new shape (one dimension may be -1). */
export function reshape(x: Tensor, shape: readonly number[]): Tensor {
  live('reshape', 'x', x)
  const resolved = [...shape]
  const unknown = resolved.indexOf(-1)
  if (unknown >= 0) {
    const known = shapeNumel(resolved.filter((_, i) => i !== unknown))
    if (known === 0 || x.numel % known !== 0) fail('reshape', `cannot reshape ${formatShape(x.shape)} to ${formatShape(shape)}`)
    resolved[unknown] = x.numel / known
  }
  if (shapeNumel(resolved) !== x.numel || resolved.some((d) => !Number.isInteger(d) || d < 0)) {
    fail('reshape', `cannot reshape ${formatShape(x.shape)} (${x.numel} elements) to ${formatShape(shape)}`)
  }
  const out = new Tensor(x.retainStorage(), resolved)
  return record('reshape', out, [x], [], (g, [gx], _s, [fresh]) => {
    native().axpby(g.numel, 1, g.buffer, fresh ? 0 : 1, gx!.buffer)
  }, [true])
}

// ---- elementwise -------------------------------------------------------------

/** a + b (same shape). */
export function add(a: Tensor, b: Tensor): Tensor {
  live('add', 'a', a)
  live('add', 'b', b)
  expectDtype('add', 'a', a, 'float32')
  expectDtype('add', 'b', b, 'float32')
  sameDevice('add', { a, b })
  if (!sameShape(a.shape, b.shape)) fail('add', `shapes differ: a ${formatShape(a.shape)}, b ${formatShape(b.shape)}`)
  const addon = native()
  const out = empty(a.shape, { device: a.device })
  addon.axpby(a.numel, 1, a.buffer, 0, out.buffer)
  addon.axpby(a.numel, 1, b.buffer, 1, out.buffer)
  return record('add', out, [a, b], [], (g, [ga, gb], _s, [freshA, freshB]) => {
    if (ga) addon.axpby(g.numel, 1, g.buffer, freshA ? 0 : 1, ga.buffer)
    if (gb) addon.axpby(g.numel, 1, g.buffer, freshB ? 0 : 1, gb.buffer)
  }, [true, true])
}

/** a * b elementwise (same shape). */
export function mul(a: Tensor, b: Tensor): Tensor {
  expectDtype('mul', 'a', a, 'float32')
  expectDtype('mul', 'b', b, 'float32')
  sameDevice('mul', { a, b })
  if (!sameShape(a.shape, b.shape)) fail('mul', `shapes differ: a ${formatShape(a.shape)}, b ${formatShape(b.shape)}`)
  const addon = native()
  const out = empty(a.shape, { device: a.device })
  addon.mul(a.numel, a.buffer, b.buffer, out.buffer)
  return record('mul', out, [a, b], [save(a), save(b)], (g, [ga, gb], [sa, sb]) => {
    const tmp = emptyUntracked(g.shape, g.device)
    try {
      if (ga) {
        addon.mul(g.numel, g.buffer, sb!.buffer, tmp.buffer)
        addon.axpby(g.numel, 1, tmp.buffer, 1, ga.buffer)
      }
      if (gb) {
        addon.mul(g.numel, g.buffer, sa!.buffer, tmp.buffer)
        addon.axpby(g.numel, 1, tmp.buffer, 1, gb.buffer)
      }
    } finally {
      tmp.dispose()
    }
  })
}

/** x * factor. */
export function scale(x: Tensor, factor: number): Tensor {
  expectDtype('scale', 'x', x, 'float32')
  if (!Number.isFinite(factor)) fail('scale', `factor must be finite, got ${factor}`)
  const addon = native()
  const out = empty(x.shape, { device: x.device })
  addon.axpby(x.numel, factor, x.buffer, 0, out.buffer)
  return record('scale', out, [x], [], (g, [gx], _s, [fresh]) => {
    addon.axpby(g.numel, factor, g.buffer, fresh ? 0 : 1, gx!.buffer)
  }, [true])
}

/** Sum of all elements, as a one-element tensor of shape []. */
export function sum(x: Tensor): Tensor {
  expectDtype('sum', 'x', x, 'float32')
  const addon = native()
  const out = empty([], { device: x.device })
  addon.fill(out.buffer, 1, 0)
  addon.sum(x.numel, x.buffer, out.buffer)
  const n = x.numel
  return record('sum', out, [x], [], (g, [gx]) => {
    // d(sum)/dx = g everywhere. Broadcasting the scalar as ones[n,1]·g[1,1]
    // keeps it on the device: no host read of g.
    const ones = emptyUntracked([n], g.device)
    try {
      addon.fill(ones.buffer, n, 1)
      addon.gemm(false, false, n, 1, 1, 1, ones.buffer, g.buffer, 1, gx!.buffer, 1, 0, 0, 0)
    } finally {
      ones.dispose()
    }
  })
}

/** Mean of all elements. */
export function mean(x: Tensor): Tensor {
  const s = sum(x)
  const m = scale(s, 1 / Math.max(1, x.numel))
  return m
}

// ---- activations ---------------------------------------------------------------

export type ActivationName = keyof typeof ACTIVATION_CODE

/** The native code of a hidden_act name, or a clear error. */
function activationCode(kind: ActivationName): number {
  const code = Object.hasOwn(ACTIVATION_CODE, kind) ? ACTIVATION_CODE[kind] : undefined
  if (code === undefined) fail('activation', `unknown activation "${kind}" (expected ${Object.keys(ACTIVATION_CODE).join(', ')})`)
  return code
}

/**
 * An elementwise activation by transformers' hidden_act name (ACT2FN): gelu
 * (exact erf), gelu_new and its aliases (tanh approximation), tanh, relu,
 * silu / swish, quick_gelu, mish, sigmoid, relu6, leaky_relu, linear, relu2,
 * gelu_10, laplace, hardswish, sqrtsoftplus.
 */
export function activation(x: Tensor, kind: ActivationName): Tensor {
  const op = kind
  expectDtype(op, 'x', x, 'float32')
  const code = activationCode(kind)
  const addon = native()
  const out = empty(x.shape, { device: x.device })
  const twin = halfTwin(out)
  addon.activationForward(code, x.numel, x.buffer, out.buffer, twin?.buffer ?? null)
  if (twin) keepHalfActivation(out, twin)
  return record(kind, out, [x], [save(x)], (g, [gx], [sx], [fresh]) => {
    addon.activationBackward(code, g.numel, sx!.buffer, g.buffer, gx!.buffer, fresh)
  }, [true])
}

export const gelu = (x: Tensor) => activation(x, 'gelu')
export const geluNew = (x: Tensor) => activation(x, 'gelu_new')
export const tanh = (x: Tensor) => activation(x, 'tanh')
export const relu = (x: Tensor) => activation(x, 'relu')

// ---- dropout ---------------------------------------------------------------------

/** Inverted dropout with a counter-based mask; identity when not training or p == 0. */
export function dropout(x: Tensor, p: number, training: boolean): Tensor {
  expectDtype('dropout', 'x', x, 'float32')
  if (!(p >= 0 && p < 1)) fail('dropout', `p must be in [0, 1), got ${p}`)
  if (!training || p === 0) return x
  const addon = native()
  const { seed, offset } = nextPhiloxRange(x.numel)
  const out = empty(x.shape, { device: x.device })
  addon.dropoutForward(x.numel, p, seed, offset, x.buffer, out.buffer)
  return record('dropout', out, [x], [], (g, [gx]) => {
    addon.dropoutBackward(g.numel, p, seed, offset, g.buffer, gx!.buffer)
  })
}

// ---- matrix products ---------------------------------------------------------------

/** y = x · weightᵀ + bias over the last dimension (torch.nn.functional.linear). */
export function linear(x: Tensor, weight: Tensor, bias: Tensor | null = null): Tensor {
  const { rows, inFeatures, outFeatures } = linearShape('linear', x, weight, bias)
  const half = autocastDtype()
  if (half) return linearHalf(x, weight, bias, rows, inFeatures, outFeatures, half)
  const addon = native()
  const out = empty([...x.shape.slice(0, -1), outFeatures], { device: x.device })
  addon.gemm(false, true, rows, outFeatures, inFeatures, 1, x.buffer, weight.buffer, 0, out.buffer, 1, 0, 0, 0)
  if (bias) addon.addBiasRows(rows, outFeatures, bias.buffer, out.buffer)
  // Save only what backward will read: x for the weight gradient, W for the input gradient.
  const recording = willRecord([x, weight, bias])
  return record('linear', out, [x, weight, bias],
    [recording && weight.requiresGrad ? save(x) : null, recording && x.requiresGrad ? save(weight) : null],
    (g, [gx, gw, gb], [sx, sw], [freshX, freshW, freshB]) => {
      // dx += g · W ; dW += gᵀ · x ; db += column sums of g (beta 0 / write: a fresh buffer is written).
      if (gx) addon.gemm(false, false, rows, inFeatures, outFeatures, 1, g.buffer, sw!.buffer, freshX ? 0 : 1, gx.buffer, 1, 0, 0, 0)
      if (gw) addon.gemm(true, false, outFeatures, inFeatures, rows, 1, g.buffer, sx!.buffer, freshW ? 0 : 1, gw.buffer, 1, 0, 0, 0)
      if (gb) addon.sumRows(rows, outFeatures, g.buffer, gb.buffer, freshB)
    }, [true, true, true])
}

/** Checks linear's operands; the rows, in and out features. */
function linearShape(op: string, x: Tensor, weight: Tensor, bias: Tensor | null) {
  expectDtype(op, 'x', x, 'float32')
  expectDtype(op, 'weight', weight, 'float32')
  if (bias) expectDtype(op, 'bias', bias, 'float32')
  sameDevice(op, { x, weight, bias })
  if (weight.ndim !== 2) fail(op, `weight must be 2-D [out, in], got ${formatShape(weight.shape)}`)
  const [outFeatures, inFeatures] = weight.shape
  if (x.ndim < 1 || lastDim(x) !== inFeatures) {
    fail(op, `x ${formatShape(x.shape)} does not match weight ${formatShape(weight.shape)}: last dimension must be ${inFeatures}`)
  }
  if (bias && (bias.ndim !== 1 || bias.shape[0] !== outFeatures)) {
    fail(op, `bias ${formatShape(bias.shape)} must be [${outFeatures}] for weight ${formatShape(weight.shape)}`)
  }
  return { rows: x.numel / inFeatures, inFeatures, outFeatures }
}

/**
 * activation(linear(x, weight, bias), kind), the feed-forward block's first
 * half. Under autocast it is one op, with the same results bit for bit: its
 * backward turns the incoming gradient into the half copy of dh = dy f'(h)
 * and the bias gradient in one pass, where the two ops would write the float32
 * dh, read it back to cast it and read it again to sum its columns.
 */
export function linearActivation(x: Tensor, weight: Tensor, bias: Tensor | null, kind: ActivationName): Tensor {
  const half = autocastDtype()
  if (!half) return activation(linear(x, weight, bias), kind)
  const { rows, inFeatures, outFeatures } = linearShape('linearActivation', x, weight, bias)
  const code = activationCode(kind)
  const addon = native()
  const x16 = halfActivation(x)
  const w16 = halfWeight(weight)
  const shape = [...x.shape.slice(0, -1), outFeatures]
  const h = emptyUntracked(shape, x.device)
  addon.gemmMixed(false, true, rows, outFeatures, inFeatures, 1, x16.buffer, w16.buffer, 0, h.buffer, 1, 0, 0, 0, null, bias?.buffer ?? null)
  // Saved before the output's half copy replaces x16 as the region's last activation.
  const recording = willRecord([x, weight, bias])
  const saved = [recording && weight.requiresGrad ? save(x16) : null, recording && x.requiresGrad ? save(w16) : null, h]
  const out = empty(shape, { device: x.device })
  const twin = halfTwin(out)
  addon.activationForward(code, h.numel, h.buffer, out.buffer, twin?.buffer ?? null)
  if (twin) keepHalfActivation(out, twin)
  return record('linearActivation', out, [x, weight, bias], saved,
    (g, [gx, gw, gb], [sx16, sw16, sh], [freshX, freshW, freshB]) => {
      const dh16 = new Tensor(Storage.allocate(g.numel, half, g.device), g.shape, false)
      const scratch = emptyUntracked(g.shape, g.device)  // untouched on the CPU: the block is never written
      try {
        addon.activationBackwardCastSumRows(code, rows, outFeatures, sh!.buffer, g.buffer, scratch.buffer, dh16.buffer, gb ? gb.buffer : null, freshB)
        halfLinearGrads(rows, inFeatures, outFeatures, dh16, sx16, sw16, gx, gw, freshX, freshW)
      } finally {
        scratch.dispose()
        dh16.dispose()
      }
    }, [true, true, true])
}

/**
 * linear under autocast: half copies of x and W (W cached per region), fp32
 * accumulation and output. Backward keeps the half copies (half the memory of
 * fp32 activations) and multiplies a half copy of the incoming gradient.
 */
function linearHalf(x: Tensor, weight: Tensor, bias: Tensor | null, rows: number, inFeatures: number, outFeatures: number, half: HalfDType): Tensor {
  const addon = native()
  const x16 = halfActivation(x)
  const w16 = halfWeight(weight)
  const out = empty([...x.shape.slice(0, -1), outFeatures], { device: x.device })
  // The bias is added as the product writes out (the bits of a following addBiasRows, one pass over out fewer).
  addon.gemmMixed(false, true, rows, outFeatures, inFeatures, 1, x16.buffer, w16.buffer, 0, out.buffer, 1, 0, 0, 0, null, bias?.buffer ?? null)
  const recording = willRecord([x, weight, bias])
  return record('linear', out, [x, weight, bias],
    [recording && weight.requiresGrad ? save(x16) : null, recording && x.requiresGrad ? save(w16) : null],
    (g, [gx, gw, gb], [sx16, sw16], [freshX, freshW, freshB]) => {
      // The bias gradient (g's column sums) comes from the same read of g as its half copy.
      const g16 = gb ? castHalfSumRows(g, half, rows, outFeatures, gb, freshB) : castHalf(g, half)
      try {
        halfLinearGrads(rows, inFeatures, outFeatures, g16, sx16, sw16, gx, gw, freshX, freshW)
      } finally {
        g16.dispose()
      }
    }, [true, true, true])
}

/**
 * A half Linear's products backward from g16 (the half output gradient): dx += g16 · W, dW += g16ᵀ · x (written
 * when fresh). dW is read next at the optimizer step, long after it has left the caches, so it is streamed
 * (written without first reading each line of it: measured ~2 ms of a ~88 ms MiniLM bf16 step on 2 cores).
 */
function halfLinearGrads(rows: number, inFeatures: number, outFeatures: number, g16: Tensor, sx16: Tensor | null, sw16: Tensor | null,
  gx: Tensor | null, gw: Tensor | null, freshX: boolean, freshW: boolean): void {
  const addon = native()
  if (gx) addon.gemmMixed(false, false, rows, inFeatures, outFeatures, 1, g16.buffer, sw16!.buffer, freshX ? 0 : 1, gx.buffer, 1, 0, 0, 0)
  if (gw) addon.gemmMixed(true, false, outFeatures, inFeatures, rows, 1, g16.buffer, sx16!.buffer, freshW ? 0 : 1, gw.buffer, 1, 0, 0, 0, null, null, true)
}

/**
 * matmul / bmm / bmmTransposed under autocast (torch's CPU and CUDA autocast
 * lists both run mm and bmm in the low precision): half copies of a and b,
 * batch products a[i] · b[i] (or · b[i]ᵀ when transB) with fp32 accumulation
 * into an fp32 output; backward multiplies a half copy of the incoming
 * gradient with the saved half operands.
 */
function productHalf(op: string, a: Tensor, b: Tensor, transB: boolean, batch: number, m: number, n: number, k: number,
  shape: number[], half: HalfDType): Tensor {
  const addon = native()
  const a16 = castHalf(a, half)
  const b16 = castHalf(b, half)
  const out = empty(shape, { device: a.device })
  const sb = k * n
  addon.gemmMixed(false, transB, m, n, k, 1, a16.buffer, b16.buffer, 0, out.buffer, batch, m * k, sb, m * n)
  const recording = willRecord([a, b])
  const savedA = recording && b.requiresGrad ? a16 : null
  const savedB = recording && a.requiresGrad ? b16 : null
  if (!savedA) a16.dispose()
  if (!savedB) b16.dispose()
  return record(op, out, [a, b], [savedA, savedB], (g, [ga, gb], [sa16, sb16], [freshA, freshB]) => {
    const g16 = castHalf(g, half)
    try {
      // da = g · op(b)ᵀ ; db = aᵀ · g (or gᵀ · a when b was transposed), per batch entry.
      if (ga) addon.gemmMixed(false, !transB, m, k, n, 1, g16.buffer, sb16!.buffer, freshA ? 0 : 1, ga.buffer, batch, m * n, sb, m * k)
      if (gb && transB) addon.gemmMixed(true, false, n, k, m, 1, g16.buffer, sa16!.buffer, freshB ? 0 : 1, gb.buffer, batch, m * n, m * k, sb)
      if (gb && !transB) addon.gemmMixed(true, false, k, n, m, 1, sa16!.buffer, g16.buffer, freshB ? 0 : 1, gb.buffer, batch, m * k, m * n, sb)
    } finally {
      g16.dispose()
    }
  }, [true, true])
}

/** a [m, k] · b [k, n] (2-D). */
export function matmul(a: Tensor, b: Tensor): Tensor {
  expectDtype('matmul', 'a', a, 'float32')
  expectDtype('matmul', 'b', b, 'float32')
  sameDevice('matmul', { a, b })
  if (a.ndim !== 2 || b.ndim !== 2 || a.shape[1] !== b.shape[0]) {
    fail('matmul', `cannot multiply ${formatShape(a.shape)} by ${formatShape(b.shape)}`)
  }
  const [m, k] = a.shape
  const n = b.shape[1]
  const half = autocastDtype()
  if (half) return productHalf('matmul', a, b, false, 1, m, n, k, [m, n], half)
  const addon = native()
  const out = empty([m, n], { device: a.device })
  addon.gemm(false, false, m, n, k, 1, a.buffer, b.buffer, 0, out.buffer, 1, 0, 0, 0)
  const recording = willRecord([a, b])
  return record('matmul', out, [a, b],
    [recording && b.requiresGrad ? save(a) : null, recording && a.requiresGrad ? save(b) : null],
    (g, [ga, gb], [sa, sb], [freshA, freshB]) => {
      if (ga) addon.gemm(false, true, m, k, n, 1, g.buffer, sb!.buffer, freshA ? 0 : 1, ga.buffer, 1, 0, 0, 0)
      if (gb) addon.gemm(true, false, k, n, m, 1, sa!.buffer, g.buffer, freshB ? 0 : 1, gb.buffer, 1, 0, 0, 0)
    }, [true, true])
}

// ---- normalisation ---------------------------------------------------------------

/**
 * LayerNorm over the last dimension of (x + residual), as BertSelfOutput /
 * BertOutput compute LayerNorm(dropout(h) + input_tensor).
 */
export function layerNorm(x: Tensor, weight: Tensor, bias: Tensor, eps: number, residual: Tensor | null = null): Tensor {
  expectDtype('layerNorm', 'x', x, 'float32')
  expectDtype('layerNorm', 'weight', weight, 'float32')
  expectDtype('layerNorm', 'bias', bias, 'float32')
  if (residual) expectDtype('layerNorm', 'residual', residual, 'float32')
  sameDevice('layerNorm', { x, weight, bias, residual })
  const cols = lastDim(x)
  if (x.ndim < 1 || cols < 1) fail('layerNorm', `x ${formatShape(x.shape)} has no features to normalise`)
  if (weight.numel !== cols || bias.numel !== cols) {
    fail('layerNorm', `weight ${formatShape(weight.shape)} and bias ${formatShape(bias.shape)} must have ${cols} elements for x ${formatShape(x.shape)}`)
  }
  if (residual && !sameShape(residual.shape, x.shape)) {
    fail('layerNorm', `residual ${formatShape(residual.shape)} must match x ${formatShape(x.shape)}`)
  }
  if (!(eps > 0)) fail('layerNorm', `eps must be positive, got ${eps}`)
  const rows = x.numel / cols
  const addon = native()
  const out = empty(x.shape, { device: x.device })
  const meanT = emptyUntracked([rows], x.device)
  const rstdT = emptyUntracked([rows], x.device)
  const summed = residual ? emptyUntracked(x.shape, x.device) : null
  const twin = halfTwin(out)
  addon.layernormForward(rows, cols, eps, x.buffer, residual ? residual.buffer : null, weight.buffer, bias.buffer,
    out.buffer, summed ? summed.buffer : null, meanT.buffer, rstdT.buffer, twin?.buffer ?? null)
  if (twin) keepHalfActivation(out, twin)
  // The node owns the temporaries (mean, rstd, x + residual); they die with it.
  return record('layerNorm', out, [x, weight, bias, residual],
    [summed ?? save(x), save(weight), meanT, rstdT],
    (g, [gx, gw, gb, gr], [sNormalised, sWeight, sMean, sRstd], [freshX, freshW, freshB, freshR]) => {
      // The same gradient flows to x and to the residual: compute it once.
      // Buffers that hold nothing yet are written (both in the kernel's one
      // pass when both are fresh); one that holds a sum gets it added, from
      // the written one or from a scratch buffer when neither is fresh.
      let dx = gx ?? gr
      let write = gx ? freshX : freshR
      let copy: Tensor | null = null
      let others: Tensor[] = []
      let scratch: Tensor | null = null
      if (gx && gr) {
        if (freshX && freshR) {
          dx = gx
          copy = gr
          write = true
        } else if (freshX || freshR) {
          dx = freshX ? gx : gr
          others = [freshX ? gr : gx]
          write = true
        } else {
          scratch = emptyUntracked(g.shape, g.device)
          dx = scratch
          others = [gx, gr]
          write = true
        }
      }
      try {
        addon.layernormBackward(rows, cols, sNormalised!.buffer, sWeight!.buffer, sMean!.buffer, sRstd!.buffer, g.buffer,
          dx ? dx.buffer : null, gw ? gw.buffer : null, gb ? gb.buffer : null, freshW, freshB, write, copy ? copy.buffer : null)
        for (const other of others) addon.axpby(dx!.numel, 1, dx!.buffer, 1, other.buffer)
      } finally {
        scratch?.dispose()
      }
    }, [true, true, true, true])
}

// ---- embedding ---------------------------------------------------------------------

/**
 * Rows of `weight` [vocab, dim] picked by int32 `ids` of any shape → [...ids.shape, dim].
 * Tokens equal to paddingIdx send no gradient to their row (torch's padding_idx).
 */
export function embedding(ids: Tensor, weight: Tensor, options: { paddingIdx?: number | null } = {}): Tensor {
  expectDtype('embedding', 'ids', ids, 'int32')
  expectDtype('embedding', 'weight', weight, 'float32')
  sameDevice('embedding', { ids, weight })
  if (weight.ndim !== 2) fail('embedding', `weight must be 2-D [vocab, dim], got ${formatShape(weight.shape)}`)
  const [vocab, dim] = weight.shape
  const paddingIdx = options.paddingIdx ?? -1
  if (!Number.isInteger(paddingIdx) || paddingIdx < -1 || paddingIdx >= vocab) fail('embedding', `paddingIdx ${paddingIdx} is outside [0, ${vocab})`)
  const addon = native()
  const out = empty([...ids.shape, dim], { device: weight.device })
  try {
    // A table with deferred row updates (AdamW's lazy rows) brings only the looked-up rows up to date.
    const storage = weight.rawStorage
    const table = storage.beforeRowAccess ? rowsUpToDate(storage, ids) : weight.buffer
    addon.embeddingForward(ids.numel, dim, vocab, ids.buffer, table, out.buffer)
  } catch (err) {
    out.dispose()
    throw new Error(`embedding: ${(err as Error).message.replace(/^(embeddingForward|adamwRows): /, '')} (table ${formatShape(weight.shape)})`)
  }
  const n = ids.numel
  // The table's gradient is written, not added to, when it is new (fresh): a
  // large one becomes row-sparse (row_sparse.ts), a small one is zeroed here.
  return record('embedding', out, [ids, weight], [save(ids)], (g, [, gw], [sIds], fresh) => {
    const marks = fresh[1] ? (wantsRowSparse(gw!, vocab, dim) ? makeRowSparse(gw!, vocab, dim) : null) : rowMarksOf(gw!)
    if (marks) {
      addon.embeddingBackwardRows(n, dim, vocab, sIds!.buffer, g.buffer, gw!.rawBuffer, paddingIdx, marks.marks, fresh[1])
    } else {
      if (fresh[1]) addon.fill(gw!.buffer, gw!.numel, 0)
      addon.embeddingBackward(n, dim, vocab, sIds!.buffer, g.buffer, gw!.buffer, paddingIdx)
    }
  }, [false, true])
}

function rowsUpToDate(storage: Storage, ids: Tensor): NativeBuffer {
  storage.beforeRowAccess!(ids.buffer, ids.numel)
  return storage.rawBuffer
}

// ---- attention ---------------------------------------------------------------------

export interface AttentionOptions {
  heads: number
  /** Dropout on the attention probabilities (attention_probs_dropout_prob). */
  dropoutP?: number
  training?: boolean
  /** Defaults to 1/sqrt(head_dim). */
  scale?: number
  /** Which kernels compute it; defaults to attentionImplementation(device). */
  implementation?: AttentionImplementation
}

/**
 * How attention() computes: "materialized" saves the [batch, heads, seq, seq]
 * probabilities for backward; "fused" (flash-style tiles, an online softmax)
 * saves one log-sum-exp per row and recomputes the probabilities in backward.
 * Both give the same results up to float rounding, with the same dropout mask.
 */
export type AttentionImplementation = 'fused' | 'materialized'

// The defaults per device. CUDA: materialized until the fused kernels have
// passed scripts/gpu/gpu-check.sh on a GPU (the backend table's flash cases and the
// model tests with BERTKIT_ATTENTION=fused). CPU: materialized, the faster one
// at the MiniLM / BERT shapes (batch 16, seq 64 / 128, 12 heads of 32 / 64):
// fused took 1.4-1.5x its time, 1.2x with dynamic padding, for 64-128x less
// saved memory (bench/bench-attention.ts, benchmarks/attention-cpu.md).
const DEFAULT_ATTENTION: Record<DeviceName, AttentionImplementation> = { cpu: 'materialized', cuda: 'materialized' }
let attentionOverride: AttentionImplementation | null = null

function parseAttentionImplementation(value: string, where: string): AttentionImplementation | null {
  const v = value.toLowerCase()
  if (v === 'fused' || v === 'materialized') return v
  if (v === 'auto' || v === '') return null
  throw new Error(`${where} must be fused, materialized or auto, got "${value}"`)
}

/**
 * Chooses attention()'s kernels for every device from now on ("auto": the
 * per-device default again). Takes precedence over BERTKIT_ATTENTION.
 */
export function setAttentionImplementation(implementation: AttentionImplementation | 'auto'): void {
  attentionOverride = parseAttentionImplementation(implementation, 'setAttentionImplementation')
}

/** The kernels attention() uses on `device`: setAttentionImplementation(), else BERTKIT_ATTENTION, else the default. */
export function attentionImplementation(device: DeviceName): AttentionImplementation {
  if (attentionOverride) return attentionOverride
  const fromEnv = process.env.BERTKIT_ATTENTION
  return (fromEnv ? parseAttentionImplementation(fromEnv, 'BERTKIT_ATTENTION') : null) ?? DEFAULT_ATTENTION[device]
}

/**
 * softmax(q·kᵀ·scale + mask bias)·v per batch and head. q, k, v: [batch, seq,
 * hidden]; mask: int32 [batch, seq] with 1 for real tokens, 0 for padding.
 */
export function attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor, options: AttentionOptions): Tensor {
  expectDtype('attention', 'q', q, 'float32')
  expectDtype('attention', 'k', k, 'float32')
  expectDtype('attention', 'v', v, 'float32')
  expectDtype('attention', 'mask', mask, 'int32')
  sameDevice('attention', { q, k, v, mask })
  if (q.ndim !== 3 || !sameShape(q.shape, k.shape) || !sameShape(q.shape, v.shape)) {
    fail('attention', `q ${formatShape(q.shape)}, k ${formatShape(k.shape)} and v ${formatShape(v.shape)} must all be [batch, seq, hidden]`)
  }
  const [batch, seq, hidden] = q.shape
  if (mask.ndim !== 2 || mask.shape[0] !== batch || mask.shape[1] !== seq) {
    fail('attention', `mask ${formatShape(mask.shape)} must be [${batch}, ${seq}] for q ${formatShape(q.shape)}`)
  }
  const heads = options.heads
  if (!Number.isInteger(heads) || heads < 1 || hidden % heads !== 0) {
    fail('attention', `hidden size ${hidden} is not a multiple of the number of heads (${heads})`)
  }
  const headDim = hidden / heads
  const scaleFactor = options.scale ?? 1 / Math.sqrt(headDim)
  const p = options.training ? (options.dropoutP ?? 0) : 0
  if (!(p >= 0 && p < 1)) fail('attention', `dropoutP must be in [0, 1), got ${p}`)
  const { seed, offset } = p > 0 ? nextPhiloxRange(batch * heads * seq * seq) : { seed: 0n, offset: 0n }
  const addon = native()
  const out = empty(q.shape, { device: q.device })
  const implementation = options.implementation ?? attentionImplementation(q.device)
  if (implementation === 'fused') {
    // Saved: views of q, k, v, mask and out (storage the tape shares with
    // their other users: out is the next Linear's saved input anyway) and
    // lse, [batch, heads, seq] floats instead of probs' [batch, heads, seq, seq].
    const lse = emptyUntracked([batch, heads, seq], q.device)
    try {
      addon.flashAttentionForward(batch, seq, heads, headDim, scaleFactor, p, seed, offset, q.buffer, k.buffer, v.buffer,
        mask.buffer, lse.buffer, out.buffer)
    } catch (err) {
      lse.dispose()
      out.dispose()
      throw err
    }
    return record('attention', out, [q, k, v, mask], [save(q), save(k), save(v), save(mask), save(out), lse],
      (g, [gq, gk, gv], [sq, sk, sv, sMask, sOut, sLse]) => {
        addon.flashAttentionBackward(batch, seq, heads, headDim, scaleFactor, p, seed, offset, sq!.buffer, sk!.buffer,
          sv!.buffer, sMask!.buffer, sLse!.buffer, sOut!.buffer, g.buffer, gq ? gq.buffer : null, gk ? gk.buffer : null,
          gv ? gv.buffer : null)
      })
  }
  if (implementation !== 'materialized') fail('attention', `implementation must be fused or materialized, got ${String(implementation)}`)
  const probs = emptyUntracked([batch, heads, seq, seq], q.device)
  addon.attentionForward(batch, seq, heads, headDim, scaleFactor, p, seed, offset, q.buffer, k.buffer, v.buffer,
    mask.buffer, probs.buffer, out.buffer)
  return record('attention', out, [q, k, v, mask], [save(q), save(k), save(v), probs], (g, [gq, gk, gv], [sq, sk, sv, sProbs]) => {
    addon.attentionBackward(batch, seq, heads, headDim, scaleFactor, p, seed, offset, sq!.buffer, sk!.buffer, sv!.buffer,
      sProbs!.buffer, g.buffer, gq ? gq.buffer : null, gk ? gk.buffer : null, gv ? gv.buffer : null)
  })
}

// ---- slicing -----------------------------------------------------------------------

/** x [batch, rows, cols] → rows [start, start + count) of each batch: [batch, count, cols]. */
export function sliceRows(x: Tensor, start: number, count: number): Tensor {
  expectDtype('sliceRows', 'x', x, 'float32')
  if (x.ndim !== 3) fail('sliceRows', `x must be 3-D [batch, rows, cols], got ${formatShape(x.shape)}`)
  const [batch, rows, cols] = x.shape
  if (!Number.isInteger(start) || !Number.isInteger(count) || start < 0 || count < 0 || start + count > rows) {
    fail('sliceRows', `rows [${start}, ${start + count}) are outside ${formatShape(x.shape)}`)
  }
  const addon = native()
  const out = empty([batch, count, cols], { device: x.device })
  addon.sliceRowsForward(batch, rows, cols, start, count, x.buffer, out.buffer)
  return record('sliceRows', out, [x], [], (g, [gx]) => {
    addon.sliceRowsBackward(batch, rows, cols, start, count, g.buffer, gx!.buffer)
  })
}

// ---- losses ------------------------------------------------------------------------

export interface CrossEntropyOptions {
  ignoreIndex?: number
  /** Per-class weights, as torch's `weight` argument. */
  weight?: Tensor | null
}

/** Mean cross-entropy of logits [rows, classes] against int32 labels [rows] (torch semantics). */
export function crossEntropy(logits: Tensor, labels: Tensor, options: CrossEntropyOptions = {}): Tensor {
  expectDtype('crossEntropy', 'logits', logits, 'float32')
  expectDtype('crossEntropy', 'labels', labels, 'int32')
  const weight = options.weight ?? null
  if (weight) expectDtype('crossEntropy', 'weight', weight, 'float32')
  sameDevice('crossEntropy', { logits, labels, weight })
  if (logits.ndim !== 2) fail('crossEntropy', `logits must be 2-D [rows, classes], got ${formatShape(logits.shape)}`)
  const [rows, classes] = logits.shape
  if (labels.numel !== rows) fail('crossEntropy', `labels ${formatShape(labels.shape)} must have ${rows} elements for logits ${formatShape(logits.shape)}`)
  if (weight && weight.numel !== classes) fail('crossEntropy', `weight ${formatShape(weight.shape)} must have ${classes} elements`)
  const ignoreIndex = options.ignoreIndex ?? -100
  const addon = native()
  const loss = empty([], { device: logits.device })
  try {
    addon.crossEntropyForward(rows, classes, logits.buffer, labels.buffer, ignoreIndex, weight ? weight.buffer : null, loss.buffer)
  } catch (err) {
    loss.dispose()
    throw err
  }
  return record('crossEntropy', loss, [logits, labels, weight], [save(logits), save(labels), save(weight)],
    (g, [glogits], [sLogits, sLabels, sWeight]) => {
      addon.crossEntropyBackward(rows, classes, sLogits!.buffer, sLabels!.buffer, ignoreIndex, sWeight ? sWeight.buffer : null,
        g.buffer, glogits!.buffer)
    })
}

/**
 * x [n] → [n, 2] with a zero first column: the pair (0, x_i) whose two-class
 * softmax equals sigmoid(x_i). Lets binary cross-entropy reuse crossEntropy.
 */
export function zeroColumnPairs(x: Tensor): Tensor {
  expectDtype('zeroColumnPairs', 'x', x, 'float32')
  const n = x.numel
  const addon = native()
  const out = empty([n, 2], { device: x.device })
  addon.fill(out.buffer, 2 * n, 0)
  // Viewing out as [n, 2 rows, 1 col], x lands in row 1 of each pair.
  addon.sliceRowsBackward(n, 2, 1, 1, 1, x.buffer, out.buffer)
  return record('zeroColumnPairs', out, [x], [], (g, [gx]) => {
    const column = emptyUntracked([n], g.device)
    try {
      addon.sliceRowsForward(n, 2, 1, 1, 1, g.buffer, column.buffer)
      addon.axpby(n, 1, column.buffer, 1, gx!.buffer)
    } finally {
      column.dispose()
    }
  })
}

// ---- losses with soft targets (host, float64) -------------------------------------------

/**
 * A loss of logits [rows, classes] against float targets, evaluated on the
 * host in float64 by `evaluate`, which returns the loss and dloss/dlogits.
 * These heads are a few numbers per row and their targets are read on the
 * host anyway (to check them), so no kernel is needed; the gradient goes
 * back to the logits' device in one write.
 */
function hostLoss(op: string, logits: Tensor, targets: Float32Array,
  evaluate: (x: Float32Array, t: Float32Array, rows: number, classes: number) => { loss: number; grad: Float64Array }): Tensor {
  expectDtype(op, 'logits', logits, 'float32')
  if (logits.ndim !== 2) fail(op, `logits must be 2-D [rows, classes], got ${formatShape(logits.shape)}`)
  const [rows, classes] = logits.shape
  if (targets.length !== rows * classes) fail(op, `targets hold ${targets.length} values, logits ${formatShape(logits.shape)} need ${rows * classes}`)
  if (rows === 0) fail(op, 'no rows (the mean of nothing is NaN)')
  const { loss, grad } = evaluate(logits.toFloat32Array(), targets, rows, classes)
  const out = tensorOnDevice(Float32Array.of(loss), [], logits.device)
  if (!willRecord([logits])) return out
  const saved = emptyUntracked([rows, classes], logits.device)
  saved.buffer.write(Float32Array.from(grad))
  return record(op, out, [logits], [saved], (g, [gx], [sg]) => {
    // The upstream gradient of a scalar loss is one number (1, or a loss scale / accumulation factor).
    const factor = g.toFloat32Array()[0]
    native().axpby(rows * classes, factor, sg!.buffer, 1, gx!.buffer)
  })
}

function tensorOnDevice(values: Float32Array, shape: number[], device: DeviceName): Tensor {
  const t = empty(shape, { device })
  t.buffer.write(values)
  return t
}

/** log(1 + e^x) without overflow or cancellation. */
function softplus64(x: number): number {
  return x > 0 ? x + Math.log1p(Math.exp(-x)) : Math.log1p(Math.exp(x))
}

/**
 * torch's BCEWithLogitsLoss (mean over every element) for targets in [0, 1]
 * (probabilities, not only 0/1): mean of (1 - t) x + log(1 + e^-x), as torch
 * writes it; the gradient is (sigmoid(x) - t) / n.
 */
export function binaryCrossEntropyWithLogits(logits: Tensor, targets: Float32Array): Tensor {
  return hostLoss('binaryCrossEntropyWithLogits', logits, targets, (x, t, rows, classes) => {
    const n = rows * classes
    const grad = new Float64Array(n)
    let sum = 0
    for (let i = 0; i < n; i++) {
      sum += (1 - t[i]) * x[i] + softplus64(-x[i])
      grad[i] = (1 / (1 + Math.exp(-x[i])) - t[i]) / n
    }
    return { loss: sum / n, grad }
  })
}

/**
 * Cross-entropy against soft labels, mean over rows of -sum_c t_c log_softmax(x)_c
 * (transformers' DeBERTa head with float labels and no problem_type). The
 * targets need not sum to 1; the gradient is (sum_c t_c * softmax(x) - t) / rows.
 */
export function softTargetCrossEntropy(logits: Tensor, targets: Float32Array): Tensor {
  return hostLoss('softTargetCrossEntropy', logits, targets, (x, t, rows, classes) => {
    const grad = new Float64Array(rows * classes)
    let sum = 0
    for (let r = 0; r < rows; r++) {
      const o = r * classes
      let max = -Infinity
      for (let c = 0; c < classes; c++) max = Math.max(max, x[o + c])
      let z = 0
      for (let c = 0; c < classes; c++) z += Math.exp(x[o + c] - max)
      const lse = max + Math.log(z)
      let total = 0
      for (let c = 0; c < classes; c++) {
        sum -= t[o + c] * (x[o + c] - lse)
        total += t[o + c]
      }
      for (let c = 0; c < classes; c++) grad[o + c] = (total * Math.exp(x[o + c] - lse) - t[o + c]) / rows
    }
    return { loss: sum / rows, grad }
  })
}

// ---- batched products and masked pooling ---------------------------------------------

/** a [batch, m, k] · b [batch, k, n] → [batch, m, n] (torch.bmm), one strided native gemm. */
export function bmm(a: Tensor, b: Tensor): Tensor {
  expectDtype('bmm', 'a', a, 'float32')
  expectDtype('bmm', 'b', b, 'float32')
  sameDevice('bmm', { a, b })
  if (a.ndim !== 3 || b.ndim !== 3 || a.shape[0] !== b.shape[0] || a.shape[2] !== b.shape[1]) {
    fail('bmm', `cannot multiply ${formatShape(a.shape)} by ${formatShape(b.shape)} (expected [batch, m, k] and [batch, k, n])`)
  }
  const [batch, m, k] = a.shape
  const n = b.shape[2]
  const half = autocastDtype()
  if (half && batch * m * n > 0) return productHalf('bmm', a, b, false, batch, m, n, k, [batch, m, n], half)
  const addon = native()
  const out = empty([batch, m, n], { device: a.device })
  if (out.numel > 0) addon.gemm(false, false, m, n, k, 1, a.buffer, b.buffer, 0, out.buffer, batch, m * k, k * n, m * n)
  const recording = willRecord([a, b])
  return record('bmm', out, [a, b],
    [recording && b.requiresGrad ? save(a) : null, recording && a.requiresGrad ? save(b) : null],
    (g, [ga, gb], [sa, sb], [freshA, freshB]) => {
      // da = g · bᵀ ; db = aᵀ · g, per batch entry.
      if (ga) addon.gemm(false, true, m, k, n, 1, g.buffer, sb!.buffer, freshA ? 0 : 1, ga.buffer, batch, m * n, k * n, m * k)
      if (gb) addon.gemm(true, false, k, n, m, 1, sa!.buffer, g.buffer, freshB ? 0 : 1, gb.buffer, batch, m * k, m * n, k * n)
    }, [true, true])
}

/** The mask as host int32 [batch, seq] (all ones for null), checked against h [batch, seq, dim]. */
function poolingMask(op: string, h: Tensor, mask: Tensor | null): Int32Array {
  expectDtype(op, 'h', h, 'float32')
  if (h.ndim !== 3) fail(op, `h must be 3-D [batch, seq, dim], got ${formatShape(h.shape)}`)
  const [batch, seq] = h.shape
  if (mask === null) return new Int32Array(batch * seq).fill(1)
  expectDtype(op, 'mask', mask, 'int32')
  sameDevice(op, { h, mask })
  if (mask.ndim !== 2 || mask.shape[0] !== batch || mask.shape[1] !== seq) {
    fail(op, `mask ${formatShape(mask.shape)} must be [${batch}, ${seq}] for h ${formatShape(h.shape)}`)
  }
  // The mask as written from the host (NativeBuffer keeps int32 values it was given: no device read).
  const values = mask.toInt32Array()
  for (let b = 0; b < batch; b++) {
    let any = false
    for (let s = 0; s < seq && !any; s++) any = values[b * seq + s] !== 0
    if (!any) fail(op, `row ${b} of the attention mask has no unpadded token to pool over`)
  }
  return values
}

/**
 * Mean of h [batch, seq, dim] over the tokens whose mask is non-zero → [batch, dim]:
 * the weights mask/count as [batch, 1, seq] times h in one batched product, so the
 * backward is that product's. Reads the mask from its host copy (no device read; see NativeBuffer::host_indices).
 */
export function maskedMeanPool(h: Tensor, mask: Tensor | null): Tensor {
  const values = poolingMask('maskedMeanPool', h, mask)
  const [batch, seq, dim] = h.shape
  const weights = new Float32Array(batch * seq)
  for (let b = 0; b < batch; b++) {
    let count = 0
    for (let s = 0; s < seq; s++) if (values[b * seq + s] !== 0) count++
    for (let s = 0; s < seq; s++) weights[b * seq + s] = values[b * seq + s] !== 0 ? 1 / count : 0
  }
  const w = empty([batch, 1, seq], { device: h.device })
  try {
    w.buffer.write(weights)
    // bmm keeps its own reference to w for backward; this one can go now.
    return reshape(bmm(w, h), [batch, dim])
  } finally {
    w.dispose()
  }
}

/**
 * Per feature, the maximum of h [batch, seq, dim] over the tokens whose mask is
 * non-zero → [batch, dim]; the gradient goes to the arg-max token (the first
 * one on ties; NaN wins, as torch's max propagates it). One native op finds
 * the values and the arg-max on the device, queued like any other op: nothing
 * waits for the encoder's forward. The arg-max (int32 [batch, dim]) is kept
 * for backward, which adds the incoming gradient at those tokens. The mask is
 * checked from its host copy; a row with no token is an error here (the native
 * op alone would give 0 with no gradient).
 */
export function maskedMaxPool(h: Tensor, mask: Tensor | null): Tensor {
  const values = poolingMask('maskedMaxPool', h, mask)
  const [batch, seq, dim] = h.shape
  const addon = native()
  // A null mask pools over every token: the op takes a mask, so it gets all ones.
  const ones = mask === null ? empty([batch, seq], { dtype: 'int32', device: h.device }) : null
  const out = empty([batch, dim], { device: h.device })
  const argmax = empty([batch, dim], { dtype: 'int32', device: h.device })
  try {
    if (ones) ones.buffer.write(values)
    addon.maskedMaxPoolForward(batch, seq, dim, h.buffer, (ones ?? mask!).buffer, out.buffer, argmax.buffer)
    // The node keeps its own reference to argmax; this one goes in finally.
    return record('maskedMaxPool', out, [h], [save(argmax)], (g, [gh], [sArgmax]) => {
      addon.maskedMaxPoolBackward(batch, seq, dim, sArgmax!.buffer, g.buffer, gh ? gh.buffer : null)
    })
  } catch (err) {
    out.dispose()
    throw err
  } finally {
    // Released in order with the queued op (the CPU stream and the CUDA stream both), so this is safe.
    ones?.dispose()
    argmax.dispose()
  }
}

// ---- disentangled attention's pieces (DeBERTa) ------------------------------------------

/** x [a, b, c, d] → [a, c, b, d]: torch's x.transpose(1, 2).contiguous() of a 4-D tensor. */
export function transpose12(x: Tensor): Tensor {
  expectDtype('transpose12', 'x', x, 'float32')
  if (x.ndim !== 4) fail('transpose12', `x must be 4-D, got ${formatShape(x.shape)}`)
  const [outer, rows, cols, inner] = x.shape
  const addon = native()
  const out = empty([outer, cols, rows, inner], { device: x.device })
  addon.swapAxesForward(outer, rows, cols, inner, x.buffer, out.buffer)
  return record('transpose12', out, [x], [], (g, [gx]) => {
    addon.swapAxesBackward(outer, rows, cols, inner, g.buffer, gx!.buffer)
  })
}

/** a [batch, m, k] · b [batch, n, k]ᵀ → [batch, m, n] (torch.bmm(a, b.transpose(-1, -2))), one strided native gemm. */
export function bmmTransposed(a: Tensor, b: Tensor): Tensor {
  expectDtype('bmmTransposed', 'a', a, 'float32')
  expectDtype('bmmTransposed', 'b', b, 'float32')
  sameDevice('bmmTransposed', { a, b })
  if (a.ndim !== 3 || b.ndim !== 3 || a.shape[0] !== b.shape[0] || a.shape[2] !== b.shape[2]) {
    fail('bmmTransposed', `cannot multiply ${formatShape(a.shape)} by the transpose of ${formatShape(b.shape)} (expected [batch, m, k] and [batch, n, k])`)
  }
  const [batch, m, k] = a.shape
  const n = b.shape[1]
  const half = autocastDtype()
  if (half && batch * m * n > 0) return productHalf('bmmTransposed', a, b, true, batch, m, n, k, [batch, m, n], half)
  const addon = native()
  const out = empty([batch, m, n], { device: a.device })
  if (out.numel > 0) addon.gemm(false, true, m, n, k, 1, a.buffer, b.buffer, 0, out.buffer, batch, m * k, n * k, m * n)
  const recording = willRecord([a, b])
  return record('bmmTransposed', out, [a, b],
    [recording && b.requiresGrad ? save(a) : null, recording && a.requiresGrad ? save(b) : null],
    (g, [ga, gb], [sa, sb], [freshA, freshB]) => {
      // da = g · b ; db = gᵀ · a, per batch entry.
      if (ga) addon.gemm(false, false, m, k, n, 1, g.buffer, sb!.buffer, freshA ? 0 : 1, ga.buffer, batch, m * n, n * k, m * k)
      if (gb) addon.gemm(true, false, n, k, m, 1, g.buffer, sa!.buffer, freshB ? 0 : 1, gb.buffer, batch, m * n, m * k, n * k)
    }, [true, true])
}

/**
 * out[n, s, t] = x[n, s, index[s, t]]: torch.gather(x, -1, index) with one
 * int32 index [rows, picks] shared by every n. x is [batch, rows, width]; the
 * backward scatter-adds, so repeated columns all receive their gradient.
 */
export function gatherColumns(x: Tensor, index: Tensor): Tensor {
  expectDtype('gatherColumns', 'x', x, 'float32')
  expectDtype('gatherColumns', 'index', index, 'int32')
  sameDevice('gatherColumns', { x, index })
  if (x.ndim !== 3) fail('gatherColumns', `x must be 3-D [batch, rows, width], got ${formatShape(x.shape)}`)
  const [batch, rows, width] = x.shape
  if (index.ndim !== 2 || index.shape[0] !== rows) fail('gatherColumns', `index ${formatShape(index.shape)} must be [${rows}, picks] for x ${formatShape(x.shape)}`)
  const picks = index.shape[1]
  const addon = native()
  const out = empty([batch, rows, picks], { device: x.device })
  try {
    addon.gatherColumnsForward(batch, rows, width, picks, x.buffer, index.buffer, out.buffer)
  } catch (err) {
    out.dispose()
    throw new Error(`gatherColumns: ${(err as Error).message.replace(/^gatherColumnsForward: /, '')} (x ${formatShape(x.shape)})`)
  }
  return record('gatherColumns', out, [x, index], [save(index)], (g, [gx], [sIndex]) => {
    addon.gatherColumnsBackward(batch, rows, width, picks, sIndex!.buffer, g.buffer, gx!.buffer)
  })
}

/**
 * softmax(scale · x) over the last dimension of x [groups, batch, seq, seq]
 * (groups = heads), with mask int32 [batch, seq]: element (i, j) of batch b
 * takes part only when mask[b, i] and mask[b, j] are both non-zero; the rest
 * are filled with the float32 minimum first and get no gradient, as
 * transformers' DeBERTa does with masked_fill. A padded query row is uniform.
 */
export function maskedSoftmax(x: Tensor, mask: Tensor, scale = 1): Tensor {
  expectDtype('maskedSoftmax', 'x', x, 'float32')
  expectDtype('maskedSoftmax', 'mask', mask, 'int32')
  sameDevice('maskedSoftmax', { x, mask })
  if (x.ndim !== 4 || x.shape[2] !== x.shape[3]) fail('maskedSoftmax', `x must be [groups, batch, seq, seq], got ${formatShape(x.shape)}`)
  const [groups, batch, seq] = x.shape
  if (mask.ndim !== 2 || mask.shape[0] !== batch || mask.shape[1] !== seq) {
    fail('maskedSoftmax', `mask ${formatShape(mask.shape)} must be [${batch}, ${seq}] for x ${formatShape(x.shape)}`)
  }
  if (!Number.isFinite(scale)) fail('maskedSoftmax', `scale must be finite, got ${scale}`)
  const addon = native()
  const out = empty(x.shape, { device: x.device })
  addon.maskedSoftmaxForward(groups, batch, seq, scale, x.buffer, mask.buffer, out.buffer)
  const recording = willRecord([x])
  return record('maskedSoftmax', out, [x, mask], [recording ? save(out) : null, save(mask)], (g, [gx], [sProbs, sMask]) => {
    addon.maskedSoftmaxBackward(groups, batch, seq, scale, sProbs!.buffer, g.buffer, sMask!.buffer, gx!.buffer)
  })
}

/**
 * x [batch, seq, dim] with row (b, s) multiplied by mask[b, s] (int32, as a
 * float): DeBERTa's `embeddings * mask.unsqueeze(2)`. Done as batch·seq
 * products of a 1×1 by a 1×dim matrix, so the gradient is the same product.
 */
export function mulRowsByMask(x: Tensor, mask: Tensor): Tensor {
  expectDtype('mulRowsByMask', 'x', x, 'float32')
  expectDtype('mulRowsByMask', 'mask', mask, 'int32')
  sameDevice('mulRowsByMask', { x, mask })
  if (x.ndim !== 3 || mask.ndim !== 2 || mask.shape[0] !== x.shape[0] || mask.shape[1] !== x.shape[1]) {
    fail('mulRowsByMask', `mask ${formatShape(mask.shape)} must be [batch, seq] of x ${formatShape(x.shape)}`)
  }
  const rows = mask.numel
  const dim = x.shape[2]
  const addon = native()
  const factors = emptyUntracked([rows], x.device)
  addon.cast(rows, mask.buffer, factors.buffer)
  const out = empty(x.shape, { device: x.device })
  if (out.numel > 0) addon.gemm(false, false, 1, dim, 1, 1, factors.buffer, x.buffer, 0, out.buffer, rows, 1, dim, dim)
  return record('mulRowsByMask', out, [x, mask], [factors], (g, [gx], [sFactors], [fresh]) => {
    if (g.numel > 0) addon.gemm(false, false, 1, dim, 1, 1, sFactors!.buffer, g.buffer, fresh ? 0 : 1, gx!.buffer, rows, 1, dim, dim)
  }, [true, false])
}
