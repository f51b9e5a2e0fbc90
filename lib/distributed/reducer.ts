// Gradient averaging as torch's DistributedDataParallel does it: trainable
// parameters are packed, in reverse order, into buckets of about 25 MB (the
// first 1 MB, so reduction starts early); during backward each parameter's
// gradient is copied into its bucket the moment its last contribution has
// been issued, and a bucket whose gradients are all in is all-reduced at
// once, while backward goes on computing the layers below. Buckets are
// reduced in index order on every rank, so the collectives line up.
//
// bertkit tensors have no offset views, so a gradient is copied into its
// bucket and back (torch's gradient_as_bucket_view=False); both copies are
// queued device ops, and nothing here waits on the host.
import { native } from '../native.js'
import { onLeafGradReady } from '../tensor/autograd.js'
import { empty, formatShape, type Tensor } from '../tensor/tensor.js'
import type { ProcessGroup, Work } from './process_group.js'

export interface GradientReducerOptions {
  /** Bucket size in MiB (DDP's bucket_cap_mb, default 25). */
  bucketCapMb?: number
  /** The first bucket's size in MiB (DDP: 1), so the first all-reduce starts early in backward. */
  firstBucketCapMb?: number
}

interface Slot {
  bucket: Bucket
  offset: number
  name: string
}

interface Bucket {
  index: number
  params: Tensor[]
  buffer: Tensor
  numel: number
  ready: Set<Tensor>
  work: Work | null
}

export class GradientReducer {
  readonly buckets: Bucket[] = []
  private readonly slots = new Map<Tensor, Slot>()
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
      const numel = current.reduce((n, [, p]) => n + p.numel, 0)
      const buffer = empty([numel], { device: group.device })
      buffer.kept = true
      const bucket: Bucket = { index: this.buckets.length, params: current.map(([, p]) => p), buffer, numel, ready: new Set(), work: null }
      let offset = 0
      for (const [name, p] of current) {
        this.slots.set(p, { bucket, offset, name })
        offset += p.numel
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
   * others skip reduction, as DDP's no_sync()): gradients are then taken as
   * backward finishes them.
   */
  prepareForBackward(): void {
    if (this.active) throw new Error('GradientReducer: prepareForBackward() twice without finishReduction()')
    this.active = true
    this.nextToReduce = 0
    for (const b of this.buckets) {
      b.ready.clear()
      b.work = null
      native().fill(b.buffer.buffer, b.numel, 0)
    }
    if (!this.detach) this.detach = onLeafGradReady((leaf) => this.gradReady(leaf))
  }

  private gradReady(leaf: Tensor): void {
    if (!this.active) return
    const slot = this.slots.get(leaf)
    if (!slot) return
    const b = slot.bucket
    if (b.work) {
      throw new Error(`data parallel: parameter ${slot.name} got more gradient after its bucket was reduced (is it used both inside and outside a checkpointed block?)`)
    }
    const g = leaf.grad
    if (!g) return
    if (b.ready.has(leaf)) {
      // Reported again (a nested backward): the bucket slot is rewritten, not added to.
      native().fill(b.buffer.buffer, b.numel, 0)
      for (const p of b.ready) if (p !== leaf && p.grad) this.copyIn(p, p.grad)
    }
    this.copyIn(leaf, g)
    b.ready.add(leaf)
    this.reduceReadyBuckets()
  }

  private copyIn(p: Tensor, g: Tensor): void {
    const { bucket, offset } = this.slots.get(p)!
    // bucket[offset, offset + n) += g, into a zeroed slot: an exact copy.
    native().sliceRowsBackward(1, bucket.numel, 1, offset, p.numel, g.buffer, bucket.buffer.buffer)
  }

  private reduceReadyBuckets(): void {
    const world = this.group.worldSize
    while (this.nextToReduce < this.buckets.length) {
      const b = this.buckets[this.nextToReduce]
      if (b.ready.size < b.params.length) return
      // Averaged as DDP's default hook does: divide, then sum over the ranks.
      if (world > 1) native().axpby(b.numel, 1 / world, b.buffer.buffer, 0, b.buffer.buffer)
      b.work = this.group.allReduceAsync(b.buffer, 'sum')
      this.nextToReduce++
    }
  }

  /**
   * After that backward: every parameter must have received a gradient (as
   * DDP without find_unused_parameters); later device work waits for the
   * buckets, and each gradient is replaced by its average over the ranks.
   */
  finishReduction(): void {
    if (!this.active) throw new Error('GradientReducer: finishReduction() without prepareForBackward()')
    this.active = false
    const missing: string[] = []
    for (const b of this.buckets) for (const p of b.params) if (!b.ready.has(p)) missing.push(this.slots.get(p)!.name)
    if (missing.length) {
      throw new Error(
        `data parallel: ${missing.length} trainable parameter(s) got no gradient in this step (${missing.slice(0, 5).join(', ')}${missing.length > 5 ? ', ...' : ''}); ` +
          'every rank must reduce the same gradients, so freeze parameters the loss does not use (requiresGrad = false)',
      )
    }
    for (const b of this.buckets) {
      b.work!.wait()
      for (const p of b.params) {
        const { offset } = this.slots.get(p)!
        native().sliceRowsForward(1, b.numel, 1, offset, p.numel, b.buffer.buffer, p.grad!.buffer)
      }
    }
  }

  /** Resolves when the last step's buckets have been reduced (rejects with the failure naming the rank). */
  async completed(): Promise<void> {
    await Promise.all(this.buckets.map((b) => b.work?.completed()))
  }

  dispose(): void {
    this.detach?.()
    this.detach = null
    for (const b of this.buckets) b.buffer.dispose()
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
