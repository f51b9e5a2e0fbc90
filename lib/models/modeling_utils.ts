// Pieces every *ForSequenceClassification shares in transformers: the loss
// chosen by problem_type, and the checks on input ids.
import { add, binaryCrossEntropyWithLogits, crossEntropy, mean, mul, reshape, scale, zeroColumnPairs } from '../tensor/ops.js'
import { tensor, formatShape, Tensor } from '../tensor/tensor.js'
import type { ProblemType } from './configuration_utils.js'

/** The problem type transformers would pick: from the config, else from num_labels and the labels' dtype. */
export function problemTypeFor(configured: ProblemType | null, numLabels: number, labels: Tensor): ProblemType {
  if (configured) return configured
  if (numLabels === 1) return 'regression'
  return labels.dtype === 'int32' ? 'single_label_classification' : 'multi_label_classification'
}

/**
 * CrossEntropyLoss, MSELoss(logits.squeeze(), labels.squeeze()) or
 * BCEWithLogitsLoss, as the *ForSequenceClassification heads of transformers
 * compute them. `owner` names the model in error messages.
 */
export function sequenceClassificationLoss(owner: string, kind: ProblemType, logits: Tensor, labels: Tensor, numLabels: number): Tensor {
  const batch = logits.shape[0]
  if (kind === 'single_label_classification') {
    if (labels.dtype !== 'int32') throw new TypeError(`${owner}: single-label labels must be int32, got ${labels.dtype}`)
    if (labels.numel !== batch) throw new RangeError(`${owner}: labels ${formatShape(labels.shape)} must have ${batch} elements`)
    return crossEntropy(logits, labels)
  }
  if (kind === 'regression') {
    if (labels.dtype !== 'float32') throw new TypeError(`${owner}: regression labels must be float32, got ${labels.dtype}`)
    if (labels.numel !== logits.numel) throw new RangeError(`${owner}: labels ${formatShape(labels.shape)} must match logits ${formatShape(logits.shape)}`)
    const diff = add(reshape(logits, [logits.numel]), scale(reshape(labels, [labels.numel]), -1))
    return mean(mul(diff, diff))
  }
  // BCEWithLogitsLoss. Targets are probabilities in [0, 1], as transformers takes them (0/1 labels,
  // or soft ones from label smoothing or a teacher).
  if (labels.numel !== logits.numel) throw new RangeError(`${owner}: multi-label labels ${formatShape(labels.shape)} must match logits ${formatShape(logits.shape)}`)
  const targets = labels.toFloat32Array()
  let soft = false
  for (let i = 0; i < targets.length; i++) {
    const v = targets[i]
    if (!(v >= 0 && v <= 1)) {
      throw new RangeError(`${owner}: multi-label targets must be probabilities in [0, 1], got ${v} at [${Math.floor(i / numLabels)}, ${i % numLabels}]`)
    }
    if (v !== 0 && v !== 1) soft = true
  }
  if (soft) return binaryCrossEntropyWithLogits(reshape(logits, [logits.shape[0], logits.numel / logits.shape[0]]), targets)
  // 0/1 targets: the mean over every (row, label) of a two-class cross-entropy, on the device.
  const hard = Int32Array.from(targets)
  const targetTensor = tensor(hard, { dtype: 'int32', device: logits.device })
  try {
    return crossEntropy(zeroColumnPairs(reshape(logits, [logits.numel])), targetTensor)
  } finally {
    targetTensor.dispose()
  }
}

/** input_ids must be int32 [batch, seq], neither dimension empty. Returns [batch, seq]. */
export function checkInputIds(owner: string, inputIds: unknown): [number, number] {
  if (!(inputIds instanceof Tensor) || inputIds.dtype !== 'int32' || inputIds.ndim !== 2) {
    throw new TypeError(`${owner}: input_ids must be an int32 tensor [batch, seq]${inputIds instanceof Tensor ? `, got ${inputIds.dtype} ${formatShape(inputIds.shape)}` : ''}`)
  }
  const [batch, seq] = inputIds.shape
  if (batch === 0 || seq === 0) throw new RangeError(`${owner}: input_ids ${formatShape(inputIds.shape)} is empty`)
  return [batch, seq]
}

/** Another id tensor of the batch (attention_mask, token_type_ids, position_ids): int32 and shaped like input_ids. */
export function checkIdsLike(owner: string, name: string, t: unknown, batch: number, seq: number): Tensor {
  if (!(t instanceof Tensor)) throw new TypeError(`${owner}: ${name} must be a Tensor`)
  if (t.dtype !== 'int32') throw new TypeError(`${owner}: ${name} must be int32, got ${t.dtype}`)
  if (t.ndim !== 2 || t.shape[0] !== batch || t.shape[1] !== seq) {
    throw new RangeError(`${owner}: ${name} ${formatShape(t.shape)} must be [${batch}, ${seq}] like input_ids`)
  }
  return t
}

/** Runs an embedding lookup; a native out-of-range error names [row, column] of `what` instead of a flat index. */
export function lookup<T>(what: string, seq: number, fn: () => T): T {
  try {
    return fn()
  } catch (err) {
    const m = /ids\[(\d+)\] = (-?\d+) is out of range \[0, (\d+)\)/.exec((err as Error).message)
    if (m) {
      const flat = Number(m[1])
      throw new RangeError(`${what}[${Math.floor(flat / seq)}, ${flat % seq}] = ${m[2]} is out of range [0, ${m[3]})`)
    }
    throw err
  }
}

/**
 * Id tensors a forward pass makes for inputs it was not given; freed when
 * the pass ends (ops copy the ids they keep for backward).
 */
export class OwnedIds {
  private readonly made: Tensor[] = []

  constructor(private readonly owner: string, private readonly batch: number, private readonly seq: number, private readonly device: Tensor['device']) {}

  /** The caller's tensor (checked), or one built from `make()` when it gave none. */
  orDefault(t: Tensor | null | undefined, name: string, make: () => Int32Array): Tensor {
    if (t) return checkIdsLike(this.owner, name, t, this.batch, this.seq)
    const made = tensor(make(), { shape: [this.batch, this.seq], dtype: 'int32', device: this.device })
    this.made.push(made)
    return made
  }

  dispose(): void {
    for (const t of this.made) t.dispose()
  }
}

/**
 * Logits [rows, numLabels] read back from a forward pass must be finite: a
 * NaN row has no argmax, and reporting one anyway (label -1, null scores) is
 * a silent wrong answer. `where` names the rows' origin (e.g. "prediction
 * batch 3"); `firstRow` numbers rows across batches.
 */
export function checkFiniteLogits(where: string, logits: Float32Array, numLabels: number, firstRow = 0): void {
  for (let i = 0; i < logits.length; i++) {
    const v = logits[i]
    if (v - v === 0) continue
    let rows = 0
    for (let r = 0; r < logits.length / numLabels; r++) {
      if (logits.subarray(r * numLabels, (r + 1) * numLabels).some((x) => !Number.isFinite(x))) rows++
    }
    throw new Error(`${where}: the model produced non-finite logits (${v}) for ${rows} row(s), the first at row ${firstRow + Math.floor(i / numLabels)}; ` +
      'its weights hold NaN/Inf or overflow in this precision (try fp32)')
  }
}
