// transformers' modeling_outputs: what a model's forward returns.
import type { Tensor } from '../tensor/tensor.js'

export interface SequenceClassifierOutput {
  /** The loss when labels were given, else null. */
  loss: Tensor | null
  /** [batch, num_labels] */
  logits: Tensor
}
