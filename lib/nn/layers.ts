// The building blocks with torch's parameter names: Linear (weight, bias),
// Embedding (weight), LayerNorm (weight, bias), Dropout.
import { Module } from './module.js'
import { normalTensor, constantTensor } from './init.js'
import { linear, linearActivation, activation, embedding, layerNorm, dropout, type ActivationName } from '../tensor/ops.js'
import { dropoutRows, type PackedBatch } from '../tensor/packing.js'
import type { Tensor } from '../tensor/tensor.js'
import type { DeviceName } from '../tensor/device.js'

export interface InitOptions {
  /** Standard deviation of the normal init of weights (config.initializer_range). */
  std?: number
  device?: DeviceName
}

export class Linear extends Module {
  readonly weight: Tensor
  readonly bias: Tensor | null

  constructor(readonly inFeatures: number, readonly outFeatures: number, options: InitOptions & { bias?: boolean } = {}) {
    super()
    const std = options.std ?? 0.02
    this.weight = this.registerParameter('weight', normalTensor([outFeatures, inFeatures], std, options.device))
    this.bias = options.bias === false ? null : this.registerParameter('bias', constantTensor([outFeatures], 0, options.device))
  }

  forward(x: Tensor): Tensor {
    return linear(x, this.weight, this.bias)
  }
}

/**
 * activation(dense.forward(x), kind): as one op (linearActivation, whose
 * backward under autocast fuses) when dense is a plain Linear; anything else
 * in its place (a LoRA wrapper, a replaced forward) runs as written.
 */
export function denseActivation(dense: Module & { forward(x: Tensor): Tensor }, x: Tensor, kind: ActivationName): Tensor {
  if (dense instanceof Linear && dense.forward === Linear.prototype.forward) return linearActivation(x, dense.weight, dense.bias, kind)
  return activation(dense.forward(x), kind)
}

export class Embedding extends Module {
  readonly weight: Tensor

  constructor(readonly numEmbeddings: number, readonly embeddingDim: number, options: InitOptions & { paddingIdx?: number | null } = {}) {
    super()
    const std = options.std ?? 0.02
    const pad = options.paddingIdx
    const zeroRow = pad !== undefined && pad !== null && pad >= 0 && pad < numEmbeddings ? pad : undefined
    this.paddingIdx = zeroRow ?? null
    this.weight = this.registerParameter('weight', normalTensor([numEmbeddings, embeddingDim], std, options.device, zeroRow))
  }

  readonly paddingIdx: number | null

  forward(ids: Tensor): Tensor {
    return embedding(ids, this.weight, { paddingIdx: this.paddingIdx })
  }
}

export class LayerNorm extends Module {
  readonly weight: Tensor
  readonly bias: Tensor

  constructor(readonly normalizedShape: number, readonly eps = 1e-5, options: { device?: DeviceName } = {}) {
    super()
    this.weight = this.registerParameter('weight', constantTensor([normalizedShape], 1, options.device))
    this.bias = this.registerParameter('bias', constantTensor([normalizedShape], 0, options.device))
  }

  /** LayerNorm(x + residual) when a residual is given (one fused pass). */
  forward(x: Tensor, residual: Tensor | null = null): Tensor {
    return layerNorm(x, this.weight, this.bias, this.eps, residual)
  }
}

export class Dropout extends Module {
  constructor(readonly p: number) {
    super()
    if (!(p >= 0 && p < 1)) throw new RangeError(`Dropout: p must be in [0, 1), got ${p}`)
  }

  /** With `packed`, x holds the batch's real tokens [tokens, cols] and draws the padded batch's mask. */
  forward(x: Tensor, packed: PackedBatch | null = null): Tensor {
    return packed ? dropoutRows(x, this.p, this.training, packed) : dropout(x, this.p, this.training)
  }
}
