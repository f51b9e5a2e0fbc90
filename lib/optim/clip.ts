// Global gradient-norm clipping as torch.nn.utils.clip_grad_norm_ computes it,
// kept on the device: the coefficient is handed to AdamW.step({ gradScale })
// instead of rescaling every gradient in a separate pass.
import { native, type NativeBuffer } from '../native.js'
import { Tensor, zeros, empty } from '../tensor/tensor.js'
import { rowMarksOf } from '../tensor/row_sparse.js'

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
  // Row-sparse gradients (embedding tables): only their marked rows are read;
  // the others are zero and add nothing (same bits as the dense sum).
  const marks: Array<NativeBuffer | null> = [], widths: number[] = []
  let sparse = false
  let device: Tensor['device'] | null = null
  for (const p of params) {
    if (!p.grad) continue
    device ??= p.device
    sizes.push(p.grad.numel)
    const rm = rowMarksOf(p.grad)
    grads.push(rm ? p.grad.rawBuffer : p.grad.buffer)
    marks.push(rm ? rm.marks : null)
    widths.push(rm ? rm.width : 0)
    sparse ||= rm !== null
  }
  const sumSq = zeros([], device ? { device } : {})
  if (sparse) addon.multiTensorSumSquaresRows(sizes.length, sizes, grads, marks, widths, sumSq.buffer)
  else addon.multiTensorSumSquares(sizes.length, sizes, grads, sumSq.buffer)
  const coefficient = empty([], { device: sumSq.device })
  addon.clipCoefficient(sumSq.buffer, maxNorm, coefficient.buffer)
  const sumOfSquares = sumSq
  return { sumOfSquares, coefficient, totalNorm: () => Math.sqrt(sumOfSquares.item()) }
}
