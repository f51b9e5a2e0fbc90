// torch.utils.data.DistributedSampler, index for index: each rank reads its
// shard of an epoch's order, and the order is torch's own — torch.randperm
// under a torch.Generator seeded with seed + epoch — so a bertkit run and a
// PyTorch DDP run over the same data see the same rows on the same rank.

import { MT19937, torchShuffledRange } from '../setfit/random.js'

/**
 * The Mersenne Twister (MT19937) of a torch CPU generator: manual_seed(s)
 * seeds it with the low 32 bits of s as init_genrand does, and random()
 * returns its next 32-bit output.
 */
export class TorchGenerator extends MT19937 {
  constructor(seed: number | bigint) {
    super(Number(BigInt.asUintN(32, BigInt(seed))))
  }

  random(): number {
    return this.nextUint32()
  }
}

/**
 * torch.randperm(n, generator=torch.Generator().manual_seed(seed)) on the CPU:
 * a forward Fisher-Yates shuffle drawing random() % (n - i) for position i.
 */
export function torchRandperm(n: number, seed: number | bigint): number[] {
  if (!Number.isInteger(n) || n < 0) throw new Error(`randperm: n must be a non-negative integer, got ${n}`)
  if (n >= 2 ** 32) throw new Error(`randperm: n = ${n} needs torch's 64-bit draws, which are not reproduced here`)
  const g = new TorchGenerator(seed)
  return torchShuffledRange(n, () => g.random())
}

export interface DistributedSamplerOptions {
  numReplicas: number
  rank: number
  shuffle?: boolean
  seed?: number
  dropLast?: boolean
}

/**
 * Splits dataset indices among numReplicas ranks as torch's DistributedSampler
 * does: shuffle with seed + epoch (or keep order), pad by repeating the first
 * indices until every rank gets the same count (or drop the tail with
 * dropLast), then take every numReplicas-th index starting at rank.
 */
export class DistributedSampler {
  readonly numReplicas: number
  readonly rank: number
  readonly shuffle: boolean
  readonly seed: number
  readonly dropLast: boolean
  readonly numSamples: number
  readonly totalSize: number
  private epoch = 0

  constructor(readonly datasetLength: number, options: DistributedSamplerOptions) {
    const { numReplicas, rank } = options
    if (!Number.isInteger(numReplicas) || numReplicas < 1) throw new Error(`DistributedSampler: numReplicas must be a positive integer, got ${numReplicas}`)
    if (!Number.isInteger(rank) || rank < 0 || rank >= numReplicas) throw new Error(`DistributedSampler: invalid rank ${rank}, rank should be in the interval [0, ${numReplicas - 1}]`)
    if (!Number.isInteger(datasetLength) || datasetLength < 0) throw new Error(`DistributedSampler: invalid dataset length ${datasetLength}`)
    this.numReplicas = numReplicas
    this.rank = rank
    this.shuffle = options.shuffle ?? true
    this.seed = options.seed ?? 0
    this.dropLast = options.dropLast ?? false
    this.numSamples = this.dropLast && datasetLength % numReplicas !== 0
      ? Math.ceil((datasetLength - numReplicas) / numReplicas)
      : Math.ceil(datasetLength / numReplicas)
    this.totalSize = this.numSamples * numReplicas
  }

  setEpoch(epoch: number): void {
    this.epoch = epoch
  }

  /** This rank's indices for the current epoch. */
  indices(): number[] {
    let order = this.shuffle ? torchRandperm(this.datasetLength, this.seed + this.epoch) : Array.from({ length: this.datasetLength }, (_, i) => i)
    if (!this.dropLast) {
      const padding = this.totalSize - order.length
      if (padding > 0) {
        if (order.length === 0) throw new Error('DistributedSampler: the dataset is empty')
        const extra: number[] = []
        while (extra.length < padding) extra.push(...order.slice(0, padding - extra.length))
        order = order.concat(extra)
      }
    } else {
      order = order.slice(0, this.totalSize)
    }
    const mine: number[] = []
    for (let i = this.rank; i < this.totalSize; i += this.numReplicas) mine.push(order[i])
    return mine
  }
}
