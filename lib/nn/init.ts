// Weight initialisation as transformers' BertPreTrainedModel._init_weights:
// normal(0, initializer_range) for Linear and Embedding weights, zero biases,
// LayerNorm weight 1 / bias 0, and a zero row at the padding index.
import { tensor, type Tensor } from '../tensor/tensor.js'
import { hostNormal } from '../tensor/random.js'
import type { DeviceName } from '../tensor/device.js'

export function normalTensor(shape: number[], std: number, device?: DeviceName): Tensor {
  const n = shape.reduce((a, b) => a * b, 1)
  const values = new Float32Array(n)
  for (let i = 0; i < n; i++) values[i] = hostNormal() * std
  return tensor(values, { shape, device })
}

export function constantTensor(shape: number[], value: number, device?: DeviceName): Tensor {
  const n = shape.reduce((a, b) => a * b, 1)
  return tensor(new Float32Array(n).fill(value), { shape, device })
}
