// How an encoder runs one layer: in a scope of its own, so what backward does
// not need dies with the layer (frozen layers keep nothing), or, with
// gradient checkpointing on while training, keeping only the layer's inputs
// and recomputing it in backward.
import type { Module } from './module.js'
import { checkpoint } from '../tensor/checkpoint.js'
import { tidy } from '../tensor/scope.js'
import type { Tensor } from '../tensor/tensor.js'

/** layerForward(...inputs) for `layer` of `encoder`; inputs are every tensor the layer reads. */
export function runEncoderLayer(encoder: Module, layer: Module, layerForward: (...inputs: Array<Tensor | null>) => Tensor, inputs: Array<Tensor | null>): Tensor {
  if (encoder.gradientCheckpointing && encoder.training) return checkpoint(layerForward, inputs, layer.parameters())
  return tidy(() => layerForward(...inputs))
}
