// setfit's pair sampler (setfit/sampler.py): every unordered pair of training
// texts, a text paired with itself included, shuffled by numpy's
// RandomState(42); same label → target 1.0, different → 0.0 (multi-label:
// any label in common); then positives and negatives alternate, the shorter
// list repeating from its start to the length the sampling strategy asks for.
import { randomStatePermutation } from './random.js'

export type SamplingStrategy = 'oversampling' | 'undersampling' | 'unique'
export const SAMPLING_STRATEGIES: readonly SamplingStrategy[] = ['oversampling', 'undersampling', 'unique']

/** A label: a class (number or string), or a multi-hot vector for multi-label data. */
export type Label = number | string | readonly number[]

export interface SentencePair {
  sentence1: string
  sentence2: string
  /** 1.0 for a positive pair, 0.0 for a negative one. */
  label: number
  /** Positions of the two texts in the training list (for tests and diagnostics). */
  index1: number
  index2: number
}

/**
 * Index pairs (i, j) with i <= j — numpy's triu_indices(n, 0) order —
 * permuted by RandomState(42): setfit's shuffle_combinations(range(n)).
 */
export function shuffleCombinations(n: number): Array<[number, number]> {
  if (!Number.isInteger(n) || n < 0) throw new RangeError(`shuffleCombinations: n must be a non-negative integer, got ${n}`)
  const pairs: Array<[number, number]> = []
  for (let i = 0; i < n; i++) for (let j = i; j < n; j++) pairs.push([i, j])
  return randomStatePermutation(42, pairs.length).map((k) => pairs[k])
}

export interface ContrastiveDatasetOptions {
  multilabel?: boolean
  /** When set (> 0), the number of pairs is numIterations · texts per side, whatever the strategy (setfit < 1.0). */
  numIterations?: number | null
  samplingStrategy?: SamplingStrategy
  /** Stop collecting once this many pairs are certain (max_steps · batch size); -1: no limit. */
  maxPairs?: number
}

function sameLabel(a: Label, b: Label, multilabel: boolean): boolean {
  if (!multilabel) return a === b
  const x = a as readonly number[]
  const y = b as readonly number[]
  for (let i = 0; i < Math.min(x.length, y.length); i++) if (x[i] && y[i]) return true
  return false
}

/** setfit.sampler.ContrastiveDataset: the positive and negative pairs and the order they are served in. */
export class ContrastiveDataset {
  readonly posPairs: SentencePair[] = []
  readonly negPairs: SentencePair[] = []
  readonly lenPosPairs: number
  readonly lenNegPairs: number

  constructor(readonly sentences: readonly string[], readonly labels: readonly Label[], options: ContrastiveDatasetOptions = {}) {
    if (sentences.length !== labels.length) {
      throw new RangeError(`ContrastiveDataset: ${sentences.length} sentences but ${labels.length} labels`)
    }
    const multilabel = options.multilabel ?? false
    const strategy = options.samplingStrategy ?? 'oversampling'
    const maxPairs = options.maxPairs ?? -1
    const maxPosOrNeg = maxPairs === -1 ? -1 : Math.floor(maxPairs / 2)
    if (multilabel) {
      labels.forEach((l, i) => {
        if (!Array.isArray(l)) throw new TypeError(`ContrastiveDataset: multi-label data needs a 0/1 vector per text; label ${i} is ${JSON.stringify(l)}`)
      })
    }
    for (const [i, j] of shuffleCombinations(sentences.length)) {
      const positive = sameLabel(labels[i], labels[j], multilabel)
      const posFull = maxPosOrNeg !== -1 && this.posPairs.length >= maxPosOrNeg
      const negFull = maxPosOrNeg !== -1 && this.negPairs.length >= maxPosOrNeg
      const pair = { sentence1: sentences[i], sentence2: sentences[j], index1: i, index2: j }
      if (positive) {
        if (!posFull) this.posPairs.push({ ...pair, label: 1 })
      } else if (!negFull) {
        this.negPairs.push({ ...pair, label: 0 })
      }
      if (posFull && negFull) break
    }
    const iterations = options.numIterations ?? null
    if (iterations !== null && iterations > 0) {
      this.lenPosPairs = iterations * sentences.length
      this.lenNegPairs = iterations * sentences.length
    } else if (strategy === 'unique') {
      this.lenPosPairs = this.posPairs.length
      this.lenNegPairs = this.negPairs.length
    } else if (strategy === 'undersampling') {
      this.lenPosPairs = this.lenNegPairs = Math.min(this.posPairs.length, this.negPairs.length)
    } else if (strategy === 'oversampling') {
      this.lenPosPairs = this.lenNegPairs = Math.max(this.posPairs.length, this.negPairs.length)
    } else {
      throw new RangeError(`Invalid sampling strategy ${JSON.stringify(strategy)}. Must be one of 'unique', 'oversampling', or 'undersampling'.`)
    }
    // setfit would loop forever repeating an empty list: say why instead.
    if (this.lenPosPairs > 0 && this.posPairs.length === 0) {
      throw new Error('ContrastiveDataset: no two texts share a label, so there is no positive pair; SetFit needs at least one')
    }
    if (this.lenNegPairs > 0 && this.negPairs.length === 0) {
      throw new Error('ContrastiveDataset: every text has the same label, so there is no negative pair; SetFit needs at least two classes')
    }
  }

  get length(): number {
    return this.lenPosPairs + this.lenNegPairs
  }

  /** The pairs in serving order: positive, negative, positive, … each list cycling from its start. */
  pairs(): SentencePair[] {
    const out: SentencePair[] = []
    for (let k = 0; k < Math.max(this.lenPosPairs, this.lenNegPairs); k++) {
      if (k < this.lenPosPairs) out.push(this.posPairs[k % this.posPairs.length])
      if (k < this.lenNegPairs) out.push(this.negPairs[k % this.negPairs.length])
    }
    return out
  }
}
