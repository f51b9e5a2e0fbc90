// Global gradient-norm clipping as torch.nn.utils.clip_grad_norm_ computes it,
// kept on the device: the coefficient is handed to AdamW.step({ gradScale })
// instead of rescaling every gradient in a separate pass.
import { native, type NativeBuffer } from '../native.js'
import { Tensor, zeros, empty } from '../tensor/tensor.js'

export interface ClipResult {
  /** Sum of squares of every gradient element, one-element device tensor. */
  sumOfSquares: Tensor
  /** min(1, maxNorm / (norm + 1e-6)), one-element device tensor. */
  coefficient: Tensor
  /** The global norm; reads the device (a synchronisation), so call it only when logging. */
  totalNorm(): number
}

export function clipGradNorm(params: Iterable<Tensor>, maxNorm: number): ClipResult {
  if (!(maxNorm > 0)) throw new RangeError(`clipGradNorm: maxNorm must be positive, got ${maxNorm}`)
  const addon = native()
  // Every gradient in one op: a single pass, summed in double (not one op per tensor).
  const sizes: number[] = [], grads: NativeBuffer[] = []
  let device: Tensor['device'] | null = null
  for (const p of params) {
    if (!p.grad) continue
    device ??= p.device
    sizes.push(p.grad.numel)
    grads.push(p.grad.buffer)
  }
  const sumSq = zeros([], device ? { device } : {})
  addon.multiTensorSumSquares(sizes.length, sizes, grads, sumSq.buffer)
  const coefficient = empty([], { device: sumSq.device })
  addon.clipCoefficient(sumSq.buffer, maxNorm, coefficient.buffer)
  const sumOfSquares = sumSq
  return { sumOfSquares, coefficient, totalNorm: () => Math.sqrt(sumOfSquares.item()) }
}
