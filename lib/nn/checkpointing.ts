// How an encoder runs one layer: in a scope of its own, so what backward does
// not need dies with the layer (frozen layers keep nothing), or, with
// gradient checkpointing on while training, keeping only the layer's inputs
// and recomputing it in backward.
import type { Module } from './module.js'
import { checkpoint } from '../tensor/checkpoint.js'
import { tidy } from '../tensor/scope.js'
import type { Tensor } from '../tensor/tensor.js'
import { PackedBatch } from '../tensor/packing.js'

/** layerForward(...inputs) for `layer` of `encoder`; inputs are every tensor the layer reads. */
export function runEncoderLayer(encoder: Module, layer: Module, layerForward: (...inputs: Array<Tensor | null>) => Tensor, inputs: Array<Tensor | null>): Tensor {
  if (encoder.gradientCheckpointing && encoder.training) return checkpoint(layerForward, inputs, layer.parameters())
  return tidy(() => layerForward(...inputs))
}

/**
 * hidden through `layers` in turn, each by runEncoderLayer (one scope per
 * layer: what a layer made and backward does not need is freed when the
 * layer ends, not when the whole step ends, as torch frees by reference
 * count). mask: the attention mask, or the packed layout when hidden holds
 * the real tokens only.
 */
export function runEncoderLayers(encoder: Module, layers: ReadonlyArray<Module & { forward(hidden: Tensor, mask: Tensor | PackedBatch): Tensor }>,
  hidden: Tensor, mask: Tensor | PackedBatch): Tensor {
  for (const layer of layers) {
    hidden = mask instanceof PackedBatch
      ? runEncoderLayer(encoder, layer, (h) => layer.forward(h!, mask), [hidden])
      : runEncoderLayer(encoder, layer, (h, m) => layer.forward(h!, m!), [hidden, mask])
  }
  return hidden
}
