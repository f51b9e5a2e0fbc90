// Weight initialisation as transformers' BertPreTrainedModel._init_weights:
// normal(0, initializer_range) for Linear and Embedding weights, zero biases,
// LayerNorm weight 1 / bias 0, and a zero row at the padding index.
import { tensor, empty, type Tensor } from '../tensor/tensor.js'
import { hostNormal } from '../tensor/random.js'
import type { DeviceName } from '../tensor/device.js'

// While loading a checkpoint, drawing random values for weights that are
// about to be overwritten would waste seconds on a large model: in deferred
// mode the tensors are allocated empty and their initialiser is kept, to run
// only for the weights the checkpoint lacks.
let deferred: Map<Tensor, () => void> | null = null

/** Builds with initialisation deferred; returns what fn built and the pending initialisers. */
export function withDeferredInit<T>(fn: () => T): { value: T; pending: Map<Tensor, () => void> } {
  if (deferred) throw new Error('withDeferredInit: already deferring')
  deferred = new Map()
  try {
    const value = fn()
    return { value, pending: deferred }
  } finally {
    deferred = null
  }
}

/** A parameter tensor whose values `fill` writes, now or (in deferred mode) only if a checkpoint lacks it. */
export function makeTensor(shape: number[], device: DeviceName | undefined, fill: (values: Float32Array) => void): Tensor {
  const n = shape.reduce((a, b) => a * b, 1)
  const write = (t: Tensor) => {
    const values = new Float32Array(n)
    fill(values)
    t.buffer.write(values)
  }
  if (deferred) {
    const t = empty(shape, { device })
    deferred.set(t, () => write(t))
    return t
  }
  const values = new Float32Array(n)
  fill(values)
  return tensor(values, { shape, device })
}

export function normalTensor(shape: number[], std: number, device?: DeviceName, zeroRow?: number): Tensor {
  return makeTensor(shape, device, (values) => {
    for (let i = 0; i < values.length; i++) values[i] = hostNormal() * std
    if (zeroRow !== undefined) values.fill(0, zeroRow * shape[1], (zeroRow + 1) * shape[1])
  })
}

export function constantTensor(shape: number[], value: number, device?: DeviceName): Tensor {
  return makeTensor(shape, device, (values) => values.fill(value))
}
