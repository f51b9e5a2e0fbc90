// Activation checkpointing (torch.utils.checkpoint): a block's forward runs
// without recording the tape, so none of its intermediates outlive it; one
// node keeps only the block's inputs, and during backward it runs the block
// again, with the tape on, and back-propagates through that copy.
//
// Two things make the recomputation the same computation as the first run:
// the dropout masks are drawn again from the Philox position the first run
// started at (and the stream is put back afterwards, so later draws do not
// move), and autocast is the precision the first run used. On the CPU the
// gradients are then bit-identical to a run without checkpointing.
//
// Unlike torch's reentrant checkpoint, a block whose inputs need no gradient
// but whose own parameters do (frozen embeddings below trainable layers, a
// LoRA adapter on a frozen base) still records its node: the parameters are
// part of the decision, so their gradients are never silently lost.
import { native } from '../native.js'
import { Node, isGradEnabled, needsGrad, noGrad, runBackward, save } from './autograd.js'
import { autocast, autocastDtype } from './autocast.js'
import { philoxPosition, withPhiloxPosition } from './random.js'
import { tidy, trackNode } from './scope.js'
import { Tensor } from './tensor.js'

/**
 * fn(...inputs) computed once without the tape and again during backward.
 * `inputs` are every tensor fn reads (ids and masks included), since the
 * originals may be freed before backward; `parameters` are the leaves fn uses
 * that may need gradients (a module's parameters()).
 */
export function checkpoint(fn: (...inputs: Array<Tensor | null>) => Tensor, inputs: Array<Tensor | null>, parameters: Iterable<Tensor>): Tensor {
  const wants = inputs.map((t) => needsGrad(t))
  const trainsParameters = [...parameters].some((p) => p.requiresGrad)
  if (!isGradEnabled() || (!wants.some(Boolean) && !trainsParameters)) return tidy(() => fn(...inputs))
  const position = philoxPosition()
  const precision = autocastDtype()
  const output = tidy(() => noGrad(() => fn(...inputs)))
  if (!(output instanceof Tensor) || output.dtype !== 'float32') throw new Error('checkpoint: the block must return one float32 tensor')
  if (inputs.includes(output)) throw new Error('checkpoint: the block returned one of its inputs; there is nothing to recompute')
  const node = new Node('checkpoint', inputs, inputs.map((t) => save(t)), (gradOutput, gradInputs, saved, fresh) => {
    withPhiloxPosition(position, () => inPrecision(precision, () => tidy(() => {
      // Leaves sharing the saved inputs' memory: the copy's graph starts here.
      // Each leaf accumulates straight into the gradient buffer the outer
      // backward handed this node, so contributions are added in the order
      // the plain run adds them (a tensor every layer reads, as DeBERTa's
      // relative-position table, sums bit for bit alike).
      const leaves = saved.map((t, i) => {
        if (t === null) return null
        const leaf = new Tensor(t.retainStorage(), t.shape)
        const into = gradInputs[i]
        if (wants[i] && into) {
          leaf.requiresGrad = true
          if (fresh[i]) native().fill(into.buffer, into.numel, 0)
          leaf.grad = new Tensor(into.retainStorage(), into.shape, false)
        }
        return leaf
      })
      const again = fn(...leaves)
      if (again.requiresGrad) runBackward(again, gradOutput, false)
    })))
  }, inputs.map(() => true))
  node.output = output
  output.gradFn = node
  trackNode(node)
  return output
}

function inPrecision<T>(precision: ReturnType<typeof autocastDtype>, fn: () => T): T {
  const now = autocastDtype()
  if (now === precision) return fn()
  if (now === null) return autocast(precision, fn)
  throw new Error(`checkpoint: the block ran ${precision === null ? 'in fp32' : `under autocast(${precision})`} but backward runs under autocast(${now}); call backward in the precision of the forward`)
}
