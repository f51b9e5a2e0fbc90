// Gradient averaging as torch's DistributedDataParallel does it: trainable
// parameters are grouped, in reverse order, into buckets of about 25 MB (the
// first 1 MB, so reduction starts early). During backward, the moment every
// gradient of a bucket has had its last contribution issued, the bucket is
// all-reduced (averaged over the ranks) as one coalesced collective, while
// backward goes on computing the layers below. Buckets are reduced in index
// order on every rank, so the collectives line up.
//
// The gradients themselves are the bucket: the collective reads and writes
// them in place (Gloo packs them into a staging buffer on the group's thread,
// NCCL fuses the calls), so nothing is copied on the device's stream and no
// second copy of the gradients is kept.
import { onLeafGradReady } from '../tensor/autograd.js'
import { empty, formatShape, type Tensor } from '../tensor/tensor.js'
import type { ProcessGroup, Work } from './process_group.js'

export interface GradientReducerOptions {
  /** Bucket size in MiB (DDP's bucket_cap_mb, default 25). */
  bucketCapMb?: number
  /** The first bucket's size in MiB (DDP: 1), so the first all-reduce starts early in backward. */
  firstBucketCapMb?: number
}

interface Bucket {
  index: number
  params: Tensor[]
  names: string[]
  numel: number
  ready: Set<Tensor>
  work: Work | null
}

export class GradientReducer {
  readonly buckets: Bucket[] = []
  private readonly bucketOf = new Map<Tensor, Bucket>()
  private readonly nameOf = new Map<Tensor, string>()
  private nextToReduce = 0
  private active = false
  private detach: (() => void) | null = null

  constructor(private readonly group: ProcessGroup, namedParams: Array<[string, Tensor]>, options: GradientReducerOptions = {}) {
    const cap = (options.bucketCapMb ?? 25) * 1024 * 1024
    const firstCap = (options.firstBucketCapMb ?? 1) * 1024 * 1024
    if (!(cap > 0) || !(firstCap > 0)) throw new Error('GradientReducer: bucket sizes must be positive')
    let current: Array<[string, Tensor]> = []
    let bytes = 0
    const flush = () => {
      if (!current.length) return
      const bucket: Bucket = {
        index: this.buckets.length, params: current.map(([, p]) => p), names: current.map(([n]) => n),
        numel: current.reduce((n, [, p]) => n + p.numel, 0), ready: new Set(), work: null,
      }
      for (const [name, p] of current) {
        this.bucketOf.set(p, bucket)
        this.nameOf.set(p, name)
      }
      this.buckets.push(bucket)
      current = []
      bytes = 0
    }
    // Reverse order: the last layers' gradients are ready first in backward.
    for (const [name, p] of [...namedParams].reverse()) {
      if (!p.requiresGrad) continue
      if (p.dtype !== 'float32') throw new Error(`GradientReducer: parameter ${name} is ${p.dtype}; gradients are reduced in float32`)
      if (p.device !== group.device) throw new Error(`GradientReducer: parameter ${name} is on ${p.device} but the process group reduces ${group.device} tensors`)
      current.push([name, p])
      bytes += p.numel * 4
      if (bytes >= (this.buckets.length === 0 ? firstCap : cap)) flush()
    }
    flush()
    if (!this.buckets.length) throw new Error('GradientReducer: the model has no trainable parameters')
  }

  /** Sizes of the buckets in elements, in reduction order. */
  get bucketSizes(): number[] {
    return this.buckets.map((b) => b.numel)
  }

  /**
   * Call before the backward of an optimizer step's last micro-batch (the
   * others skip reduction, as DDP's no_sync()): gradients are then reduced
   * as backward finishes them.
   */
  prepareForBackward(): void {
    if (this.active) throw new Error('GradientReducer: prepareForBackward() twice without finishReduction()')
    this.active = true
    this.nextToReduce = 0
    for (const b of this.buckets) {
      b.ready.clear()
      b.work = null
    }
    if (!this.detach) this.detach = onLeafGradReady((leaf) => this.gradReady(leaf))
  }

  private gradReady(leaf: Tensor): void {
    if (!this.active) return
    const b = this.bucketOf.get(leaf)
    if (!b || !leaf.grad) return
    if (b.work) {
      throw new Error(`data parallel: parameter ${this.nameOf.get(leaf)} got more gradient after its bucket was reduced (is it used both inside and outside a checkpointed block?)`)
    }
    b.ready.add(leaf)
    this.reduceReadyBuckets()
  }

  private reduceReadyBuckets(): void {
    while (this.nextToReduce < this.buckets.length) {
      const b = this.buckets[this.nextToReduce]
      if (b.ready.size < b.params.length) return
      b.work = this.group.allReduceCoalescedAsync(b.params.map((p) => p.grad!), 'avg')
      this.nextToReduce++
    }
  }

  /**
   * After that backward: every parameter must have received a gradient (as
   * DDP without find_unused_parameters), and device work issued afterwards
   * (clipping, the optimizer) waits for the buckets: each gradient is then
   * its average over the ranks.
   */
  finishReduction(): void {
    if (!this.active) throw new Error('GradientReducer: finishReduction() without prepareForBackward()')
    this.active = false
    const missing: string[] = []
    for (const b of this.buckets) b.params.forEach((p, i) => { if (!b.ready.has(p)) missing.push(b.names[i]) })
    if (missing.length) {
      throw new Error(
        `data parallel: ${missing.length} trainable parameter(s) got no gradient in this step (${missing.slice(0, 5).join(', ')}${missing.length > 5 ? ', ...' : ''}); ` +
          'every rank must reduce the same gradients, so freeze parameters the loss does not use (requiresGrad = false)',
      )
    }
    for (const b of this.buckets) b.work!.wait()
  }

  /** Resolves when the last step's buckets have been reduced (rejects with the failure naming the rank). */
  async completed(): Promise<void> {
    await Promise.all(this.buckets.map((b) => b.work?.completed()))
  }

  dispose(): void {
    this.detach?.()
    this.detach = null
  }
}

/** DDP's start: every rank takes rank 0's weights (all parameters, trainable or not). */
export async function broadcastParameters(group: ProcessGroup, namedParams: Array<[string, Tensor]>): Promise<void> {
  const works: Work[] = []
  for (const [, p] of namedParams) {
    const w = group.broadcastAsync(p, 0)
    w.wait()
    works.push(w)
  }
  await Promise.all(works.map((w) => w.completed()))
  for (const [, p] of namedParams) p.version++
}

/** FNV-1a of a string: a cheap fingerprint that ranks compare. */
function fingerprint(text: string): number {
  let h = 0x811c9dc5
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i)
    h = Math.imul(h, 0x01000193)
  }
  return h | 0
}

/**
 * Fails on every rank, naming one that differs, unless all ranks hold the
 * same parameters (names, shapes, which are trainable) and agree on `extra`
 * (e.g. the global batch size), as DDP checks its model at construction.
 */
export async function checkSameSetup(group: ProcessGroup, namedParams: Array<[string, Tensor]>, extra: Record<string, string | number> = {}): Promise<void> {
  const model = namedParams.map(([n, p]) => `${n}${formatShape(p.shape)}${p.requiresGrad ? '+' : '-'}`).join(';')
  const keys = Object.keys(extra).sort()
  const values = [fingerprint(model), ...keys.map((k) => fingerprint(`${k}=${extra[k]}`))]
  const mine = empty([values.length], { dtype: 'int32', device: group.device })
  try {
    mine.buffer.write(Int32Array.from(values))
    const all = await group.allGather(mine)
    try {
      for (let r = 0; r < all.length; r++) {
        const theirs = all[r].toInt32Array()
        if (theirs[0] !== values[0]) {
          throw new Error(`data parallel: rank ${r}'s model differs from rank ${group.rank}'s (parameter names, shapes or which are trainable); every rank must build the same model`)
        }
        for (let k = 0; k < keys.length; k++) {
          if (theirs[k + 1] !== values[k + 1]) throw new Error(`data parallel: rank ${r} disagrees with rank ${group.rank} on ${keys[k]} (here ${extra[keys[k]]})`)
        }
      }
    } finally {
      for (const t of all) t.dispose()
    }
  } finally {
    mine.dispose()
  }
}
